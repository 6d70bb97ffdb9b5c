"""The final comparison: each arm trained on all of ``train`` with S seeds, scored on ``test``.

The test data is loaded here and nowhere earlier. Every arm gets the same epochs, data, model
init seeds and evaluation. The per-epoch test curve is kept for reporting (epochs-to-target) and
never used to choose anything. The paired difference tuned - baseline over seeds gets a 95%
Student-t interval (scipy).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy import stats

from lrsearch.schedules import Schedule
from lrsearch.tasks import Task
from lrsearch.tasks._task import OptimizerFactory
from lrsearch.tasks._task import steps_per_epoch as _steps_per_epoch
from lrsearch.training import train_task

__all__ = ["ARMS", "Arm", "compare", "epochs_to_target", "paired_interval"]

_log = logging.getLogger(__name__)

ARMS = ("tuned", "constant-cv", "adam-3e-4")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One contender: a schedule (the LR) and, for Adam, another optimizer factory."""

    name: str
    schedule: Schedule
    params: dict[str, Any]
    optimizer: str = "task"
    optimizer_factory: OptimizerFactory | None = None


def epochs_to_target(curve: list[float], target: float, *, maximize: bool) -> int | None:
    """First epoch (1-based) whose value reaches ``target``; ``None`` if none does.

    Example:
        >>> epochs_to_target([0.5, 0.8, 0.9], 0.8, maximize=True)
        2
    """
    for epoch, value in enumerate(curve, start=1):
        if (value >= target) if maximize else (value <= target):
            return epoch
    return None


def paired_interval(a: list[float], b: list[float], level: float = 0.95) -> dict[str, Any]:
    """Mean of ``a - b`` over paired seeds, its Student-t interval and p-value (scipy).

    ``significant`` is whether the interval excludes 0. With identical differences the
    interval collapses to the point.

    Example:
        >>> r = paired_interval([0.9, 0.92, 0.91], [0.8, 0.83, 0.8])
        >>> round(r["mean_diff"], 3), r["significant"]
        (0.1, True)
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean = float(d.mean())
    if len(d) < 2 or float(d.std()) == 0.0:
        low = high = mean
        p = 1.0 if mean == 0.0 else 0.0
    else:
        res = stats.ttest_rel(a, b)
        ci = res.confidence_interval(confidence_level=level)
        low, high, p = float(ci.low), float(ci.high), float(res.pvalue)
    return {
        "mean_diff": mean,
        "ci_low": low,
        "ci_high": high,
        "level": level,
        "p_value": p,
        "significant": bool(low > 0 or high < 0),
        "n": len(d),
    }


def compare(
    task: Task,
    arms: list[Arm],
    *,
    seeds: int,
    seed: int,
    device: torch.device,
    on_run: Callable[[str, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every arm on all of ``task.train`` for ``seeds`` seeds and score it on the test data.

    Returns:
        ``{arm name: ARM}`` with ARM = ``test_metric_mean``, ``test_metric_std``,
        ``test_metric_per_seed``, ``test_curve_mean``/``test_curve_per_seed`` (per epoch),
        ``epochs``, ``params``, ``schedule`` (in words), ``optimizer``, ``seeds``,
        ``epochs_to_target`` and ``target`` (the constant-cv arm's final mean), ``stop_reasons``
        and, for every arm but the first, ``tuned_minus_this`` (:func:`paired_interval`).
    """
    test = task.load_test()
    n_train = task.n_train
    steps_per_epoch = _steps_per_epoch(n_train, task.batch_size)
    seed_list = [seed + 1000 + s for s in range(seeds)]
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        curves: list[list[float]] = []
        reasons: list[str | None] = []
        seconds = 0.0
        for s in seed_list:
            result = train_task(
                task,
                task.train,
                schedule=arm.schedule,
                eval_data=test,
                seed=s,
                device=device,
                optimizer_factory=arm.optimizer_factory,
            )
            curve = list(result.values)
            curve += [curve[-1]] * (task.epochs - len(curve))  # a diverged run stays where it died
            curves.append(curve)
            reasons.append(result.stop_reason)
            seconds += result.seconds
            if on_run is not None:
                on_run(arm.name, s)
        finals = [c[-1] for c in curves]
        out[arm.name] = {
            "test_metric_mean": float(np.mean(finals)),
            "test_metric_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
            "test_metric_per_seed": finals,
            "test_curve_mean": [float(v) for v in np.mean(curves, axis=0)],
            "test_curve_per_seed": curves,
            "epochs": task.epochs,
            "steps": task.epochs * steps_per_epoch,
            "params": arm.params,
            "schedule": arm.schedule.describe(steps_per_epoch),
            "optimizer": arm.optimizer,
            "seeds": seed_list,
            "stop_reasons": reasons,
            "train_seconds": seconds,
        }
    target_arm = out.get("constant-cv")
    if target_arm is not None:
        target = target_arm["test_metric_mean"]
        for arm_out in out.values():
            arm_out["target"] = target
            arm_out["epochs_to_target"] = epochs_to_target(
                arm_out["test_curve_mean"], target, maximize=task.maximize
            )
    first = arms[0].name
    for name, arm_out in out.items():
        if name != first:
            arm_out["tuned_minus_this"] = paired_interval(
                out[first]["test_metric_per_seed"], arm_out["test_metric_per_seed"]
            )
    return out
