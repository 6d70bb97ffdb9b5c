"""The budget curve: the tuned arm's test metric against the tuning budget, in training runs.

Per task and study seed, one whole lrsearch study per budget (``--budgets``; ``default`` is the
study without a budget: for a built-in task the packaged config as it was before it had a
budget (:data:`BEFORE_BUDGETS`), lrsearch's defaults for an unseen problem), each fresh in
its own SQLite file, planned exactly as ``lrsearch run --budget B`` plans it. The budgeted
studies verify only what their tuning decided (the ``tuned`` arm, and ``constant-cv`` when the
plan kept it); the default study runs every arm, and its
``prodigy``, ``schedule-free-adamw`` and ``constant-cv`` arms are the reference lines (one run
each per seed, the constant at its own cost: the range test and its CV). Every study trains
its final runs from the same model seeds (3 per study seed), so a budget's tuned arm is paired
seed by seed with the default's tuned arm and with each reference, as the final comparison
pairs its arms (:func:`lrsearch.pipeline.comparison.paired_interval`, over the 3 study seeds x 3
final seeds).

A budget the task cannot hold (the range test's worst case and one trial cost more) is shown
as such: that is the error ``lrsearch run --budget`` gives.

Run from the repository root (about an hour on 2 cores for the default set)::

    .venv/bin/python benchmarks/budget/run.py --jobs 2 --figure docs/img/bench-budget.svg

Records are cached per study in ``bench_out/budget/`` (``--fresh`` recomputes); the tables are
printed with the command that made them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "unseen"))

OUT = ROOT / "bench_out" / "budget"
TASKS = (
    "digits",
    "mnist1d",
    "charlm",
    "unseen:noisy16-bn-cnn",
    "unseen:freq-gru",
    "unseen:adding-lstm",
)
BUDGETS = ("2", "5", "10", "20", "default")
SEEDS = (0, 1, 2)
FINAL_SEEDS = 3
REFERENCES = ("prodigy", "schedule-free-adamw", "constant-cv")
#: What the packaged configs set before they had a budget (``default`` for a built-in task:
#: the study as it was before budgets; the files now set ``budget = 20``).
BEFORE_BUDGETS: dict[str, dict[str, Any]] = {
    "digits": {
        "n_trials": 60,
        "pruner": "median",
        "warmup_epochs": 5,
        "cv_folds": 5,
        "cv_grid": 8,
    },
    "mnist1d": {
        "n_trials": 40,
        "pruner": "median",
        "warmup_epochs": 15,
        "cv_folds": 3,
        "cv_grid": 6,
    },
    "charlm": {
        "n_trials": 14,
        "pruner": "median",
        "warmup_epochs": 3,
        "cv_folds": 3,
        "cv_grid": 4,
        "finalists": 2,
    },
}


def config(name: str, seed: int, budget: str) -> Any:
    """The study config of ``name`` at ``budget`` (``default``: none), seed ``seed``."""
    from lrsearch import StudyConfig
    from lrsearch.config import load_config

    study = f"{name.replace(':', '-')}-b{budget}-s{seed}"
    keys: dict[str, Any] = {"seed": seed, "final_seeds": FINAL_SEEDS, "device": "cpu"}
    if budget != "default":
        keys["budget"] = float(budget)
    if name.startswith("unseen:"):
        cfg = StudyConfig(name=study, task=name, threads=1).replace(**keys)
    else:
        cfg = load_config(name, overrides={"threads": 1, **keys})
        cfg = dataclasses.replace(cfg, name=study)
        if budget == "default":  # the packaged study as it was before it had a budget
            cfg = dataclasses.replace(cfg, budget=None).replace(**BEFORE_BUDGETS[name])
    if budget != "default":
        # Verify only what the tuning decided; the arms stay unset, so the plan is the one a
        # user's `--budget` makes (it keeps or drops constant-cv the same way).
        cfg = dataclasses.replace(cfg, arms=("tuned", "constant-cv"))
    return cfg


def study_job(name: str, seed: int, budget: str, fresh: bool) -> dict[str, Any]:
    """One study; its record (cached in ``bench_out/budget/``)."""
    import logging

    import optuna

    from lrsearch.exceptions import InvalidParameterError
    from lrsearch.pipeline.budget import Sizes, plan
    from lrsearch.study import run_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("lrsearch").setLevel(logging.ERROR)
    cfg = config(name, seed, budget)
    path = OUT / "records" / f"{cfg.name}.json"
    if path.exists() and not fresh:
        return dict(json.loads(path.read_text()))
    from problems import task_named  # benchmarks/unseen/problems.py

    task = task_named(name)
    record: dict[str, Any] = {"task": name, "seed": seed, "budget": budget}
    if cfg.budget is not None:
        sizes = Sizes(task.n_train, cfg.batch_size or task.batch_size, cfg.epochs or task.epochs)
        try:
            record["plan"] = plan(cfg, sizes).describe()
        except InvalidParameterError as error:
            record["impossible"] = str(error)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=1))
            return record
    db = OUT / "studies" / f"{cfg.name}.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    result = run_study(cfg, task=task, storage=f"sqlite:///{db}", fresh=True)
    cost = result.cost
    record |= {
        "metric": result.metric,
        "direction": result.direction,
        "wall_seconds": time.perf_counter() - began,
        "tuning": None if cost is None else cost.tuning,
        "verification": None if cost is None else cost.verification,
        "stages": {} if cost is None else {s: cost.runs(s) for s in cost.stages},
        "schedule": result.schedule_words,
        "best_epochs": result.best_epochs,
        "warnings": [str(w.code) for w in result.warnings],
        "arms": {arm: list(map(float, r.test_metric_per_seed)) for arm, r in result.arms.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def run_all(
    tasks: list[str], budgets: list[str], seeds: list[int], jobs: int, fresh: bool
) -> list[dict[str, Any]]:
    """Every study, ``jobs`` at a time (the slow tasks' defaults first)."""
    order = {"charlm": 0, "mnist1d": 1}
    work = sorted(
        ((t, s, b) for t in tasks for s in seeds for b in budgets),
        key=lambda job: (order.get(job[0], 2), job[2] != "default", job[1]),
    )
    records = []
    with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
        futures = {pool.submit(study_job, t, s, b, fresh): (t, s, b) for t, s, b in work}
        for future in concurrent.futures.as_completed(futures):
            record = future.result()
            records.append(record)
            t, s, b = futures[future]
            spent = record.get("tuning")
            print(
                f"  {t} seed {s} budget {b}: "
                + (
                    record["impossible"]
                    if "impossible" in record
                    else f"tuning {spent:.1f} runs, tuned {np.mean(record['arms']['tuned']):.4f}"
                ),
                flush=True,
            )
    return records


def _pairs(
    records: list[dict[str, Any]], arm: str, against: dict[int, dict[str, Any]], other: str
) -> tuple[list[float], list[float]]:
    """``arm``'s per-seed test metrics and ``other``'s in ``against`` (the default study of the
    same study seed), over every study seed where both ran."""
    a: list[float] = []
    b: list[float] = []
    for r in records:
        ref = against.get(r["seed"])
        if ref is None or other not in ref["arms"] or arm not in r["arms"]:
            continue
        a += r["arms"][arm]
        b += ref["arms"][other]
    return a, b


def summary(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per task and budget: its tuning cost and the tuned arm against the default's
    tuned arm and each reference, paired seed by seed."""
    from lrsearch.pipeline.comparison import paired_interval

    rows = []
    for task in dict.fromkeys(r["task"] for r in records):
        mine = [r for r in records if r["task"] == task]
        defaults = {r["seed"]: r for r in mine if r["budget"] == "default" and "arms" in r}
        for budget in dict.fromkeys(r["budget"] for r in mine):
            at = [r for r in mine if r["budget"] == budget]
            row: dict[str, Any] = {"task": task, "budget": budget}
            if all("impossible" in r for r in at):
                row["plan"] = at[0]["impossible"].split(";")[0]
                rows.append(row)
                continue
            ran = [r for r in at if "arms" in r]
            tuned = [np.mean(r["arms"]["tuned"]) for r in ran]
            maximize = ran[0]["direction"] == "maximize"
            row |= {
                "plan": ran[0].get("plan", "the study's own keys"),
                "tuning runs": float(np.mean([r["tuning"] for r in ran])),
                "tuned": float(np.mean(tuned)),
                "tuned sd": float(np.std(tuned)),
                "maximize": maximize,
                "seeds": len(ran),
            }
            for other in ("tuned", *REFERENCES):
                a, b = _pairs(ran, "tuned", defaults, other)
                if a:
                    p = paired_interval(a, b)
                    name = "default" if other == "tuned" else other
                    row[f"vs {name}"] = (p["mean_diff"], p["ci_low"], p["ci_high"])
            rows.append(row)
    return pd.DataFrame(rows)


def stops_paying(table: pd.DataFrame) -> dict[str, str]:
    """Per task, the smallest budget whose tuned arm is not significantly worse than the
    default study's (paired seed by seed): where more tuning stops paying."""
    out = {}
    for task in dict.fromkeys(table["task"]):
        rows = table[(table["task"] == task) & table["tuned"].notna()]
        found = "-"
        for _, row in rows.iterrows():
            value = row.get("vs default")
            if not isinstance(value, tuple):
                continue
            _, low, high = value
            worse = high < 0 if row["maximize"] else low > 0
            if not worse:
                found = str(row["budget"])
                break
        out[str(task)] = found
    return out


def references(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Per task, each reference arm's mean test metric and cost (the default studies')."""
    rows = []
    for task in dict.fromkeys(r["task"] for r in records):
        defaults = [
            r for r in records if r["task"] == task and r["budget"] == "default" and "arms" in r
        ]
        if not defaults:
            continue
        for arm in REFERENCES:
            values = [np.mean(r["arms"][arm]) for r in defaults if arm in r["arms"]]
            cost = 1.0
            if arm == "constant-cv":
                cost = float(
                    np.mean(
                        [
                            r["stages"].get("range_test", 0) + r["stages"].get("constant_cv", 0)
                            for r in defaults
                        ]
                    )
                )
            rows.append({"task": task, "arm": arm, "test": float(np.mean(values)), "cost": cost})
    return pd.DataFrame(rows, columns=["task", "arm", "test", "cost"])


def _interval(value: Any, maximize: bool) -> str:
    """``+0.0010 [-0.0014, +0.0034]``, marked † where significantly better, ‡ worse."""
    if not isinstance(value, tuple):
        return "-"
    mean, low, high = value
    better = (low > 0) if maximize else (high < 0)
    worse = (high < 0) if maximize else (low > 0)
    tag = " †" if better else (" ‡" if worse else "")
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]{tag}"


def markdown(table: pd.DataFrame, refs: pd.DataFrame) -> str:
    """The summary as a Markdown table, the reference arms' means last."""
    lines = [
        "| task | budget | tuning (runs) | tuned | vs default | vs Prodigy | vs SF-AdamW | "
        "vs constant-cv |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        if pd.isna(row.get("tuned")):
            least = str(row["plan"]).rsplit("at least ", 1)[-1]
            lines.append(f"| {row['task']} | {row['budget']} | least {least} | | | | | |")
            continue
        m = bool(row["maximize"])
        cells = [_interval(row.get(f"vs {k}"), m) for k in ("default", *REFERENCES)]
        lines.append(
            f"| {row['task']} | {row['budget']} | {row['tuning runs']:.1f} | "
            f"{row['tuned']:.4f} ± {row['tuned sd']:.4f} | " + " | ".join(cells) + " |"
        )
    for task in dict.fromkeys(refs["task"]):
        at = refs[refs["task"] == task].set_index("arm")
        cells = [f"{at.loc[a, 'test']:.4f} ({at.loc[a, 'cost']:.1f} runs)" for a in REFERENCES]
        lines.append(f"| {task} | references | | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(table: pd.DataFrame, refs: pd.DataFrame, path: Path) -> None:
    """Per task, the tuned arm against tuning runs, with the reference lines."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tasks = list(dict.fromkeys(table["task"]))
    cols = 3
    rows = math.ceil(len(tasks) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=tasks)
    colours = {"prodigy": "#d62728", "schedule-free-adamw": "#9467bd", "constant-cv": "#2ca02c"}
    for i, task in enumerate(tasks):
        r, c = divmod(i, cols)
        # In order of cost, the line's x (records come in the order the studies finished).
        at = table[(table["task"] == task) & table["tuned"].notna()].sort_values("tuning runs")
        fig.add_trace(
            go.Scatter(
                x=at["tuning runs"], y=at["tuned"], error_y={"array": at["tuned sd"]},
                mode="lines+markers+text", text=at["budget"], textposition="top center",
                name="tuned", line={"color": "#1f77b4"}, showlegend=i == 0,
            ),
            row=r + 1, col=c + 1,
        )  # fmt: skip
        for _, ref in refs[refs["task"] == task].iterrows():
            fig.add_trace(
                go.Scatter(
                    x=[ref["cost"]], y=[ref["test"]], mode="markers",
                    marker={"symbol": "diamond", "size": 10, "color": colours[ref["arm"]]},
                    name=ref["arm"], showlegend=i == 0,
                ),
                row=r + 1, col=c + 1,
            )  # fmt: skip
            if ref["arm"] != "constant-cv":
                fig.add_hline(
                    y=ref["test"], line={"dash": "dot", "color": colours[ref["arm"]]},
                    row=r + 1, col=c + 1,
                )  # fmt: skip
        fig.update_xaxes(
            type="log", title_text="tuning cost (training runs)", row=r + 1, col=c + 1
        )
    fig.update_layout(
        width=1200,
        height=420 * rows,
        title="The tuned arm's test metric against the tuning budget",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".html":
        fig.write_html(path)
    else:
        fig.write_image(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--budgets", nargs="+", default=list(BUDGETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    began = time.perf_counter()
    records = run_all(args.tasks, args.budgets, args.seeds, args.jobs, args.fresh)
    order = {b: i for i, b in enumerate(args.budgets)}
    records.sort(key=lambda r: (args.tasks.index(r["task"]), order[r["budget"]], r["seed"]))
    table = summary(records)
    refs = references(records)
    print()
    print(markdown(table, refs))
    print()
    for task, budget in stops_paying(table).items():
        print(f"{task}: no worse than the default from budget {budget}")
    if args.figure:
        figure(table, refs, args.figure)
    print(f"\n{(time.perf_counter() - began) / 60:.1f} min; command:")
    print(".venv/bin/python " + shlex.join(["benchmarks/budget/run.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
