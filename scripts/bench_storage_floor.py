"""Optuna's own cost per search trial: the floor under lrsearch's bookkeeping overhead.

    .venv/bin/python scripts/bench_storage_floor.py \\
        --storage sqlite:///bench_out/prune-digits-s0/bench.db [--study bench-digits-prune] \\
        [--pruner median|halving|hyperband|none] [--repeats 3]

A benchmark to run by hand (seconds), never part of the test suite. It takes a finished search
(a ``scripts/bench_study.py --parts pruning`` study) and makes, for each of its trials in order
and with nothing else, the Optuna calls a search trial cannot do without: the trial's creation
with its params, ``trial.report`` after every epoch it ran and ``should_prune`` before the
last (the study's own pruner, as ``make_pruner`` builds it, judging in the schedule's terms),
its user attrs (the same keys and values as stored) and its end. Into a fresh study, on:

- an SQLite file opened by ``lrsearch.store.open_storage`` (write-ahead log,
  ``synchronous=NORMAL``: what ``lrsearch run`` uses);
- Optuna's in-memory storage (no database at all: Optuna's Python alone).

It prints seconds per trial and, against the seconds the study's trials spent inside training
and evaluation (their ``train_seconds``), the overhead ratio ``(train + floor) / train`` that
no change inside lrsearch can go below while every epoch's value is an Optuna intermediate
value in the study's database, beside the ratio the study's search stage measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence

import optuna
import pandas as pd
from optuna.trial import TrialState

from lrsearch.choices import PRUNERS
from lrsearch.config import StudyConfig
from lrsearch.pipeline.search import make_pruner
from lrsearch.store import load_stored, open_storage, timings


def _config(storage: str, name: str) -> tuple[StudyConfig, int, int]:
    attrs = load_stored(name, storage=storage).attrs  # config and task: on the runs' trials
    raw = attrs["config"]  # StudyConfig.to_dict(), read back by replace()
    cfg = StudyConfig(name=name, task=raw["task"]).replace(**raw)
    return cfg, int(raw["epochs"]), int(attrs["steps_per_epoch"]["search"])


def replay_calls(
    source: list[optuna.trial.FrozenTrial],
    storage: optuna.storages.BaseStorage | None,
    pruner: optuna.pruners.BasePruner,
    epochs: int,
    *,
    ask_pruner: bool = True,
) -> float:
    """Seconds to make ``source``'s Optuna calls into a fresh study on ``storage``."""
    study = optuna.create_study(storage=storage, pruner=pruner, direction="maximize")
    began = time.perf_counter()
    for t in source:
        study.enqueue_trial(dict(t.params))
        trial = study.ask(fixed_distributions=dict(t.distributions))
        for step in sorted(t.intermediate_values):
            trial.report(t.intermediate_values[step], step)
            if ask_pruner and step < epochs:
                trial.should_prune()
        for key, value in t.user_attrs.items():
            trial.set_user_attr(key, value)
        if t.state == TrialState.COMPLETE:
            study.tell(trial, t.value)
        else:
            study.tell(trial, state=TrialState.PRUNED)
    return time.perf_counter() - began


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--storage", required=True, help="SQLite URL of the finished search")
    parser.add_argument("--study", default=None, help="its name (default: the one *-prune study)")
    parser.add_argument(
        "--pruner",
        choices=list(PRUNERS),
        default=None,
        help="the pruner asked (default the study's own)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timings per storage (median)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # open_storage's heartbeat is for Study.optimize; these ask-and-tell calls do not beat
    warnings.filterwarnings("ignore", message="Heartbeat of storage")

    name = args.study or next(
        (
            s.study_name
            for s in optuna.get_all_study_summaries(args.storage)
            if s.study_name.endswith("-prune")
        ),
        None,
    )
    if name is None:
        parser.error(f"no study named *-prune in {args.storage}: give --study")
    study = optuna.load_study(study_name=name, storage=args.storage)
    cfg, epochs, spe = _config(args.storage, name)
    ran_with = cfg.pruner
    if args.pruner is not None:
        cfg = cfg.replace(pruner=args.pruner)
    source = sorted(
        (
            t
            for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        ),
        key=lambda t: t.number,
    )
    stage = timings(load_stored(name, storage=args.storage)).stages["search"]
    train = stage.train_seconds  # the search trials' own train_seconds, summed

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, on_file, ask_pruner in (
            ("SQLite file (lrsearch's WAL settings)", True, True),
            ("SQLite file, no should_prune", True, False),
            ("in memory (no database)", False, True),
        ):
            seconds = []
            for i in range(args.repeats):
                storage = (
                    open_storage(f"sqlite:///{scratch}/{label[:6]}-{ask_pruner}-{i}.db")
                    if on_file
                    else None
                )
                pruner = make_pruner(cfg, epochs, steps_per_epoch=spe)
                seconds.append(
                    replay_calls(source, storage, pruner, epochs, ask_pruner=ask_pruner)
                )
            floor = statistics.median(seconds)
            rows.append(
                {
                    "storage": label,
                    "trials": len(source),
                    "reports": sum(len(t.intermediate_values) for t in source),
                    f"floor s (median of {args.repeats})": round(floor, 2),
                    "ms per trial": round(1000 * floor / len(source), 1),
                    "train s": round(train, 2),
                    "floor ratio (train + floor) / train": round((train + floor) / train, 3),
                }
            )
    print(pd.DataFrame(rows).to_markdown(index=False))
    print(
        f"\nPruner asked here: {cfg.pruner}. The study's search stage as it ran ({ran_with}): "
        f"{stage.seconds:.2f} s in "
        f"{stage.units} units, {stage.train_seconds:.2f} s inside training and evaluation: "
        f"ratio {stage.seconds / stage.train_seconds:.3f}."
    )
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"Python {platform.python_version()}, Optuna {optuna.__version__}, "
        f"{os.cpu_count()} CPUs, load average now {load}"
    )
    print(f"command: .venv/bin/python scripts/bench_storage_floor.py {shlex.join(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
