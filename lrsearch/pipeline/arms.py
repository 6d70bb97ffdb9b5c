"""Stage 3, the baselines a tuned schedule has to beat, each scored inside ``train``.

(a) **Constant LR by cross-validation** (study ``NAME/constant-cv``): the task's own optimizer
at one constant LR; one unit per LR of a log grid over the range-test bounds, scored by k-fold
CV (fold scores in user attrs); the chosen LR is the best CV mean, recomputed from the units.
(b) **Recipes** (no tuning): Adam at 3e-4 (study ``NAME/adam-3e-4``), Prodigy (``NAME/prodigy``)
and Schedule-Free AdamW (``NAME/schedule-free-adamw``), the learning-rate-free optimizers a user
would pick instead of tuning; each one unit, scored on the search's validation split.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial

from lrsearch.choices import ARMS, PER_EPOCH_KINDS
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.optimizers import adam, prodigy, schedule_free_adamw, search_optimizer
from lrsearch.pipeline import bounds as _bounds
from lrsearch.pipeline.context import Context
from lrsearch.pipeline.queue import KeyedPlan, Stage, Unit
from lrsearch.schedules import Schedule
from lrsearch.space import LRBounds
from lrsearch.splits import cv_folds, watch_split
from lrsearch.store import (
    ATTR_CHOSEN_LR,
    ATTR_GRID,
    FINISHED,
    FOLD_SCORES,
    FOLD_SIZES,
    StopReason,
    first_done,
)
from lrsearch.tasks import OptimizerFactory, Task, subset
from lrsearch.training import FitResult, TrialRecord, train_task

__all__ = [
    "ADAM_KEY",
    "ADAM_LR",
    "RECIPES",
    "Recipe",
    "chosen_lr",
    "constant_grid",
    "cv_scores",
    "ensure_constant_cv",
    "ensure_recipes",
    "grid_key",
    "healed_grid",
    "help_recipes",
    "recipe_arms",
]

_log = logging.getLogger(__name__)

ADAM_LR = 3e-4
ADAM_KEY = "adam-3e-4"
#: schedulefree's documented default LR for AdamWScheduleFree, and the arm's warmup share.
SCHEDULE_FREE_LR = 0.0025
SCHEDULE_FREE_WARMUP = 0.05


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
    optimizer_factory: OptimizerFactory | None = None,
    watch_fraction: float | None = None,
) -> tuple[list[float], StopReason | None]:
    """The metric of ``schedule`` on each CV fold (fold k's model seeded ``seed + k``), with
    ``optimizer_factory`` (default: the task's).

    A ``plateau`` schedule fits on ``1 - watch_fraction`` of each fold's fit part and watches
    the rest (:func:`lrsearch.splits.watch_split`, split seed ``seed``), never the fold it is
    scored on.

    Returns the fold scores and ``None``, or the scores so far and why a fold stopped (the
    folds after it are not run).

    Raises:
        InvalidParameterError: A ``plateau`` schedule without ``watch_fraction``.
    """
    per_epoch = schedule.kind in PER_EPOCH_KINDS
    if per_epoch and watch_fraction is None:
        raise InvalidParameterError(
            f"a {schedule.kind} schedule steps on a metric it must not be scored on: give "
            "watch_fraction, the share of each fold's fit part it watches"
        )
    scores: list[float] = []
    for k, (fit_idx, score_idx) in enumerate(splits):
        watched = None
        if per_epoch:
            assert watch_fraction is not None
            fit_idx, watch_idx = watch_split(task, fit_idx, watch_fraction, seed)
            watched = subset(task.train, watch_idx)
        result = train_task(
            task,
            subset(task.train, fit_idx),
            schedule=schedule,
            eval_data=subset(task.train, score_idx),
            plateau_data=watched,
            seed=seed + k,
            device=device,
            optimizer_factory=optimizer_factory,
        )
        scores.append(result.final)
        if result.stop is not None or not math.isfinite(result.final):
            return scores, _fold_stop(k, result)
    return scores, None


def record_stop(trial: optuna.Trial, stop: StopReason) -> NoReturn:
    """Store why a CV unit stopped on its trial (code and words), and prune it."""
    for key, value in stop.to_attrs().items():
        trial.set_user_attr(key, value)
    raise optuna.TrialPruned(stop.words)


def _fold_stop(k: int, result: FitResult) -> StopReason:
    """Why fold ``k`` stopped: its run's reason, or a score that is not a number."""
    if result.stop is None:
        return StopReason("non-finite", f"fold {k}: non-finite score")
    return StopReason(result.stop.code, f"fold {k}: {result.stop.words}")


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


def constant_optimizer(ctx: Context) -> OptimizerFactory:
    """The constant-cv arm's optimizer: the study's first searched optimizer (default: the
    task's own)."""
    return search_optimizer(ctx.cfg.optimizers[0], ctx.task.make_optimizer)


def healed_grid(start: LRBounds, n: int, extensions: Sequence[_bounds.Extension]) -> list[float]:
    """The CV grid over ``start`` (:func:`constant_grid`), grown by one point past its end for
    each extension of that side of the bounds, at the grid's own spacing or half a decade when
    that is finer (never past the bounds): a grid that already ran keeps its points and gains
    the next one out, which costs one point where the constant's best was at the edge by a
    little, and a point more each time the choice moves out to the new end.

    Example:
        >>> ext = _bounds.Extension("task", 0, "high", 1e-3, 1.0, "cv-edge", 0.1)
        >>> [f"{lr:.1e}" for lr in healed_grid(LRBounds(1e-3, 1e-1), 3, [ext])]
        ['1.0e-03', '1.0e-02', '1.0e-01', '3.2e-01']
    """
    grid = constant_grid(start, n)
    step = 10 ** min(math.log10(start.high / start.low) / (n - 1), 0.5)
    for extension in extensions:
        if extension.side == "high":
            grid.append(min(grid[-1] * step, extension.high))
        else:
            grid.insert(0, max(grid[0] / step, extension.low))
    return [float(lr) for lr in grid]


def _constant_cv(
    ctx: Context, start: LRBounds, extensions: Sequence[_bounds.Extension]
) -> tuple[Stage, KeyedPlan, list[float]]:
    """The constant-LR CV stage: one unit per LR of the grid over ``start`` grown by
    ``extensions`` (:func:`healed_grid`; param ``lr``), with the study's first optimizer; its
    value is the mean fold metric, the fold scores are in user attr ``fold_scores``. A fold
    whose training diverges prunes the unit."""
    cfg, task = ctx.cfg, ctx.task
    study = ctx.study("constant_cv")
    grid = healed_grid(start, cfg.cv_grid, extensions)
    splits = cv_folds(task, cfg.cv_folds, cfg.seed)
    low, high = min(grid), max(grid)
    make = constant_optimizer(ctx)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", low, high, log=True)
        schedule = Schedule("constant", max_lr=lr)
        optimizer = cfg.optimizers[0]
        TrialRecord(trial).setup(schedule.describe(), None if optimizer == "task" else optimizer)
        scores, stop = cv_scores(
            task, schedule, splits, seed=cfg.seed, device=ctx.device, optimizer_factory=make
        )
        trial.set_user_attr(FOLD_SCORES, scores)
        trial.set_user_attr(FOLD_SIZES, [len(s) for _, s in splits])
        if stop is not None:
            record_stop(trial, stop)
        return float(np.mean(scores))

    units = [Unit(grid_key(lr), params={"lr": lr}) for lr in grid]
    stage = Stage("constant_cv", "constant-cv", study, objective, ctx.store)
    return stage, KeyedPlan(units, FINISHED), grid


def ensure_constant_cv(ctx: Context, start: LRBounds, *, heal: bool = True) -> float:
    """Make sure every LR of the grid is cross-validated; return the chosen LR (the best CV
    mean, recomputed from the units).

    The grid spans ``start`` (where the study started), grown a point past an end for each
    extension of the first optimizer's bounds (:func:`healed_grid`,
    :mod:`lrsearch.pipeline.bounds`). With ``heal``, a chosen LR at the grid's end extends that
    side of the bounds by a decade (a stored record) and the grid gains its next point, until
    the choice is inside or the cap is reached."""
    name = ctx.cfg.optimizers[0]
    records = ctx.study("bounds")
    while True:
        extensions = _bounds.history(records.get_trials(deepcopy=False), name)
        bounds = _bounds.current(start, extensions)
        stage, plan, grid = _constant_cv(ctx, start, extensions)
        ctx.work(stage, plan)
        study = stage.study
        lr = chosen_lr(study.get_trials(deepcopy=False), grid, maximize=ctx.task.maximize)
        side = _grid_end(lr, grid, bounds)
        if side is None or not heal:
            break
        wider = _bounds.extended(bounds, side, start)
        if wider is None:
            break
        extension = _bounds.Extension(
            name, len(extensions), side, wider.low, wider.high, "cv-edge", lr
        )
        if _bounds.record(records, extension, lock=ctx.lock):
            _log.info(
                "the CV-chosen constant LR %.3g sits at the grid's %s end: widened", lr, side
            )
    ctx.derive(study, ATTR_GRID, grid)
    ctx.derive(study, ATTR_CHOSEN_LR, lr)
    return lr


def _grid_end(lr: float, grid: Sequence[float], bounds: LRBounds) -> _bounds.Side | None:
    """The end of the grid (or of ``bounds``) ``lr`` sits at, if any."""
    if lr >= grid[-1]:
        return "high"
    if lr <= grid[0]:
        return "low"
    return _bounds.at_edge(lr, bounds)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """An arm trained by a fixed recipe, no tuning: an optimizer, an LR, a schedule shape.

    Attributes:
        name: The arm's name (:data:`~lrsearch.choices.ARMS`).
        stage: The :class:`~lrsearch.store.StudyNames` attribute of its validation study.
        optimizer: The optimizer's name as stored with the arm.
        make: ``make(warmup_steps)`` gives the optimizer factory (its own warmup, in steps).
        lr: The LR (the peak, for a schedule that anneals).
        anneal: Cosine-anneal the LR to 0 over the run (else constant).
        warmup_share: Share of the run the optimizer warms up over itself.
    """

    name: str
    stage: str
    optimizer: str
    make: Callable[[int], OptimizerFactory]
    lr: float
    anneal: bool = False
    warmup_share: float = 0.0

    def schedule(self) -> Schedule:
        """The arm's LR schedule (the optimizer's own warmup is not part of it)."""
        if self.anneal:
            return Schedule("cosine", max_lr=self.lr, base_lr=0.0)
        return Schedule("constant", max_lr=self.lr)

    def optimizer_factory(self, total_steps: int) -> OptimizerFactory:
        """The optimizer factory for a run of ``total_steps`` optimizer steps."""
        return self.make(round(self.warmup_share * total_steps))

    @property
    def note(self) -> str:
        """What the schedule's words leave out: the optimizer's own warmup."""
        if not self.warmup_share:
            return ""
        return f", warmup over the first {self.warmup_share:.0%} inside the optimizer"

    @property
    def params(self) -> dict[str, Any]:
        """What the arm trains, as stored with its runs: a constant schedule's one ``lr``, or
        the annealed schedule's params (the optimizer and :attr:`note` name the rest)."""
        if self.anneal:
            return self.schedule().to_params(steps_per_epoch=1)
        return {"lr": self.lr}


#: The fixed-recipe arms, by name: Adam at 3e-4 (constant); Prodigy at lr=1 with a cosine to 0
#: (its authors' advice); Schedule-Free AdamW at its documented defaults (lr 0.0025) with a
#: warmup of 5% of the run inside the optimizer.
RECIPES: dict[str, Recipe] = {
    ADAM_KEY: Recipe(ADAM_KEY, "adam", "Adam", lambda _: adam, ADAM_LR),
    "prodigy": Recipe("prodigy", "prodigy", "Prodigy", lambda _: prodigy, 1.0, anneal=True),
    "schedule-free-adamw": Recipe(
        "schedule-free-adamw",
        "schedule_free_adamw",
        "AdamWScheduleFree",
        schedule_free_adamw,
        SCHEDULE_FREE_LR,
        warmup_share=SCHEDULE_FREE_WARMUP,
    ),
}


def _recipe_stage(ctx: Context, recipe: Recipe) -> tuple[Stage, KeyedPlan]:
    """A recipe arm's validation stage: one unit (key: the arm's name), trained on the
    search-train split and scored on the validation split like a search trial."""
    task = ctx.task
    study = ctx.study(recipe.stage)
    total = task.epochs * ctx.spe_search

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", recipe.lr, recipe.lr)
        schedule = dataclasses.replace(recipe.schedule(), max_lr=lr)
        TrialRecord(trial).setup(schedule.describe(ctx.spe_search), recipe.optimizer)
        result = train_task(
            task,
            ctx.search_train,
            schedule=schedule,
            optimizer_factory=recipe.optimizer_factory(total),
            eval_data=ctx.validation,
            seed=ctx.cfg.seed,
            device=ctx.device,
            trial=trial,
        )
        return result.final

    plan = KeyedPlan([Unit(recipe.name, params={"lr": recipe.lr})], FINISHED)
    return Stage(recipe.stage, recipe.name, study, objective, ctx.store), plan


def recipe_arms(ctx: Context) -> list[Recipe]:
    """The config's fixed-recipe arms, in :data:`~lrsearch.choices.ARMS` order."""
    return [RECIPES[name] for name in ARMS if name in RECIPES and name in ctx.cfg.arms]


def help_recipes(ctx: Context) -> None:
    """Run the recipe arms' validation units nobody has claimed, without waiting for others'."""
    for recipe in recipe_arms(ctx):
        ctx.work(*_recipe_stage(ctx, recipe), wait=False)


def ensure_recipes(ctx: Context) -> dict[str, FrozenTrial]:
    """Make sure every recipe arm of the config has been scored on the validation split; its
    unit by arm name."""
    out = {}
    for recipe in recipe_arms(ctx):
        stage, plan = _recipe_stage(ctx, recipe)
        ctx.work(stage, plan)
        out[recipe.name] = first_done(stage.study.get_trials(deepcopy=False), FINISHED)[
            recipe.name
        ]
    return out
