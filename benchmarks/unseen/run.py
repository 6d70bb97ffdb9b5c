"""The unseen-problem benchmark: whole lrsearch studies judged against a grid oracle.

    python benchmarks/unseen/run.py [--problems ...] [--seeds 0 1 2] [--jobs 2]
        [--out bench_out/unseen] [--n-trials 20] [--oracle-only] [--from-saved]

By hand, never in CI (about half an hour on 2 CPU cores). The problems (``problems.py``) are
kept out of every calibration of lrsearch: they judge it on problems nothing was fitted on.

1. **Oracle** (``oracle.py``, cached under ``--out``/oracle): every problem trained by a plain
   torch loop at 16 constant LRs from 1e-4 to 10, 2 seeds each; the best mean test metric's
   LR is the oracle's.
2. **Studies**: for each problem and each ``--seeds`` value, one short whole study,
   ``lrsearch.run_study`` with n_trials 20, 3 CV folds, a CV grid of 6, 3 finalists, 2 final
   seeds, arms tuned / constant-cv / prodigy, one thread, in its own SQLite file
   ``--out``/PROBLEM-SEED.db (started fresh). Problems run in parallel (``--jobs``
   processes). Each study's record is saved as ``--out``/PROBLEM-SEED.json.
3. **Table**, one row per problem, means over the study seeds: the tuned arm's test metric
   against the oracle's (accuracy points tuned - oracle; for a loss the ratio tuned / oracle)
   and its worst seed, the oracle's LR, the range test's bounds and the final search bounds
   (geometric means over seeds), on how many seeds the final bounds contain the oracle's LR,
   the warning codes seen, and the **silent failures**: seeds where tuned is more than 5
   accuracy points below the oracle (more than 1.5x its loss) and the study gave no warning.
   Then the goals, each met or missed, and the cost per study: training runs (the study's
   units, each CV unit counted as its folds: the range test's sweep, search trials, constant
   grid x folds, Prodigy's validation run, finalists x folds, final runs), seconds inside
   training (the sum of the units' stored ``train_seconds``) and the wall time of the
   ``run_study`` call.

Writes ``table.csv`` / ``table.md`` (per problem), ``studies.csv`` (per study),
``oracle.csv``, and ``tuned_vs_oracle.html`` (plus ``.png`` when kaleido can render it) under
``--out``; prints the tables and the exact command.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import oracle
import pandas as pd
from problems import PROBLEMS

logger = logging.getLogger("unseen")

#: The goals the table is read against.
SILENT_POINTS = 5.0  # accuracy points below the oracle that a study must warn about
SILENT_RATIO = 1.5  # loss ratio to the oracle that a study must warn about
NEAR_POINTS = 1.0  # "within 1 accuracy point of the oracle"
NEAR_RATIO = 1.10  # "within 1.10x the oracle's loss"
NEAR_SHARE = 0.9  # ... on at least 90% of the problems
ARMS = ("tuned", "constant-cv", "prodigy")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one benchmark run does."""

    problems: tuple[str, ...]
    seeds: tuple[int, ...]
    jobs: int
    out: Path
    n_trials: int

    def storage(self, problem: str, seed: int) -> str:
        """The SQLite URL of one study."""
        return f"sqlite:///{(self.out / f'{problem}-{seed}.db').resolve()}"

    def record_path(self, problem: str, seed: int) -> Path:
        """Where one study's record is saved."""
        return self.out / f"{problem}-{seed}.json"


# -- work done in the worker processes ---------------------------------------------------------


def _quiet_worker() -> None:
    """One torch thread per worker, and no chatter from the libraries."""
    import optuna
    import torch

    torch.set_num_threads(1)
    logging.getLogger("lrsearch").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore")


def oracle_job(name: str, out: Path) -> dict[str, Any]:
    """The oracle of problem ``name`` (cached)."""
    return oracle.compute(name, PROBLEMS[name].task(), out)


def study_job(name: str, seed: int, settings: Settings, commit: str) -> dict[str, Any]:
    """One whole study of problem ``name`` with config seed ``seed``; its record, also saved."""
    from lrsearch import StudyConfig, run_study
    from lrsearch.store import load_stored, timings

    task = PROBLEMS[name].task()
    cfg = StudyConfig(
        name=f"unseen-{name}-s{seed}",
        task=name,
        n_trials=settings.n_trials,
        seed=seed,
        cv_folds=3,
        cv_grid=6,
        finalists=3,
        final_seeds=2,
        arms=ARMS,
        device="cpu",
        threads=1,
    )
    storage = settings.storage(name, seed)
    began = time.perf_counter()
    result = run_study(cfg, task=task, storage=storage, fresh=True)
    wall = time.perf_counter() - began
    comparison = result.comparison or {}
    found = result.range_test.bounds
    final = result.bounds
    said = result.warnings
    spent = timings(load_stored(cfg.name, storage=storage))
    record = {
        "problem": name,
        "seed": seed,
        "study": cfg.name,
        "config": cfg.to_dict(),
        "commit": commit,
        "metric": result.metric,
        "direction": result.direction,
        "arms": {
            arm: {
                "test_metric_mean": comparison[arm]["test_metric_mean"],
                "test_metric_per_seed": comparison[arm]["test_metric_per_seed"],
                "schedule": comparison[arm]["schedule"],
                "stop_reasons": comparison[arm]["stop_reasons"],
            }
            for arm in ARMS
            if arm in comparison
        },
        "tuned": comparison["tuned"]["test_metric_mean"],
        "schedule": result.schedule_words,
        "constant_lr": result.constant_lr,
        "range_bounds": [found.low, found.high],
        "final_bounds": [final.low, final.high],
        "warnings": [{"code": str(w.code), "text": str(w.text)} for w in said],
        "units": {stage: t.units for stage, t in spent.stages.items() if t.units},
        "train_seconds": spent.inside_training,
        "wall_seconds": wall,
    }
    path = settings.record_path(name, seed)
    path.write_text(json.dumps(record, indent=1))
    return record


# -- running -------------------------------------------------------------------------------------


def _pool(jobs: int) -> concurrent.futures.ProcessPoolExecutor:
    # spawn: a forked copy of a parent that has used torch's thread pool can hang.
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_quiet_worker,
    )


def run_oracles(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every problem's oracle, computed in ``settings.jobs`` processes where not cached."""
    out: dict[str, dict[str, Any]] = {}
    with _pool(settings.jobs) as pool:
        futures = {pool.submit(oracle_job, n, settings.out): n for n in settings.problems}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            out[name] = future.result()
            logger.info(
                "oracle %s: best LR %.3g (%.4f), %.2f CPU s per run",
                name,
                out[name]["best_lr"],
                out[name]["best_score"],
                out[name]["cpu_seconds_per_run"],
            )
    return {n: out[n] for n in settings.problems}


def run_studies(settings: Settings, commit: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every (problem, seed) study, in ``settings.jobs`` processes: the records, and what
    went wrong in the studies that raised (a crash on an unseen problem is a finding too)."""
    records, errors = [], []
    with _pool(settings.jobs) as pool:
        futures = {
            pool.submit(study_job, name, seed, settings, commit): (name, seed)
            for name in settings.problems
            for seed in settings.seeds
        }
        for i, future in enumerate(concurrent.futures.as_completed(futures), start=1):
            name, seed = futures[future]
            try:
                record = future.result()
            except Exception as exc:  # reported with the table, not fatal to the benchmark
                errors.append(f"{name} seed {seed}: {type(exc).__name__}: {exc}")
                logger.error("[%d/%d] %s seed %d raised: %s", i, len(futures), name, seed, exc)
                continue
            records.append(record)
            logger.info(
                "[%d/%d] %s seed %d: tuned %.4f, %d warning(s), %.0f s",
                i,
                len(futures),
                name,
                seed,
                record["tuned"],
                len(record["warnings"]),
                record["wall_seconds"],
            )
    return records, errors


def saved_studies(settings: Settings) -> list[dict[str, Any]]:
    """The records a previous run saved under ``--out`` (``--from-saved``)."""
    records = []
    for name in settings.problems:
        for seed in settings.seeds:
            path = settings.record_path(name, seed)
            if not path.exists():
                raise SystemExit(f"--from-saved: no record {path}; run the studies first")
            records.append(json.loads(path.read_text()))
    return records


# -- reading -------------------------------------------------------------------------------------


def gap(tuned: float, best: float, *, maximize: bool) -> float:
    """Tuned against the oracle: accuracy points tuned - oracle, or the loss ratio tuned / oracle
    (``inf`` for a tuned loss that is not finite).

    Example:
        >>> round(gap(0.9, 0.95, maximize=True), 6), round(gap(0.3, 0.2, maximize=False), 6)
        (-5.0, 1.5)
    """
    if not math.isfinite(tuned):
        return -math.inf if maximize else math.inf
    return 100.0 * (tuned - best) if maximize else tuned / best


def bad(value: float, *, maximize: bool) -> bool:
    """Whether a gap is a failure a study must warn about."""
    return value < -SILENT_POINTS if maximize else value > SILENT_RATIO


def near(value: float, *, maximize: bool) -> bool:
    """Whether a gap is within the goal's tolerance of the oracle."""
    return value >= -NEAR_POINTS if maximize else value <= NEAR_RATIO


def _geomean(values: Iterable[float]) -> float:
    return float(np.exp(np.mean(np.log(list(values)))))


#: The stages whose every unit trains one model per CV fold.
CV_STAGES = ("constant_cv", "finalists")


def training_runs(record: dict[str, Any]) -> int:
    """Training runs a study spent: its units, a CV unit counted as its folds (at most: one
    stopped early trains fewer), the range test's sweep as one run.

    Example:
        >>> training_runs({"units": {"search": 20, "constant_cv": 6}, "config": {"cv_folds": 3}})
        38
    """
    folds = int(record["config"]["cv_folds"])
    return sum(n * (folds if stage in CV_STAGES else 1) for stage, n in record["units"].items())


def per_study(records: Sequence[dict[str, Any]], oracles: dict[str, Any]) -> pd.DataFrame:
    """One row per study: tuned against the oracle, bounds, warnings, silent or not, cost."""
    rows = []
    for r in records:
        o = oracles[r["problem"]]
        maximize = r["direction"] == "maximize"
        g = gap(r["tuned"], o["best_score"], maximize=maximize)
        low, high = r["final_bounds"]
        codes = sorted({w["code"] for w in r["warnings"]})
        rows.append(
            {
                "problem": r["problem"],
                "seed": r["seed"],
                "metric": r["metric"],
                "tuned": r["tuned"],
                "constant-cv": r["arms"].get("constant-cv", {}).get("test_metric_mean"),
                "prodigy": r["arms"].get("prodigy", {}).get("test_metric_mean"),
                "oracle": o["best_score"],
                "gap": g,
                "oracle lr": o["best_lr"],
                "range low": r["range_bounds"][0],
                "range high": r["range_bounds"][1],
                "final low": low,
                "final high": high,
                "contains": bool(low <= o["best_lr"] <= high),
                "warnings": " ".join(codes),
                "failed": bad(g, maximize=maximize),
                "silent": bad(g, maximize=maximize) and not codes,
                "schedule": r["schedule"],
                "constant lr": r["constant_lr"],
                "units": sum(r["units"].values()),
                "runs": training_runs(r),
                "train s": r["train_seconds"],
                "wall s": r["wall_seconds"],
            }
        )
    return pd.DataFrame(rows)


def per_problem(studies: pd.DataFrame, oracles: dict[str, Any]) -> pd.DataFrame:
    """One row per problem: means over the study seeds, plus the worst seed."""
    rows = []
    for name, group in studies.groupby("problem", sort=False):
        o = oracles[name]
        maximize = o["direction"] == "maximize"
        mean_tuned = float(group["tuned"].mean())
        codes: dict[str, int] = {}
        for words in group["warnings"]:
            for code in words.split():
                codes[code] = codes.get(code, 0) + 1
        silent = group[group["silent"]]
        rows.append(
            {
                "problem": name,
                "metric": o["metric"],
                "oracle lr": o["best_lr"],
                "oracle": o["best_score"],
                "tuned": mean_tuned,
                "gap": gap(mean_tuned, o["best_score"], maximize=maximize),
                "worst gap": float(group["gap"].min() if maximize else group["gap"].max()),
                "near": near(
                    gap(mean_tuned, o["best_score"], maximize=maximize), maximize=maximize
                ),
                "range bounds": (
                    _geomean(group["range low"]),
                    _geomean(group["range high"]),
                ),
                "final bounds": (
                    _geomean(group["final low"]),
                    _geomean(group["final high"]),
                ),
                "contains": int(group["contains"].sum()),
                "warnings": " ".join(
                    f"{c}" if n == 1 else f"{c} x{n}" for c, n in sorted(codes.items())
                ),
                "silent": len(silent),
                "silent seeds": " ".join(str(s) for s in silent["seed"]),
                "units": float(group["units"].mean()),
                "runs": float(group["runs"].mean()),
                "train s": float(group["train s"].mean()),
                "wall s": float(group["wall s"].mean()),
                "seeds": len(group),
            }
        )
    return pd.DataFrame(rows).set_index("problem")


def _gap_words(value: float, metric: str) -> str:
    return f"{value:+.1f} pts" if metric == "accuracy" else f"{value:.2f}x"


def _bounds_words(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:.2g} to {bounds[1]:.2g}"


def markdown(table: pd.DataFrame) -> str:
    """The per-problem table as GitHub markdown."""
    head = (
        "| problem | metric | oracle LR | oracle | tuned | tuned vs oracle | worst seed "
        "| range-test bounds | final bounds | final contains oracle LR | warnings "
        "| silent failures |"
    )
    lines = [head, "|" + "---|" * 12]
    for name, r in table.iterrows():
        silent = f"**{r['silent']}** (seed {r['silent seeds']})" if r["silent"] else "0"
        lines.append(
            f"| {name} | {r['metric']} | {r['oracle lr']:.2g} | {r['oracle']:.4f} "
            f"| {r['tuned']:.4f} | {_gap_words(r['gap'], r['metric'])} "
            f"| {_gap_words(r['worst gap'], r['metric'])} "
            f"| {_bounds_words(r['range bounds'])} | {_bounds_words(r['final bounds'])} "
            f"| {r['contains']}/{r['seeds']} | {r['warnings'] or '-'} | {silent} |"
        )
    return "\n".join(lines)


def oracle_markdown(oracles: dict[str, Any]) -> str:
    """The oracle of each problem: its LR, its score, the grid LRs near it, its cost."""
    lines = [
        "| problem | model | optimizer | steps | CPU s/run | metric | best LR | best | "
        "near-best LRs (within 1 pt / 1.10x) | at grid edge |",
        "|" + "---|" * 10,
    ]
    for name, o in oracles.items():
        problem = PROBLEMS[name]
        maximize = o["direction"] == "maximize"
        good = [
            float(k)
            for k, v in o["means"].items()
            if v is not None
            and near(gap(v, o["best_score"], maximize=maximize), maximize=maximize)
        ]
        lines.append(
            f"| {name} | {problem.model} | {problem.optimizer_words()} | {o['steps']} "
            f"| {o['cpu_seconds_per_run']:.2f} | {o['metric']} | {o['best_lr']:.2g} "
            f"| {o['best_score']:.4f} | {min(good):.2g} to {max(good):.2g} "
            f"| {'**yes**' if o['at_edge'] else 'no'} |"
        )
    return "\n".join(lines)


def goals(table: pd.DataFrame, studies: pd.DataFrame) -> list[str]:
    """The issue's goals, each met or missed, with the problems that miss."""
    silent = studies[studies["silent"]]
    silent_where = ", ".join(f"{r.problem} seed {r.seed}" for r in silent.itertuples())
    uncovered = [p for p, r in table.iterrows() if r["contains"] < r["seeds"]]
    far = [p for p, r in table.iterrows() if not r["near"]]
    share = 1 - len(far) / len(table)
    failed = int(studies["failed"].sum())
    return [
        f"silent failures (tuned > {SILENT_POINTS:g} accuracy points below the oracle, or "
        f"> {SILENT_RATIO:g}x its loss, on a seed without a warning): {len(silent)} of "
        f"{len(studies)} studies; goal 0: {'met' if silent.empty else 'MISSED'}"
        + (f" ({silent_where})" if silent_where else "")
        + f"; failures with a warning: {failed - len(silent)}",
        f"final bounds contain the oracle's best LR on every seed: {len(table) - len(uncovered)}"
        f"/{len(table)} problems; goal all: {'met' if not uncovered else 'MISSED'}"
        + (f" (not on {', '.join(uncovered)})" if uncovered else ""),
        f"tuned (mean over seeds) within {NEAR_POINTS:g} accuracy point ({NEAR_RATIO:.2f}x "
        f"loss) of the oracle: {len(table) - len(far)}/{len(table)} problems ({share:.0%}); "
        f"goal >= {NEAR_SHARE:.0%}: {'met' if share >= NEAR_SHARE else 'MISSED'}"
        + (f" (not on {', '.join(far)})" if far else ""),
    ]


def cost(studies: pd.DataFrame, wall: float) -> list[str]:
    """What the studies cost."""

    def spread(column: str) -> str:
        values = studies[column]
        return f"{values.median():.0f} [{values.min():.0f}, {values.max():.0f}]"

    return [
        "cost per study (median [min, max] over the studies): "
        f"{spread('runs')} training runs ({spread('units')} units: the range test's sweep, "
        "search trials, the recipe arms' validation runs and final runs count one each, a CV "
        "unit of the constant grid or the finalists one per fold; a pruned trial counts as a "
        f"run); {spread('train s')} s inside training (sum of the units' stored "
        f"train_seconds); {spread('wall s')} s wall per run_study call (one thread)",
        f"benchmark wall time: {wall:.0f} s ({wall / 60:.1f} min)",
    ]


def figure(studies: pd.DataFrame, table: pd.DataFrame, out: Path) -> list[str]:
    """Tuned against the oracle per problem, as HTML (and PNG when kaleido can render it).

    Returns:
        The paths written, and a note for a PNG that could not be made.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    near_lines = ((1, -NEAR_POINTS), (2, NEAR_RATIO))
    silent_lines = ((1, -SILENT_POINTS), (2, SILENT_RATIO))
    acc = [p for p in table.index if table.loc[p, "metric"] == "accuracy"]
    loss = [p for p in table.index if table.loc[p, "metric"] != "accuracy"]
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[max(len(acc), 1), max(len(loss), 1)],
        subplot_titles=(
            "accuracy: tuned - oracle (points)",
            "loss: tuned / oracle (log scale)",
        ),
    )
    for col, names in ((1, acc), (2, loss)):
        if not names:
            continue
        fig.add_trace(
            go.Scatter(
                x=names,
                y=[table.loc[p, "gap"] for p in names],
                mode="markers",
                marker={"symbol": "diamond", "size": 13, "color": "#4a7fb5"},
                name="mean over seeds",
                showlegend=col == 1 or not acc,
            ),
            row=1,
            col=col,
        )
        seeds = studies[studies["problem"].isin(names)]
        for silent in (False, True):
            part = seeds[seeds["silent"] == silent]
            if part.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=part["problem"],
                    # a diverged run's gap is infinite: drawn at the plot's edge
                    y=part["gap"].clip(-100, 1e3),
                    mode="markers",
                    marker={
                        "symbol": "x" if silent else "circle-open",
                        "size": 10,
                        "color": "#d62728" if silent else "#333333",
                    },
                    name="silent failure (one seed)" if silent else "one seed",
                    showlegend=col == 1 or silent or not acc,
                    text=[f"seed {s}" for s in part["seed"]],
                ),
                row=1,
                col=col,
            )
    # The thresholds as lines, named once in the legend (an hline's own annotation lands in
    # the wrong place on a log axis).
    for dash, color, words, where in (
        ("dot", "green", f"goal: within {NEAR_POINTS:g} point / {NEAR_RATIO:.2f}x", near_lines),
        (
            "dash",
            "red",
            f"a warning is due beyond {SILENT_POINTS:g} points / {SILENT_RATIO:g}x",
            silent_lines,
        ),
    ):
        for col, y in where:
            if (acc, loss)[col - 1]:
                fig.add_hline(y=y, line_dash=dash, line_color=color, row=1, col=col)
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="lines", line={"dash": dash, "color": color}, name=words
            ),
            row=1,
            col=1 if acc else 2,
        )
    if loss:
        ratios = studies[studies["problem"].isin(loss)]["gap"].clip(1e-3, 1e3)
        low = min(float(ratios.min()), 1.0) / 1.5
        high = max(float(ratios.max()), SILENT_RATIO) * 1.5
        fig.update_yaxes(type="log", range=[math.log10(low), math.log10(high)], row=1, col=2)
    fig.update_layout(
        title="lrsearch on unseen problems: the tuned arm against the best constant LR of a grid",
        height=520,
        width=1300,
        template="plotly_white",
    )
    html = out / "tuned_vs_oracle.html"
    fig.write_html(html, include_plotlyjs="cdn")
    written = [str(html)]
    try:
        fig.write_image(out / "tuned_vs_oracle.png", scale=2)
        written.append(str(out / "tuned_vs_oracle.png"))
    except Exception as exc:  # kaleido missing, or no Chrome for it to drive
        written.append(f"no PNG ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    return written


# -- command line --------------------------------------------------------------------------------


def _command(argv: Sequence[str]) -> str:
    return shlex.join(["python", "benchmarks/unseen/run.py", *argv])


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model})"


def _parse(argv: Sequence[str]) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Tables go to stdout; progress to stderr.",
    )
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="study seeds")
    parser.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--out", type=Path, default=Path("bench_out/unseen"))
    parser.add_argument("--n-trials", type=int, default=20, help="search trials per study")
    parser.add_argument(
        "--oracle-only", action="store_true", help="compute and print the oracles only"
    )
    parser.add_argument(
        "--from-saved",
        action="store_true",
        help="run no study: rebuild the tables from the records saved under --out",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.n_trials < 1:
        parser.error("--jobs and --n-trials must be at least 1")
    if any(s < 0 for s in args.seeds):
        parser.error("--seeds must be non-negative")
    return Settings(
        problems=tuple(dict.fromkeys(args.problems)),
        seeds=tuple(dict.fromkeys(args.seeds)),
        jobs=args.jobs,
        out=args.out,
        n_trials=args.n_trials,
    ), args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables, the goals, the cost and the command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    settings, args = _parse(argv)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)  # the libraries (kaleido's browser among them) stay quiet
    settings.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    commit = _commit()
    oracles = run_oracles(settings)
    print("## Oracle: the best constant LR of the 16-point grid (2 seeds)\n")
    print(oracle_markdown(oracles))
    pd.DataFrame(
        [
            {k: v for k, v in o.items() if k in ("problem", "metric", "best_lr", "best_score")}
            | {k: o[k] for k in ("steps", "seconds_per_run", "cpu_seconds_per_run", "at_edge")}
            | {f"mean@{float(k):.3g}": v for k, v in o["means"].items()}
            for o in oracles.values()
        ]
    ).to_csv(settings.out / "oracle.csv", index=False)
    if args.oracle_only:
        print(f"\ncommand: {_command(argv)}")
        return 0

    records, errors = (
        (saved_studies(settings), []) if args.from_saved else run_studies(settings, commit)
    )
    if not records:
        raise SystemExit("no study finished: " + "; ".join(errors))
    wall = time.perf_counter() - began
    studies = per_study(records, oracles)
    table = per_problem(studies, oracles)
    studies.to_csv(settings.out / "studies.csv", index=False)
    table.to_csv(settings.out / "table.csv")
    text = markdown(table)
    (settings.out / "table.md").write_text(text + "\n")
    trials = sorted({r["config"]["n_trials"] for r in records})
    print(
        f"\n## Tuned arm vs oracle: {len(table)} problems x {len(settings.seeds)} study seeds "
        f"(n_trials {', '.join(map(str, trials))})\n"
    )
    print(text)
    print()
    for line in goals(table, studies):
        print(line)
    for line in errors:
        print(f"STUDY RAISED (left out of the table): {line}")
    if args.from_saved:
        print("(--from-saved: the studies' cost below is theirs; the wall time is this run's)")
    for line in cost(studies, wall):
        print(line)
    for line in figure(studies, table, settings.out):
        print("figure:", line)
    commits = sorted({r["commit"] for r in records})
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"\nlrsearch at {', '.join(commits)}; {_machine()}; load average now {load}; "
        f"python {platform.python_version()}"
    )
    print(f"command: {_command(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
