"""Stage 1, the range test: one unit (study ``NAME/range-test``), run once per study.

Its result defines the search space (the bounds) and the constant-LR grid, so it is never
recomputed: a resumed study, and every worker, reads the first completed unit. It is also
copied to study NAME's user attr ``range_test`` (the storage contract; the dashboard and the
report read it there).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import optuna
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrsearch.config import StudyConfig
from lrsearch.pipeline.context import Context, prepare
from lrsearch.pipeline.queue import KeyedPlan, Stage, Unit
from lrsearch.range_test import RangeTestResult, range_test
from lrsearch.splits import holdout
from lrsearch.store import ATTR_RANGE_TEST, UNIT_RANGE_TEST, StoredStudy, first_done
from lrsearch.tasks import Data, Task, steps_per_epoch
from lrsearch.training import subset

__all__ = ["KEY", "ensure", "load", "preview", "study_range_test"]

_log = logging.getLogger(__name__)

#: The unit's key (its result is in user attr ``UNIT_RANGE_TEST``).
KEY = "range-test"


def _loader(data: Data, batch_size: int, seed: int) -> DataLoader[Any]:
    dataset = TensorDataset(*data) if isinstance(data, tuple) else data
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)


def study_range_test(
    cfg: StudyConfig, task: Task, train: Data, device: torch.device, *, total_steps: int
) -> RangeTestResult:
    """The range test of a study: a fresh model seeded ``cfg.seed``, the task's optimizer,
    batches of ``train`` (the search-train split) in a seeded order; the suggestion is for a
    run of ``total_steps`` (a search trial's: the task's epochs over ``train``)."""
    torch.manual_seed(cfg.seed)
    model = task.make_model().to(device)
    optimizer = task.make_optimizer(model.parameters(), cfg.range_start_lr)
    return range_test(
        model,
        optimizer,
        task.loss,
        _loader(train, task.batch_size, cfg.seed),
        start_lr=cfg.range_start_lr,
        end_lr=cfg.range_end_lr,
        num_iter=cfg.range_num_iter,
        repeats=cfg.range_repeats,
        seed=cfg.seed,
        total_steps=total_steps,
        diagnostics=cfg.diagnostics,
    )


def preview(
    config: StudyConfig | str, *, overrides: Mapping[str, Any] | None = None
) -> RangeTestResult:
    """The range test study NAME would run (same model seed, split and batches); stores nothing."""
    cfg, task, device = prepare(config, overrides=overrides)
    fit_idx, _ = holdout(task, cfg.validation_fraction, cfg.seed)
    steps = task.epochs * steps_per_epoch(len(fit_idx), task.batch_size)
    return study_range_test(cfg, task, subset(task.train, fit_idx), device, total_steps=steps)


def ensure(ctx: Context) -> RangeTestResult:
    """Make sure the study's range test is done (by this worker or another), then load it."""
    search = ctx.study("search")
    legacy = search.user_attrs.get(ATTR_RANGE_TEST)
    if legacy is not None and ctx.names.range_test not in _study_names(ctx):
        # Stored before the range test was a unit of its own: reuse it as it is.
        return RangeTestResult.from_dict(legacy)
    study = ctx.study("range_test")

    def objective(trial: optuna.Trial) -> float:
        steps = ctx.task.epochs * ctx.spe_search
        rt = study_range_test(ctx.cfg, ctx.task, ctx.search_train, ctx.device, total_steps=steps)
        trial.set_user_attr(UNIT_RANGE_TEST, rt.to_dict())
        return rt.suggestion

    stage = Stage("range_test", "range test", study, objective, ctx.store)
    ctx.work(stage, KeyedPlan([Unit(KEY)]))
    rt = _from_trials(study.get_trials(deepcopy=False))
    assert rt is not None  # the stage is done
    ctx.derive(search, ATTR_RANGE_TEST, rt.to_dict())
    return rt


def _study_names(ctx: Context) -> list[str]:
    return optuna.get_all_study_names(ctx.store)


def _from_trials(trials: list[optuna.trial.FrozenTrial]) -> RangeTestResult | None:
    unit = first_done(trials).get(KEY)
    return None if unit is None else RangeTestResult.from_dict(unit.user_attrs[UNIT_RANGE_TEST])


def load(stored: StoredStudy) -> RangeTestResult | None:
    """The stored range test: the first completed unit (or, for a study stored before units,
    study NAME's attr); ``None`` before it ran."""
    rt = _from_trials(stored.trials("range_test"))
    if rt is None and ATTR_RANGE_TEST in stored.attrs:
        rt = RangeTestResult.from_dict(stored.attrs[ATTR_RANGE_TEST])
    return rt
