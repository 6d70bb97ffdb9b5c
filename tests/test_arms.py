"""Tests for lrsearch/pipeline/arms.py: the CV-chosen constant LR and the recipe arms (Adam at
3e-4, Prodigy, Schedule-Free AdamW), as stages of units."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import tiny_task
import torch
from optuna.trial import TrialState

import lrsearch.pipeline.arms
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.optimizers import adam
from lrsearch.pipeline.arms import (
    ADAM_LR,
    RECIPES,
    chosen_lr,
    constant_grid,
    cv_scores,
    ensure_constant_cv,
    ensure_recipes,
    grid_key,
)
from lrsearch.schedules import Schedule
from lrsearch.space import LRBounds
from lrsearch.splits import cv_folds, holdout
from lrsearch.store import UNIT, WORKER
from lrsearch.tasks import subset
from lrsearch.training import FitResult, train_task

CPU = torch.device("cpu")


def _no_training(*args: Any, **kwargs: Any) -> FitResult:
    raise AssertionError("trained although everything was already scored")


def test_constant_grid_is_log_spaced_over_the_bounds() -> None:
    grid = constant_grid(LRBounds(1e-4, 1e-1), 4)
    assert grid == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1], rel=1e-12)
    assert constant_grid(LRBounds(0.003, 0.7), 2) == pytest.approx([0.003, 0.7], rel=1e-12)
    assert all(isinstance(lr, float) for lr in grid)


def test_adam_has_torch_defaults() -> None:
    opt = adam(torch.nn.Linear(2, 1).parameters(), ADAM_LR)
    assert isinstance(opt, torch.optim.Adam)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (3e-4, (0.9, 0.999), 0)


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_cv_folds_partition_train_only(metric: str) -> None:
    task = tiny_task.task()
    if metric == "loss":  # not stratified: plain k-fold
        task = tiny_task.Task(
            make_model=tiny_task.make_model, train=task.train, test=task.test, metric="loss"
        )
    n = task.n_train
    folds = cv_folds(task, 4, seed=3)
    assert len(folds) == 4
    scored = np.concatenate([score for _, score in folds])
    assert sorted(scored.tolist()) == list(range(n))  # every example scored exactly once
    for fit, score in folds:
        assert not set(fit.tolist()) & set(score.tolist())
        assert sorted([*fit.tolist(), *score.tolist()]) == list(range(n))
        assert len(score) == n // 4
    if metric == "accuracy":
        assert isinstance(task.train, tuple)
        y = task.train[1].numpy()
        for _, score in folds:
            counts = Counter(y[score].tolist())
            assert max(counts.values()) - min(counts.values()) <= 1
    again = cv_folds(task, 4, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = cv_folds(task, 4, seed=4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))


def test_holdout_is_inside_train() -> None:
    task = tiny_task.task()
    fit, val = holdout(task, 0.2, seed=0)
    assert len(val) == 40 and len(fit) == 160
    assert sorted([*fit.tolist(), *val.tolist()]) == list(range(task.n_train))


def test_cv_scores_seed_each_fold_and_stop_at_a_diverged_one() -> None:
    task = tiny_task.task()
    splits = cv_folds(task, 2, seed=0)
    schedule = Schedule("constant", max_lr=0.1)
    scores, reason = cv_scores(task, schedule, splits, seed=7, device=CPU)
    assert reason is None
    for k, (fit, score) in enumerate(splits):
        alone = train_task(
            task,
            subset(task.train, fit),
            schedule=schedule,
            eval_data=subset(task.train, score),
            seed=7 + k,
            device=CPU,
        )
        assert scores[k] == alone.final
    scores, reason = cv_scores(task, Schedule("constant", max_lr=1e4), splits, seed=7, device=CPU)
    assert len(scores) == 1
    assert reason is not None and reason.words.startswith("fold 0: ")
    assert reason.code in ("diverged", "non-finite")


def test_cv_scores_of_a_plateau_never_watch_the_fold_they_score(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A plateau run that watched its scored fold would tune its decays to that fold's noise:
    # each fold's fit part is split again, fit on one part, watch the other.
    task = tiny_task.task()
    splits = cv_folds(task, 2, seed=0)
    schedule = Schedule("plateau", max_lr=0.1, base_lr=0.0, decay=0.5, patience=0)
    seen: list[tuple[int, int, int]] = []
    real = lrsearch.pipeline.arms.train_task

    def spy(task_: Any, train: Any, **kwargs: Any) -> FitResult:
        seen.append((len(train[0]), len(kwargs["plateau_data"][0]), len(kwargs["eval_data"][0])))
        fit_x, watch_x, score_x = train[0], kwargs["plateau_data"][0], kwargs["eval_data"][0]
        rows = {tuple(r.tolist()) for r in fit_x}
        assert not rows & {tuple(r.tolist()) for r in watch_x}
        assert not (rows | {tuple(r.tolist()) for r in watch_x}) & {
            tuple(r.tolist()) for r in score_x
        }
        return real(task_, train, **kwargs)

    monkeypatch.setattr(lrsearch.pipeline.arms, "train_task", spy)
    scores, reason = cv_scores(task, schedule, splits, seed=7, device=CPU, watch_fraction=0.25)
    assert reason is None and len(scores) == 2
    assert seen == [(75, 25, 100), (75, 25, 100)]
    with pytest.raises(InvalidParameterError, match="watch_fraction"):
        cv_scores(task, schedule, splits, seed=7, device=CPU)


def test_constant_cv_stores_one_unit_per_grid_lr_and_reruns_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = tiny_task.context(tmp_path / "b.db", cv_grid=3)
    bounds = LRBounds(0.003, 0.3)
    grid = constant_grid(bounds, 3)
    chosen = ensure_constant_cv(ctx, bounds, heal=False)
    study = ctx.study("constant_cv")
    trials = study.get_trials()
    assert sorted(t.params["lr"] for t in trials) == pytest.approx(grid, rel=1e-12)
    assert sorted(t.user_attrs[UNIT] for t in trials) == sorted(grid_key(lr) for lr in grid)
    for t in trials:
        assert t.state == TrialState.COMPLETE
        assert len(t.user_attrs["fold_scores"]) == 2
        assert t.value == pytest.approx(np.mean(t.user_attrs["fold_scores"]))
        assert sum(t.user_attrs["fold_sizes"]) == tiny_task.N_TRAIN
        assert t.user_attrs["schedule"].startswith("constant ")
        assert t.user_attrs[WORKER] == ctx.worker.id
    assert chosen == study.best_trial.params["lr"]
    assert study.user_attrs["chosen_lr"] == chosen
    assert study.user_attrs["grid"] == pytest.approx(grid)

    # Again: everything is scored, nothing is trained; a finer grid trains only its new LRs.
    monkeypatch.setattr(lrsearch.pipeline.arms, "train_task", _no_training)
    assert ensure_constant_cv(ctx, bounds, heal=False) == chosen
    assert len(study.get_trials()) == 3
    calls: list[float] = []

    def counting(*args: Any, **kwargs: Any) -> FitResult:
        calls.append(kwargs["schedule"].max_lr)
        return train_task(*args, **kwargs)

    monkeypatch.setattr(lrsearch.pipeline.arms, "train_task", counting)
    finer = tiny_task.context(tmp_path / "b.db", cv_grid=5)
    ensure_constant_cv(finer, bounds)
    new = [lr for lr in constant_grid(bounds, 5) if all(abs(lr - g) > 1e-12 for g in grid)]
    assert sorted(calls) == pytest.approx(sorted(new * 2))  # two folds of each new LR
    assert len(study.get_trials()) == 5


def test_chosen_lr_is_the_best_cv_mean_ties_to_the_lower_lr() -> None:
    def unit(lr: float, value: float | None) -> optuna.trial.FrozenTrial:
        state = TrialState.COMPLETE if value is not None else TrialState.PRUNED
        return optuna.trial.create_trial(state=state, value=value, user_attrs={UNIT: grid_key(lr)})

    grid = [0.01, 0.1, 1.0]
    trials = [unit(0.01, 0.8), unit(0.1, 0.9), unit(1.0, 0.9)]
    assert chosen_lr(trials, grid, maximize=True) == 0.1
    assert chosen_lr(trials, grid, maximize=False) == 0.01
    # A pruned (diverged) LR never wins; an LR off the grid is not read.
    trials = [unit(0.01, 0.5), unit(0.1, None), unit(0.05, 0.99)]
    assert chosen_lr(trials, grid, maximize=True) == 0.01
    with pytest.raises(LrsearchError, match="every constant LR diverged"):
        chosen_lr([unit(0.1, None)], grid, maximize=True)


def test_a_diverging_grid_lr_is_pruned_with_its_reason(tmp_path: Path) -> None:
    ctx = tiny_task.context(tmp_path / "b.db", cv_grid=2)
    chosen = ensure_constant_cv(ctx, LRBounds(0.1, 1e4))
    assert chosen == pytest.approx(0.1)
    (bad,) = [t for t in ctx.study("constant_cv").get_trials() if t.params["lr"] > 1]
    assert bad.state == TrialState.PRUNED
    assert bad.user_attrs["pruned_reason"].startswith("fold 0: ")
    assert len(bad.user_attrs["fold_scores"]) == 1


def test_every_grid_lr_diverging_is_an_lrsearch_error(tmp_path: Path) -> None:
    ctx = tiny_task.context(tmp_path / "b.db", cv_grid=2)
    with pytest.raises(LrsearchError, match="every constant LR diverged"):
        ensure_constant_cv(ctx, LRBounds(1e4, 1e5))


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_recipe_arm_runs_once_on_the_validation_split(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = tiny_task.context(tmp_path / "b.db")
    task = ctx.task
    recipe = RECIPES[name]
    trial = ensure_recipes(ctx)[name]
    assert trial.state == TrialState.COMPLETE
    assert trial.params == {"lr": recipe.lr}
    assert trial.user_attrs["optimizer"] == recipe.optimizer
    assert len(trial.intermediate_values) == task.epochs
    # Its own study, NAME/<arm>.
    assert ctx.study(recipe.stage).study_name == f"{ctx.cfg.name}/{name}"
    fit, val = holdout(task, ctx.cfg.validation_fraction, seed=ctx.cfg.seed)
    alone = train_task(
        task,
        subset(task.train, fit),
        schedule=recipe.schedule(),
        optimizer_factory=recipe.optimizer_factory(task.epochs * ctx.spe_search),
        eval_data=subset(task.train, val),
        seed=ctx.cfg.seed,
        device=CPU,
    )
    assert trial.value == alone.final
    monkeypatch.setattr(lrsearch.pipeline.arms, "train_task", _no_training)
    again = ensure_recipes(ctx)[name]
    assert again.number == trial.number
    assert len(ctx.study(recipe.stage).get_trials()) == 1


def test_adam_recipe_is_torch_adam_at_3e_4_constant() -> None:
    recipe = RECIPES["adam-3e-4"]
    opt = recipe.optimizer_factory(100)(torch.nn.Linear(2, 1).parameters(), recipe.lr)
    assert type(opt) is torch.optim.Adam and opt.defaults["lr"] == ADAM_LR
    assert recipe.schedule().kind == "constant" and recipe.params == {"lr": ADAM_LR}


def test_prodigy_recipe_is_prodigyopt_at_lr_1_with_a_cosine_to_zero() -> None:
    from prodigyopt import Prodigy

    recipe = RECIPES["prodigy"]
    opt = recipe.optimizer_factory(100)(torch.nn.Linear(2, 1).parameters(), recipe.lr)
    assert isinstance(opt, Prodigy) and opt.defaults["lr"] == 1.0
    lrs = recipe.schedule().lrs(100)
    assert lrs[0] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.0, abs=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_schedule_free_recipe_warms_up_over_five_percent_inside_the_optimizer() -> None:
    from schedulefree import AdamWScheduleFree

    recipe = RECIPES["schedule-free-adamw"]
    opt = recipe.optimizer_factory(400)(torch.nn.Linear(2, 1).parameters(), recipe.lr)
    assert isinstance(opt, AdamWScheduleFree)
    assert opt.defaults["lr"] == 0.0025 and opt.defaults["warmup_steps"] == 20
    assert recipe.schedule().kind == "constant"  # no LR schedule on top of its own
    assert "warmup over the first 5%" in recipe.note
