"""What a range test found: :class:`Sweep`, :class:`Refinement`, :class:`RangeTestResult`.

Frozen records with ``to_dict`` / ``from_dict`` (JSON, as stored on a study), a pandas frame
and a plotly figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from lrsearch.exceptions import InvalidParameterError
from lrsearch.space import LRBounds

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = [
    "MAX_SPREAD_DECADES",
    "MIN_SIGNAL_TO_NOISE",
    "MIN_VALLEY_RUNGS",
    "Doubt",
    "RangeTestResult",
    "Refinement",
    "Sweep",
]

#: A sweep whose smoothed loss fell by fewer raw-loss standard deviations than this is not
#: read with confidence (healthy sweeps of the built-in tasks fall by 20 to 75; noise that a
#: smoother turned into a valley, by 2 to 5): see the docs' range-test page for the numbers.
MIN_SIGNAL_TO_NOISE: Final = 8.0
#: Nor one that learned for fewer rungs than this before it blew up (or ended).
MIN_VALLEY_RUNGS: Final = 8
#: Nor sweeps whose suggestions lie further apart than this (decades).
MAX_SPREAD_DECADES: Final = 1.0


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float_or_nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def median_lr(values: Sequence[float]) -> float:
    """The middle learning rate of several sweeps' readings: the middle value itself (odd
    counts), or the geometric mean of the middle two.

    Example:
        >>> median_lr([0.3, 0.01, 0.1]), median_lr([0.01, 1.0])
        (0.1, 0.1)
    """
    ordered, half = sorted(values), len(values) // 2
    return ordered[half] if len(values) % 2 else math.sqrt(ordered[half - 1] * ordered[half])


@dataclass(frozen=True)
class Sweep:
    """One sweep of the ladder and what was read off it.

    Attributes:
        lrs: The learning rate of each step run (of the first param group).
        losses_raw: The loss of each step run (finite values only).
        losses: ``losses_raw`` smoothed with zero lag up to the blow-up, and by a running
            median of 5 past it.
        stop_reason: ``"completed"``, ``"diverged"`` (the loss rose far above its best),
            ``"non-finite"`` (a NaN or inf loss) or ``"amp-skips"`` (the scaler kept skipping).
        suggestion: One learning rate for a constant-LR run.
        low: Where the loss has started to fall (lower for a run longer than the sweep).
        high: Two rungs before the loss climbs back 10% of its fall past its minimum (the
            last rung of the sweep when it never does).
        steepest: Where the smoothed loss falls fastest per decade of LR.
        minimum: Where the smoothed loss is lowest.
        no_valley: The loss never fell clearly more than its noise: nothing to read.
        seconds: Wall time of the sweep.
        midway: Where the smoothed loss has done half of its fall (read between rungs).
        edge: Where the loss blew up: past its minimum, it had climbed back half its fall
            (NaN in results stored before this field existed).
        update_ratios: The update/weight ratio ``||dw|| / ||w||`` of each step run, per param
            group (``(groups, steps)``; NaN where a group's weights had no norm), or ``None``
            when the sweep did not measure it (``diagnostics=False``, or stored before).
        fall: How far the smoothed loss fell, from its top to its minimum (loss units; NaN in
            sweeps stored before this field existed).
        noise: The robust standard deviation of one raw loss around the smoothed curve.
        fall_start: Where the sweep itself saw 5% of the fall done (``low`` before it reaches
            down for a longer run).
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
    midway: float = math.nan
    edge: float = math.nan
    update_ratios: np.ndarray | None = None
    fall: float = math.nan
    noise: float = math.nan
    fall_start: float = math.nan

    @property
    def diverged(self) -> bool:
        """The sweep stopped because the loss blew up (rose far above its best, or NaN/inf)."""
        return self.stop_reason in ("diverged", "non-finite")

    @property
    def signal_to_noise(self) -> float:
        """``fall / noise``: how many raw-loss standard deviations the smoothed loss fell
        (NaN for a sweep stored without them)."""
        if not (math.isfinite(self.fall) and math.isfinite(self.noise)):
            return math.nan
        return self.fall / self.noise if self.noise > 0 else math.inf

    @property
    def valley_rungs(self) -> int:
        """Rungs from where the fall started to where the loss blew up (or the sweep ended):
        how many steps the sweep spent learning before it broke down."""
        start = self.fall_start if math.isfinite(self.fall_start) else self.low
        end = self.edge if math.isfinite(self.edge) else float(self.lrs[-1])
        return int(np.count_nonzero((self.lrs >= start) & (self.lrs <= end)))

    @property
    def steps_taken(self) -> int:
        """Optimizer steps the sweep took: one per rung run, and the step whose loss came back
        non-finite (it was taken; its loss is not kept). A step an AMP scaler skipped was not.

        Example:
            >>> import numpy as np
            >>> from lrsearch.range_test import read_curve
            >>> lrs = np.geomspace(1e-5, 1.0, 60)
            >>> curve = read_curve(lrs, 2 - np.log10(lrs) / 10, stop_reason="non-finite")
            >>> curve.steps_taken
            61
        """
        return len(self.lrs) + (self.stop_reason == "non-finite")

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
            "midway": _finite_or_none(self.midway),
            "edge": _finite_or_none(self.edge),
            "update_ratios": (
                None
                if self.update_ratios is None
                else [[_finite_or_none(float(v)) for v in g] for g in self.update_ratios]
            ),
            "fall": _finite_or_none(self.fall),
            "noise": _finite_or_none(self.noise),
            "fall_start": _finite_or_none(self.fall_start),
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
            midway=_float_or_nan(data.get("midway")),
            edge=_float_or_nan(data.get("edge")),
            update_ratios=(
                None
                if data.get("update_ratios") is None
                else np.asarray(
                    [[_float_or_nan(v) for v in g] for g in data["update_ratios"]],
                    dtype=np.float64,
                )
            ),
            fall=_float_or_nan(data.get("fall")),
            noise=_float_or_nan(data.get("noise")),
            fall_start=_float_or_nan(data.get("fall_start")),
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
class Doubt:
    """Why a range test's reading is not to be trusted as it is: a code and its words.

    Attributes:
        code: ``"no-fall"``, ``"late-fall"`` or ``"disagree"`` (code reads this, never the
            words).
        text: What was seen, in words.
    """

    code: str
    text: str


@dataclass(frozen=True)
class RangeTestResult:
    """What :func:`range_test` found.

    With ``repeats=1`` everything comes from the one sweep. With more, ``suggestion`` and
    ``bounds`` are medians over the sweeps, ``spread_decades`` says how far apart the sweeps'
    suggestions were, and ``lrs`` / ``losses`` show the first sweep.

    Attributes:
        suggestion: One learning rate for a constant-LR run.
        bounds: ``LRBounds(low, high)``: where the loss starts to fall, and a little before it
            climbs back past its minimum (see :class:`Sweep`).
        sweeps: Every sweep, in order.
        start_lr: The ladder's first rung. end_lr: its last. num_iter: rungs asked for.
        mode: ``"exp"`` or ``"linear"``.
        refinement: The confirmation runs when ``refine`` was asked for (``suggestion`` is
            then their winner), else ``None``.
        total_steps: The planned run's optimizer steps the suggestion was read for, or
            ``None``: then it is for a run of the rule's reference length (500 steps).
    """

    suggestion: float
    bounds: LRBounds
    sweeps: tuple[Sweep, ...]
    start_lr: float
    end_lr: float
    num_iter: int
    mode: str
    refinement: Refinement | None = None
    total_steps: int | None = None

    @classmethod
    def from_sweeps(
        cls,
        sweeps: Sequence[Sweep],
        *,
        start_lr: float,
        end_lr: float,
        num_iter: int,
        mode: str = "exp",
        total_steps: int | None = None,
    ) -> RangeTestResult:
        """The result of several sweeps of one ladder: the medians of their suggestions and
        bounds (:func:`median_lr`), kept a valid range when a degenerate curve crosses them.

        Example:
            >>> import numpy as np
            >>> from lrsearch.range_test import read_curve
            >>> lrs = np.geomspace(1e-5, 1.0, 100)
            >>> x = np.log10(lrs)
            >>> losses = np.where(x < -1.5, 2 - 1.5 / (1 + np.exp(-4 * (x + 3))), 10.0)
            >>> one = read_curve(lrs, losses)
            >>> both = RangeTestResult.from_sweeps([one, one], start_lr=1e-5, end_lr=1.0,
            ...                                    num_iter=100)
            >>> both.suggestion == one.suggestion, both.spread_decades
            (True, 0.0)
        """
        if not sweeps:
            raise InvalidParameterError("a range test result needs at least one sweep")
        low = median_lr([s.low for s in sweeps])
        high = median_lr([s.high for s in sweeps])
        if not low < high:  # a degenerate curve: keep the bounds a valid, if narrow, range
            low, high = min(low, high) / 2, max(low, high) * 2
        return cls(
            suggestion=median_lr([s.suggestion for s in sweeps]),
            bounds=LRBounds(low, high),
            sweeps=tuple(sweeps),
            start_lr=start_lr,
            end_lr=end_lr,
            num_iter=num_iter,
            mode=mode,
            total_steps=total_steps,
        )

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
    def steps_taken(self) -> int:
        """Optimizer steps the range test took: every sweep's (:attr:`Sweep.steps_taken`), and
        its confirmation runs' (counted in full: one that blew up stopped sooner)."""
        refined = 0 if self.refinement is None else len(self.refinement.candidates)
        steps = 0 if self.refinement is None else self.refinement.steps
        return sum(s.steps_taken for s in self.sweeps) + refined * steps

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
    def steepest(self) -> float:
        """Where the smoothed loss falls fastest per decade of LR (the sweeps' median): the
        seeds' 1cycle peaks here (``benchmarks/range_test/peaks.py --kind onecycle``)."""
        return median_lr([s.steepest for s in self.sweeps])

    @property
    def spread_decades(self) -> float:
        """``log10(max / min)`` of the sweeps' suggestions (0 with one sweep)."""
        values = [s.suggestion for s in self.sweeps]
        return math.log10(max(values) / min(values))

    @property
    def doubts(self) -> tuple[Doubt, ...]:
        """Why the reading is not to be trusted as it is (empty: it is).

        - ``no-fall``: a sweep's loss fell by fewer than :data:`MIN_SIGNAL_TO_NOISE` standard
          deviations of one raw loss (or not at all): a noise dip may have become the bounds.
        - ``late-fall``: a sweep learned for fewer than :data:`MIN_VALLEY_RUNGS` rungs before it
          blew up or ended: the fall starts in its last few steps.
        - ``disagree``: the sweeps' suggestions lie more than :data:`MAX_SPREAD_DECADES` apart.

        A coarse ladder is no doubt by itself: one that still shows a clear, wide valley reads
        well, and one that does not fails the first two. Sweeps stored before the
        signal-to-noise was kept are judged on ``no_valley`` alone.
        """
        out = []
        measured = [s.signal_to_noise for s in self.sweeps if not math.isnan(s.signal_to_noise)]
        snr = min(measured, default=math.inf)
        if self.no_valley or snr < MIN_SIGNAL_TO_NOISE:
            by = (
                ""
                if self.no_valley
                else f": it fell by {snr:.1f} standard deviations of one batch's loss, and "
                f"{MIN_SIGNAL_TO_NOISE:g} are needed"
            )
            out.append(Doubt("no-fall", f"the loss never clearly fell beyond its noise{by}"))
        rungs = min(s.valley_rungs for s in self.sweeps)
        if not self.no_valley and rungs < MIN_VALLEY_RUNGS:
            out.append(
                Doubt(
                    "late-fall",
                    f"the loss began to fall only {rungs} steps before the sweep "
                    f"{'blew up' if self.diverged else 'ended'}",
                )
            )
        if self.spread_decades > MAX_SPREAD_DECADES:
            out.append(
                Doubt(
                    "disagree",
                    f"the sweeps' suggestions lie {self.spread_decades:.1f} decades apart",
                )
            )
        return tuple(out)

    @property
    def confident(self) -> bool:
        """Whether the reading can be trusted as it is (no :attr:`doubts`)."""
        return not self.doubts

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
                "the loss never clearly fell, so the suggestion is only a fixed distance below "
                "where it began to climb: raise num_iter (or start_lr, to spend the steps where "
                "the model learns), or check the model and data"
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
            "confident": self.confident,
            "doubts": [d.code for d in self.doubts],
            "sweeps": [s.to_dict() for s in self.sweeps],
            "refinement": None if self.refinement is None else self.refinement.to_dict(),
            "total_steps": self.total_steps,
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
                total_steps=(
                    None if data.get("total_steps") is None else int(data["total_steps"])
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
