"""How high can a schedule in lrsearch's space take mnist1d's test accuracy? An oracle grid.

    .venv/bin/python scripts/bench_mnist1d_ceiling.py [--seeds 5] [--skip-seeds 0] [--workers 2]
        [--kinds constant cosine ...] [--peaks 0.05 0.1 ...]

A benchmark to run by hand (about 5 minutes on 2 cores), never part of the test suite. Issue
14 asks the tuned schedule for >= 96.0% mean test accuracy on mnist1d within its 3000 steps.
This trains the packaged task as the final comparison does (all of ``train``, the task's SGD
with momentum, 75 epochs x 40 steps, model seeds ``final_seeds(0, S)``) with a grid of the
schedules people use, built by ``lrsearch.Schedule`` on torch's schedulers: constant, warm-up
(5%) + cosine to 0, 1cycle (from peak / 25, torch's default), WSD (5% warm-up, last 20% down)
and inverse square root (5% warm-up), each at peaks 0.05, 0.1, 0.2 and 0.4 (the packaged
study's range test reads bounds 0.00066 .. 0.42); ``--kinds onecycle_low``: 1cycle from the
range test's low (0.00066), as the search's enqueued 1cycle starts.

It reads the test set for every grid point and reports the best: an oracle's choice, which no
search may make. It answers one question: whether the goal is within what this model,
optimizer and budget can do at all. Table: mean ± std test accuracy per schedule and peak.
The best of a grid read on the same seeds it is scored on is biased up (the winner's curse):
``--skip-seeds N`` scores a grid on fresh model seeds, after the first N, to re-measure a
best point without that bias.
"""

from __future__ import annotations

import argparse
import functools
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

from lrsearch.pipeline.comparison import final_seeds
from lrsearch.schedules import Schedule
from lrsearch.tasks import Data, Task, load_task, steps_per_epoch
from lrsearch.training import train_task

PEAKS = (0.05, 0.1, 0.2, 0.4)
KINDS = ("constant", "cosine", "onecycle", "wsd", "inverse_sqrt", "onecycle_low")
#: The packaged study's range-test low on mnist1d: where its 1cycle seed starts (the space's
#: ``base_lr`` is drawn from [low / 10, low], so a peak / 25 start is clipped to ``low``).
LOW = 0.00066
GOAL = 0.96


def schedule(kind: str, peak: float, total: int) -> Schedule:
    warmup = max(1, round(0.05 * total))
    if kind == "cosine":
        return Schedule("cosine", max_lr=peak, base_lr=0.0, warmup=warmup)
    if kind == "wsd":
        return Schedule("wsd", max_lr=peak, base_lr=0.0, warmup=warmup, cooldown=0.2)
    if kind == "inverse_sqrt":
        return Schedule("inverse_sqrt", max_lr=peak, warmup=warmup)
    if kind == "onecycle":  # torch's OneCycleLR defaults: starts at peak / 25
        return Schedule("onecycle", max_lr=peak, base_lr=peak / 25)
    if kind == "onecycle_low":  # the search's 1cycle seed: starts at the range test's low
        return Schedule("onecycle", max_lr=peak, base_lr=min(LOW, peak / 25))
    return Schedule(kind, max_lr=peak)


@functools.cache
def _task() -> tuple[Task, Data]:
    """The task and its test set, made once per worker process (1.5 s each time)."""
    task = load_task("mnist1d")
    return task, task.load_test()


def run(job: tuple[str, float, int]) -> tuple[str, float, int, float]:
    kind, peak, seed = job
    torch.set_num_threads(1)  # the packaged study's threads = 1
    task, test = _task()
    total = task.epochs * steps_per_epoch(task.n_train, task.batch_size)
    result = train_task(
        task,
        task.train,
        schedule=schedule(kind, peak, total),
        eval_data=test,
        seed=seed,
        device=torch.device("cpu"),
        diagnostics=False,
    )
    return kind, peak, seed, float(result.final)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="model seeds per grid point")
    parser.add_argument(
        "--skip-seeds", type=int, default=0, help="start after the first N model seeds"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS[:5]))
    parser.add_argument("--peaks", nargs="+", type=float, default=list(PEAKS))
    args = parser.parse_args(argv)
    if args.seeds < 2 or args.workers < 1 or args.skip_seeds < 0:
        parser.error("--seeds must be at least 2, --workers at least 1, --skip-seeds at least 0")
    if any(not 0 < p < float("inf") for p in args.peaks):
        parser.error("--peaks must be positive finite numbers")
    kinds, peaks = tuple(dict.fromkeys(args.kinds)), tuple(dict.fromkeys(args.peaks))
    seeds = final_seeds(0, args.skip_seeds + args.seeds)[args.skip_seeds :]
    jobs = [(k, p, s) for k in kinds for p in peaks for s in seeds]
    for kind in kinds:  # a bad grid point fails here, not minutes into the pool
        schedule(kind, peaks[0], 3000)
    began = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run, jobs))
    seconds = time.perf_counter() - began
    rows = []
    for kind in kinds:
        for peak in peaks:
            accs = [a for k, p, _, a in results if k == kind and p == peak]
            rows.append(
                {
                    "schedule": kind,
                    "peak": peak,
                    "mean": statistics.mean(accs),
                    "std": statistics.stdev(accs),
                    "min": min(accs),
                }
            )
    frame = pd.DataFrame(rows).sort_values("mean", ascending=False)
    print(frame.to_markdown(index=False, floatfmt=".4f"))
    best = frame.iloc[0]
    print(
        f"\noracle best: {best['schedule']} at {best['peak']}: {best['mean']:.4f} mean test "
        f"accuracy over {args.seeds} seeds {seeds[0]}-{seeds[-1]} (goal {GOAL}: "
        f"{'within reach' if best['mean'] >= GOAL else 'not reached by any grid point'})"
    )
    print(
        f"{len(jobs)} runs in {seconds:.0f} s on {os.cpu_count()} CPUs; Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )
    print(f"command: .venv/bin/python scripts/bench_mnist1d_ceiling.py {shlex.join(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
