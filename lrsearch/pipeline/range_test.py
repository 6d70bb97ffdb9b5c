"""Stage 1, the range test: one unit per searched optimizer (study ``NAME/range-test``), run
once per study; redone when its reading is doubtful.

Its result defines the search space (the bounds) and the constant-LR grid, so it is never
recomputed: a resumed study, and every worker, reads the first completed unit. A reading the
range test does not trust (:attr:`~lrsearch.range_test.RangeTestResult.doubts`: the loss never
clearly fell, it fell only at the very end, several sweeps disagree) is **redone**:
``range_test.redo`` more sweeps (:data:`REDO_SWEEPS` unless set, or planned fewer by a small
``budget``) of :data:`REDO_FACTOR` times the rungs, each a unit of its own
(``range-test/redo/0`` ...: workers share them, a resumed study reuses them), read together.
If that reading is still doubtful (or there is no redo, ``range_test.redo = 0``) the search
does not start from a guess: its bounds are the optimizer's plausible span
(:func:`lrsearch.optimizers.plausible_span`) and the seeds peak in its geometric middle.
:class:`Reading` says which it was; every worker derives the same from the stored units.
The first optimizer's is also copied to study NAME's user attr ``range_test`` (the storage
contract; the dashboard and the report read it there); with several optimizers, user attr
``range_tests`` holds each one's. The unit of the task's own optimizer has key
``range-test``, another optimizer's ``range-test/NAME``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import optuna
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrsearch.choices import REDO_FACTOR, REDO_SWEEPS
from lrsearch.config import StudyConfig
from lrsearch.optimizers import plausible_span, search_optimizer
from lrsearch.pipeline.context import Context, prepare
from lrsearch.pipeline.queue import KeyedPlan, Stage, Unit
from lrsearch.range_test import RangeTestResult, range_test
from lrsearch.space import LRBounds, seed_peak
from lrsearch.splits import holdout
from lrsearch.store import (
    ATTR_CONFIG,
    ATTR_RANGE_TEST,
    ATTR_STEPS_PER_EPOCH,
    UNIT,
    UNIT_RANGE_TEST,
    UNIT_SPAN,
    StoredStudy,
    first_done,
)
from lrsearch.tasks import Data, Task, steps_per_epoch, subset
from lrsearch.training import charged

__all__ = [
    "KEY",
    "REDO_FACTOR",
    "REDO_SWEEPS",
    "Reading",
    "ensure",
    "load",
    "load_all",
    "preview",
    "read",
    "redo_key",
    "study_range_test",
    "unit_key",
]

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


def redo_key(optimizer: str, sweep: int) -> str:
    """The key of redo sweep ``sweep`` of searched optimizer ``optimizer``'s range test.

    Example:
        >>> redo_key("task", 0), redo_key("adamw", 2)
        ('range-test/redo/0', 'range-test/adamw/redo/2')
    """
    return f"{unit_key(optimizer)}/redo/{sweep}"


@dataclasses.dataclass(frozen=True)
class Reading:
    """What the search starts from for one searched optimizer, and how it got there.

    Attributes:
        first: The first range test (one unit).
        redo: The redo's sweeps read together, when the first was doubtful (else ``None``).
        wide: The optimizer's plausible span, when the redo was doubtful too (else ``None``).
        run_steps: Optimizer steps of one search trial (the readings are for runs this long).
    """

    first: RangeTestResult
    redo: RangeTestResult | None = None
    wide: LRBounds | None = None
    run_steps: int | None = None

    @property
    def range_test(self) -> RangeTestResult:
        """The range test the study reads: the redo when there was one."""
        return self.redo or self.first

    @property
    def source(self) -> Literal["range-test", "redo", "wide"]:
        """Where :attr:`bounds` come from."""
        if self.wide is not None:
            return "wide"
        return "redo" if self.redo is not None else "range-test"

    @property
    def bounds(self) -> LRBounds:
        """The bounds the search starts from."""
        return self.wide or self.range_test.bounds

    @property
    def peak(self) -> float:
        """Where the literature's seeds peak: over the suggestion (never above ``high``), or
        the middle of the plausible span (the suggestion of a doubtful sweep is a guess)."""
        if self.wide is not None:
            return _middle(self.wide)
        return seed_peak(self.range_test.suggestion, self.range_test.bounds.high)

    @property
    def onecycle_peak(self) -> float:
        """Where the 1cycle seed peaks: the sweeps' steepest fall (the middle of the plausible
        span, as :attr:`peak`, when the range test is not read)."""
        return _middle(self.wide) if self.wide is not None else self.range_test.steepest

    @property
    def too_short(self) -> bool:
        """The redo could not read the loss although its sweeps were longer than a whole run:
        a run this short barely moves the model at any LR the test can tell apart."""
        return (
            self.wide is not None
            and self.redo is not None
            and self.run_steps is not None
            and self.redo.num_iter >= self.run_steps
        )


def _middle(bounds: LRBounds) -> float:
    return math.sqrt(bounds.low * bounds.high)


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
    redo: int | None = None,
) -> RangeTestResult:
    """The range test of a study: a fresh model seeded ``cfg.seed``, searched optimizer
    ``optimizer`` (default the task's own), batches of ``train`` (the search-train split) in a
    seeded order; the suggestion is for a run of ``total_steps`` (a search trial's: the task's
    epochs over ``train``).

    ``redo=r``: redo sweep ``r`` instead, one sweep of :data:`REDO_FACTOR` times the rungs with
    the batches in another order (seed ``cfg.seed + 1 + r``), from the same model."""
    torch.manual_seed(cfg.seed)
    model = task.make_model().to(device)
    make = search_optimizer(optimizer, task.make_optimizer)
    opt = make(model.parameters(), cfg.range_start_lr)
    seed = cfg.seed if redo is None else cfg.seed + 1 + redo
    return range_test(
        model,
        opt,
        task.loss,
        _loader(train, task.batch_size, seed),
        start_lr=cfg.range_start_lr,
        end_lr=cfg.range_end_lr,
        num_iter=cfg.range_num_iter * (1 if redo is None else REDO_FACTOR),
        repeats=cfg.range_repeats if redo is None else 1,
        seed=seed,
        total_steps=total_steps,
        diagnostics=cfg.diagnostics,
    )


def preview(
    config: StudyConfig | str, *, overrides: Mapping[str, Any] | None = None
) -> RangeTestResult:
    """The range test study NAME would run for its first optimizer (same model seed, split
    and batches); stores nothing."""
    cfg, task, device, _ = prepare(config, overrides=overrides)
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


def ensure(ctx: Context) -> dict[str, Reading]:
    """Make sure the study's range tests are done, and redone where doubtful (by this worker or
    others), then read them: ``{optimizer: Reading}`` in the order of the config's
    ``optimizers``."""
    search = ctx.study("search")
    optimizers = ctx.cfg.optimizers
    steps = ctx.task.epochs * ctx.spe_search
    legacy = search.user_attrs.get(ATTR_RANGE_TEST)
    if legacy is not None and ctx.names.range_test not in _study_names(ctx):
        # Stored before the range test was a unit of its own: reuse it as it is.
        return {optimizers[0]: Reading(RangeTestResult.from_dict(legacy), run_steps=steps)}
    study = ctx.study("range_test")
    redos = ctx.cfg.range_redo
    units: dict[str, tuple[str, int | None]] = {}
    for name in optimizers:
        units[unit_key(name)] = (name, None)
        units.update({redo_key(name, r): (name, r) for r in range(redos)})

    def objective(trial: optuna.Trial) -> float:
        name, redo = units[trial.user_attrs[UNIT]]
        with charged() as sweeps:  # the sweeps are training, as a search trial's fit is
            rt = study_range_test(
                ctx.cfg,
                ctx.task,
                ctx.search_train,
                ctx.device,
                total_steps=steps,
                optimizer=name,
                redo=redo,
            )
            sweeps.steps = rt.steps_taken
        trial.set_user_attr(UNIT_RANGE_TEST, rt.to_dict())
        if redo is not None or redos == 0:  # where the search goes if the reading is doubtful
            span = plausible_span(search_optimizer(name, ctx.task.make_optimizer))
            trial.set_user_attr(UNIT_SPAN, [span.low, span.high])
        return rt.suggestion

    stage = Stage("range_test", "range test", study, objective, ctx.store)
    ctx.work(stage, KeyedPlan([Unit(unit_key(name)) for name in optimizers]))
    firsts = read(study.get_trials(deepcopy=False), optimizers, ctx.cfg, run_steps=steps)
    doubtful = [name for name in optimizers if not firsts[name].first.confident]
    if doubtful:
        done = first_done(study.get_trials(deepcopy=False))
        for name in doubtful:
            if redos and all(redo_key(name, r) in done for r in range(redos)):
                continue
            doubts = "; ".join(d.text for d in firsts[name].first.doubts)
            if not redos:
                _log.warning(
                    "range test of %s: %s; range_test.redo = 0: searching the optimizer's "
                    "plausible span",
                    name,
                    doubts,
                )
                continue
            _log.warning(
                "range test of %s: %s; redoing it with %d sweeps of %d steps",
                name,
                doubts,
                redos,
                ctx.cfg.range_num_iter * REDO_FACTOR,
            )
        redo_units = [Unit(redo_key(name, r)) for name in doubtful for r in range(redos)]
        ctx.work(stage, KeyedPlan(redo_units))
    found = read(study.get_trials(deepcopy=False), optimizers, ctx.cfg, run_steps=steps)
    first = found[optimizers[0]].bounds  # until the run's end says where the search ended
    ctx.summarize(bounds=[first.low, first.high], missing=True)
    return found


def read(
    trials: Sequence[optuna.trial.FrozenTrial],
    optimizers: Sequence[str],
    cfg: StudyConfig | Mapping[str, Any],
    *,
    run_steps: int | None = None,
) -> dict[str, Reading]:
    """Each searched optimizer's :class:`Reading`, from the range-test stage's units (those whose
    first unit has finished): the first range test; the redo when the first was doubtful and
    every redo sweep has finished; the plausible span when the redo is doubtful too, or at
    once when the study plans no redo (``range_test.redo = 0``).

    ``cfg`` is the study's config (or its stored form): the redo's ladder is read from it."""
    start, end, rungs, redos = _ladder(cfg)
    done = first_done(trials)
    out = {}
    for name in optimizers:
        if unit_key(name) not in done:
            continue
        unit = done[unit_key(name)]
        first = RangeTestResult.from_dict(unit.user_attrs[UNIT_RANGE_TEST])
        if not first.confident and redos == 0 and UNIT_SPAN in unit.user_attrs:
            span = LRBounds(*unit.user_attrs[UNIT_SPAN])
            out[name] = Reading(first, wide=span, run_steps=run_steps)
            continue
        redone = [done.get(redo_key(name, r)) for r in range(redos)]
        if first.confident or not redone or any(unit is None for unit in redone):
            out[name] = Reading(first, run_steps=run_steps)
            continue
        units = [unit for unit in redone if unit is not None]
        redo = RangeTestResult.from_sweeps(
            [
                sweep
                for unit in units
                for sweep in RangeTestResult.from_dict(unit.user_attrs[UNIT_RANGE_TEST]).sweeps
            ],
            start_lr=start,
            end_lr=end,
            num_iter=rungs * REDO_FACTOR,
            total_steps=first.total_steps,
        )
        wide = None if redo.confident else LRBounds(*units[0].user_attrs[UNIT_SPAN])
        out[name] = Reading(first, redo, wide, run_steps=run_steps)
    return out


def _ladder(cfg: StudyConfig | Mapping[str, Any]) -> tuple[float, float, int, int]:
    """The range test's first and last rung, its rungs and its redo sweeps, from a config or
    its stored form."""
    if isinstance(cfg, StudyConfig):
        return cfg.range_start_lr, cfg.range_end_lr, cfg.range_num_iter, cfg.range_redo
    table = cfg.get("range_test", {})
    default = {f.name: f.default for f in dataclasses.fields(StudyConfig)}
    return (
        float(table.get("start_lr", default["range_start_lr"])),
        float(table.get("end_lr", default["range_end_lr"])),
        int(table.get("num_iter", default["range_num_iter"])),
        int(table.get("redo", default["range_redo"])),
    )


def _study_names(ctx: Context) -> list[str]:
    return optuna.get_all_study_names(ctx.store)


def load_all(
    stored: StoredStudy, optimizers: Sequence[str], cfg: Mapping[str, Any] | None = None
) -> dict[str, Reading]:
    """Each searched optimizer's :class:`Reading` as stored (:func:`read`; for a study stored
    before units: study NAME's attr, as the first optimizer's range test)."""
    cfg = stored.attrs.get(ATTR_CONFIG, {}) if cfg is None else cfg
    per_epoch = stored.attrs.get(ATTR_STEPS_PER_EPOCH, {}).get("search")
    run_steps = None if per_epoch is None else int(cfg.get("epochs", 1)) * int(per_epoch)
    out = read(stored.trials("range_test"), optimizers, cfg, run_steps=run_steps)
    if not out and optimizers and ATTR_RANGE_TEST in stored.attrs:
        out[optimizers[0]] = Reading(RangeTestResult.from_dict(stored.attrs[ATTR_RANGE_TEST]))
    return out


def load(stored: StoredStudy, optimizers: Sequence[str] = ("task",)) -> Reading | None:
    """The stored reading of the first optimizer (the one the constant-LR grid and the report
    use); ``None`` before its range test ran."""
    return load_all(stored, optimizers).get(optimizers[0])
