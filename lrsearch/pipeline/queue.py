"""Units of work on Optuna's queue: enqueue what is missing, claim the next one, wait for the
rest.

Every unit of a stage is a trial of that stage's study carrying a key (user attr ``unit``).
:func:`work` makes sure a stage is done: under a storage-wide lock (:class:`StorageLock`) it
fails the trials of dead workers (Optuna's heartbeat; ``RetryHeartbeatStaleTrialCallback``
enqueues them again), enqueues the next missing unit with ``enqueue_trial`` and lets
``study.optimize(n_trials=1)`` pop it; the objective releases the lock as its first act, so the
lock covers the pop and nothing of the training. Holding it for the pop means two workers never
claim one unit (SQLite's pop is not atomic between processes) and ``optimize`` never finds the
queue drained and starts a trial that is no unit. A worker with nothing left to claim waits for
the units other workers are running; when they finish, or go stale, the stage is done.

A :class:`Plan` says which units a stage needs and when it is done; it is a pure function of
the stage's stored trials, so every worker reaches the same answer.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from lrsearch.exceptions import LrsearchError
from lrsearch.store import (
    FINISHED,
    OPTUNA_FAIL_REASON,
    STEPS,
    TRAIN_SECONDS,
    UNIT,
    WORKER,
    StorageLock,
    first_done,
    unit_key,
)
from lrsearch.training import clock

__all__ = ["MAX_FAILURES", "KeyedPlan", "Plan", "Stage", "Unit", "UnitError", "work"]

_log = logging.getLogger(__name__)


class UnitError(LrsearchError):
    """A unit's own code (the task's model, loss, metric or data) raised: the unit is marked
    failed and the stage stops; running the study again resumes it."""


class _QuietUnitErrors(logging.Filter):
    """Drop Optuna's two log lines on a trial failed by a :class:`UnitError` (the traceback,
    then ``Trial N failed with value None.``): the one-line error already says it, and
    ``--debug`` shows the traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and isinstance(record.exc_info[1], UnitError):
            self.quiet.add(message.split(" failed with", 1)[0])  # "Trial N"
            return False
        head = message.split(" failed with value", 1)[0]
        if head in self.quiet:
            self.quiet.discard(head)
            return False
        return True


logging.getLogger("optuna.study._optimize").addFilter(_QuietUnitErrors())

#: Failed trials of one unit (errors or dead workers) after which a stage gives up.
MAX_FAILURES = 4

Progress = Callable[[str, int, int], None]


@dataclasses.dataclass(frozen=True)
class Unit:
    """One unit of work: its key, the params it is enqueued with, and what it needs to know.

    Attributes:
        key: Unique within its stage; stored as user attr ``unit``.
        params: Fixed params (``enqueue_trial``), e.g. ``{"lr": 0.1}``.
        user_attrs: Further user attrs the objective reads (e.g. the arm and seed).
    """

    key: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    user_attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Plan(Protocol):
    """What a stage needs, read from its trials (every worker computes the same)."""

    def progress(self, trials: Sequence[FrozenTrial]) -> tuple[int, int]:
        """Units done and units needed."""
        ...

    def is_done(self, trials: Sequence[FrozenTrial]) -> bool:
        """Whether the stage has all it needs."""
        ...

    def next_unit(self, trials: Sequence[FrozenTrial]) -> Unit | None:
        """A unit to enqueue when none is waiting (``None``: the rest are running)."""
        ...


@dataclasses.dataclass(frozen=True)
class KeyedPlan:
    """A fixed set of units; the stage is done when each has a trial in ``done_states``.

    A unit whose trials failed :data:`MAX_FAILURES` times stops the stage with an error
    instead of being run forever.
    """

    units: Sequence[Unit]
    done_states: tuple[TrialState, ...] = (TrialState.COMPLETE,)

    def _done(self, trials: Sequence[FrozenTrial]) -> dict[str, FrozenTrial]:
        return first_done(trials, self.done_states)

    def progress(self, trials: Sequence[FrozenTrial]) -> tuple[int, int]:
        done = self._done(trials)
        return sum(u.key in done for u in self.units), len(self.units)

    def is_done(self, trials: Sequence[FrozenTrial]) -> bool:
        done = self._done(trials)
        return all(u.key in done for u in self.units)

    def next_unit(self, trials: Sequence[FrozenTrial]) -> Unit | None:
        done = self._done(trials)
        live = {unit_key(t) for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)}
        for unit in self.units:
            if unit.key in done or unit.key in live:
                continue
            failed = [t for t in trials if unit_key(t) == unit.key and t.state == TrialState.FAIL]
            if len(failed) >= MAX_FAILURES:
                reason = failed[-1].system_attrs.get(OPTUNA_FAIL_REASON, "its worker died")
                raise LrsearchError(
                    f"unit {unit.key!r} failed {len(failed)} times; last: {reason}"
                )
            return unit
        return None


@dataclasses.dataclass
class Stage:
    """A stage's study and how to run one of its units.

    Attributes:
        name: The stage (``range_test``, ``search``, ... as in :data:`lrsearch.store.STAGES`).
        label: Its name on progress bars.
        study: The Optuna study its units live in.
        objective: Runs the unit a trial is (its key in ``trial.user_attrs["unit"]``).
        storage: The study's storage (where heartbeats are recorded).
        sampler: The sampler for the trial with a given number (per-trial seeds: workers
            draw different values, and a resumed study does not replay its draws).
    """

    name: str
    label: str
    study: optuna.Study
    objective: Callable[[optuna.Trial], float]
    storage: RDBStorage
    sampler: Callable[[int], optuna.samplers.BaseSampler] | None = None


class Worker(Protocol):
    """The process running units: its id, stored as user attr ``worker`` on each unit."""

    @property
    def id(self) -> str: ...


class _Turn(enum.Enum):
    """What a worker does after its turn with the lock."""

    RAN = "ran"  # it ran a unit: look again at once
    WAIT = "wait"  # other workers run the last units: look again after a poll
    OVER = "over"  # the stage is done, or done with this worker


def work(
    stage: Stage,
    plan: Plan,
    *,
    lock: StorageLock,
    worker: Worker,
    progress: Progress,
    poll: float,
    deadline: float | None = None,
    wait: bool = True,
    stale_check: float | None = None,
) -> None:
    """Run units of ``stage`` until ``plan`` says it is done.

    Args:
        stage: The stage.
        plan: Its units.
        lock: The study's storage lock (held only to look at the queue and pop from it).
        worker: This process.
        progress: Called as ``progress(label, done, total)``.
        poll: Seconds between looks at the queue while other workers run the last units.
        deadline: ``time.monotonic()`` after which this worker claims nothing more; the stage
            then ends for it as soon as none of its units is running.
        wait: ``False``: return as soon as there is nothing left to claim, without waiting for
            the units other workers are running (to help with a stage, then go on to another
            that does not depend on it).
        stale_check: Seconds between looks for the units of dead workers while waiting
            (default: five polls).

    Raises:
        LrsearchError: A unit failed too often.
    """
    stale_check = 5 * poll if stale_check is None else stale_check
    study = stage.study
    checked = -math.inf  # when this worker last looked for dead workers' units
    while True:
        # Look without the lock first: a worker waiting for the units others run takes the
        # lock only to claim, or every few polls to look for units of dead workers; with many
        # waiting workers a lock taken on every poll would be busy all the time.
        trials = study.get_trials(deepcopy=False)
        open_for_work = _open_for_work(deadline)
        done = plan.is_done(trials)
        claimable = not done and open_for_work and _claimable(plan, trials)
        running = any(t.state == TrialState.RUNNING for t in trials)
        if done or (not claimable and (not wait or not running or not open_for_work)):
            progress(stage.label, *plan.progress(trials))
            if done or not wait or not open_for_work:
                return
        elif not claimable and time.monotonic() - checked < stale_check:
            progress(stage.label, *plan.progress(trials))
            time.sleep(poll)
            continue
        with lock:
            checked = time.monotonic()
            turn = _take_turn(
                stage,
                plan,
                lock=lock,
                worker=worker,
                progress=progress,
                deadline=deadline,
                wait=wait,
            )
        if turn is _Turn.OVER:
            return
        if turn is _Turn.WAIT:
            time.sleep(poll)


def _open_for_work(deadline: float | None) -> bool:
    return deadline is None or time.monotonic() < deadline


def _claimable(plan: Plan, trials: Sequence[FrozenTrial]) -> bool:
    """Whether a unit is waiting, or the plan has one to enqueue."""
    return any(t.state == TrialState.WAITING for t in trials) or plan.next_unit(trials) is not None


def _take_turn(
    stage: Stage,
    plan: Plan,
    *,
    lock: StorageLock,
    worker: Worker,
    progress: Progress,
    deadline: float | None,
    wait: bool,
) -> _Turn:
    """Holding ``lock``: fail the units of dead workers, then claim and run the next unit
    (enqueued first if none is waiting), or say why there is none to run.

    Raises:
        LrsearchError: Nothing to run, none running, and the stage is not done.
    """
    study = stage.study
    with warnings.catch_warnings():
        # Optuna calls its heartbeat API experimental; lrsearch relies on it on purpose.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    _fail_unclaimed(study)
    trials = study.get_trials(deepcopy=False)
    progress(stage.label, *plan.progress(trials))
    if plan.is_done(trials):
        return _Turn.OVER
    open_for_work = _open_for_work(deadline)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    if open_for_work and not waiting:
        unit = plan.next_unit(trials)
        if unit is not None:
            study.enqueue_trial(dict(unit.params), user_attrs=_attrs(unit))
            waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if open_for_work and waiting:
        _run_next(stage, min(t.number for t in waiting), lock, worker)
        return _Turn.RAN
    if not wait:
        return _Turn.OVER
    if not any(t.state == TrialState.RUNNING for t in trials):
        if not open_for_work:
            return _Turn.OVER
        raise LrsearchError(f"stage {stage.label!r} has nothing to run and is not done")
    return _Turn.WAIT


def _fail_unclaimed(study: optuna.Study) -> None:
    """Fail the RUNNING units that no worker finished claiming (called holding the lock).

    A claimer writes its heartbeat and its name before it releases the lock; so, with the lock
    held, a RUNNING trial without a worker belongs to a process that died between Optuna's pop
    and that write. Optuna's heartbeat cannot see it (no heartbeat was ever recorded), and it
    would stay RUNNING forever; the plans enqueue its unit again.
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if WORKER not in trial.user_attrs:
            _log.warning("unit %s was never claimed to the end: failed", unit_key(trial))
            study.tell(trial.number, state=TrialState.FAIL)


def _attrs(unit: Unit) -> dict[str, Any]:
    return {**unit.user_attrs, UNIT: unit.key}


def _run_next(stage: Stage, number: int, lock: StorageLock, worker: Worker) -> None:
    """Pop the lowest waiting trial (number ``number``) through ``optimize`` and run it."""

    def objective(trial: optuna.Trial) -> float:
        # Claimed: record a heartbeat and who claims it *before* letting go of the lock. Optuna
        # never declares stale a RUNNING trial that has no heartbeat yet; with this order a
        # RUNNING unit without a worker can only be one whose claimer died holding the lock.
        storage = stage.storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(stage.study.study_name), trial.number
        )
        storage.record_heartbeat(trial_id)
        trial.set_user_attr(WORKER, worker.id)
        lock.release()  # the training runs without the lock
        with clock() as inside:
            try:
                return stage.objective(trial)
            except (optuna.TrialPruned, LrsearchError):
                raise
            except Exception as exc:  # the task's code: one line, not Optuna's traceback
                cause = " ".join(str(exc).split())
                key = trial.user_attrs.get(UNIT)
                raise UnitError(
                    f"{stage.label} unit {key!r} (trial {trial.number} of study "
                    f"{stage.study.study_name!r}) failed: {type(exc).__name__}: {cause}; it is "
                    "marked failed, and running the study again resumes it (--debug shows the "
                    "traceback)"
                ) from exc
            finally:
                # A unit that ran to an end in its worker (done, pruned or raised) carries its
                # time and its optimizer steps; one whose worker was killed does not, and is not
                # counted as work done.
                trial.set_user_attr(TRAIN_SECONDS, inside.seconds)
                trial.set_user_attr(STEPS, inside.steps)

    if stage.sampler is not None:
        stage.study.sampler = stage.sampler(number)
    try:
        stage.study.optimize(objective, n_trials=1)
    finally:
        lock.release()


def done_trials(
    study: optuna.Study, states: tuple[TrialState, ...] = FINISHED
) -> dict[str, FrozenTrial]:
    """The first finished trial per unit key of ``study``."""
    return first_done(study.get_trials(deepcopy=False), states)
