"""Reading a range test's curve: smoothing, the bounds and the suggestion.

:func:`read_curve` turns one sweep's raw losses into a :class:`~lrsearch.range_test.Sweep`:

1. **Clip and cut at the blow-up.** Values far above the starting level (the median of the
   first tenth) are clipped. A running median of 5 finds the blow-up: past its minimum, the
   first rung where it has climbed back half of its fall (``edge``). Only what came before
   the edge is smoothed: a centred moving average over the blow-up's steep wall would fill
   the valley just before it, which is exactly where the best learning rates of SGD often
   sit (on the digits MLP the raw losses fell to 0.5 at LR 0.9 while a window across the
   wall turned the smoothed curve up at 0.35).
2. **Smooth with zero lag.** A running median of 5 and a centred moving average over about
   1/8 of the sweep, padded with the starting level before the sweep and the last level
   before the edge after it. Both filters are centred, so nothing is shifted towards larger
   LRs the way a causal moving average (other range tests') shifts it, and neither overshoots.
3. **Read it** (slopes against log10(LR), the axis the ladder is uniform on): ``minimum``,
   ``steepest`` (fastest fall per decade, between ``low`` and ``minimum``), ``midway``
   (half of the fall done, read between rungs), ``low`` (5% of the fall done, times the
   sweep's length over the run's when ``total_steps`` says the run is longer: a long run
   learns at LRs where a short sweep barely moves) and ``high`` (two rungs before the loss
   has climbed back 10% of its fall past its minimum; never past the edge).
4. **Suggest** with a :class:`Rule`: ``min(edge * 10**cap, anchor * 10**offset *
   (total_steps / reference_steps) ** slope)``, kept inside ``[low, high]``. The default
   rule, :data:`SUGGESTION_RULE`, was fitted on the range-test benchmark suite
   (``benchmarks/range_test/``); the fitting was scored leave-one-family-out there (each
   family with the rule fitted without it), and docs/benchmarks.md has those held-out numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from lrsearch._validation import POSITIVE_INT, REAL, Options, check
from lrsearch.exceptions import InvalidParameterError
from lrsearch.range_test.result import Sweep

__all__ = ["ANCHORS", "SUGGESTION_RULE", "WATCH_WINDOW", "Rule", "read_curve"]

WATCH_WINDOW: Final = 5  # divergence is judged on the median of the last 5 raw losses
_FALL_STARTED: Final = 0.05  # bounds.low: the loss has done 5% of its fall
_EDGE_CLIMB: Final = 0.5  # edge: past the minimum, the loss has climbed back half its fall
_HIGH_CLIMB: Final = 0.1  # bounds.high: before the loss has climbed back 10% of its fall,
_HIGH_BACKOFF: Final = 2  # and this many rungs before that

Anchor = Literal["midway", "steepest", "minimum"]
#: The curve features a :class:`Rule` may be anchored on.
ANCHORS: Final[tuple[Anchor, ...]] = ("midway", "steepest", "minimum")


@dataclass(frozen=True)
class Rule:
    """How the suggestion is read off a smoothed curve.

    ``suggestion = min(edge * 10**cap, anchor * 10**offset * (steps / reference_steps) **
    slope)``, then kept inside ``[low, high]``; ``steps`` is the planned run's length
    (``total_steps``), or ``reference_steps`` when it is not known. A negative ``slope``
    lowers the suggestion for longer runs: the best constant LR for a long run is lower than
    for a short one, because a long run can afford a smaller step and a smaller step ends
    nearer the minimum. The cap keeps the suggestion a fixed distance below where the sweep
    blew up, whatever the run's length.

    Attributes:
        anchor: ``"midway"`` (half of the fall done), ``"steepest"`` or ``"minimum"``.
        offset: Decades from the anchor, for a run of ``reference_steps`` steps.
        slope: Decades of LR per decade of run length.
        cap: Decades below ``edge`` the suggestion never exceeds (negative).
        reference_steps: The run length ``offset`` is for.

    Example:
        >>> import numpy as np
        >>> lrs = np.geomspace(1e-5, 1.0, 100)
        >>> x = np.log10(lrs)
        >>> losses = np.where(x < -1.5, 2 - 1.5 / (1 + np.exp(-4 * (x + 3))), 10.0)
        >>> sweep = read_curve(lrs, losses)  # half of the fall at 1e-3, the blow-up at 10**-1.5
        >>> rule = Rule(anchor="midway", offset=0.5, slope=-0.5, cap=-1.0, reference_steps=100)
        >>> def decades(lr: float) -> float:
        ...     return round(float(np.log10(lr)), 1)
        >>> decades(rule.suggest(sweep, total_steps=100))  # midway * 10**0.5
        -2.5
        >>> decades(rule.suggest(sweep, total_steps=10_000))  # 100 times longer: a decade less
        -3.5
        >>> decades(rule.suggest(sweep, total_steps=1))  # capped a decade below the edge
        -2.5
    """

    anchor: Anchor
    offset: float
    slope: float
    cap: float
    reference_steps: int

    def __post_init__(self) -> None:
        check("anchor", self.anchor, Options(ANCHORS))
        for name in ("offset", "slope", "cap"):
            check(name, getattr(self, name), REAL)
        check("reference_steps", self.reference_steps, POSITIVE_INT)

    def suggest(self, sweep: Sweep, *, total_steps: int | None = None) -> float:
        """The rule's suggestion for a sweep read by :func:`read_curve`, inside its bounds.

        A sweep with no valley has nothing to anchor on: its suggestion is the cap alone,
        ``edge * 10**cap`` (its edge is where the loss began to climb).

        Args:
            sweep: A read sweep (its ``midway``, ``steepest``, ``minimum``, ``edge`` and
                bounds are used).
            total_steps: The planned run's optimizer steps (``None``: ``reference_steps``).

        Returns:
            The suggested learning rate.
        """
        log_lr = math.log10(sweep.edge) + self.cap
        if not sweep.no_valley:
            steps = total_steps if total_steps is not None else self.reference_steps
            anchor = {"midway": sweep.midway, "steepest": sweep.steepest, "minimum": sweep.minimum}
            log_lr = min(
                log_lr,
                math.log10(anchor[self.anchor])
                + self.offset
                + self.slope * math.log10(steps / self.reference_steps),
            )
        return min(max(10.0**log_lr, sweep.low), sweep.high)


#: The default rule: ``benchmarks/range_test/heldout.py``'s fit on all 27 problems of the
#: suite (6 families). Only its leave-one-family-out refits are scored there: this one has seen
#: every problem. A run of ``total_steps`` steps gets ``midway * 10**0.2 * (500 / steps)``,
#: never above 10**-1.4 (1/25) of the edge.
SUGGESTION_RULE: Final = Rule(
    anchor="midway", offset=0.2, slope=-1.0, cap=-1.4, reference_steps=500
)


def read_curve(
    lrs: Sequence[float] | np.ndarray,
    losses_raw: Sequence[float] | np.ndarray,
    *,
    stop_reason: str = "completed",
    seconds: float = 0.0,
    total_steps: int | None = None,
    rule: Rule = SUGGESTION_RULE,
) -> Sweep:
    """Smooth one sweep's raw losses and read the bounds and a suggestion off them.

    Args:
        lrs: The learning rate of each step run, ascending.
        losses_raw: The raw loss of each step (finite), as many as ``lrs``.
        stop_reason: Why the sweep stopped (stored on the result).
        seconds: The sweep's wall time (stored on the result).
        total_steps: Optimizer steps of the run the suggestion is for; ``None``: the rule's
            ``reference_steps``. It moves the suggestion (by the rule's slope) and ``low``
            (times the sweep's length over the run's, when the run is longer; without it,
            ``low`` is the sweep's own).
        rule: How the suggestion is read (see :class:`Rule`).

    Returns:
        A :class:`~lrsearch.range_test.Sweep`.

    Raises:
        InvalidParameterError: fewer than ``WATCH_WINDOW`` points, or lengths that differ.

    Example:
        >>> import numpy as np
        >>> lrs = np.geomspace(1e-5, 1.0, 100)
        >>> x = np.log10(lrs)
        >>> losses = np.where(x < -1.5, 2 - 1.5 / (1 + np.exp(-4 * (x + 3))), 10.0)
        >>> sweep = read_curve(lrs, losses, total_steps=500)
        >>> sweep.low < sweep.suggestion < sweep.high < sweep.edge
        True
        >>> round(float(np.log10(sweep.midway)), 1), round(float(np.log10(sweep.edge)), 1)
        (-3.0, -1.5)
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    raw = np.asarray(losses_raw, dtype=np.float64)
    n = len(raw)
    if n < WATCH_WINDOW or len(lrs) != n:
        raise InvalidParameterError(
            f"need as many LRs as losses, at least {WATCH_WINDOW}; got {len(lrs)} and {n}"
        )
    curve = _Curve.of(lrs, raw)
    read = curve.read()
    sweep = Sweep(
        lrs=lrs,
        losses_raw=raw,
        losses=curve.shown,
        stop_reason=stop_reason,
        suggestion=math.nan,  # the rule's, below
        # A run longer than the sweep learns at LRs where the sweep had barely begun to: the
        # lower bound reaches down by the ratio of their lengths.
        low=float(lrs[read.i_low]) * (1.0 if total_steps is None else min(1.0, n / total_steps)),
        high=float(lrs[read.i_high]),
        steepest=read.steepest,
        minimum=read.minimum,
        no_valley=read.no_valley,
        seconds=seconds,
        midway=read.midway,
        edge=read.edge,
        fall=read.fall,
        noise=read.noise,
        fall_start=float(lrs[read.i_fall_start]),
    )
    return dataclasses.replace(sweep, suggestion=rule.suggest(sweep, total_steps=total_steps))


class _Reading(NamedTuple):
    """What :func:`read_curve` reads off a smoothed curve (indices are rungs)."""

    i_low: int
    i_high: int
    minimum: float
    steepest: float
    midway: float
    edge: float
    fall: float
    noise: float
    no_valley: bool
    i_fall_start: int


@dataclass(frozen=True)
class _Curve:
    """One sweep's losses clipped, cut at the blow-up and smoothed (steps 1 and 2 above)."""

    lrs: np.ndarray
    start: float  # the starting level: the median of the first tenth (``head`` rungs)
    head: int
    rough: np.ndarray  # the clipped losses' running median of 5
    i_cut: int  # where the blow-up begins
    part: np.ndarray  # the clipped losses before it
    smooth: np.ndarray  # ``part`` smoothed with zero lag
    shown: np.ndarray  # ``smooth``, then the blow-up itself, lightly smoothed

    @classmethod
    def of(cls, lrs: np.ndarray, raw: np.ndarray) -> _Curve:
        """Clip ``raw``, find the blow-up and smooth what comes before it."""
        n = len(raw)
        head = max(WATCH_WINDOW, n // 10)
        # The starting level is the median of the first tenth, so a couple of unlucky batches
        # at the start can neither set the clip level nor make the curve seem to fall from them.
        start = float(np.median(raw[:head]))
        spread = 1.4826 * float(np.median(np.abs(raw[:head] - start)))
        clipped = np.minimum(raw, start + 3 * spread)
        rough = median_filter(clipped, size=WATCH_WINDOW, mode="nearest")
        i_cut = _blowup(clipped, rough, start, spread)
        window = max(WATCH_WINDOW, 2 * (n // 16) + 1)
        # Pad as the sweep would have continued: before it, the loss sits at its starting
        # level; past the cut, at its last level before the blow-up. Symmetric padding would
        # fold the valley into either end.
        part = clipped[:i_cut]
        last = float(np.median(part[-WATCH_WINDOW:]))
        padded = np.concatenate([np.full(window, start), part, np.full(window, last)])
        smooth = uniform_filter1d(
            median_filter(padded, size=WATCH_WINDOW, mode="nearest"), size=window, mode="nearest"
        )[window:-window]
        shown = np.concatenate([smooth, rough[i_cut:]])
        return cls(lrs, start, head, rough, i_cut, part, smooth, shown)

    def read(self) -> _Reading:
        """The fall, its noise, and the bounds and landmarks (step 3 above)."""
        smooth, start, head = self.smooth, self.start, self.head
        i_min = int(np.argmin(smooth))
        # The top of the fall: the starting level, or a bump after the start (Adam's early rise).
        i_top = head + int(np.argmax(smooth[head : i_min + 1])) if i_min >= head else 0
        if i_top == 0 or smooth[i_top] <= start:
            i_top = 0
        top = max(start, float(smooth[i_top]))
        fall = top - float(smooth[i_min])
        noise = 1.4826 * float(np.median(np.abs(self.part - smooth)))  # robust sigma of one loss
        no_valley = not fall > 2 * noise or i_min == i_top
        if no_valley:
            i_low, i_high, minimum, steepest, midway, edge = self._without_valley(noise)
        else:
            i_low, i_high, minimum, steepest, midway, edge = self._valley(i_top, i_min, top, fall)
        i_fall_start = _fall_start(self.rough, i_low, i_min, top - _FALL_STARTED * fall)
        return _Reading(
            i_low, i_high, minimum, steepest, midway, edge, fall, noise, no_valley, i_fall_start
        )

    def _without_valley(self, noise: float) -> tuple[int, int, float, float, float, float]:
        """No fall to read (the model learns too slowly for one step per rung, say), but where
        the loss starts to climb above its starting level still marks the onset of
        instability: that is the edge, high the rung before it, low two decades under it (and
        the suggestion the rule's cap below the edge)."""
        lrs, n = self.lrs, len(self.lrs)
        climbed = np.nonzero(self.shown > self.start + 2 * noise)[0]  # 2 sigma of one raw loss
        i_high = max(int(climbed[0]) - 1, 0) if len(climbed) else n - 1
        minimum = steepest = midway = float(lrs[i_high])
        edge = float(lrs[min(i_high + 1, n - 1)])
        i_low = int(np.searchsorted(lrs, max(minimum / 100, float(lrs[0]))))
        i_low = min(i_low, max(i_high - 1, 0))
        return i_low, i_high, minimum, steepest, midway, edge

    def _valley(
        self, i_top: int, i_min: int, top: float, fall: float
    ) -> tuple[int, int, float, float, float, float]:
        """``low`` where 5% of the fall is done, ``high`` before the climb back, the steepest
        fall, the minimum and midway between the top and the minimum."""
        lrs, smooth, i_cut, n = self.lrs, self.smooth, self.i_cut, len(self.lrs)
        i_low = i_top + int(
            np.nonzero(smooth[i_top : i_min + 1] <= top - _FALL_STARTED * fall)[0][0]
        )
        # One step per rung cannot show an instability that takes a few steps to grow: the
        # last rung that still helped is past what a whole run can take, by more the coarser
        # the ladder. high backs off two rungs from it (a whole run at the LR where one step
        # still helped diverged on a 20-rung ladder).
        # Without a climb there is nothing to back off from: high is the last rung run.
        risen = np.nonzero(self.shown[i_min:] > smooth[i_min] + _HIGH_CLIMB * fall)[0]
        if len(risen):
            i_rise = min(i_min + int(risen[0]), i_cut)
            i_high = min(max(i_rise - 1 - _HIGH_BACKOFF, i_low + 1), n - 1)
        else:
            i_high = n - 1
        x = np.log10(lrs)
        slope = np.gradient(smooth, x[:i_cut]) if i_cut > 1 else np.zeros(i_cut)
        i_steep = i_low + int(np.argmin(slope[i_low : i_min + 1]))
        midway = 10 ** _crossing(x, smooth, top - 0.5 * fall, i_top, i_min)
        edge = float(lrs[min(i_cut, n - 1)])
        return i_low, i_high, float(lrs[i_min]), float(lrs[i_steep]), midway, edge


def _blowup(clipped: np.ndarray, rough: np.ndarray, start: float, spread: float) -> int:
    """Where the blow-up begins: the length of the curve before it.

    Past the running median's minimum, the first index where it has climbed back
    ``_EDGE_CLIMB`` of its fall from ``start``; then back over the raw losses already that
    high (the median lags a wall by two rungs). The whole length when it never climbs back,
    or when the fall is no more than twice ``spread`` (a raw loss's noise at the start): a
    flat curve's wobble is not a valley to cut.
    """
    i_min = int(np.argmin(rough))
    fall = start - float(rough[i_min])
    if not fall > 2 * spread:
        return len(rough)
    level = float(rough[i_min]) + _EDGE_CLIMB * fall
    climbed = np.nonzero(rough[i_min:] > level)[0]
    if not len(climbed):
        return len(rough)
    cut = i_min + int(climbed[0])
    while cut > i_min + 1 and clipped[cut - 1] > level:
        cut -= 1
    return cut


def _fall_start(rough: np.ndarray, i_low: int, i_min: int, level: float) -> int:
    """Where the lightly smoothed loss (a running median of 5) first reaches ``level``, from
    ``i_low`` (where the smoothed curve does) to the minimum: the wide moving average moves a
    sharp fall several rungs early, and how many rungs a sweep spent learning must not depend
    on the smoothing window."""
    below = np.nonzero(rough[i_low : i_min + 1] <= level)[0]
    return i_low + int(below[0]) if len(below) else i_low


def _crossing(x: np.ndarray, y: np.ndarray, level: float, lo: int, hi: int) -> float:
    """``x`` where ``y`` first falls to ``level`` between indices ``lo`` and ``hi``, linearly
    interpolated between the two points around it (``x[hi]`` when it never does)."""
    for i in range(lo, hi):
        a, b = float(y[i]), float(y[i + 1])
        if a > level >= b:
            return float(x[i] + (a - level) / (a - b) * (x[i + 1] - x[i]))
    return float(x[hi])
