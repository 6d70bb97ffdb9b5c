"""The training loop: the schedule stepped per optimizer step, evaluation each epoch, pruning.

:func:`fit` trains one model for a fixed number of epochs. With an Optuna ``trial`` it reports
the evaluation metric after every epoch and raises :class:`optuna.TrialPruned` when the pruner
says so or when training diverges (a NaN/inf loss, or the epoch's mean loss far above where it
started), recording why in the trial's ``pruned_reason`` user attr.

A ``plateau`` schedule (torch's ``ReduceLROnPlateau``) is the exception to "once per optimizer
step": it is stepped once per epoch with that epoch's metric, in the metric's direction.

In-memory ``(x, y)`` tensors are batched by indexing a permutation (no per-sample
``DataLoader`` overhead); a ``Dataset`` goes through a ``DataLoader``, and a ready-made
``DataLoader`` is used as it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from lrsearch._validation import check_positive_int, check_real
from lrsearch.choices import DEVICES, PER_EPOCH_KINDS
from lrsearch.diagnostics import (
    NON_FINITE,
    STALL_EPOCHS,
    TOO_HIGH,
    UpdateRatioMonitor,
    measure_every,
    stall_reason,
)
from lrsearch.exceptions import InvalidParameterError
from lrsearch.optimizers import has_train_eval
from lrsearch.schedules import Schedule
from lrsearch.store.names import EPOCH_LRS, EPOCHS_RUN, FLAGS, PRUNED_REASON, UPDATE_RATIOS
from lrsearch.store.records import UpdateRatios
from lrsearch.tasks import METRICS, Data, Task
from lrsearch.tasks import steps_per_epoch as _steps_per_epoch

__all__ = [
    "Clock",
    "FitResult",
    "charged",
    "clock",
    "combine_for",
    "default_threads",
    "ensemble_outputs",
    "evaluate",
    "evaluate_ensemble",
    "first_batch",
    "fit",
    "labels",
    "resolve_device",
    "state_on_cpu",
    "subset",
]

_log = logging.getLogger(__name__)

_EVAL_BATCH = 1024

#: How an ensemble's outputs are combined: class probabilities averaged, or outputs averaged.
Combine = Literal["softmax", "mean"]


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What one training run did.

    Attributes:
        values: The evaluation metric after each epoch (empty without evaluation data).
        train_losses: Mean training loss of each epoch run.
        epochs_run: Epochs completed (fewer than asked if the run diverged or was pruned).
        steps: Optimizer steps taken.
        seconds: Wall time of training plus evaluation.
        stop_reason: ``None`` for a full run, else why it stopped early.
        lrs: The realised learning rate of each epoch run: the first param group's LR at the
            epoch's start (in force for its first optimizer step). For a ``plateau`` schedule
            that is the LR of the whole epoch; for the others it is
            ``schedule.lrs(total_steps)[epoch * steps_per_epoch]``.
        snapshot_steps: The optimizer steps (taken) of the snapshots in the ensemble, oldest
            first (empty without ``snapshot_steps``, or when the run reached none of them).
        ensemble_value: The metric on ``eval_data`` of the ensemble of those snapshots
            (:func:`evaluate_ensemble`), ``None`` without snapshots or evaluation data.
        snapshot_value: The metric of the last snapshot alone, the single model the ensemble
            is measured against (``None`` as for ``ensemble_value``).
        update_ratios: The update/weight ratios of the run (``None`` with ``diagnostics`` off).
    """

    values: list[float]
    train_losses: list[float]
    epochs_run: int
    steps: int
    seconds: float
    stop_reason: str | None = None
    lrs: list[float] = dataclasses.field(default_factory=list)
    snapshot_steps: list[int] = dataclasses.field(default_factory=list)
    ensemble_value: float | None = None
    snapshot_value: float | None = None
    update_ratios: UpdateRatios | None = None

    @property
    def final(self) -> float:
        """The last evaluation value (NaN without evaluation data)."""
        return self.values[-1] if self.values else math.nan

    @property
    def flags(self) -> list[str]:
        """What the diagnostics say about the learning rate, in words: the param groups whose
        update/weight ratio sat outside ``RATIO_BAND`` for most steps, and a training loss that
        never fell over a run of more than ``STALL_EPOCHS`` epochs."""
        out = [] if self.update_ratios is None else self.update_ratios.flags
        if len(self.train_losses) > STALL_EPOCHS:
            stuck = stall_reason(self.train_losses, len(self.train_losses) - 1)
            if stuck is not None:
                out.append(stuck)
        return out


class Clock:
    """Seconds spent inside :func:`fit` (training and evaluation, not Optuna's storage calls)."""

    def __init__(self) -> None:
        self.seconds = 0.0


_CLOCKS: contextvars.ContextVar[tuple[Clock, ...]] = contextvars.ContextVar(
    "lrsearch_training_clocks", default=()
)


@contextlib.contextmanager
def clock() -> Iterator[Clock]:
    """Add up the time every :func:`fit` inside the ``with`` block spends training and evaluating.

    Example:
        >>> with clock() as c:
        ...     pass
        >>> c.seconds
        0.0
    """
    c = Clock()
    token = _CLOCKS.set((*_CLOCKS.get(), c))
    try:
        yield c
    finally:
        _CLOCKS.reset(token)


@contextlib.contextmanager
def charged() -> Iterator[None]:
    """Count the ``with`` block's time as training in every active :func:`clock`: for training
    done outside :func:`fit` (a range test's sweep). Do not call :func:`fit` inside it (its time
    would count twice).

    Example:
        >>> with clock() as c:
        ...     with charged():
        ...         pass
        >>> c.seconds > 0
        True
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        for c in _CLOCKS.get():
            c.seconds += elapsed


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available) as a ``torch.device``.

    Raises:
        InvalidParameterError: An unknown name, or ``"cuda"`` on a machine without CUDA.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in DEVICES:
        raise InvalidParameterError(f"device must be one of {list(DEVICES)}; got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("device 'cuda' asked for, but torch sees no CUDA device")
    return torch.device(device)


def default_threads() -> int:
    """Threads for torch on the CPU: the cores this process may use, at most 8.

    Small models gain little beyond a few threads and lose to oversubscription when several
    workers share a machine.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def subset(data: Data, indices: Sequence[int] | np.ndarray) -> Data:
    """The examples of ``data`` at ``indices`` (tensors are indexed, datasets wrapped)."""
    idx = np.asarray(indices, dtype=np.int64)
    if isinstance(data, tuple):
        t = torch.from_numpy(idx)
        return data[0][t], data[1][t]
    return Subset(data, idx.tolist())


def first_batch(data: Data, batch_size: int) -> tuple[Any, Any]:
    """The first ``batch_size`` examples of ``data`` as one ``(inputs, targets)`` batch, in
    the data's own order (a dataset's examples collated as a DataLoader collates them).

    Example:
        >>> x, y = first_batch((torch.arange(10.0), torch.arange(10)), 4)
        >>> x.tolist(), y.tolist()
        ([0.0, 1.0, 2.0, 3.0], [0, 1, 2, 3])
    """
    if isinstance(data, tuple):
        return data[0][:batch_size], data[1][:batch_size]
    batch = next(iter(DataLoader(data, batch_size=batch_size)))
    return batch[0], batch[1]


def labels(data: Data) -> np.ndarray | None:
    """Class labels for stratified splitting, where they can be had without a pass over data."""
    if isinstance(data, tuple):
        return data[1].detach().cpu().numpy()
    targets = getattr(data, "targets", None)
    return None if targets is None else np.asarray(targets)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    return batch


class _Batches:
    """One epoch of training batches at a time, shuffled by a seeded generator."""

    def __init__(
        self,
        data: Data | DataLoader[Any],
        batch_size: int,
        device: torch.device,
        generator: torch.Generator,
    ) -> None:
        self._device = device
        self._generator = generator
        self._tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        self._loader: DataLoader[Any] | None = None
        self._batch_size = batch_size
        if isinstance(data, tuple):
            self._tensors = (data[0].to(device), data[1].to(device))
            self.steps = _steps_per_epoch(len(data[0]), batch_size)
        elif isinstance(data, DataLoader):
            self._loader = data
            self.steps = len(data)
        elif isinstance(data, Dataset):
            self._loader = DataLoader(
                data, batch_size=batch_size, shuffle=True, generator=generator
            )
            self.steps = len(self._loader)
        else:
            raise InvalidParameterError(
                f"training data must be (x, y) tensors, a Dataset or a DataLoader; "
                f"got {type(data).__name__}"
            )
        if self.steps == 0:
            raise InvalidParameterError("training data is empty")

    def first(self, n: int) -> Iterator[tuple[Any, Any]]:
        """The first ``n`` batches in the data's own order (the shuffling is left as it is)."""
        if self._tensors is not None:
            x, y = self._tensors
            for start in range(0, min(len(x), n * self._batch_size), self._batch_size):
                yield x[start : start + self._batch_size], y[start : start + self._batch_size]
        else:
            assert self._loader is not None
            for i, batch in enumerate(self._loader):
                if i >= n:
                    break
                yield _to_device(batch[0], self._device), _to_device(batch[1], self._device)

    def epoch(self) -> Iterator[tuple[Any, Any]]:
        if self._tensors is not None:
            x, y = self._tensors
            order = torch.randperm(len(x), generator=self._generator).to(self._device)
            for start in range(0, len(x), self._batch_size):
                idx = order[start : start + self._batch_size]
                yield x[idx], y[idx]
        else:
            assert self._loader is not None
            for batch in self._loader:
                inputs, targets = batch[0], batch[1]
                yield _to_device(inputs, self._device), _to_device(targets, self._device)


#: Training batches a Schedule-Free model's BatchNorm statistics are recomputed on before it is
#: evaluated (the schedulefree README's recipe: 50).
_BN_REFRESH_BATCHES = 50


def _evaluation_weights(
    optimizer: torch.optim.Optimizer, model: nn.Module, batches: _Batches
) -> None:
    """Switch a Schedule-Free optimizer's model to its averaged weights for evaluation, and
    recompute BatchNorm statistics there (they were gathered at the training weights), as the
    schedulefree README advises."""
    optimizer.eval()  # type: ignore[attr-defined]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = model.training
    model.train()
    with torch.no_grad():
        for xb, _ in batches.first(_BN_REFRESH_BATCHES):
            model(xb)
    model.train(was_training)


def _accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float((outputs.argmax(dim=1) == targets).float().mean())


def _eval_batches(data: Data | DataLoader[Any]) -> Any:
    if isinstance(data, tuple):
        x, y = data
        return [
            (x[i : i + _EVAL_BATCH], y[i : i + _EVAL_BATCH]) for i in range(0, len(x), _EVAL_BATCH)
        ]
    if isinstance(data, DataLoader):
        return data
    return DataLoader(data, batch_size=_EVAL_BATCH)


@torch.no_grad()
def _outputs(
    model: nn.Module, data: Data | DataLoader[Any], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``model``'s outputs on ``data`` and the targets, in eval mode (restored after)."""
    was_training = model.training
    model.eval()
    try:
        outputs, targets = [], []
        for batch in _eval_batches(data):
            outputs.append(model(_to_device(batch[0], device)))
            targets.append(_to_device(batch[1], device))
        return torch.cat(outputs), torch.cat(targets)
    finally:
        model.train(was_training)


def _score(
    out: torch.Tensor,
    tgt: torch.Tensor,
    metric: str | Callable[[torch.Tensor, torch.Tensor], float],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
) -> float:
    if metric == "accuracy":
        return _accuracy(out, tgt)
    if metric == "loss":
        if loss is None:
            raise InvalidParameterError("metric 'loss' needs the loss function")
        return float(loss(out, tgt))
    if callable(metric):
        return float(metric(out, tgt))
    raise InvalidParameterError(f"unknown metric {metric!r}")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Data | DataLoader[Any],
    *,
    metric: str | Callable[[torch.Tensor, torch.Tensor], float] = "accuracy",
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | None = None,
) -> float:
    """The metric of ``model`` over all of ``data``, in eval mode, without gradients.

    Args:
        model: The model (its train/eval mode is restored afterwards).
        data: ``(x, y)`` tensors, a ``Dataset`` or a ``DataLoader``.
        metric: ``"accuracy"``, ``"loss"`` (example-weighted mean of ``loss``) or a function of
            all outputs and targets.
        loss: The criterion, needed for ``metric="loss"``.
        device: Where to compute (default: where the model's first parameter lives).

    Returns:
        The metric as a float (NaN if the model's outputs are not finite and the metric is loss).

    Example:
        >>> import torch
        >>> m = torch.nn.Linear(2, 2)
        >>> 0.0 <= evaluate(m, (torch.randn(10, 2), torch.arange(10) % 2)) <= 1.0
        True
    """
    if device is None:
        device = next(model.parameters()).device
    out, tgt = _outputs(model, data, device)
    return _score(out, tgt, metric, loss)


def state_on_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model.state_dict()`` in CPU memory (a snapshot the run cannot change)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def combine_for(
    metric: str | Callable[..., float], loss: Callable[..., torch.Tensor] | None = None
) -> Combine:
    """How an ensemble of models of a task is combined: ``"softmax"`` for classification
    (metric ``"accuracy"``, or a cross-entropy / NLL loss), ``"mean"`` otherwise (regression).

    Example:
        >>> combine_for("accuracy"), combine_for("loss", torch.nn.MSELoss())
        ('softmax', 'mean')
        >>> combine_for("loss", torch.nn.CrossEntropyLoss())
        'softmax'
    """
    if metric == "accuracy" or isinstance(loss, nn.CrossEntropyLoss | nn.NLLLoss):
        return "softmax"
    return "mean"


@torch.no_grad()
def ensemble_outputs(
    model: nn.Module,
    states: Sequence[Mapping[str, torch.Tensor]],
    data: Data | DataLoader[Any],
    *,
    combine: Combine = "softmax",
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs of the ensemble of ``states`` (each a ``state_dict`` of ``model``) on
    ``data``, and the targets.

    ``"softmax"``: the mean of the members' class probabilities (softmax over dim 1, the class
    dim of ``CrossEntropyLoss``), returned as its log, so that anything that reads logits
    reads the ensemble: its argmax is the averaged prediction and ``CrossEntropyLoss`` of it is
    the ensemble's negative log-likelihood. ``"mean"``: the mean of the members' outputs.
    ``model`` itself is not changed (a copy loads each state).

    Raises:
        InvalidParameterError: No states, or an unknown ``combine``.

    Example:
        >>> m = torch.nn.Linear(1, 1)
        >>> states = [{"weight": torch.tensor([[w]]), "bias": torch.tensor([b])}
        ...           for w, b in ((1.0, 0.0), (3.0, 1.0))]
        >>> out, _ = ensemble_outputs(m, states, (torch.tensor([[2.0]]), torch.zeros(1)),
        ...                           combine="mean")
        >>> out.tolist()  # (1*2 + 0 + 3*2 + 1) / 2
        [[4.5]]
    """
    if not states:
        raise InvalidParameterError(
            f"states must hold at least one state_dict for an ensemble; got {list(states)!r}"
        )
    if combine not in ("softmax", "mean"):
        raise InvalidParameterError(f"combine must be 'softmax' or 'mean'; got {combine!r}")
    if device is None:
        device = next(model.parameters()).device
    member = copy.deepcopy(model)
    total: torch.Tensor | None = None
    targets = torch.empty(0)
    for state in states:
        member.load_state_dict(state)
        out, targets = _outputs(member, data, device)
        part = out.float().softmax(dim=1) if combine == "softmax" else out
        total = part if total is None else total + part
    assert total is not None
    mean = total / len(states)
    return (mean.log() if combine == "softmax" else mean), targets


def evaluate_ensemble(
    model: nn.Module,
    states: Sequence[Mapping[str, torch.Tensor]],
    data: Data | DataLoader[Any],
    *,
    metric: str | Callable[[torch.Tensor, torch.Tensor], float] = "accuracy",
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    combine: Combine | None = None,
    device: torch.device | None = None,
) -> float:
    """The metric (as :func:`evaluate` computes it) of the ensemble of ``states`` on ``data``.

    Args:
        model: A model of the architecture the states are of (not changed).
        states: ``state_dict`` copies, e.g. the snapshots :func:`fit` keeps at cycle ends.
        data: ``(x, y)`` tensors, a ``Dataset`` or a ``DataLoader``.
        metric: As for :func:`evaluate`, read on :func:`ensemble_outputs`.
        loss: The criterion, for ``metric="loss"``.
        combine: ``"softmax"`` or ``"mean"``; default :func:`combine_for` the metric and loss.
        device: Where to compute (default: where the model's first parameter lives).

    Returns:
        The ensemble's metric.

    Example:
        >>> m = torch.nn.Linear(2, 2)
        >>> data = (torch.randn(10, 2), torch.arange(10) % 2)
        >>> evaluate_ensemble(m, [m.state_dict()], data) == evaluate(m, data)
        True
    """
    how = combine if combine is not None else combine_for(metric, loss)
    out, tgt = ensemble_outputs(model, states, data, combine=how, device=device)
    return _score(out, tgt, metric, loss)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train: Data | DataLoader[Any],
    *,
    epochs: int,
    batch_size: int = 32,
    schedule: Schedule | None = None,
    eval_data: Data | DataLoader[Any] | None = None,
    metric: str | Callable[[torch.Tensor, torch.Tensor], float] = "accuracy",
    seed: int = 0,
    trial: optuna.trial.BaseTrial | None = None,
    device: torch.device | None = None,
    diverge_factor: float = 4.0,
    on_epoch: Callable[[int, float], None] | None = None,
    maximize: bool | None = None,
    plateau_data: Data | DataLoader[Any] | None = None,
    snapshot_steps: Sequence[int] | None = None,
    snapshots: int | None = None,
    diagnostics: bool = True,
    prune_epochs: Collection[int] | None = None,
) -> FitResult:
    """Train ``model`` for ``epochs``, stepping ``schedule`` once per optimizer step.

    A ``plateau`` schedule is stepped once per epoch instead, after the evaluation, with the
    metric on ``plateau_data`` (default: ``eval_data``), ``scheduler.step(value)``, in
    ``mode="max"`` when ``maximize`` else ``"min"``; not after the last epoch, as the other
    kinds are not stepped after the last optimizer step.

    Args:
        model: The model, already on ``device``.
        optimizer: Its optimizer. With a ``schedule`` the schedule owns the learning rate;
            without one the optimizer's own LR stays constant.
        loss: The criterion.
        train: ``(x, y)`` tensors (batched by indexing), a ``Dataset`` or a ``DataLoader``
            (used as it is; ``batch_size`` then does not apply).
        epochs: Epochs to train.
        batch_size: Batch size for tensors and datasets.
        schedule: The learning-rate schedule, built over ``epochs * steps_per_epoch`` steps.
        eval_data: Data to evaluate ``metric`` on after every epoch.
        metric: See :func:`evaluate`.
        seed: Seeds the shuffling of every epoch (the model's init is the caller's).
        trial: An Optuna trial to report to after every epoch; then a pruning decision or a
            divergence raises :class:`optuna.TrialPruned` (reason in user attr
            ``pruned_reason``; a pruned run whose training loss had stopped falling says so).
        prune_epochs: The epochs after which ``trial.should_prune()`` is asked (every value
            is reported all the same, so the pruner sees every epoch when it is asked): those
            a pruner can act on, e.g. successive halving's rungs; each asking reads the study's
            trials. Default: every epoch but the last. The last is never asked: the run is done
            then, and pruning it would throw a finished result away and save nothing.
        device: Where the model lives (default: where its first parameter is).
        diverge_factor: An epoch whose mean training loss exceeds this many times the first
            batch's loss counts as diverged (only for a positive first loss).
        on_epoch: Called as ``on_epoch(epoch, value)`` after each evaluated epoch.
        maximize: Whether a larger ``metric`` is better (a ``plateau`` schedule's mode);
            ``None`` infers it for ``"accuracy"`` (larger) and ``"loss"`` (smaller), and a
            ``plateau`` schedule with a metric function needs it.
        plateau_data: The data a ``plateau`` schedule's metric is computed on, when it is not
            ``eval_data``: pass a slice held out of the training data when ``eval_data`` is
            the test set, so the test never steers training.
        snapshot_steps: Keep the model's state (a CPU copy of its ``state_dict``) after these
            optimizer steps, e.g. ``schedule.cycle_ends(total_steps)`` for a snapshot ensemble
            (Huang et al. 2017); with ``eval_data``, the result then holds the metric of the
            ensemble of the last ``snapshots`` of them and of the last one alone.
        snapshots: How many of the latest snapshots to keep and ensemble (M; default all).
        diagnostics: Measure the update/weight ratio per param group (on about
            ``SAMPLES_PER_EPOCH`` steps per epoch, see :mod:`lrsearch.diagnostics`).

    Returns:
        A :class:`FitResult`. Without a ``trial``, a diverged run stops early and says why in
        ``stop_reason`` (what happened, then what it says about the learning rate); its last
        value is the diverged model's metric.

    Raises:
        optuna.TrialPruned: With a ``trial``, when pruned or diverged; its user attrs
            ``pruned_reason``, ``epochs_run``, ``epoch_lrs`` (:data:`EPOCH_LRS`, the
            :attr:`FitResult.lrs` of the epochs run), and with ``diagnostics``
            ``update_ratios`` and ``flags`` say what happened.
        InvalidParameterError: Bad arguments, e.g. a ``plateau`` schedule without data to
            compute its metric on, or without a direction for a metric function.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> m = torch.nn.Linear(4, 2)
        >>> opt = torch.optim.SGD(m.parameters(), lr=0.1)
        >>> r = fit(m, opt, torch.nn.CrossEntropyLoss(), (x, y), epochs=3, batch_size=16,
        ...         schedule=Schedule("step", max_lr=0.1, step_size=4, decay=0.5),
        ...         eval_data=(x, y))
        >>> r.epochs_run, r.steps, len(r.values), opt.param_groups[0]["lr"]
        (3, 12, 3, 0.025)
        >>> r.lrs
        [0.1, 0.05, 0.025]
    """
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    diverge_factor = check_real("diverge_factor", diverge_factor)
    if device is None:
        device = next(model.parameters()).device
    per_epoch = schedule is not None and schedule.kind in PER_EPOCH_KINDS
    if plateau_data is None:
        plateau_data = eval_data
    if per_epoch and plateau_data is None:
        assert schedule is not None
        raise InvalidParameterError(
            f"schedule kind {schedule.kind!r} is stepped with the metric after every epoch, so "
            "fit needs eval_data or plateau_data to compute it on; got neither"
        )
    maximize = _check_maximize(maximize, metric, needed=per_epoch)
    generator = torch.Generator().manual_seed(seed)
    batches = _Batches(train, batch_size, device, generator)
    total = epochs * batches.steps
    keep = _Snapshots(snapshot_steps, snapshots, total)
    monitor = (
        UpdateRatioMonitor(optimizer, every=measure_every(batches.steps)) if diagnostics else None
    )
    scheduler = (
        schedule.build(optimizer, total, maximize=maximize) if schedule is not None else None
    )

    start = time.perf_counter()
    storage_seconds = 0.0  # Optuna's report/should_prune: bookkeeping, not training

    def charge() -> None:
        for c in _CLOCKS.get():
            c.seconds += time.perf_counter() - start - storage_seconds

    values: list[float] = []
    losses: list[float] = []
    lrs: list[float] = []
    first_loss: float | None = None
    steps = 0
    stop: str | None = None
    # Schedule-Free keeps training weights and averaged ones: train on the first, evaluate
    # (and end) on the second.
    averaged = has_train_eval(optimizer)
    model.train()
    for epoch in range(1, epochs + 1):
        if averaged:
            optimizer.train()  # type: ignore[attr-defined]
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        total_loss = torch.zeros((), device=device)
        n_batches = 0
        for xb, yb in batches.epoch():
            optimizer.zero_grad(set_to_none=True)
            batch_loss = loss(model(xb), yb)
            if first_loss is None:
                first_loss = float(batch_loss.detach())
                if not math.isfinite(first_loss):
                    stop = f"non-finite loss ({first_loss}) at step 0: {NON_FINITE}"
                    break
            batch_loss.backward()
            watch = monitor if monitor is not None and monitor.due(steps) else None
            if watch is not None:
                watch.before()
            optimizer.step()
            if watch is not None:
                watch.after()
            steps += 1
            keep.take(steps, model)
            if scheduler is not None and not per_epoch and steps < total:
                scheduler.step()
            total_loss += batch_loss.detach()
            n_batches += 1
        if averaged:
            _evaluation_weights(optimizer, model, batches)
        if stop is not None:
            break
        mean_loss = float(total_loss) / max(1, n_batches)
        losses.append(mean_loss)
        if monitor is not None:
            monitor.end_epoch()  # its one sync, here where the loss syncs anyway
        # Checked once per epoch: a per-step float() would sync a GPU every step.
        if not math.isfinite(mean_loss):
            stop = f"non-finite training loss in epoch {epoch}: {NON_FINITE}"
        elif first_loss is not None and first_loss > 0 and mean_loss > diverge_factor * first_loss:
            stop = (
                f"diverged in epoch {epoch}: mean loss {mean_loss:.4g} > "
                f"{diverge_factor:g} x the first loss {first_loss:.4g}: {TOO_HIGH}"
            )
        if eval_data is not None:
            value = evaluate(model, eval_data, metric=metric, loss=loss, device=device)
            if stop is None and not math.isfinite(value):
                what = metric if isinstance(metric, str) else "metric"
                stop = f"non-finite {what} in epoch {epoch}: {NON_FINITE}"
            values.append(value)
            if on_epoch is not None:
                on_epoch(epoch, value)
            if trial is not None and stop is None:
                asked = time.perf_counter()
                trial.report(value, epoch)
                prune = (
                    epoch < epochs
                    and (prune_epochs is None or epoch in prune_epochs)
                    and trial.should_prune()
                )
                storage_seconds += time.perf_counter() - asked
                if prune:
                    charge()
                    reason = f"pruner: stopped after epoch {epoch}"
                    stuck = stall_reason(losses)
                    _leave_on_trial(
                        trial, reason if stuck is None else f"{reason}: {stuck}", lrs, monitor
                    )
                    raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        if stop is not None:
            break
        if per_epoch and epoch < epochs:
            assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            if plateau_data is eval_data:
                scheduler.step(values[-1])
            else:
                assert plateau_data is not None
                watched = evaluate(model, plateau_data, metric=metric, loss=loss, device=device)
                if not math.isfinite(watched):
                    stop = f"non-finite plateau metric in epoch {epoch}: {NON_FINITE}"
                    break
                scheduler.step(watched)

    epochs_run = len(losses)
    del lrs[epochs_run:]  # an epoch that stopped at its first step was not run
    if stop is not None:
        _log.info("training stopped: %s", stop)
        if trial is not None:
            charge()
            _leave_on_trial(trial, stop, lrs, monitor)
            raise optuna.TrialPruned(stop)
        if eval_data is not None and len(values) < max(1, epochs_run):
            values.append(evaluate(model, eval_data, metric=metric, loss=loss, device=device))
    ensemble = single = None
    if eval_data is not None and keep.kept:
        ensemble, single = keep.score(model, eval_data, metric=metric, loss=loss, device=device)
    charge()
    seconds = time.perf_counter() - start - storage_seconds
    return FitResult(
        values,
        losses,
        epochs_run,
        steps,
        seconds,
        stop,
        lrs,
        snapshot_steps=keep.steps,
        ensemble_value=ensemble,
        snapshot_value=single,
        update_ratios=None if monitor is None else monitor.result(),
    )


def _leave_on_trial(
    trial: optuna.trial.BaseTrial,
    reason: str,
    lrs: list[float],
    monitor: UpdateRatioMonitor | None,
) -> None:
    """What a pruned run leaves on its trial: why, how far it got, what the diagnostics saw."""
    trial.set_user_attr(PRUNED_REASON, reason)
    trial.set_user_attr(EPOCHS_RUN, len(lrs))
    trial.set_user_attr(EPOCH_LRS, lrs)
    if monitor is not None:
        ratios = monitor.result()
        trial.set_user_attr(UPDATE_RATIOS, ratios.to_dict())
        trial.set_user_attr(FLAGS, ratios.flags)


class _Snapshots:
    """The model's state, copied to the CPU, after each optimizer step in ``at``; the latest
    ``keep`` of them (all without ``keep``)."""

    def __init__(self, at: Sequence[int] | None, keep: int | None, total: int) -> None:
        if at is None and keep is not None:
            raise InvalidParameterError(
                f"snapshots (how many to ensemble) needs snapshot_steps; got snapshots={keep!r}"
            )
        if isinstance(at, str | bytes):
            raise InvalidParameterError(f"snapshot_steps must be a list of steps; got {at!r}")
        steps = sorted({check_positive_int("snapshot_steps", n) for n in at or ()})
        if steps and steps[-1] > total:
            raise InvalidParameterError(
                f"snapshot_steps must lie within the run's {total} optimizer steps; "
                f"got {steps[-1]}"
            )
        self._at = frozenset(steps)
        if keep is not None:
            keep = check_positive_int("snapshots", keep)
        self.kept: deque[tuple[int, dict[str, torch.Tensor]]] = deque(maxlen=keep)

    @property
    def steps(self) -> list[int]:
        return [step for step, _ in self.kept]

    def take(self, step: int, model: nn.Module) -> None:
        if step in self._at:
            self.kept.append((step, state_on_cpu(model)))

    def score(
        self,
        model: nn.Module,
        data: Data | DataLoader[Any],
        *,
        metric: str | Callable[[torch.Tensor, torch.Tensor], float],
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        device: torch.device,
    ) -> tuple[float, float]:
        """The metric of the ensemble of the kept states, and of the last one alone."""
        states = [state for _, state in self.kept]
        ensemble = evaluate_ensemble(model, states, data, metric=metric, loss=loss, device=device)
        last = copy.deepcopy(model)
        last.load_state_dict(states[-1])
        return ensemble, evaluate(last, data, metric=metric, loss=loss, device=device)


def _check_maximize(
    maximize: bool | None, metric: str | Callable[..., float], *, needed: bool
) -> bool:
    """``maximize`` as given, else the direction of a named metric; ``needed``: it must be
    known (a ``plateau`` schedule's mode)."""
    if maximize is not None:
        if not isinstance(maximize, bool):
            raise InvalidParameterError(f"maximize must be True, False or None; got {maximize!r}")
        return maximize
    if isinstance(metric, str) and metric in METRICS:
        return METRICS[metric] == "maximize"
    if needed:
        raise InvalidParameterError(
            "a plateau schedule needs the metric's direction: pass maximize=True or False "
            f"with metric {metric!r}"
        )
    return False


def train_task(
    task: Task,
    train: Data,
    *,
    schedule: Schedule | None,
    eval_data: Data | None,
    seed: int,
    device: torch.device,
    trial: optuna.trial.BaseTrial | None = None,
    optimizer_factory: Callable[..., torch.optim.Optimizer] | None = None,
    lr: float | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    plateau_data: Data | None = None,
    snapshot_steps: Sequence[int] | None = None,
    snapshots: int | None = None,
    diagnostics: bool = True,
    prune_epochs: Collection[int] | None = None,
) -> FitResult:
    """Train a fresh model of ``task`` (initialised from ``seed``) on ``train``.

    The schedule sets the LR; without one, ``lr`` is the constant LR. ``optimizer_factory``
    replaces the task's (the Adam baseline uses it). A ``plateau`` schedule is stepped in the
    task's direction (``task.maximize``) with the metric on ``plateau_data`` (default:
    ``eval_data``; see :func:`fit`, also for ``prune_epochs``). ``snapshot_steps``,
    ``snapshots`` and ``diagnostics`` are :func:`fit`'s: e.g.
    ``snapshot_steps=schedule.cycle_ends(total_steps)`` gives the snapshot ensemble's metric on
    ``eval_data`` in :attr:`FitResult.ensemble_value`.
    """
    torch.manual_seed(seed)
    model = task.make_model().to(device)
    make_opt = optimizer_factory or task.make_optimizer
    start_lr = schedule.max_lr if schedule is not None else lr
    if start_lr is None:
        raise InvalidParameterError("train_task needs a schedule or an lr")
    optimizer = make_opt(model.parameters(), start_lr)
    return fit(
        model,
        optimizer,
        task.loss,
        train,
        epochs=task.epochs,
        batch_size=task.batch_size,
        schedule=schedule,
        eval_data=eval_data,
        metric=task.metric,
        seed=seed,
        trial=trial,
        device=device,
        on_epoch=on_epoch,
        maximize=task.maximize,
        plateau_data=plateau_data,
        snapshot_steps=snapshot_steps,
        snapshots=snapshots,
        diagnostics=diagnostics,
        prune_epochs=prune_epochs,
    )
