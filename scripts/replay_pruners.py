"""Replay unpruned searches through candidate pruners: epochs saved, best value kept.

    .venv/bin/python scripts/replay_pruners.py \\
        --storage sqlite:///bench_out/prune-digits-s0/bench.db [--storage URL ...] [--json FILE]

A benchmark to run by hand (seconds), never part of the test suite. It reads the searches
that ran with ``pruner = "none"`` (studies named ``*-noprune``: the unpruned half of
``scripts/bench_study.py --parts pruning``, where every trial has its whole per-epoch
validation curve) and feeds each, trial by trial in the order they ran, through each
candidate pruner as ``lrsearch.training.fit`` asks it (``trial.report`` after every epoch,
``should_prune`` before the last), every candidate inside lrsearch's own
:class:`~lrsearch.pruners.ScheduleAwarePruner`, in an in-memory study.

Per search and candidate: epochs trained over the unpruned search's, trials finished, and the
best value of a finished trial against the unpruned best in points (a pruner that saves
epochs by cutting the winner is worse). What replay cannot show: with a pruner TPE sees the
pruned trials and draws other trials after them, so a real pruned search departs from its
replay after the first pruned trial; the real comparison is ``bench_study.py --parts
pruning``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import statistics
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from lrsearch.config import StudyConfig
from lrsearch.exceptions import InvalidParameterError
from lrsearch.pipeline.search import make_pruner
from lrsearch.pruners import ScheduleAwarePruner
from lrsearch.space import setup_from_params
from lrsearch.store import load_stored

GOAL_RATIO = 0.35
GOAL_LOSS_POINTS = 0.5


@dataclasses.dataclass(frozen=True)
class Search:
    """One unpruned search as stored: its config and every trial's curve."""

    label: str
    cfg: StudyConfig
    epochs: int
    steps_per_epoch: int
    trials: list[optuna.trial.FrozenTrial]
    maximize: bool

    @property
    def best(self) -> float:
        values = [float(t.value) for t in self.trials if t.value is not None]
        return max(values) if self.maximize else min(values)


def load_search(storage: str, name: str) -> Search:
    study = optuna.load_study(study_name=name, storage=storage)
    attrs = load_stored(name, storage=storage).attrs  # config and task: on the runs' trials
    raw = attrs["config"]  # StudyConfig.to_dict(), read back by replace()
    cfg = StudyConfig(name=name, task=raw["task"]).replace(**raw)
    if cfg.pruner != "none":
        raise SystemExit(f"{name} in {storage} ran with pruner {cfg.pruner!r}, not 'none'")
    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.intermediate_values
    ]
    if len(trials) < cfg.n_trials:
        raise SystemExit(
            f"{name} in {storage} has {len(trials)} finished trials of {cfg.n_trials}: "
            "still running, or stopped; replay a finished search"
        )
    return Search(
        label=f"{cfg.task} seed {cfg.seed}",
        cfg=cfg,
        epochs=int(raw["epochs"]),
        steps_per_epoch=int(attrs["steps_per_epoch"]["search"]),
        trials=sorted(trials, key=lambda t: t.number),
        maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
    )


PrunerFactory = Callable[[Search], optuna.pruners.BasePruner]


def _shipped(pruner: str) -> PrunerFactory:
    return lambda s: make_pruner(
        s.cfg.replace(pruner=pruner), s.epochs, steps_per_epoch=s.steps_per_epoch
    )


class _FallAware(ScheduleAwarePruner):
    """Also waits for the LR to start falling: ``wsd``'s cooldown, ``step``'s first decay."""

    def judged_from(self, trial: optuna.trial.FrozenTrial) -> int:
        own = super().judged_from(trial)
        try:
            sched = setup_from_params(
                trial.params,
                optimizers=self._optimizers,
                steps_per_epoch=self._spe,
                epochs=self._epochs,
            ).schedule
        except (InvalidParameterError, KeyError, TypeError, ValueError):
            return own  # not a schedule of lrsearch's space: as the parent judges it
        total = self._spe * self._epochs
        if sched.kind == "wsd" and sched.cooldown is not None:
            start = total - max(1, round(sched.cooldown * total))
        elif sched.kind == "step" and sched.step_size is not None:
            start = sched.step_size
        else:
            return own
        return max(own, min(self._epochs, -(-start // self._spe)))


def _halving(
    min_resource: Callable[[Search], int],
    eta: int,
    *,
    judge: type[ScheduleAwarePruner] | None = ScheduleAwarePruner,
) -> PrunerFactory:
    """Optuna's successive halving, judged by ``judge`` (None: at every rung whatever the
    schedule's phase; replay, as fit, never asks after the last epoch)."""

    def build(s: Search) -> optuna.pruners.BasePruner:
        inner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=min_resource(s), reduction_factor=eta
        )
        if judge is None:
            return inner
        return judge(
            inner,
            epochs=s.epochs,
            steps_per_epoch=s.steps_per_epoch,
            optimizers=s.cfg.optimizers,
        )

    return build


def _budget(eta: int, *, up: bool = False) -> Callable[[Search], int]:
    """Rungs for the budget, the last one just before the run's end (``min_resource *
    eta ** rungs >= epochs``): as many as leave at least ``finalists`` of ``n_trials``
    expected to finish (``n_trials / eta ** rungs >= finalists``, at least one), or with
    ``up`` the fewest that leave at most ``finalists``."""

    def min_resource(s: Search) -> int:
        def finishing(rungs: int) -> float:
            return s.cfg.n_trials / eta**rungs

        rungs = 1
        if up:
            while finishing(rungs) > s.cfg.finalists:
                rungs += 1
        else:
            while finishing(rungs + 1) >= s.cfg.finalists:
                rungs += 1
        return max(1, -(-s.epochs // eta**rungs))

    return min_resource


def _hundredth(s: Search) -> int:
    return max(1, s.epochs // 100)


#: Candidate pruners: name -> factory. "shipped" ones are built by make_pruner from the
#: search's own config with only ``pruner`` changed: what a study would run.
CANDIDATES: dict[str, PrunerFactory] = {
    "median (shipped)": _shipped("median"),
    "halving (shipped)": _shipped("halving"),
    "halving, Optuna's rungs (E/100, eta 4)": _halving(_hundredth, 4),
    "halving, E/100, eta 4, not schedule-aware": _halving(_hundredth, 4, judge=None),
    "halving, E/100, eta 4, fall-aware": _halving(_hundredth, 4, judge=_FallAware),
    "halving, E/100, eta 3, fall-aware": _halving(_hundredth, 3, judge=_FallAware),
    "halving, E/100, eta 3": _halving(_hundredth, 3),
    "halving, E/100, eta 2": _halving(_hundredth, 2),
    "halving, budget rungs up, eta 2": _halving(_budget(2, up=True), 2),
    "halving, budget rungs up, eta 3": _halving(_budget(3, up=True), 3),
    "halving, budget rungs up, eta 4": _halving(_budget(4, up=True), 4),
    "halving, budget rungs, eta 2": _halving(_budget(2), 2),
    "halving, budget rungs, eta 3": _halving(_budget(3), 3),
    "halving, budget rungs, eta 4": _halving(_budget(4), 4),
    "hyperband (shipped)": _shipped("hyperband"),
}


def replay(search: Search, factory: PrunerFactory) -> dict[str, Any]:
    """Feed ``search``'s trials, in order, through the pruner ``factory`` builds for it."""
    # Named after the searched study: Optuna's hyperband puts a trial in a bracket by a hash of
    # the study's name and the trial's number, so an unnamed (random) study would not repeat.
    study = optuna.create_study(
        study_name=search.cfg.name,
        direction="maximize" if search.maximize else "minimize",
        pruner=factory(search),
    )
    epochs_run = 0
    finished: list[float] = []
    for source in search.trials:
        study.enqueue_trial(dict(source.params))
        trial = study.ask(fixed_distributions=dict(source.distributions))
        curve = [source.intermediate_values[e] for e in sorted(source.intermediate_values)]
        pruned = False
        for epoch, value in enumerate(curve, start=1):
            epochs_run += 1
            trial.report(value, epoch)
            if epoch < search.epochs and trial.should_prune():
                pruned = True
                break
        if pruned or source.state == TrialState.PRUNED:  # pruned here, or diverged there
            study.tell(trial, state=TrialState.PRUNED)
        else:
            finished.append(float(source.value))
            study.tell(trial, float(source.value))
    full = sum(len(t.intermediate_values) for t in search.trials)
    best = (max if search.maximize else min)(finished) if finished else float("nan")
    sign = 1.0 if search.maximize else -1.0
    return {
        "ratio": epochs_run / full,
        "finished": len(finished),
        "best": best,
        "loss_points": 100.0 * sign * (best - search.best),
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--storage",
        action="append",
        required=True,
        help="an SQLite URL holding unpruned searches named *-noprune (repeatable)",
    )
    parser.add_argument("--json", default=None, help="also write every number to this file")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("lrsearch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    searches = [
        load_search(storage, summary.study_name)
        for storage in args.storage
        for summary in optuna.get_all_study_summaries(storage)
        if summary.study_name.endswith("-noprune")
    ]
    if not searches:
        raise SystemExit("no unpruned search (a study named *-noprune) in the given storages")
    rows = []
    for search in searches:
        for name, factory in CANDIDATES.items():
            r = replay(search, factory)
            met = r["ratio"] <= GOAL_RATIO and r["loss_points"] >= -GOAL_LOSS_POINTS
            rows.append(
                {
                    "search": search.label,
                    "pruner": name,
                    "epochs ratio": round(r["ratio"], 3),
                    "finished": f"{r['finished']}/{len(search.trials)}",
                    "best (pruned / none)": f"{r['best']:.4f} / {search.best:.4f}",
                    "best diff (points)": round(r["loss_points"], 2),
                    "goal met?": "yes" if met else "NO",
                }
            )
    frame = pd.DataFrame(rows)
    print(frame.to_markdown(index=False))
    summary = frame.groupby("pruner", sort=False).agg(
        median_ratio=("epochs ratio", statistics.median),
        worst_ratio=("epochs ratio", "max"),
        worst_diff_points=("best diff (points)", "min"),
        goal_met=("goal met?", lambda s: f"{(s == 'yes').sum()}/{len(s)}"),
    )
    print()
    print(summary.to_markdown())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    print(f"\ncommand: .venv/bin/python scripts/replay_pruners.py {shlex.join(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
