"""Tests for lrsearch/baselines.py: the CV-chosen constant LR and Adam at 3e-4."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import tiny_task
import torch
from optuna.trial import TrialState

import lrsearch.baselines
from lrsearch._splits import cv_folds, holdout
from lrsearch.baselines import (
    ADAM_LR,
    adam,
    constant_grid,
    cv_scores,
    run_adam,
    run_constant_cv,
)
from lrsearch.exceptions import LrsearchError
from lrsearch.schedules import Schedule
from lrsearch.space import LRBounds
from lrsearch.training import FitResult, subset, train_task

CPU = torch.device("cpu")


def _study(tmp_path: Path, name: str = "b/constant-cv") -> optuna.Study:
    return optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{tmp_path}/b.db",
        direction="maximize",
        load_if_exists=True,
        pruner=optuna.pruners.NopPruner(),
    )


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
    assert reason is not None and reason.startswith("fold 0: ")


def test_run_constant_cv_stores_one_trial_per_grid_lr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = tiny_task.task()
    grid = [0.003, 0.03, 0.3]
    study = _study(tmp_path)
    ticks: list[int] = []
    chosen = run_constant_cv(
        study, task, grid, folds=2, seed=0, device=CPU, on_trial=lambda: ticks.append(1)
    )
    trials = study.get_trials()
    assert len(ticks) == 3
    assert sorted(t.params["lr"] for t in trials) == pytest.approx(grid, rel=1e-12)
    for t in trials:
        assert t.state == TrialState.COMPLETE
        assert len(t.user_attrs["fold_scores"]) == 2
        assert t.value == pytest.approx(np.mean(t.user_attrs["fold_scores"]))
        assert sum(t.user_attrs["fold_sizes"]) == task.n_train
        assert t.user_attrs["schedule"].startswith("constant ")
    assert chosen == study.best_trial.params["lr"]
    assert chosen == max(trials, key=lambda t: t.value or 0.0).params["lr"]

    # Run again: everything is scored, nothing is trained; a new grid LR alone is trained.
    monkeypatch.setattr(lrsearch.baselines, "train_task", _no_training)
    assert run_constant_cv(study, task, grid, folds=2, seed=0, device=CPU) == chosen
    assert len(study.get_trials()) == 3
    calls: list[float] = []

    def counting(*args: Any, **kwargs: Any) -> FitResult:
        calls.append(kwargs["schedule"].max_lr)
        return train_task(*args, **kwargs)

    monkeypatch.setattr(lrsearch.baselines, "train_task", counting)
    run_constant_cv(study, task, [*grid, 0.1], folds=2, seed=0, device=CPU)
    assert calls == [0.1, 0.1]  # two folds of the new LR
    assert len(study.get_trials()) == 4


def test_a_diverging_grid_lr_is_pruned_with_its_reason(tmp_path: Path) -> None:
    task = tiny_task.task()
    study = _study(tmp_path)
    chosen = run_constant_cv(study, task, [0.1, 1e4], folds=2, seed=0, device=CPU)
    assert chosen == pytest.approx(0.1)
    (bad,) = [t for t in study.get_trials() if t.params["lr"] > 1]
    assert bad.state == TrialState.PRUNED
    assert bad.user_attrs["pruned_reason"].startswith("fold 0: ")
    assert len(bad.user_attrs["fold_scores"]) == 1


def test_every_grid_lr_diverging_is_an_lrsearch_error(tmp_path: Path) -> None:
    task = tiny_task.task()
    with pytest.raises(LrsearchError, match="every constant LR diverged"):
        run_constant_cv(_study(tmp_path), task, [1e4, 1e5], folds=2, seed=0, device=CPU)


def test_run_adam_runs_once_on_the_validation_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = tiny_task.task()
    fit, val = holdout(task, 0.2, seed=0)
    train_data, val_data = subset(task.train, fit), subset(task.train, val)
    study = _study(tmp_path, "b/adam-3e-4")
    trial = run_adam(study, task, train_data, val_data, seed=0, device=CPU)
    assert trial.state == TrialState.COMPLETE
    assert trial.params == {"lr": ADAM_LR}
    assert trial.user_attrs["optimizer"] == "Adam"
    assert len(trial.intermediate_values) == task.epochs
    alone = train_task(
        task,
        train_data,
        schedule=None,
        lr=ADAM_LR,
        optimizer_factory=adam,
        eval_data=val_data,
        seed=0,
        device=CPU,
    )
    assert trial.value == alone.final
    monkeypatch.setattr(lrsearch.baselines, "train_task", _no_training)
    again = run_adam(study, task, train_data, val_data, seed=0, device=CPU)
    assert again.number == trial.number
    assert len(study.get_trials()) == 1
