"""Tests for lrsearch/training.py: fit, evaluate, train_task and their helpers.

Everything trains tiny linear models on a few dozen seeded CPU examples; a real in-memory Optuna
study drives the pruning and divergence paths.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from assertions import invalid
from optuna.trial import TrialState
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from lrsearch import Schedule
from lrsearch.diagnostics import NON_FINITE
from lrsearch.store import (
    EPOCH_LRS,
    EPOCHS_RUN,
    FLAGS,
    LR_MEAN,
    LR_PEAK,
    OPTIMIZER,
    PRUNED_REASON,
    SCHEDULE,
    STOP_CODE,
    UPDATE_RATIOS,
    StopReason,
)
from lrsearch.tasks import Task, sgd, subset
from lrsearch.training import (
    FitResult,
    TrialRecord,
    combine_for,
    default_threads,
    ensemble_outputs,
    evaluate,
    evaluate_ensemble,
    fit,
    resolve_device,
    state_on_cpu,
    train_task,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

N_FEATURES, N_CLASSES = 4, 3


def make_data(n: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable problem: the class is the argmax of the first three features."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_FEATURES, generator=gen)
    return x, x[:, :N_CLASSES].argmax(dim=1)


def make_model(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(N_FEATURES, N_CLASSES)


def run(
    train: Any,
    *,
    lr: float = 0.1,
    epochs: int = 3,
    batch_size: int = 8,
    model: nn.Module | None = None,
    **kwargs: Any,
) -> tuple[FitResult, nn.Module, torch.optim.Optimizer]:
    model = model if model is not None else make_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    result = fit(
        model, opt, nn.CrossEntropyLoss(), train, epochs=epochs, batch_size=batch_size, **kwargs
    )
    return result, model, opt


def record_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """The first group's LR at every optimizer step, read just before the step is taken."""
    seen: list[float] = []

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        seen.append(opt.param_groups[0]["lr"])

    optimizer.register_step_pre_hook(hook)
    return seen


class IdRecorder(nn.Module):
    """A linear model that records which examples (ids in feature 0) it trains on, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(N_FEATURES, N_CLASSES)
        self.batches: list[list[int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.batches.append(torch.round(x[:, 0] * 1000).long().tolist())
        return self.linear(x)


def id_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_data(n)
    x[:, 0] = torch.arange(n) / 1000  # a small id, recoverable exactly
    return x, y


def flatten(batches: list[list[int]]) -> list[int]:
    return list(itertools.chain.from_iterable(batches))


def epochs_seen(model: IdRecorder, steps_per_epoch: int) -> list[list[int]]:
    b = model.batches
    return [flatten(b[i : i + steps_per_epoch]) for i in range(0, len(b), steps_per_epoch)]


# -- the schedule ------------------------------------------------------------------------------

SCHEDULES = [
    Schedule("constant", max_lr=0.05),
    Schedule("step", max_lr=0.1, step_size=4, decay=0.5),
    Schedule("exponential", max_lr=0.1, step_size=3, decay=0.7),
    Schedule("triangular", base_lr=0.01, max_lr=0.1, step_size=3),
    Schedule("exp_range", base_lr=0.01, max_lr=0.1, step_size=2, decay=0.8),
    Schedule("sgdr", base_lr=0.0, max_lr=0.1, step_size=5, decay=0.7, cycle_mult=2),
    Schedule("onecycle", base_lr=0.004, max_lr=0.1, pct_start=0.25),
    Schedule("cosine", base_lr=0.001, max_lr=0.1, warmup=3),
    Schedule("wsd", base_lr=0.0, max_lr=0.1, warmup=3, cooldown=0.3),
    Schedule("inverse_sqrt", max_lr=0.1, warmup=3),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.kind)
@pytest.mark.parametrize(("n", "batch_size", "epochs"), [(50, 8, 3), (40, 40, 8), (9, 2, 2)])
def test_schedule_is_stepped_once_per_optimizer_step(
    schedule: Schedule, n: int, batch_size: int, epochs: int
) -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=123.0)  # overwritten by the schedule
    seen = record_lrs(opt)
    result = fit(
        model,
        opt,
        nn.CrossEntropyLoss(),
        make_data(n),
        epochs=epochs,
        batch_size=batch_size,
        schedule=schedule,
        diverge_factor=1e9,
    )
    spe = math.ceil(n / batch_size)
    total = epochs * spe
    assert result.steps == total == len(seen)
    assert result.stop_reason is None and result.epochs_run == epochs
    np.testing.assert_allclose(seen, schedule.lrs(total), rtol=1e-12, atol=0)
    # The realised LR of each epoch: the one in force for its first step.
    np.testing.assert_allclose(result.lrs, schedule.lrs(total)[::spe], rtol=1e-12, atol=0)
    assert len(result.lrs) == epochs


def test_without_a_schedule_the_optimizer_lr_stays() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.03)
    seen = record_lrs(opt)
    result = fit(model, opt, nn.CrossEntropyLoss(), make_data(20), epochs=2, batch_size=6)
    assert result.steps == 2 * 4 == len(seen)
    assert seen == [0.03] * 8 and opt.param_groups[0]["lr"] == 0.03
    assert result.lrs == [0.03, 0.03]


def test_a_dataloader_sets_its_own_batches() -> None:
    x, y = make_data(50)
    loader = DataLoader(TensorDataset(x, y), batch_size=10)
    schedule = Schedule("step", max_lr=0.1, step_size=3, decay=0.5)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = record_lrs(opt)
    result = fit(
        model, opt, nn.CrossEntropyLoss(), loader, epochs=2, batch_size=3, schedule=schedule
    )
    assert result.steps == 2 * 5  # the loader's 5 batches, not ceil(50 / 3)
    np.testing.assert_allclose(seen, schedule.lrs(10), rtol=1e-12)


# -- what is trained on ------------------------------------------------------------------------


def test_every_example_is_seen_once_per_epoch_in_a_fresh_order() -> None:
    n, batch = 23, 5
    model = IdRecorder()
    result, _, _ = run(id_data(n), model=model, lr=1e-3, epochs=3, batch_size=batch)
    per_epoch = epochs_seen(model, math.ceil(n / batch))
    assert [len(b) for b in model.batches] == [5, 5, 5, 5, 3] * 3  # the last batch is short
    assert len(per_epoch) == 3 and result.steps == 15
    assert all(sorted(ids) == list(range(n)) for ids in per_epoch)
    assert per_epoch[0] != per_epoch[1] != per_epoch[2]
    assert per_epoch[0] != list(range(n))  # shuffled


def test_same_seed_same_run_different_seed_different_order() -> None:
    data, eval_data = id_data(30), make_data(20, seed=1)
    runs = []
    for seed in (7, 7, 8):
        model = IdRecorder()
        torch.manual_seed(0)
        model.linear.reset_parameters()
        result, _, _ = run(data, model=model, eval_data=eval_data, seed=seed, metric="loss")
        runs.append((result, model))
    (r1, m1), (r2, m2), (r3, m3) = runs
    assert m1.batches == m2.batches
    assert r1.values == r2.values and r1.train_losses == r2.train_losses
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    assert m1.batches != m3.batches
    assert sorted(flatten(m1.batches)) == sorted(flatten(m3.batches))
    assert r1.values != r3.values  # a different order changes the trained model


def test_fit_leaves_the_global_rng_alone() -> None:
    model = make_model()  # seeds torch itself, so before the reference draw
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    run(make_data(20), model=model, epochs=2)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kind", ["tensors", "dataset", "subset", "dataloader"])
def test_tensors_datasets_and_loaders_all_train(kind: str) -> None:
    x, y = make_data(60)
    train: Any = {
        "tensors": (x, y),
        "dataset": TensorDataset(x, y),
        "subset": Subset(TensorDataset(x, y), list(range(60))),
        "dataloader": DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True),
    }[kind]
    before = evaluate(make_model(), (x, y), metric="loss", loss=nn.CrossEntropyLoss())
    result, model, _ = run(train, lr=0.5, epochs=8, batch_size=10, eval_data=(x, y))
    assert result.steps == 8 * 6 and result.epochs_run == 8 and result.stop_reason is None
    assert len(result.values) == len(result.train_losses) == 8
    assert result.final == result.values[-1] > 0.85
    assert result.train_losses[-1] < result.train_losses[0]
    assert evaluate(model, (x, y), metric="loss", loss=nn.CrossEntropyLoss()) < before
    assert result.seconds > 0


def test_the_dataset_path_is_seeded_too() -> None:
    x, y = id_data(30)
    orders = []
    for seed in (1, 1, 2):
        model = IdRecorder()
        run(TensorDataset(x, y), model=model, lr=1e-3, epochs=1, batch_size=7, seed=seed)
        orders.append(model.batches)
    assert orders[0] == orders[1] != orders[2]


def test_on_epoch_sees_every_evaluated_value() -> None:
    calls: list[tuple[int, float]] = []
    result, _, _ = run(
        make_data(30),
        epochs=4,
        eval_data=make_data(10, seed=2),
        on_epoch=lambda e, v: calls.append((e, v)),
    )
    assert calls == list(enumerate(result.values, start=1))
    assert len(calls) == 4


def test_without_eval_data_there_are_no_values() -> None:
    result, _, _ = run(make_data(30), epochs=2)
    assert result.values == [] and math.isnan(result.final)
    assert len(result.train_losses) == 2


@pytest.mark.parametrize(
    ("kwargs", "name", "value"),
    [
        ({"epochs": 0}, "epochs", 0),
        ({"epochs": 1.5}, "epochs", 1.5),
        ({"batch_size": 0}, "batch_size", 0),
        ({"batch_size": True}, "batch_size", True),
        ({"diverge_factor": float("nan")}, "diverge_factor", float("nan")),
    ],
)
def test_bad_fit_arguments(kwargs: dict[str, Any], name: str, value: object) -> None:
    args: dict[str, Any] = {"epochs": 2, "batch_size": 4, **kwargs}
    model = make_model()
    with invalid(name, value):
        fit(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            nn.CrossEntropyLoss(),
            make_data(10),
            **args,
        )


def test_bad_training_data() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="list"):
        fit(model, opt, nn.CrossEntropyLoss(), [1, 2, 3], epochs=1)  # type: ignore[arg-type]
    empty = DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="empty"):
        fit(model, opt, nn.CrossEntropyLoss(), empty, epochs=1)


# -- plateau: stepped once per epoch with the metric ------------------------------------------


class Story:
    """A metric function that tells a given story: the next value at every evaluation,
    whatever the model does, so flat and improving epochs are certain."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.calls = 0

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        self.calls += 1
        return self.values[self.calls - 1]


PLATEAU = Schedule("plateau", max_lr=0.08, base_lr=0.015, decay=0.5, patience=1)

# An accuracy-like story (larger is better): improves for 3 epochs, stalls for 4, improves once,
# then stalls to the end. The same story as a loss (smaller is better) is 1 - value.
RISING = [0.2, 0.4, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7]
# patience 1: the 2nd flat epoch after the best (epoch index 4) lowers the LR of epoch 5; the
# next two flat epochs (5, 6) lower epoch 7's; epoch 7 improves; 8 and 9 lower epoch 10's, and
# 10 and 11 would lower a 13th. The floor 0.015 stops the last halving (0.02 -> 0.015).
RISING_LRS = [0.08] * 5 + [0.04] * 2 + [0.02] * 3 + [0.015] * 2


def fit_plateau(
    story: list[float], *, maximize: bool | None, schedule: Schedule = PLATEAU, **kwargs: Any
) -> tuple[FitResult, list[float]]:
    """Train 12 epochs of 4 steps under ``schedule`` with ``story`` as the metric; the result
    and the LR of every optimizer step."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = record_lrs(opt)
    kwargs.setdefault("eval_data", make_data(10, seed=1))
    result = fit(
        model,
        opt,
        nn.CrossEntropyLoss(),
        make_data(20),
        epochs=len(story),
        batch_size=5,
        schedule=schedule,
        metric=Story(story),
        maximize=maximize,
        diverge_factor=1e9,
        **kwargs,
    )
    return result, seen


@pytest.mark.parametrize("maximize", [True, False])
def test_plateau_drops_after_patience_flat_epochs_in_the_metrics_direction(
    maximize: bool,
) -> None:
    story = RISING if maximize else [1 - v for v in RISING]
    result, seen = fit_plateau(story, maximize=maximize)
    assert result.values == story and result.epochs_run == 12 and result.steps == 48
    assert result.lrs == pytest.approx(RISING_LRS, rel=1e-12)
    # Constant within each epoch: the scheduler moves once per epoch, not per step.
    np.testing.assert_allclose(seen, np.repeat(RISING_LRS, 4), rtol=1e-12)
    # lrs() replays the same scheduler over the values the run saw.
    replay = PLATEAU.lrs(48, metrics=result.values, steps_per_epoch=4, maximize=maximize)
    np.testing.assert_array_equal(seen, replay)


@pytest.mark.parametrize("maximize", [True, False])
def test_plateau_does_not_drop_while_the_metric_improves(maximize: bool) -> None:
    story = [0.1 * (e + 1) for e in range(8)]  # better and better: an accuracy rising...
    if not maximize:
        story = [1 / v for v in story]  # ...or a loss falling
    result, seen = fit_plateau(story, maximize=maximize)
    assert result.lrs == [0.08] * 8
    assert seen == [0.08] * 32


def test_plateau_read_in_the_wrong_direction_drops_while_the_metric_improves() -> None:
    # The direction matters: the rising accuracy of the previous test, read as a loss, is
    # worse every epoch, and the LR halves every other epoch down to the floor.
    result, _ = fit_plateau([0.1 * (e + 1) for e in range(8)], maximize=False)
    assert result.lrs == pytest.approx([0.08] * 3 + [0.04] * 2 + [0.02] * 2 + [0.015])


@pytest.mark.parametrize(("metric", "drops"), [("accuracy", False), ("loss", True)])
def test_plateau_infers_the_direction_of_a_named_metric(metric: str, drops: bool) -> None:
    # An improving run read as "accuracy" (larger is better) or as "loss" (smaller is better):
    # the evaluation data is the training data, so the loss falls and the accuracy cannot fall.
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    data = make_data(40)
    schedule = Schedule("plateau", max_lr=0.5, base_lr=0.0, decay=0.5, patience=0)
    result = fit(
        model,
        opt,
        nn.CrossEntropyLoss(),
        data,
        epochs=6,
        batch_size=8,
        schedule=schedule,
        eval_data=data,
        metric=metric,
    )
    replay = schedule.lrs(30, metrics=result.values, steps_per_epoch=5, maximize=not drops)
    assert result.lrs == pytest.approx(replay[::5].tolist(), rel=1e-12)
    if metric == "loss":  # the loss falls every epoch: never lowered
        assert all(b < a for a, b in itertools.pairwise(result.values))
        assert result.lrs == [0.5] * 6


def test_plateau_floor_holds() -> None:
    schedule = Schedule("plateau", max_lr=0.08, base_lr=0.03, decay=0.1, patience=0)
    result, _ = fit_plateau([0.5] * 6, maximize=True, schedule=schedule)
    assert result.lrs == pytest.approx([0.08, 0.08, 0.03, 0.03, 0.03, 0.03], rel=1e-12)


def test_plateau_steps_on_plateau_data_and_reports_eval_data() -> None:
    # eval_data (10 examples) scores flat, plateau_data (12 examples) scores rising: the LR
    # follows plateau_data (never lowered), while the values reported are eval_data's.
    flat, rising = iter([0.5] * 12), iter(RISING)

    def metric(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return next(flat) if len(targets) == 10 else next(rising)

    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    result = fit(
        model,
        opt,
        nn.CrossEntropyLoss(),
        make_data(20),
        epochs=4,
        batch_size=5,
        schedule=PLATEAU,
        eval_data=make_data(10, seed=1),
        plateau_data=make_data(12, seed=2),
        metric=metric,
        maximize=True,
    )
    assert result.values == [0.5] * 4
    assert result.lrs == [0.08] * 4  # RISING improves for its first 3 epochs
    assert next(rising) == 0.6  # evaluated after epochs 1-3, not after the last


def test_plateau_data_alone_is_enough() -> None:
    result, _ = fit_plateau(RISING, maximize=True, eval_data=None, plateau_data=make_data(6))
    assert result.values == [] and result.lrs == pytest.approx(RISING_LRS, rel=1e-12)


def test_a_non_finite_plateau_metric_stops_the_run() -> None:
    result, _ = fit_plateau(
        [0.3, 0.4, math.nan, 0.5], maximize=True, eval_data=None, plateau_data=make_data(6)
    )
    assert result.stop_reason == f"non-finite plateau metric in epoch 3: {NON_FINITE}"
    assert result.epochs_run == 3 and result.lrs == [0.08] * 3


def test_plateau_needs_data_for_its_metric() -> None:
    with invalid("eval_data"):
        fit_plateau([0.5] * 3, maximize=True, eval_data=None)


def test_plateau_with_a_metric_function_needs_a_direction() -> None:
    with invalid("maximize"):
        fit_plateau([0.5] * 3, maximize=None)
    # The other kinds do not need one.
    result, _ = fit_plateau([0.5] * 3, maximize=None, schedule=SCHEDULES[1])
    assert result.epochs_run == 3


def test_maximize_must_be_a_bool() -> None:
    with invalid("maximize", "max"):
        fit_plateau([0.5] * 3, maximize="max")  # type: ignore[arg-type]


# A rising value over the task's 3 epochs: never lowered when larger is better; lowered after
# epoch 2 (the first not to beat epoch 1, patience 0) when smaller is.
@pytest.mark.parametrize(
    ("direction", "lrs"), [("maximize", [0.08] * 3), ("minimize", [0.08, 0.08, 0.04])]
)
def test_train_task_steps_plateau_in_the_tasks_direction(direction: str, lrs: list[float]) -> None:
    task = tiny_task(metric=Story([0.2, 0.4, 0.6]), direction=direction)
    result = train_task(
        task,
        task.train,
        schedule=Schedule("plateau", max_lr=0.08, base_lr=0.0, decay=0.5, patience=0),
        eval_data=make_data(10, seed=4),
        seed=0,
        device=torch.device("cpu"),
    )
    assert result.lrs == lrs


def test_train_task_passes_plateau_data() -> None:
    sizes: list[int] = []

    def metric(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        sizes.append(len(targets))
        return 0.5

    task = tiny_task(metric=metric, direction="maximize")
    train_task(
        task,
        task.train,
        schedule=PLATEAU,
        eval_data=make_data(10, seed=4),
        plateau_data=make_data(7, seed=5),
        seed=0,
        device=torch.device("cpu"),
    )
    assert sizes == [10, 7, 10, 7, 10]  # 3 epochs: no plateau step after the last


# -- divergence --------------------------------------------------------------------------------


def test_a_huge_lr_stops_the_run_with_a_reason() -> None:
    eval_data = make_data(20, seed=1)
    result, _, _ = run(make_data(40), lr=1e6, epochs=5, eval_data=eval_data)
    assert result.stop_reason is not None
    assert result.stop_reason.startswith(("diverged in epoch 1", "non-finite"))
    assert result.epochs_run == 1 and len(result.train_losses) == 1
    assert result.steps == 5  # the epoch ran to its end before the check
    assert len(result.values) == 1  # the diverged model's metric, evaluated once


def test_a_huge_lr_prunes_the_trial_and_the_study_goes_on() -> None:
    results: dict[int, FitResult] = {}

    def objective(trial: optuna.Trial) -> float:
        lr = 1e6 if trial.number == 0 else 0.1
        result, _, _ = run(
            make_data(40), lr=lr, epochs=3, eval_data=make_data(20, seed=1), trial=trial
        )
        results[trial.number] = result
        return result.final

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=2)
    diverged, healthy = study.trials
    assert diverged.state == TrialState.PRUNED
    reason = diverged.user_attrs[PRUNED_REASON]
    assert reason.startswith(("diverged in epoch 1", "non-finite"))
    assert diverged.user_attrs[EPOCHS_RUN] == 1
    assert diverged.user_attrs[EPOCH_LRS] == [1e6]
    assert diverged.intermediate_values == {}  # a diverged epoch is never reported
    assert 0 not in results  # fit raised instead of returning
    assert healthy.state == TrialState.COMPLETE
    assert PRUNED_REASON not in healthy.user_attrs
    assert healthy.value == results[1].final


def test_a_nan_loss_at_step_0_stops_before_any_update() -> None:
    x, y = make_data(20)
    x[:] = float("nan")
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result, _, _ = run((x, y), model=model, epochs=3, eval_data=make_data(10))
    assert result.stop_reason == f"non-finite loss (nan) at step 0: {NON_FINITE}"
    assert result.steps == 0 and result.epochs_run == 0 and result.train_losses == []
    assert len(result.values) == 1  # the untouched model, evaluated once
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_nan_loss_at_step_0_prunes_a_trial() -> None:
    x, y = make_data(20)
    x[0] = float("inf")

    def objective(trial: optuna.Trial) -> float:
        return run((x, y), epochs=2, batch_size=20, eval_data=make_data(10), trial=trial)[0].final

    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    reason = trial.user_attrs[PRUNED_REASON]
    assert reason.startswith("non-finite loss") and reason.endswith(f"at step 0: {NON_FINITE}")
    assert trial.user_attrs[EPOCHS_RUN] == 0
    assert trial.user_attrs[EPOCH_LRS] == []  # no epoch was run


def test_a_non_finite_metric_stops_the_run() -> None:
    x, y = make_data(10)
    x[3] = float("nan")
    result, _, _ = run(make_data(30), epochs=3, eval_data=(x, y), metric="loss")
    assert result.stop_reason == f"non-finite loss in epoch 1: {NON_FINITE}"
    assert result.epochs_run == 1 and len(result.values) == 1 and math.isnan(result.final)


def test_the_mean_loss_is_compared_with_the_first_loss() -> None:
    # A loss that grows 10x after the first step: diverged at factor 4, fine at factor 100.
    calls = [0]

    def growing(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        base = nn.functional.cross_entropy(out, y)
        return base if calls[0] == 1 else base * 10

    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    result = fit(model, opt, growing, make_data(20), epochs=2, batch_size=5)
    assert result.stop_reason is not None and result.stop_reason.startswith("diverged in epoch 1")
    assert "4 x the first loss" in result.stop_reason
    calls[0] = 0
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    result = fit(model, opt, growing, make_data(20), epochs=2, batch_size=5, diverge_factor=100)
    assert result.stop_reason is None and result.epochs_run == 2


# -- reporting and pruning ---------------------------------------------------------------------


def test_every_stop_is_a_code_plus_the_words_it_always_had() -> None:
    eval_data = make_data(20, seed=1)
    diverged, _, _ = run(make_data(40), lr=1e6, epochs=5, eval_data=eval_data)
    assert diverged.stop is not None and diverged.stop.words == diverged.stop_reason
    assert diverged.stop.code == (
        "diverged" if "diverged" in diverged.stop.words else "non-finite"
    )
    x, y = make_data(20)
    x[:] = float("nan")
    nan, _, _ = run((x, y), epochs=2)
    assert nan.stop == StopReason("non-finite", f"non-finite loss (nan) at step 0: {NON_FINITE}")
    full, _, _ = run(make_data(40), epochs=2)
    assert full.stop is None and full.stop_reason is None


def test_a_diverged_trial_stores_its_code_and_words() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=50.0)
    x, y = make_data(40)

    def objective(trial: optuna.Trial) -> float:
        return fit(
            model,
            opt,
            nn.CrossEntropyLoss(),
            (x, y),
            epochs=3,
            batch_size=8,
            eval_data=(x, y),
            diverge_factor=1.01,
            trial=trial,
        ).final

    study.optimize(objective, n_trials=1)
    attrs = study.trials[0].user_attrs
    assert attrs[STOP_CODE] == "diverged"
    assert attrs[PRUNED_REASON].startswith("diverged in epoch 1: mean loss ")
    assert " > 1.01 x the first loss " in attrs[PRUNED_REASON]
    assert attrs[PRUNED_REASON].endswith(": learning rate too high")
    assert StopReason.from_attrs(attrs) == StopReason("diverged", attrs[PRUNED_REASON])


def test_a_pruned_run_whose_loss_stalled_is_stalled() -> None:
    # lr 0 and equal batches: the mean loss of every epoch is the same, so it has stalled by
    # the pruner's first say (epoch 4, after more than STALL_EPOCHS epochs).
    pruner = optuna.pruners.ThresholdPruner(lower=2.0, n_warmup_steps=4)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.optimize(
        lambda t: (
            run(make_data(40), lr=0.0, epochs=6, eval_data=make_data(20, 1), trial=t)[0].final
        ),
        n_trials=1,
    )
    attrs = study.trials[0].user_attrs
    assert study.trials[0].state == TrialState.PRUNED
    assert attrs[STOP_CODE] == "stalled"
    assert attrs[PRUNED_REASON].startswith("pruner: stopped after epoch 4: learning rate too low")
    assert attrs[EPOCHS_RUN] == 4 and attrs[EPOCH_LRS] == [0.0] * 4
    assert FLAGS in attrs and UPDATE_RATIOS in attrs  # with diagnostics, its flags are theirs


def test_the_trial_record_writes_a_completed_run_as_fit_writes_a_pruned_one() -> None:
    trial = optuna.trial.FixedTrial({})
    record = TrialRecord(trial)
    record.planned("plateau from 0.1", "adamw", [0.1, 0.1, 0.05])
    result, _, _ = run(make_data(40), epochs=2, eval_data=make_data(20, seed=1))
    record.ran(result, lrs_as_ran=True)
    attrs = trial.user_attrs
    assert attrs[SCHEDULE] == "plateau from 0.1" and attrs[OPTIMIZER] == "adamw"
    assert attrs[LR_PEAK] == 0.1 and attrs[LR_MEAN] == 0.1  # as ran: the epochs' LRs
    assert attrs[EPOCHS_RUN] == 2 and attrs[EPOCH_LRS] == result.lrs
    assert attrs[FLAGS] == result.flags and UPDATE_RATIOS in attrs
    assert STOP_CODE not in attrs and PRUNED_REASON not in attrs
    quiet = optuna.trial.FixedTrial({})
    TrialRecord(quiet).planned("constant 0.1", None, [0.1])
    assert OPTIMIZER not in quiet.user_attrs  # the task's own optimizer is not named
    cv = optuna.trial.FixedTrial({})
    TrialRecord(cv).setup("constant 0.1", "sgd")
    assert cv.user_attrs == {SCHEDULE: "constant 0.1", OPTIMIZER: "sgd"}  # no LR summary


def test_trial_gets_one_report_per_epoch() -> None:
    results: list[FitResult] = []

    def objective(trial: optuna.Trial) -> float:
        result, _, _ = run(make_data(30), epochs=4, eval_data=make_data(10, seed=1), trial=trial)
        results.append(result)
        return result.final

    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE
    assert trial.intermediate_values == dict(enumerate(results[0].values, start=1))
    assert sorted(trial.intermediate_values) == [1, 2, 3, 4]


def test_the_median_pruner_prunes_a_bad_trial_through_fit() -> None:
    # The metric is rigged per trial so the pruner's decision is certain: trial 0 scores 1.0 at
    # every epoch, trial 1 scores 0.0 and is below the median from epoch 1.
    def objective(trial: optuna.Trial) -> float:
        score = 1.0 if trial.number == 0 else 0.0
        result, _, _ = run(
            make_data(30),
            epochs=4,
            eval_data=make_data(10, seed=1),
            metric=lambda out, y: score,
            trial=trial,
        )
        return result.final

    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.optimize(objective, n_trials=2)
    good, bad = study.trials
    assert good.state == TrialState.COMPLETE and good.intermediate_values == {
        e: 1.0 for e in range(1, 5)
    }
    assert bad.state == TrialState.PRUNED
    assert bad.user_attrs[PRUNED_REASON].startswith("pruner")
    assert bad.user_attrs[PRUNED_REASON] == "pruner: stopped after epoch 1"
    assert bad.user_attrs[EPOCHS_RUN] == 1
    assert bad.user_attrs[EPOCH_LRS] == [0.1]  # a pruned run returns no FitResult
    assert bad.intermediate_values == {1: 0.0}


# -- evaluate ----------------------------------------------------------------------------------


def identity_model() -> nn.Linear:
    model = nn.Linear(N_CLASSES, N_CLASSES)
    with torch.no_grad():
        model.weight.copy_(torch.eye(N_CLASSES))
        model.bias.zero_()
    return model


def test_evaluate_accuracy_counts_argmax_hits() -> None:
    n = 2600  # more than two evaluation chunks
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, N_CLASSES, generator=gen)
    y = x.argmax(dim=1)
    wrong = torch.arange(n) % 4 == 0  # every fourth label is made wrong
    y[wrong] = (y[wrong] + 1) % N_CLASSES
    assert evaluate(identity_model(), (x, y)) == pytest.approx(0.75)
    assert evaluate(identity_model(), TensorDataset(x, y)) == pytest.approx(0.75)


@pytest.mark.parametrize("kind", ["tensors", "dataset", "uneven loader"])
def test_evaluate_loss_is_the_criterion_over_the_whole_set(kind: str) -> None:
    x, y = make_data(2100)
    model = make_model()
    data: Any = {
        "tensors": (x, y),
        "dataset": TensorDataset(x, y),
        "uneven loader": DataLoader(TensorDataset(x, y), batch_size=97),
    }[kind]
    criterion = nn.CrossEntropyLoss()
    with torch.no_grad():
        expected = float(criterion(model(x), y))
        # The same as the example-weighted mean of per-batch means.
        parts = [
            (float(criterion(model(x[i : i + 97]), y[i : i + 97])), len(x[i : i + 97]))
            for i in range(0, len(x), 97)
        ]
    weighted = sum(v * k for v, k in parts) / len(x)
    value = evaluate(model, data, metric="loss", loss=criterion)
    assert value == pytest.approx(expected, rel=1e-5)
    assert value == pytest.approx(weighted, rel=1e-5)


def test_evaluate_calls_a_metric_function_once_on_everything() -> None:
    x, y = make_data(1500)
    calls: list[tuple[int, int]] = []

    def share_of_class_0(out: torch.Tensor, targets: torch.Tensor) -> float:
        calls.append((len(out), len(targets)))
        assert out.shape == (1500, N_CLASSES)
        return float((targets == 0).float().mean())

    value = evaluate(make_model(), (x, y), metric=share_of_class_0)
    assert calls == [(1500, 1500)]
    assert value == pytest.approx(float((y == 0).float().mean()))


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_runs_in_eval_mode_without_grad_and_restores_the_mode(training: bool) -> None:
    modes: list[tuple[bool, bool]] = []

    class Spy(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            modes.append((self.training, torch.is_grad_enabled()))
            return super().forward(x)

    model = Spy(N_FEATURES, N_CLASSES)
    model.train(training)
    evaluate(model, make_data(10))
    assert modes == [(False, False)]
    assert model.training is training


def test_evaluate_restores_the_mode_when_the_metric_raises() -> None:
    model = make_model()
    model.train()

    def broken(out: torch.Tensor, y: torch.Tensor) -> float:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        evaluate(model, make_data(10), metric=broken)
    assert model.training


def test_evaluate_rejects_unknown_metrics_and_loss_without_criterion() -> None:
    with invalid("metric", "f1"):
        evaluate(make_model(), make_data(10), metric="f1")
    with pytest.raises(ValueError, match="loss function"):
        evaluate(make_model(), make_data(10), metric="loss")


def test_evaluate_loss_of_a_non_finite_model_is_nan() -> None:
    model = make_model()
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    assert math.isnan(evaluate(model, make_data(10), metric="loss", loss=nn.CrossEntropyLoss()))


# -- train_task --------------------------------------------------------------------------------


def tiny_task(**fields: Any) -> Task:
    x, y = make_data(40)
    return Task(
        lambda: nn.Linear(N_FEATURES, N_CLASSES),
        (x, y),
        make_data(10, seed=3),
        epochs=3,
        batch_size=10,
        **fields,
    )


def test_train_task_uses_the_tasks_settings_and_seeds_the_model() -> None:
    task = tiny_task()
    schedule = Schedule("step", max_lr=0.2, step_size=3, decay=0.5)
    kwargs: dict[str, Any] = {"eval_data": make_data(10, seed=4), "device": torch.device("cpu")}
    a = train_task(task, task.train, schedule=schedule, seed=1, **kwargs)
    b = train_task(task, task.train, schedule=schedule, seed=1, **kwargs)
    c = train_task(task, task.train, schedule=schedule, seed=2, **kwargs)
    assert a.steps == 3 * 4 and a.epochs_run == 3 and len(a.values) == 3
    assert a.values == b.values and a.train_losses == b.train_losses
    assert a.train_losses != c.train_losses  # a different init and order


def test_train_task_builds_the_optimizer_at_the_starting_lr() -> None:
    calls: list[float] = []
    lrs_seen: list[list[float]] = []

    def factory(params: Any, lr: float) -> torch.optim.Optimizer:
        calls.append(lr)
        opt = torch.optim.SGD(params, lr=lr)
        lrs_seen.append(record_lrs(opt))
        return opt

    task = tiny_task()
    cpu = torch.device("cpu")
    train_task(
        task,
        task.train,
        schedule=None,
        eval_data=None,
        seed=0,
        device=cpu,
        optimizer_factory=factory,
        lr=0.07,
    )
    assert calls == [0.07] and lrs_seen[0] == [0.07] * 12
    schedule = Schedule("onecycle", base_lr=0.01, max_lr=0.3)
    train_task(
        task,
        task.train,
        schedule=schedule,
        eval_data=None,
        seed=0,
        device=cpu,
        optimizer_factory=factory,
    )
    assert calls[1] == 0.3
    np.testing.assert_allclose(lrs_seen[1], schedule.lrs(12), rtol=1e-12)


def test_train_task_uses_the_tasks_optimizer_and_metric() -> None:
    made: list[float] = []
    base = sgd(momentum=0.5)

    def make_opt(params: Any, lr: float) -> torch.optim.Optimizer:
        made.append(lr)
        return base(params, lr)

    task = tiny_task(make_optimizer=make_opt, metric="loss")
    result = train_task(
        task,
        task.train,
        schedule=None,
        eval_data=task.train,
        seed=0,
        device=torch.device("cpu"),
        lr=0.05,
    )
    assert made == [0.05]
    assert all(v > 0 for v in result.values)  # a loss, not an accuracy of 0..1 that could be 0
    assert result.values[-1] < result.values[0]


def test_train_task_needs_a_schedule_or_an_lr() -> None:
    task = tiny_task()
    with pytest.raises(ValueError, match="schedule or an lr"):
        train_task(
            task, task.train, schedule=None, eval_data=None, seed=0, device=torch.device("cpu")
        )


# -- resolve_device and default_threads --------------------------------------------------------


def test_resolve_device_cpu_and_passthrough() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    device = torch.device("cpu")
    assert resolve_device(device) is device


@pytest.mark.parametrize("available", [True, False])
def test_resolve_device_auto_follows_cuda(
    available: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    expected = torch.device("cuda" if available else "cpu")
    assert resolve_device("auto") == expected
    assert resolve_device(None) == expected


def test_resolve_device_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with invalid("cuda") as info:
        resolve_device("cuda")
    assert "no CUDA" in str(info.value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda")


@pytest.mark.parametrize("name", ["tpu", "CPU", "cuda:0", "", "mps"])
def test_resolve_device_rejects_unknown_names(name: str) -> None:
    with invalid("device", name):
        resolve_device(name)


def test_default_threads_is_the_usable_cores_capped_at_8(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 1 <= default_threads() <= 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert default_threads() == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert default_threads() == 1
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert default_threads() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert default_threads() == 1


def test_a_subset_of_tensors_trains_like_the_rows_it_holds() -> None:
    x, y = make_data(40)
    idx = list(range(0, 40, 2))
    a, _, _ = run(subset((x, y), idx), epochs=2, eval_data=(x, y))
    b, _, _ = run((x[::2], y[::2]), epochs=2, eval_data=(x, y))
    assert a.values == b.values and a.steps == b.steps == 2 * 3


# -- snapshot ensembles ------------------------------------------------------------------------


def two_state_linear() -> tuple[nn.Linear, list[dict[str, torch.Tensor]]]:
    """A 2 -> 2 linear model and two states: logits ``(x0, 0)`` and ``(0, ln 3)``."""
    model = nn.Linear(2, 2)
    first = {"weight": torch.tensor([[1.0, 0.0], [0.0, 0.0]]), "bias": torch.zeros(2)}
    second = {"weight": torch.zeros(2, 2), "bias": torch.tensor([0.0, math.log(3.0)])}
    return model, [first, second]


def test_the_ensemble_prediction_is_the_mean_of_the_snapshots_probabilities() -> None:
    model, states = two_state_linear()
    x, y = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1])
    out, targets = ensemble_outputs(model, states, (x, y), combine="softmax")
    e = math.e
    # By hand: at x = (1, 0) the members say (e, 1)/(e+1) and (1/4, 3/4); at x = 0, (1/2, 1/2)
    # and (1/4, 3/4).
    expected = [
        [(e / (e + 1) + 0.25) / 2, (1 / (e + 1) + 0.75) / 2],
        [(0.5 + 0.25) / 2, (0.5 + 0.75) / 2],
    ]
    np.testing.assert_allclose(out.exp().numpy(), expected, rtol=1e-6)
    assert targets.tolist() == [0, 1]
    # Read as logits: the argmax is the averaged vote, cross-entropy the ensemble's NLL.
    assert evaluate_ensemble(model, states, (x, y)) == 0.5  # both rows vote for class 1
    nll = evaluate_ensemble(model, states, (x, y), metric="loss", loss=nn.CrossEntropyLoss())
    assert nll == pytest.approx(-(math.log(expected[0][0]) + math.log(expected[1][1])) / 2)


def test_the_regression_ensemble_is_the_mean_of_the_outputs() -> None:
    model = nn.Linear(1, 1)
    states = [
        {"weight": torch.tensor([[w]]), "bias": torch.tensor([b])}
        for w, b in ((1.0, 0.0), (3.0, 1.0), (-1.0, 2.0))
    ]
    x, y = torch.tensor([[2.0], [0.0]]), torch.tensor([[1.0], [1.0]])
    out, _ = ensemble_outputs(model, states, (x, y), combine="mean")
    np.testing.assert_allclose(out.numpy(), [[(2 + 7 + 0) / 3], [(0 + 1 + 2) / 3]], rtol=1e-6)
    mse = nn.MSELoss()
    assert combine_for("loss", mse) == "mean"
    value = evaluate_ensemble(model, states, (x, y), metric="loss", loss=mse)
    assert value == pytest.approx(((3 - 1) ** 2 + (1 - 1) ** 2) / 2)


def test_the_ensemble_leaves_the_model_alone() -> None:
    model, states = two_state_linear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_ensemble(model, states, (torch.randn(6, 2), torch.zeros(6, dtype=torch.long)))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_an_ensemble_needs_states_and_a_known_combination() -> None:
    model, states = two_state_linear()
    with invalid("states", []):
        ensemble_outputs(model, [], make_data(4))
    with invalid("combine", "vote"):
        ensemble_outputs(model, states, make_data(4), combine="vote")  # type: ignore[arg-type]


def test_fit_keeps_snapshots_at_the_steps_asked_and_scores_the_last_m() -> None:
    train, held = make_data(40), make_data(20, seed=1)
    # 40 examples in batches of 8: 5 steps an epoch, 20 in all; snapshots after 5, 10, 15, 20.
    result, model, _ = run(
        train, epochs=4, eval_data=held, snapshot_steps=[15, 5, 10, 20], snapshots=3
    )
    assert result.snapshot_steps == [10, 15, 20]
    assert result.snapshot_value == result.final  # the last snapshot is the final model
    # The same run again, its states copied after every step by a hook: the ensemble of
    # steps 10, 15 and 20 scores what fit said.
    seen: dict[int, dict[str, torch.Tensor]] = {}
    again = make_model()
    opt = torch.optim.SGD(again.parameters(), lr=0.1)
    opt.register_step_post_hook(
        lambda o, a, k: seen.__setitem__(len(seen) + 1, state_on_cpu(again))
    )
    fit(again, opt, nn.CrossEntropyLoss(), train, epochs=4, batch_size=8, diagnostics=False)
    states = [seen[10], seen[15], seen[20]]
    assert result.ensemble_value == evaluate_ensemble(again, states, held)
    assert all(torch.equal(v, seen[20][k]) for k, v in model.state_dict().items())


def test_fit_with_cycle_ends_of_an_sgdr_schedule() -> None:
    schedule = Schedule("sgdr", max_lr=0.5, base_lr=0.0, step_size=5, decay=1.0)
    total = 4 * 5  # 4 epochs of 5 steps
    result, _, _ = run(
        make_data(40),
        epochs=4,
        schedule=schedule,
        eval_data=make_data(20, seed=1),
        snapshot_steps=schedule.cycle_ends(total),
    )
    assert result.snapshot_steps == [5, 10, 15, 20]
    assert result.ensemble_value is not None and 0.0 <= result.ensemble_value <= 1.0


def test_without_snapshots_or_eval_data_there_is_no_ensemble() -> None:
    plain, _, _ = run(make_data(40), epochs=2, eval_data=make_data(10))
    assert plain.snapshot_steps == [] and plain.ensemble_value is None
    blind, _, _ = run(make_data(40), epochs=2, snapshot_steps=[5])
    assert blind.snapshot_steps == [5] and blind.ensemble_value is blind.snapshot_value is None


@pytest.mark.parametrize(
    ("kwargs", "name", "value"),
    [
        ({"snapshot_steps": [0]}, "snapshot_steps", 0),
        ({"snapshot_steps": [16]}, "snapshot_steps", 16),  # the run has 15 steps
        ({"snapshot_steps": [5], "snapshots": 0}, "snapshots", 0),
        ({"snapshots": 2}, "snapshots", 2),  # without snapshot_steps
        ({"snapshot_steps": "5"}, "snapshot_steps", "5"),
    ],
)
def test_bad_snapshot_arguments(kwargs: dict[str, Any], name: str, value: object) -> None:
    with invalid(name, value):
        run(make_data(40), epochs=3, **kwargs)


def test_train_task_passes_snapshots_on() -> None:
    x, y = make_data(40)
    task = Task(make_model, (x, y), make_data(10, seed=1), epochs=2, batch_size=10)
    result = train_task(
        task,
        task.train,
        schedule=Schedule("triangular", max_lr=0.1, base_lr=0.01, step_size=2),
        eval_data=make_data(10, seed=1),
        seed=0,
        device=torch.device("cpu"),
        snapshot_steps=[4, 8],
        snapshots=1,
        diagnostics=False,
    )
    assert result.snapshot_steps == [8] and result.update_ratios is None
    assert result.snapshot_value == result.final == result.ensemble_value
