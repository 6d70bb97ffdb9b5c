"""``run_study``: range test -> seeded, pruned search -> baselines -> held-out comparison.

Everything is stored in one Optuna storage (default ``sqlite:///studies/lrsearch.db``):

- study ``NAME``: the search trials (params ``schedule``, ``base_lr``, ``max_lr``,
  ``step_size``, ``decay``, ``cycle_mult`` where they apply; user attr ``schedule`` in words);
  study user attrs ``range_test``, ``comparison``, ``metric``, ``direction``, ``config``,
  ``task``, ``timings``;
- study ``NAME/constant-cv``: one trial per constant LR of the CV grid (``fold_scores``);
- study ``NAME/adam-3e-4``: the Adam lr=3e-4 run.

Running the same study again resumes it: the stored range test is reused (never recomputed),
the search continues up to ``n_trials`` in total, baselines already scored are not rerun, and a
finished study only rebuilds its summary. Trials left RUNNING by a killed process are failed
through Optuna's heartbeat and retried (``RetryHeartbeatStaleTrialCallback``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import sqlalchemy.engine
import sqlalchemy.exc
import torch
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from torch.utils.data import DataLoader, TensorDataset

from lrsearch._splits import cv_folds, holdout
from lrsearch.baselines import (
    ADAM_LR,
    adam,
    constant_grid,
    cv_scores,
    run_adam,
    run_constant_cv,
)
from lrsearch.compare import Arm, compare
from lrsearch.config import StudyConfig, check_study_name, load_config
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.range_test import RangeTestResult, range_test
from lrsearch.report import (
    attach_to_dashboard,
    comparison_table,
    same_params,
    top_trials,
    trial_states,
)
from lrsearch.report import verdict as _verdict
from lrsearch.schedules import Schedule
from lrsearch.space import LRBounds, seed_params, suggest_schedule
from lrsearch.tasks import Data, Task, load_task
from lrsearch.tasks._task import steps_per_epoch as _steps_per_epoch
from lrsearch.training import clock, default_threads, resolve_device, subset, train_task

__all__ = [
    "DEFAULT_STORAGE",
    "StoredStudy",
    "StudyResult",
    "list_studies",
    "load_result",
    "load_stored",
    "mask_url",
    "prepare",
    "run_range_test",
    "run_study",
]

_log = logging.getLogger(__name__)

# lrsearch relies on Optuna's heartbeat, its stale-trial retry and TPE's `group` on purpose; the
# "experimental" notices they print on every use say nothing a user can act on.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module="optuna")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=__name__)

DEFAULT_STORAGE = "sqlite:///studies/lrsearch.db"
CONSTANT_SUFFIX = "/constant-cv"
ADAM_SUFFIX = "/adam-3e-4"

#: Config keys that shape the search space or the data; a resumed study must keep them.
_FIXED_KEYS = (
    "task",
    "epochs",
    "batch_size",
    "kinds",
    "seed",
    "validation_fraction",
    "range_test",
)

Progress = Callable[[str, int, int], None]


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print or store).

    Example:
        >>> mask_url("postgresql://me:secret@db/optuna")
        'postgresql://me:***@db/optuna'
    """
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy can parse: show nothing after the scheme
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def open_storage(
    url: str | None,
    *,
    heartbeat_interval: int = 10,
    grace_period: int = 30,
    create: bool = True,
) -> RDBStorage:
    """An Optuna RDB storage with a heartbeat, so trials of a killed process are retried.

    A relative SQLite path is taken from the working directory; its folder is created when
    ``create`` (else a missing database is an error). ``heartbeat_interval`` and
    ``grace_period`` are seconds.
    """
    url = url or DEFAULT_STORAGE
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception as exc:
        raise InvalidParameterError(f"not a storage URL: {mask_url(url)!r}") from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not create and not path.is_file():
            raise LrsearchError(f"no study database at {mask_url(url)}")
        path.parent.mkdir(parents=True, exist_ok=True)
    target = _with_driver(parsed, url)
    for attempt in range(3):
        try:
            return RDBStorage(
                target,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            # Workers opening a fresh database together race to create Optuna's tables
            # (PostgreSQL: "duplicate key ... pg_type"); the loser finds them made on a retry.
            if attempt == 2:
                raise LrsearchError(f"cannot open storage {mask_url(url)}: {exc}") from exc
            time.sleep(0.5 * (attempt + 1))
        except Exception as exc:
            raise LrsearchError(f"cannot open storage {mask_url(url)}: {exc}") from exc
    raise AssertionError("unreachable")


def _with_driver(parsed: sqlalchemy.engine.URL, url: str) -> str:
    """``url`` with an installed PostgreSQL driver: SQLAlchemy 2.1 reads a bare
    ``postgresql://`` as psycopg 3, so use psycopg2 where it is the one installed (the test
    extras install it) instead of failing to import."""
    if (
        parsed.drivername == "postgresql"
        and not _importable("psycopg")
        and _importable("psycopg2")
    ):
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """What a study found, as stored (also rebuilt from storage by :func:`load_result`).

    Attributes:
        name: The study name.
        storage: The storage URL, password masked.
        metric: The task's metric name; ``direction`` says which way is better.
        direction: ``"maximize"`` or ``"minimize"``.
        range_test: The stored range test.
        best_params: Params of the best search trial.
        best_value: Its validation metric.
        schedule: The best schedule (step size in steps of the full training set).
        schedule_words: It in words.
        trial_states: How many search trials ended in each state.
        constant_lr: The CV-chosen constant LR (``None`` with baselines skipped).
        comparison: The stored ``comparison`` user attr (``None`` with baselines skipped).
        timings: Seconds per stage and seconds spent inside training and evaluation.
    """

    name: str
    storage: str
    metric: str
    direction: str
    range_test: RangeTestResult
    best_params: dict[str, Any]
    best_value: float
    schedule: Schedule
    schedule_words: str
    trial_states: dict[str, int]
    constant_lr: float | None
    comparison: dict[str, Any] | None
    timings: dict[str, float]

    def table(self) -> pd.DataFrame:
        """The final comparison, one row per arm (empty without one)."""
        return comparison_table(self.comparison, self.metric)

    def verdict(self) -> str:
        """One sentence: whether the tuned schedule beat both baselines, significantly."""
        return _verdict(self.comparison, self.direction)


def _config_conflicts(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    out = []
    for key in _FIXED_KEYS:
        if stored.get(key) != current.get(key):
            out.append(f"{key}: {stored.get(key)!r} -> {current.get(key)!r}")
    return out


def _loader(data: Data, batch_size: int, seed: int) -> DataLoader[Any]:
    dataset = TensorDataset(*data) if isinstance(data, tuple) else data
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)


def _make_sampler(cfg: StudyConfig, n_done: int) -> optuna.samplers.BaseSampler:
    # Offset by the trials already run, so a resumed study does not replay its first draws.
    seed = cfg.seed + n_done
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed)


def _make_pruner(cfg: StudyConfig, epochs: int) -> optuna.pruners.BasePruner:
    warmup = cfg.warmup_epochs if cfg.warmup_epochs is not None else epochs // 4
    if cfg.pruner == "none":
        return optuna.pruners.NopPruner()
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, warmup), max_resource=epochs, reduction_factor=3
        )
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)


def _finished(study: optuna.Study) -> int:
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    )


def _wait_for_running(study: optuna.Study, storage: RDBStorage, grace: float) -> None:
    """Wait until no trial is RUNNING: live workers finish, dead ones go stale and are failed."""
    deadline = time.monotonic() + grace + 5
    while True:
        optuna.storages.fail_stale_trials(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        if time.monotonic() > deadline:
            # Live trials of another worker (their heartbeat is fresh): extend the wait.
            deadline = time.monotonic() + grace
            _log.info("waiting for %d trial(s) running in another process", len(running))
        time.sleep(min(1.0, grace / 4))


def prepare(
    config: StudyConfig | str,
    *,
    overrides: Mapping[str, Any] | None = None,
    task: Task | None = None,
) -> tuple[StudyConfig, Task, torch.device]:
    """Load and validate everything a study needs (config, task, device); writes nothing."""
    cfg = config if isinstance(config, StudyConfig) else load_config(config)
    if overrides:
        try:
            cfg = cfg.replace(**overrides)
        except TypeError as exc:
            raise InvalidParameterError(str(exc)) from exc
    check_study_name(cfg.name)
    task = load_task(task or cfg.task, epochs=cfg.epochs, batch_size=cfg.batch_size)
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads or default_threads())
    return cfg, task, device


def run_range_test(
    config: StudyConfig | str, *, overrides: Mapping[str, Any] | None = None
) -> RangeTestResult:
    """The range test study NAME would run (same model seed, split and batches); stores nothing."""
    cfg, task, device = prepare(config, overrides=overrides)
    fit_idx, _ = holdout(task, cfg.validation_fraction, cfg.seed)
    return study_range_test(cfg, task, subset(task.train, fit_idx), device)


def study_range_test(
    cfg: StudyConfig, task: Task, train: Data, device: torch.device
) -> RangeTestResult:
    """The range test of a study: a fresh model seeded ``cfg.seed``, the task's optimizer,
    batches of ``train`` (the search-train split) in a seeded order."""
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
    heartbeat_interval: int = 10,
    grace_period: int = 30,
    search_bounds: LRBounds | None = None,
    enqueue_seeds: bool = True,
) -> StudyResult:
    """Run (or resume) study ``NAME`` end to end and return its result.

    Args:
        config: A :class:`~lrsearch.config.StudyConfig` or a study name whose config is
            ``./studies/NAME.toml`` or a packaged one.
        storage: Optuna storage URL (default ``sqlite:///studies/lrsearch.db``).
        overrides: Config keys to replace (the CLI's flags).
        fresh: Delete study NAME and its baselines first.
        skip_baselines: Search only: no baselines, no final comparison.
        task: A :class:`~lrsearch.tasks.Task` to use instead of the config's ``task``.
        progress: Called as ``progress(stage, done, total)`` while work advances.
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds without a heartbeat after which a trial is failed and retried.
        search_bounds: Search ``max_lr``/``base_lr`` over these bounds instead of the range
            test's (the range test still runs and is stored; for ablations).
        enqueue_seeds: Enqueue the literature's schedules first (``False`` for ablations).

    Returns:
        The :class:`StudyResult`.

    Raises:
        InvalidParameterError: A bad config or override (before anything is written).
        LrsearchError: The storage cannot be opened, or the study exists with another config.
    """
    cfg, task, device = prepare(config, overrides=overrides, task=task)
    name = cfg.name
    report = progress or (lambda stage, done, total: None)
    # Everything above validates; only now is anything written.
    store = open_storage(storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    url = mask_url(storage or DEFAULT_STORAGE)
    if fresh:
        for study_name in (name, name + CONSTANT_SUFFIX, name + ADAM_SUFFIX):
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=study_name, storage=store)

    with clock() as training_clock:
        timings: dict[str, float] = {}
        wall = time.perf_counter()
        cfg_dict = cfg.to_dict() | {"epochs": task.epochs, "batch_size": task.batch_size}
        direction = task.direction or "maximize"
        study = optuna.create_study(
            study_name=name, storage=store, direction=direction, load_if_exists=True
        )
        stored_cfg = study.user_attrs.get("config")
        if stored_cfg is not None:
            conflicts = _config_conflicts(stored_cfg, cfg_dict)
            if conflicts:
                raise LrsearchError(
                    f"study {name!r} in {url} was made with another config "
                    f"({'; '.join(conflicts)}); run with --fresh to start over or pick another "
                    "study name"
                )
        if study.direction.name.lower() != direction:
            raise LrsearchError(f"study {name!r} in {url} is to {study.direction.name.lower()}")
        study.set_user_attr("config", cfg_dict)
        study.set_user_attr("task", task.describe())
        study.set_user_attr("metric", task.metric_name)
        study.set_user_attr("direction", direction)
        # The dashboard's name for the objective (else "Objective 0").
        study.set_metric_names([f"validation {task.metric_name or 'metric'}"])

        fit_idx, val_idx = holdout(task, cfg.validation_fraction, cfg.seed)
        search_train, val = subset(task.train, fit_idx), subset(task.train, val_idx)
        spe_search = _steps_per_epoch(len(fit_idx), task.batch_size)
        spe_full = _steps_per_epoch(task.n_train, task.batch_size)
        study.set_user_attr("steps_per_epoch", {"search": spe_search, "full": spe_full})

        # 1. Range test, once per study.
        stage_start = time.perf_counter()
        if "range_test" in study.user_attrs:
            rt = RangeTestResult.from_dict(study.user_attrs["range_test"])
            _log.info("reusing the stored range test: %s", rt.bounds)
        else:
            report("range test", 0, 1)
            rt = study_range_test(cfg, task, search_train, device)
            study.set_user_attr("range_test", rt.to_dict())
            report("range test", 1, 1)
            # On the dashboard while the search runs.
            attach_to_dashboard(study)
        timings["range_test"] = time.perf_counter() - stage_start
        bounds = search_bounds or rt.bounds

        # 2. Seeds from the literature, enqueued once; no more than the budget runs (a seed left
        # WAITING would linger in the storage, and is enqueued when a resume raises n_trials).
        if enqueue_seeds:
            seeds = seed_params(
                bounds, steps_per_epoch=spe_search, epochs=task.epochs, kinds=cfg.kinds
            )
            for params in seeds[: cfg.n_trials]:
                study.enqueue_trial(params, user_attrs={"seeded": True}, skip_if_exists=True)

        # 3. The search.
        stage_start = time.perf_counter()
        n_done = _finished(study)
        study.sampler = _make_sampler(cfg, n_done)
        study.pruner = _make_pruner(cfg, task.epochs)

        def objective(trial: optuna.Trial) -> float:
            schedule = suggest_schedule(
                trial,
                bounds=bounds,
                steps_per_epoch=spe_search,
                epochs=task.epochs,
                kinds=cfg.kinds,
            )
            trial.set_user_attr("schedule", schedule.describe(spe_search))
            # optuna-dashboard sorts numeric attrs only: the schedule's peak and mean LR are
            # the sortable summary of the words.
            lrs = schedule.lrs(spe_search * task.epochs)
            trial.set_user_attr("lr_peak", float(lrs.max()))
            trial.set_user_attr("lr_mean", float(lrs.mean()))
            result = train_task(
                task,
                search_train,
                schedule=schedule,
                eval_data=val,
                seed=cfg.seed,
                device=device,
                trial=trial,
            )
            trial.set_user_attr("epochs_run", result.epochs_run)
            return result.final

        remaining = max(0, cfg.n_trials - n_done)
        if remaining:
            counter = [n_done]

            def tick(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
                counter[0] = _finished(study)
                report("search", min(counter[0], cfg.n_trials), cfg.n_trials)

            report("search", n_done, cfg.n_trials)
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=cfg.timeout,
                callbacks=[
                    optuna.study.MaxTrialsCallback(
                        cfg.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)
                    ),
                    tick,
                ],
            )
        _wait_for_running(study, store, grace_period)
        timings["search"] = time.perf_counter() - stage_start
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise LrsearchError(
                f"study {name!r}: no search trial completed (all pruned or failed)"
            )
        best = study.best_trial
        schedule = Schedule.from_params(best.params, steps_per_epoch=spe_full, epochs=task.epochs)

        constant_lr: float | None = None
        comparison: dict[str, Any] | None = study.user_attrs.get("comparison")
        if not skip_baselines:
            # 4. Baselines.
            stage_start = time.perf_counter()

            def baseline_study(suffix: str) -> optuna.Study:
                # Baselines are scored in full: no pruner.
                return optuna.create_study(
                    study_name=name + suffix,
                    storage=store,
                    direction=direction,
                    load_if_exists=True,
                    pruner=optuna.pruners.NopPruner(),
                )

            cv_study = baseline_study(CONSTANT_SUFFIX)
            grid = constant_grid(rt.bounds, cfg.cv_grid)
            cv_done = [0]

            def cv_tick() -> None:
                cv_done[0] += 1
                report("constant-cv", cv_done[0], len(grid))

            constant_lr = run_constant_cv(
                cv_study,
                task,
                grid,
                folds=cfg.cv_folds,
                seed=cfg.seed,
                device=device,
                on_trial=cv_tick,
            )
            cv_study.set_user_attr("grid", grid)
            cv_study.set_user_attr("chosen_lr", constant_lr)
            best, _ = _pick_finalist(study, task, cfg, device, report)
            schedule = Schedule.from_params(
                best.params, steps_per_epoch=spe_full, epochs=task.epochs
            )
            adam_study = baseline_study(ADAM_SUFFIX)
            report("adam-3e-4", 0, 1)
            run_adam(adam_study, task, search_train, val, seed=cfg.seed, device=device)
            report("adam-3e-4", 1, 1)
            timings["baselines"] = time.perf_counter() - stage_start

            # 5. The final comparison on the test data (read here for the first time).
            arms = [
                Arm("tuned", schedule, dict(best.params)),
                Arm("constant-cv", Schedule("constant", max_lr=constant_lr), {"lr": constant_lr}),
                Arm(
                    "adam-3e-4",
                    Schedule("constant", max_lr=ADAM_LR),
                    {"lr": ADAM_LR},
                    optimizer="Adam",
                    optimizer_factory=adam,
                ),
            ]
            if not _comparison_is_current(comparison, arms, cfg.final_seeds):
                stage_start = time.perf_counter()
                total = len(arms) * cfg.final_seeds
                runs = [0]

                def run_tick(arm: str, seed: int) -> None:
                    runs[0] += 1
                    report("final comparison", runs[0], total)

                report("final comparison", 0, total)
                comparison = compare(
                    task,
                    arms,
                    seeds=cfg.final_seeds,
                    seed=cfg.seed,
                    device=device,
                    on_run=run_tick,
                )
                study.set_user_attr("comparison", comparison)
                timings["compare"] = time.perf_counter() - stage_start

        timings["total"] = time.perf_counter() - wall
        timings["inside_training"] = training_clock.seconds
        study.set_user_attr("timings", timings)
        attach_to_dashboard(study)
        return StudyResult(
            name=name,
            storage=url,
            metric=task.metric_name or "metric",
            direction=direction,
            range_test=rt,
            best_params=dict(best.params),
            best_value=float(best.value),  # type: ignore[arg-type]
            schedule=schedule,
            schedule_words=schedule.describe(spe_full),
            trial_states=trial_states(study),
            constant_lr=constant_lr,
            comparison=comparison,
            timings=timings,
        )


def _pick_finalist(
    study: optuna.Study,
    task: Task,
    cfg: StudyConfig,
    device: torch.device,
    report: Progress,
) -> tuple[optuna.trial.FrozenTrial, list[dict[str, Any]]]:
    """Re-score the top search trials on the constant baseline's CV folds; best mean wins.

    One validation split is a noisy judge and the best of many trials on it is biased up (the
    winner's curse); the constant-LR baseline is chosen by k-fold CV, so the tuned arm is too.
    Stored as study user attr ``finalists`` and reused while the top trials stay the same.
    """
    top = top_trials(study, cfg.finalists)
    if len(top) == 1:
        return top[0], []
    stored = study.user_attrs.get("finalists")
    numbers = [t.number for t in top]
    if stored and [f["trial"] for f in stored] == numbers:
        finalists: list[dict[str, Any]] = stored
    else:
        splits = cv_folds(task, cfg.cv_folds, cfg.seed)
        spe = _steps_per_epoch(len(splits[0][0]), task.batch_size)
        finalists = []
        for i, trial in enumerate(top):
            report("finalists", i, len(top))
            schedule = Schedule.from_params(trial.params, steps_per_epoch=spe, epochs=task.epochs)
            scores, reason = cv_scores(task, schedule, splits, seed=cfg.seed, device=device)
            finalists.append(
                {
                    "trial": trial.number,
                    "params": dict(trial.params),
                    "value": trial.value,
                    "fold_scores": scores,
                    "cv_mean": None if reason else sum(scores) / len(scores),
                    "diverged": reason,
                }
            )
        report("finalists", len(top), len(top))
        study.set_user_attr("finalists", finalists)
    scored = [f for f in finalists if f["cv_mean"] is not None]
    if not scored:
        return top[0], finalists
    pick = (max if task.maximize else min)(scored, key=lambda f: f["cv_mean"])
    return next(t for t in top if t.number == pick["trial"]), finalists


def _comparison_is_current(
    comparison: Mapping[str, Any] | None, arms: list[Arm], seeds: int
) -> bool:
    if not comparison:
        return False
    for arm in arms:
        stored = comparison.get(arm.name)
        if stored is None or len(stored["test_metric_per_seed"]) != seeds:
            return False
        if not same_params(stored["params"], arm.params):
            return False
    return True


@dataclasses.dataclass(frozen=True)
class StoredStudy:
    """Study NAME as stored, with its baselines where they exist (read-only use).

    Attributes:
        name: The study name.
        storage: The storage URL, password masked.
        search: Optuna study NAME (the search trials and the study's user attrs).
        constant_cv: Study ``NAME/constant-cv``, or ``None``.
        adam: Study ``NAME/adam-3e-4``, or ``None``.
    """

    name: str
    storage: str
    search: optuna.Study
    constant_cv: optuna.Study | None
    adam: optuna.Study | None


def load_stored(name: str, *, storage: str | None = None) -> StoredStudy:
    """Open study NAME and its baselines from ``storage`` without running or creating anything.

    Raises:
        InvalidParameterError: ``name`` is not a valid study name.
        LrsearchError: No database, or no study NAME in it.
    """
    check_study_name(name)
    store = open_storage(storage, create=False)
    url = mask_url(storage or DEFAULT_STORAGE)
    try:
        study = optuna.load_study(study_name=name, storage=store)
    except KeyError:
        raise LrsearchError(f"no study {name!r} in {url}") from None
    baselines: list[optuna.Study | None] = []
    for suffix in (CONSTANT_SUFFIX, ADAM_SUFFIX):
        try:
            baselines.append(optuna.load_study(study_name=name + suffix, storage=store))
        except KeyError:
            baselines.append(None)
    return StoredStudy(name, url, study, baselines[0], baselines[1])


def load_result(name: str, *, storage: str | None = None) -> StudyResult:
    """Rebuild the :class:`StudyResult` of a stored study without running anything.

    Raises:
        LrsearchError: No database, no such study, or it has no completed search trial.
    """
    stored = load_stored(name, storage=storage)
    study, url = stored.search, stored.storage
    attrs = study.user_attrs
    if "range_test" not in attrs:
        raise LrsearchError(f"study {name!r} in {url} has no range test yet")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise LrsearchError(f"study {name!r} in {url} has no completed trial yet")
    cfg = attrs.get("config", {})
    epochs = int(cfg.get("epochs", 1))
    n_train = int(attrs.get("task", {}).get("n_train", 1))
    spe_full = _steps_per_epoch(n_train, int(cfg.get("batch_size", 1)))
    best = study.best_trial
    schedule = Schedule.from_params(best.params, steps_per_epoch=spe_full, epochs=epochs)
    cv = stored.constant_cv
    constant_lr = None if cv is None else cv.user_attrs.get("chosen_lr")
    return StudyResult(
        name=name,
        storage=url,
        metric=str(attrs.get("metric", "metric")),
        direction=str(attrs.get("direction", study.direction.name.lower())),
        range_test=RangeTestResult.from_dict(attrs["range_test"]),
        best_params=dict(best.params),
        best_value=float(best.value),  # type: ignore[arg-type]
        schedule=schedule,
        schedule_words=schedule.describe(spe_full),
        trial_states=trial_states(study),
        constant_lr=constant_lr,
        comparison=attrs.get("comparison"),
        timings=dict(attrs.get("timings", {})),
    )


def list_studies(storage: str | None = None) -> pd.DataFrame:
    """One row per study in ``storage``: name, trials per state, best value, what is stored.

    Raises:
        LrsearchError: The storage cannot be opened (a missing SQLite file is not created).
    """
    store = open_storage(storage, create=False)
    rows = []
    for summary in optuna.get_all_study_summaries(store, include_best_trial=True):
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        states = trial_states(study)
        best = summary.best_trial
        rows.append(
            {
                "study": summary.study_name,
                "direction": summary.direction.name.lower(),
                "trials": summary.n_trials,
                "complete": states.get("COMPLETE", 0),
                "pruned": states.get("PRUNED", 0),
                "running": states.get("RUNNING", 0),
                "failed": states.get("FAILED", 0),
                "waiting": states.get("WAITING", 0),
                "best value": None if best is None else best.value,
                "range test": "range_test" in summary.user_attrs,
                "comparison": "comparison" in summary.user_attrs,
            }
        )
    return pd.DataFrame(rows)
