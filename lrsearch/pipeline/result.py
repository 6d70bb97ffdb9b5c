"""What a study found, derived from its stored units (the one way to build a result).

:func:`load_result` recomputes every decision from the trials: the range test from its unit,
the tuned arm from the finalists' units, the chosen constant LR from the CV grid's units, the
comparison from the final runs. ``run_study`` returns it too, so the CLI, the Python API and
every worker of a study report the same result.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from lrsearch.exceptions import LrsearchError
from lrsearch.pipeline import bounds as _bounds
from lrsearch.pipeline import comparison as _comparison
from lrsearch.pipeline import finalists as _finalists
from lrsearch.pipeline import range_test as _range_test
from lrsearch.pipeline.arms import chosen_lr, constant_grid
from lrsearch.pipeline.cost import cost_of
from lrsearch.pipeline.verdicts import StudyWarning, verdicts
from lrsearch.preflight import Baseline
from lrsearch.range_test import RangeTestResult
from lrsearch.schedules import Schedule
from lrsearch.space import LRBounds, Setup, setup_from_params
from lrsearch.store import (
    ATTR_BASELINE,
    ATTR_CHOSEN_LR,
    ATTR_COMPARISON,
    ATTR_CONFIG,
    ATTR_DIRECTION,
    ATTR_FINALISTS,
    ATTR_GRID,
    ATTR_METRIC,
    ATTR_TASK,
    TRAINED_EPOCHS,
    ArmResult,
    Cost,
    Finalist,
    StoredStudy,
    load_stored,
    timings,
    top_trials,
    trial_states,
)
from lrsearch.tasks import steps_per_epoch

__all__ = ["StudyResult", "load_result", "result_of"]


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """What a study found, as stored (built by :func:`load_result`; ``lrsearch.StudyResult``
    adds its table and verdict).

    Attributes:
        name: The study name.
        storage: The storage URL, password masked.
        metric: The task's metric name; ``direction`` says which way is better.
        direction: ``"maximize"`` or ``"minimize"``.
        range_test: The stored range test.
        best_params: Params of the search trial whose schedule is the tuned arm: the best CV
            mean among the finalists, or the best search trial without finalists.
        best_value: That trial's validation metric (after :attr:`best_epochs` epochs).
        tuned_trial: That trial's number.
        schedule: Its schedule, in optimizer steps of this study's runs (batches of the full
            training set); :meth:`schedule_for` rebuilds it for another run.
        schedule_words: It in words (with its optimizer when the study searched several).
        optimizer: The tuned arm's optimizer (``task``: the task's own; see the config's
            ``optimizers``).
        optimizers: The optimizers the study searched (the config's ``optimizers``).
        trial_states: How many search trials ended in each state.
        constant_lr: The CV-chosen constant LR (``None`` with baselines skipped).
        comparison: The final comparison ``{arm: ARM}`` (``None`` until every run is done).
        timings: Seconds per stage, ``busy`` (all units), ``inside_training`` and ``wall``,
            summed over the units whoever ran them.
        bounds: The LR range the search ended with (the first optimizer's): where it started
            (the range test, its redo, or a plausible span), grown by any extensions.
        bounds_history: Each searched optimizer's bounds, step by step
            (:func:`lrsearch.pipeline.bounds.steps`).
        warnings: Where the answer may be wrong, and what to do
            (:func:`lrsearch.pipeline.verdicts.verdicts`); empty when nothing doubtful was seen.
        finalists: The top search trials' CV scores (empty when one trial needed none).
        range_tests: Each searched optimizer's range test (the first one's is
            :attr:`range_test`).
        cost: What the study trained, per stage, in optimizer steps and full-run equivalents:
            the tuning (what decided the tuned arm) and the verification (what only measures
            it); see :class:`~lrsearch.store.Cost`.
        best_epochs: The epochs that trial trained: fewer than the run's when the search ran
            at a ``fidelity`` under 1 (its schedule compressed into them); ``None``: the run's.
    """

    name: str
    storage: str
    metric: str
    direction: str
    range_test: RangeTestResult
    best_params: dict[str, Any]
    best_value: float
    tuned_trial: int
    schedule: Schedule
    schedule_words: str
    optimizer: str
    optimizers: tuple[str, ...]
    trial_states: dict[str, int]
    constant_lr: float | None
    comparison: dict[str, Any] | None
    timings: dict[str, float]
    bounds: LRBounds
    bounds_history: tuple[dict[str, Any], ...] = ()
    warnings: tuple[StudyWarning, ...] = ()
    finalists: tuple[Finalist, ...] = ()
    range_tests: dict[str, RangeTestResult] = dataclasses.field(default_factory=dict)
    cost: Cost | None = None
    best_epochs: int | None = None

    @property
    def arms(self) -> dict[str, ArmResult]:
        """The final comparison as records, ``{arm: ArmResult}`` (empty without one)."""
        return _arms(self.comparison or {})

    def setup_for(self, *, steps_per_epoch: int, epochs: int) -> Setup:
        """The tuned arm's optimizer and schedule for a run of your own (see
        :meth:`schedule_for`), with AdamW's ``weight_decay`` when the study searched it."""
        setup = setup_from_params(
            self.best_params,
            optimizers=self.optimizers,
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
        )
        # Build once on a throw-away optimizer, so a run too short for the schedule (onecycle's
        # warm-up, wsd's cooldown) is refused here rather than when training starts.
        probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=setup.schedule.max_lr)
        setup.schedule.build(probe, total_steps=steps_per_epoch * epochs)
        return setup

    def schedule_for(self, *, steps_per_epoch: int, epochs: int) -> Schedule:
        """The tuned schedule for your own run: ``steps_per_epoch`` optimizer steps an epoch
        for ``epochs`` epochs (build it with ``total_steps=steps_per_epoch * epochs``).

        :attr:`best_params` hold ``step_size`` and ``warmup`` in epochs (``patience`` too), and
        :attr:`schedule` is them in this study's optimizer steps: a run with another batch
        size, data set or gradient accumulation needs them in its own steps, which this
        rebuilds. Periods stay in epochs; ``onecycle``, ``cosine`` and ``wsd`` span the whole
        run. Training as many epochs as the study did is what it tuned.

        Args:
            steps_per_epoch: Optimizer steps in one epoch of your run (with gradient
                accumulation, batches divided by it, rounded up).
            epochs: Epochs of your run.

        Returns:
            The :class:`Schedule`, in your run's optimizer steps.

        Raises:
            InvalidParameterError: a bad count, a ``step_size`` or ``warmup`` longer than the
                run, or a run too short for the schedule.

        Example:
            After ``lrsearch run --study digits`` (a finished study, so no doctest), for your
            run of 20 epochs of 45 optimizer steps:

            ```python
            result = load_result("digits")
            schedule = result.schedule_for(steps_per_epoch=45, epochs=20)
            scheduler = schedule.build(optimizer, total_steps=45 * 20)
            ```
        """
        return self.setup_for(steps_per_epoch=steps_per_epoch, epochs=epochs).schedule


def load_result(
    name: str, *, storage: str | None = None, store: RDBStorage | None = None
) -> StudyResult:
    """:func:`result_of` the study ``name`` in ``storage`` (or the open ``store``);
    ``lrsearch.load_result`` is the public entry, with the result's presentation."""
    return result_of(load_stored(name, storage=storage, store=store))


def result_of(stored: StoredStudy) -> StudyResult:
    """:func:`load_result` of a study already open (:func:`~lrsearch.store.load_stored`).

    Raises:
        LrsearchError: No range test or no completed trial yet.
    """
    name = stored.name
    study = _Study.read(stored)
    tuned, finalists = study.tuned()
    setup = setup_from_params(
        tuned.params,
        optimizers=study.optimizers,
        steps_per_epoch=study.spe_full,
        epochs=study.epochs,
    )
    bounds = study.bounds(study.optimizers[0])
    constant_lr = _constant_lr(stored, bounds, study.cfg, maximize=study.maximize)
    comparison = _stored_comparison(stored, tuned.params, constant_lr, study)
    baseline = stored.attrs.get(ATTR_BASELINE)
    warnings = verdicts(
        optimizers=study.optimizers,
        readings=study.readings,
        extensions=study.extensions,
        tuned_optimizer=setup.optimizer,
        tuned_peak=setup.schedule.max_lr,
        tuned_value=float(tuned.value),
        constant_lr=constant_lr,
        arms=None
        if comparison is None
        else {k: ArmResult.from_dict(v) for k, v in comparison.items()},
        baseline=None if baseline is None else Baseline.from_dict(baseline),
        search=stored.search.get_trials(deepcopy=False),
        maximize=study.maximize,
        metric=study.metric,
    )
    return StudyResult(
        name=name,
        storage=stored.storage,
        metric=study.metric,
        direction=study.direction,
        range_test=study.readings[study.optimizers[0]].range_test,
        best_params=dict(tuned.params),
        best_value=float(tuned.value),
        tuned_trial=tuned.number,
        schedule=setup.schedule,
        schedule_words=setup.describe(study.spe_full),
        optimizer=setup.optimizer,
        optimizers=study.optimizers,
        trial_states=trial_states(stored.search),
        constant_lr=constant_lr,
        comparison=comparison,
        timings=timings(stored).to_dict(),
        bounds=bounds,
        bounds_history=study.history(),
        warnings=warnings,
        finalists=tuple(finalists),
        range_tests={n: r.range_test for n, r in study.readings.items()},
        cost=cost_of(stored),
        best_epochs=tuned.user_attrs.get(TRAINED_EPOCHS),
    )


@dataclasses.dataclass(frozen=True)
class _Study:
    """What :func:`load_result` reads once from a stored study: its config and direction, each
    optimizer's range test and bounds' extensions."""

    stored: StoredStudy
    cfg: dict[str, Any]
    optimizers: tuple[str, ...]
    readings: dict[str, _range_test.Reading]
    extensions: dict[str, list[_bounds.Extension]]
    direction: str
    metric: str
    epochs: int
    spe_full: int

    @classmethod
    def read(cls, stored: StoredStudy) -> _Study:
        study, url, attrs = stored.search, stored.storage, stored.attrs
        cfg = attrs.get(ATTR_CONFIG, {})
        optimizers = tuple(cfg.get("optimizers", ("task",)))
        readings = _range_test.load_all(stored, optimizers)
        if optimizers[0] not in readings:
            raise LrsearchError(f"study {stored.name!r} in {url} has no range test yet")
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise LrsearchError(f"study {stored.name!r} in {url} has no completed trial yet")
        records = stored.trials("bounds")
        n_train = int(attrs.get(ATTR_TASK, {}).get("n_train", 1))
        return cls(
            stored,
            cfg,
            optimizers,
            readings,
            {n: _bounds.history(records, n) for n in readings},
            str(attrs.get(ATTR_DIRECTION, study.direction.name.lower())),
            str(attrs.get(ATTR_METRIC) or "metric"),
            int(cfg.get("epochs", 1)),
            steps_per_epoch(n_train, int(cfg.get("batch_size", 1))),
        )

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def bounds(self, optimizer: str) -> LRBounds:
        """Where ``optimizer``'s search ended: its range test's bounds, extended."""
        return _bounds.current(self.readings[optimizer].bounds, self.extensions[optimizer])

    def tuned(self) -> tuple[Any, list[Finalist]]:
        """The tuned arm's search trial and the finalists' scores."""
        top = top_trials(self.stored.search, int(self.cfg.get("finalists", 5)))
        if "finalists" in self.stored.stages:
            return _finalists.pick(top, self.stored.trials("finalists"), maximize=self.maximize)
        # stored before the finalists were units (or none were needed)
        legacy = [Finalist.from_dict(r) for r in self.stored.attrs.get(ATTR_FINALISTS) or []]
        return _legacy_pick(top, legacy, maximize=self.maximize), legacy

    def history(self) -> tuple[dict[str, Any], ...]:
        """Each optimizer's bounds, step by step."""
        return tuple(
            row
            for n, r in self.readings.items()
            for row in _bounds.steps(n, r.source, r.bounds, self.extensions[n])
        )


def _arms(comparison: dict[str, Any]) -> dict[str, ArmResult]:
    return {arm: ArmResult.from_dict(data) for arm, data in comparison.items()}


def _legacy_pick(top: list[Any], records: list[Finalist], *, maximize: bool) -> Any:
    scored = [f for f in records if f.cv_mean is not None]
    if not scored:
        return top[0]
    sign = 1.0 if maximize else -1.0
    best = max(scored, key=lambda f: sign * float(f.cv_mean))  # type: ignore[arg-type]
    return next((t for t in top if t.number == best.trial), top[0])


def _constant_lr(
    stored: StoredStudy, bounds: LRBounds, cfg: dict[str, Any], *, maximize: bool
) -> float | None:
    study = stored.constant_cv
    if study is None:
        return None
    grid = study.user_attrs.get(ATTR_GRID) or constant_grid(bounds, int(cfg.get("cv_grid", 8)))
    try:
        return chosen_lr(study.get_trials(deepcopy=False), grid, maximize=maximize)
    except LrsearchError:
        legacy = study.user_attrs.get(ATTR_CHOSEN_LR)
        return None if legacy is None else float(legacy)


#: The arms of a study stored before the config's ``arms`` key existed.
_EARLIER_ARMS = ("tuned", "constant-cv", "adam-3e-4")


def _stored_comparison(
    stored: StoredStudy, tuned: dict[str, Any], constant_lr: float | None, study: _Study
) -> dict[str, Any] | None:
    cfg, optimizers, spe_full, maximize = (
        study.cfg,
        study.optimizers,
        study.spe_full,
        study.maximize,
    )
    if "final" not in stored.stages:  # stored before final runs were units
        legacy = stored.attrs.get(ATTR_COMPARISON)
        return dict(legacy) if legacy else None
    arms_wanted = tuple(cfg.get("arms", _EARLIER_ARMS))
    if constant_lr is None and "constant-cv" in arms_wanted:
        return None
    arms = _comparison.make_arms(
        tuned,
        constant_lr,
        steps_per_epoch=spe_full,
        epochs=int(cfg.get("epochs", 1)),
        optimizers=optimizers,
        arms=arms_wanted,
    )
    seeds = _comparison.final_seeds(int(cfg.get("seed", 0)), int(cfg.get("final_seeds", 5)))
    runs = _comparison.collect(stored.trials("final"), arms, seeds)
    if runs is None:
        return None
    return {k: v.to_dict() for k, v in _comparison.summarize(runs, maximize=maximize).items()}
