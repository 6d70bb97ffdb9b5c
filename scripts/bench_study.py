"""Benchmark the whole ``run_study`` pipeline: arms, speed-up, pruning, seeding and overhead.

    .venv/bin/python scripts/bench_study.py [--tasks digits mnist1d charlm] [--parts ...]
        [--out bench_out/study] [--seeds-seeding 5] [--n-trials N] [--seeding-epochs E]
        [--pruning-seed S] [--pruner halving|median|hyperband] [--warmup-epochs W] [--quick]

A benchmark to run by hand (tens of minutes on 2 CPU cores); never part of the test suite.
Every study goes to its own SQLite storage, ``--out``/bench.db (never ``studies/lrsearch.db``),
and is started fresh. It prints one markdown table per part and the exact command that
produced them, and writes every raw number to ``--out``/results.json.

Per task (``digits``, ``mnist1d``, ``charlm``: the packaged study configs, from ``./studies``
first):

1. **Arms**: one full ``run_study`` (study ``bench-TASK``: range test, pruned search, the
   CV-chosen constant LR, Adam at 3e-4, Prodigy, Schedule-Free AdamW, the held-out comparison
   with the config's ``final_seeds``). Mean ± std test metric of every arm, all with the same
   epochs (table 1), and the paired interval tuned - arm of each (table 1b). Goal (issue 14):
   tuned at least as good as every arm on mnist1d and charlm; on mnist1d each interval above 0
   and tuned >= 96.0% mean test accuracy within <= 3000 optimizer steps (the arm's ``steps``).
2. **Speed-up**: epochs the tuned schedule's mean test curve needs to reach the constant-CV
   arm's final mean test metric (the comparison's ``epochs_to_target``), over the run's
   epochs. Goal: <= 0.5.
3. **Pruning**: the search alone (``skip_baselines=True``) with the config's pruner (the
   packaged configs': ``median``, each trial judged after its schedule's first cycle or
   warm-up) and with ``pruner = "none"``, same ``n_trials`` and seed (``--pruning-seed``),
   studies ``bench-TASK-prune`` and ``bench-TASK-noprune``. Epochs trained = sum over all
   trials of the user attr ``epochs_run``. Goal: ratio <= 0.35, best validation value within
   0.5 accuracy points (0.005) of the unpruned search's. Another pruner: ``--pruner``
   (and ``--warmup-epochs``).
   ``scripts/replay_pruners.py`` replays the unpruned searches through candidate pruners.
4. **Seeding**: trials until TPE reaches 99% of the best known validation value, seeded (the
   default: the range test's bounds and the enqueued literature schedules) vs blind
   (``search_bounds=LRBounds(1e-6, 10)``, ``enqueue_seeds=False``); pruner ``none`` so every
   trial has a full value; ``--n-trials`` trials each; over ``--seeds-seeding`` values of the
   config ``seed`` (which also seeds the split, the range test and the inits: each seed is a
   slightly different problem, shared by both variants). "Best known" = the best value of any
   trial of either variant and any seed of the task (the "pooled" row) and, as a check that
   seeds with an easier split do not dominate, the best of either variant for the same seed
   (the "per-seed" row). Trials are counted in trial-number order until one reaches the
   target; one that never does counts as ">N" (as N+1 in the median). Goal: blind / seeded
   median >= 2. mnist1d runs ``--seeding-epochs`` (default 25, not 75) to stay affordable.
5. **Overhead**: wall time of the part-1 study over the time spent inside training and
   evaluation (``timings["wall"] / timings["inside_training"]``). Goal: <= 1.05. A second
   table splits the seconds outside training per stage (units' own bookkeeping: claiming,
   sampling, storage writes) and between units (waiting, deciding, the next claim).

``--quick`` shrinks everything (3 epochs, a handful of trials, 2 seeds) to check that the
script works in a minute or two; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from lrsearch.choices import ARMS, PRUNERS
from lrsearch.config import StudyConfig, load_config
from lrsearch.space import LRBounds
from lrsearch.store import STAGES, load_stored, timings
from lrsearch.study import StudyResult, run_study

logger = logging.getLogger("bench_study")

TASKS = ("digits", "mnist1d", "charlm")
BLIND_BOUNDS = LRBounds(1e-6, 10.0)
#: Trials per seeding run when --n-trials is not given.
SEEDING_TRIALS = {"digits": 30, "mnist1d": 30, "charlm": 14}
#: Epochs per seeding trial when --seeding-epochs is not given (None: the config's).
SEEDING_EPOCHS: dict[str, int | None] = {"digits": None, "mnist1d": 25}
TARGET_FRACTION = 0.99
MNIST1D_ACCURACY = 0.96
MNIST1D_STEPS = 3000
GOAL_SPEEDUP = 0.5
GOAL_PRUNE_RATIO = 0.35
GOAL_PRUNE_LOSS = 0.005
GOAL_SEEDING = 2.0
GOAL_OVERHEAD = 1.05

#: Config overrides of --quick: enough to exercise every code path, nothing more.
QUICK = {
    "epochs": 3,
    "n_trials": 4,
    "warmup_epochs": 1,
    "cv_folds": 2,
    "cv_grid": 2,
    "finalists": 2,
    "final_seeds": 2,
}


#: The parts a run can be limited to (``--parts``), in the order they run.
PARTS = ("arms", "pruning", "seeding")


@dataclasses.dataclass(frozen=True)
class Settings:
    tasks: tuple[str, ...]
    parts: tuple[str, ...]
    out: Path
    quick: bool
    seeds_seeding: int
    n_trials: int | None
    seeding_epochs: int | None
    pruning_seed: int | None = None
    pruner: str | None = None
    warmup_epochs: int | None = None

    @property
    def storage(self) -> str:
        return f"sqlite:///{(self.out / 'bench.db').resolve()}"

    def seeding_trials(self, task: str) -> int:
        if self.n_trials is not None:
            return self.n_trials
        return 4 if self.quick else SEEDING_TRIALS.get(task, 30)

    def seeding_epochs_for(self, task: str) -> int | None:
        if self.quick:
            return 2
        if self.seeding_epochs is not None:
            return self.seeding_epochs
        return SEEDING_EPOCHS.get(task)


# -- running studies -------------------------------------------------------------------------


def _config(task: str, name: str, settings: Settings, **overrides: Any) -> StudyConfig:
    base = dict(QUICK) if settings.quick else {}
    cfg = load_config(task, overrides=base | overrides)
    return dataclasses.replace(cfg, name=name)


def _progress(name: str) -> Any:
    last = [""]

    def report(stage: str, done: int, total: int) -> None:
        if stage != last[0] or done == total:
            logger.info("  %s: %s %d/%d", name, stage, done, total)
            last[0] = stage

    return report


def _run(cfg: StudyConfig, settings: Settings, **kwargs: Any) -> tuple[StudyResult, float]:
    t0 = time.perf_counter()
    result = run_study(
        cfg, storage=settings.storage, fresh=True, progress=_progress(cfg.name), **kwargs
    )
    seconds = time.perf_counter() - t0
    logger.info("%s done in %.0fs (best value %.4f)", cfg.name, seconds, result.best_value)
    return result, seconds


def _load(name: str, settings: Settings) -> tuple[optuna.Study, list[optuna.trial.FrozenTrial]]:
    study = optuna.load_study(study_name=name, storage=settings.storage)
    return study, sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


def part_arms(task: str, settings: Settings) -> dict[str, Any]:
    """Parts 1, 2 and 5: one full study."""
    cfg = _config(task, f"bench-{task}", settings)
    result, seconds = _run(cfg, settings)
    comparison = result.comparison or {}
    arms = {
        arm: {
            key: comparison[arm].get(key)
            for key in (
                "test_metric_mean",
                "test_metric_std",
                "test_metric_per_seed",
                "test_curve_mean",
                "epochs",
                "steps",
                "epochs_to_target",
                "target",
                "schedule",
                "params",
                "optimizer",
                "stop_reasons",
                "tuned_minus_this",
            )
        }
        for arm in ARMS
        if arm in comparison
    }
    return {
        "study": cfg.name,
        "config": cfg.to_dict(),
        "metric": result.metric,
        "direction": result.direction,
        "best_value": result.best_value,
        "best_params": result.best_params,
        "schedule": result.schedule_words,
        "constant_lr": result.constant_lr,
        "range_test_bounds": [result.range_test.bounds.low, result.range_test.bounds.high],
        "trial_states": result.trial_states,
        "arms": arms,
        "timings": result.timings,
        "seconds": seconds,
    }


def part_pruning(task: str, settings: Settings) -> dict[str, Any]:
    """Part 3: the same search with the config's pruner and with none."""
    out: dict[str, Any] = {}
    for variant in ("prune", "noprune"):
        overrides: dict[str, Any] = {}
        if variant == "noprune":
            overrides["pruner"] = "none"
        else:
            if settings.pruner is not None:
                overrides["pruner"] = settings.pruner
            if settings.warmup_epochs is not None:
                overrides["warmup_epochs"] = settings.warmup_epochs
        if settings.pruning_seed is not None:
            overrides["seed"] = settings.pruning_seed
        cfg = _config(task, f"bench-{task}-{variant}", settings, **overrides)
        result, seconds = _run(cfg, settings, skip_baselines=True)
        _, trials = _load(cfg.name, settings)
        missing = [t.number for t in trials if "epochs_run" not in t.user_attrs]
        out[variant] = {
            "study": cfg.name,
            "pruner": cfg.pruner,
            "seed": cfg.seed,
            "n_trials": cfg.n_trials,
            "best_value": result.best_value,
            "trial_states": result.trial_states,
            "epochs_run": [int(t.user_attrs.get("epochs_run", 0)) for t in trials],
            "epochs_trained": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials),
            "trials_without_epochs_run": missing,
            "timings": result.timings,
            "seconds": seconds,
        }
    return out


def stage_times(name: str, settings: Settings) -> dict[str, dict[str, float]]:
    """Part 5's split: per stage of study ``name``, its units, their seconds and the seconds
    inside training and evaluation; ``between units``: the wall not inside any unit."""
    spent = timings(load_stored(name, storage=settings.storage))
    out = {
        stage: {"units": t.units, "seconds": t.seconds, "train_seconds": t.train_seconds}
        for stage, t in spent.stages.items()
        if t.units
    }
    out["between units"] = {"units": 0, "seconds": spent.wall - spent.busy, "train_seconds": 0.0}
    return out


def blind_kwargs_honoured(settings: Settings) -> bool:
    """Whether ``run_study`` honours ``search_bounds`` and ``enqueue_seeds=False``.

    A probe: 5 one-epoch digits trials with both; honoured means no enqueued trial and some
    ``max_lr`` outside the range test's bounds (all five inside by chance: p ~ 1e-3).
    """
    cfg = _config("digits", "bench-probe-blind", settings, n_trials=5, epochs=1, pruner="none")
    result = run_study(
        cfg,
        storage=settings.storage,
        fresh=True,
        skip_baselines=True,
        search_bounds=BLIND_BOUNDS,
        enqueue_seeds=False,
    )
    _, trials = _load(cfg.name, settings)
    low, high = result.range_test.bounds.low, result.range_test.bounds.high
    lrs = [float(t.params["max_lr"]) for t in trials if "max_lr" in t.params]
    enqueued = any(t.user_attrs.get("seeded") for t in trials)
    return not enqueued and any(not low <= v <= high for v in lrs)


def part_seeding(task: str, settings: Settings) -> dict[str, Any]:
    """Part 4: seeded vs blind TPE, unpruned, over several config seeds."""
    if not blind_kwargs_honoured(settings):
        raise SystemExit(
            "run_study ignored search_bounds/enqueue_seeds: the blind variant cannot be run"
        )
    n_trials = settings.seeding_trials(task)
    epochs = settings.seeding_epochs_for(task)
    runs: list[dict[str, Any]] = []
    epochs_run = 0
    for seed in range(settings.seeds_seeding):
        for variant in ("seeded", "blind"):
            cfg = _config(
                task,
                f"bench-{task}-{variant}-s{seed}",
                settings,
                pruner="none",
                seed=seed,
                n_trials=n_trials,
                epochs=epochs,
            )
            kwargs: dict[str, Any] = {"skip_baselines": True}
            if variant == "blind":
                kwargs |= {"search_bounds": BLIND_BOUNDS, "enqueue_seeds": False}
            result, seconds = _run(cfg, settings, **kwargs)
            _, trials = _load(cfg.name, settings)
            epochs_run = int(
                load_stored(cfg.name, storage=settings.storage).attrs["config"]["epochs"]
            )
            trials = [t for t in trials if t.state != TrialState.WAITING]
            values = [
                float(t.value) if t.state == TrialState.COMPLETE and t.value is not None else None
                for t in trials
            ]
            max_lrs = [t.params.get("max_lr") for t in trials]
            runs.append(
                {
                    "seed": seed,
                    "variant": variant,
                    "study": cfg.name,
                    "values": values,
                    "max_lr": max_lrs,
                    "n_enqueued": sum(bool(t.user_attrs.get("seeded")) for t in trials),
                    "range_test_bounds": [
                        result.range_test.bounds.low,
                        result.range_test.bounds.high,
                    ],
                    "best_value": result.best_value,
                    "seconds": seconds,
                }
            )
    return {
        "n_trials": n_trials,
        "epochs": epochs_run,
        "seeds": settings.seeds_seeding,
        "runs": runs,
        "blind_via": "run_study kwargs",
        "sanity": _seeding_sanity(runs),
    }


def _seeding_sanity(runs: list[dict[str, Any]]) -> list[str]:
    """Evidence that the blind variant really was blind (run_study honoured its kwargs)."""
    problems = []
    for run in runs:
        if run["variant"] != "blind":
            continue
        if run["n_enqueued"]:
            problems.append(f"{run['study']}: {run['n_enqueued']} enqueued seed trial(s)")
        low, high = run["range_test_bounds"]
        lrs = [v for v in run["max_lr"] if v is not None]
        if lrs and all(low * (1 - 1e-9) <= v <= high * (1 + 1e-9) for v in lrs):
            problems.append(
                f"{run['study']}: every max_lr inside the range test's [{low:.3g}, {high:.3g}]"
            )
    return problems


# -- summaries -------------------------------------------------------------------------------


def _trials_to(values: list[float | None], target: float) -> int | None:
    for i, value in enumerate(values, start=1):
        if value is not None and value >= target:
            return i
    return None


def _median_count(counts: list[int | None], n_trials: int) -> float:
    return float(statistics.median(n_trials + 1 if c is None else c for c in counts))


def _count_str(value: float, n_trials: int) -> str:
    return f">{n_trials}" if value > n_trials else f"{value:g}"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _yes(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "NO")


def _better(a: float, b: float, maximize: bool) -> bool:
    """Whether ``a`` is at least as good as ``b``."""
    return a >= b if maximize else a <= b


def _arms_rows(task: str, a: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Table 1's row for ``task`` (every arm's mean ± std, the goal) and table 1b's rows (the
    paired interval tuned - arm per arm); records ``goal_met`` in ``a``."""
    arms, maximize = a["arms"], a["direction"] == "maximize"
    tuned = arms["tuned"]
    t = tuned["test_metric_mean"]
    others = {k: v for k, v in arms.items() if k != "tuned"}
    beats_all = all(_better(t, v["test_metric_mean"], maximize) for v in others.values())
    goal, met = "tuned >= every arm", beats_all
    if task == "mnist1d":
        intervals_above = all(
            (v.get("tuned_minus_this") or {}).get("ci_low", -math.inf) > 0 for v in others.values()
        )
        goal += (
            f"; tuned - each arm's interval above 0; tuned >= {MNIST1D_ACCURACY:.1%} in "
            f"<= {MNIST1D_STEPS} steps"
        )
        met = (
            beats_all
            and intervals_above
            and t >= MNIST1D_ACCURACY
            and tuned["steps"] <= MNIST1D_STEPS
        )
    a["goal_met"] = met
    row = {
        "task": task,
        "metric": f"{a['metric']} ({'higher' if maximize else 'lower'} is better)",
        **{
            arm: (
                f"{arms[arm]['test_metric_mean']:.4f} ± {arms[arm]['test_metric_std']:.4f}"
                if arm in arms
                else "-"
            )
            for arm in ARMS
        },
        "tuned optimizer": str(tuned.get("optimizer", "task")),
        "epochs": str(tuned["epochs"]),
        "steps": str(tuned["steps"]),
        "seeds": str(len(tuned["test_metric_per_seed"])),
        "goal": goal,
        "met?": _yes(met),
    }
    intervals = []
    for arm, v in others.items():
        diff = v.get("tuned_minus_this") or {}
        if not diff:
            continue
        sign = 1.0 if maximize else -1.0
        said = "tuned better" if sign * diff["mean_diff"] > 0 else "arm better"
        if not diff["significant"]:
            said = "not significant (a tie at these seeds)"
        intervals.append(
            {
                "task": task,
                "arm": arm,
                "tuned - arm": f"{diff['mean_diff']:+.4f}",
                "95% CI": f"[{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]",
                "p": f"{diff['p_value']:.3g}",
                "reading": said,
            }
        )
    return row, intervals


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """The five tables, as rows of strings, plus the derived numbers in ``results``."""
    tables: dict[str, list[dict[str, str]]] = {k: [] for k in TITLES}
    for task, res in results.items():
        if "arms" in res:
            a = res["arms"]
            arms = a["arms"]
            tuned, const = arms.get("tuned"), arms.get("constant-cv")
            if tuned:
                row, intervals = _arms_rows(task, a)
                tables["1"].append(row)
                tables["1b"].extend(intervals)
            if tuned and const:
                # 2. epochs to target
                ett = tuned.get("epochs_to_target")
                ratio = ett / tuned["epochs"] if ett is not None else None
                a["speedup_ratio"] = ratio
                tables["2"].append(
                    {
                        "task": task,
                        "target (constant-cv final)": _fmt(tuned.get("target")),
                        "tuned epochs to target": (
                            f"{ett}/{tuned['epochs']}" if ett is not None else "never"
                        ),
                        "constant-cv epochs to target": (
                            f"{const.get('epochs_to_target')}/{const['epochs']}"
                        ),
                        "ratio": _fmt(ratio, 3)
                        if ratio is not None
                        else f">1 (not in {tuned['epochs']})",
                        "goal": f"<= {GOAL_SPEEDUP}x",
                        "met?": _yes(ratio is not None and ratio <= GOAL_SPEEDUP),
                    }
                )
            timings = a["timings"]
            inside = timings.get("inside_training") or math.nan
            overhead = timings.get("wall", math.nan) / inside
            a["overhead"] = overhead
            tables["5"].append(
                {
                    "task": task,
                    "wall s": f"{timings.get('wall', math.nan):.1f}",
                    "inside training+eval s": f"{inside:.1f}",
                    **{f"{k} s": f"{timings[k]:.1f}" for k in STAGES if k in timings},
                    "ratio": _fmt(overhead, 3),
                    "goal": f"<= {GOAL_OVERHEAD}",
                    "met?": _yes(overhead <= GOAL_OVERHEAD if math.isfinite(overhead) else None),
                }
            )
            if "overhead" in res:
                tables["5b"].append(_overhead_row(task, res["overhead"]))

        if "pruning" in res:
            # 3. pruning
            p = res["pruning"]
            pr, npr = p["prune"], p["noprune"]
            ratio = pr["epochs_trained"] / npr["epochs_trained"]
            diff = pr["best_value"] - npr["best_value"]
            p["ratio"], p["best_diff"] = ratio, diff
            met = ratio <= GOAL_PRUNE_RATIO and diff >= -GOAL_PRUNE_LOSS
            n_pruned = pr["trial_states"].get("PRUNED", 0)
            tables["3"].append(
                {
                    "task": task,
                    "seed": str(pr.get("seed", "")),
                    "trials": str(pr["n_trials"]),
                    "pruned trials": f"{n_pruned}/{sum(pr['trial_states'].values())}",
                    "pruner": pr["pruner"],
                    "epochs (pruner)": str(pr["epochs_trained"]),
                    "epochs (no pruner)": str(npr["epochs_trained"]),
                    "ratio": f"{ratio:.3f}",
                    "best val (pruner)": _fmt(pr["best_value"]),
                    "best val (none)": _fmt(npr["best_value"]),
                    "best diff (points)": f"{100 * diff:+.2f}",
                    "search s (pruner / none)": (
                        f"{pr['timings'].get('search', 0):.0f} / "
                        f"{npr['timings'].get('search', 0):.0f}"
                    ),
                    "goal": (
                        f"ratio <= {GOAL_PRUNE_RATIO}x, best within {100 * GOAL_PRUNE_LOSS} pt"
                    ),
                    "met?": _yes(met),
                }
            )

        if "seeding" in res:
            # 4. seeding
            s = res["seeding"]
            n = s["n_trials"]
            runs = s["runs"]
            pooled = max(v for r in runs for v in r["values"] if v is not None)
            per_seed_best = {
                seed: max(
                    v for r in runs if r["seed"] == seed for v in r["values"] if v is not None
                )
                for seed in {r["seed"] for r in runs}
            }
            s["pooled_best"], s["per_seed_best"] = pooled, per_seed_best
            for label in ("pooled", "per-seed"):
                counts: dict[str, list[int | None]] = {"seeded": [], "blind": []}
                for r in runs:
                    best = pooled if label == "pooled" else per_seed_best[r["seed"]]
                    counts[r["variant"]].append(_trials_to(r["values"], TARGET_FRACTION * best))
                med = {k: _median_count(v, n) for k, v in counts.items()}
                ratio = med["blind"] / med["seeded"]
                s[f"counts_{label}"], s[f"ratio_{label}"] = counts, ratio
                censored = med["blind"] > n  # blind never got there: the ratio is a lower bound
                # A censored ratio settles the goal only when its lower bound already meets it.
                determined = not censored or ratio >= GOAL_SEEDING
                tables["4"].append(
                    {
                        "task": task,
                        "best known": (
                            f"pooled {pooled:.4f}"
                            if label == "pooled"
                            else "per seed "
                            + ", ".join(f"{per_seed_best[k]:.4f}" for k in sorted(per_seed_best))
                        ),
                        "trials x epochs": f"{n} x {s['epochs']}",
                        "seeds": str(s["seeds"]),
                        "seeded (per seed)": ", ".join(
                            _count_str(c or n + 1, n) for c in counts["seeded"]
                        ),
                        "blind (per seed)": ", ".join(
                            _count_str(c or n + 1, n) for c in counts["blind"]
                        ),
                        "median seeded": _count_str(med["seeded"], n),
                        "median blind": _count_str(med["blind"], n),
                        "ratio blind/seeded": ("≥ " if censored else "") + f"{ratio:.2f}",
                        "determined?": _yes(determined),
                        "goal": f">= {GOAL_SEEDING}x",
                        "met?": _yes(ratio >= GOAL_SEEDING),
                    }
                )
    return tables


def _overhead_row(task: str, split: dict[str, dict[str, float]]) -> dict[str, str]:
    """Table 5b: seconds outside training and evaluation, per stage and between units."""
    row = {"task": task}
    outside_total = 0.0
    for stage, t in split.items():
        outside = t["seconds"] - t["train_seconds"]
        outside_total += outside
        per_unit = f", {1000 * outside / t['units']:.0f} ms/unit" if t["units"] else ""
        row[stage] = f"{outside:.1f} s{per_unit}"
    row["outside training, total s"] = f"{outside_total:.1f}"
    return row


def markdown(rows: list[dict[str, str]]) -> str:
    """``rows`` as a GitHub markdown table (columns from the first row)."""
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for row in rows for k in row))
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---" for _ in cols) + "|",
    ]
    lines += ["| " + " | ".join(row.get(c, "") for c in cols) + " |" for row in rows]
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------


def _command(argv: Sequence[str]) -> str:
    return shlex.join([".venv/bin/python", "scripts/bench_study.py", *argv])


def _parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Tables go to stdout; progress to stderr.",
    )
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=list(PARTS),
        default=list(PARTS),
        help="which parts to run (default all: arms = tables 1, 1b, 2, 5; pruning = 3; "
        "seeding = 4)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench_out/study"),
        help="where bench.db (the studies) and results.json go (default bench_out/study)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 3 epochs, 4 trials, 2 CV folds and grid LRs, 2 seeds everywhere",
    )
    parser.add_argument(
        "--seeds-seeding",
        type=int,
        default=None,
        help="config seeds of the seeding comparison (default 5; 2 with --quick)",
    )
    parser.add_argument(
        "--n-trials",
        type=int,
        default=None,
        help="trials per seeding run, every task "
        f"(default {', '.join(f'{k} {v}' for k, v in SEEDING_TRIALS.items())})",
    )
    parser.add_argument(
        "--seeding-epochs",
        type=int,
        default=None,
        help="epochs per seeding trial, every task (default: mnist1d "
        f"{SEEDING_EPOCHS['mnist1d']}, others their config's)",
    )
    parser.add_argument(
        "--pruning-seed",
        type=int,
        default=None,
        help="config seed of the pruning comparison (default the config's; another seed "
        "checks the pruner on a split and searches it was not chosen on)",
    )
    parser.add_argument(
        "--pruner",
        choices=[p for p in PRUNERS if p != "none"],
        default=None,
        help="the pruner of the pruning comparison's pruned search (default the config's)",
    )
    parser.add_argument(
        "--warmup-epochs",
        type=int,
        default=None,
        help="the pruned search's warmup_epochs (default the config's)",
    )
    args = parser.parse_args(argv)
    settings = Settings(
        tasks=tuple(dict.fromkeys(args.tasks)),
        parts=tuple(p for p in PARTS if p in args.parts),
        out=args.out,
        quick=args.quick,
        seeds_seeding=(
            args.seeds_seeding if args.seeds_seeding is not None else (2 if args.quick else 5)
        ),
        n_trials=args.n_trials,
        seeding_epochs=args.seeding_epochs,
        pruning_seed=args.pruning_seed,
        pruner=args.pruner,
        warmup_epochs=args.warmup_epochs,
    )
    for name in ("seeds_seeding", "n_trials", "seeding_epochs"):
        value = getattr(settings, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if settings.warmup_epochs is not None and settings.warmup_epochs < 0:
        parser.error("--warmup-epochs must be at least 0")
    if settings.out.resolve() == (Path("studies")).resolve():
        parser.error("--out must not be studies/ (the project's own study database lives there)")
    return settings


TITLES = {
    "1": "1. Arms: mean ± std test metric over the final seeds (same epochs for every arm)",
    "1b": "1b. Tuned minus each arm: paired over seeds, 95% Student-t interval",
    "2": "2. Speed-up: epochs for the tuned mean test curve to reach constant-cv's final mean",
    "3": "3. Pruning: epochs trained (sum of epochs_run over trials), the config's pruner vs none",
    "4": "4. Seeding: trials until TPE reaches 99% of the best known validation value "
    "(median over seeds; >N = never)",
    "5": "5. Overhead: study wall time / time inside training and evaluation (part-1 studies)",
    "5b": "5b. Overhead, where: seconds outside training and evaluation per stage (inside its "
    "units) and between units (part-1 studies)",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; print the tables and the command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    settings = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("lrsearch").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    settings.out.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()
    began = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for task in settings.tasks:
        results[task] = {}
        seconds[task] = {}
        for part, fn in (
            ("arms", part_arms),
            ("pruning", part_pruning),
            ("seeding", part_seeding),
        ):
            if part not in settings.parts:
                continue
            t0 = time.perf_counter()
            logger.info("%s: %s", task, part)
            results[task][part] = fn(task, settings)
            seconds[task][part] = time.perf_counter() - t0
            logger.info("%s: %s done in %.0fs", task, part, seconds[task][part])
    total = time.perf_counter() - began
    for task in results:
        if "arms" in results[task]:
            results[task]["overhead"] = stage_times(results[task]["arms"]["study"], settings)

    tables = summarise(results)
    meta = {
        "command": _command(argv),
        "settings": {**dataclasses.asdict(settings), "out": str(settings.out)},
        "storage": settings.storage,
        "total_seconds": total,
        "seconds_per_task_and_part": seconds,
        # Other processes on the machine slow every timing: keep the evidence.
        "loadavg_1_5_15min_before": load_before,
        "loadavg_1_5_15min_after": os.getloadavg(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "optuna": optuna.__version__,
        },
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
    }
    (settings.out / "results.json").write_text(
        json.dumps({"meta": meta, "results": results, "tables": tables}, indent=1)
    )

    if settings.quick:
        print("\n**--quick: a smoke test; the numbers below mean nothing.**")
    for key, title in TITLES.items():
        if not tables[key]:
            continue
        print(f"\n## {title}\n")
        print(markdown(tables[key]))
        if key == "4" and tables["4"]:
            epochs = {t: results[t]["seeding"]["epochs"] for t in results}
            print(
                "\nSeeding runs use pruner none and "
                + ", ".join(f"{t} {e} epochs/trial" for t, e in epochs.items())
                + " (mnist1d fewer than its 75 to stay affordable). Pooled: target = 99% of "
                "the best value of any trial, both variants, all seeds; per-seed: of both "
                "variants for that seed (each seed has its own split)."
            )
            for t in results:
                for problem in results[t]["seeding"]["sanity"]:
                    print(f"WARNING: blind variant not blind: {problem}")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\ntotal: {total:.0f}s; load average now {load}; raw results in {settings.out}/")
    print(f"command: {_command(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
