"""The LR range test: sweep the learning rate up over one short run, read the loss, restore.

:func:`range_test` trains ``num_iter`` optimizer steps, one per rung of a ladder of learning
rates from ``start_lr`` to ``end_lr``, records the loss of every step, and stops early once
the loss diverges. Then it puts back everything the sweep touched and reads the curve:

- the curve is smoothed with a running median and a centred moving average (zero lag): a
  causal moving average, as other range tests use, drags the curve to the right, towards
  larger LRs;
- slopes are taken against log10(LR), the axis the ladder is uniform on;
- ``bounds.low`` is where the loss has started to fall, ``bounds.high`` the edge just past its
  minimum, before it climbs back;
- ``suggestion`` is one learning rate for a constant-LR run (see :func:`_read_curve`).

What it restores, in a ``finally`` (so also after an exception mid-sweep): every parameter and
buffer of the model (BatchNorm statistics included, non-persistent buffers too), their
gradients, every module's train/eval mode, the optimizer's state and hyperparameters, the
torch, CUDA, NumPy and Python RNG states, the loader's own generator, and an AMP ``GradScaler``.
The copy lives in CPU memory: no temporary files, and no second copy of the weights on the GPU.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import torch
from scipy.ndimage import median_filter, uniform_filter1d
from torch import nn
from torch.optim import Optimizer

from lrsearch._optim import lr_ratios, set_lrs
from lrsearch._validation import check_positive_int, check_real, check_seed
from lrsearch.choices import MIN_ITER
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.space import LRBounds

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["RangeTestResult", "Refinement", "Sweep", "range_test"]

logger = logging.getLogger(__name__)

BatchFn = Callable[[Any], tuple[Any, Any]]

_WATCH_WINDOW: Final = 5  # divergence is judged on the median of the last 5 raw losses
_MAX_AMP_SKIPS: Final = 20  # consecutive steps an AMP scaler may skip before the sweep stops
_FALL_STARTED: Final = 0.05  # bounds.low: the loss has done 5% of its fall
_EDGE_RISE: Final = 0.1  # bounds.high: past the minimum, before it climbs back 10% of the fall


@dataclass(frozen=True)
class Sweep:
    """One sweep of the ladder and what was read off it.

    Attributes:
        lrs: The learning rate of each step run (of the first param group).
        losses_raw: The loss of each step run (finite values only).
        losses: ``losses_raw`` smoothed with zero lag.
        stop_reason: ``"completed"``, ``"diverged"`` (the loss rose far above its best),
            ``"non-finite"`` (a NaN or inf loss) or ``"amp-skips"`` (the scaler kept skipping).
        suggestion: One learning rate for a constant-LR run.
        low: Where the loss has started to fall.
        high: The edge just past the smoothed loss's minimum, before it climbs back.
        steepest: Where the smoothed loss falls fastest per decade of LR.
        minimum: Where the smoothed loss is lowest.
        no_valley: The loss never fell clearly more than its noise: nothing to read.
        seconds: Wall time of the sweep.
    """

    lrs: np.ndarray
    losses_raw: np.ndarray
    losses: np.ndarray
    stop_reason: str
    suggestion: float
    low: float
    high: float
    steepest: float
    minimum: float
    no_valley: bool
    seconds: float

    @property
    def diverged(self) -> bool:
        """The sweep stopped because the loss blew up (rose far above its best, or NaN/inf)."""
        return self.stop_reason in ("diverged", "non-finite")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: arrays become lists of floats."""
        return {
            "lrs": self.lrs.tolist(),
            "losses_raw": self.losses_raw.tolist(),
            "losses": self.losses.tolist(),
            "stop_reason": self.stop_reason,
            "suggestion": self.suggestion,
            "low": self.low,
            "high": self.high,
            "steepest": self.steepest,
            "minimum": self.minimum,
            "no_valley": self.no_valley,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sweep:
        """The inverse of :meth:`to_dict`."""
        return cls(
            lrs=np.asarray(data["lrs"], dtype=np.float64),
            losses_raw=np.asarray(data["losses_raw"], dtype=np.float64),
            losses=np.asarray(data["losses"], dtype=np.float64),
            stop_reason=str(data["stop_reason"]),
            suggestion=float(data["suggestion"]),
            low=float(data["low"]),
            high=float(data["high"]),
            steepest=float(data["steepest"]),
            minimum=float(data["minimum"]),
            no_valley=bool(data["no_valley"]),
            seconds=float(data["seconds"]),
        )


@dataclass(frozen=True)
class Refinement:
    """Short constant-LR confirmation runs around the sweep's suggestion (``refine=k``).

    Every candidate trains from the same starting point on the same batches for ``steps``
    steps; the one with the lowest loss over the last quarter of its steps is ``chosen``.

    Attributes:
        candidates: The LRs tried, ascending. scores: their final losses (``inf``: diverged).
        steps: Steps per run. seconds: wall time of all the runs. chosen: the winner.
    """

    candidates: tuple[float, ...]
    scores: tuple[float, ...]
    steps: int
    seconds: float
    chosen: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (an infinite score is stored as ``None``)."""
        return {
            "candidates": list(self.candidates),
            "scores": [v if math.isfinite(v) else None for v in self.scores],
            "steps": self.steps,
            "seconds": self.seconds,
            "chosen": self.chosen,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Refinement:
        """The inverse of :meth:`to_dict`."""
        return cls(
            candidates=tuple(float(v) for v in data["candidates"]),
            scores=tuple(math.inf if v is None else float(v) for v in data["scores"]),
            steps=int(data["steps"]),
            seconds=float(data["seconds"]),
            chosen=float(data["chosen"]),
        )


@dataclass(frozen=True)
class RangeTestResult:
    """What :func:`range_test` found.

    With ``repeats=1`` everything comes from the one sweep. With more, ``suggestion`` and
    ``bounds`` are medians over the sweeps, ``spread_decades`` says how far apart the sweeps'
    suggestions were, and ``lrs`` / ``losses`` show the first sweep.

    Attributes:
        suggestion: One learning rate for a constant-LR run.
        bounds: ``LRBounds(low, high)``: where the loss starts to fall, and the edge just past
            its minimum.
        sweeps: Every sweep, in order.
        start_lr: The ladder's first rung. end_lr: its last. num_iter: rungs asked for.
        mode: ``"exp"`` or ``"linear"``.
        refinement: The confirmation runs when ``refine`` was asked for (``suggestion`` is
            then their winner), else ``None``.
    """

    suggestion: float
    bounds: LRBounds
    sweeps: tuple[Sweep, ...]
    start_lr: float
    end_lr: float
    num_iter: int
    mode: str
    refinement: Refinement | None = None

    @property
    def lrs(self) -> np.ndarray:
        """The first sweep's learning rate per step."""
        return self.sweeps[0].lrs

    @property
    def losses_raw(self) -> np.ndarray:
        """The first sweep's raw loss per step."""
        return self.sweeps[0].losses_raw

    @property
    def losses(self) -> np.ndarray:
        """The first sweep's smoothed loss per step."""
        return self.sweeps[0].losses

    @property
    def num_iter_run(self) -> int:
        """Steps the first sweep ran before it stopped."""
        return len(self.sweeps[0].lrs)

    @property
    def diverged(self) -> bool:
        """Every sweep stopped on a diverging loss (the range was wide enough)."""
        return all(s.diverged for s in self.sweeps)

    @property
    def never_diverged(self) -> bool:
        """Some sweep reached ``end_lr`` with the loss still at its lowest near the end: the
        range was too narrow; raise ``end_lr``."""
        return any(s.stop_reason == "completed" and s.high >= s.lrs[-1] for s in self.sweeps)

    @property
    def no_valley(self) -> bool:
        """Some sweep's loss never fell clearly more than its noise."""
        return any(s.no_valley for s in self.sweeps)

    @property
    def spread_decades(self) -> float:
        """``log10(max / min)`` of the sweeps' suggestions (0 with one sweep)."""
        values = [s.suggestion for s in self.sweeps]
        return math.log10(max(values) / min(values))

    @property
    def advice(self) -> list[str]:
        """What to do about the flags, one sentence each (empty when all is well)."""
        out = []
        if self.never_diverged:
            out.append(
                f"the loss was still lowest at the end of the sweep: raise end_lr "
                f"(now {self.end_lr:g}) so the test sees where training breaks down"
            )
        if self.no_valley:
            out.append(
                "the loss never clearly fell, so the suggestion is only a decade below where it "
                "began to climb: raise num_iter (or start_lr, to spend the steps where the "
                "model learns), or check the model and data"
            )
        return out

    def to_frame(self) -> pd.DataFrame:
        """Every sweep's curve as a long DataFrame: sweep, step, lr, loss_raw, loss."""
        import pandas as pd

        return pd.concat(
            [
                pd.DataFrame(
                    {
                        "sweep": i,
                        "step": np.arange(len(s.lrs)),
                        "lr": s.lrs,
                        "loss_raw": s.losses_raw,
                        "loss": s.losses,
                    }
                )
                for i, s in enumerate(self.sweeps)
            ],
            ignore_index=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for Optuna user attrs: the first sweep's curve at the top level (``lrs``,
        ``losses``, ``losses_raw``, ``suggestion``, ``low``, ``high``) and every sweep."""
        first = self.sweeps[0]
        return {
            "lrs": first.lrs.tolist(),
            "losses": first.losses.tolist(),
            "losses_raw": first.losses_raw.tolist(),
            "suggestion": self.suggestion,
            "low": self.bounds.low,
            "high": self.bounds.high,
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "num_iter": self.num_iter,
            "mode": self.mode,
            "diverged": self.diverged,
            "never_diverged": self.never_diverged,
            "no_valley": self.no_valley,
            "spread_decades": self.spread_decades,
            "sweeps": [s.to_dict() for s in self.sweeps],
            "refinement": None if self.refinement is None else self.refinement.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RangeTestResult:
        """The inverse of :meth:`to_dict`."""
        try:
            return cls(
                suggestion=float(data["suggestion"]),
                bounds=LRBounds(data["low"], data["high"]),
                sweeps=tuple(Sweep.from_dict(s) for s in data["sweeps"]),
                start_lr=float(data["start_lr"]),
                end_lr=float(data["end_lr"]),
                num_iter=int(data["num_iter"]),
                mode=str(data["mode"]),
                refinement=(
                    Refinement.from_dict(data["refinement"]) if data.get("refinement") else None
                ),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidParameterError(f"not a stored range test: {exc!r}") from exc

    def figure(self) -> go.Figure:
        """Loss against LR on a log axis: raw and smoothed, bounds shaded, suggestion marked."""
        import plotly.graph_objects as go

        fig = go.Figure()
        fig.add_vrect(
            x0=self.bounds.low,
            x1=self.bounds.high,
            fillcolor="rgba(44, 160, 44, 0.12)",
            line_width=0,
        )
        for i, s in enumerate(self.sweeps):
            label = f" (sweep {i + 1})" if len(self.sweeps) > 1 else ""
            fig.add_trace(
                go.Scatter(
                    x=s.lrs,
                    y=s.losses_raw,
                    mode="markers",
                    marker={"size": 4, "color": "rgba(120, 120, 120, 0.5)"},
                    name="loss" + label,
                    legendgroup="raw",
                    showlegend=i == 0,
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=s.lrs,
                    y=s.losses,
                    mode="lines",
                    line={"color": "#1f77b4"},
                    name="smoothed loss" + label,
                    legendgroup="smooth",
                    showlegend=i == 0,
                )
            )
        fig.add_vline(x=self.suggestion, line_dash="dash", line_color="#d62728")
        # Annotations on a log axis take log10 coordinates (add_vline's own labels do not
        # know that, plotly.py #2580), so they are placed by hand.
        for x, text, anchor in (
            (self.bounds.low, f"low {self.bounds.low:.3g}", "right"),
            (self.bounds.high, f"high {self.bounds.high:.3g}", "left"),
            (self.suggestion, f"suggestion {self.suggestion:.3g}", "left"),
        ):
            fig.add_annotation(
                x=math.log10(x),
                y=0.02 if text.startswith("suggestion") else 0.98,
                yref="paper",
                text=text,
                showarrow=False,
                xanchor=anchor,
            )
        top = np.concatenate([s.losses_raw[: max(1, len(s.losses_raw) // 5)] for s in self.sweeps])
        low = min(float(s.losses_raw.min()) for s in self.sweeps)
        pad = 0.05 * (float(top.max()) - low)
        fig.update_layout(
            title=(
                f"LR range test: suggestion {self.suggestion:.3g}, "
                f"bounds {self.bounds.low:.3g} to {self.bounds.high:.3g}"
            ),
            xaxis={"title": "learning rate", "type": "log"},
            yaxis={"title": "training loss", "range": [low - pad, float(top.max()) + 2 * pad]},
        )
        return fig


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

    generators = _generators_of(loader)
    snapshot = _Snapshot(model, optimizer, scaler, generators)
    if seed is not None:
        seeds: list[int | None] = [seed + r for r in range(repeats)]
    else:  # the first sweep as things stand, the others from seeds drawn here (restored after)
        seeds = [None, *torch.randint(2**31 - 1, (repeats - 1,)).tolist()]

    def run(rungs: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
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
        )

    sweeps: list[Sweep] = []
    refinement: Refinement | None = None
    try:
        for r, sweep_seed in enumerate(seeds):
            if r:
                snapshot.restore()
            if sweep_seed is not None:
                torch.manual_seed(sweep_seed)
                for generator in generators:
                    generator.manual_seed(sweep_seed)
            began = time.perf_counter()
            lrs, losses, reason = run(ladder)
            sweeps.append(_read_curve(lrs, losses, reason, time.perf_counter() - began))
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
        suggestion = _median([s.suggestion for s in sweeps])
        low = _median([s.low for s in sweeps])
        high = _median([s.high for s in sweeps])
        if not low < high:  # a degenerate curve: keep the bounds a valid, if narrow, range
            low, high = min(low, high) / 2, max(low, high) * 2
        if refine >= 2:
            refinement = _refine(
                _candidates(suggestion, high, refine),
                refine_steps,
                seeds[0] if seeds[0] is not None else int(torch.randint(2**31 - 1, ()).item()),
                snapshot,
                generators,
                run,
            )
            suggestion = refinement.chosen
    finally:
        snapshot.restore()

    result = RangeTestResult(
        suggestion=suggestion,
        bounds=LRBounds(low, high),
        sweeps=tuple(sweeps),
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
        mode=mode,
        refinement=refinement,
    )
    for line in result.advice:
        logger.warning("range test: %s", line)
    return result


def _median(values: Sequence[float]) -> float:
    """The middle value itself (odd counts), or the geometric mean of the middle two."""
    ordered, half = sorted(values), len(values) // 2
    return ordered[half] if len(values) % 2 else math.sqrt(ordered[half - 1] * ordered[half])


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
    snapshot: _Snapshot,
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
) -> tuple[np.ndarray, np.ndarray, str]:
    batches = _cycle(loader)
    watch = _DivergenceWatch(diverge_threshold, min_steps=max(_WATCH_WINDOW, len(ladder) // 10))
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
        if amp:
            assert scaler is not None
            scale = scaler.get_scale()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if scaler.get_scale() < scale:  # inf/NaN gradients: the step was skipped
                skips += 1
                if skips >= _MAX_AMP_SKIPS:
                    reason = "amp-skips"
                    break
                continue  # same rung again, next batch
            skips = 0
        else:
            loss.backward()
            optimizer.step()
        value = float(loss.item())
        if not math.isfinite(value):
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
    return ladder[: len(losses)].copy(), np.asarray(losses, dtype=np.float64), reason


class _DivergenceWatch:
    """Sign- and scale-free divergence, judged on the running median of the last 5 raw losses.

    The sweep has diverged once that median rises above its best by more than
    ``threshold`` times the fall so far (start minus best), and by more than 8 times its own
    noise. The noise is estimated at the start, where the learning rate is tiny, from the
    step-to-step differences of the raw loss (robust to a slow drift), so batch-to-batch noise
    never ends a sweep and a loss that never fell stops only on a clear rise.
    """

    def __init__(self, threshold: float, min_steps: int) -> None:
        self.threshold = threshold
        self.min_steps = min_steps
        self.recent: deque[float] = deque(maxlen=_WATCH_WINDOW)
        self.early: list[float] = []
        self.start = math.nan
        self.best = math.inf
        self.noise = math.nan

    def diverged(self, loss: float) -> bool:
        self.recent.append(loss)
        if len(self.early) < self.min_steps:
            self.early.append(loss)
        if len(self.recent) < _WATCH_WINDOW:
            return False
        level = sorted(self.recent)[_WATCH_WINDOW // 2]  # np.median costs 100x more here
        if math.isnan(self.start):
            self.start = level
        self.best = min(self.best, level)
        if len(self.early) < self.min_steps:
            return False
        if math.isnan(self.noise):
            steps = np.abs(np.diff(self.early))
            sigma = float(np.median(steps)) / (0.6745 * math.sqrt(2))  # of one raw loss
            # The median of 5 draws scatters about 0.56 times as much as one draw.
            self.noise = max(0.56 * sigma, 1e-9 * abs(self.start), 1e-30)
        fall = self.start - self.best
        return level - self.best > max(self.threshold * fall, 8 * self.noise)


def _read_curve(lrs: np.ndarray, raw: np.ndarray, reason: str, seconds: float) -> Sweep:
    """Smooth the curve with zero lag and read the bounds and a suggestion off it.

    - Values far above the starting level (the median of the first tenth) are clipped, so a
      blow-up at the end cannot drag the smoothed valley; then a running median of 5 and a
      centred moving average over about 1/8 of the sweep. Both are centred, so nothing is
      shifted, and neither can overshoot the data the way a higher-order filter rings.
    - ``minimum``: the LR where the smoothed loss is lowest.
    - ``low``: the first LR where the smoothed loss has done 5% of its fall from the plateau to
      the minimum. ``high``: the edge past the minimum, the last LR before the smoothed loss has
      climbed back 10% of that fall.
    - ``steepest``: where the smoothed loss falls fastest per decade of LR, from low to minimum.
    - ``suggestion``: the geometric mean of the two classic readings, ``steepest`` (one step per
      rung rewards the LR that helps most at once, which is on the low side for a whole run)
      and ``minimum / 10`` (a decade back from where a single step stops helping).
    """
    n = len(raw)
    head = max(_WATCH_WINDOW, n // 10)
    # The starting level is the median of the first tenth, so a couple of unlucky batches at
    # the start can neither set the clip level nor make the curve seem to fall from them.
    start = float(np.median(raw[:head]))
    spread = 1.4826 * float(np.median(np.abs(raw[:head] - start)))
    clipped = np.minimum(raw, start + 3 * spread)
    window = max(_WATCH_WINDOW, 2 * (n // 16) + 1)
    # Pad as the sweep would have continued: before it, the loss sits at its starting level;
    # past its last step, it stays where it ended (up, after a blow-up). Symmetric padding
    # would fold the valley into either end.
    pad = window
    padded = np.concatenate([np.full(pad, start), clipped, np.full(pad, clipped[-1])])
    smooth = uniform_filter1d(
        median_filter(padded, size=_WATCH_WINDOW, mode="nearest"), size=window, mode="nearest"
    )[pad:-pad]
    x = np.log10(lrs)

    i_min = int(np.argmin(smooth))
    # The top of the fall: the starting level, or a bump after the start (Adam's early rise).
    i_top = head + int(np.argmax(smooth[head : i_min + 1])) if i_min >= head else 0
    if i_top == 0 or smooth[i_top] <= start:
        i_top = 0
    top = max(start, float(smooth[i_top]))
    fall = top - float(smooth[i_min])
    noise = 1.4826 * float(np.median(np.abs(clipped - smooth)))  # robust sigma of one loss
    no_valley = not fall > 2 * noise or i_min == i_top

    if no_valley:
        # No fall to read (the model learns too slowly for one step per rung, say), but where
        # the loss starts to climb above its starting level still marks the onset of
        # instability: the edge is the last LR before that, the suggestion a decade below it
        # (as minimum / 10 is when there is a valley), the bounds two decades under the edge.
        climbed = np.nonzero(smooth > start + 2 * noise)[0]  # 2 sigma of one raw loss
        i_high = max(int(climbed[0]) - 1, 0) if len(climbed) else n - 1
        minimum = steepest = float(lrs[i_high])
        suggestion = max(minimum / 10, float(lrs[0]))
        i_low = int(np.searchsorted(lrs, max(minimum / 100, float(lrs[0]))))
        i_low = min(i_low, max(i_high - 1, 0))
    else:
        i_low = i_top + int(
            np.nonzero(smooth[i_top : i_min + 1] <= top - _FALL_STARTED * fall)[0][0]
        )
        risen = np.nonzero(smooth[i_min:] > smooth[i_min] + _EDGE_RISE * fall)[0]
        i_high = i_min + int(risen[0]) - 1 if len(risen) else n - 1
        slope = np.gradient(smooth, x)
        i_steep = i_low + int(np.argmin(slope[i_low : i_min + 1]))
        minimum, steepest = float(lrs[i_min]), float(lrs[i_steep])
        suggestion = math.sqrt(steepest * minimum / 10)
        suggestion = min(max(suggestion, float(lrs[i_low])), float(lrs[i_high]))
    return Sweep(
        lrs=lrs,
        losses_raw=raw,
        losses=smooth,
        stop_reason=reason,
        suggestion=suggestion,
        low=float(lrs[i_low]),
        high=float(lrs[i_high]),
        steepest=steepest,
        minimum=minimum,
        no_valley=no_valley,
        seconds=seconds,
    )


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
    for tensor in _tensors_of(model):
        return tensor.device
    raise InvalidParameterError("model has no parameters or buffers to train")


# -- snapshot / restore ----------------------------------------------------------------------


def _tensors_of(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer once (shared ones too, non-persistent buffers too)."""
    seen: dict[int, torch.Tensor] = {}
    for t in [*model.parameters(), *model.buffers()]:
        seen.setdefault(id(t), t)
    return list(seen.values())


def _slots_of(model: nn.Module) -> list[tuple[dict[str, Any], str, torch.Tensor]]:
    """Where each parameter and buffer lives: (the module's dict, name, the tensor there)."""
    return [
        (slots, name, tensor)
        for module in model.modules()
        for slots in (module._parameters, module._buffers)
        for name, tensor in slots.items()
        if tensor is not None
    ]


def _to_cpu(obj: Any) -> Any:
    """A deep copy with every tensor copied into CPU memory (pinned, for tensors on a GPU, so
    the copies both ways run at full speed; call ``_synchronize`` before reading them)."""
    if isinstance(obj, torch.Tensor):
        if obj.device.type == "cuda":
            out = torch.empty(obj.shape, dtype=obj.dtype, device="cpu", pin_memory=True)
            return out.copy_(obj.detach(), non_blocking=True)
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def _synchronize() -> None:
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _same_layout(live: Mapping[str, Any], saved: Mapping[str, Any]) -> bool:
    if live.keys() != saved.keys():
        return False
    return all(
        not isinstance(v, torch.Tensor)
        or (
            isinstance(live[k], torch.Tensor)
            and live[k].shape == v.shape
            and live[k].dtype == v.dtype
        )
        for k, v in saved.items()
    )


def _put_back(live: dict[str, Any], key: str, saved: Any) -> None:
    """Write ``saved`` into ``live[key]``, in place when both are tensors."""
    if isinstance(saved, torch.Tensor) and isinstance(live.get(key), torch.Tensor):
        live[key].copy_(saved, non_blocking=True)
    else:
        live[key] = copy.deepcopy(saved)


class _Snapshot:
    """Everything a sweep changes, copied into CPU memory; :meth:`restore` puts it back."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        scaler: torch.amp.GradScaler | None,
        generators: list[torch.Generator],
    ) -> None:
        self.optimizer = optimizer
        # The tensors themselves, and where they live: a forward pass may replace a buffer
        # (`self.count = self.count + 1`), and restore puts the original object back there.
        self.slots = _slots_of(model)
        self.values = [(t, _to_cpu(t)) for t in _tensors_of(model)]
        self.grads = [(p, None if p.grad is None else _to_cpu(p.grad)) for p in model.parameters()]
        self.modes = [(m, m.training) for m in model.modules()]
        self.optimizer_state = _to_cpu(optimizer.state_dict())
        _synchronize()
        self.scaler = scaler
        self.scaler_state = (
            scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
        )
        self.torch_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.numpy_rng = np.random.get_state()  # noqa: NPY002  (the global RNG users seed)
        self.python_rng = random.getstate()
        self.generators = [(g, g.get_state()) for g in generators]

    def _restore_optimizer(self) -> None:
        """Copy the saved state back into the optimizer's own tensors when they have the same
        layout (no allocation, no second copy on the device); else drop the sweep's state and
        load the saved one."""
        opt, saved = self.optimizer, self.optimizer_state
        params = [p for group in opt.param_groups for p in group["params"]]
        live = {i: opt.state[p] for i, p in enumerate(params) if p in opt.state}
        if live.keys() == saved["state"].keys() and all(
            _same_layout(live[i], entries) for i, entries in saved["state"].items()
        ):
            for i, entries in saved["state"].items():
                for key, value in entries.items():
                    _put_back(live[i], key, value)
            for group, saved_group in zip(opt.param_groups, saved["param_groups"], strict=True):
                for key, value in saved_group.items():
                    if key != "params":
                        _put_back(group, key, value)
        else:
            opt.state.clear()
            # load_state_dict may keep the very tensors it is given: give it a copy, so a
            # second restore (repeats) does not find them trained on.
            opt.load_state_dict(_to_cpu(saved))

    def restore(self) -> None:
        for slots, name, tensor in self.slots:
            slots[name] = tensor
        with torch.no_grad():
            for live, saved in self.values:
                live.copy_(saved, non_blocking=True)
            # Free the sweep's gradients before making the saved ones, so the two never sit on
            # the device together.
            for param, _ in self.grads:
                param.grad = None
            for param, grad in self.grads:
                if grad is not None:
                    param.grad = torch.empty_like(param).copy_(grad, non_blocking=True)
            self._restore_optimizer()
        _synchronize()  # the pinned copies are read asynchronously; finish before returning
        for module, training in self.modes:
            module.training = training
        if self.scaler is not None and self.scaler_state is not None:
            self.scaler.load_state_dict(self.scaler_state)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        np.random.set_state(self.numpy_rng)  # noqa: NPY002
        random.setstate(self.python_rng)
        for generator, state in self.generators:
            generator.set_state(state)


def _generators_of(loader: Iterable[Any]) -> list[torch.Generator]:
    """The loader's own RNGs (a DataLoader's, its sampler's, its batch sampler's sampler's)."""
    found: dict[int, torch.Generator] = {}
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    for owner in (loader, sampler, getattr(batch_sampler, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator):
            found.setdefault(id(generator), generator)
    return list(found.values())
