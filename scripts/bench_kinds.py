"""Benchmark: does the wider schedule family help or cost? (by hand, never in CI)

For each task (digits, mnist1d) and each of ``--seeds`` study seeds, run the search alone
(``skip_baselines``, the packaged config's pruner and sampler, ``--n-trials`` trials) twice on
the same seed, split, range test and inits: once over the eight classic kinds (constant, step,
exponential, triangular, triangular2, exp_range, sgdr, onecycle; their seeds), once over all
twelve (plus cosine, wsd, inverse_sqrt, plateau; their seeds too). Side by side:

- best validation value of each family (median over seeds) and their difference;
- trials the wider family needs to reach the classic family's best value of the same seed
  (">N" when it never does), and the other way round;
- which kind the best trial has, per seed, and how often each kind is among the top five.

Nothing here is fitted: the numbers only say whether widening the space, at the same budget,
finds better schedules sooner or spends trials on kinds that lose.

Usage:
    python scripts/bench_kinds.py --out bench_out/kinds
    python scripts/bench_kinds.py --tasks digits --seeds 2 --n-trials 10  # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from lrsearch.choices import KINDS
from lrsearch.config import load_config
from lrsearch.pipeline import run_study
from lrsearch.store import FINISHED, top_trials

#: The 2015-2018 family lrsearch started with (KINDS without the four added after it).
CLASSIC = tuple(k for k in KINDS if k not in ("cosine", "wsd", "inverse_sqrt", "plateau"))
FAMILIES = {"classic": CLASSIC, "all": KINDS}


def _search(task: str, family: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(task).replace(
        n_trials=args.n_trials, seed=seed, kinds=list(FAMILIES[family]), threads=args.threads
    )
    if args.epochs is not None:
        cfg = cfg.replace(epochs=args.epochs)
    name = f"kinds-{task}-{family}-{seed}"
    cfg = dataclasses.replace(cfg, name=name)
    storage = f"sqlite:///{args.out / 'kinds.db'}"
    began = time.perf_counter()
    run_study(cfg, storage=storage, fresh=True, skip_baselines=True)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = sorted(study.get_trials(states=FINISHED), key=lambda t: t.number)
    values = [t.value if t.state.name == "COMPLETE" else None for t in trials]
    best = study.best_trial
    return {
        "values": values,
        "best": best.value,
        "best_kind": best.params["schedule"],
        "top5": [t.params["schedule"] for t in top_trials(study, 5)],
        "maximize": study.direction == optuna.study.StudyDirection.MAXIMIZE,
        "seconds": time.perf_counter() - began,
    }


def _trials_to(values: list[float | None], target: float, maximize: bool) -> int | None:
    for i, v in enumerate(values, start=1):
        if v is not None and (v >= target if maximize else v <= target):
            return i
    return None


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=None, help="override the task's epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench_out/kinds"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    command = "python scripts/bench_kinds.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    began = time.perf_counter()
    raw: dict[str, Any] = {}
    rows, kinds_rows = [], []
    for task in args.tasks:
        per_seed = []
        wins: Counter[str] = Counter()
        top: Counter[str] = Counter()
        for seed in range(args.seeds):
            r = {f: _search(task, f, seed, args) for f in FAMILIES}
            raw[f"{task}-{seed}"] = r
            maximize = r["all"]["maximize"]
            per_seed.append(
                {
                    "classic": r["classic"]["best"],
                    "all": r["all"]["best"],
                    "all to classic best": _trials_to(
                        r["all"]["values"], r["classic"]["best"], maximize
                    ),
                    "classic to all best": _trials_to(
                        r["classic"]["values"], r["all"]["best"], maximize
                    ),
                    "best kind (all)": r["all"]["best_kind"],
                    "best kind (classic)": r["classic"]["best_kind"],
                }
            )
            wins[r["all"]["best_kind"]] += 1
            top.update(r["all"]["top5"])
            print(task, seed, per_seed[-1], flush=True)

        def count(key: str, rows_: list[dict[str, Any]] = per_seed) -> str:
            got = [p[key] for p in rows_]
            shown = [str(g) if g is not None else f">{args.n_trials}" for g in got]
            return ", ".join(shown)

        rows.append(
            {
                "task": task,
                "seeds": args.seeds,
                "trials": args.n_trials,
                "best, classic (median)": _median(per_seed, "classic"),
                "best, all twelve (median)": _median(per_seed, "all"),
                "all - classic per seed": ", ".join(
                    f"{p['all'] - p['classic']:+.4f}" for p in per_seed
                ),
                "trials of all to reach classic's best": count("all to classic best"),
                "trials of classic to reach all's best": count("classic to all best"),
                "best kind per seed (all / classic)": "; ".join(
                    f"{p['best kind (all)']} / {p['best kind (classic)']}" for p in per_seed
                ),
            }
        )
        kinds_rows.append(
            {"task": task, **{k: f"{wins[k]} / {top[k]}" for k in KINDS if wins[k] or top[k]}}
        )
    (args.out / "kinds.json").write_text(json.dumps(raw, indent=1, default=str))
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))
    print()
    print("best trial's kind / appearances among the top five, all twelve kinds, over seeds:")
    print(pd.DataFrame(kinds_rows).fillna("").to_markdown(index=False))
    print(
        f"\n{command}\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at the end; {time.perf_counter() - began:.0f} s"
    )


if __name__ == "__main__":
    main()
