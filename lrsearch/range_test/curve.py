"""Reading a range test's curve: smoothing, the bounds and the suggestion."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from lrsearch.range_test.result import Sweep

__all__ = ["WATCH_WINDOW", "read_curve"]

WATCH_WINDOW: Final = 5  # divergence is judged on the median of the last 5 raw losses
_FALL_STARTED: Final = 0.05  # bounds.low: the loss has done 5% of its fall
_EDGE_RISE: Final = 0.1  # bounds.high: past the minimum, before it climbs back 10% of the fall


def read_curve(lrs: np.ndarray, raw: np.ndarray, reason: str, seconds: float) -> Sweep:
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
    head = max(WATCH_WINDOW, n // 10)
    # The starting level is the median of the first tenth, so a couple of unlucky batches at
    # the start can neither set the clip level nor make the curve seem to fall from them.
    start = float(np.median(raw[:head]))
    spread = 1.4826 * float(np.median(np.abs(raw[:head] - start)))
    clipped = np.minimum(raw, start + 3 * spread)
    window = max(WATCH_WINDOW, 2 * (n // 16) + 1)
    # Pad as the sweep would have continued: before it, the loss sits at its starting level;
    # past its last step, it stays where it ended (up, after a blow-up). Symmetric padding
    # would fold the valley into either end.
    pad = window
    padded = np.concatenate([np.full(pad, start), clipped, np.full(pad, clipped[-1])])
    smooth = uniform_filter1d(
        median_filter(padded, size=WATCH_WINDOW, mode="nearest"), size=window, mode="nearest"
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
