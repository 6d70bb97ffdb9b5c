"""The sweep: :func:`range_test` itself, its training loop, divergence watch and refinement."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import numbers
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer

from lrsearch._optim import lr_ratios, set_lrs
from lrsearch._validation import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    POSITIVE_REAL,
    REAL,
    Constraint,
    InstanceOf,
    Interval,
    Options,
    OrNone,
    below,
    check,
    validate_params,
)
from lrsearch.choices import MIN_ITER
from lrsearch.diagnostics import UpdateRatioMonitor
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.range_test.curve import WATCH_WINDOW, read_curve
from lrsearch.range_test.result import RangeTestResult, Refinement, Sweep
from lrsearch.range_test.snapshot import Snapshot, generators_of, tensors_of

__all__ = ["DivergenceWatch", "range_test"]

logger = logging.getLogger(__name__)

BatchFn = Callable[[Any], tuple[Any, Any]]

_MAX_AMP_SKIPS: Final = 20  # consecutive steps an AMP scaler may skip before the sweep stops


# What range_test's arguments must be; start_lr < end_lr is checked in it.
_ARGUMENTS: Final[dict[str, Constraint]] = {
    "model": InstanceOf(nn.Module, "a torch.nn.Module"),
    "optimizer": InstanceOf(Optimizer, "a torch.optim.Optimizer"),
    "start_lr": POSITIVE_REAL,
    "end_lr": REAL,
    "num_iter": Interval(numbers.Integral, MIN_ITER, None, closed="left"),
    "mode": Options(("exp", "linear")),
    "diverge_threshold": POSITIVE_REAL,
    "repeats": POSITIVE_INT,
    "seed": OrNone(NON_NEGATIVE_INT),
    "refine": NON_NEGATIVE_INT,
    "refine_steps": OrNone(POSITIVE_INT),
    "total_steps": OrNone(POSITIVE_INT),
}


@validate_params(**_ARGUMENTS)
def range_test(
    model: nn.Module,
    optimizer: Optimizer,
    criterion: Callable[[Any, Any], torch.Tensor],
    loader: Iterable[Any],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    mode: Literal["exp", "linear"] = "exp",
    diverge_threshold: float = 0.5,
    batch_fn: BatchFn | None = None,
    scaler: torch.amp.GradScaler | None = None,
    repeats: int = 1,
    seed: int | None = None,
    refine: int = 0,
    refine_steps: int | None = None,
    total_steps: int | None = None,
    diagnostics: bool = True,
) -> RangeTestResult:
    """Run an LR range test and put the model, optimizer and RNGs back as they were.

    Args:
        model: The model, on whatever device it lives on; batches are moved there.
        optimizer: Its optimizer; each param group keeps the ratio of its LR to the first's.
        criterion: ``criterion(outputs, targets)`` returns the scalar loss.
        loader: Batches, iterated again from the start when shorter than ``num_iter``.
        start_lr: The first rung (of the first param group), hit exactly.
        end_lr: The last rung, hit exactly.
        num_iter: Rungs, one optimizer step each (at least 5).
        mode: ``"exp"`` (rungs evenly spaced in log-LR) or ``"linear"``.
        diverge_threshold: Stop once the loss has risen back this fraction of its fall, and
            clearly above its noise (:class:`DivergenceWatch`); a NaN/inf loss stops at once.
        batch_fn: A batch to ``(inputs, targets)`` (default: it is that pair); ``inputs`` is a
            tensor, a tuple (``model(*inputs)``) or a dict (``model(**inputs)``).
        scaler: An AMP ``GradScaler``: steps under ``torch.autocast``; a skipped one is retried.
        repeats: Sweeps from the same start, seeded ``seed``, ``seed + 1``...: ``suggestion``
            and ``bounds`` are their medians, ``spread_decades`` their spread.
        seed: Seeds torch's and the loader's RNGs (``None``: as they stand).
        refine: ``k >= 2``: ``k`` short constant-LR runs around the suggestion; the best
            becomes the suggestion (:class:`Refinement`). 0 or 1: none.
        refine_steps: Steps of each of those runs (default ``num_iter``).
        total_steps: Steps of the run the suggestion is for (default: the :class:`Rule`'s
            500); a longer run gets a lower suggestion and ``bounds.low``.
        diagnostics: Record the update/weight ratio of each step (:attr:`Sweep.update_ratios`).

    Returns:
        A :class:`RangeTestResult`.

    Raises:
        InvalidParameterError: a bad argument, named with its value, or an empty loader.

    Example:
        >>> x = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
        >>> loader = list(zip(x.split(32), (x @ torch.tensor([1.0, -2.0, 0.5, 3.0])).split(32)))
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.01)
        >>> mse = lambda out, target: torch.nn.functional.mse_loss(out.squeeze(1), target)
        >>> result = range_test(model, opt, mse, loader, end_lr=1.0, num_iter=60, seed=0)
        >>> result.bounds.low < result.suggestion < result.bounds.high
        True
        >>> opt.param_groups[0]["lr"]  # restored
        0.01
    """
    check("start_lr", start_lr, below("end_lr", end_lr))
    ladder = _Ladder(start_lr, end_lr, num_iter, mode)
    sweeper = _Sweeper.start(
        model, optimizer, criterion, loader, batch_fn or _pair, scaler, diverge_threshold
    )
    with sweeper:  # puts everything back, whatever happens
        seeds = sweeper.seeds(seed, repeats)
        sweeps = sweeper.sweeps(ladder.rungs(), seeds, diagnostics, total_steps)
        result = ladder.result(sweeps, total_steps)
        if refine >= 2:
            steps = num_iter if refine_steps is None else refine_steps
            result = sweeper.refine(result, refine, steps, seeds[0])
    for line in result.advice:
        logger.warning("range test: %s", line)
    return result


class _Ladder(NamedTuple):
    """The rungs of a sweep: ``num_iter`` LRs from ``start_lr`` to ``end_lr``."""

    start_lr: float
    end_lr: float
    num_iter: int
    mode: str

    def rungs(self) -> np.ndarray:
        """The LRs, both ends exact."""
        space = np.geomspace if self.mode == "exp" else np.linspace
        ladder = space(self.start_lr, self.end_lr, self.num_iter)
        ladder[0], ladder[-1] = self.start_lr, self.end_lr  # exactly, whatever the rounding
        return ladder

    def result(self, sweeps: list[Sweep], total_steps: int | None) -> RangeTestResult:
        """The result of ``sweeps`` of this ladder."""
        return RangeTestResult.from_sweeps(
            sweeps,
            start_lr=self.start_lr,
            end_lr=self.end_lr,
            num_iter=self.num_iter,
            mode=self.mode,
            total_steps=total_steps,
        )


#: Confirmation runs try LRs from suggestion / _REFINE_SPAN to suggestion * _REFINE_SPAN.
_REFINE_SPAN: Final = 3.0


def _candidates(suggestion: float, high: float, k: int) -> list[float]:
    """``k`` LRs evenly spaced in log-LR around ``suggestion``; none above ``high``."""
    top = min(suggestion * _REFINE_SPAN, max(high, suggestion))
    return [float(v) for v in np.geomspace(top / _REFINE_SPAN**2, top, k)]


@dataclasses.dataclass
class _Sweeper:
    """What the sweeps and confirmation runs of one range test share: the training set-up, the
    snapshot each starts from (restored on leaving a ``with`` block), the RNGs each seeds."""

    model: nn.Module
    optimizer: Optimizer
    criterion: Callable[[Any, Any], torch.Tensor]
    loader: Iterable[Any]
    batch_fn: BatchFn
    scaler: torch.amp.GradScaler | None
    diverge_threshold: float
    ratios: list[float]
    device: torch.device
    generators: list[torch.Generator]
    snapshot: Snapshot

    @classmethod
    def start(
        cls,
        model: nn.Module,
        optimizer: Optimizer,
        criterion: Callable[[Any, Any], torch.Tensor],
        loader: Iterable[Any],
        batch_fn: BatchFn,
        scaler: torch.amp.GradScaler | None,
        diverge_threshold: float,
    ) -> _Sweeper:
        """Read the LR ratios, the device and the loader's generators; take the snapshot."""
        ratios = lr_ratios(optimizer)
        device = _device_of(model)
        generators = generators_of(loader)
        snapshot = Snapshot(model, optimizer, scaler, generators)
        return cls(model, optimizer, criterion, loader, batch_fn, scaler, diverge_threshold,
                   ratios, device, generators, snapshot)  # fmt: skip

    def __enter__(self) -> _Sweeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.snapshot.restore()

    def seeds(self, seed: int | None, repeats: int) -> list[int | None]:
        """The seed of each sweep: ``seed``, ``seed + 1``... or, without one, the RNG as it
        stands for the first and seeds drawn from it (restored after) for the others."""
        if seed is not None:
            return [seed + r for r in range(repeats)]
        return [None, *torch.randint(2**31 - 1, (repeats - 1,)).tolist()]

    def seed(self, seed: int | None) -> None:
        """Seed torch's RNG and the loader's generators (``None``: leave them)."""
        if seed is not None:
            torch.manual_seed(seed)
            for generator in self.generators:
                generator.manual_seed(seed)

    def run(
        self, rungs: np.ndarray, measure: bool = False
    ) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
        """One pass up ``rungs`` from where the model is (see :func:`_sweep`)."""
        monitor = UpdateRatioMonitor(self.optimizer) if measure else None
        return _sweep(self, rungs, monitor)

    def sweeps(
        self,
        ladder: np.ndarray,
        seeds: list[int | None],
        diagnostics: bool,
        total_steps: int | None,
    ) -> list[Sweep]:
        """One read sweep up ``ladder`` per seed, each from the snapshot."""
        sweeps: list[Sweep] = []
        for r, sweep_seed in enumerate(seeds):
            if r:
                self.snapshot.restore()
            self.seed(sweep_seed)
            began = time.perf_counter()
            lrs, losses, reason, measured = self.run(ladder, diagnostics)
            curve = read_curve(
                lrs,
                losses,
                stop_reason=reason,
                seconds=time.perf_counter() - began,
                total_steps=total_steps,
            )
            sweeps.append(dataclasses.replace(curve, update_ratios=measured))
            logger.info(
                "range test sweep %d/%d: %d steps, %s, suggestion %.3g, bounds %.3g-%.3g",
                r + 1,
                len(seeds),
                len(lrs),
                reason,
                sweeps[-1].suggestion,
                sweeps[-1].low,
                sweeps[-1].high,
            )
        return sweeps

    def refine(
        self, result: RangeTestResult, k: int, steps: int, seed: int | None
    ) -> RangeTestResult:
        """``result`` with the suggestion of ``k`` confirmation runs (:class:`Refinement`)."""
        candidates = _candidates(result.suggestion, result.bounds.high, k)
        if seed is None:
            seed = int(torch.randint(2**31 - 1, ()).item())
        refinement = self.confirm(candidates, steps, seed)
        return dataclasses.replace(result, suggestion=refinement.chosen, refinement=refinement)

    def confirm(self, candidates: list[float], steps: int, seed: int) -> Refinement:
        """Train each candidate LR for ``steps`` steps from the snapshot; the lowest final wins."""
        began = time.perf_counter()
        scores = []
        for lr in candidates:
            self.snapshot.restore()
            self.seed(seed)
            _, losses, reason, _ = self.run(np.full(steps, lr))
            tail = losses[-max(1, len(losses) // 4) :]
            ok = reason == "completed" and len(losses) == steps
            scores.append(float(np.mean(tail)) if ok else math.inf)
            logger.info("range test refinement: lr %.3g -> %.4g (%s)", lr, scores[-1], reason)
        best = int(np.argmin(scores))
        # All diverged: the smallest is the safest guess.
        chosen = candidates[best] if math.isfinite(scores[best]) else candidates[0]
        return Refinement(
            candidates=tuple(candidates),
            scores=tuple(scores),
            steps=steps,
            seconds=time.perf_counter() - began,
            chosen=chosen,
        )


# -- the sweep ------------------------------------------------------------------------------


def _sweep(
    setup: _Sweeper, ladder: np.ndarray, monitor: UpdateRatioMonitor | None = None
) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
    """One pass up ``ladder``: the rungs run, their losses, why it stopped and, with a
    ``monitor``, each step's update/weight ratio per param group (``(groups, steps)``)."""
    model, optimizer, scaler, device = setup.model, setup.optimizer, setup.scaler, setup.device
    batches = _cycle(setup.loader)
    watch = DivergenceWatch.for_ladder(len(ladder), setup.diverge_threshold)
    amp = scaler is not None and scaler.is_enabled()
    if not model.training:
        # A model handed over in eval mode is trained as a whole; one in train mode is left
        # as it is, so submodules its owner froze with .eval() (BatchNorm, say) stay frozen.
        model.train()
    losses: list[float] = []
    reason, rung, skips = "completed", 0, 0
    while rung < len(ladder):
        set_lrs(optimizer, float(ladder[rung]), setup.ratios)
        inputs, targets = setup.batch_fn(next(batches))
        inputs, targets = _to_device(inputs, device), _to_device(targets, device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type) if amp else contextlib.nullcontext():
            loss = setup.criterion(_call(model, inputs), targets)
        if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
            raise InvalidParameterError(
                f"criterion must return a scalar tensor; got {type(loss).__name__}"
                + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else "")
            )
        if monitor is not None:
            monitor.before()
        if amp:
            assert scaler is not None
            scale = scaler.get_scale()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if monitor is not None:
                monitor.after()
            if scaler.get_scale() < scale:  # inf/NaN gradients: the step was skipped
                if monitor is not None:
                    monitor.discard()
                skips += 1
                if skips >= _MAX_AMP_SKIPS:
                    reason = "amp-skips"
                    break
                continue  # same rung again, next batch
            skips = 0
        else:
            loss.backward()
            optimizer.step()
            if monitor is not None:
                monitor.after()
        value = float(loss.item())
        if not math.isfinite(value):
            if monitor is not None:
                monitor.discard()
            reason = "non-finite"
            break
        losses.append(value)
        rung += 1
        if watch.diverged(value):
            reason = "diverged"
            break
    if len(losses) < MIN_ITER:
        raise LrsearchError(
            f"the range test stopped after {len(losses)} steps ({reason}): too few to read; "
            f"lower start_lr (the loss is already unstable at {ladder[0]:g})"
        )
    measured = None if monitor is None else monitor.take()[0].T.copy()
    return ladder[: len(losses)].copy(), np.asarray(losses, dtype=np.float64), reason, measured


class DivergenceWatch:
    """Sign- and scale-free divergence, judged on the running median of the last 5 raw losses.

    The sweep has diverged once that median rises above its best by more than
    ``threshold`` times the fall so far (start minus best), and by more than 8 times its own
    noise. The noise is estimated from the step-to-step differences of the raw loss over
    every step so far (robust to a slow drift, and to a handful of lucky batches at the start,
    which a fixed early window is not: with heavy-tailed batch losses it underestimated the
    noise four-fold and stopped sweeps on a plateau), so batch-to-batch noise never ends a
    sweep and a loss that never fell stops only on a clear rise. No verdict before
    ``min_steps`` losses.

    Example:
        >>> watch = DivergenceWatch(threshold=0.5, min_steps=5)
        >>> [watch.diverged(v) for v in [3.0, 3.1, 2.9, 3.0, 2.0, 1.0, 1.0, 1.1, 0.9, 1.0]]
        [False, False, False, False, False, False, False, False, False, False]
        >>> [watch.diverged(v) for v in [4.0, 9.0, 9.0]]
        [False, False, True]
    """

    @classmethod
    def for_ladder(cls, rungs: int, threshold: float) -> DivergenceWatch:
        """The watch :func:`range_test` uses on a ladder of ``rungs`` rungs: no verdict in
        its first fifth (a tenth let nine batches of a transformer's noisy start stop a sweep).
        """
        return cls(threshold, min_steps=max(WATCH_WINDOW, rungs // 5))

    def __init__(self, threshold: float, min_steps: int) -> None:
        self.threshold = threshold
        self.min_steps = min_steps
        self.recent: deque[float] = deque(maxlen=WATCH_WINDOW)
        self.jumps: list[float] = []  # |difference| of consecutive raw losses
        self.start = math.nan
        self.best = math.inf

    def diverged(self, loss: float) -> bool:
        """Take the next raw loss; whether the sweep has now diverged."""
        if self.recent:
            self.jumps.append(abs(loss - self.recent[-1]))
        self.recent.append(loss)
        if len(self.recent) < WATCH_WINDOW:
            return False
        level = sorted(self.recent)[WATCH_WINDOW // 2]  # np.median costs 100x more here
        if math.isnan(self.start):
            self.start = level
        self.best = min(self.best, level)
        if len(self.jumps) < self.min_steps - 1:
            return False
        rise, fall = level - self.best, self.start - self.best
        if not rise > self.threshold * fall:  # the cheap test first: most steps end here
            return False
        sigma = float(np.median(self.jumps)) / (0.6745 * math.sqrt(2))  # of one raw loss
        # The median of 5 draws scatters about 0.56 times as much as one draw.
        noise = max(0.56 * sigma, 1e-9 * abs(self.start), 1e-30)
        return rise > 8 * noise


# -- batches ---------------------------------------------------------------------------------


def _pair(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, Sequence) and not isinstance(batch, str) and len(batch) == 2:
        return batch[0], batch[1]
    kind = f"a dict with keys {sorted(batch)}" if isinstance(batch, Mapping) else repr(type(batch))
    length = f" of length {len(batch)}" if isinstance(batch, Sequence) else ""
    raise InvalidParameterError(
        f"a batch must be an (inputs, targets) pair, or pass batch_fn= to unpack it; "
        f"got {kind}{length}"
    )


def _cycle(loader: Iterable[Any]) -> Iterator[Any]:
    """The loader's batches over and over (a fresh pass each time, so shuffling reshuffles)."""
    passes = 0
    while True:
        count = 0
        for batch in loader:
            count += 1
            yield batch
        if count == 0 and passes == 0:
            raise InvalidParameterError(
                f"loader must yield at least one batch; got none from {loader!r}"
            )
        if count == 0:
            raise InvalidParameterError(
                f"loader ran out and cannot be iterated again (a one-shot iterator?): pass a "
                f"DataLoader or a list, or a num_iter it can cover; got {loader!r}"
            )
        passes += 1


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _device_of(model: nn.Module) -> torch.device:
    for tensor in tensors_of(model):
        return tensor.device
    raise InvalidParameterError("model has no parameters or buffers to train")
