"""How well the range test knows when its reading fails, on the range-test suite.

    .venv/bin/python benchmarks/range_test/confidence.py [--out DIR] [--cached-only]

By hand, never in CI. Reads the suite's cached sweeps (``suite.py``; ``--cached-only`` skips the
problems whose cache is not complete yet) exactly as ``heldout.py`` does (each seed's
whole-ladder losses cut where lrsearch's divergence watch stops, read by ``read_curve`` for the
problem's run length), and judges each sweep alone, as a study's first range test is judged:
``RangeTestResult.doubts`` of that one sweep. Against each problem's grid of constant LRs it
scores:

- **covered**: the grid's best LR lies inside the sweep's ``[low, high]`` (a study searches
  there first);
- **regret**: the grid's mean score at the sweep's suggestion over its best (interpolated in log
  LR; 1 is the best constant LR, higher is worse);
- a **miss**: not covered, or a regret above 1.5.

A good rule doubts the misses and trusts the rest. The thresholds were not fitted on these
numbers (they were set from the built-in tasks' sweeps and one noise-dominated CNN); this only
measures them. Prints the per-problem table, the summary and the command.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import suite
import torch
from heldout import Case, load_case
from problems import PROBLEMS

from lrsearch.optimizers import plausible_span
from lrsearch.range_test import RangeTestResult

MISS_REGRET = 1.5


def _complete(name: str, out: Path) -> bool:
    """Whether the problem's cache holds every sweep and the whole grid (nothing to train)."""
    problem = PROBLEMS[name]
    cache = suite.Cache(out, problem)
    if len(cache.sweeps) < suite.SWEEP_SEEDS:
        return False
    keys = {(suite.lr_key(float(lr)), s) for lr in suite.grid_lrs(problem) for s in range(3)}
    return keys <= set(cache.runs)


def judge(case: Case) -> list[dict[str, object]]:
    """One row per sweep seed: its doubts, coverage and regret."""
    rows = []
    best = case.grid["best_lr"]
    for seed, sweep in enumerate(case.sweeps):
        lrs = sweep.lrs
        one = RangeTestResult.from_sweeps(
            [sweep],
            start_lr=float(lrs[0]),
            end_lr=suite.END_LR,
            num_iter=suite.NUM_ITER,
            total_steps=case.total_steps,
        )
        covered = sweep.low <= best <= sweep.high
        regret = float(case.interp_regret(sweep.suggestion))
        rows.append(
            {
                "problem": case.name,
                "family": case.problem.family,
                "seed": seed,
                "doubts": ",".join(d.code for d in one.doubts),
                "snr": sweep.signal_to_noise,
                "valley_rungs": sweep.valley_rungs,
                "covered": covered,
                "regret": regret,
                "miss": (not covered) or regret > MISS_REGRET,
            }
        )
    return rows


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Sweeps, misses, and how the doubts split them."""
    doubted = frame["doubts"] != ""
    out = []
    for label, part in (("all", frame), ("trusted", frame[~doubted]), ("doubted", frame[doubted])):
        out.append(
            {
                "sweeps": label,
                "n": len(part),
                "covered": f"{part['covered'].mean():.0%}" if len(part) else "",
                "median regret": f"{part['regret'].median():.3f}" if len(part) else "",
                "worst regret": f"{part['regret'].max():.3f}" if len(part) else "",
                "misses": int(part["miss"].sum()),
            }
        )
    return pd.DataFrame(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=suite.DEFAULT_OUT)
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--cached-only", action="store_true")
    args = parser.parse_args(argv)
    suite.setup(1)
    began = time.perf_counter()
    names = [n for n in args.problems if not args.cached_only or _complete(n, args.out)]
    rows = [row for name in names for row in judge(load_case(PROBLEMS[name], args.out))]
    frame = pd.DataFrame(rows)
    per_problem = frame.groupby(["family", "problem"], sort=False).agg(
        doubted=("doubts", lambda d: int((d != "").sum())),
        codes=("doubts", lambda d: " ".join(sorted({c for v in d for c in v.split(",") if c}))),
        min_snr=("snr", "min"),
        covered=("covered", "sum"),
        median_regret=("regret", "median"),
        misses=("miss", "sum"),
    )
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(per_problem.to_markdown(floatfmt=".3g"))
        print()
        print(summary(frame).to_markdown(index=False))
    missed = frame[frame["miss"]]
    flagged = int((missed["doubts"] != "").sum())
    print(
        f"\n{len(names)} problems, {len(frame)} sweeps; misses doubted: {flagged} of "
        f"{len(missed)}; trusted sweeps that missed: {len(missed) - flagged}; sweeps doubted: "
        f"{int((frame['doubts'] != '').sum())} ({(frame['doubts'] != '').mean():.0%})"
    )
    if not math.isfinite(frame["regret"].max()):
        print("note: some regrets are not finite (a grid score was)")
    print("\nThe best constant LR of each problem's grid against the plausible span a study")
    print("searches when its range test cannot be read (optimizers.plausible_span):")
    spans = []
    for name in names:
        problem = PROBLEMS[name]
        best = suite.grid_of(problem, suite.Cache(args.out, problem))["best_lr"]
        # The suite's optimizers take a model: one of its own shows which kind it makes.
        span = plausible_span(lambda _, lr, p=problem: p.optimizer(torch.nn.Linear(1, 1), lr))
        spans.append(
            {
                "problem": name,
                "optimizer": problem.optimizer_name,
                "best LR": f"{best:.3g}",
                "span": f"{span.low:g}..{span.high:g}",
                "decades inside": round(
                    min(math.log10(best / span.low), math.log10(span.high / best)), 2
                ),
            }
        )
    print(pd.DataFrame(spans).to_markdown(index=False))
    command = "python benchmarks/range_test/confidence.py " + shlex.join(sys.argv[1:])
    print(f"\n{time.perf_counter() - began:.0f} s; command: {command.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
