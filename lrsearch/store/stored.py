"""Reading a stored study: its Optuna studies, its units, its history and its timings.

Nothing here trains or writes. Units are trials carrying a key (user attr ``unit``); when a
unit ran twice by accident (a worker declared dead that was only slow), readers take the first
trial that finished, by completion time, so a result is read once and never changes later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import optuna
import pandas as pd
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from lrsearch.config import check_study_name
from lrsearch.exceptions import LrsearchError
from lrsearch.store.names import (
    ATTR_BASELINE,
    ATTR_COMPARISON,
    ATTR_CONFIG,
    ATTR_STEPS_PER_EPOCH,
    ATTR_SUMMARY,
    ATTR_TASK,
    RUN_PREFIX,
    RUN_RECORD,
    TRAIN_SECONDS,
    UNIT,
    WORKER,
    StudyNames,
)
from lrsearch.store.records import RunRecord, StageTime, Timings
from lrsearch.store.storage import DEFAULT_STORAGE, mask_url, open_storage

__all__ = [
    "FINISHED",
    "RUN_INPUTS",
    "STAGES",
    "StoredStudy",
    "first_done",
    "history",
    "list_studies",
    "load_stored",
    "ran_to_end",
    "run_records",
    "same_params",
    "timings",
    "top_trials",
    "trial_states",
    "unit_key",
]

#: The states in which a trial counts as done (a pruned search trial is a result too).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

#: The pipeline's stages in order, by the attribute of :class:`StudyNames` naming their study.
STAGES = (
    "range_test",
    "search",
    "constant_cv",
    "adam",
    "prodigy",
    "schedule_free_adamw",
    "finalists",
    "final",
    "bounds",
)


#: What a run's trial of ``NAME/runs`` records it was made with; the latest run's is the
#: study's (``StoredStudy.attrs``).
RUN_INPUTS = (ATTR_CONFIG, ATTR_TASK, ATTR_STEPS_PER_EPOCH, ATTR_BASELINE)


def unit_key(trial: FrozenTrial) -> str | None:
    """The unit a trial is, or ``None`` for a trial that is not a keyed unit."""
    key = trial.user_attrs.get(UNIT)
    return key if isinstance(key, str) else None


def _completed_at(trial: FrozenTrial) -> tuple[datetime.datetime, int]:
    return (trial.datetime_complete or datetime.datetime.max, trial.number)


def first_done(
    trials: Iterable[FrozenTrial], states: tuple[TrialState, ...] = (TrialState.COMPLETE,)
) -> dict[str, FrozenTrial]:
    """The first trial to finish in one of ``states``, per unit key.

    Example:
        >>> import optuna
        >>> a = optuna.trial.create_trial(value=1.0, user_attrs={"unit": "k"})
        >>> first_done([a])["k"].value
        1.0
    """
    out: dict[str, FrozenTrial] = {}
    for trial in sorted((t for t in trials if t.state in states), key=_completed_at):
        key = unit_key(trial)
        if key is not None and key not in out:
            out[key] = trial
    return out


def trial_states(study: optuna.Study) -> dict[str, int]:
    """How many trials of ``study`` are in each state, by state name (``COMPLETE``, ...)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


@dataclasses.dataclass(frozen=True)
class StoredStudy:
    """Study NAME as stored, with the studies of its stages where they exist (read-only).

    Attributes:
        name: The study name.
        storage: The storage URL, password masked.
        search: Optuna study NAME (the search trials and the study's user attrs).
        stages: The Optuna study of each stage that exists, by stage (see :data:`STAGES`).
    """

    name: str
    storage: str
    search: optuna.Study
    stages: Mapping[str, optuna.Study]

    @property
    def constant_cv(self) -> optuna.Study | None:
        """Study ``NAME/constant-cv``, or ``None``."""
        return self.stages.get("constant_cv")

    @property
    def adam(self) -> optuna.Study | None:
        """Study ``NAME/adam-3e-4``, or ``None``."""
        return self.stages.get("adam")

    @functools.cached_property
    def attrs(self) -> dict[str, Any]:
        """What the study was made with and found, by attr name: the search study's user attrs
        (its summary; in a study stored by 0.1.0, every record), with the config, task, steps
        per epoch and baseline of the latest run that recorded them (:data:`RUN_INPUTS`)."""
        out = dict(self.search.user_attrs)
        for trial in sorted(self.trials("runs"), key=lambda t: t.number):
            out |= {k: v for k, v in trial.user_attrs.items() if k in RUN_INPUTS}
        return out

    def trials(self, stage: str) -> list[FrozenTrial]:
        """All trials of ``stage``'s study (none when it does not exist)."""
        study = self.stages.get(stage)
        return [] if study is None else study.get_trials(deepcopy=False)


def load_stored(
    name: str, *, storage: str | None = None, store: RDBStorage | None = None
) -> StoredStudy:
    """Open study NAME and the studies of its stages without running or creating anything.

    Args:
        name: The study name.
        storage: Its storage URL (default ``sqlite:///studies/lrsearch.db``).
        store: An open storage to use instead of opening ``storage``.

    Raises:
        InvalidParameterError: ``name`` is not a valid study name.
        LrsearchError: No database, or no study NAME in it.
    """
    check_study_name(name)
    if store is None:
        store = open_storage(storage, create=False)
    url = mask_url(storage or DEFAULT_STORAGE)
    names = StudyNames(name)
    try:
        search = optuna.load_study(study_name=name, storage=store)
    except KeyError:
        raise LrsearchError(f"no study {name!r} in {url}") from None
    stages: dict[str, optuna.Study] = {"search": search}
    for stage in (*STAGES, "runs"):
        if stage == "search":
            continue
        with contextlib.suppress(KeyError):  # a stage not reached yet
            stages[stage] = optuna.load_study(study_name=getattr(names, stage), storage=store)
    return StoredStudy(name, url, search, stages)


def run_records(stored: StoredStudy) -> list[RunRecord]:
    """Every ``lrsearch run`` invocation recorded on the study, oldest first, as stored: one
    trial each of ``NAME/runs`` (a study stored by 0.1.0: user attrs ``run:...`` of NAME)."""
    values = [t.user_attrs.get(RUN_RECORD) for t in stored.trials("runs")]
    values += [v for k, v in stored.search.user_attrs.items() if k.startswith(RUN_PREFIX)]
    records = [RunRecord.from_dict(v) for v in values if isinstance(v, Mapping)]
    return sorted(records, key=lambda r: (r.started, r.host, r.pid))


def ran_to_end(trial: FrozenTrial) -> bool:
    """Whether a unit ran to an end in its worker (done, pruned, or raised): it carries its
    time. One whose worker was killed mid-unit does not; its "duration" would be the wait until
    it was declared dead."""
    return trial.state.is_finished() and TRAIN_SECONDS in trial.user_attrs


def history(stored: StoredStudy) -> list[RunRecord]:
    """Every ``lrsearch run`` on the study, oldest first, with the units each ran per stage
    (counted from the units: a killed run's finished units count, its unit in flight not)."""
    counts: dict[str, dict[str, int]] = {}
    for stage in STAGES:
        for trial in stored.trials(stage):
            worker = trial.user_attrs.get(WORKER)
            if isinstance(worker, str) and ran_to_end(trial):
                mine = counts.setdefault(worker, {})
                mine[stage] = mine.get(stage, 0) + 1
    return [dataclasses.replace(r, units=counts.get(r.worker, {})) for r in run_records(stored)]


def _iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _seconds(trial: FrozenTrial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def timings(stored: StoredStudy) -> Timings:
    """Seconds per stage, inside training and wall, summed over the units that ran.

    Derived from the trials, not from the process that reads them: the same numbers whichever
    worker ran a unit, and however often the study was resumed.
    """
    stages: dict[str, StageTime] = {}
    starts: list[datetime.datetime] = []
    ends: list[datetime.datetime] = []
    for stage in STAGES:
        ran = [t for t in stored.trials(stage) if ran_to_end(t)]
        seconds = sum(_seconds(t) for t in ran)
        train = sum(float(t.user_attrs.get(TRAIN_SECONDS, 0.0)) for t in ran)
        first = min((t.datetime_start for t in ran), default=None)  # type: ignore[type-var]
        last = max((t.datetime_complete for t in ran), default=None)  # type: ignore[type-var]
        if first is not None and last is not None:
            starts.append(first)
            ends.append(last)
        stages[stage] = StageTime(len(ran), seconds, train, _iso(first), _iso(last))
    wall = (max(ends) - min(starts)).total_seconds() if starts else 0.0
    return Timings(stages, wall)


def list_studies(storage: str | None = None) -> pd.DataFrame:
    """One row per lrsearch study in ``storage`` (its stage studies folded in): progress of
    each stage, the best value, workers seen and the last activity.

    Columns: ``study``, ``direction``, ``search`` (finished/budget), ``running`` (units
    running now, all stages), ``range test``, ``constant-cv``, ``finalists``, ``final runs``
    (units done), ``comparison`` (stored or not), ``best value``, ``workers`` (``lrsearch run``
    invocations seen), ``unfinished`` (of those, ended without saying so: killed or still
    running), ``last activity`` (UTC). A study that lrsearch did not make gets one row with
    what applies.

    Raises:
        LrsearchError: The storage cannot be opened (a missing SQLite file is not created).
    """
    store = open_storage(storage, create=False)
    try:
        summaries = optuna.get_all_study_summaries(store, include_best_trial=True)
        by_name = {s.study_name: s for s in summaries}
        owners = sorted({StudyNames.owner(s.study_name) for s in summaries})
        rows = []
        for owner in owners:
            summary = by_name.get(owner)
            if summary is None:  # stage studies left without their search study
                continue
            stored = load_stored(owner, store=store)
            rows.append(_summary_row(stored, summary))
        return pd.DataFrame(rows)
    finally:
        store.engine.dispose()


def _summary_row(stored: StoredStudy, summary: optuna.study.StudySummary) -> dict[str, Any]:
    attrs = stored.attrs
    budget = attrs.get(ATTR_CONFIG, {}).get("n_trials")
    search = stored.trials("search")
    finished = sum(t.state in FINISHED for t in search)
    running = sum(t.state == TrialState.RUNNING for stage in STAGES for t in stored.trials(stage))

    def done(stage: str) -> int:
        return len(first_done(stored.trials(stage), FINISHED))

    runs = run_records(stored)
    seen = [r.ended or r.last_seen or r.started for r in runs]
    best = summary.best_trial
    return {
        "study": stored.name,
        "direction": summary.direction.name.lower(),
        "search": f"{finished}/{budget}" if budget else str(finished),
        "running": running,
        "range test": done("range_test") > 0,
        "constant-cv": done("constant_cv"),
        "finalists": done("finalists"),
        "final runs": done("final"),
        "comparison": "test" in attrs.get(ATTR_SUMMARY, {}) or ATTR_COMPARISON in attrs,
        "best value": None if best is None else best.value,
        "workers": len(runs),
        "unfinished": sum(not r.finished() for r in runs),
        "last activity": max(seen) if seen else None,
    }


def same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two trials' params are the same (floats equal to 12 significant digits).

    Example:
        >>> same_params({"lr": 0.1}, {"lr": 0.1 + 1e-15}), same_params({"lr": 0.1}, {"lr": 0.2})
        (True, False)
    """
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, float) or isinstance(other, float):
            if not math.isclose(float(value), float(other), rel_tol=1e-12):
                return False
        elif value != other:
            return False
    return True


def top_trials(study: optuna.Study, n: int = 5) -> list[FrozenTrial]:
    """The ``n`` best completed search trials, best first, one per distinct set of params
    (ties: the earlier trial first)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    ranked = sorted(complete, key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]
    out: list[FrozenTrial] = []
    for trial in ranked:
        if all(not same_params(trial.params, t.params) for t in out):
            out.append(trial)
        if len(out) == n:
            break
    return out
