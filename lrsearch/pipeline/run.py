"""``run_study``: the pipeline as a sequence of stages, each "make sure it is done, then load it".

range test -> search -> constant-LR CV and the recipe arms -> finalists -> final comparison.
Any number of processes, on one machine or many, may run the same study at the same time or one
after another: each stage's units go through Optuna's queue (:mod:`lrsearch.pipeline.queue`), a
stage waits for the previous one's units, and the result is :func:`load_result`, derived from
the stored units, whichever process ran them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.storages import RDBStorage

from lrsearch.choices import REDO_SWEEPS
from lrsearch.config import StudyConfig
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.pipeline import arms as _arms
from lrsearch.pipeline import comparison as _comparison
from lrsearch.pipeline import finalists as _finalists
from lrsearch.pipeline import range_test as _range_test
from lrsearch.pipeline import search as _search
from lrsearch.pipeline.budget import Sizes, plan
from lrsearch.pipeline.context import Context, Progress, RunLog, prepare
from lrsearch.pipeline.result import StudyResult, load_result
from lrsearch.space import LRBounds
from lrsearch.store import (
    ATTR_BASELINE,
    ATTR_CONFIG,
    ATTR_DIRECTION,
    ATTR_METRIC,
    ATTR_STEPS_PER_EPOCH,
    ATTR_TASK,
    DEFAULT_STORAGE,
    FULL,
    SEARCH,
    StoredStudy,
    StudyNames,
    load_stored,
    mask_url,
    open_storage,
    run_records,
)
from lrsearch.tasks import Task

__all__ = ["FIXED_KEYS", "OnStored", "run_study"]

#: What ``run_study`` calls with the stored study when this process stored something new.
OnStored = Callable[[StoredStudy], None]

_log = logging.getLogger(__name__)

#: Config keys that shape the search space or the data; a resumed study must keep them.
FIXED_KEYS = (
    "task",
    "epochs",
    "batch_size",
    "kinds",
    "optimizers",
    "seed",
    "validation_fraction",
    "fidelity",
    "range_test",
)


def run_study(
    config: StudyConfig | str,
    *,
    storage: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    fresh: bool = False,
    skip_baselines: bool = False,
    task: Task | None = None,
    progress: Progress | None = None,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    search_bounds: LRBounds | None = None,
    enqueue_seeds: bool = True,
    on_stored: OnStored | None = None,
) -> StudyResult:
    """Run (or resume, or join) study ``NAME`` end to end and return its result.

    The arguments are :func:`lrsearch.run_study`'s (the public entry, which documents them),
    and ``on_stored``: called with the stored study when this process stored something new
    (the range test, the result); ``lrsearch.run_study`` attaches the dashboard's figures here.

    Returns:
        :func:`load_result` of the study.

    Raises:
        InvalidParameterError: A bad config or override (before anything is written).
        LrsearchError: The storage cannot be opened, the study exists with another config,
            ``fresh`` while other workers are live, or a stage cannot finish.
    """
    cfg, task, device, baseline = prepare(config, overrides=overrides, task=task)
    heartbeat_interval = heartbeat_interval or cfg.heartbeat_interval
    grace_period = grace_period or cfg.grace_period
    # Everything above validates; only now is anything written.
    store = open_storage(storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    url = mask_url(storage or DEFAULT_STORAGE)
    existing = None if fresh else _load_existing(store, cfg.name)
    if existing is not None:
        cfg = _keep_stored_redo(cfg, task, existing)
    quiet: Progress = lambda stage, done, total: None  # noqa: E731
    ctx = Context(
        cfg, task, device, store, url, progress or quiet, heartbeat_interval, grace_period
    )
    cfg_dict = cfg.to_dict() | {"epochs": task.epochs, "batch_size": task.batch_size}
    if fresh:
        _delete(store, ctx.names, url, grace_period)
    elif existing is not None:
        _check_existing(existing, url, cfg_dict, ctx.direction)
    _describe(ctx, ctx.study("search"))
    inputs = {
        ATTR_CONFIG: cfg_dict,
        ATTR_TASK: task.describe(),
        ATTR_STEPS_PER_EPOCH: {SEARCH: ctx.spe_search, FULL: ctx.spe_full},
        ATTR_BASELINE: baseline.to_dict(),
    }
    ctx.log = RunLog(
        ctx.study("runs"),
        device=device.type,
        storage=url,
        interval=heartbeat_interval,
        inputs=inputs,
    )
    ctx.log.start()
    try:
        _stages(ctx, skip_baselines, search_bounds, enqueue_seeds, on_stored)
    except BaseException as exc:
        ctx.log.end(error=" ".join(str(exc).split()) or type(exc).__name__)
        raise
    ctx.log.end()
    try:
        return _finish(ctx, storage, on_stored)
    finally:
        # Close this process's connections: SQLite folds its write-ahead log back into the
        # database file when the last one closes, so the file is whole once run_study returns.
        store.engine.dispose()


def _finish(ctx: Context, storage: str | None, on_stored: OnStored | None) -> StudyResult:
    """The study's result, summarised on its line in Optuna's own tools (the records stay on
    the units), and shown on the dashboard when this process changed anything."""
    result = load_result(ctx.cfg.name, storage=storage, store=ctx.store)
    ctx.summarize(
        bounds=[result.bounds.low, result.bounds.high],
        tuned=result.schedule_words,
        test={arm: r.test_metric_mean for arm, r in result.arms.items()},
        warnings=[w.code for w in result.warnings],
        cost={}
        if result.cost is None
        else {"tuning": result.cost.tuning, "verification": result.cost.verification},
    )
    if ctx.changed and on_stored is not None:
        on_stored(load_stored(ctx.cfg.name, storage=ctx.url, store=ctx.store))
    return result


def _stages(
    ctx: Context,
    skip_baselines: bool,
    search_bounds: LRBounds | None,
    enqueue_seeds: bool,
    on_stored: OnStored | None,
) -> None:
    readings = _range_test.ensure(ctx)
    if ctx.changed and on_stored is not None:
        # the range test on the dashboard while the search runs
        on_stored(load_stored(ctx.cfg.name, storage=ctx.url, store=ctx.store))
    first = readings[ctx.cfg.optimizers[0]]
    bounds = {name: search_bounds or r.bounds for name, r in readings.items()}
    # The seeds peak over each range test's suggestion (never above its high), 1cycle at its
    # steepest point (both in the middle of a plausible span the range test could not read);
    # a space given instead of the range test's keeps them at its top.
    peaks = onecycle_peaks = None
    if search_bounds is None:
        peaks = {name: r.peak for name, r in readings.items()}
        onecycle_peaks = {name: r.onecycle_peak for name, r in readings.items()}
    # The CV grid needs only the range test, and its chosen constant LR seeds the search: the
    # search starts from the bar the comparison holds it to.
    # Bounds heal (a winner at an edge widens that side) unless the space was given instead.
    arms = ctx.cfg.arms
    heal = search_bounds is None
    constant_lr = None
    cv = not skip_baselines and "constant-cv" in arms
    if cv:
        constant_lr = _arms.ensure_constant_cv(ctx, first.bounds, heal=heal)
    _search.ensure(
        ctx,
        bounds,
        heal=heal,
        seeds=enqueue_seeds,
        peaks=peaks,
        onecycle_peaks=onecycle_peaks,
        constant_lr=constant_lr,
    )
    if skip_baselines:
        return
    if cv:  # the search may have grown the bounds: the grid grows with them
        constant_lr = _arms.ensure_constant_cv(ctx, first.bounds, heal=heal)
    # The recipe arms and the finalists depend on the search only: help with each first (claim
    # what is free, wait for nothing), so workers do not idle at one stage's end while another
    # has units to run; then make sure of each.
    _arms.help_recipes(ctx)
    _finalists.help_finalists(ctx)
    _arms.ensure_recipes(ctx)
    tuned = _finalists.ensure(ctx)
    contenders = _comparison.make_arms(
        tuned.params,
        constant_lr,
        steps_per_epoch=ctx.spe_full,
        epochs=ctx.task.epochs,
        optimizers=ctx.cfg.optimizers,
        arms=arms,
    )
    _comparison.ensure(ctx, contenders)


def _describe(ctx: Context, search: optuna.Study) -> None:
    """What the study optimizes: its metric and direction (written when new; the config and
    the task go on this run's trial of ``NAME/runs``)."""
    task = ctx.task
    ctx.derive(search, ATTR_METRIC, task.metric_name)
    ctx.derive(search, ATTR_DIRECTION, ctx.direction)
    # The dashboard's name for the objective (else "Objective 0").
    metric_names = [f"validation {task.metric_name or 'metric'}"]
    if search.metric_names != metric_names:
        with warnings.catch_warnings():  # "experimental" in Optuna; nothing to act on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            search.set_metric_names(metric_names)


def _load_existing(store: RDBStorage, name: str) -> StoredStudy | None:
    """Study ``name`` as stored, or ``None`` when there is none yet."""
    try:
        return load_stored(name, store=store)
    except LrsearchError:
        return None


def _stored_range_test(stored_cfg: Mapping[str, Any]) -> Any:
    """The stored config's ``range_test`` table, its ``redo`` filled in for a study stored
    before the key existed (the redo had 3 sweeps then); what else was stored, as it is."""
    table = stored_cfg.get("range_test")
    return {"redo": REDO_SWEEPS, **table} if isinstance(table, Mapping) else table


def _keep_stored_redo(cfg: StudyConfig, task: Task, stored: StoredStudy) -> StudyConfig:
    """A budgeted study going on with another budget keeps the range-test redo it was planned
    with (its range test is done, and is read with it); the rest is planned around it. A
    ``range_test.redo`` set leaves ``cfg`` as it is."""
    if cfg.budget is None or "range_redo" in (cfg.given or ()):
        return cfg
    table = _stored_range_test(stored.attrs.get(ATTR_CONFIG) or {})
    redo = int(table["redo"]) if isinstance(table, Mapping) else cfg.range_redo
    if redo == cfg.range_redo:
        return cfg
    kept = dataclasses.replace(
        cfg, range_redo=redo, given=(cfg.given or frozenset()) | {"range_redo"}
    )
    try:
        return plan(kept, Sizes(task.n_train, task.batch_size, task.epochs)).apply(kept)
    except InvalidParameterError as error:
        raise InvalidParameterError(
            f"{error} (study {cfg.name!r} keeps the range-test redo it was planned with, "
            f"range_test.redo = {redo}; --fresh plans it anew)"
        ) from None


#: What a study stored before a fixed key existed had, in effect.
_EARLIER = {"optimizers": ["task"], "fidelity": 1.0}


def _config_conflicts(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    earlier = {**stored}
    if "range_test" in stored:
        earlier["range_test"] = _stored_range_test(stored)
    out = []
    for key in FIXED_KEYS:
        was, now = earlier.get(key, _EARLIER.get(key)), current.get(key)
        if was == now:
            continue
        if (
            key == "range_test"
            and isinstance(was, Mapping)
            and isinstance(now, Mapping)
            and {**was, "redo": 0} == {**now, "redo": 0}
        ):
            out.append(
                f"range_test.redo: {was['redo']} -> {now['redo']} (set it to {was['redo']}, "
                "or leave it to the budget, to go on)"
            )
            continue
        out.append(f"{key}: {was!r} -> {now!r}")
    return out


def _check_existing(
    stored: StoredStudy, url: str, cfg_dict: Mapping[str, Any], direction: str
) -> None:
    """Refuse to continue a study made with another config or direction (writes nothing)."""
    study = stored.search
    stored_cfg = stored.attrs.get(ATTR_CONFIG)
    if stored_cfg is not None:
        conflicts = _config_conflicts(stored_cfg, cfg_dict)
        if conflicts:
            raise LrsearchError(
                f"study {stored.name!r} in {url} was made with another config "
                f"({'; '.join(conflicts)}); run with --fresh to start over or pick another "
                "study name"
            )
    if study.direction.name.lower() != direction:
        raise LrsearchError(f"study {stored.name!r} in {url} is to {study.direction.name.lower()}")


def _delete(store: RDBStorage, names: StudyNames, url: str, grace_period: int) -> None:
    """``--fresh``: delete the study's Optuna studies, unless another process is working on it."""
    existing = set(optuna.get_all_study_names(store))
    if names.search in existing:
        live = _live_workers(load_stored(names.name, store=store), grace_period)
        if live:
            raise LrsearchError(
                f"study {names.name!r} in {url} has {len(live)} live worker(s) "
                f"({', '.join(live)}); --fresh would delete their work: stop them first"
            )
    for name in names.all():
        if name in existing:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=store)


def _live_workers(stored: StoredStudy, grace_period: int) -> list[str]:
    """Workers whose run record is unfinished and was refreshed within the grace period."""
    now = datetime.datetime.now(datetime.UTC)
    live = []
    for record in run_records(stored):
        if record.finished() or not record.last_seen:
            continue
        seen = datetime.datetime.fromisoformat(record.last_seen)
        if (now - seen).total_seconds() <= grace_period:
            live.append(record.worker)
    return live
