"""Does the search judge a plateau schedule as the final comparison runs it? Before and after.

    .venv/bin/python scripts/bench_plateau_watch.py [--tasks digits mnist1d charlm]
        [--seeds 3] [--workers 2]

A benchmark to run by hand (about 20 minutes on 2 cores), never part of the test suite.
``ReduceLROnPlateau`` lowers the LR when a watched metric stalls. The final comparison cannot
let it watch the test set, so a ``plateau`` arm trains on the search-train split (80% of
``train``) and watches the validation split, while every other arm trains on all of ``train``.
Before this change a search trial (and a finalist's CV fold) let it watch the very split it was
scored on, with as much training data as every other trial; now it fits on 80% of what it is
given and watches the rest (``lrsearch.splits.watch_split``).

For each packaged task this trains, from the study's split and the final comparison's model
seeds, a small grid of plateau schedules (decay 0.3, two patiences, peaks at half, one and two
times the study's seed peak, ``seed_peak`` of its range test) and, as the reference, warm-up
+ cosine at the same peaks, each scored three ways:

- *search, before*: trained on search-train, watching validation, scored on validation;
- *search, after*: trained on 80% of search-train, watching the other 20%, scored on validation;
- *final*: as the final comparison trains the arm (plateau: search-train, watching validation;
  cosine: all of ``train``), scored on ``test``.

A search that judges plateau as its final runs do overrates it by as much as it overrates
cosine: the table's "bias" is plateau's mean (search - final) minus cosine's, in the metric's
better direction (positive: the search favours plateau beyond what its final runs deliver).
No constant here is fitted; the watched share is the study's ``validation_fraction``.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import pandas as pd
import torch

from lrsearch import Schedule, seed_peak
from lrsearch.config import load_config
from lrsearch.pipeline.comparison import final_seeds
from lrsearch.pipeline.range_test import preview
from lrsearch.splits import holdout, watch_split
from lrsearch.tasks import Data, Task, load_task, steps_per_epoch, subset
from lrsearch.training import train_task

TASKS = ("digits", "mnist1d", "charlm")
SCALES = (0.5, 1.0, 2.0)
DECAY = 0.3
VARIANTS = ("search-before", "search-after", "final")

Job = tuple[str, str, float, int, str, int]  # task, kind, peak, patience, variant, seed


@functools.cache
def _setup(name: str) -> tuple[Task, Data, dict[str, Data]]:
    """The task, its test set and the study's splits (made once per worker process)."""
    cfg = load_config(name)
    task = load_task(cfg.task)
    fit_idx, val_idx = holdout(task, cfg.validation_fraction, cfg.seed)
    p_fit, p_watch = watch_split(task, fit_idx, cfg.validation_fraction, cfg.seed)
    parts = {
        "all": task.train,
        "search-train": subset(task.train, fit_idx),
        "validation": subset(task.train, val_idx),
        "plateau-fit": subset(task.train, p_fit),
        "plateau-watch": subset(task.train, p_watch),
    }
    return task, task.load_test(), parts


def schedule(kind: str, peak: float, patience: int, total: int) -> Schedule:
    if kind == "plateau":
        return Schedule("plateau", max_lr=peak, base_lr=0.0, decay=DECAY, patience=patience)
    return Schedule("cosine", max_lr=peak, base_lr=0.0, warmup=max(1, round(0.05 * total)))


def run(job: Job) -> tuple[Job, float]:
    name, kind, peak, patience, variant, seed = job
    torch.set_num_threads(1)  # the packaged studies' threads = 1
    task, test, parts = _setup(name)
    watch: Data | None = None
    if variant == "final":
        train, score = (parts["search-train"], test) if kind == "plateau" else (parts["all"], test)
        watch = parts["validation"] if kind == "plateau" else None
    elif variant == "search-after" and kind == "plateau":
        train, score, watch = parts["plateau-fit"], parts["validation"], parts["plateau-watch"]
    else:  # the search before (plateau watches what it is scored on), or cosine's search
        train, score = parts["search-train"], parts["validation"]
    total = task.epochs * steps_per_epoch(len(train[0]), task.batch_size)
    result = train_task(
        task,
        train,
        schedule=schedule(kind, peak, patience, total),
        eval_data=score,
        plateau_data=watch,
        seed=seed,
        device=torch.device("cpu"),
        diagnostics=False,
    )
    return job, float(result.final)


def _jobs(name: str, seeds: int) -> list[Job]:
    cfg = load_config(name)
    rt = preview(cfg)
    top = seed_peak(rt.suggestion, rt.bounds.high)
    task = load_task(cfg.task)
    patiences = sorted({0, min(10, task.epochs // 4) // 2})
    jobs: list[Job] = []
    for scale in SCALES:
        peak = float(f"{top * scale:.3g}")
        for s in final_seeds(cfg.seed, seeds):
            for p in patiences:
                jobs += [(name, "plateau", peak, p, v, s) for v in VARIANTS]
            jobs += [(name, "cosine", peak, 0, v, s) for v in ("search-before", "final")]
    return jobs


def _mean(results: dict[Job, float], kind: str, peak: float, p: int, variant: str) -> float:
    """The mean over model seeds of one grid point's runs in one variant."""
    return statistics.mean(v for j, v in results.items() if j[1:5] == (kind, peak, p, variant))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--seeds", type=int, default=3, help="model seeds per grid point")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.workers < 1:
        parser.error("--seeds and --workers must be at least 1")
    began = time.perf_counter()
    jobs = [j for name in dict.fromkeys(args.tasks) for j in _jobs(name, args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        results = dict(pool.map(run, jobs))
    seconds = time.perf_counter() - began
    rows, summary = [], []
    for name in dict.fromkeys(args.tasks):
        sign = 1.0 if load_task(load_config(name).task).maximize else -1.0
        mine = {j: v for j, v in results.items() if j[0] == name}
        points = sorted({(k, peak, p) for _, k, peak, p, _, _ in mine})
        gaps: dict[str, list[float]] = {"plateau-before": [], "plateau-after": [], "cosine": []}
        for kind, peak, p in points:
            final = _mean(mine, kind, peak, p, "final")
            before = _mean(mine, kind, peak, p, "search-before")
            after = _mean(mine, kind, peak, p, "search-after") if kind == "plateau" else math.nan
            rows.append(
                {
                    "task": name,
                    "schedule": kind if kind == "cosine" else f"plateau, patience {p}",
                    "peak": peak,
                    "search, before": before,
                    "search, after": after,
                    "final (test)": final,
                }
            )
            if kind == "plateau":
                gaps["plateau-before"].append(sign * (before - final))
                gaps["plateau-after"].append(sign * (after - final))
            else:
                gaps["cosine"].append(sign * (before - final))
        cosine = statistics.mean(gaps["cosine"])
        summary.append(
            {
                "task": name,
                "cosine: search - final": cosine,
                "plateau: search - final, before": statistics.mean(gaps["plateau-before"]),
                "after": statistics.mean(gaps["plateau-after"]),
                "bias, before": statistics.mean(gaps["plateau-before"]) - cosine,
                "bias, after": statistics.mean(gaps["plateau-after"]) - cosine,
            }
        )
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))
    print()
    print(pd.DataFrame(summary).to_markdown(index=False, floatfmt="+.4f"))
    print(
        f"\nmean over {args.seeds} model seeds per grid point; bias = plateau's mean (search - "
        "final) minus cosine's, in the better direction (> 0: the search overrates plateau)"
    )
    print(
        f"{len(jobs)} runs in {seconds:.0f} s on {os.cpu_count()} CPUs; Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )
    print(f"command: .venv/bin/python scripts/bench_plateau_watch.py {shlex.join(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
