"""Is there a suggestion rule that meets issue 3's per-problem bars? Search the stored curves.

    .venv/bin/python scripts/search_range_rules.py bench_out/base [--top 10]

Reads a finished ``scripts/bench_range_test.py --out DIR`` run (``curves.json``, ``grid.json``;
nothing is trained) and asks where the grid's best constant LR lies relative to what can be
read off our range-test curve, and whether any rule of that curve reaches both per-problem bars
of the benchmark at once:

- regret: the rule's LR on seed 0's curve does no worse than both torch-lr-finder's and
  fastai's valley suggestions on every problem;
- stability: the rule's spread over the seeds is at most half of torch-lr-finder's on every
  problem.

Features, each a log10(LR) read off the curve smoothed as ``lrsearch.range_test`` smooths it,
interpolated between rungs (not rounded to one), so they can move by less than a rung:

- ``fallQ``: where the smoothed loss has done Q% of its fall from the start to its minimum;
- ``steepest``: where it falls fastest per decade (a rung: the ladder's own resolution);
- ``minimum``: its lowest point; ``vertex``: of a parabola through the bottom of the valley;
- ``riseR``: past the minimum, where it has climbed back R% of the fall;
- ``end``: the last rung run (the sweep stops on divergence).

Rules: ``feature + offset`` and ``a * feature1 + (1 - a) * feature2 + offset`` for every pair,
``a`` in 0.1 steps, offsets in 0.05-decade steps from -1.5 to +1. Regrets are interpolated
(piecewise-linear in log10 LR) from the grid's mean scores, for all three tools alike, so this
is a development tool: the benchmark's printed regrets come from real training runs. Problems
with no valley on any seed (the GRU) are left out: there is nothing to read a valley rule from.

Prints two tables (the features' offsets from the grid's best; the best rules found, with how
many problems each meets per bar) and the command that produced them.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from bench_range_test import _spread, grid_regrets

from lrsearch.range_test import read_curve
from lrsearch.range_test.curve import WATCH_WINDOW

FALLS = (0.25, 0.5, 0.75, 0.9)
RISES = (0.1, 0.25)
WEIGHTS = np.round(np.arange(0.0, 1.0001, 0.1), 2)
OFFSETS = np.round(np.arange(-1.5, 1.0001, 0.05), 2)


def _crossing(x: np.ndarray, s: np.ndarray, level: float, lo: int, hi: int) -> float:
    """log10 LR where ``s`` first crosses ``level`` between indices ``lo`` and ``hi``."""
    for i in range(lo, hi):
        a, b = s[i], s[i + 1]
        if min(a, b) <= level <= max(a, b) and a != b:
            return float(x[i] + (a - level) / (a - b) * (x[i + 1] - x[i]))
    return float(x[hi])


def features(lrs: np.ndarray, raw: np.ndarray) -> dict[str, float] | None:
    """The features of one stored curve; ``None`` when the range test found no valley."""
    sweep = read_curve(lrs, raw, "completed", 0.0)
    if sweep.no_valley:
        return None
    x, s = np.log10(sweep.lrs), sweep.losses
    i_min = int(np.argmin(s))
    start = float(np.median(raw[: max(WATCH_WINDOW, len(raw) // 10)]))  # as _read_curve
    top = max(start, float(s[: i_min + 1].max()))
    fall = top - float(s[i_min])
    out = {f"fall{round(q * 100)}": _crossing(x, s, top - q * fall, 0, i_min) for q in FALLS}
    out["steepest"] = math.log10(sweep.steepest)
    out["minimum"] = float(x[i_min])
    bottom = np.nonzero(s <= s[i_min] + 0.25 * fall)[0]
    lo, hi = int(bottom.min()), int(bottom.max())
    coef = np.polyfit(x[lo : hi + 1], s[lo : hi + 1], 2) if hi - lo >= 3 else (0.0, 0.0, 0.0)
    vertex = -coef[1] / (2 * coef[0]) if coef[0] > 0 else x[i_min]
    out["vertex"] = float(np.clip(vertex, x[lo], x[hi]))
    for r in RISES:
        out[f"rise{round(r * 100)}"] = _crossing(
            x, s, float(s[i_min]) + r * fall, i_min, len(s) - 1
        )
    out["end"] = float(x[-1])
    return out


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem with a valley on every seed: its features and what a rule must beat."""

    features: pd.DataFrame  # one row per seed (seed 0 first), one column per feature
    best: float  # log10 of the grid's best LR
    grid_x: np.ndarray  # log10 of the grid's LRs
    grid_regret: np.ndarray  # the grid's mean scores / the best
    regret_to_beat: float  # the lower of torch-lr-finder's and the valley's (seed 0)
    spread_bar: float  # half of torch-lr-finder's spread over the seeds, in decades

    def regret(self, log_lr: float) -> float:
        return float(np.interp(log_lr, self.grid_x, self.grid_regret))


def load(out_dir: Path) -> dict[str, Problem]:
    """Every problem of a benchmark run that has a valley on every seed."""
    curves = json.loads((out_dir / "curves.json").read_text())
    grids = json.loads((out_dir / "grid.json").read_text())
    problems: dict[str, Problem] = {}
    for name, by_seed in curves.items():
        runs = [by_seed[s] for s in sorted(by_seed, key=int)]
        feats = [
            features(np.asarray(c["ours"]["lrs"]), np.asarray(c["ours"]["losses_raw"]))
            for c in runs
        ]
        if any(f is None for f in feats):
            continue
        grid_x, grid_regret = grid_regrets(grids[name])
        seed0 = [runs[0][tool]["suggestion"] for tool in ("torch-lr-finder", "fastai-valley")]
        tlf = pd.Series([c["torch-lr-finder"]["suggestion"] for c in runs], dtype=float)
        problems[name] = Problem(
            features=pd.DataFrame(feats),
            best=math.log10(grids[name]["best_lr"]),
            grid_x=grid_x,
            grid_regret=grid_regret,
            regret_to_beat=min(
                float(np.interp(math.log10(lr), grid_x, grid_regret)) if lr > 0 else math.inf
                for lr in seed0
            ),
            spread_bar=_spread(tlf)[0] / 2,
        )
    return problems


def offsets_table(problems: dict[str, Problem]) -> pd.DataFrame:
    """Median (over seeds) decades from the grid's best LR to each feature, and the spread."""
    cols = {}
    for name, p in problems.items():
        delta = p.features - p.best
        cols[(name, "median")] = delta.median()
        cols[(name, "spread")] = delta.max() - delta.min()
    table = pd.DataFrame(cols)
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def search(problems: dict[str, Problem]) -> pd.DataFrame:
    """Score every rule of the family; one row per rule."""
    keys = list(next(iter(problems.values())).features.columns)
    pairs = [(k, k) for k in keys] + list(itertools.combinations(keys, 2))
    rows = []
    for k1, k2 in pairs:
        for a in WEIGHTS if k1 != k2 else (1.0,):
            base = {
                n: (a * p.features[k1] + (1 - a) * p.features[k2]).to_numpy(dtype=float)
                for n, p in problems.items()
            }
            for d in OFFSETS:
                regret_ok = stable_ok = 0
                worst = 0.0
                missed: list[str] = []
                for n, p in problems.items():
                    v = base[n] + d
                    r0 = p.regret(v[0])
                    worst = max(worst, r0 / p.regret_to_beat)
                    beats = r0 <= p.regret_to_beat
                    steady = v.max() - v.min() <= p.spread_bar
                    regret_ok += beats
                    stable_ok += steady
                    missed += [] if beats else [f"{n}:regret"]
                    missed += [] if steady else [f"{n}:spread"]
                rule = k1 if k1 == k2 else f"{a:.1f}*{k1} + {1 - a:.1f}*{k2}"
                rows.append(
                    {
                        "rule": f"{rule} {d:+.2f}",
                        "regret_bar": regret_ok,
                        "stability_bar": stable_ok,
                        "both": regret_ok + stable_ok,
                        "worst_regret_vs_best_other": worst,
                        "missed": " ".join(missed),
                    }
                )
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="a bench_range_test.py --out directory")
    parser.add_argument("--top", type=int, default=10, help="rules to print (default 10)")
    args = parser.parse_args(argv)
    if not (args.out_dir / "curves.json").is_file():
        parser.error(f"no curves.json in {args.out_dir}: run scripts/bench_range_test.py first")
    problems = load(args.out_dir)
    if not problems:
        parser.error(f"no problem in {args.out_dir} has a valley on every seed")
    n = len(problems)
    rules = search(problems)
    with pd.option_context(
        "display.width", 250, "display.max_columns", 50, "display.float_format", "{:.3g}".format
    ):
        print("## Decades from the grid's best LR to each feature (median over seeds; spread)\n")
        print(offsets_table(problems).to_string())
        print(f"\n## Best of {len(rules)} rules, problems meeting each bar (of {n})\n")
        best = rules.sort_values(
            ["both", "regret_bar", "worst_regret_vs_best_other"], ascending=[False, False, True]
        )
        print(best.head(args.top).to_string(index=False))
    all_met = int(((rules["regret_bar"] == n) & (rules["stability_bar"] == n)).sum())
    print(
        f"\nmost problems a rule meets: regret {rules['regret_bar'].max()}/{n}, "
        f"stability {rules['stability_bar'].max()}/{n}; rules meeting both on all: {all_met}"
    )
    print("command:", shlex.join(["python", "scripts/search_range_rules.py", *argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
