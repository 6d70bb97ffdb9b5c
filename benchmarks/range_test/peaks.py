"""Where should a decaying schedule peak? The study's seeds against the range test's readings.

    .venv/bin/python benchmarks/range_test/peaks.py [--kind cosine|onecycle] [--problems NAME ...]
        [--out DIR] [--no-train | --train CANDIDATE ...]

By hand, never in CI. The study enqueues five schedules from the literature (warm-up +
cosine, 1cycle, SGDR, CLR, warmup-stable-decay) before the sampler takes over, and each needs
a peak learning rate. This measures, on the range-test suite's 27 problems (``problems.py``),
what that peak should be read from:

- **a cosine grid per problem** (cached beside the suite's, ``DIR/cache/NAME-KEY-peaks.jsonl``):
  the seeds' warm-up + cosine schedule (:func:`lrsearch.space.seed_params`'s: one epoch of
  linear warm-up when the run has 5 epochs or more, then cosine from the peak to a tenth of
  it, built by :class:`lrsearch.schedules.Schedule` on ``torch.optim.lr_scheduler``) at peaks
  a quarter decade apart from half a decade under the constant grid's best LR to 1.5 decades
  over it (widened while the best is at an end), x seeds 0..2, each run as long as the
  suite's fixed-budget runs and scored the same way (final validation loss, capped at the
  untrained model's);
- **the candidates**, each read from lrsearch's own reading of sweep seed ``s`` (cut where
  its divergence watch stops, as ``heldout.py`` reads it): the range test's ``high`` (what
  the seeds peak at today), the suggestion for the run's length (the constant LR, read with
  the rule fitted without the problem's family), and ``min(high, suggestion x 10**k)`` with
  ``k`` fitted leave-one-family-out (the lowest mean log regret on the other five families,
  interpolated on their cosine grids);
- **regret** of seed ``s``'s cosine run at each candidate's peak over the cosine grid's best
  mean, trained (cached beside the grid; ``--no-train`` interpolates the grid instead, for
  development). Also printed: how much the best cosine beats the best constant LR.

``--kind onecycle`` measures the same for the seeds' 1cycle (from a 25th of the peak, up over
30% of the run, then down, torch's defaults; cached in ``NAME-KEY-onecycle-peaks.jsonl``),
with three more candidates: ``seed_peak`` at the cosine's shipped ``k``, and the two readings
fastai's users take for ``fit_one_cycle``: the steepest fall and a tenth of the minimum.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import heldout
import numpy as np
import pandas as pd
import suite
from problems import FAMILIES, PROBLEMS, Data, Problem

from lrsearch.schedules import Schedule
from lrsearch.space import (
    COSINE_FLOOR,
    ONECYCLE_DIV,
    SEED_PEAK_DECADES,
    seed_peak,
    warmup_range,
)

logger = logging.getLogger("range_test_suite")

PEAK_STEP = 0.25  # decades between the cosine grid's peaks
PEAK_SPAN = (-2, 6)  # in steps of PEAK_STEP around the constant grid's best LR
MAX_WIDEN = 8
KS = np.round(np.arange(0.0, 2.001, 0.1), 2)  # decades over the suggestion


def cosine_schedule(problem: Problem, data: Data, peak: float) -> Schedule:
    """The seeds' warm-up + cosine at ``peak``: a warm-up of one epoch when the run has a
    warm-up range (5 epochs or more), down to a tenth of the peak."""
    spe = problem.steps_per_epoch(data)
    warmup = min(1, warmup_range(problem.epochs)[1]) * spe
    return Schedule("cosine", max_lr=peak, base_lr=peak * COSINE_FLOOR, warmup=warmup)


def onecycle_schedule(problem: Problem, data: Data, peak: float) -> Schedule:
    """The seeds' 1cycle at ``peak``: from a 25th of it (torch's default ``div_factor``) up over
    the first 30% of the run, then down (torch's defaults)."""
    del problem, data
    return Schedule("onecycle", max_lr=peak, base_lr=peak / ONECYCLE_DIV)


SCHEDULES = {"cosine": cosine_schedule, "onecycle": onecycle_schedule}


def train_peaked(
    problem: Problem, data: Data, peak: float, seed: int, kind: str = "cosine"
) -> dict[str, Any]:
    """``suite.train_fixed`` with the seeds' ``kind`` schedule at ``peak`` (same batches, same
    budget, same score)."""
    record = suite.train_fixed(
        problem, data, peak, seed, schedule=SCHEDULES[kind](problem, data, peak)
    )
    return {"kind": kind, "lr_key": suite.lr_key(peak), **record}


class PeakCache:
    """One problem's runs of one seed schedule, read from and appended to its JSONL file."""

    def __init__(self, out: Path, problem: Problem, kind: str = "cosine") -> None:
        self.kind = kind
        parts = [
            suite.problem_key(problem),
            suite._source(train_peaked),
            suite._source(SCHEDULES[kind]),
            suite._source(Schedule),
        ]
        key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
        # cosine keeps its file name (the grid the docs' table was read from)
        suffix = "peaks" if kind == "cosine" else f"{kind}-peaks"
        self.path = out / "cache" / f"{problem.name}-{key}-{suffix}.jsonl"
        self.runs: dict[tuple[str, int], dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                record = json.loads(line)
                self.runs[(record["lr_key"], record["seed"])] = record

    def run(self, problem: Problem, data: Data, peak: float, seed: int) -> dict[str, Any]:
        """The cached run at ``peak`` and ``seed``, trained now if it is not there."""
        key = (suite.lr_key(peak), seed)
        if key not in self.runs:
            record = train_peaked(problem, data, peak, seed, self.kind)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            self.runs[key] = record
            logger.info(
                "%s %s peak %.4g seed %d: score %.4g (%.1fs)",
                problem.name,
                self.kind,
                peak,
                seed,
                record["score"],
                record["seconds"],
            )
        return self.runs[key]

    def means(self, problem: Problem, data: Data, peaks: Sequence[float]) -> np.ndarray:
        return np.array(
            [
                np.mean([self.run(problem, data, p, s)["score"] for s in range(suite.GRID_SEEDS)])
                for p in peaks
            ]
        )


def peak_grid(
    problem: Problem, out: Path, kind: str = "cosine"
) -> tuple[PeakCache, dict[str, Any]]:
    """The problem's grid of ``kind`` (computed now where missing): peaks, mean scores, best."""
    cache = suite.compute(problem, out)
    best_constant = suite.grid_of(problem, cache)
    data = problem.load()
    peaks_cache = PeakCache(out, problem, kind)
    centre = best_constant["best_lr"]
    peaks = [centre * 10 ** (PEAK_STEP * k) for k in range(PEAK_SPAN[0], PEAK_SPAN[1] + 1)]
    for _ in range(MAX_WIDEN):
        means = peaks_cache.means(problem, data, peaks)
        best = int(np.argmin(means))
        if best == 0:
            peaks.insert(0, peaks[0] / 10**PEAK_STEP)
        elif best == len(peaks) - 1:
            peaks.append(peaks[-1] * 10**PEAK_STEP)
        else:
            break
    means = peaks_cache.means(problem, data, peaks)
    best = int(np.argmin(means))
    grid = {
        "lrs": [float(p) for p in peaks],
        "mean_score": [float(m) for m in means],
        "best_lr": float(peaks[best]),
        "best_score": float(means[best]),
        "constant_best_lr": float(best_constant["best_lr"]),
        "constant_best_score": float(best_constant["best_score"]),
    }
    return peaks_cache, grid


def _interp(grid: dict[str, Any], lr: float | np.ndarray) -> np.ndarray:
    """The grid's mean regret at ``lr``, interpolated in log10 LR (ends held)."""
    x = np.log10(grid["lrs"])
    y = np.asarray(grid["mean_score"]) / grid["best_score"]
    return np.interp(np.log10(lr), x, y)


def fit_k(rows: Sequence[dict[str, Any]]) -> float:
    """The ``k`` with the lowest mean log regret over these problems (seeds averaged)."""
    cost = np.zeros(len(KS))
    for row in rows:
        sug, high = np.array(row["suggestion"]), np.array(row["high"])
        peaks = np.minimum(high[None, :], sug[None, :] * 10 ** KS[:, None])
        cost += np.log(_interp(row["grid"], peaks)).mean(axis=1)
    return float(KS[int(np.argmin(cost))])


def main(argv: Sequence[str] | None = None) -> int:
    """Compute the grids of ``--kind``, fit ``k`` leave-one-family-out, print the table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=suite.DEFAULT_OUT)
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument(
        "--kind",
        choices=list(SCHEDULES),
        default="cosine",
        help="the seed schedule whose peak is measured (default cosine)",
    )
    parser.add_argument("--grids-only", action="store_true", help="compute the grids, no table")
    parser.add_argument(
        "--no-train", action="store_true", help="interpolate the grid at the candidates' peaks"
    )
    parser.add_argument(
        "--train",
        nargs="+",
        metavar="CANDIDATE",
        help="train only these candidates' peaks (e.g. high steepest); interpolate the others",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    suite.setup(args.threads)
    began = time.perf_counter()
    grids = {name: peak_grid(PROBLEMS[name], args.out, args.kind) for name in args.problems}
    if args.grids_only:
        logger.info("grids done in %.0fs", time.perf_counter() - began)
        return 0
    cases = [heldout.load_case(PROBLEMS[name], args.out) for name in args.problems]
    rules = heldout.heldout_rules(cases)
    rows = []
    for case in cases:
        rule = rules[case.problem.family]
        seeds = list(heldout.SCORED_SEEDS)
        rows.append(
            {
                "case": case,
                "grid": grids[case.name][1],
                "suggestion": [
                    rule.suggest(case.sweeps[s], total_steps=case.total_steps) for s in seeds
                ],
                "high": [case.sweeps[s].high for s in seeds],
            }
        )
    ks = {f: fit_k([r for r in rows if r["case"].problem.family != f]) for f in FAMILIES}
    table = []
    for row in rows:
        case, grid = row["case"], row["grid"]
        cache = grids[case.name][0]
        data = case.problem.load()
        k = ks[case.problem.family]
        pairs = list(zip(row["suggestion"], row["high"], strict=True))
        candidates = {
            "high": row["high"],
            "suggestion": row["suggestion"],
            "fitted": [seed_peak(sug, high, decades=k) for sug, high in pairs],
        }
        if args.kind != "cosine":
            sweeps = [row["case"].sweeps[s] for s in heldout.SCORED_SEEDS]
            candidates["seed_peak"] = [seed_peak(sug, high) for sug, high in pairs]
            # fastai's readings for fit_one_cycle: the steepest fall, a tenth of the minimum
            candidates["steepest"] = [sw.steepest for sw in sweeps]
            candidates["minimum/10"] = [sw.minimum / 10 for sw in sweeps]
        line: dict[str, Any] = {
            "problem": case.name,
            "family": case.problem.family,
            "optimizer": case.problem.optimizer_name,
            "steps": case.total_steps,
            "schedule / constant best": grid["best_score"] / grid["constant_best_score"],
            "best peak / best constant LR": grid["best_lr"] / grid["constant_best_lr"],
            "k": k,
        }
        for name, peaks in candidates.items():
            scores = []
            interpolate = args.no_train or (args.train is not None and name not in args.train)
            for s, peak in zip(heldout.SCORED_SEEDS, peaks, strict=True):
                if interpolate and (suite.lr_key(peak), s) not in cache.runs:
                    scores.append(float(_interp(grid, peak)) * grid["best_score"])
                else:
                    scores.append(cache.run(case.problem, data, peak, s)["score"])
            line[f"regret at {name}"] = float(np.mean(scores)) / grid["best_score"]
            line[f"{name} / best peak"] = float(np.median(peaks)) / grid["best_lr"]
        table.append(line)
    frame = pd.DataFrame(table).set_index("problem")
    regrets = [f"regret at {name}" for name in candidates]
    cols = [
        "family",
        "optimizer",
        "steps",
        *regrets,
        "k",
        "high / best peak",
        "suggestion / best peak",
        "schedule / constant best",
    ]
    frame.to_csv(args.out / ("peaks.csv" if args.kind == "cosine" else f"peaks-{args.kind}.csv"))
    print(f"seed schedule: {args.kind}")
    print(frame[cols].to_markdown(floatfmt=".3f"))
    summary = frame[regrets]
    print("\nmedian:", summary.median().round(3).to_dict())
    print("worst: ", summary.max().round(3).to_dict())
    print("problems with regret > 1.5:", (summary > 1.5).sum().to_dict())
    print("k fitted with each family left out:", ks)
    shipped = f"shipped for cosine: SEED_PEAK_DECADES = {SEED_PEAK_DECADES}"
    print(f"k on all families: {fit_k(rows)} ({shipped})")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n{len(frame)} problems; {time.perf_counter() - began:.0f}s; load average {load}")
    print("command:", shlex.join(["python", "benchmarks/range_test/peaks.py", *argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
