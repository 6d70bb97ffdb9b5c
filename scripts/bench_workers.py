"""Benchmark: several ``lrsearch run`` workers on one study (by hand, never in CI).

For each task (digits, mnist1d), storage (SQLite file, PostgreSQL database) and number of
workers (1, 2, 4; torch threads = 1 each), start that many ``lrsearch run --study NAME
--storage URL`` processes at once on a fresh storage and wait for all of them. Reported side by
side in one run:

- wall: seconds from starting the first worker to the last one's exit (imports included);
- speed-up: the 1-worker wall of the same task and storage divided by this wall;
- units: units of work that ran to an end; duplicated: finished units beyond one per key (and
  search trials beyond the budget), the goal is 0;
- same table: whether every worker printed the same final comparison;
- claim gap: median seconds between a worker finishing a unit and starting its next one of the
  same stage (the queue's cost per unit: the lock, ``fail_stale_trials``, the enqueue, the pop,
  the sampler);
- SQL statements per unit, per stage: counted in one process on SQLite with a SQLAlchemy
  event listener (what each unit costs the database; the number of workers does not change it).

The studies are smaller than the packaged configs (fewer trials, seeds and epochs; see
``BENCH``) so the whole run fits in about an hour on 2 cores. Print the table and the command.

Usage:
    python scripts/bench_workers.py --out bench_out/workers
    python scripts/bench_workers.py --tasks digits --workers 1 2 --storages sqlite  # quick
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import sqlalchemy

from lrsearch.store import (
    FINISHED,
    STAGES,
    TRAIN_SECONDS,
    WORKER,
    load_stored,
    open_storage,
    unit_key,
)

LRSEARCH = str(Path(sys.executable).with_name("lrsearch"))
PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"

#: Config keys of each task's benchmark study (its own epochs unless given).
BENCH: dict[str, dict[str, Any]] = {
    "digits": {"n_trials": 16, "cv_grid": 4, "cv_folds": 3, "finalists": 3, "final_seeds": 3},
    "mnist1d": {
        "n_trials": 12,
        "epochs": 15,
        "cv_grid": 4,
        "cv_folds": 3,
        "finalists": 3,
        "final_seeds": 3,
    },
}


def _toml(task: str) -> str:
    lines = [f'task = "{task}"', "threads = 1", 'device = "cpu"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in BENCH[task].items()]
    return "\n".join(lines) + "\n"


class Database:
    """A fresh database on the storage kind asked for, dropped on close."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.name = f"lrsearch_bench_{uuid.uuid4().hex[:10]}"
        if kind == "sqlite":
            self.url = f"sqlite:///{(folder / (self.name + '.db')).resolve()}"
            self._admin = None
        else:
            self._admin = sqlalchemy.create_engine(
                f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT"
            )
            with self._admin.connect() as conn:
                conn.execute(sqlalchemy.text(f"CREATE DATABASE {self.name}"))
            self.url = f"postgresql://postgres@127.0.0.1:5432/{self.name}"

    def close(self) -> None:
        if self._admin is not None:
            with self._admin.connect() as conn:
                conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"))
            self._admin.dispose()


def _final_table(text: str) -> list[str]:
    lines = text.splitlines()
    start = next((i for i, x in enumerate(lines) if x.startswith("final comparison on")), None)
    if start is None:
        return []
    end = next(i for i, x in enumerate(lines) if x.startswith("tuned ") and i > start)
    return lines[start : end + 1]


def run_workers(task: str, kind: str, n: int, out: Path) -> dict[str, Any]:
    """``n`` workers on a fresh storage; what the storage holds afterwards."""
    db = Database(kind, out)
    with tempfile.TemporaryDirectory(prefix="lrsearch-bench-") as tmp:
        cwd = Path(tmp)
        (cwd / "studies").mkdir()
        (cwd / "studies" / f"b{task}.toml").write_text(_toml(task))
        logs = [out / f"{task}-{kind}-{n}-{i}.log" for i in range(n)]
        began = time.perf_counter()
        procs = []
        for log in logs:
            with log.open("w") as f:
                procs.append(
                    subprocess.Popen(
                        [LRSEARCH, "run", "--study", f"b{task}", "--storage", db.url],
                        cwd=cwd,
                        stdout=f,
                        stderr=subprocess.STDOUT,
                    )
                )
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - began
    try:
        if any(codes):
            raise SystemExit(f"a worker failed: see {logs[codes.index(max(codes))]}")
        tables = [_final_table(log.read_text()) for log in logs]
        return {"wall": wall, "same_table": all(t == tables[0] for t in tables)} | _read(
            task, db.url
        )
    finally:
        db.close()


def _read(task: str, url: str) -> dict[str, Any]:
    store = open_storage(url, create=False)
    try:
        stored = load_stored(f"b{task}", store=store)
        units = duplicated = 0
        train = 0.0
        gaps: list[float] = []
        for stage in STAGES:
            trials = stored.trials(stage)
            ran = [t for t in trials if TRAIN_SECONDS in t.user_attrs]
            units += len(ran)
            train += sum(float(t.user_attrs[TRAIN_SECONDS]) for t in ran)
            if stage == "search":
                duplicated += max(
                    0, sum(t.state in FINISHED for t in trials) - BENCH[task]["n_trials"]
                )
            else:
                counts = Counter(unit_key(t) for t in trials if t.state in FINISHED)
                duplicated += sum(c - 1 for c in counts.values())
            by_worker: dict[str, list[optuna.trial.FrozenTrial]] = defaultdict(list)
            for t in ran:
                by_worker[t.user_attrs[WORKER]].append(t)
            for mine in by_worker.values():
                mine.sort(key=lambda t: t.datetime_start)
                for a, b in itertools.pairwise(mine):
                    gaps.append((b.datetime_start - a.datetime_complete).total_seconds())
        return {
            "units": units,
            "duplicated": duplicated,
            "inside": train,
            "gap": statistics.median(gaps) if gaps else float("nan"),
        }
    finally:
        store.engine.dispose()


def statements_per_unit(task: str, out: Path) -> pd.DataFrame:
    """SQL statements per unit, by stage, for one worker on SQLite (a listener counts them)."""
    from lrsearch.config import StudyConfig
    from lrsearch.pipeline import run_study

    counts: Counter[str] = Counter()
    stage = ["setup"]

    def count(*args: Any) -> None:
        counts[stage[0]] += 1

    def progress(label: str, done: int, total: int) -> None:
        stage[0] = label

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", count)
    url = f"sqlite:///{out / f'statements-{task}.db'}"
    try:
        cfg = StudyConfig(name=f"s{task}", task=task, threads=1, device="cpu", **BENCH[task])
        run_study(cfg, storage=url, fresh=True, progress=progress)
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", count)
    store = open_storage(url, create=False)
    stored = load_stored(f"s{task}", store=store)
    labels = {
        "range test": "range_test",
        "search": "search",
        "constant-cv": "constant_cv",
        "adam-3e-4": "adam",
        "finalists": "finalists",
        "final comparison": "final",
    }
    rows = []
    for label, name in labels.items():
        n = sum(TRAIN_SECONDS in t.user_attrs for t in stored.trials(name))
        if n:
            rows.append(
                {
                    "task": task,
                    "stage": label,
                    "units": n,
                    "statements": counts[label],
                    "per unit": round(counts[label] / n, 1),
                }
            )
    store.engine.dispose()
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["digits", "mnist1d"], choices=list(BENCH))
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument(
        "--storages", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--out", type=Path, default=Path("bench_out/workers"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python scripts/bench_workers.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    began = time.perf_counter()
    rows = []
    for task in args.tasks:
        for kind in args.storages:
            base = None
            for n in sorted(args.workers):
                r = run_workers(task, kind, n, args.out)
                base = base or (r["wall"] if n == 1 else None)
                rows.append(
                    {
                        "task": task,
                        "storage": kind,
                        "workers": n,
                        "wall s": round(r["wall"], 1),
                        "speed-up": round(base / r["wall"], 2) if base else None,
                        "units": r["units"],
                        "duplicated": r["duplicated"],
                        "inside training s": round(r["inside"], 1),
                        "claim gap s (median)": round(r["gap"], 3),
                        "same table": r["same_table"],
                    }
                )
                print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    statements = pd.concat([statements_per_unit(t, args.out) for t in args.tasks])
    frame.to_csv(args.out / "workers.csv", index=False)
    statements.to_csv(args.out / "statements.csv", index=False)
    print()
    print(frame.to_markdown(index=False))
    print()
    print(statements.to_markdown(index=False))
    print(
        f"\n{command}\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at the end; {time.perf_counter() - began:.0f} s"
    )


if __name__ == "__main__":
    main()
