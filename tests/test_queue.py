"""Tests for lrsearch/pipeline/queue.py (units on Optuna's queue) and the search's budget plan
(lrsearch/pipeline/search.py), with toy objectives: no training."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from lrsearch.exceptions import LrsearchError
from lrsearch.pipeline.queue import MAX_FAILURES, KeyedPlan, Stage, Unit, work
from lrsearch.pipeline.search import BudgetPlan
from lrsearch.store import SEEDED, UNIT, WORKER, StorageLock, open_storage, unit_key


class Worker:
    """A stand-in for the run log: an id."""

    def __init__(self, name: str) -> None:
        self.id = name


def _trial(key: str | None, state: TrialState, **attrs: object) -> optuna.trial.FrozenTrial:
    value = 1.0 if state == TrialState.COMPLETE else None
    user_attrs = dict(attrs) | ({UNIT: key} if key else {})
    return optuna.trial.create_trial(state=state, value=value, user_attrs=user_attrs)


# --- plans --------------------------------------------------------------------------------------


def test_a_keyed_plan_enqueues_missing_units_in_order_and_knows_when_it_is_done() -> None:
    plan = KeyedPlan([Unit("a"), Unit("b"), Unit("c")])
    assert plan.next_unit([]) == Unit("a")
    trials = [_trial("a", TrialState.COMPLETE), _trial("b", TrialState.RUNNING)]
    assert plan.next_unit(trials) == Unit("c")  # b is someone else's right now
    assert plan.progress(trials) == (1, 3) and not plan.is_done(trials)
    trials += [_trial("c", TrialState.WAITING)]
    assert plan.next_unit(trials) is None
    trials += [_trial("b", TrialState.COMPLETE), _trial("c", TrialState.COMPLETE)]
    assert plan.is_done(trials) and plan.progress(trials) == (3, 3)
    # A pruned unit is done only where the plan says pruned is a result.
    pruned = [_trial("a", TrialState.PRUNED)]
    assert not KeyedPlan([Unit("a")]).is_done(pruned)
    assert KeyedPlan([Unit("a")], (TrialState.COMPLETE, TrialState.PRUNED)).is_done(pruned)


def test_a_unit_that_keeps_failing_stops_the_stage() -> None:
    plan = KeyedPlan([Unit("a")])
    failed = [_trial("a", TrialState.FAIL) for _ in range(MAX_FAILURES - 1)]
    assert plan.next_unit(failed) == Unit("a")  # retried
    with pytest.raises(LrsearchError, match=f"unit 'a' failed {MAX_FAILURES} times"):
        plan.next_unit([*failed, _trial("a", TrialState.FAIL)])


def test_the_budget_plan_runs_the_seeds_first_then_samples_up_to_the_budget() -> None:
    seeds = [{"schedule": "constant", "max_lr": 0.1}, {"schedule": "constant", "max_lr": 0.2}]
    plan = BudgetPlan(4, seeds)
    first = plan.next_unit([])
    assert first == Unit("seed/0", params=seeds[0], user_attrs={SEEDED: True})
    trials = [_trial("seed/0", TrialState.COMPLETE), _trial("seed/1", TrialState.FAIL)]
    assert plan.next_unit(trials) == Unit("seed/1", params=seeds[1], user_attrs={SEEDED: True})
    trials[1] = _trial("seed/1", TrialState.PRUNED)
    unit = plan.next_unit(trials)
    assert unit is not None and unit.key.startswith("sample/") and not unit.params
    # Running and waiting trials count against the budget: never more than n_trials.
    trials += [_trial("sample/2", TrialState.RUNNING), _trial(None, TrialState.WAITING)]
    assert plan.next_unit(trials) is None
    assert plan.progress(trials) == (2, 4) and not plan.is_done(trials)
    # A trial enqueued by hand (no key) counts like any other; more than the budget is done.
    done = [_trial(None, TrialState.COMPLETE) for _ in range(5)]
    assert plan.is_done(done) and plan.progress(done) == (4, 4)
    # A budget below the seeds runs only as many seeds as it has room for.
    assert BudgetPlan(1, seeds).next_unit([_trial("seed/0", TrialState.COMPLETE)]) is None


# --- work() on a real storage, several workers at once ---------------------------------------


def _work(
    stage: Stage, plan: KeyedPlan, lock: StorageLock, worker: Worker, **options: Any
) -> None:
    """``work`` with no progress to show and a quick poll unless ``options`` say otherwise."""
    work(
        stage, plan, lock=lock, worker=worker, progress=lambda *a: None, **{"poll": 0.05} | options
    )


def _stage(url: str, worker: Worker, ran: list[str], delay: float) -> tuple[Stage, StorageLock]:
    store = open_storage(url, heartbeat_interval=1, grace_period=30)
    study = optuna.create_study(study_name="q", storage=store, load_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        key = trial.user_attrs[UNIT]
        x = trial.suggest_float("x", 0.0, 20.0)
        time.sleep(delay)
        ran.append(key)
        return x

    return Stage("toy", "toy", study, objective, store), StorageLock(store.engine, "study:q")


def test_workers_in_threads_share_the_units_and_run_each_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    units = [Unit(f"u{i}", params={"x": float(i)}) for i in range(12)]
    ran: list[str] = []
    workers = [Worker(f"w{i}") for i in range(3)]
    errors: list[BaseException] = []

    def run(worker: Worker) -> None:
        try:
            stage, lock = _stage(url, worker, ran, delay=0.02)
            _work(stage, KeyedPlan(units), lock, worker)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(ran) == sorted(u.key for u in units)  # each unit exactly once
    study = optuna.load_study(study_name="q", storage=url)
    trials = study.get_trials()
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert {unit_key(t): t.params["x"] for t in trials} == {u.key: u.params["x"] for u in units}
    assert {t.user_attrs[WORKER] for t in trials} <= {w.id for w in workers}
    # Every worker returned only when all units were done, whoever ran them.
    assert KeyedPlan(units).is_done(trials)


def test_a_waiting_retry_of_a_dead_workers_unit_is_run_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    ran: list[str] = []
    stage, lock = _stage(url, Worker("w"), ran, delay=0.0)
    # What RetryHeartbeatStaleTrialCallback leaves: a WAITING copy with the unit's key.
    stage.study.enqueue_trial({"x": 5.0}, user_attrs={UNIT: "b"})
    _work(
        stage,
        KeyedPlan([Unit("a", params={"x": 1.0}), Unit("b", params={"x": 2.0})]),
        lock,
        Worker("w"),
    )
    assert ran == ["b", "a"]
    assert [t.params["x"] for t in stage.study.get_trials()] == [5.0, 1.0]


def test_past_its_deadline_a_worker_claims_nothing_and_returns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    ran: list[str] = []
    stage, lock = _stage(url, Worker("w"), ran, delay=0.0)
    _work(stage, KeyedPlan([Unit("a")]), lock, Worker("w"), deadline=time.monotonic() - 1)
    assert ran == [] and stage.study.get_trials() == []


def test_progress_reports_the_stored_units(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    seen: list[tuple[str, int, int]] = []
    stage, lock = _stage(url, Worker("w"), [], delay=0.0)
    plan = KeyedPlan([Unit("a"), Unit("b")])
    work(stage, plan, lock=lock, worker=Worker("w"), progress=lambda *a: seen.append(a), poll=0.05)
    assert seen[0] == ("toy", 0, 2) and seen[-1] == ("toy", 2, 2)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_unit_whose_claimer_died_before_its_first_heartbeat_is_run_again(
    tmp_path: Path,
) -> None:
    # Popped (RUNNING) but no heartbeat and no worker written: Optuna's staleness check never
    # sees such a trial; holding the lock, the queue knows its claimer is gone.
    url = f"sqlite:///{tmp_path}/q.db"
    ran: list[str] = []
    stage, lock = _stage(url, Worker("w"), ran, delay=0.0)
    orphan = stage.study.ask()
    orphan.set_user_attr(UNIT, "a")
    _work(stage, KeyedPlan([Unit("a", params={"x": 1.0})]), lock, Worker("w"))
    assert ran == ["a"]
    assert [t.state for t in stage.study.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE]


def test_a_claimed_unit_has_its_heartbeat_and_worker_before_it_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    seen: list[tuple[bool, str]] = []
    stage, lock = _stage(url, Worker("w"), [], delay=0.0)
    inner = stage.objective

    def objective(trial: optuna.Trial) -> float:
        # While it runs, other workers may look at the queue: the lock is free.
        seen.append((lock.held, trial.user_attrs[WORKER]))
        return inner(trial)

    stage.objective = objective
    _work(stage, KeyedPlan([Unit("a", params={"x": 1.0})]), lock, Worker("me"))
    assert seen == [(False, "me")]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_without_waiting_a_worker_runs_what_is_free_and_leaves_the_rest_to_others(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    ran: list[str] = []
    stage, lock = _stage(url, Worker("me"), ran, delay=0.0)
    # Unit "a" is another (live) worker's: claimed, named, RUNNING.
    theirs = stage.study.ask()
    theirs.set_user_attr(UNIT, "a")
    theirs.set_user_attr(WORKER, "someone else")
    plan = KeyedPlan([Unit("a", params={"x": 1.0}), Unit("b", params={"x": 2.0})])
    _work(stage, plan, lock, Worker("me"), wait=False)
    assert ran == ["b"]  # it ran what was free and returned, "a" still running elsewhere
    states = {unit_key(t): t.state for t in stage.study.get_trials()}
    assert states == {"a": TrialState.RUNNING, "b": TrialState.COMPLETE}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_waiting_worker_looks_without_the_lock_and_takes_it_only_now_and_then(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    stage, lock = _stage(url, Worker("me"), [], delay=0.0)
    taken: list[float] = []
    acquire = lock.acquire

    def counting() -> None:
        taken.append(time.monotonic())
        acquire()

    lock.acquire = counting  # type: ignore[method-assign]
    theirs = stage.study.ask()  # another live worker's unit
    theirs.set_user_attr(UNIT, "a")
    theirs.set_user_attr(WORKER, "someone else")
    finisher = threading.Timer(1.0, lambda: stage.study.tell(theirs, 1.0))
    finisher.start()
    began = time.monotonic()
    _work(stage, KeyedPlan([Unit("a")]), lock, Worker("me"), poll=0.02, stale_check=0.4)
    finisher.join()
    assert time.monotonic() - began >= 1.0  # it waited for the other worker's unit
    # About fifty polls; the lock only for the first look and one stale check per 0.4 s.
    assert 1 <= len(taken) <= 4, len(taken)
