"""Stage 2, the search: pruned trials over the schedule, in study NAME, up to the budget.

Each trial is a unit enqueued just before it is claimed, so the budget holds exactly however
many workers share the study (``n_trials`` finished trials: complete or pruned). The
literature's recipes built from the range-test bounds go first (user attr ``seeded``), then the
constant LR the CV grid chose (when ``constant`` is searched and the ``constant-cv`` arm runs:
the search starts from the bar it is compared against); after them the sampler draws. Before
each trial the bounds may heal (:mod:`lrsearch.pipeline.bounds`): the best trial so far at an
edge widens that side, and two schedules in the new range run next (user attr ``healed``). Every
trial has its own sampler seed, from the study's seed and the trial's number: workers never
replay each other's draws, a resumed study does not replay its own, and one worker alone is
reproducible. TPE runs with ``constant_liar`` while other trials run, so that trials running
elsewhere are not drawn again (alone, it draws the same without the liar's extra reads of the
study).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from lrsearch.choices import PER_EPOCH_KINDS
from lrsearch.config import StudyConfig
from lrsearch.exceptions import LrsearchError
from lrsearch.optimizers import search_optimizer
from lrsearch.pipeline import bounds as _bounds
from lrsearch.pipeline.context import Context
from lrsearch.pipeline.queue import MAX_FAILURES, Stage, Unit
from lrsearch.pruners import ScheduleAwarePruner
from lrsearch.schedules import compressed_epochs
from lrsearch.space import (
    OPTIMIZER_PARAM,
    LRBounds,
    Setup,
    optimizer_prefix,
    seed_setups,
    suggest_setup,
)
from lrsearch.store import FINISHED, HEALED, SEEDED, TRAINED_EPOCHS, unit_key
from lrsearch.tasks import Data, OptimizerFactory, Task
from lrsearch.training import TrialRecord, train_task

__all__ = ["BudgetPlan", "ensure", "make_pruner", "make_sampler", "optimizer_factory"]

_log = logging.getLogger(__name__)

_LIVE = (TrialState.RUNNING, TrialState.WAITING)


def make_sampler(
    cfg: StudyConfig, number: int, *, constant_liar: bool = True
) -> optuna.samplers.BaseSampler:
    """The sampler for search trial ``number``: seeded from the study's seed and the number.

    ``constant_liar``: TPE counts trials running elsewhere as bad ones, so they are not drawn
    again; to see them it reads the study afresh for each group of the conditional space
    (about seven reads a trial instead of one). Without other running trials its draws are
    the same either way (it leaves out the trial it samples for), so :func:`ensure` asks for
    it only when other trials run.

    Example:
        >>> cfg = StudyConfig(name="demo", task="digits")
        >>> make_sampler(cfg, 3, constant_liar=False)._constant_liar
        False
    """
    seed = int(np.random.SeedSequence([cfg.seed, number]).generate_state(1)[0])
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        # multivariate, group and constant_liar are "experimental" in Optuna, and lrsearch
        # relies on them on purpose; the notice says nothing a user can act on.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            multivariate=True, group=True, constant_liar=constant_liar, seed=seed
        )


def make_pruner(
    cfg: StudyConfig, epochs: int, *, steps_per_epoch: int = 1
) -> optuna.pruners.BasePruner:
    """The config's pruner, judging each trial only after its schedule's own start (first
    cycle, warm-up; :class:`~lrsearch.pruners.ScheduleAwarePruner`) and ``warmup_epochs``.

    ``median`` and ``hyperband`` wait ``warmup_epochs`` (default a quarter of the run;
    hyperband's smallest rung); ``halving``: Optuna's successive halving at its defaults (rungs
    at 1, 4, 16, ... times a hundredth of the run, the top quarter promoted). At a ``fidelity``
    under 1 the run is the trials' compressed run, and ``warmup_epochs`` shrinks with it.

    Example:
        >>> cfg = StudyConfig(name="demo", task="digits", pruner="halving")
        >>> type(make_pruner(cfg, 20, steps_per_epoch=34).wrapped).__name__
        'SuccessiveHalvingPruner'

    """
    if cfg.pruner == "none":
        return optuna.pruners.NopPruner()
    full, epochs = epochs, compressed_epochs(epochs, cfg.fidelity)
    # warmup_epochs counts epochs of the full run; the trials train `epochs` of them.
    given = None if cfg.warmup_epochs is None else math.ceil(cfg.warmup_epochs * epochs / full)
    quarter = given if given is not None else epochs // 4
    pruner: optuna.pruners.BasePruner
    if cfg.pruner == "halving":
        # Optuna's min_resource="auto" reads a hundredth of the longest finished trial; the
        # run's length is known, so no trial has to finish before pruning starts.
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, epochs // 100), reduction_factor=4
        )
        warmup = given or 0
    elif cfg.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=max(1, quarter), max_resource=epochs, reduction_factor=3
        )
        warmup = quarter
    else:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=quarter)
        warmup = quarter
    return ScheduleAwarePruner(
        pruner,
        epochs=full,
        steps_per_epoch=steps_per_epoch,
        optimizers=cfg.optimizers,
        warmup_epochs=warmup,
        fidelity=cfg.fidelity,
    )


def claim_sampler(
    study: optuna.Study, cfg: StudyConfig, number: int
) -> optuna.samplers.BaseSampler:
    """:func:`make_sampler` for trial ``number`` as the queue claims it (holding its lock, the
    trial not popped yet): with the constant liar when another trial of ``study`` is running."""
    others = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return make_sampler(cfg, number, constant_liar=bool(others))


def _no_seeds() -> list[tuple[str, dict[str, Any]]]:
    return []


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    """``n_trials`` finished search trials, the literature's ``seeds`` first, then the seeds
    ``healing()`` names (keyed schedules in a range the bounds just grew to; read from the
    stored extensions each time), then the sampler's draws.

    A trial enqueued by hand (no key) counts toward the budget like any other.
    """

    n_trials: int
    seeds: Sequence[dict[str, Any]]
    healing: Callable[[], Sequence[tuple[str, dict[str, Any]]]] = _no_seeds

    def progress(self, trials: Sequence[FrozenTrial]) -> tuple[int, int]:
        return min(self.n_trials, _finished(trials)), self.n_trials

    def is_done(self, trials: Sequence[FrozenTrial]) -> bool:
        return _finished(trials) >= self.n_trials

    def next_unit(self, trials: Sequence[FrozenTrial]) -> Unit | None:
        if _finished(trials) + sum(t.state in _LIVE for t in trials) >= self.n_trials:
            return None
        keyed = [
            (f"seed/{i}", params, SEEDED) for i, params in enumerate(self.seeds[: self.n_trials])
        ]
        for key, params, attr in [*keyed, *((k, p, HEALED) for k, p in self.healing())]:
            mine = [t for t in trials if unit_key(t) == key]
            tried = any(t.state != TrialState.FAIL for t in mine)
            if not tried and len(mine) < MAX_FAILURES:
                return Unit(key, params=params, user_attrs={attr: True})
        return Unit(f"sample/{len(trials)}")


def _finished(trials: Sequence[FrozenTrial]) -> int:
    return sum(t.state in FINISHED for t in trials)


def optimizer_factory(setup: Setup, task: Task) -> OptimizerFactory:
    """The optimizer factory a search trial's :class:`~lrsearch.space.Setup` trains with."""
    return search_optimizer(setup.optimizer, task.make_optimizer, weight_decay=setup.weight_decay)


def ensure(
    ctx: Context,
    bounds: Mapping[str, LRBounds],
    *,
    heal: bool = True,
    seeds: bool = True,
    peaks: Mapping[str, float] | None = None,
    onecycle_peaks: Mapping[str, float] | None = None,
    constant_lr: float | None = None,
) -> list[FrozenTrial]:
    """Make sure the search has run its budget (with every worker), then return its finished
    trials.

    Args:
        ctx: The study's context.
        bounds: Each searched optimizer's LR range where the study started (its ``max_lr`` /
            ``base_lr`` are drawn from it, grown by the stored extensions), in the config's
            order.
        heal: Before each trial, extend the side of its optimizer's bounds that the best trial
            so far peaks at (:mod:`lrsearch.pipeline.bounds`), and try two schedules in the
            new range next.
        seeds: Enqueue the literature's schedules first (``False`` for ablations).
        peaks: Each optimizer's seeds' peak LR (:func:`lrsearch.space.seed_peak` of its range
            test); ``None``: the top of its bounds.
        onecycle_peaks: The same for the 1cycle seed (its range test's steepest point).
        constant_lr: The CV-chosen constant LR (the ``constant-cv`` arm's, with the study's
            first optimizer): enqueued after the literature's seeds when ``constant`` is
            searched (``seed_setups``; a budget shorter than all the seeds does not reach it).

    Raises:
        LrsearchError: No search trial completed (all pruned or failed).
    """
    cfg, task = ctx.cfg, ctx.task
    study = ctx.study("search")
    study.pruner = make_pruner(cfg, task.epochs, steps_per_epoch=ctx.spe_search)
    grown = _Grown(ctx.study("bounds"), dict(bounds), cfg.optimizers)
    recipes = (
        seed_setups(
            grown.now(),
            steps_per_epoch=ctx.spe_search,
            epochs=task.epochs,
            kinds=cfg.kinds,
            peaks=peaks,
            onecycle_peaks=onecycle_peaks,
            constant_lr=constant_lr,
        )
        if seeds
        else []
    )
    objective = _SearchTrial(ctx, grown, heal, ctx.search_train, ctx.validation)
    stage = Stage(
        "search", "search", study, objective, ctx.store, lambda n: claim_sampler(study, cfg, n)
    )
    deadline = None if cfg.timeout is None else time.monotonic() + cfg.timeout
    ctx.work(stage, BudgetPlan(cfg.n_trials, recipes, grown.healing), deadline=deadline)
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        raise LrsearchError(
            f"study {cfg.name!r}: no search trial completed (all pruned or failed)"
        )
    return trials


@dataclasses.dataclass(frozen=True, eq=False)
class _Grown:
    """The searched bounds: each optimizer's where the study started, grown by the extensions
    stored in study ``NAME/bounds`` (read afresh each time: other workers add to them)."""

    records: optuna.Study
    start: Mapping[str, LRBounds]
    optimizers: Sequence[str]

    def now(self) -> dict[str, LRBounds]:
        """The bounds as they stand."""
        stored = self.records.get_trials(deepcopy=False)
        return {n: _bounds.current(b, _bounds.history(stored, n)) for n, b in self.start.items()}

    def healing(self) -> list[tuple[str, dict[str, Any]]]:
        """The keyed seeds of every stored extension (two schedules in each new range)."""
        stored = self.records.get_trials(deepcopy=False)
        return [
            (f"heal/{n}/{ext.number}/{j}", params)
            for n in self.start
            for ext in _bounds.history(stored, n)
            for j, params in enumerate(ext.seeds(self.optimizers))
        ]


@dataclasses.dataclass(frozen=True, eq=False)
class _SearchTrial:
    """One search trial, the stage's objective: heal the bounds, draw a setup, train it on the
    search split, scored on validation; :class:`~lrsearch.training.TrialRecord` records it."""

    ctx: Context
    grown: _Grown
    heal: bool
    train: Data
    validation: Data

    def __call__(self, trial: optuna.Trial) -> float:
        ctx, task = self.ctx, self.ctx.task
        setup = suggest_setup(
            trial,
            bounds=self._bounds(),
            steps_per_epoch=ctx.spe_search,
            epochs=task.epochs,
            kinds=ctx.cfg.kinds,
        )
        # At a fidelity under 1 the whole schedule is compressed into the shorter run; its
        # params (what the finalists and the tuned arm train) stay the full run's.
        epochs = compressed_epochs(task.epochs, ctx.cfg.fidelity)
        schedule, record = setup.schedule.compressed(epochs / task.epochs), TrialRecord(trial)
        if epochs < task.epochs:
            task = dataclasses.replace(task, epochs=epochs)
            trial.set_user_attr(TRAINED_EPOCHS, epochs)
        optimizer = None if setup.optimizer == "task" else setup.optimizer
        planned = schedule.lrs(ctx.spe_search * epochs).tolist()
        record.planned(setup.describe(ctx.spe_search), optimizer, planned)
        per_epoch = schedule.kind in PER_EPOCH_KINDS
        # A plateau schedule is scored on validation, so it watches a split of its own.
        fit, watched = ctx.plateau_split if per_epoch else (self.train, None)
        result = train_task(
            task,
            fit,
            schedule=schedule,
            eval_data=self.validation,
            plateau_data=watched,
            seed=ctx.cfg.seed,
            device=ctx.device,
            trial=trial,
            optimizer_factory=optimizer_factory(setup, task),
            diagnostics=ctx.cfg.diagnostics,
        )
        record.ran(result, lrs_as_ran=per_epoch)
        return result.final

    def _bounds(self) -> dict[str, LRBounds]:
        """The bounds this trial draws from, after healing them (when asked)."""
        now = self.grown.now()
        if self.heal and _heal(self.ctx, self.grown.start, now):
            now = self.grown.now()  # as stored: another worker's record of the same widening wins
        return now


def _heal(ctx: Context, start: Mapping[str, LRBounds], now: Mapping[str, LRBounds]) -> bool:
    """Extend the side of the bounds the best search trial so far peaks at (a stored record),
    unless that side has reached its cap; whether a widening was decided. The literature's
    seeds are not judged: Smith's CLR seed peaks at the top by construction, which says
    nothing of what lies beyond."""
    search = ctx.study("search")
    drawn = [
        t
        for t in search.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not t.user_attrs.get(SEEDED)
    ]
    if not drawn:
        return False
    sign = 1.0 if ctx.task.maximize else -1.0
    trial = max(drawn, key=lambda t: (sign * float(t.value), -t.number))  # type: ignore[arg-type]
    optimizers = ctx.cfg.optimizers
    name = optimizers[0] if len(optimizers) == 1 else str(trial.params.get(OPTIMIZER_PARAM))
    peak = trial.params.get(optimizer_prefix(optimizers, name) + "max_lr")
    if name not in now or peak is None:
        return False
    side = _bounds.at_edge(float(peak), now[name])
    wider = None if side is None else _bounds.extended(now[name], side, start[name])
    if side is None or wider is None:
        return False
    records = ctx.study("bounds")
    number = len(_bounds.history(records.get_trials(deepcopy=False), name))
    stored = _bounds.record(
        records,
        lock=ctx.lock,
        extension=_bounds.Extension(
            name,
            number,
            side,
            wider.low,
            wider.high,
            "search-edge",
            float(peak),
            trial.number,
            dict(trial.params),
        ),
    )
    if stored:
        _log.info(
            "search trial %d peaks at %.3g, at the %s edge of %s's bounds: widened to %.3g..%.3g",
            trial.number,
            peak,
            side,
            name,
            wider.low,
            wider.high,
        )
    return True
