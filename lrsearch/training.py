"""The training loop: the schedule stepped per optimizer step, evaluation each epoch, pruning.

:func:`fit` trains one model for a fixed number of epochs, a short loop over named steps (train
an epoch, evaluate, step a ``plateau`` schedule). With an Optuna ``trial`` it reports the
evaluation metric after every epoch and raises :class:`optuna.TrialPruned` when the pruner says
so or when training diverges (a NaN/inf loss, or the epoch's mean loss far above where it
started). Why it stopped is a :class:`~lrsearch.store.StopReason`, a code plus words (a pruned
run whose training loss had stopped falling is ``stalled`` and says so); :class:`TrialRecord`
writes it on the trial with how far the run got (``epochs_run``, ``epoch_lrs``) and, with
``diagnostics``, ``update_ratios`` and ``flags``. :class:`TrialRecord` is the one writer of a
run's user attrs: the search's trials record what they train and what they did through it too.

A ``plateau`` schedule (torch's ``ReduceLROnPlateau``) is the exception to "once per optimizer
step": it is stepped once per epoch, after the evaluation, with the metric on ``plateau_data``
(default: ``eval_data``), ``scheduler.step(value)``, in ``mode="max"`` when ``maximize`` else
``"min"``; not after the last epoch, as the other kinds are not stepped after the last
optimizer step.

In-memory ``(x, y)`` tensors are batched by indexing a permutation (no per-sample
``DataLoader`` overhead); a ``Dataset`` goes through a ``DataLoader``, and a ready-made
``DataLoader`` is used as it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import functools
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Literal, NoReturn, TypedDict, Unpack

import numpy as np
import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

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
from lrsearch.store import (
    EPOCH_LRS,
    EPOCHS_RUN,
    FLAGS,
    LR_MEAN,
    LR_PEAK,
    OPTIMIZER,
    SCHEDULE,
    UPDATE_RATIOS,
    StopReason,
    UpdateRatios,
)
from lrsearch.tasks import METRICS, Data, Task
from lrsearch.tasks import steps_per_epoch as _steps_per_epoch

__all__ = [
    "Clock",
    "FitOptions",
    "FitResult",
    "TrainOptions",
    "TrialRecord",
    "charged",
    "clock",
    "combine_for",
    "default_threads",
    "ensemble_outputs",
    "evaluate",
    "evaluate_ensemble",
    "fit",
    "resolve_device",
    "state_on_cpu",
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
        stop_reason: ``None`` for a full run, else why it stopped early, in words
            (``stop.words``).
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
        stop: ``None`` for a full run, else why it stopped early as a code plus words.
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
    stop: StopReason | None = None

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
    """What :func:`fit` spent inside it: seconds (training and evaluation, not Optuna's storage
    calls) and the optimizer steps it took."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.steps = 0


_CLOCKS: contextvars.ContextVar[tuple[Clock, ...]] = contextvars.ContextVar(
    "lrsearch_training_clocks", default=()
)


@contextlib.contextmanager
def clock() -> Iterator[Clock]:
    """Add up the time every :func:`fit` inside the ``with`` block spends training and evaluating,
    and the optimizer steps it takes.

    Example:
        >>> m = torch.nn.Linear(2, 2)
        >>> opt = torch.optim.SGD(m.parameters(), lr=0.1)
        >>> data = (torch.randn(8, 2), torch.zeros(8, dtype=torch.long))
        >>> with clock() as c:
        ...     _ = fit(m, opt, torch.nn.CrossEntropyLoss(), data, epochs=2, batch_size=4)
        >>> c.steps, c.seconds > 0
        (4, True)
    """
    c = Clock()
    token = _CLOCKS.set((*_CLOCKS.get(), c))
    try:
        yield c
    finally:
        _CLOCKS.reset(token)


@contextlib.contextmanager
def charged() -> Iterator[Clock]:
    """Count the ``with`` block's time as training in every active :func:`clock`, with the
    optimizer steps the block sets on the :class:`Clock` it yields: for training done outside
    :func:`fit` (a range test's sweeps). Do not call :func:`fit` inside it (its time would count
    twice).

    Example:
        >>> with clock() as c:
        ...     with charged() as block:
        ...         block.steps = 100  # what the block's training took
        >>> c.seconds > 0, c.steps
        (True, 100)
    """
    block = Clock()
    start = time.perf_counter()
    try:
        yield block
    finally:
        elapsed = time.perf_counter() - start
        for c in _CLOCKS.get():
            c.seconds += elapsed
            c.steps += block.steps


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


class TrainOptions(TypedDict, total=False):
    """The rarer keywords of :func:`train_task` and :func:`fit` (see :class:`FitOptions`),
    each optional.

    Attributes:
        on_epoch: Called as ``on_epoch(epoch, value)`` after each evaluated epoch.
        plateau_data: The data a ``plateau`` schedule's metric is computed on, when it is not
            ``eval_data``: pass a slice held out of the training data when ``eval_data`` is
            the test set, so the test never steers training.
        snapshot_steps: Keep the model's state (a CPU copy of its ``state_dict``) after these
            optimizer steps, e.g. ``schedule.cycle_ends(total_steps)`` for a snapshot ensemble
            (Huang et al. 2017); with ``eval_data``, the result then holds the metric of the
            ensemble of the last ``snapshots`` of them and of the last one alone.
        snapshots: How many of the latest snapshots to keep and ensemble (M; default all).
        diagnostics: Measure the update/weight ratio per param group (on about
            ``SAMPLES_PER_EPOCH`` steps per epoch, see :mod:`lrsearch.diagnostics`; default on).
        prune_epochs: The epochs after which ``trial.should_prune()`` is asked (every value
            is reported all the same, so the pruner sees every epoch when it is asked): those
            a pruner can act on, e.g. successive halving's rungs; each asking reads the study's
            trials. Default: every epoch but the last. The last is never asked: the run is done
            then, and pruning it would throw a finished result away and save nothing.
    """

    on_epoch: Callable[[int, float], None] | None
    plateau_data: Data | DataLoader[Any] | None
    snapshot_steps: Sequence[int] | None
    snapshots: int | None
    diagnostics: bool
    prune_epochs: Collection[int] | None


class FitOptions(TrainOptions, total=False):
    """The rarer keywords of :func:`fit`, each optional: :class:`TrainOptions`' and these.

    Attributes:
        maximize: Whether a larger ``metric`` is better (a ``plateau`` schedule's mode);
            ``None`` (default) infers it for ``"accuracy"`` (larger) and ``"loss"`` (smaller),
            and a ``plateau`` schedule with a metric function needs it.
        diverge_factor: An epoch whose mean training loss exceeds this many times the first
            batch's loss counts as diverged (only for a positive first loss; default 4).
    """

    maximize: bool | None
    diverge_factor: float


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
    **options: Unpack[FitOptions],
) -> FitResult:
    """Train ``model`` for ``epochs``, stepping ``schedule`` once per optimizer step (a
    ``plateau`` schedule once per epoch), evaluating ``eval_data`` after every epoch.

    Args:
        model: The model, already on ``device`` (default: where its first parameter is).
        optimizer: Its optimizer. With a ``schedule`` the schedule owns the learning rate;
            without one the optimizer's own LR stays constant.
        loss: The criterion.
        train: ``(x, y)`` tensors (batched by indexing), a ``Dataset`` or a ``DataLoader``
            (used as it is; ``batch_size`` then does not apply).
        epochs: Epochs to train; ``batch_size``: for tensors and datasets.
        schedule: The learning-rate schedule, built over ``epochs * steps_per_epoch`` steps.
        eval_data: Data to evaluate ``metric`` (see :func:`evaluate`) on after every epoch.
        seed: Seeds the shuffling of every epoch (the model's init is the caller's).
        trial: An Optuna trial to report to after every epoch (see the module's docs).
        **options: The rarer keywords, :class:`FitOptions`.

    Returns:
        A :class:`FitResult`. Without a ``trial``, a diverged run stops early and says why in
        ``stop_reason``; its last value is the diverged model's metric.

    Raises:
        optuna.TrialPruned: With a ``trial``, when pruned or stopped early (recorded on the
            trial by :class:`TrialRecord`).
        InvalidParameterError: Bad arguments, e.g. a ``plateau`` schedule without data to
            compute its metric on, or without a direction for a metric function.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> m = torch.nn.Linear(4, 2)
        >>> opt = torch.optim.SGD(m.parameters(), lr=0.1)
        >>> r = fit(m, opt, torch.nn.CrossEntropyLoss(), (x, y), epochs=3, batch_size=16,
        ...         schedule=Schedule("step", max_lr=0.1, step_size=4, decay=0.5),
        ...         eval_data=(x, y))
        >>> r.epochs_run, r.steps, len(r.values), opt.param_groups[0]["lr"], r.lrs
        (3, 12, 3, 0.025, [0.1, 0.05, 0.025])
    """
    asked = _Settings(epochs, batch_size, schedule, eval_data, metric, seed, trial, **options)
    run = _Run(model, optimizer, loss, train, asked, device)
    for epoch in range(1, asked.epochs + 1):
        if not run.train_epoch(epoch):  # its first loss was not finite: nothing was trained
            break
        run.evaluate(epoch)  # with a trial, reports and may raise optuna.TrialPruned
        run.step_plateau(epoch)
        if run.stop is not None:
            break
    return run.finish()


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What :func:`fit` was asked, checked (in the order the checks have always run)."""

    epochs: int
    batch_size: int
    schedule: Schedule | None
    eval_data: Data | DataLoader[Any] | None
    metric: str | Callable[[torch.Tensor, torch.Tensor], float]
    seed: int
    trial: optuna.trial.BaseTrial | None
    maximize: bool | None = None
    diverge_factor: float = 4.0
    on_epoch: Callable[[int, float], None] | None = None
    plateau_data: Data | DataLoader[Any] | None = None
    snapshot_steps: Sequence[int] | None = None
    snapshots: int | None = None
    diagnostics: bool = True
    prune_epochs: Collection[int] | None = None

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        put("epochs", check_positive_int("epochs", self.epochs))
        put("batch_size", check_positive_int("batch_size", self.batch_size))
        put("diverge_factor", check_real("diverge_factor", self.diverge_factor))
        if self.plateau_data is None:
            put("plateau_data", self.eval_data)
        if self.per_epoch and self.plateau_data is None:
            assert self.schedule is not None
            raise InvalidParameterError(
                f"schedule kind {self.schedule.kind!r} is stepped with the metric after every "
                "epoch, so fit needs eval_data or plateau_data to compute it on; got neither"
            )
        put("maximize", _check_maximize(self.maximize, self.metric, needed=self.per_epoch))

    @property
    def per_epoch(self) -> bool:
        """Whether the schedule is stepped once per epoch with the metric (``plateau``)."""
        return self.schedule is not None and self.schedule.kind in PER_EPOCH_KINDS

    def may_prune(self, epoch: int) -> bool:
        """Whether the pruner is asked after ``epoch`` (never after the last)."""
        return epoch < self.epochs and (self.prune_epochs is None or epoch in self.prune_epochs)


class _Stopwatch:
    """The time of one :func:`fit`, less Optuna's storage calls (bookkeeping, not training)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._outside = 0.0

    @contextlib.contextmanager
    def outside(self) -> Iterator[None]:
        """Leave the ``with`` block's time out."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._outside += time.perf_counter() - start

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._start - self._outside

    def charge(self, steps: int) -> None:
        """Add the time so far, and the run's ``steps``, to every active :func:`clock`."""
        for c in _CLOCKS.get():
            c.seconds += self.seconds
            c.steps += steps


class _Run:
    """One call of :func:`fit`: the model, its optimizer, schedule and monitors, and what the
    run has seen so far; one method per step of the loop."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        train: Data | DataLoader[Any],
        asked: _Settings,
        device: torch.device | None,
    ) -> None:
        self.model, self.optimizer, self.loss, self.asked = model, optimizer, loss, asked
        self.device = device if device is not None else next(model.parameters()).device
        generator = torch.Generator().manual_seed(asked.seed)
        self.batches = _Batches(train, asked.batch_size, self.device, generator)
        self.total = asked.epochs * self.batches.steps
        self.keep = _Snapshots(asked.snapshot_steps, asked.snapshots, self.total)
        every = measure_every(self.batches.steps)
        self.monitor = UpdateRatioMonitor(optimizer, every=every) if asked.diagnostics else None
        self.scheduler = (
            None
            if asked.schedule is None
            else asked.schedule.build(optimizer, self.total, maximize=bool(asked.maximize))
        )
        self.watch = _Stopwatch()
        self.values: list[float] = []
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.first_loss: float | None = None
        self.steps = 0
        self.stop: StopReason | None = None
        # Schedule-Free keeps training weights and averaged ones: train on the first, evaluate
        # (and end) on the second.
        self.averaged = has_train_eval(optimizer)
        model.train()

    def train_epoch(self, epoch: int) -> bool:
        """One epoch of optimizer steps, then its mean loss checked for a blow-up; ``False``
        when it stopped at the run's first step (a non-finite first loss)."""
        if self.averaged:
            self.optimizer.train()  # type: ignore[attr-defined]
        self.lrs.append(float(self.optimizer.param_groups[0]["lr"]))
        total = torch.zeros((), device=self.device)
        n_batches = 0
        for xb, yb in self.batches.epoch():
            batch_loss = self._step(xb, yb)
            if batch_loss is None:
                break
            total += batch_loss
            n_batches += 1
        if self.averaged:
            _evaluation_weights(self.optimizer, self.model, self.batches)
        if self.stop is not None:
            return False
        self._check_loss(epoch, float(total) / max(1, n_batches))
        return True

    def _step(self, xb: Any, yb: Any) -> torch.Tensor | None:
        """One optimizer step and the schedule's; the batch's loss (``None``, and a stop, when
        it is the run's first loss and not finite)."""
        self.optimizer.zero_grad(set_to_none=True)
        batch_loss = self.loss(self.model(xb), yb)
        if self.first_loss is None:
            self.first_loss = first = float(batch_loss.detach())
            if not math.isfinite(first):
                self.stop = _non_finite(f"non-finite loss ({first}) at step 0")
                return None
        batch_loss.backward()
        watch = self.monitor if self.monitor is not None and self.monitor.due(self.steps) else None
        if watch is not None:
            watch.before()
        self.optimizer.step()
        if watch is not None:
            watch.after()
        self.steps += 1
        self.keep.take(self.steps, self.model)
        if self.scheduler is not None and not self.asked.per_epoch and self.steps < self.total:
            self.scheduler.step()
        return batch_loss.detach()

    def _check_loss(self, epoch: int, mean_loss: float) -> None:
        """Keep the epoch's mean loss; a stop when it is not finite or far above the first."""
        self.losses.append(mean_loss)
        if self.monitor is not None:
            self.monitor.end_epoch()  # its one sync, here where the loss syncs anyway
        # Checked once per epoch: a per-step float() would sync a GPU every step.
        first, factor = self.first_loss, self.asked.diverge_factor
        if not math.isfinite(mean_loss):
            self.stop = _non_finite(f"non-finite training loss in epoch {epoch}")
        elif first is not None and first > 0 and mean_loss > factor * first:
            self.stop = StopReason(
                "diverged",
                f"diverged in epoch {epoch}: mean loss {mean_loss:.4g} > "
                f"{factor:g} x the first loss {first:.4g}: {TOO_HIGH}",
            )

    def evaluate(self, epoch: int) -> None:
        """The metric on ``eval_data`` after an epoch, for ``on_epoch`` and the trial."""
        asked = self.asked
        if asked.eval_data is None:
            return
        value = self._metric(asked.eval_data)
        if self.stop is None and not math.isfinite(value):
            what = asked.metric if isinstance(asked.metric, str) else "metric"
            self.stop = _non_finite(f"non-finite {what} in epoch {epoch}")
        self.values.append(value)
        if asked.on_epoch is not None:
            asked.on_epoch(epoch, value)
        if asked.trial is not None and self.stop is None:
            self._report(asked.trial, epoch, value)

    def _report(self, trial: optuna.trial.BaseTrial, epoch: int, value: float) -> None:
        """Report the epoch's value to the trial, and stop as pruned when the pruner says so."""
        with self.watch.outside():
            trial.report(value, epoch)
            prune = self.asked.may_prune(epoch) and trial.should_prune()
        if prune:
            words = f"pruner: stopped after epoch {epoch}"
            stuck = stall_reason(self.losses)
            self.stop = (
                StopReason("pruned", words)
                if stuck is None
                else StopReason("stalled", f"{words}: {stuck}")
            )
            self._prune(trial, f"pruned after epoch {epoch}")

    def step_plateau(self, epoch: int) -> None:
        """Step a ``plateau`` schedule with the epoch's metric (not after the last epoch)."""
        asked = self.asked
        if self.stop is not None or not asked.per_epoch or epoch >= asked.epochs:
            return
        assert isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if asked.plateau_data is asked.eval_data:
            self.scheduler.step(self.values[-1])
            return
        assert asked.plateau_data is not None
        watched = self._metric(asked.plateau_data)
        if not math.isfinite(watched):
            self.stop = _non_finite(f"non-finite plateau metric in epoch {epoch}")
            return
        self.scheduler.step(watched)

    def finish(self) -> FitResult:
        """What the run did; with a trial, a run that stopped early is pruned instead."""
        asked = self.asked
        del self.lrs[len(self.losses) :]  # an epoch that stopped at its first step was not run
        if self.stop is not None:
            _log.info("training stopped: %s", self.stop.words)
            if asked.trial is not None:
                self._prune(asked.trial, self.stop.words)
            if asked.eval_data is not None and len(self.values) < max(1, len(self.losses)):
                self.values.append(self._metric(asked.eval_data))
        ensemble = single = None
        if asked.eval_data is not None and self.keep.kept:
            ensemble, single = self.keep.score(
                self.model,
                asked.eval_data,
                metric=asked.metric,
                loss=self.loss,
                device=self.device,
            )
        self.watch.charge(self.steps)
        return self._result(ensemble, single)

    def _prune(self, trial: optuna.trial.BaseTrial, message: str) -> NoReturn:
        self.watch.charge(self.steps)
        TrialRecord(trial).ran(self._result(None, None))
        raise optuna.TrialPruned(message)

    def _metric(self, data: Data | DataLoader[Any]) -> float:
        return evaluate(
            self.model, data, metric=self.asked.metric, loss=self.loss, device=self.device
        )

    def _result(self, ensemble: float | None, single: float | None) -> FitResult:
        return FitResult(
            self.values,
            self.losses,
            len(self.losses),
            self.steps,
            self.watch.seconds,
            None if self.stop is None else self.stop.words,
            self.lrs,
            snapshot_steps=self.keep.steps,
            ensemble_value=ensemble,
            snapshot_value=single,
            update_ratios=None if self.monitor is None else self.monitor.result(),
            stop=self.stop,
        )


def _non_finite(what: str) -> StopReason:
    return StopReason("non-finite", f"{what}: {NON_FINITE}")


class TrialRecord:
    """The one place that writes a training run's user attrs on its Optuna trial (names from
    :mod:`lrsearch.store`): what it trains, before it trains (:meth:`planned`), and what it
    did (:meth:`ran`), whether it completed or was pruned.

    Example:
        >>> trial = optuna.trial.FixedTrial({})
        >>> TrialRecord(trial).planned("constant 0.1", None, [0.1, 0.1])
        >>> trial.user_attrs[SCHEDULE], trial.user_attrs[LR_MEAN], OPTIMIZER in trial.user_attrs
        ('constant 0.1', 0.1, False)
    """

    def __init__(self, trial: optuna.trial.BaseTrial) -> None:
        self.trial = trial

    def planned(self, schedule: str, optimizer: str | None, lrs: Sequence[float]) -> None:
        """What a search trial trains: :meth:`setup`, and the peak and mean of the LRs its
        schedule plans (:meth:`lrs`)."""
        self.setup(schedule, optimizer)
        self.lrs(lrs)

    def setup(self, schedule: str, optimizer: str | None) -> None:
        """The schedule in words, and the optimizer (``None``: the task's own, not written)."""
        self.trial.set_user_attr(SCHEDULE, schedule)
        if optimizer is not None:
            self.trial.set_user_attr(OPTIMIZER, optimizer)

    def lrs(self, lrs: Sequence[float]) -> None:
        """The largest and mean LR: optuna-dashboard sorts numeric attrs only, so they are the
        sortable summary of the schedule's words."""
        self.trial.set_user_attr(LR_PEAK, float(max(lrs)))
        self.trial.set_user_attr(LR_MEAN, float(np.mean(lrs)))

    def ran(self, result: FitResult, *, lrs_as_ran: bool = False) -> None:
        """Why it stopped early (:meth:`StopReason.to_attrs`), how far it got, what the
        diagnostics saw; ``lrs_as_ran``: the LR summary again, from the epochs' LRs (a
        ``plateau`` schedule's, as it ran). A stopped run's flags are the diagnostics' alone
        (written only with them): a stall is in its reason."""
        ratios = result.update_ratios
        for name, value in ({} if result.stop is None else result.stop.to_attrs()).items():
            self.trial.set_user_attr(name, value)
        self.trial.set_user_attr(EPOCHS_RUN, result.epochs_run)
        self.trial.set_user_attr(EPOCH_LRS, result.lrs)
        if ratios is not None:
            self.trial.set_user_attr(UPDATE_RATIOS, ratios.to_dict())
        if result.stop is None:
            self.trial.set_user_attr(FLAGS, result.flags)
        elif ratios is not None:
            self.trial.set_user_attr(FLAGS, ratios.flags)
        if lrs_as_ran:
            self.lrs(result.lrs)


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
    **options: Unpack[TrainOptions],
) -> FitResult:
    """Train a fresh model of ``task`` (initialised from ``seed``) on ``train``.

    The schedule sets the LR; without one, ``lr`` is the constant LR. ``optimizer_factory``
    replaces the task's (the Adam baseline uses it). A ``plateau`` schedule is stepped in the
    task's direction (``task.maximize``) with the metric on ``plateau_data`` (default:
    ``eval_data``). ``options`` are :func:`fit`'s (:class:`TrainOptions`): e.g.
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
        maximize=task.maximize,
        **options,
    )
