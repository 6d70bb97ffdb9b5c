"""The sweep: :func:`range_test` itself, its training loop, divergence watch and refinement."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer

from lrsearch._optim import lr_ratios, set_lrs
from lrsearch._validation import check_positive_int, check_real, check_seed
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
        optimizer: Its optimizer. Each step sets every param group's LR to the rung times
            the ratio that group's LR had to the first group's, so the ratios are kept.
        criterion: ``criterion(outputs, targets)`` returns the scalar loss.
        loader: Batches, iterated again from the start when shorter than ``num_iter``.
        start_lr: The first rung (of the first param group).
        end_lr: The last rung; both ends are hit exactly.
        num_iter: Rungs, one optimizer step each (at least 5).
        mode: ``"exp"`` (rungs evenly spaced in log-LR) or ``"linear"``.
        diverge_threshold: Stop once the median of the last 5 losses has risen above the
            best median by this fraction of how far the loss had fallen, and by clearly more
            than its own batch-to-batch noise (so it works with negative losses and any loss
            scale, and noise at tiny LRs never stops a sweep). NaN/inf losses stop at once.
        batch_fn: Turns one batch into ``(inputs, targets)``. By default a batch is an
            ``(inputs, targets)`` pair. ``inputs`` may be a tensor (``model(inputs)``), a
            tuple (``model(*inputs)``) or a dict (``model(**inputs)``); tensors in it are
            moved to the model's device. Use it for longer tuples and dict batches, e.g.
            ``batch_fn=lambda b: ({"input_ids": b["ids"], "mask": b["mask"]}, b["label"])``.
        scaler: An AMP ``GradScaler``: the forward pass runs under ``torch.autocast``, steps
            the scaler skips (inf/NaN gradients) do not advance the ladder, and the scaler's
            state is restored.
        repeats: Sweeps to run, each from the same starting point with another data order
            and dropout (seeds ``seed``, ``seed + 1``, ...); ``suggestion`` and ``bounds`` are
            then medians over the sweeps, ``spread_decades`` their spread.
        seed: Seeds torch's RNG (and the loader's own generators) for the first sweep, so the
            data order and dropout are reproducible. ``None``: the first sweep uses the RNG
            as it stands, later sweeps seeds drawn from it. Either way, every RNG is put back.
        refine: Candidates for short confirmation runs (0 or 1: none). With ``k >= 2``, ``k``
            LRs spaced evenly in log-LR from a third of the sweep's suggestion to three times
            it (none above ``bounds.high``) each train at that constant LR for
            ``refine_steps`` steps from the same start on the same batches, and the one with
            the lowest loss over its last quarter becomes ``suggestion``
            (:class:`Refinement`). Costs ``k * refine_steps`` more steps.
        refine_steps: Steps per confirmation run (default ``num_iter``).
        total_steps: The optimizer steps of the run the suggestion is for (epochs times
            batches per epoch), if known. The best constant LR depends on how long it is used:
            a longer run can afford a smaller step, and a smaller step ends nearer the
            minimum. With it, the suggestion is the LR for a constant-LR run of that length;
            without it, for a run of 500 steps (the rule's reference length, see
            :class:`~lrsearch.range_test.curve.Rule`). ``bounds.low`` reaches down by the
            sweep's length over the run's (a long run learns at LRs where the sweep had barely
            begun to); ``bounds.high`` does not depend on it.
        diagnostics: Measure the update/weight ratio ``||dw|| / ||w||`` of every step of the
            sweeps, per param group (:attr:`Sweep.update_ratios`): where it crosses about 1e-3
            is CS231n's rule of thumb for a learning rate (costs one copy of the weights).

    Returns:
        A :class:`RangeTestResult`.

    Raises:
        InvalidParameterError: bad arguments (``start_lr >= end_lr``, ``num_iter < 5``, an
            empty loader, ...), with the value in the message.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x = torch.randn(256, 4)
        >>> y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        >>> loader = torch.utils.data.DataLoader(list(zip(x, y)), batch_size=32, shuffle=True)
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.01)
        >>> mse = lambda out, target: torch.nn.functional.mse_loss(out.squeeze(1), target)
        >>> result = range_test(model, opt, mse, loader, end_lr=1.0, num_iter=60, seed=0)
        >>> result.bounds.low < result.suggestion < result.bounds.high
        True
        >>> opt.param_groups[0]["lr"]  # restored
        0.01
    """
    start_lr = check_real("start_lr", start_lr)
    end_lr = check_real("end_lr", end_lr)
    if not start_lr > 0:
        raise InvalidParameterError(f"start_lr must be positive; got {start_lr!r}")
    if not start_lr < end_lr:
        raise InvalidParameterError(
            f"start_lr must be below end_lr={end_lr!r}; got start_lr={start_lr!r}"
        )
    num_iter = check_positive_int("num_iter", num_iter)
    if num_iter < MIN_ITER:
        raise InvalidParameterError(f"num_iter must be at least {MIN_ITER}; got {num_iter}")
    if mode not in ("exp", "linear"):
        raise InvalidParameterError(f"mode must be 'exp' or 'linear'; got {mode!r}")
    diverge_threshold = check_real("diverge_threshold", diverge_threshold)
    if not diverge_threshold > 0:
        raise InvalidParameterError(
            f"diverge_threshold must be positive; got {diverge_threshold!r}"
        )
    repeats = check_positive_int("repeats", repeats)
    seed = check_seed("seed", seed)
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
        raise InvalidParameterError(f"refine must be a non-negative integer; got {refine!r}")
    if total_steps is not None:
        total_steps = check_positive_int("total_steps", total_steps)
    refine_steps = check_positive_int(
        "refine_steps", num_iter if refine_steps is None else refine_steps
    )
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(f"model must be a torch.nn.Module; got {model!r}")
    if not isinstance(optimizer, Optimizer):
        raise InvalidParameterError(
            f"optimizer must be a torch.optim.Optimizer; got {optimizer!r}"
        )

    if mode == "exp":
        ladder = np.geomspace(start_lr, end_lr, num_iter)
    else:
        ladder = np.linspace(start_lr, end_lr, num_iter)
    ladder[0], ladder[-1] = start_lr, end_lr  # exactly, whatever the rounding inside

    ratios = lr_ratios(optimizer)
    device = _device_of(model)

    generators = generators_of(loader)
    snapshot = Snapshot(model, optimizer, scaler, generators)
    if seed is not None:
        seeds: list[int | None] = [seed + r for r in range(repeats)]
    else:  # the first sweep as things stand, the others from seeds drawn here (restored after)
        seeds = [None, *torch.randint(2**31 - 1, (repeats - 1,)).tolist()]

    def run(
        rungs: np.ndarray, measure: bool = False
    ) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
        return _sweep(
            model,
            optimizer,
            criterion,
            loader,
            rungs,
            ratios,
            batch_fn or _pair,
            device,
            scaler,
            diverge_threshold,
            UpdateRatioMonitor(optimizer) if measure else None,
        )

    sweeps: list[Sweep] = []
    try:
        for r, sweep_seed in enumerate(seeds):
            if r:
                snapshot.restore()
            if sweep_seed is not None:
                torch.manual_seed(sweep_seed)
                for generator in generators:
                    generator.manual_seed(sweep_seed)
            began = time.perf_counter()
            lrs, losses, reason, measured = run(ladder, diagnostics)
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
                repeats,
                len(lrs),
                reason,
                sweeps[-1].suggestion,
                sweeps[-1].low,
                sweeps[-1].high,
            )
        result = RangeTestResult.from_sweeps(
            sweeps,
            start_lr=start_lr,
            end_lr=end_lr,
            num_iter=num_iter,
            mode=mode,
            total_steps=total_steps,
        )
        if refine >= 2:
            refinement = _refine(
                _candidates(result.suggestion, result.bounds.high, refine),
                refine_steps,
                seeds[0] if seeds[0] is not None else int(torch.randint(2**31 - 1, ()).item()),
                snapshot,
                generators,
                lambda rungs: run(rungs)[:3],
            )
            result = dataclasses.replace(
                result, suggestion=refinement.chosen, refinement=refinement
            )
    finally:
        snapshot.restore()

    for line in result.advice:
        logger.warning("range test: %s", line)
    return result


#: Confirmation runs try LRs from suggestion / _REFINE_SPAN to suggestion * _REFINE_SPAN.
_REFINE_SPAN: Final = 3.0


def _candidates(suggestion: float, high: float, k: int) -> list[float]:
    """``k`` LRs evenly spaced in log-LR around ``suggestion``; none above ``high``."""
    top = min(suggestion * _REFINE_SPAN, max(high, suggestion))
    return [float(v) for v in np.geomspace(top / _REFINE_SPAN**2, top, k)]


def _refine(
    candidates: list[float],
    steps: int,
    seed: int,
    snapshot: Snapshot,
    generators: list[torch.Generator],
    run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, str]],
) -> Refinement:
    """Train each candidate LR for ``steps`` steps from the snapshot; the lowest final wins."""
    began = time.perf_counter()
    scores = []
    for lr in candidates:
        snapshot.restore()
        torch.manual_seed(seed)
        for generator in generators:
            generator.manual_seed(seed)
        _, losses, reason = run(np.full(steps, lr))
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
    model: nn.Module,
    optimizer: Optimizer,
    criterion: Callable[[Any, Any], torch.Tensor],
    loader: Iterable[Any],
    ladder: np.ndarray,
    ratios: list[float],
    batch_fn: BatchFn,
    device: torch.device,
    scaler: torch.amp.GradScaler | None,
    diverge_threshold: float,
    monitor: UpdateRatioMonitor | None = None,
) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
    """One pass up ``ladder``: the rungs run, their losses, why it stopped and, with a
    ``monitor``, each step's update/weight ratio per param group (``(groups, steps)``)."""
    batches = _cycle(loader)
    watch = DivergenceWatch.for_ladder(len(ladder), diverge_threshold)
    amp = scaler is not None and scaler.is_enabled()
    if not model.training:
        # A model handed over in eval mode is trained as a whole; one in train mode is left
        # as it is, so submodules its owner froze with .eval() (BatchNorm, say) stay frozen.
        model.train()
    losses: list[float] = []
    reason, rung, skips = "completed", 0, 0
    while rung < len(ladder):
        set_lrs(optimizer, float(ladder[rung]), ratios)
        inputs, targets = batch_fn(next(batches))
        inputs, targets = _to_device(inputs, device), _to_device(targets, device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type) if amp else contextlib.nullcontext():
            loss = criterion(_call(model, inputs), targets)
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
