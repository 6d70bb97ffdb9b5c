"""Tests for lrsearch/store: storage URLs, the storage lock (on SQLite, PostgreSQL and MariaDB),
the typed records, and reading units, history and timings back."""

from __future__ import annotations

import contextlib
import datetime
import itertools
import math
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.store import (
    TRAIN_SECONDS,
    UNIT,
    WORKER,
    ArmResult,
    Finalist,
    FinalRun,
    RunRecord,
    StorageLock,
    StoredStudy,
    StudyNames,
    first_done,
    history,
    mask_url,
    open_storage,
    same_params,
    timings,
    top_trials,
)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind, as a bare URL (the driver is lrsearch's to pick)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    return str(
        request.getfixturevalue(
            "pg_database" if request.param == "postgresql" else "mysql_database"
        )
    )


# --- URLs -------------------------------------------------------------------------------------


def test_mask_url_hides_passwords_only() -> None:
    assert mask_url("postgresql://me:secret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert mask_url("sqlite:///studies/lrsearch.db") == "sqlite:///studies/lrsearch.db"
    assert "pw" not in mask_url("weird scheme://me:pw@x")  # unparsable: nothing after ://


def test_open_storage_errors_are_one_line_and_create_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="not a storage URL"):
        open_storage("no scheme at all")
    missing = tmp_path / "missing" / "s.db"
    with pytest.raises(LrsearchError, match="no study database at"):
        open_storage(f"sqlite:///{missing}", create=False)
    assert not missing.parent.exists()
    with pytest.raises(LrsearchError, match=r"cannot open storage postgresql://u:\*\*\*@") as info:
        open_storage("postgresql://u:pw@127.0.0.1:9/x")
    assert "pw" not in str(info.value)


def test_a_sqlite_file_writes_ahead_and_is_whole_once_closed(tmp_path: Path) -> None:
    # Commits without an fsync each (write-ahead log, synchronous=NORMAL); once the last
    # connection closes the log is folded back, so a copy of the file alone has everything.
    path = tmp_path / "s.db"
    store = open_storage(f"sqlite:///{path}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    study = optuna.create_study(study_name="w", storage=store)
    study.set_user_attr("kept", 1)
    store.engine.dispose()
    assert not (tmp_path / "s.db-wal").exists()
    copy = tmp_path / "copy.db"
    copy.write_bytes(path.read_bytes())
    assert optuna.load_study(study_name="w", storage=f"sqlite:///{copy}").user_attrs == {"kept": 1}


# Only WAL is stored in the file; the other modes are per connection, seen as `delete`.
@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_a_reader_leaves_the_files_journal_mode_as_it_found_it(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "s.db"
    writer = open_storage(f"sqlite:///{path}")
    optuna.create_study(study_name="r", storage=writer).set_user_attr("k", 1)
    writer.engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute(f"PRAGMA journal_mode={mode}").fetchone()[0] == mode

    reader = open_storage(f"sqlite:///{path}", create=False)
    with reader.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == mode
    assert optuna.load_study(study_name="r", storage=reader).user_attrs == {"k": 1}
    reader.engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == mode


def test_bare_urls_open_with_the_installed_driver(url: str) -> None:
    store = open_storage(url, heartbeat_interval=1, grace_period=2)
    try:
        study = optuna.create_study(study_name="s", storage=store)
        study.set_user_attr("k", [1, 2])
        assert optuna.load_study(study_name="s", storage=store).user_attrs["k"] == [1, 2]
        assert store.get_heartbeat_interval() == 1
    finally:
        store.engine.dispose()


def test_workers_opening_a_fresh_database_together_all_succeed(url: str) -> None:
    # Optuna creates its tables on first open; several processes at once race to do it.
    code = (
        "import sys; from lrsearch.store import open_storage; "
        "s = open_storage(sys.argv[1]); s.engine.dispose()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url], stderr=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()


# --- the lock ---------------------------------------------------------------------------------


def test_the_lock_excludes_every_other_holder(url: str) -> None:
    store = open_storage(url)
    spans: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def hold() -> None:
        # Each holder its own engine (its own connections, its own lock file descriptor).
        engine = sqlalchemy.create_engine(store.engine.url)
        try:
            for _ in range(3):
                with StorageLock(engine, "study:x"):
                    start = time.monotonic()
                    time.sleep(0.02)
                    spans.append((start, time.monotonic()))
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    store.engine.dispose()
    assert not errors, errors
    assert len(spans) == 9
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two holders held the lock at once"


def test_locks_of_different_names_do_not_wait_for_each_other(tmp_path: Path) -> None:
    store = open_storage(f"sqlite:///{tmp_path}/s.db")
    a, b = StorageLock(store.engine, "study:a"), StorageLock(store.engine, "study:b")
    with a:
        # Another name is another lock file: free at once.
        done = threading.Event()
        threading.Thread(target=lambda: (b.acquire(), b.release(), done.set())).start()
        assert done.wait(5)
    a.release()  # a second release is a no-op
    assert not a.held


# --- records ----------------------------------------------------------------------------------


def test_records_round_trip_as_strict_json() -> None:
    import json

    run = FinalRun("tuned", 1000, {"lr": 0.1}, "task", "constant 0.1", [0.5, math.nan], 2, 20)
    data = json.loads(json.dumps(run.to_dict(), allow_nan=False))
    back = FinalRun.from_dict(data)
    assert back.curve[0] == 0.5 and math.isnan(back.curve[1])
    fin = Finalist(3, {"lr": 0.1}, 0.9, [0.8, math.inf], None, "fold 1: diverged")
    data = json.loads(json.dumps(fin.to_dict(), allow_nan=False))
    assert Finalist.from_dict(data).diverged == "fold 1: diverged"
    record = RunRecord("2026-01-01T00:00:00", "h", 7, {"optuna": "5"}, "cpu", "sqlite://")
    assert RunRecord.from_dict(record.to_dict()) == record
    assert "units" not in record.to_dict()  # counted from the units on read
    assert record.key == "run:2026-01-01T00:00:00:h:7"
    assert (record.worker, record.finished()) == ("h:7@2026-01-01T00:00:00", False)
    arm = ArmResult(0.9, 0.0, [0.9], [0.9], [[0.9]], 1, 10, {}, "c", "task", [1], [None], 1.0)
    assert "target" not in arm.to_dict() and "tuned_minus_this" not in arm.to_dict()
    assert ArmResult.from_dict(arm.to_dict()) == arm


def test_study_names_and_their_owner() -> None:
    names = StudyNames("a.b")
    assert names.all()[0] == "a.b" and len(set(names.all())) == 10
    for name in names.all():
        assert StudyNames.owner(name) == "a.b"
    assert StudyNames.owner("x/other") == "x/other"  # not a stage of lrsearch's


# --- reading ----------------------------------------------------------------------------------


def _trial(
    key: str | None,
    value: float,
    *,
    done_at: int,
    state: TrialState = TrialState.COMPLETE,
    worker: str = "w",
) -> optuna.trial.FrozenTrial:
    start = datetime.datetime(2026, 1, 1)
    attrs = {TRAIN_SECONDS: 0.5, WORKER: worker} | ({UNIT: key} if key else {})
    trial = optuna.trial.create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        user_attrs=attrs,
    )
    trial.datetime_start = start
    trial.datetime_complete = start + datetime.timedelta(seconds=done_at)
    return trial


def test_first_done_takes_the_first_to_finish_per_key() -> None:
    late, early = _trial("k", 1.0, done_at=9), _trial("k", 2.0, done_at=3)
    other = _trial("j", 3.0, done_at=1, state=TrialState.PRUNED)
    assert first_done([late, early, other])["k"] is early
    assert "j" not in first_done([other])
    assert first_done([other], (TrialState.PRUNED,))["j"] is other
    assert first_done([_trial(None, 1.0, done_at=1)]) == {}


def test_history_timings_and_top_trials_from_a_stored_study(tmp_path: Path) -> None:
    store = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="s", storage=store, direction="maximize")
    two, one = (
        RunRecord(started, "h", pid, {}, "cpu", "x") for pid, started in ((2, "b"), (1, "a"))
    )
    for record in (two, one):
        study.set_user_attr(record.key, record.to_dict())
    # Run 1 ran trials 0 and 2, run 2 trial 1; run 2 was killed in trial 3: not work done.
    for value, seconds, run in ((0.5, 2, one), (0.9, 3, two), (0.9, 1, one)):
        study.add_trial(_trial(None, value, done_at=seconds, worker=run.worker))
    dead = _trial(None, 0.0, done_at=30, state=TrialState.FAIL, worker=two.worker)
    dead.user_attrs.pop(TRAIN_SECONDS)
    study.add_trial(dead)
    stored = StoredStudy("s", "x", study, {"search": study})
    runs = history(stored)
    assert [(r.pid, r.units) for r in runs] == [(1, {"search": 2}), (2, {"search": 1})]
    spent = timings(stored)
    assert spent.stages["search"].units == 3
    assert spent.stages["search"].seconds == pytest.approx(6.0)
    assert spent.inside_training == pytest.approx(1.5)
    assert spent.wall == pytest.approx(3.0)
    assert spent.stages["final"].units == 0
    top = top_trials(study, 5)
    # All three share their (empty) params: one per params, the best, the earlier of a tie.
    assert [t.number for t in top] == [1]
    assert same_params({"a": 1.0}, {"a": 1.0 + 1e-14}) and not same_params({"a": 1}, {"b": 1})
