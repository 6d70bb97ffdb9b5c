"""Stage 1, the range test: one unit per searched optimizer (study ``NAME/range-test``), run
once per study.

Its result defines the search space (the bounds) and the constant-LR grid, so it is never
recomputed: a resumed study, and every worker, reads the first completed unit. The first
optimizer's is also copied to study NAME's user attr ``range_test`` (the storage contract; the
dashboard and the report read it there); with several optimizers, user attr ``range_tests``
holds each one's. The unit of the task's own optimizer has key ``range-test``, another
optimizer's ``range-test/NAME``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrsearch.config import StudyConfig
from lrsearch.optimizers import search_optimizer
from lrsearch.pipeline.context import Context, prepare
from lrsearch.pipeline.queue import KeyedPlan, Stage, Unit
from lrsearch.range_test import RangeTestResult, range_test
from lrsearch.splits import holdout
from lrsearch.store import (
    ATTR_RANGE_TEST,
    ATTR_RANGE_TESTS,
    UNIT,
    UNIT_RANGE_TEST,
    StoredStudy,
    first_done,
)
from lrsearch.tasks import Data, Task, steps_per_epoch
from lrsearch.training import charged, subset

__all__ = ["KEY", "ensure", "load", "load_all", "preview", "study_range_test", "unit_key"]

_log = logging.getLogger(__name__)

#: The unit's key for the task's own optimizer (its result is in user attr
#: ``UNIT_RANGE_TEST``).
KEY = "range-test"


def unit_key(optimizer: str) -> str:
    """The range-test unit's key for searched optimizer ``optimizer``.

    Example:
        >>> unit_key("task"), unit_key("adamw")
        ('range-test', 'range-test/adamw')
    """
    return KEY if optimizer == "task" else f"{KEY}/{optimizer}"


def _loader(data: Data, batch_size: int, seed: int) -> DataLoader[Any]:
    dataset = TensorDataset(*data) if isinstance(data, tuple) else data
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)


def study_range_test(
    cfg: StudyConfig,
    task: Task,
    train: Data,
    device: torch.device,
    *,
    total_steps: int,
    optimizer: str = "task",
) -> RangeTestResult:
    """The range test of a study: a fresh model seeded ``cfg.seed``, searched optimizer
    ``optimizer`` (default the task's own), batches of ``train`` (the search-train split) in a
    seeded order; the suggestion is for a run of ``total_steps`` (a search trial's: the task's
    epochs over ``train``)."""
    torch.manual_seed(cfg.seed)
    model = task.make_model().to(device)
    make = search_optimizer(optimizer, task.make_optimizer)
    opt = make(model.parameters(), cfg.range_start_lr)
    return range_test(
        model,
        opt,
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
    """The range test study NAME would run for its first optimizer (same model seed, split
    and batches); stores nothing."""
    cfg, task, device = prepare(config, overrides=overrides)
    fit_idx, _ = holdout(task, cfg.validation_fraction, cfg.seed)
    steps = task.epochs * steps_per_epoch(len(fit_idx), task.batch_size)
    return study_range_test(
        cfg,
        task,
        subset(task.train, fit_idx),
        device,
        total_steps=steps,
        optimizer=cfg.optimizers[0],
    )


def ensure(ctx: Context) -> dict[str, RangeTestResult]:
    """Make sure the study's range tests are done (by this worker or others), then load them:
    ``{optimizer: result}`` in the order of the config's ``optimizers``."""
    search = ctx.study("search")
    optimizers = ctx.cfg.optimizers
    legacy = search.user_attrs.get(ATTR_RANGE_TEST)
    if legacy is not None and ctx.names.range_test not in _study_names(ctx):
        # Stored before the range test was a unit of its own: reuse it as it is.
        return {optimizers[0]: RangeTestResult.from_dict(legacy)}
    study = ctx.study("range_test")
    by_key = {unit_key(name): name for name in optimizers}

    def objective(trial: optuna.Trial) -> float:
        steps = ctx.task.epochs * ctx.spe_search
        with charged():  # the sweep is training, as a search trial's fit is
            rt = study_range_test(
                ctx.cfg,
                ctx.task,
                ctx.search_train,
                ctx.device,
                total_steps=steps,
                optimizer=by_key[trial.user_attrs[UNIT]],
            )
        trial.set_user_attr(UNIT_RANGE_TEST, rt.to_dict())
        return rt.suggestion

    stage = Stage("range_test", "range test", study, objective, ctx.store)
    ctx.work(stage, KeyedPlan([Unit(key) for key in by_key]))
    found = _from_trials(study.get_trials(deepcopy=False), optimizers)
    assert found is not None  # the stage is done
    ctx.derive(search, ATTR_RANGE_TEST, found[optimizers[0]].to_dict())
    if len(optimizers) > 1:
        ctx.derive(search, ATTR_RANGE_TESTS, {k: v.to_dict() for k, v in found.items()})
    return found


def _study_names(ctx: Context) -> list[str]:
    return optuna.get_all_study_names(ctx.store)


def _from_trials(
    trials: list[optuna.trial.FrozenTrial], optimizers: Sequence[str]
) -> dict[str, RangeTestResult] | None:
    done = first_done(trials)
    units = {name: done.get(unit_key(name)) for name in optimizers}
    if any(unit is None for unit in units.values()):
        return None
    return {
        name: RangeTestResult.from_dict(unit.user_attrs[UNIT_RANGE_TEST])
        for name, unit in units.items()
        if unit is not None
    }


def load_all(stored: StoredStudy, optimizers: Sequence[str]) -> dict[str, RangeTestResult]:
    """Each searched optimizer's stored range test that has finished (for a study stored
    before units: study NAME's attr, as the first optimizer's)."""
    done = first_done(stored.trials("range_test"))
    out = {
        name: RangeTestResult.from_dict(done[unit_key(name)].user_attrs[UNIT_RANGE_TEST])
        for name in optimizers
        if unit_key(name) in done
    }
    if not out and optimizers and ATTR_RANGE_TEST in stored.attrs:
        out[optimizers[0]] = RangeTestResult.from_dict(stored.attrs[ATTR_RANGE_TEST])
    return out


def load(stored: StoredStudy, optimizers: Sequence[str] = ("task",)) -> RangeTestResult | None:
    """The stored range test of the first optimizer (the one the constant-LR grid and the
    report use); ``None`` before it ran."""
    return load_all(stored, optimizers).get(optimizers[0])
