"""Closed-form learning-rate schedules: the test oracle for ``lrsearch.schedules``.

Each kind is written straight from the formula table of the docs (``docs/schedules.md``, "The
kinds"), vectorised over the step with NumPy. Nothing here imports torch or lrsearch:
``Schedule.lrs`` runs torch's schedulers, and these formulas are the independent check that
torch is driven the way the docs say.

Notation as in that table: ``t`` is the optimizer step from 0, ``s`` the step size in steps, ``d``
the decay, ``w`` the warm-up in steps, ``c`` the cooldown fraction, ``T`` the run's total steps.

``plateau`` has no closed form: its learning rate follows the validation metric. Its oracle is
the rule "decay when progress stalls" played out over given per-epoch metrics, written here from
torch's documented semantics (not by calling it): an epoch improves when its value beats the
best so far by more than the relative threshold 1e-4; once ``patience + 1`` epochs in a row do
not improve, the LR is multiplied by ``d`` (never below ``base_lr``) and the count restarts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: torch's ReduceLROnPlateau default: an improvement must beat the best by this much (relative).
PLATEAU_THRESHOLD = 1e-4


def oracle_lrs(
    kind: str,
    total_steps: int,
    *,
    max_lr: float,
    base_lr: float | None = None,
    step_size: int | None = None,
    decay: float | None = None,
    cycle_mult: int = 1,
    pct_start: float = 0.3,
    final_div_factor: float = 1e4,
    warmup: int = 0,
    cooldown: float | None = None,
    patience: int | None = None,
    metrics: Sequence[float] | None = None,
    steps_per_epoch: int | None = None,
    maximize: bool = False,
) -> np.ndarray:
    """The learning rate at steps ``0 .. total_steps - 1`` of a schedule, from its formula.

    Takes the same keyword fields as ``lrsearch.Schedule``; a field the kind does not use is
    ignored (validation is not the oracle's job). ``plateau`` also takes the metric after each
    epoch, ``steps_per_epoch`` and the direction (without metrics its LR never moves).

    Returns:
        A float64 array of shape ``(total_steps,)``.
    """
    t = np.arange(total_steps, dtype=np.float64)
    if kind == "constant":
        return np.full(total_steps, float(max_lr))
    if kind == "step":
        return max_lr * decay ** np.floor(t / step_size)
    if kind == "exponential":
        return max_lr * decay ** (t / step_size)
    if kind in ("triangular", "triangular2", "exp_range"):
        return _cyclic(kind, t, base_lr, max_lr, step_size, decay)
    if kind == "sgdr":
        return _sgdr(total_steps, base_lr, max_lr, step_size, decay, cycle_mult)
    if kind == "onecycle":
        return _onecycle(t, base_lr, max_lr, pct_start, final_div_factor)
    if kind == "cosine":
        cosine = base_lr + (max_lr - base_lr) * 0.5 * (
            1 + np.cos(np.pi * (t - warmup) / (total_steps - warmup))
        )
        return _warmed_up(t, max_lr, warmup, cosine)
    if kind == "wsd":
        d = max(1, round(cooldown * total_steps))
        start = total_steps - d
        decay = base_lr + (max_lr - base_lr) * (1 - np.sqrt(np.maximum(t - start, 0) / d))
        return _warmed_up(t, max_lr, warmup, np.where(t < start, max_lr, decay))
    if kind == "inverse_sqrt":
        return _warmed_up(t, max_lr, warmup, max_lr * np.sqrt(max(warmup, 1) / (t + 1)))
    if kind == "plateau":
        return _plateau(
            total_steps, max_lr, base_lr, decay, patience, metrics, steps_per_epoch, maximize
        )
    raise ValueError(f"the oracle has no formula for kind {kind!r}")


def _cyclic(
    kind: str, t: np.ndarray, base_lr: float, max_lr: float, s: int, d: float | None
) -> np.ndarray:
    # Smith (2017), "Cyclical Learning Rates for Training Neural Networks", section 3.1.
    cycle = np.floor(1 + t / (2 * s))
    x = np.abs(t / s - 2 * cycle + 1)
    amplitude = (max_lr - base_lr) * np.maximum(0.0, 1 - x)
    if kind == "triangular2":
        amplitude = amplitude * 0.5 ** (cycle - 1)
    elif kind == "exp_range":
        amplitude = amplitude * d ** (t / (2 * s))
    return base_lr + amplitude


def _sgdr(
    total_steps: int, base_lr: float, max_lr: float, s: int, d: float, mult: int
) -> np.ndarray:
    # The table of restart cycles (start step and length of cycle k = s * mult**k), built with
    # integers so the cycle boundaries are exact; then each step looks up its cycle.
    starts, lengths = [0], [s]
    while starts[-1] + lengths[-1] < total_steps:
        starts.append(starts[-1] + lengths[-1])
        lengths.append(lengths[-1] * mult)
    steps = np.arange(total_steps)
    k = np.searchsorted(np.asarray(starts), steps, side="right") - 1
    t_cur = steps - np.asarray(starts)[k]
    length = np.asarray(lengths, dtype=np.float64)[k]
    # The peak decays by d per restart but never below the floor: "cosine from the peak down to
    # base_lr" has no meaning once the peak is under base_lr, and then the LR rests at base_lr.
    peak = np.maximum(max_lr * d ** k.astype(np.float64), base_lr)
    return base_lr + (peak - base_lr) * (1 + np.cos(np.pi * t_cur / length)) / 2


def _cos_anneal(start: float, end: float, p: np.ndarray) -> np.ndarray:
    return end + (start - end) / 2 * (1 + np.cos(np.pi * p))


def _onecycle(
    t: np.ndarray, base_lr: float, max_lr: float, pct_start: float, final_div_factor: float
) -> np.ndarray:
    # torch's OneCycleLR (two phases, cosine), with div_factor = max_lr / base_lr, so it starts
    # at base_lr and ends at base_lr / final_div_factor.
    last = len(t) - 1
    end_warmup = pct_start * len(t) - 1  # a float: torch does not round it
    final_lr = base_lr / final_div_factor
    warmup = _cos_anneal(base_lr, max_lr, t / end_warmup)
    anneal = _cos_anneal(max_lr, final_lr, (t - end_warmup) / (last - end_warmup))
    return np.where(t <= end_warmup, warmup, anneal)


def _warmed_up(t: np.ndarray, max_lr: float, w: int, after: np.ndarray) -> np.ndarray:
    # The docs' linear warm-up: max_lr * (t+1)/w for t < w, so step 0 is max_lr / w, never 0.
    return np.where(t < w, max_lr * (t + 1) / max(w, 1), after)


def _plateau(
    total_steps: int,
    max_lr: float,
    base_lr: float,
    d: float,
    patience: int,
    metrics: Sequence[float] | None,
    steps_per_epoch: int | None,
    maximize: bool,
) -> np.ndarray:
    out = np.full(total_steps, float(max_lr))
    if metrics is None:
        return out
    assert steps_per_epoch is not None
    lr, best, bad = float(max_lr), (-np.inf if maximize else np.inf), 0
    n_epochs = -(-total_steps // steps_per_epoch)
    for epoch in range(n_epochs - 1):  # the value after the last epoch moves no step of the run
        value = metrics[epoch]
        if maximize:
            better = value > best * (1 + PLATEAU_THRESHOLD)
        else:
            better = value < best * (1 - PLATEAU_THRESHOLD)
        if better:
            best, bad = value, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = max(lr * d, base_lr), 0
        out[(epoch + 1) * steps_per_epoch :] = lr
    return out
