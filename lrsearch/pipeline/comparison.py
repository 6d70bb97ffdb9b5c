"""Stage 5, the final comparison: each arm trained on all of ``train`` with S seeds and scored
on ``test``, which nothing earlier has read.

Every (arm, seed) run is a unit of study ``NAME/final`` (its :class:`~lrsearch.store.FinalRun`
in user attr ``run``), so N workers split the comparison and a crash loses only the runs in
flight. A unit's key names the arm's definition (a digest of its params and optimizer), so a
resumed study whose tuned arm changed trains the new arm and reuses every run still current.
The comparison itself is a pure function of the runs: mean, spread, per-seed values, curves,
epochs-to-target, and for every arm but ``tuned`` the paired difference tuned - arm over seeds
with a 95% Student-t interval (scipy). Every arm gets the same epochs, data, model init seeds
and evaluation. The per-epoch test curve is kept for reporting and never chooses anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial
from scipy import stats

from lrsearch.choices import ARMS, PER_EPOCH_KINDS, SNAPSHOT_ARM
from lrsearch.exceptions import InvalidParameterError
from lrsearch.optimizers import search_optimizer
from lrsearch.pipeline.arms import RECIPES
from lrsearch.pipeline.context import Context
from lrsearch.pipeline.queue import KeyedPlan, Stage, Unit
from lrsearch.schedules import Schedule
from lrsearch.space import setup_from_params
from lrsearch.splits import holdout
from lrsearch.store import ARM, SEED, UNIT, UNIT_FINAL_RUN, ArmResult, FinalRun, first_done
from lrsearch.tasks import Data, OptimizerFactory, Task, steps_per_epoch, subset
from lrsearch.training import train_task

__all__ = [
    "ARMS",
    "Arm",
    "arm_key",
    "collect",
    "compare",
    "ensure",
    "epochs_to_target",
    "final_seeds",
    "make_arms",
    "paired_interval",
    "run_arm",
    "summarize",
]

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One contender: a schedule (the LR) and the optimizer it trains with (``task``: the
    task's own; else its name, with its factory)."""

    name: str
    schedule: Schedule
    params: dict[str, Any]
    optimizer: str = "task"
    optimizer_factory: OptimizerFactory | None = None
    note: str = ""  # what the schedule's words leave out (an optimizer's own warmup)
    #: The steps whose model is kept for the snapshot ensemble (the tuned arm's cycle ends).
    snapshot_steps: tuple[int, ...] = ()


#: How many of the tuned run's last cycle ends the ``tuned-snapshots`` ensemble averages (M).
SNAPSHOTS = 5


def make_arms(
    tuned: Mapping[str, Any],
    constant_lr: float | None,
    *,
    steps_per_epoch: int,
    epochs: int,
    optimizers: Sequence[str] = ("task",),
    arms: Sequence[str] = ARMS,
) -> list[Arm]:
    """The arms of the comparison named in ``arms``, in :data:`ARMS` order: the tuned setup
    (``tuned``: a search trial's params, with ``steps_per_epoch`` of the full training set; its
    optimizer among the study's ``optimizers``), the CV-chosen constant LR with the study's
    first optimizer, and the fixed recipes (Adam at 3e-4, Prodigy, Schedule-Free AdamW) for a
    run of ``epochs``."""
    setup = setup_from_params(
        tuned, optimizers=optimizers, steps_per_epoch=steps_per_epoch, epochs=epochs
    )
    ends = setup.schedule.cycle_ends(steps_per_epoch * epochs)
    out = [
        Arm(
            "tuned",
            setup.schedule,
            dict(tuned),
            optimizer=setup.optimizer,
            optimizer_factory=_searched(setup.optimizer, setup.weight_decay),
            note=(
                f", weight decay {setup.weight_decay:.3g}"
                if setup.weight_decay is not None
                else ""
            ),
            # Two cycles at least: one snapshot is only the single model again.
            snapshot_steps=tuple(ends) if len(ends) >= 2 else (),
        )
    ]
    if "constant-cv" in arms and constant_lr is not None:
        out.append(
            Arm(
                "constant-cv",
                Schedule("constant", max_lr=constant_lr),
                {"lr": constant_lr},
                optimizer=optimizers[0],
                optimizer_factory=_searched(optimizers[0], None),
            )
        )
    for name in ARMS:
        recipe = RECIPES.get(name)
        if recipe is not None and name in arms:
            out.append(
                Arm(
                    name,
                    recipe.schedule(),
                    recipe.params,
                    optimizer=recipe.optimizer,
                    optimizer_factory=recipe.optimizer_factory(steps_per_epoch * epochs),
                    note=recipe.note,
                )
            )
    return out


def _searched(name: str, weight_decay: float | None) -> OptimizerFactory | None:
    """A searched optimizer's factory; ``None`` for the task's own (the run takes it)."""
    if name == "task":
        return None
    return search_optimizer(name, None, weight_decay=weight_decay)


def arm_key(arm: Arm, seed: int) -> str:
    """The unit key of ``arm``'s run with model seed ``seed``: the arm's name, a digest of what
    it trains (params and optimizer), the seed.

    Example:
        >>> arm = Arm("constant-cv", Schedule("constant", max_lr=0.1), {"lr": 0.1})
        >>> arm_key(arm, 1000)
        'constant-cv/...'
    """
    fields: dict[str, Any] = {"params": arm.params, "optimizer": arm.optimizer}
    if arm.note:  # what the params leave out (an optimizer's own warmup) is part of the arm
        fields["note"] = arm.note
    if arm.snapshot_steps:  # a run that also scores snapshots records more: another unit
        fields["snapshots"] = [SNAPSHOTS, *arm.snapshot_steps]
    what = json.dumps(fields, sort_keys=True)
    digest = hashlib.sha256(what.encode()).hexdigest()[:12]
    return f"{arm.name}/{digest}/{seed}"


def final_seeds(seed: int, n: int) -> list[int]:
    """The model seeds of the final runs.

    Example:
        >>> final_seeds(0, 3)
        [1000, 1001, 1002]
    """
    return [seed + 1000 + s for s in range(n)]


def epochs_to_target(curve: list[float], target: float, *, maximize: bool) -> int | None:
    """First epoch (1-based) whose value reaches ``target``; ``None`` if none does.

    Example:
        >>> epochs_to_target([0.5, 0.8, 0.9], 0.8, maximize=True)
        2
    """
    for epoch, value in enumerate(curve, start=1):
        if (value >= target) if maximize else (value <= target):
            return epoch
    return None


def paired_interval(a: list[float], b: list[float], level: float = 0.95) -> dict[str, Any]:
    """Mean of ``a - b`` over paired seeds, its Student-t interval and p-value (scipy).

    ``significant`` is whether the interval excludes 0. With identical differences the
    interval collapses to the point.

    Example:
        >>> r = paired_interval([0.9, 0.92, 0.91], [0.8, 0.83, 0.8])
        >>> round(r["mean_diff"], 3), r["significant"]
        (0.1, True)
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean = float(d.mean())
    if len(d) < 2 or float(d.std()) == 0.0:
        low = high = mean
        p = 1.0 if mean == 0.0 else 0.0
    else:
        res = stats.ttest_rel(a, b)
        ci = res.confidence_interval(confidence_level=level)
        low, high, p = float(ci.low), float(ci.high), float(res.pvalue)
    return {
        "mean_diff": mean,
        "ci_low": low,
        "ci_high": high,
        "level": level,
        "p_value": p,
        "significant": bool(low > 0 or high < 0),
        "n": len(d),
    }


def run_arm(
    arm: Arm,
    seed: int,
    task: Task,
    test: Data,
    *,
    device: torch.device,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
) -> FinalRun:
    """Train ``arm`` on all of ``task.train`` from model seed ``seed``; score ``test`` after
    every epoch. A run that diverged stays where it died (its curve padded to the epochs).

    A ``plateau`` arm needs a metric to watch that is not the test set: it trains on the first
    part of ``holdout`` (indices into ``task.train``: the study's search-train split) and
    steps its plateau on the second (the validation split); the test set is only scored.

    Raises:
        InvalidParameterError: A ``plateau`` arm without ``holdout``.
    """
    spe = steps_per_epoch(task.n_train, task.batch_size)
    train, watched = task.train, None
    if arm.schedule.kind in PER_EPOCH_KINDS:
        if holdout is None:
            raise InvalidParameterError(
                f"arm {arm.name!r} has a {arm.schedule.kind} schedule, which steps on a "
                "validation metric: give holdout=(fit, validation) indices into train"
            )
        train, watched = subset(task.train, holdout[0]), subset(task.train, holdout[1])
    result = train_task(
        task,
        train,
        schedule=arm.schedule,
        eval_data=test,
        plateau_data=watched,
        seed=seed,
        device=device,
        optimizer_factory=arm.optimizer_factory,
        snapshot_steps=arm.snapshot_steps or None,
        snapshots=SNAPSHOTS if arm.snapshot_steps else None,
        diagnostics=False,  # not stored with a final run
    )
    curve = [float(v) for v in result.values]
    curve += [curve[-1]] * (task.epochs - len(curve))
    return FinalRun(
        arm=arm.name,
        seed=seed,
        params=dict(arm.params),
        optimizer=arm.optimizer,
        schedule=arm.schedule.describe(spe) + arm.note,
        curve=curve,
        epochs=task.epochs,
        steps=task.epochs * spe,
        stop_reason=result.stop_reason,
        train_seconds=result.seconds,
        snapshot_steps=result.snapshot_steps,
        ensemble_final=result.ensemble_value,
        snapshot_final=result.snapshot_value,
    )


def _with_snapshots(runs: Mapping[str, Sequence[FinalRun]]) -> dict[str, Sequence[FinalRun]]:
    """``runs`` with the ``tuned-snapshots`` arm right after ``tuned`` when every tuned run
    scored its snapshot ensemble: the same runs (same seeds, the same one read of the test set),
    each ending on the ensemble's score instead of the final model's (the curve before the end
    is the run's own: the ensemble exists only once the run is over)."""
    tuned = runs.get("tuned", ())
    if not tuned or any(r.ensemble_final is None for r in tuned):
        return dict(runs)
    m = len(tuned[0].snapshot_steps)
    ensembles = [
        dataclasses.replace(
            r,
            arm=SNAPSHOT_ARM,
            schedule=(
                f"{r.schedule}; ensemble of the {m} snapshots at its last cycle ends "
                f"(steps {', '.join(map(str, r.snapshot_steps))})"
            ),
            curve=[*r.curve[:-1], float(r.ensemble_final)],  # type: ignore[arg-type]
        )
        for r in tuned
    ]
    out: dict[str, Sequence[FinalRun]] = {}
    for name, arm_runs in runs.items():
        out[name] = arm_runs
        if name == "tuned":
            out[SNAPSHOT_ARM] = ensembles
    return out


def summarize(runs: Mapping[str, Sequence[FinalRun]], *, maximize: bool) -> dict[str, ArmResult]:
    """The comparison from each arm's runs (in seed order), the first arm being ``tuned``.

    The constant-cv arm's final mean is every arm's ``target`` for epochs-to-target.
    """
    runs = _with_snapshots(runs)
    out: dict[str, ArmResult] = {}
    for name, arm_runs in runs.items():
        curves = [list(r.curve) for r in arm_runs]
        finals = [c[-1] for c in curves]
        first = arm_runs[0]
        out[name] = ArmResult(
            test_metric_mean=float(np.mean(finals)),
            test_metric_std=float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
            test_metric_per_seed=finals,
            test_curve_mean=[float(v) for v in np.mean(curves, axis=0)],
            test_curve_per_seed=curves,
            epochs=first.epochs,
            steps=first.steps,
            params=dict(first.params),
            schedule=first.schedule,
            optimizer=first.optimizer,
            seeds=[r.seed for r in arm_runs],
            stop_reasons=[r.stop_reason for r in arm_runs],
            train_seconds=float(sum(r.train_seconds for r in arm_runs)),
        )
    target = out["constant-cv"].test_metric_mean if "constant-cv" in out else None
    names = list(out)
    for name in names:
        arm = out[name]
        changes: dict[str, Any] = {}
        if target is not None:
            changes["target"] = target
            changes["epochs_to_target"] = epochs_to_target(
                arm.test_curve_mean, target, maximize=maximize
            )
        if name != names[0]:
            changes["tuned_minus_this"] = paired_interval(
                out[names[0]].test_metric_per_seed, arm.test_metric_per_seed
            )
        if name == SNAPSHOT_ARM:
            last = [float(r.snapshot_final) for r in runs[name]]  # type: ignore[arg-type]
            changes["last_snapshot_per_seed"] = last
            changes["ensemble_minus_last_snapshot"] = paired_interval(
                arm.test_metric_per_seed, last
            )
        out[name] = dataclasses.replace(arm, **changes)
    return out


def compare(
    task: Task,
    arms: list[Arm],
    *,
    seeds: int,
    seed: int,
    device: torch.device,
    on_run: Callable[[str, int], None] | None = None,
    validation_fraction: float = 0.2,
) -> dict[str, dict[str, Any]]:
    """Run the whole comparison in this process, storing nothing (the study runs the same
    :func:`run_arm` units through the queue). A ``plateau`` arm watches the hold-out split of
    ``validation_fraction`` of ``train`` (seeded by ``seed``), as in a study.

    Returns:
        ``{arm name: ARM}`` (see :class:`~lrsearch.store.ArmResult`).
    """
    test = task.load_test()
    split = holdout(task, validation_fraction, seed)
    runs: dict[str, list[FinalRun]] = {}
    for arm in arms:
        for s in final_seeds(seed, seeds):
            run = run_arm(arm, s, task, test, device=device, holdout=split)
            runs.setdefault(arm.name, []).append(run)
            if on_run is not None:
                on_run(arm.name, s)
    return {k: v.to_dict() for k, v in summarize(runs, maximize=task.maximize).items()}


def _worst(maximize: bool) -> float:
    return -math.inf if maximize else math.inf


def collect(
    units: Sequence[FrozenTrial], arms: Sequence[Arm], seeds: Sequence[int]
) -> dict[str, list[FinalRun]] | None:
    """Each arm's runs from the finished units, or ``None`` while one is missing."""
    done = first_done(units)
    runs: dict[str, list[FinalRun]] = {}
    for arm in arms:
        for s in seeds:
            unit = done.get(arm_key(arm, s))
            if unit is None:
                return None
            runs.setdefault(arm.name, []).append(
                FinalRun.from_dict(unit.user_attrs[UNIT_FINAL_RUN])
            )
    return runs


def ensure(ctx: Context, arms: list[Arm]) -> dict[str, dict[str, Any]]:
    """Make sure every (arm, seed) run is done (by any worker), then summarise them."""
    task = ctx.task
    study = ctx.study("final")
    seeds = final_seeds(ctx.cfg.seed, ctx.cfg.final_seeds)
    by_key = {arm_key(a, s): (a, s) for a in arms for s in seeds}
    test: list[Data] = []  # loaded once per process, when the first run needs it
    split = (ctx.fit_idx, ctx.val_idx)  # what a plateau arm trains on and watches

    def objective(trial: optuna.Trial) -> float:
        key = trial.user_attrs[UNIT]
        if key not in by_key:  # a retried unit of an arm no longer compared
            raise optuna.TrialPruned(f"unit {key!r} is not part of the comparison any more")
        arm, seed = by_key[key]
        if not test:
            test.append(task.load_test())
        run = run_arm(arm, seed, task, test[0], device=ctx.device, holdout=split)
        trial.set_user_attr(UNIT_FINAL_RUN, run.to_dict())
        return run.final if math.isfinite(run.final) else _worst(task.maximize)

    units = [
        Unit(key, user_attrs={ARM: arm.name, SEED: seed}) for key, (arm, seed) in by_key.items()
    ]
    ctx.work(Stage("final", "final comparison", study, objective, ctx.store), KeyedPlan(units))
    runs = collect(study.get_trials(deepcopy=False), arms, seeds)
    assert runs is not None  # the stage is done
    return {k: v.to_dict() for k, v in summarize(runs, maximize=task.maximize).items()}
