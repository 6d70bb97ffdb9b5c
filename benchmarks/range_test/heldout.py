"""Held-out calibration of the range test's suggestion rule, and the table that scores it.

    .venv/bin/python benchmarks/range_test/heldout.py [--out DIR] [--no-train] [--no-timing]

By hand, never in CI. Reads the suite that ``suite.py`` computed and cached (run that first;
anything missing is computed now), and:

1. **Reads every sweep with lrsearch itself**: the whole-ladder raw losses of each seed are cut
   where lrsearch's divergence watch (``DivergenceWatch``, replayed step by step) would have
   stopped the sweep, and read by ``read_curve``: the same numbers a user's ``range_test``
   call produces.
2. **Fits the rule leave-one-family-out**: for each of the 6 families, a
   :class:`lrsearch.range_test.curve.Rule` (its anchor, offset, slope in the run's length, and
   cap below the blow-up) is chosen on the other families' problems by the lowest mean log
   regret over their seeds 0..2 (regret interpolated, piecewise-linearly in log10 LR, from
   each problem's grid: fitting trains nothing), then applied to the left-out family only.
   The rule shipped as ``SUGGESTION_RULE`` is the same fit on all families; it is not scored
   here (it has seen every problem).
3. **Scores on real training runs**: for every problem and each seed ``s`` in 0..2, each tool's
   suggestion from sweep seed ``s`` is trained from seed ``s``'s model for the problem's fixed
   budget (cached beside the grid); ``regret = mean score / best grid mean``. Tools: lrsearch
   with the held-out rule (``total_steps`` = the problem's run length), torch-lr-finder's
   steepest point, fastai's valley, Lightning's steepest point (``peers.py``).
4. **Spread**: ``log10(max / min)`` of each tool's suggestion over sweep seeds 0..4.
   **Coverage**: whether the grid's best LR lies in lrsearch's ``[low, high]`` (seed 0, and
   the fraction of the 5 seeds). **Speed**: lrsearch's ``range_test`` as a user calls it
   against torch-lr-finder 0.2.2, same ladder (``num_iter=100``), interleaved per seed (the
   order alternating), median of the 5 per-seed ratios; re-timed with the current code and
   cached under a hash of ``lrsearch/range_test/``.

Prints the per-problem table (markdown, for docs/benchmarks.md), the medians and worst cases, each
bar of issue 12 met or missed, the fitted rules per fold, and the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import itertools
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import peers
import suite
import torch
from problems import FAMILIES, PROBLEMS, Problem

from lrsearch.range_test import Sweep, read_curve
from lrsearch.range_test.curve import ANCHORS, SUGGESTION_RULE, Rule
from lrsearch.range_test.sweep import DivergenceWatch

logger = logging.getLogger("range_test_heldout")

TOOLS = ("lrsearch", *peers.PEERS)
SCORED_SEEDS = range(suite.GRID_SEEDS)  # sweep seed s is trained from init seed s
OFFSETS = np.round(np.arange(-2.0, 1.501, 0.1), 2)
SLOPES = (0.0, -0.25, -0.5, -0.75, -1.0)
FIT_ANCHORS = ("midway",)
CAPS = np.round(np.arange(-2.5, 0.001, 0.1), 2)


# -- what the suite holds ----------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One problem of the suite, as cached, with every sweep read by lrsearch."""

    problem: Problem
    cache: suite.Cache
    grid: dict[str, Any]
    total_steps: int
    sweeps: list[Sweep]  # lrsearch's reading of sweep seeds 0..4 (default rule)
    peer_lrs: dict[str, list[float]]  # each peer's suggestion for sweep seeds 0..4

    @property
    def name(self) -> str:
        return self.problem.name

    def interp_regret(self, lr: float | np.ndarray) -> np.ndarray:
        """The grid's mean score at ``lr`` over its best, interpolated in log10 LR."""
        x = np.log10(self.grid["lrs"])
        y = np.asarray(self.grid["mean_score"]) / self.grid["best_score"]
        return np.interp(np.log10(lr), x, y)


def replay_stop(raw: Sequence[float]) -> tuple[int, str]:
    """Where lrsearch's sweep would have stopped on these raw losses, and why."""
    watch = DivergenceWatch.for_ladder(suite.NUM_ITER, 0.5)
    for i, value in enumerate(raw):
        if not math.isfinite(value):
            return i, "non-finite"
        if watch.diverged(float(value)):
            return i + 1, "diverged"
    return len(raw), "completed"


def load_case(problem: Problem, out: Path) -> Case:
    """The problem's cached suite (computed now if missing), read."""
    cache = suite.compute(problem, out)
    data = problem.load()
    total = problem.total_steps(data)
    sweeps, peer_lrs = [], {p: [] for p in peers.PEERS}
    for seed in range(suite.SWEEP_SEEDS):
        record = cache.sweeps[seed]
        lrs, raw = np.asarray(record["full"]["lrs"]), np.asarray(record["full"]["losses_raw"])
        n, reason = replay_stop(raw)
        sweeps.append(read_curve(lrs[:n], raw[:n], stop_reason=reason, total_steps=total))
        tlf = record["tlf"]
        peer_lrs["torch-lr-finder"].append(peers.tlf_steepest(tlf["lrs"], tlf["losses"]))
        peer_lrs["fastai-valley"].append(peers.fastai_valley(lrs, raw))
        peer_lrs["lightning"].append(peers.lightning_steepest(lrs, raw))
    return Case(problem, cache, suite.grid_of(problem, cache), total, sweeps, peer_lrs)


# -- fitting -------------------------------------------------------------------------------------


def fit(cases: Sequence[Case]) -> Rule:
    """The rule with the lowest mean log regret over these cases (each case's seeds 0..2
    averaged, then the cases averaged: every problem weighs the same), regrets interpolated."""
    rows = [(c, s) for c in cases for s in SCORED_SEEDS]
    sweeps = [c.sweeps[s] for c, s in rows]
    flat = np.array([s.no_valley for s in sweeps])
    # A sweep with no valley is read from its edge alone (the anchor plays no part).
    log = {
        a: np.where(
            flat, np.inf, [math.log10(getattr(s, a)) if not s.no_valley else 0.0 for s in sweeps]
        )
        for a in ANCHORS
    }
    edge = np.log10([s.edge for s in sweeps])
    low, high = np.log10([s.low for s in sweeps]), np.log10([s.high for s in sweeps])
    ref = SUGGESTION_RULE.reference_steps
    log_t = np.log10([c.total_steps / ref for c, _ in rows])
    by_case = [(c, np.array([i for i, (d, _) in enumerate(rows) if d is c])) for c in cases]
    best: tuple[float, Rule] | None = None
    for anchor, slope in itertools.product(FIT_ANCHORS, SLOPES):
        base = log[anchor] + slope * log_t  # (rows,)
        for cap in CAPS:
            capped = np.minimum(base[None, :] + OFFSETS[:, None], edge[None, :] + cap)
            chosen = np.clip(capped, low, high)  # (offsets, rows)
            cost = np.zeros(len(OFFSETS))
            for case, idx in by_case:
                cost += np.log(case.interp_regret(10 ** chosen[:, idx])).mean(axis=1)
            i = int(np.argmin(cost))
            if best is None or cost[i] < best[0]:
                rule = Rule(
                    anchor=anchor,
                    offset=float(OFFSETS[i]),
                    slope=slope,
                    cap=float(cap),
                    reference_steps=ref,
                )
                best = (float(cost[i]), rule)
    assert best is not None
    return best[1]


def heldout_rules(cases: Sequence[Case]) -> dict[str, Rule]:
    """One rule per family, fitted on every other family."""
    return {f: fit([c for c in cases if c.problem.family != f]) for f in FAMILIES}


# -- scoring -------------------------------------------------------------------------------------


def suggestions(case: Case, rule: Rule) -> dict[str, list[float]]:
    """Every tool's suggestion for sweep seeds 0..4 (lrsearch read with ``rule``)."""
    ours = [rule.suggest(s, total_steps=case.total_steps) for s in case.sweeps]
    return {"lrsearch": ours, **case.peer_lrs}


def regret(case: Case, lrs: Sequence[float], *, train: bool) -> float:
    """Mean score of seed s trained at ``lrs[s]`` (s in 0..2) over the grid's best.

    ``train=False`` reads the cached runs only and interpolates the grid where one is missing
    (development only).
    """
    data = case.problem.load()
    scores = []
    for s in SCORED_SEEDS:
        lr = lrs[s]
        if not (math.isfinite(lr) and lr > 0):  # no suggestion: learned nothing
            scores.append(
                case.cache.run(case.problem, data, case.grid["lrs"][0], s)["initial_val_loss"]
            )
        elif train or (suite.lr_key(lr), s) in case.cache.runs:
            scores.append(case.cache.run(case.problem, data, lr, s)["score"])
        else:
            scores.append(float(case.interp_regret(lr)) * case.grid["best_score"])
    return float(np.mean(scores)) / case.grid["best_score"]


def spread(lrs: Sequence[float]) -> float:
    """``log10(max / min)`` of the finite positive suggestions (NaN with fewer than 2)."""
    good = [v for v in lrs if math.isfinite(v) and v > 0]
    return math.log10(max(good) / min(good)) if len(good) > 1 else math.nan


def _code_hash() -> str:
    # lrsearch.range_test is the function; the package is in sys.modules under that name.
    root = Path(importlib.import_module("lrsearch.range_test").__file__ or "").parent
    digest = hashlib.sha256()
    for path in sorted(root.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def timing(case: Case, out: Path) -> dict[str, Any]:
    """lrsearch's range test against torch-lr-finder's, timed interleaved on seeds 0..4:
    ``median_ratio`` (of lrsearch's time over torch-lr-finder's) and each run's seconds,
    steps and whether it restored the model and the optimizer's LR exactly."""
    name = f"timing-{case.name}-{suite.problem_key(case.problem)}-{_code_hash()}.json"
    path = out / "cache" / name
    if path.exists():
        return dict(json.loads(path.read_text()))
    data = case.problem.load()
    suite.run_ours(case.problem, data, 10_000)  # warm-up, untimed
    suite.run_tlf(case.problem, data, 10_000)
    ratios, rows = [], []
    for seed in range(suite.SWEEP_SEEDS):
        order = ("ours", "tlf") if seed % 2 == 0 else ("tlf", "ours")
        got = {
            t: (suite.run_ours if t == "ours" else suite.run_tlf)(case.problem, data, seed)
            for t in order
        }
        ratios.append(got["ours"]["seconds"] / got["tlf"]["seconds"])
        rows.append({t: {k: got[t][k] for k in ("seconds", "iters", "restored")} for t in got})
    result = {"median_ratio": float(np.median(ratios)), "ratios": ratios, "runs": rows}
    path.write_text(json.dumps(result))
    return result


def score(
    cases: Sequence[Case], rules: dict[str, Rule], out: Path, *, train: bool, timed: bool
) -> pd.DataFrame:
    """One row per problem: regret, spread and suggestion per tool; coverage; speed."""
    rows = []
    for case in cases:
        lrs = suggestions(case, rules[case.problem.family])
        s0 = case.sweeps[0]
        best = case.grid["best_lr"]
        row: dict[str, Any] = {
            "problem": case.name,
            "family": case.problem.family,
            "optimizer": case.problem.optimizer_name,
            "batch": case.problem.batch_size,
            "steps": case.total_steps,
            "best_lr": best,
        }
        for tool in TOOLS:
            row[f"regret {tool}"] = regret(case, lrs[tool], train=train)
        for tool in TOOLS:
            row[f"spread {tool}"] = spread(lrs[tool])
        row["covered"] = bool(s0.low <= best <= s0.high)
        row["covered seeds"] = float(np.mean([s.low <= best <= s.high for s in case.sweeps]))
        row["no valley seeds"] = int(sum(s.no_valley for s in case.sweeps))
        timed_runs = timing(case, out) if timed else None
        row["time ours/tlf"] = timed_runs["median_ratio"] if timed_runs else math.nan
        row["restored"] = (
            all(r["ours"]["restored"] for r in timed_runs["runs"]) if timed_runs else None
        )
        row["lr lrsearch s0"] = lrs["lrsearch"][0]
        row["lr torch-lr-finder s0"] = lrs["torch-lr-finder"][0]
        rows.append(row)
        logger.info(
            "%s: regret %s",
            case.name,
            " ".join(f"{t} {row[f'regret {t}']:.3f}" for t in TOOLS),
        )
    return pd.DataFrame(rows).set_index("problem")


# -- reporting -----------------------------------------------------------------------------------


def bars(table: pd.DataFrame) -> list[str]:
    """Issue 12's bars, each met or missed, with the problems that miss."""
    ours = table["regret lrsearch"]
    medians = {t: float(table[f"regret {t}"].median()) for t in TOOLS}
    better_peer = table[["regret torch-lr-finder", "regret fastai-valley"]].min(axis=1)
    limit = np.maximum(1.5, 1.5 * better_peer)
    worst = [p for p in table.index if not ours[p] <= limit[p]]
    spread_ours = float(table["spread lrsearch"].median())
    spread_tlf = float(table["spread torch-lr-finder"].median())
    uncovered = [p for p in table.index if not table.loc[p, "covered"]]
    speed = float(table["time ours/tlf"].median())
    slow = [p for p in table.index if not table.loc[p, "time ours/tlf"] <= 1.0]
    peer_medians = ", ".join(f"{t} {medians[t]:.3f}" for t in peers.PEERS)
    return [
        f"median regret {medians['lrsearch']:.3f} <= 1.15: {medians['lrsearch'] <= 1.15}",
        f"median regret <= each peer's ({peer_medians}): "
        f"{all(medians['lrsearch'] <= medians[t] for t in peers.PEERS)}",
        "every problem: regret <= max(1.5, 1.5 x the better of torch-lr-finder and fastai): "
        f"{not worst}" + (f" (missed on {', '.join(worst)})" if worst else ""),
        f"median spread {spread_ours:.2f} <= torch-lr-finder's {spread_tlf:.2f} decades: "
        f"{spread_ours <= spread_tlf}",
        f"bounds contain the grid's best on every problem (seed 0): {not uncovered}"
        + (f" (not on {', '.join(uncovered)})" if uncovered else ""),
        f"sweep time <= 1.0x torch-lr-finder's: median {speed:.2f}, {len(slow)} problems above"
        + (f" ({', '.join(slow)})" if slow else ""),
    ]


def markdown(table: pd.DataFrame) -> str:
    """The benchmark page's table: per problem, then the medians and the worst cases."""
    head = (
        "| problem | family | opt | steps | regret lrsearch | tlf | fastai valley | lightning "
        "| spread lrsearch / tlf (decades) | best LR in [low, high] | time / tlf |"
    )
    lines = [head, "|" + "---|" * 11]
    for p, r in table.iterrows():
        lines.append(
            f"| {p} | {r['family']} | {r['optimizer']} | {r['steps']} "
            f"| {r['regret lrsearch']:.3f} | {r['regret torch-lr-finder']:.3f} "
            f"| {r['regret fastai-valley']:.3f} | {r['regret lightning']:.3f} "
            f"| {r['spread lrsearch']:.2f} / {r['spread torch-lr-finder']:.2f} "
            f"| {'yes' if r['covered'] else 'no'} | {r['time ours/tlf']:.2f} |"
        )
    for label, agg in (("median", "median"), ("worst", "max")):
        vals = {t: getattr(table[f"regret {t}"], agg)() for t in TOOLS}
        sp = {t: getattr(table[f"spread {t}"], agg)() for t in ("lrsearch", "torch-lr-finder")}
        lines.append(
            f"| **{label}** | | | | **{vals['lrsearch']:.3f}** | {vals['torch-lr-finder']:.3f} "
            f"| {vals['fastai-valley']:.3f} | {vals['lightning']:.3f} "
            f"| {sp['lrsearch']:.2f} / {sp['torch-lr-finder']:.2f} "
            f"| {int(table['covered'].sum())}/{len(table)} "
            f"| {getattr(table['time ours/tlf'], agg)():.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Fit leave-one-family-out, score on real runs, print the table and the bars."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=suite.DEFAULT_OUT)
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="train nothing new: interpolate the grid where a suggestion's run is not cached "
        "(development only; the docs' table is trained)",
    )
    parser.add_argument("--no-timing", action="store_true", help="skip the speed column")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    suite.setup(args.threads)
    began = time.perf_counter()
    cases = [load_case(PROBLEMS[name], args.out) for name in args.problems]
    rules = heldout_rules(cases)
    table = score(cases, rules, args.out, train=not args.no_train, timed=not args.no_timing)
    table.to_csv(args.out / "heldout.csv")
    with pd.option_context("display.width", 250, "display.max_columns", 60):
        print(markdown(table))
    print("\nRules fitted with each family left out (scored on that family only):")
    for family, rule in rules.items():
        print(f"  without {family}: {rule}")
    print(f"  on all families (shipped as SUGGESTION_RULE): {fit(cases)}")
    print()
    for line in bars(table):
        print(line)
    stored = [c.cache.sweeps[s]["ours"]["restored"] for c in cases for s in c.cache.sweeps]
    line = f"lrsearch restored the model and the LR exactly after {sum(stored)} of {len(stored)}"
    print(line + " stored sweeps", end="")
    if not args.no_timing:
        print(
            f", and on every timed sweep of {int(table['restored'].sum())} of {len(table)} "
            "problems with this code",
            end="",
        )
    print()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    machine = platform.processor() or platform.machine()
    print(
        f"\n{len(cases)} problems, {len({c.problem.family for c in cases})} families; "
        f"{time.perf_counter() - began:.0f}s; load average {load}; {machine}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    print("command:", shlex.join(["python", "benchmarks/range_test/heldout.py", *argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
