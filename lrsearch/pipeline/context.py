"""What every stage needs: the config, the task and its splits, the storage, this worker.

:func:`prepare` validates everything and writes nothing; :class:`Context` opens the studies
of the stages on demand; :class:`RunLog` is this process's entry in the study's history (one
user attr per ``lrsearch run`` invocation, written only by the process it describes).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import logging
import os
import platform
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import optuna
import torch
from optuna.storages import RDBStorage

from lrsearch.choices import PER_EPOCH_KINDS
from lrsearch.config import StudyConfig, check_study_name, load_config
from lrsearch.exceptions import InvalidParameterError
from lrsearch.optimizers import search_optimizer
from lrsearch.pipeline.budget import Sizes, plan
from lrsearch.pipeline.queue import Plan, Stage, work
from lrsearch.preflight import Baseline, preflight
from lrsearch.splits import cv_folds, holdout, watch_split
from lrsearch.store import (
    ATTR_SUMMARY,
    RUN_RECORD,
    RunRecord,
    StorageLock,
    StudyNames,
    StudySummary,
)
from lrsearch.tasks import Data, Task, load_task, steps_per_epoch, subset
from lrsearch.training import default_threads, resolve_device
from lrsearch.version import __version__

__all__ = ["Context", "Progress", "RunLog", "prepare"]

_log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def prepare(
    config: StudyConfig | str,
    *,
    overrides: Mapping[str, Any] | None = None,
    task: Task | None = None,
) -> tuple[StudyConfig, Task, torch.device, Baseline]:
    """Load and validate everything a study needs (config, task, device), and pre-flight the
    task (:func:`lrsearch.preflight.preflight`: one batch through the model, loss, metric and
    one step of each searched optimizer; its untrained model scored on the validation split);
    writes nothing."""
    cfg = config if isinstance(config, StudyConfig) else load_config(config)
    if overrides:
        try:
            cfg = cfg.replace(**overrides)
        except TypeError as exc:
            raise InvalidParameterError(str(exc)) from exc
    check_study_name(cfg.name)
    task = load_task(task or cfg.task, epochs=cfg.epochs, batch_size=cfg.batch_size)
    if cfg.budget is not None:  # a pure function of the config: every worker plans the same
        cfg = plan(cfg, Sizes(task.n_train, task.batch_size, task.epochs)).apply(cfg)
    check_splits(cfg, task)
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads or default_threads())
    _, val_idx = holdout(task, cfg.validation_fraction, cfg.seed)
    baseline = preflight(
        task,
        device,
        optimizers={name: search_optimizer(name, task.make_optimizer) for name in cfg.optimizers},
        validation=subset(task.train, val_idx),
        seed=cfg.seed,
        lr=cfg.range_start_lr,
    )
    return cfg, task, device, baseline


def check_splits(cfg: StudyConfig, task: Task) -> None:
    """Make every split study ``cfg`` will make of ``task.train`` once, so that data too small
    or too coarsely grouped to split fails here, before anything is written, not in a later
    stage: the validation split, the CV folds (when the constant-LR arm or the finalists use
    them) and, when ``plateau`` is searched, its watched split of the search-train split and of
    each fold's fit part (:func:`lrsearch.splits.watch_split`).

    Raises:
        InvalidParameterError: A split cannot be made (its message says which).
    """
    fit, _ = holdout(task, cfg.validation_fraction, cfg.seed)
    folds = []
    if "constant-cv" in cfg.arms or cfg.finalists > 1:
        folds = cv_folds(task, cfg.cv_folds, cfg.seed)
    if any(kind in PER_EPOCH_KINDS for kind in cfg.kinds):
        for given in [fit, *(part for part, _ in folds)]:
            watch_split(task, given, cfg.validation_fraction, cfg.seed)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _versions() -> dict[str, str]:
    return {
        "lrsearch": __version__,
        "optuna": optuna.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


class RunLog:
    """This process's record in the study's history, kept up to date while it works: a trial
    of ``NAME/runs`` carrying the :class:`RunRecord` (user attr ``run_record``) and what the
    run was made with (``inputs``: config, task, steps per epoch, baseline).

    A thread refreshes ``last_seen`` every ``interval`` seconds, so a live worker (busy in a
    long unit or waiting for others) can be told from a killed one. The trial ends COMPLETE
    (value: the run's seconds) or FAIL with the run; a killed run's stays RUNNING.
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        device: str,
        storage: str,
        interval: float,
        inputs: Mapping[str, Any] | None = None,
    ) -> None:
        now = _now()
        self._study = study
        self._inputs = dict(inputs or {})
        self._interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trial: optuna.Trial | None = None
        self._clock = time.monotonic()
        self.record = RunRecord(
            started=now,
            host=socket.gethostname(),
            pid=os.getpid(),
            versions=_versions(),
            device=device,
            storage=storage,
            last_seen=now,
        )

    @property
    def id(self) -> str:
        """``host:pid@started``: stored as user attr ``worker`` on every unit this run ran."""
        return self.record.worker

    def start(self) -> None:
        """Write the record and keep it fresh until :meth:`end`."""
        with warnings.catch_warnings():  # the storage's heartbeat is for the units, not this
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            self._trial = self._study.ask()
        for key, value in self._inputs.items():
            self._trial.set_user_attr(key, json.loads(json.dumps(value)))
        self._write()
        self._thread = threading.Thread(target=self._beat, name="lrsearch-runlog", daemon=True)
        self._thread.start()

    def end(self, error: str | None = None) -> None:
        """Mark the run finished (or failed with ``error``) and stop refreshing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self.record = dataclasses.replace(
                self.record,
                status="failed" if error else "finished",
                ended=_now(),
                error=error,
            )
        self._write()
        if self._trial is not None:
            if error:
                self._study.tell(self._trial, state=optuna.trial.TrialState.FAIL)
            else:
                self._study.tell(self._trial, time.monotonic() - self._clock)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._write()
            except Exception as exc:  # a flaky connection must not kill the worker
                _log.debug("could not refresh the run record: %s", exc)

    def _write(self) -> None:
        with self._lock:
            self.record = dataclasses.replace(self.record, last_seen=_now())
            record = self.record
        if self._trial is not None:
            self._trial.set_user_attr(RUN_RECORD, record.to_dict())


@dataclasses.dataclass
class Context:
    """Everything a stage reads, and the studies it writes to.

    Attributes:
        cfg: The validated config.
        task: The task (epochs and batch size from the config).
        device: Where training runs.
        store: The open Optuna storage.
        url: The storage URL, password masked.
        progress: ``progress(stage, done, total)``.
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds without a heartbeat after which a unit is failed and retried.
    """

    cfg: StudyConfig
    task: Task
    device: torch.device
    store: RDBStorage
    url: str
    progress: Progress
    heartbeat_interval: int
    grace_period: int
    log: RunLog | None = None
    #: Whether this process wrote anything derived (a decision, a summary) to the storage.
    changed: bool = False
    _studies: dict[str, optuna.Study] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = StudyNames(self.cfg.name)
        self.lock = StorageLock(self.store.engine, f"study:{self.cfg.name}")
        self.fit_idx, self.val_idx = holdout(
            self.task, self.cfg.validation_fraction, self.cfg.seed
        )
        self.spe_search = steps_per_epoch(len(self.fit_idx), self.task.batch_size)
        self.spe_full = steps_per_epoch(self.task.n_train, self.task.batch_size)

    @property
    def worker(self) -> RunLog:
        """This process's entry in the study's history (set by ``run_study``)."""
        if self.log is None:
            raise RuntimeError("the context has no run log yet")
        return self.log

    def derive(self, study: optuna.Study, key: str, value: Any) -> None:
        """Store ``value`` as ``study``'s user attr ``key`` unless it already holds it.

        Derived records (decisions, summaries) are pure functions of the units, so every worker
        computes the same value; writing only a change keeps a rerun from touching the study.
        """
        value = json.loads(json.dumps(value))
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
            self.changed = True

    def summarize(self, *, missing: bool = False, **fields: Any) -> None:
        """Update the fields given of study NAME's small summary (user attr ``summary``),
        keeping the others (:class:`~lrsearch.store.StudySummary`); with ``missing``, only
        those it does not hold yet."""
        search = self.study("search")
        current = dict(search.user_attrs.get(ATTR_SUMMARY) or {})
        new = StudySummary(**fields).to_dict()
        self.derive(search, ATTR_SUMMARY, (new | current) if missing else (current | new))

    def work(
        self, stage: Stage, plan: Plan, *, deadline: float | None = None, wait: bool = True
    ) -> None:
        """Run ``stage``'s units as this worker (see :func:`lrsearch.pipeline.queue.work`)."""
        work(
            stage,
            plan,
            lock=self.lock,
            worker=self.worker,
            progress=self.progress,
            poll=self.poll,
            deadline=deadline,
            wait=wait,
        )

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """``maximize`` or ``minimize``: the task's metric direction."""
        return "maximize" if self.task.maximize else "minimize"

    @property
    def poll(self) -> float:
        """Seconds between looks at the queue while other workers finish a stage."""
        return float(np.clip(self.grace_period / 10, 0.2, 2.0))

    @property
    def search_train(self) -> Data:
        """The part of ``train`` the search trials train on."""
        return subset(self.task.train, self.fit_idx)

    @functools.cached_property
    def plateau_split(self) -> tuple[Data, Data]:
        """What a ``plateau`` search trial fits on and watches: the search-train split, split
        again (:func:`lrsearch.splits.watch_split`), so it is scored on ``validation`` without
        watching it, as the final comparison scores it on ``test``."""
        fit, watched = watch_split(
            self.task, self.fit_idx, self.cfg.validation_fraction, self.cfg.seed
        )
        return subset(self.task.train, fit), subset(self.task.train, watched)

    @property
    def validation(self) -> Data:
        """The part of ``train`` the search trials are scored on."""
        return subset(self.task.train, self.val_idx)

    def study(self, stage: str) -> optuna.Study:
        """The Optuna study of ``stage`` (an attribute of :class:`StudyNames`), created on first
        use with the task's direction."""
        name = getattr(self.names, stage)
        if name not in self._studies:
            self._studies[name] = optuna.create_study(
                study_name=name,
                storage=self.store,
                direction=self.direction,
                load_if_exists=True,
                pruner=optuna.pruners.NopPruner(),
            )
        return self._studies[name]
