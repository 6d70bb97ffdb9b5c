"""Fidelities that respect schedules: how well a cheap reading ranks them as a full run does.

A budget counted in training runs has to rank schedules for less than a full run each. This
benchmark measures, per task, the Kendall tau between the ranking each candidate fidelity gives
a sample of schedules and the ranking the full horizon gives the same schedules, and what each
candidate costs in full-run equivalents.

Per task: one lrsearch study of ``--configs`` search trials drawn at random (no seeds, no
pruner) over the range test's bounds, each trained to the full horizon on the search-train
split and scored on the validation split after every epoch (Optuna's intermediate values).
The candidates, each scored on the same validation split:

- ``partial@F``: the full run's metric after ``round(F * epochs)`` epochs: what a pruner sees,
  for the schedule as it stands then (its LR has not come down yet); free given the full runs.
- ``compressed@F``: the same schedule compressed to ``round(F * epochs)`` epochs (every period
  scaled by the same factor), trained from scratch; its final metric.
- ``compressed@F+lr^B``: the same, with the peak (and base) LR multiplied by ``(1/F) ** B``
  (the best LR falls with training length; Bjorck et al., ICLR 2025), for each ``B`` of
  :data:`TRANSFERS`. The exponent is fitted held out: the transfer table picks ``B`` on one
  family of tasks (the built-ins, or the unseen problems) and reports its tau on the other.
- ``branched@F`` (``wsd`` schedules only): a warm-up-stable-decay branch cooled down at ``F``
  of the horizon from the full run's constant phase (Hägele et al., NeurIPS 2024): the
  compressed schedule with the full run's warm-up. It is trained from scratch with the same
  model seed and batch order as the trunk, so its steps are the branch's step for step
  (sharing the trunk changes what several horizons cost, not what one reads).
- ``reseeded``: the full run again with another model seed: the ceiling, how well the full
  horizon ranks itself.

Run from the repository root::

    .venv/bin/python benchmarks/fidelity/run.py --tasks digits mnist1d --configs 16
    .venv/bin/python benchmarks/fidelity/run.py --tasks digits --configs 12 --kinds wsd

Results are cached per task in ``bench_out/fidelity/`` (``--fresh`` recomputes); the table is
printed with the command that made it; ``--figure docs/img/bench-fidelity.svg`` draws it (SVG
needs plotly's ``kaleido``, ``pip install kaleido``, which drives a Chromium found on the
machine). Tasks: the built-ins (``digits``, ``mnist1d``,
``charlm``) and the unseen problems as ``unseen:NAME`` (``benchmarks/unseen/problems.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "unseen"))

from problems import task_named  # noqa: E402  (benchmarks/unseen/problems.py)

from lrsearch import StudyConfig, Task, run_study  # noqa: E402
from lrsearch.schedules import Schedule  # noqa: E402
from lrsearch.space import setup_from_params  # noqa: E402
from lrsearch.splits import holdout  # noqa: E402
from lrsearch.store import load_stored  # noqa: E402
from lrsearch.tasks import steps_per_epoch, subset  # noqa: E402
from lrsearch.training import train_task  # noqa: E402

OUT = ROOT / "bench_out" / "fidelity"
FRACTIONS = (1 / 9, 1 / 3)
TRANSFERS = (0.125, 0.25, 0.5)
FAMILIES = {"built-in": ("digits", "mnist1d", "charlm")}  # every other task: "unseen"
CPU = torch.device("cpu")


def compressed(schedule: Schedule, fraction: float, lr_factor: float = 1.0) -> Schedule:
    """``schedule`` compressed to ``fraction`` of the run (:meth:`Schedule.compressed`, what
    a budget's search trains), its LRs times ``lr_factor``."""
    short = schedule.compressed(fraction)
    base = None if short.base_lr is None else short.base_lr * lr_factor
    return dataclasses.replace(short, max_lr=short.max_lr * lr_factor, base_lr=base)


def branched(schedule: Schedule, fraction: float, steps: int) -> Schedule:
    """``wsd`` ``schedule`` branched off its constant phase at ``fraction`` of the run: the
    compressed schedule with the full run's warm-up (as long as the ``steps`` of the branch
    hold it before its cooldown)."""
    short = schedule.compressed(fraction)
    room = steps - short._cooldown_steps(steps)  # the branch's steps before its cooldown
    return dataclasses.replace(short, warmup=max(0, min(schedule.warmup, room)))


def _score(value: float, maximize: bool) -> float:
    """Larger is better; a run that broke down ranks last."""
    if not math.isfinite(value):
        return -math.inf
    return value if maximize else -value


@dataclasses.dataclass
class Bench:
    """One task's sample of schedules and the splits they are trained and scored on."""

    name: str
    task: Task
    seed: int
    configs: int
    kinds: tuple[str, ...] | None = None  # None: every kind

    def __post_init__(self) -> None:
        fit, val = holdout(self.task, StudyConfig.validation_fraction, self.seed)
        self.train = subset(self.task.train, fit)
        self.validation = subset(self.task.train, val)
        self.spe = steps_per_epoch(len(fit), self.task.batch_size)
        self.full_steps = self.task.epochs * steps_per_epoch(
            self.task.n_train, self.task.batch_size
        )

    def study(self) -> list[optuna.trial.FrozenTrial]:
        """The sample: ``configs`` random schedules trained to the full horizon, unpruned."""
        storage = f"sqlite:///{OUT / (self.name.replace(':', '-') + '.db')}"
        chosen = {} if self.kinds is None else {"kinds": self.kinds}
        cfg = StudyConfig(
            **chosen,
            name="fidelity",
            task=self.name,
            n_trials=self.configs,
            seed=self.seed,
            sampler="random",
            pruner="none",
            device="cpu",
            threads=1,
        )
        run_study(cfg, task=self.task, storage=storage, skip_baselines=True, enqueue_seeds=False)
        study = load_stored("fidelity", storage=storage).search
        done = optuna.trial.TrialState.COMPLETE
        return [t for t in study.get_trials(deepcopy=False) if t.state == done]

    def trained(self, schedule: Schedule, epochs: int, seed: int) -> tuple[float, int]:
        """The validation metric after ``epochs`` epochs of ``schedule``, and its steps."""
        task = dataclasses.replace(self.task, epochs=epochs)
        try:
            result = train_task(
                task,
                self.train,
                schedule=schedule,
                eval_data=self.validation,
                seed=seed,
                device=CPU,
            )
        except ValueError:  # a schedule too short for the compressed run: it cannot be read
            return math.nan, 0
        return float(result.final), int(result.steps)

    def schedule(self, trial: optuna.trial.FrozenTrial) -> Schedule:
        """A sampled trial's schedule over the full horizon, in optimizer steps."""
        setup = setup_from_params(
            trial.params, optimizers=("task",), steps_per_epoch=self.spe, epochs=self.task.epochs
        )
        return setup.schedule

    def readings(self, trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any]:
        """Every candidate's reading of every sampled schedule, and its steps."""
        epochs = self.task.epochs
        out: dict[str, Any] = {"full": [float(t.value) for t in trials]}  # type: ignore[arg-type]
        steps: dict[str, int] = {}
        for fraction in FRACTIONS:
            short = max(1, round(fraction * epochs))
            tag = f"{short}/{epochs}"
            out[f"partial@{tag}"] = [t.intermediate_values.get(short, math.nan) for t in trials]
            # Read off the full runs here; on its own, a run stopped after that epoch.
            steps[f"partial@{tag}"] = short * self.spe * len(trials)
            if all(t.params.get("schedule") == "wsd" for t in trials):  # a branch of each
                runs = [
                    self.trained(
                        branched(self.schedule(t), short / epochs, short * self.spe), short, 1
                    )
                    for t in trials
                ]
                out[f"branched@{tag}"] = [value for value, _ in runs]
                steps[f"branched@{tag}"] = sum(n for _, n in runs)
            for beta in (0.0, *(TRANSFERS if self.kinds is None else ())):
                key = f"compressed@{tag}" + (f"+lr^{beta:g}" if beta else "")
                factor = (epochs / short) ** beta
                runs = [
                    self.trained(compressed(self.schedule(t), short / epochs, factor), short, 1)
                    for t in trials
                ]
                out[key] = [value for value, _ in runs]
                steps[key] = sum(n for _, n in runs)
        runs = [self.trained(self.schedule(t), epochs, 2) for t in trials]
        out["reseeded"] = [value for value, _ in runs]
        steps["reseeded"] = sum(n for _, n in runs)
        out["steps"] = steps
        return out


def tau(reading: list[float], full: list[float], maximize: bool) -> float:
    """Kendall's tau-b between two rankings of the same schedules (broken-down runs last)."""
    a = [_score(v, maximize) for v in reading]
    b = [_score(v, maximize) for v in full]
    worst = min([x for x in a + b if math.isfinite(x)], default=0.0) - 1.0
    a = [x if math.isfinite(x) else worst for x in a]
    b = [x if math.isfinite(x) else worst for x in b]
    value = kendalltau(a, b).statistic
    return float(value) if value == value else math.nan


def measure(
    name: str, configs: int, seed: int, fresh: bool, kinds: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """One task's record (cached in ``bench_out/fidelity/``); ``kinds``: draw only these."""
    OUT.mkdir(parents=True, exist_ok=True)
    only = "" if kinds is None else "-" + "+".join(kinds)
    path = OUT / f"{name.replace(':', '-')}-n{configs}-s{seed}{only}.json"
    if path.exists() and not fresh:
        return dict(json.loads(path.read_text()))
    for old in OUT.glob(f"{name.replace(':', '-')}.db*"):
        old.unlink()
    bench = Bench(name, task_named(name), seed, configs, kinds)
    began = time.perf_counter()
    trials = bench.study()
    record = {
        "task": name,
        "configs": len(trials),
        "seed": seed,
        "maximize": bench.task.maximize,
        "epochs": bench.task.epochs,
        "full_steps": bench.full_steps,
        "search_steps": bench.task.epochs * bench.spe,
        "kinds": [t.params.get("schedule") for t in trials],
        "readings": bench.readings(trials),
        "seconds": time.perf_counter() - began,
    }
    path.write_text(json.dumps(record, indent=1))
    return record


def _two_seeds(rec: dict[str, Any]) -> list[float]:
    """The full horizon's reading averaged over its two seeds (less noise to rank against)."""
    pairs = zip(rec["readings"]["full"], rec["readings"]["reseeded"], strict=True)
    worst = -math.inf if rec["maximize"] else math.inf
    return [(a + b) / 2 if math.isfinite(a + b) else worst for a, b in pairs]


def _label(key: str) -> str:
    """``compressed@8/75+lr^0.25`` -> ``compressed@1/9+lr^0.25``: the same row on every task."""
    kind, at, rest = key.partition("@")
    if not at:
        return key
    short, _, tail = rest.partition("+")
    done, total = (int(x) for x in short.split("/"))
    nearest = min(FRACTIONS, key=lambda f: abs(f - done / total))
    return f"{kind}@1/{round(1 / nearest)}" + (f"+{tail}" if tail else "")


def regret(reading: list[float], truth: list[float], maximize: bool) -> float:
    """How much worse, on ``truth``, the schedule ``reading`` ranks first is than the best one
    (in the metric's units; 0: it picked the best)."""
    pick = max(range(len(reading)), key=lambda i: _score(reading[i], maximize))
    best = max(_score(v, maximize) for v in truth)
    return float(best - _score(truth[pick], maximize))


def regrets(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per candidate: the regret of its pick on each task, against the full horizon
    averaged over two seeds (the reseeded row: one seed's pick)."""
    rows: dict[str, dict[str, Any]] = {}
    for rec in records:
        truth = _two_seeds(rec)
        for key, values in rec["readings"].items():
            if key == "steps":
                continue
            label = "full (one seed)" if key == "full" else _label(key)
            row = rows.setdefault(label, {"fidelity": label})
            row[rec["task"]] = regret(values, truth, rec["maximize"])
    return pd.DataFrame(list(rows.values()))


def table(records: list[dict[str, Any]], *, averaged: bool = False) -> pd.DataFrame:
    """One row per candidate: its tau with the full horizon on each task (with ``averaged``,
    the mean of the full run's two seeds), and its cost."""
    rows: dict[str, dict[str, Any]] = {}
    for rec in records:
        readings = rec["readings"]
        full = _two_seeds(rec) if averaged else readings["full"]
        for key, values in readings.items():
            if key in ("full", "steps") or (averaged and key == "reseeded"):
                continue
            row = rows.setdefault(_label(key), {"fidelity": _label(key)})
            row[rec["task"]] = tau(values, full, rec["maximize"])
            # Cost per schedule, in runs of the search's length (one full reading = 1).
            spent = readings["steps"][key]
            if key.startswith("partial@"):  # cached before partial readings had their steps
                done, _ = (int(x) for x in key.partition("@")[2].split("/"))
                spent = done / rec["epochs"] * rec["search_steps"] * rec["configs"]
            per = spent / max(1, rec["configs"]) / rec["search_steps"]
            row.setdefault("cost", []).append(per)
    out = pd.DataFrame(list(rows.values()))
    out["cost per schedule (search runs)"] = out.pop("cost").map(lambda c: float(np.mean(c)))
    return out


def by_kind(
    records: list[dict[str, Any]], labels: tuple[str, ...] = ("partial@1/3", "compressed@1/3")
) -> pd.DataFrame:
    """Per task and schedule kind: how many schedules of that kind were drawn, and each
    candidate's tau with the two-seed full horizon among them alone (its ranking of one kind's
    LRs and periods; nan with fewer than 3)."""
    rows = []
    for rec in records:
        truth = _two_seeds(rec)
        keys = {_label(k): k for k in rec["readings"] if k not in ("full", "steps")}
        for kind in sorted(set(rec["kinds"])):
            mine = [i for i, k in enumerate(rec["kinds"]) if k == kind]
            row: dict[str, Any] = {"task": rec["task"], "kind": kind, "n": len(mine)}
            for label in labels:
                values = rec["readings"][keys[label]]
                picked = [values[i] for i in mine]
                row[label] = (
                    tau(picked, [truth[i] for i in mine], rec["maximize"])
                    if len(mine) >= 3
                    else math.nan
                )
            rows.append(row)
    return pd.DataFrame(rows)


def family(task: str) -> str:
    """The family a task belongs to, for fitting on one and judging on the other."""
    return next((f for f, tasks in FAMILIES.items() if task in tasks), "unseen")


def transfer_fit(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The LR transfer's exponent fitted held out: per fraction and family, the ``B`` (0 or
    one of :data:`TRANSFERS`) with the best mean tau (two-seed full horizon) on that family's
    tasks, judged on each task of the other family (tau and regret there, beside ``B = 0``)."""
    rows = []
    families = sorted({family(r["task"]) for r in records})
    for fraction in FRACTIONS:
        label = f"compressed@1/{round(1 / fraction)}"
        taus: dict[str, dict[float, float]] = {}
        picks: dict[str, dict[float, float]] = {}
        for rec in records:
            keys = {_label(k): k for k in rec["readings"] if k not in ("full", "steps")}
            truth = _two_seeds(rec)
            for beta in (0.0, *TRANSFERS):
                key = keys.get(label + (f"+lr^{beta:g}" if beta else ""))
                if key is None:
                    continue
                values = rec["readings"][key]
                taus.setdefault(rec["task"], {})[beta] = tau(values, truth, rec["maximize"])
                picks.setdefault(rec["task"], {})[beta] = regret(values, truth, rec["maximize"])
        for fitted in families:
            train = [t for t in taus if family(t) == fitted]
            betas = sorted(set.intersection(*(set(taus[t]) for t in taus))) if taus else []
            if not train or len(betas) < 2:  # no transfer read (a --kinds sample)
                continue
            best = max(betas, key=lambda b: float(np.mean([taus[t][b] for t in train])))
            for task in (t for t in taus if family(t) != fitted):
                rows.append(
                    {
                        "fidelity": label,
                        "fitted on": fitted,
                        "B": best,
                        "judged on": task,
                        "tau at B": taus[task][best],
                        "tau at B=0": taus[task][0.0],
                        "best B here": max(betas, key=lambda b: taus[task][b]),
                        "regret at B": picks[task][best],
                        "regret at B=0": picks[task][0.0],
                    }
                )
    return pd.DataFrame(rows)


def figure(records: list[dict[str, Any]], path: Path) -> None:
    """The taus against the two-seed full horizon as a heatmap, candidates by cost (SVG or
    HTML by ``path``'s suffix; SVG needs plotly's kaleido)."""
    import plotly.graph_objects as go

    frame = table(records, averaged=True)
    costs = frame.pop("cost per schedule (search runs)")
    tasks = [c for c in frame.columns if c != "fidelity"]
    labels = [f"{f} ({c:.2f} run)" for f, c in zip(frame["fidelity"], costs, strict=True)]
    values = frame[tasks].to_numpy(dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=[t.removeprefix("unseen:") for t in tasks],
            y=labels,
            zmin=-1.0,
            zmax=1.0,
            colorscale="RdBu",
            text=[[f"{v:.2f}" for v in row] for row in values],
            texttemplate="%{text}",
            colorbar={"title": "tau"},
        )
    )
    fig.update_layout(
        title="Kendall tau of each cheap reading with the full horizon (two seeds)",
        yaxis={"autorange": "reversed"},
        width=900,
        height=120 + 38 * len(labels),
        margin={"l": 260},
    )
    if path.suffix == ".html":
        fig.write_html(path, include_plotlyjs="cdn")
    else:
        fig.write_image(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument(
        "--kinds", nargs="+", help="draw only these schedule kinds (wsd: also read its branches)"
    )
    parser.add_argument("--figure", type=Path, help="also draw the taus here (.svg or .html)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    kinds = None if args.kinds is None else tuple(args.kinds)
    records = [measure(name, args.configs, args.seed, args.fresh, kinds) for name in args.tasks]
    print("Kendall tau with the full horizon's ranking (one seed):\n")
    print(table(records).to_markdown(index=False, floatfmt=".2f"))
    print("\nKendall tau with the full horizon's ranking averaged over two seeds:\n")
    print(table(records, averaged=True).to_markdown(index=False, floatfmt=".2f"))
    print("\nRegret of each reading's pick (its schedule's full-horizon metric, two seeds, below")
    print("the best schedule's; 0 = it picked the best):\n")
    print(regrets(records).to_markdown(index=False, floatfmt=".4f"))
    print("\nPer schedule kind: tau among the schedules of one kind (two-seed full horizon):\n")
    labels = ("partial@1/3", "compressed@1/3") + (("branched@1/3",) if kinds == ("wsd",) else ())
    print(by_kind(records, labels).to_markdown(index=False, floatfmt=".2f"))
    fits = transfer_fit(records)
    if not fits.empty:
        print("\nThe LR transfer's exponent B, fitted on one family of tasks, judged on the other")
        print("(tau and regret with the two-seed full horizon):\n")
        print(fits.to_markdown(index=False, floatfmt=".3g"))
    if args.figure is not None:
        figure(records, args.figure)
    spent = ", ".join(f"{r['task']} {r['seconds']:.0f} s" for r in records)
    print(f"\nconfigs per task: {args.configs}; wall time: {spent}")
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])
    print(f"command: {command}")


if __name__ == "__main__":
    main()
