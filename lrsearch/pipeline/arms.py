"""Stage 3, the baselines a tuned schedule has to beat, each scored inside ``train``.

(a) **Constant LR by cross-validation** (study ``NAME/constant-cv``): the task's own optimizer
at one constant LR; one unit per LR of a log grid over the range-test bounds, scored by k-fold
CV (fold scores in user attrs); the chosen LR is the best CV mean, recomputed from the units.
(b) **Adam at 3e-4** (study ``NAME/adam-3e-4``): one unit, scored on the search's validation
split.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial
from torch import nn

from lrsearch.exceptions import LrsearchError
from lrsearch.pipeline.context import Context
from lrsearch.pipeline.queue import KeyedPlan, Stage, Unit
from lrsearch.schedules import Schedule
from lrsearch.space import LRBounds
from lrsearch.splits import cv_folds
from lrsearch.store import ATTR_CHOSEN_LR, ATTR_GRID, FINISHED, first_done
from lrsearch.tasks import Task
from lrsearch.training import subset, train_task

__all__ = [
    "ADAM_KEY",
    "ADAM_LR",
    "adam",
    "chosen_lr",
    "constant_grid",
    "cv_scores",
    "ensure_adam",
    "ensure_constant_cv",
    "grid_key",
    "help_adam",
    "help_constant_cv",
]

_log = logging.getLogger(__name__)

ADAM_LR = 3e-4
ADAM_KEY = "adam-3e-4"


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` with its defaults (betas 0.9/0.999, no weight decay)."""
    return torch.optim.Adam(params, lr=lr)


def constant_grid(bounds: LRBounds, n: int) -> list[float]:
    """``n`` LRs evenly spaced in log over ``[bounds.low, bounds.high]``, both ends included.

    Example:
        >>> [f"{lr:.0e}" for lr in constant_grid(LRBounds(1e-3, 1e-1), 3)]
        ['1e-03', '1e-02', '1e-01']
    """
    return [float(lr) for lr in np.geomspace(bounds.low, bounds.high, n)]


def grid_key(lr: float) -> str:
    """The unit key of grid LR ``lr`` (its exact float, so a key names one LR).

    Example:
        >>> grid_key(0.01)
        'lr=0.01'
    """
    return f"lr={lr!r}"


def cv_scores(
    task: Task,
    schedule: Schedule,
    splits: list[tuple[np.ndarray, np.ndarray]],
    *,
    seed: int,
    device: torch.device,
) -> tuple[list[float], str | None]:
    """The metric of ``schedule`` on each CV fold (fold k's model seeded ``seed + k``).

    Returns the fold scores and ``None``, or the scores so far and why a fold diverged (the
    folds after it are not run).
    """
    scores: list[float] = []
    for k, (fit_idx, score_idx) in enumerate(splits):
        result = train_task(
            task,
            subset(task.train, fit_idx),
            schedule=schedule,
            eval_data=subset(task.train, score_idx),
            seed=seed + k,
            device=device,
        )
        scores.append(result.final)
        if result.stop_reason is not None or not math.isfinite(result.final):
            return scores, f"fold {k}: {result.stop_reason or 'non-finite score'}"
    return scores, None


def chosen_lr(trials: Sequence[FrozenTrial], grid: Sequence[float], *, maximize: bool) -> float:
    """The grid LR with the best CV mean among the completed units (ties: the lower LR).

    Raises:
        LrsearchError: Every LR of the grid diverged.
    """
    done = first_done(trials)
    scored = [(lr, float(done[grid_key(lr)].value)) for lr in grid if grid_key(lr) in done]  # type: ignore[arg-type]
    if not scored:
        # An lrsearch error, so the CLI reports it in one line (exit code 2), not a traceback.
        raise LrsearchError("every constant LR diverged in cross-validation")
    sign = 1.0 if maximize else -1.0
    return max(scored, key=lambda item: (sign * item[1], -item[0]))[0]


def _constant_cv(ctx: Context, bounds: LRBounds) -> tuple[Stage, KeyedPlan, list[float]]:
    """The constant-LR CV stage: one unit per LR of the grid over ``bounds`` (param ``lr``);
    its value is the mean fold metric, the fold scores are in user attr ``fold_scores``. A
    fold whose training diverges prunes the unit."""
    cfg, task = ctx.cfg, ctx.task
    study = ctx.study("constant_cv")
    grid = constant_grid(bounds, cfg.cv_grid)
    splits = cv_folds(task, cfg.cv_folds, cfg.seed)
    low, high = min(grid), max(grid)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", low, high, log=True)
        schedule = Schedule("constant", max_lr=lr)
        trial.set_user_attr("schedule", schedule.describe())
        scores, reason = cv_scores(task, schedule, splits, seed=cfg.seed, device=ctx.device)
        trial.set_user_attr("fold_scores", scores)
        trial.set_user_attr("fold_sizes", [len(s) for _, s in splits])
        if reason is not None:
            trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)
        return float(np.mean(scores))

    units = [Unit(grid_key(lr), params={"lr": lr}) for lr in grid]
    stage = Stage("constant_cv", "constant-cv", study, objective, ctx.store)
    return stage, KeyedPlan(units, FINISHED), grid


def help_constant_cv(ctx: Context, bounds: LRBounds) -> None:
    """Run the CV units nobody has claimed yet, without waiting for the ones others run."""
    stage, plan, _ = _constant_cv(ctx, bounds)
    ctx.work(stage, plan, wait=False)


def ensure_constant_cv(ctx: Context, bounds: LRBounds) -> float:
    """Make sure every LR of the grid over ``bounds`` is cross-validated; return the chosen LR
    (the best CV mean, recomputed from the units)."""
    stage, plan, grid = _constant_cv(ctx, bounds)
    ctx.work(stage, plan)
    study = stage.study
    lr = chosen_lr(study.get_trials(deepcopy=False), grid, maximize=ctx.task.maximize)
    ctx.derive(study, ATTR_GRID, grid)
    ctx.derive(study, ATTR_CHOSEN_LR, lr)
    return lr


def _adam(ctx: Context) -> tuple[Stage, KeyedPlan]:
    """The Adam lr=3e-4 stage: one unit, scored on the search's validation split."""
    task = ctx.task
    study = ctx.study("adam")

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", ADAM_LR, ADAM_LR)
        trial.set_user_attr("optimizer", "Adam")
        result = train_task(
            task,
            ctx.search_train,
            schedule=None,
            lr=lr,
            optimizer_factory=adam,
            eval_data=ctx.validation,
            seed=ctx.cfg.seed,
            device=ctx.device,
            trial=trial,
        )
        return result.final

    plan = KeyedPlan([Unit(ADAM_KEY, params={"lr": ADAM_LR})], FINISHED)
    return Stage("adam", "adam-3e-4", study, objective, ctx.store), plan


def help_adam(ctx: Context) -> None:
    """Run Adam's unit if nobody has claimed it, without waiting for another worker's."""
    ctx.work(*_adam(ctx), wait=False)


def ensure_adam(ctx: Context) -> FrozenTrial:
    """Make sure Adam at lr=3e-4 (constant) has been scored on the validation split."""
    stage, plan = _adam(ctx)
    ctx.work(stage, plan)
    return first_done(stage.study.get_trials(deepcopy=False), FINISHED)[ADAM_KEY]
