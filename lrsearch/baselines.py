"""The two baselines a tuned schedule has to beat.

(a) **Constant LR by cross-validation**: the task's own optimizer at one constant LR, the LR
picked from a log grid over the range-test bounds by k-fold CV inside the training data (study
``NAME/constant-cv``, one trial per grid LR, fold scores in user attrs). (b) **Adam at 3e-4**
(study ``NAME/adam-3e-4``), scored on the same validation split as the search trials.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import numpy as np
import optuna
import torch
from torch import nn

from lrsearch._splits import cv_folds
from lrsearch.exceptions import LrsearchError
from lrsearch.schedules import Schedule
from lrsearch.space import LRBounds
from lrsearch.tasks import Data, Task
from lrsearch.training import subset, train_task

__all__ = ["ADAM_LR", "adam", "constant_grid", "cv_scores", "run_adam", "run_constant_cv"]

_log = logging.getLogger(__name__)

ADAM_LR = 3e-4


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


def run_constant_cv(
    study: optuna.Study,
    task: Task,
    grid: list[float],
    *,
    folds: int,
    seed: int,
    device: torch.device,
    on_trial: Callable[[], None] | None = None,
) -> float:
    """Cross-validate each constant LR of ``grid`` in ``study``; return the best LR.

    Each grid LR is one trial (param ``lr``); its value is the mean fold metric, the fold
    scores are in user attr ``fold_scores``. LRs already scored in ``study`` are not rerun, so
    an interrupted baseline resumes. A fold whose training diverges prunes the trial.

    Raises:
        LrsearchError: Every LR of the grid diverged.
    """
    splits = cv_folds(task, folds, seed)
    low, high = min(grid), max(grid)
    for lr in grid:
        study.enqueue_trial({"lr": lr}, skip_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", low, high, log=True)
        schedule = Schedule("constant", max_lr=lr)
        trial.set_user_attr("schedule", schedule.describe())
        scores, reason = cv_scores(task, schedule, splits, seed=seed, device=device)
        trial.set_user_attr("fold_scores", scores)
        trial.set_user_attr("fold_sizes", [len(s) for _, s in splits])
        if reason is not None:
            trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason)
        return float(np.mean(scores))

    waiting = [t for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]
    callbacks = [lambda s, t: on_trial()] if on_trial is not None else None
    if waiting:
        study.optimize(objective, n_trials=len(waiting), callbacks=callbacks)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not done:
        # An lrsearch error, so the CLI reports it in one line (exit code 2), not a traceback.
        raise LrsearchError("every constant LR diverged in cross-validation")
    return float(study.best_trial.params["lr"])


def run_adam(
    study: optuna.Study,
    task: Task,
    train: Data,
    val: Data,
    *,
    seed: int,
    device: torch.device,
) -> optuna.trial.FrozenTrial:
    """Adam at lr=3e-4 with a constant LR, scored on the search's validation split (once)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if done:
        return done[0]

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", ADAM_LR, ADAM_LR)
        trial.set_user_attr("optimizer", "Adam")
        result = train_task(
            task,
            train,
            schedule=None,
            lr=lr,
            optimizer_factory=adam,
            eval_data=val,
            seed=seed,
            device=device,
            trial=trial,
        )
        return result.final

    study.optimize(objective, n_trials=1)
    return study.best_trial
