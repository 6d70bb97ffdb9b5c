"""The other tools' suggestion rules, for the range-test suite.

- torch-lr-finder 0.2.2 runs for real in ``suite.py``; :func:`tlf_steepest` is what its
  ``LRFinder.plot(suggest_lr=True)`` computes from ``finder.history``, re-done without plotting.
- fastai's ``lr_find`` default suggestion (``valley``) and Lightning's ``Tuner.lr_find``
  suggestion (steepest point) are re-implemented from their definitions (neither library is a
  dependency) and applied to the raw per-step losses of lrsearch's whole-ladder sweep (the same
  model, data order and ladder: 100 steps, 1e-7 to 10), each with its own smoothing and its own
  stop rule replayed on those losses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

NUM_ITER = 100


def tlf_steepest(lrs: Sequence[float] | np.ndarray, losses: Sequence[float] | np.ndarray) -> float:
    """torch-lr-finder 0.2.2's ``plot(suggest_lr=True)``: steepest point of its own curve.

    ``losses`` are torch-lr-finder's (already smoothed) ``history["loss"]``. NaN where
    ``plot`` would raise (fewer than 17 points).
    """
    skip_start, skip_end = 10, 5
    if len(lrs) < skip_start + skip_end + 2:
        return math.nan
    lrs_t = list(lrs)[skip_start:-skip_end]
    losses_t = list(losses)[skip_start:-skip_end]
    return float(lrs_t[int(np.gradient(np.array(losses_t)).argmin())])


def ema_until_blowup(raw: Sequence[float] | np.ndarray, beta: float = 0.98) -> np.ndarray:
    """The debiased EMA that fastai's and Lightning's range tests record, cut where they stop.

    Both record the point at which the smoothed loss exceeds 4 times its best so far, then
    stop (a NaN/inf raw loss ends the sweep too).
    """
    out: list[float] = []
    val, best = 0.0, math.inf
    for count, loss in enumerate(raw, start=1):
        if not math.isfinite(float(loss)):
            break
        val = beta * val + (1 - beta) * float(loss)
        smooth = val / (1 - beta**count)
        out.append(smooth)
        if count > 1 and smooth > 4 * best:
            break
        best = min(best, smooth)
    return np.asarray(out)


def _valley_index(losses: Sequence[float]) -> int:
    """fastai's ``valley``, verbatim in logic: longest decreasing run, 2/3 of the way down."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def fastai_valley(lrs: np.ndarray, raw: np.ndarray, num_it: int = NUM_ITER) -> float:
    """fastai's ``lr_find`` default suggestion (``valley``), from raw per-step losses.

    fastai drops the first ``num_it // 10`` and the last 5 recorded points, then applies
    ``valley`` to the smoothed losses.
    """
    smooth = ema_until_blowup(raw)
    lrs_t = np.asarray(lrs)[: len(smooth)][num_it // 10 : -5]
    losses_t = smooth[num_it // 10 : -5]
    if len(losses_t) == 0:
        return math.nan  # fastai would raise an IndexError here
    return float(lrs_t[_valley_index(losses_t.tolist())])


def lightning_steepest(lrs: np.ndarray, raw: np.ndarray) -> float:
    """Lightning's ``lr_find(...).suggestion()``: steepest point of its smoothed curve.

    ``skip_begin=10, skip_end=1``, then ``argmin`` of ``gradient`` (per index, not per decade)
    of the remaining smoothed losses; ``None`` in Lightning (NaN here) with fewer than 2.
    """
    smooth = ema_until_blowup(raw)
    losses = smooth[10:-1]
    if len(losses) < 2:
        return math.nan
    return float(np.asarray(lrs)[int(np.argmin(np.gradient(losses))) + 10])


PEERS = ("torch-lr-finder", "fastai-valley", "lightning")
