"""Stage 4, the finalists: the top search trials re-scored on the constant baseline's CV folds.

One validation split is a noisy judge and the best of many trials on it is biased up (the
winner's curse); the constant-LR baseline is chosen by k-fold CV, so the tuned arm is too. Each
finalist is a unit of study ``NAME/finalists`` (value: its CV mean; pruned when a fold
diverges); the best CV mean among the current top trials is the tuned arm, recomputed from the
units on every read. Study NAME's user attr ``finalists`` holds the same scores for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from lrsearch.pipeline.arms import cv_scores, record_stop
from lrsearch.pipeline.context import Context
from lrsearch.pipeline.queue import KeyedPlan, Stage, Unit
from lrsearch.pipeline.search import optimizer_factory
from lrsearch.space import setup_from_params
from lrsearch.splits import cv_folds
from lrsearch.store import (
    FINALIST_TRIAL,
    FINISHED,
    FOLD_SCORES,
    UNIT_FINALIST,
    Finalist,
    first_done,
    top_trials,
)
from lrsearch.tasks import steps_per_epoch

__all__ = ["ensure", "finalist_key", "help_finalists", "pick"]

_log = logging.getLogger(__name__)


def finalist_key(trial: FrozenTrial) -> str:
    """The unit key of search trial ``trial`` as a finalist.

    Example:
        >>> study = optuna.create_study()
        >>> study.add_trial(optuna.trial.create_trial(value=1.0))
        >>> finalist_key(study.trials[0])
        'trial/0'
    """
    return f"trial/{trial.number}"


def pick(
    top: Sequence[FrozenTrial], units: Sequence[FrozenTrial], *, maximize: bool
) -> tuple[FrozenTrial, list[Finalist]]:
    """The tuned arm's search trial among ``top`` and the finalists' scores, from the units.

    With one top trial there is nothing to re-score: it is the tuned arm. A finalist without a
    finished unit, or whose CV diverged, cannot win; if none has a score, the best search trial
    wins.
    """
    if len(top) <= 1:
        return top[0], []
    done = first_done(units, FINISHED)
    finalists = [
        Finalist.from_dict(done[finalist_key(t)].user_attrs[UNIT_FINALIST])
        for t in top
        if finalist_key(t) in done
    ]
    scored = [f for f in finalists if f.cv_mean is not None]
    if not scored:
        return top[0], finalists
    sign = 1.0 if maximize else -1.0
    best = max(scored, key=lambda f: sign * float(f.cv_mean))  # type: ignore[arg-type]
    return next(t for t in top if t.number == best.trial), finalists


def _stage(ctx: Context, top: Sequence[FrozenTrial]) -> tuple[Stage, KeyedPlan]:
    """The finalists stage: one unit per top search trial, scored on the CV folds."""
    cfg, task = ctx.cfg, ctx.task
    search = ctx.study("search")
    study = ctx.study("finalists")
    by_number = {t.number: t for t in top}
    splits = cv_folds(task, cfg.cv_folds, cfg.seed)
    spe = steps_per_epoch(len(splits[0][0]), task.batch_size)

    def objective(trial: optuna.Trial) -> float:
        number = int(trial.user_attrs[FINALIST_TRIAL])
        searched = by_number.get(number) or search.get_trials(deepcopy=False)[number]
        setup = setup_from_params(
            searched.params, optimizers=cfg.optimizers, steps_per_epoch=spe, epochs=task.epochs
        )
        scores, stop = cv_scores(
            task,
            setup.schedule,
            splits,
            seed=cfg.seed,
            device=ctx.device,
            optimizer_factory=optimizer_factory(setup, task),
            watch_fraction=cfg.validation_fraction,
        )
        record = Finalist(
            trial=number,
            params=dict(searched.params),
            value=float(searched.value),  # type: ignore[arg-type]
            fold_scores=scores,
            cv_mean=None if stop else float(np.mean(scores)),
            diverged=None if stop is None else stop.words,
        )
        trial.set_user_attr(UNIT_FINALIST, record.to_dict())
        trial.set_user_attr(FOLD_SCORES, record.to_dict()[FOLD_SCORES])
        if stop is not None:
            record_stop(trial, stop)
        return float(record.cv_mean)  # type: ignore[arg-type]

    units = [Unit(finalist_key(t), user_attrs={FINALIST_TRIAL: t.number}) for t in top]
    return Stage("finalists", "finalists", study, objective, ctx.store), KeyedPlan(units, FINISHED)


def help_finalists(ctx: Context) -> None:
    """Run the finalists nobody has claimed yet, without waiting for the ones others run."""
    top = top_trials(ctx.study("search"), ctx.cfg.finalists)
    if len(top) > 1:
        ctx.work(*_stage(ctx, top), wait=False)


def ensure(ctx: Context) -> FrozenTrial:
    """Make sure the top search trials are cross-validated; return the tuned arm's trial."""
    search = ctx.study("search")
    top = top_trials(search, ctx.cfg.finalists)
    if len(top) <= 1:
        return top[0]
    stage, plan = _stage(ctx, top)
    ctx.work(stage, plan)
    units = stage.study.get_trials(deepcopy=False)
    tuned, _ = pick(top, units, maximize=ctx.task.maximize)
    return tuned
