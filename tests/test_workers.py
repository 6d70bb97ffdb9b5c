"""Many workers, one study (lrsearch/pipeline/queue.py and run.py), against real servers.

`lrsearch run` started as several processes on one PostgreSQL, MariaDB or SQLite storage, with
baselines on, must give the study one process would: the budget exactly, one unit per key, the
same printed table in every worker. A worker killed with SIGKILL in any stage, then the command
again, must leave one correct study: budget met, nothing running, no unit read twice, finished
units reused, the killed run in the history as not finished. ``--fresh`` refuses while a worker
is live. The servers run on the development and CI machines; a fixture that cannot reach one
fails the test, it never skips it.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from optuna.trial import FrozenTrial, TrialState

from lrsearch.cli import cli
from lrsearch.pipeline import bounds as _bounds
from lrsearch.pipeline import load_result
from lrsearch.pipeline.arms import grid_key, healed_grid
from lrsearch.pipeline.comparison import arm_key, final_seeds, make_arms
from lrsearch.pipeline.cost import cost_of
from lrsearch.space import LRBounds
from lrsearch.store import (
    FINISHED,
    STAGES,
    TRAIN_SECONDS,
    StoredStudy,
    first_done,
    history,
    load_stored,
    open_storage,
    timings,
    unit_key,
)

TESTS = Path(__file__).resolve().parent
LRSEARCH = str(Path(sys.executable).with_name("lrsearch"))
LIVE = (TrialState.RUNNING, TrialState.WAITING)

# A task module in the worker's working directory, imported without PYTHONPATH. It sleeps on
# every forward pass when LRSEARCH_TEST_DELAY is set, so a worker is mid-unit when killed.
TASK_MODULE = f"""
import os
import sys

sys.path.insert(0, {str(TESTS)!r})
import tiny_task


def make_task():
    delay = float(os.environ.get("LRSEARCH_TEST_DELAY") or 0)
    return tiny_task.slow_task(delay) if delay else tiny_task.task()
"""


@dataclasses.dataclass(frozen=True)
class Setup:
    """A working directory with ``workertask.py`` and ``studies/w.toml``."""

    cwd: Path
    n_trials: int = 8
    cv_grid: int = 3
    finalists: int = 2
    final_seeds: int = 2


def _setup(tmp_path: Path, *, grace: int, range_test: str = "num_iter = 20") -> Setup:
    setup = Setup(tmp_path)
    (tmp_path / "workertask.py").write_text(TASK_MODULE)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "w.toml").write_text(
        textwrap.dedent(
            f"""
            task = "workertask:make_task"
            n_trials = {setup.n_trials}
            epochs = 2
            cv_folds = 2
            cv_grid = {setup.cv_grid}
            finalists = {setup.finalists}
            final_seeds = {setup.final_seeds}
            threads = 1
            device = "cpu"
            heartbeat_interval = 1
            grace_period = {grace}

            [range_test]
            {range_test}
            """
        )
    )
    return setup


def _start(setup: Setup, url: str, log: Path, *, delay: float = 0.0) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["LRSEARCH_TEST_DELAY"] = str(delay)
    with log.open("wb") as out:
        return subprocess.Popen(
            [LRSEARCH, "run", "--study", "w", "--storage", url],
            cwd=setup.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _wait(procs: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log.read_text()


def _table(log: Path) -> list[str]:
    """What a worker printed from the final comparison's heading to its verdict."""
    lines = log.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("final comparison on"))
    end = next(i for i, line in enumerate(lines) if line.startswith("tuned ") and i > start)
    return lines[start : end + 1]


# --- what one correct study looks like ------------------------------------------------------


def _units_done(trials: list[FrozenTrial]) -> Counter[str]:
    """How many finished trials each unit key has."""
    return Counter(unit_key(t) or "" for t in trials if t.state in FINISHED)


def check_one_study(stored: StoredStudy, setup: Setup, *, duplicates: bool = False) -> None:
    """The invariants of a finished study, whoever ran it and however often it was killed."""
    for stage in STAGES:
        live = [
            t for t in stored.trials(stage) if t.state in (TrialState.RUNNING, TrialState.WAITING)
        ]
        assert not live, (stage, [(t.number, t.state.name) for t in live])
    # The search: the budget exactly, and no trial drawn twice.
    search = stored.trials("search")
    assert sum(t.state in FINISHED for t in search) == setup.n_trials
    params = [tuple(sorted(t.params.items())) for t in search if t.state in FINISHED]
    assert len(set(params)) == len(params), "two search trials share their params"
    # One range test; one unit per grid LR, every LR on the grid (grown with the bounds, one
    # history of them); the chosen LR on the grid.
    assert "range-test" in first_done(stored.trials("range_test"))
    result = load_result("w", store=stored.search._storage)
    start = result.bounds_history[0]
    assert [row["step"] for row in result.bounds_history] == list(
        range(len(result.bounds_history))
    )
    extensions = _bounds.history(stored.trials("bounds"), "task")
    grid = healed_grid(LRBounds(start["low"], start["high"]), setup.cv_grid, extensions)
    cv = stored.trials("constant_cv")
    # (A unit killed before it read its LR has no params yet.)
    assert {t.params["lr"] for t in cv if t.params} <= set(grid)
    assert set(_units_done(cv)) == {grid_key(lr) for lr in grid}
    assert result.constant_lr in grid
    # One finalist per top trial, and the comparison: final_seeds runs per arm, one per key.
    assert len(_units_done(stored.trials("finalists"))) == setup.finalists
    seeds = final_seeds(0, setup.final_seeds)
    arms = make_arms(
        result.best_params,
        result.constant_lr,
        steps_per_epoch=stored.attrs["steps_per_epoch"]["full"],
        epochs=2,
    )
    final = stored.trials("final")
    assert set(_units_done(final)) == {arm_key(a, s) for a in arms for s in seeds}
    assert result.comparison is not None
    for arm in result.comparison.values():
        assert len(arm["test_metric_per_seed"]) == setup.final_seeds
    # Study NAME keeps a small summary of the same comparison (the records stay on the units).
    test = stored.search.user_attrs["summary"]["test"]
    assert test == {
        k: pytest.approx(v["test_metric_mean"], rel=1e-3) for k, v in result.comparison.items()
    }
    if not duplicates:  # healthy workers: every unit ran exactly once
        for stage in STAGES:
            if stage == "search":
                continue
            counts = _units_done(stored.trials(stage))
            # Every stage ran units, but the bounds have records only where they widened.
            assert set(counts.values()) == ({1} if counts or stage != "bounds" else set())
            assert len(stored.trials(stage)) == sum(counts.values()), stage
        assert len(search) == setup.n_trials
    # The history: the units each run says it ran are the units that ran to an end.
    runs = history(stored)
    ran = sum(
        TRAIN_SECONDS in t.user_attrs
        for stage in STAGES
        for t in stored.trials(stage)
        if t.state.is_finished()
    )
    assert sum(r.n_units for r in runs) == ran == timings(stored).units


# --- several workers at once ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "n_workers"), [("postgresql", 4), ("mysql", 4), ("sqlite", 3)]
)
def test_workers_started_together_make_one_study(
    backend: str, n_workers: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    setup = _setup(tmp_path, grace=20)
    url = {
        "postgresql": lambda: request.getfixturevalue("pg_database"),
        "mysql": lambda: request.getfixturevalue("mysql_database"),
        "sqlite": lambda: f"sqlite:///{tmp_path}/w.db",
    }[backend]()
    logs = [tmp_path / f"worker{i}.log" for i in range(n_workers)]
    # Units slow enough (a few ms a batch) that no worker can run a stage alone before the
    # others have started; the results do not depend on it.
    procs = [_start(setup, url, log, delay=0.005) for log in logs]
    _wait(procs, logs, timeout=400)
    tables = [_table(log) for log in logs]
    assert all(table == tables[0] for table in tables), "the workers printed different results"
    store = open_storage(url)
    try:
        stored = load_stored("w", store=store)
        check_one_study(stored, setup)
        runs = history(stored)
        assert len(runs) == n_workers and all(r.status == "finished" for r in runs)
        # The work was shared: more than one worker ran units.
        assert sum(r.n_units > 0 for r in runs) >= 2
    finally:
        store.engine.dispose()


# --- a worker killed in any stage, then the command again ------------------------------------


def _rows(path: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``query`` on the database another process writes (read-only, never creates)."""
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(query, args).fetchall()
    except sqlite3.OperationalError:  # tables not made yet, or busy: ask again
        return []


_STATES = (
    "SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = ?"
)
_STUDY = {
    "range_test": "w/range-test",
    "search": "w",
    "constant_cv": "w/constant-cv",
    "finalists": "w/finalists",
    "final": "w/final",
}


def _kill_when(
    proc: subprocess.Popen[bytes],
    log: Path,
    ready: Callable[[], bool],
    never: str,
    *,
    jitter: float = 0.0,
) -> None:
    """SIGKILL ``proc`` once ``ready()`` (polled), up to ``jitter`` seconds later; fail with
    ``never`` after 3 minutes, or if the worker ended first."""
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the worker ended before it was killed:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{never}:\n{log.read_text()}")
            if ready():
                time.sleep(random.uniform(0.0, jitter))  # somewhere inside the unit
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and proc.returncode is None:
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("stage", list(_STUDY))
def test_a_worker_killed_in_any_stage_leaves_one_correct_study(stage: str, tmp_path: Path) -> None:
    setup = _setup(tmp_path, grace=2)
    path = tmp_path / "w.db"
    url = f"sqlite:///{path}"
    log = tmp_path / "killed.log"
    # Slow enough to be caught inside a unit: the range test is 20 steps of one batch each.
    proc = _start(setup, url, log, delay=0.05 if stage == "range_test" else 0.01)
    # Wait until the stage has a unit running (and, where it has several, one done already).
    need_done = 0 if stage in ("range_test",) else 1

    def inside() -> bool:
        states = [s for (s,) in _rows(path, _STATES, _STUDY[stage])]
        done = sum(s in ("COMPLETE", "PRUNED") for s in states)
        return "RUNNING" in states and done >= need_done

    _kill_when(proc, log, inside, f"the worker never reached {stage}", jitter=0.05)
    store = open_storage(url)
    try:
        before = load_stored("w", store=store)
        killed_stage = {v: k for k, v in _STUDY.items()}[_STUDY[stage]]
        done_before = {
            unit_key(t): t.number
            for t in before.trials(killed_stage)
            if t.state in FINISHED and unit_key(t)
        }
        orphans = [t.number for t in before.trials(killed_stage) if t.state == TrialState.RUNNING]
        assert orphans, "the kill left no unit running"
    finally:
        store.engine.dispose()

    time.sleep(2.5)  # past the grace period: the orphan's heartbeat is stale
    again = tmp_path / "again.log"
    _wait([_start(setup, url, again)], [again], timeout=300)

    store = open_storage(url)
    try:
        stored = load_stored("w", store=store)
        check_one_study(stored, setup, duplicates=True)
        trials = stored.trials(killed_stage)
        # The orphan failed (its worker died) and its unit ran again, to an end.
        for number in orphans:
            orphan = next(t for t in trials if t.number == number)
            assert orphan.state == TrialState.FAIL
            key = unit_key(orphan)
            assert key is not None
            assert any(unit_key(t) == key and t.state in FINISHED for t in trials)
        # Units finished before the kill were reused, not run again.
        counts = _units_done(trials)
        for key in done_before:
            assert counts[key] == 1, key
            assert first_done(trials, FINISHED)[key].number == done_before[key]
        # No key is read twice: each has one finished trial, whatever ran.
        if killed_stage != "search":
            assert set(counts.values()) == {1}
        runs = history(stored)
        assert [r.finished() for r in runs] == [False, True]
        assert runs[0].n_units >= len(done_before)
    finally:
        store.engine.dispose()


# --- bounds that heal, with several workers and a kill -9 ------------------------------------

#: The tiny task's range test over a ladder that stops short of its best LRs (about 0.1 to 1):
#: a confident reading whose top is too low, so the bounds heal.
NARROW = "start_lr = 1e-4\n            end_lr = 0.03\n            num_iter = 40"


def _extensions(url: str) -> list[tuple[str, float, float]]:
    store = open_storage(url)
    try:
        stored = load_stored("w", store=store)
        return [(e.cause, e.low, e.high) for e in _bounds.history(stored.trials("bounds"), "task")]
    finally:
        store.engine.dispose()


def test_workers_that_heal_the_bounds_keep_one_history(tmp_path: Path) -> None:
    setup = _setup(tmp_path, grace=20, range_test=NARROW)
    url = f"sqlite:///{tmp_path}/w.db"
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = [_start(setup, url, log, delay=0.005) for log in logs]
    _wait(procs, logs, timeout=400)
    tables = [_table(log) for log in logs]
    assert tables[0] == tables[1]
    history_of = _extensions(url)
    assert history_of and history_of[0][0] == "cv-edge"
    store = open_storage(url)
    try:
        stored = load_stored("w", store=store)
        check_one_study(stored, setup)  # every unit once: the bounds' records included
        assert len(stored.trials("bounds")) == len(history_of)
    finally:
        store.engine.dispose()


def test_a_worker_killed_inside_an_extension_leaves_one_history(tmp_path: Path) -> None:
    setup = _setup(tmp_path, grace=2, range_test=NARROW)
    path = tmp_path / "w.db"
    url = f"sqlite:///{path}"
    log = tmp_path / "killed.log"
    proc = _start(setup, url, log, delay=0.01)
    # Wait for the first extension's record, then kill the worker inside the grid point it
    # added (a constant-cv unit running after the record was written).

    def inside() -> bool:
        records = _rows(path, _STATES, "w/bounds")
        return bool(records) and ("RUNNING",) in _rows(path, _STATES, "w/constant-cv")

    _kill_when(proc, log, inside, "the bounds never healed")
    before = _extensions(url)
    assert before
    time.sleep(2.5)  # past the grace period
    again = tmp_path / "again.log"
    _wait([_start(setup, url, again)], [again], timeout=300)
    after = _extensions(url)
    assert after[: len(before)] == before  # the history is kept, never rewritten
    store = open_storage(url)
    try:
        stored = load_stored("w", store=store)
        check_one_study(stored, setup, duplicates=True)
        records = stored.trials("bounds")
        assert len(records) == len(after)  # no record twice
    finally:
        store.engine.dispose()


# --- --fresh ----------------------------------------------------------------------------------


def test_fresh_is_refused_while_a_worker_is_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = _setup(tmp_path, grace=3)
    path = tmp_path / "w.db"
    url = f"sqlite:///{path}"
    log = tmp_path / "live.log"
    proc = _start(setup, url, log, delay=0.02)
    monkeypatch.chdir(tmp_path)
    try:
        deadline = time.monotonic() + 120
        while "RUNNING" not in [s for (s,) in _rows(path, _STATES, "w")]:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        before = _rows(path, "SELECT trial_id, state FROM trials")
        result = CliRunner().invoke(cli, ["run", "--study", "w", "--storage", url, "--fresh"])
        assert result.exit_code == 2
        message = result.stderr.strip()
        assert "\n" not in message and "live worker" in message and "--fresh" in message
        # Nothing was deleted or added: the live worker's trials are all there.
        after = {tid for tid, _ in _rows(path, "SELECT trial_id, state FROM trials")}
        assert {tid for tid, _ in before} <= after
    finally:
        proc.kill()
        proc.wait()
    # Once the killed worker's record is older than the grace period, --fresh starts over.
    time.sleep(3.5)
    result = CliRunner().invoke(cli, ["run", "--study", "w", "--storage", url, "--fresh"])
    assert result.exit_code == 0, result.output
    store = open_storage(url)
    try:
        stored = load_stored("w", store=store)
        check_one_study(stored, setup)
        assert len(history(stored)) == 1  # the killed run's record went with the study
    finally:
        store.engine.dispose()


# --- a budget: one plan whoever runs it, and never spent past ---------------------------------

BUDGET = 30.0


def _budget_setup(tmp_path: Path) -> Setup:
    """``studies/w.toml`` with a budget and none of the keys it plans (trials, CV, finalists)."""
    setup = _setup(tmp_path, grace=2)
    (tmp_path / "studies" / "w.toml").write_text(
        textwrap.dedent(
            f"""
            task = "workertask:make_task"
            budget = {BUDGET}
            epochs = 2
            final_seeds = 2
            threads = 1
            device = "cpu"
            heartbeat_interval = 1
            grace_period = 2

            [range_test]
            num_iter = 20
            """
        )
    )
    return setup


def _planned(url: str) -> tuple[dict[str, Any], float]:
    """The config the study ran with (the plan applied) and what its tuning spent, in runs."""
    store = open_storage(url)
    try:
        stored = load_stored("w", store=store)
        return dict(stored.attrs["config"]), cost_of(stored).tuning
    finally:
        store.engine.dispose()


def test_a_budget_plans_alike_for_three_workers_and_after_a_kill(tmp_path: Path) -> None:
    together, alone = tmp_path / "together", tmp_path / "alone"
    together.mkdir()
    alone.mkdir()
    setups = [_budget_setup(together), _budget_setup(alone)]
    # Three workers at once.
    url3 = f"sqlite:///{together}/w.db"
    logs = [together / f"worker{i}.log" for i in range(3)]
    _wait([_start(setups[0], url3, log, delay=0.005) for log in logs], logs, timeout=400)
    # One worker, killed inside the search, then the command again.
    path = alone / "w.db"
    url1 = f"sqlite:///{path}"
    killed = alone / "killed.log"
    proc = _start(setups[1], url1, killed, delay=0.01)

    def searching() -> bool:
        return "RUNNING" in [s for (s,) in _rows(path, _STATES, "w")]

    _kill_when(proc, killed, searching, "the worker never reached the search", jitter=0.05)
    time.sleep(2.5)  # past the grace period
    again = alone / "again.log"
    _wait([_start(setups[1], url1, again)], [again], timeout=300)

    (cfg3, spent3), (cfg1, spent1) = _planned(url3), _planned(url1)
    assert cfg3 == cfg1  # the same plan, however the work was shared or broken off
    assert cfg3["budget"] == BUDGET and cfg3["n_trials"] >= 2
    assert 0 < spent3 <= BUDGET and 0 < spent1 <= BUDGET
    plan_lines = {
        line
        for log in [*logs, again]
        for line in log.read_text().splitlines()
        if line.startswith(f"budget {BUDGET:g} runs:")
    }
    assert len(plan_lines) == 1, plan_lines  # every worker printed the one plan
