"""Tests for lrsearch/diagnostics.py: the update/weight ratio and why a run failed.

The ratios are checked against steps worked out by hand on one- and two-parameter models; the
reasons against runs built to fail one way each (a NaN, a loss that cannot fall).
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from lrsearch.diagnostics import (
    NON_FINITE,
    SAMPLES_PER_EPOCH,
    TOO_LOW,
    UpdateRatioMonitor,
    loss_stalled,
    measure_every,
    stall_reason,
)
from lrsearch.store import FLAGS, PRUNED_REASON, RATIO_BAND, UPDATE_RATIOS, UpdateRatios
from lrsearch.training import fit

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_ratio_of_one_sgd_step_by_hand() -> None:
    # Two groups: w = (3, 4) with gradient (0.3, 0.4) at lr 0.1 moves by 0.05 to norm 4.95;
    # v = 1 with gradient 0.5 at lr 1 moves by 0.5 to 0.5.
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    v = nn.Parameter(torch.tensor([1.0]))
    frozen = nn.Parameter(torch.tensor([100.0]), requires_grad=False)  # not counted
    opt = torch.optim.SGD([{"params": [w, frozen], "lr": 0.1}, {"params": [v], "lr": 1.0}])
    w.grad, v.grad = torch.tensor([0.3, 0.4]), torch.tensor([0.5])
    monitor = UpdateRatioMonitor(opt)
    monitor.before()
    opt.step()
    monitor.after()
    ratios, lrs = monitor.take()
    np.testing.assert_allclose(ratios, [[0.05 / 4.95, 0.5 / 0.5]], rtol=1e-5)  # float32
    assert lrs.tolist() == [0.1]  # the first group's
    assert monitor.take()[0].shape == (0, 2)  # taken: the queue is empty


def test_fit_measures_the_ratio_of_its_step_as_computed_by_hand() -> None:
    # y = w . x with w = (3, 4), x = (1, 0), target 1: the squared error's gradient is
    # 2 (3 - 1) x = (4, 0), so SGD at lr 0.01 moves w to (2.96, 4).
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 4.0]]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    data = (torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0]]))
    result = fit(model, opt, nn.MSELoss(), data, epochs=1, batch_size=1)
    assert result.update_ratios is not None
    by_hand = 0.04 / math.hypot(2.96, 4.0)
    assert result.update_ratios.epoch_medians == [[pytest.approx(by_hand, rel=1e-6)]]
    assert result.update_ratios.measured_steps == 1 and result.update_ratios.every == 1
    assert result.update_ratios.epoch_lrs == [0.01]
    assert model.weight.tolist() == [[pytest.approx(2.96), 4.0]]


def test_discard_forgets_the_last_step() -> None:
    w = nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    monitor = UpdateRatioMonitor(opt)
    for grad in (0.2, 0.4):
        w.grad = torch.tensor([grad])
        monitor.before()
        opt.step()
        monitor.after()
    monitor.discard()
    ratios, _ = monitor.take()
    np.testing.assert_allclose(ratios, [[0.1 / 0.9]], rtol=1e-6)


def test_a_run_measures_a_sample_of_steps_and_takes_each_epochs_median() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = fit(model, opt, nn.CrossEntropyLoss(), (x, y), epochs=3, batch_size=2)
    ratios = result.update_ratios
    assert ratios is not None
    # 32 steps an epoch: one in 4 measured, 8 an epoch.
    assert ratios.every == measure_every(32) == 32 // SAMPLES_PER_EPOCH
    assert ratios.measured_steps == 3 * 8
    assert len(ratios.epoch_medians) == 1 and len(ratios.epoch_medians[0]) == 3
    assert ratios.epoch_lrs == [0.1, 0.1, 0.1]
    assert all(v is not None and 0 < v < 1 for v in ratios.epoch_medians[0])
    assert UpdateRatios.from_dict(ratios.to_dict()) == ratios


def test_diagnostics_off_measure_nothing() -> None:
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = (torch.randn(8, 4), torch.zeros(8, dtype=torch.long))
    result = fit(model, opt, nn.CrossEntropyLoss(), data, epochs=1, diagnostics=False)
    assert result.update_ratios is None


@pytest.mark.parametrize(
    ("low", "high", "flag"),
    [
        (0.9, 0.0, "LR probably too low for layer group 1"),
        (0.0, 0.6, "LR probably too high for layer group 1"),
        (0.5, 0.5, None),  # half the steps is not most of them
    ],
)
def test_a_group_outside_the_band_for_most_steps_is_flagged(
    low: float, high: float, flag: str | None
) -> None:
    ratios = UpdateRatios([[1e-3], [1e-3]], [0.1], [1e-3, 2e-2], [0.0, low], [0.0, high], 10, 1)
    if flag is None:
        assert ratios.flags == []
    else:
        (only,) = ratios.flags
        assert only.startswith(flag)
        assert f"{RATIO_BAND[0]:.0e}" in only or f"{RATIO_BAND[1]:.0e}" in only


def test_loss_stalled_and_its_words() -> None:
    assert not loss_stalled([2.3, 2.3, 2.3])  # three epochs: too few to say
    assert loss_stalled([2.3, 2.3, 2.3, 2.3])
    assert loss_stalled([2.3, 1.0, 1.0, 0.9995, 1.0])  # a 0.05% dip is not a fall
    assert not loss_stalled([2.3, 1.0, 1.0, 0.99, 1.0])
    assert not loss_stalled([2.3, 2.3, math.nan, 2.3])
    assert stall_reason([1.0, 2.0]) is None
    words = stall_reason([1.0] * 6, epochs=5)
    assert words == f"{TOO_LOW} (the training loss has not fallen for 5 epochs)"
    assert "too low, or stuck" in words


class PruneAtEpoch(optuna.pruners.BasePruner):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return max(trial.intermediate_values, default=0) >= self.epoch


def test_a_flat_loss_run_gets_its_reason() -> None:
    # An LR of 1e-9 cannot move the loss: the pruner stops the trial after epoch 5 and its
    # reason says why; the update ratios say the same in their own words.
    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))

    def objective(trial: optuna.Trial) -> float:
        model = nn.Linear(4, 3)
        opt = torch.optim.SGD(model.parameters(), lr=1e-9)
        return fit(
            model,
            opt,
            nn.CrossEntropyLoss(),
            (x, y),
            epochs=8,
            batch_size=10,
            eval_data=(x, y),
            trial=trial,
        ).final

    study = optuna.create_study(direction="maximize", pruner=PruneAtEpoch(5))
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs[PRUNED_REASON] == (
        f"pruner: stopped after epoch 5: {TOO_LOW} (the training loss has not fallen for 3 epochs)"
    )
    (flag,) = trial.user_attrs[FLAGS]
    assert flag.startswith("LR probably too low for layer group 0")
    assert UpdateRatios.from_dict(trial.user_attrs[UPDATE_RATIOS]).share_low == [1.0]


def test_a_flat_loss_run_to_the_end_is_flagged() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=1e-9)
    result = fit(model, opt, nn.CrossEntropyLoss(), (x, y), epochs=5, batch_size=10)
    assert result.stop_reason is None
    low, stuck = result.flags
    assert low.startswith("LR probably too low for layer group 0")
    assert stuck == f"{TOO_LOW} (the training loss has not fallen for 4 epochs)"


def test_a_healthy_run_has_no_flags() -> None:
    torch.manual_seed(0)
    x = torch.randn(60, 4)
    y = x[:, :3].argmax(dim=1)
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.005)
    result = fit(model, opt, nn.CrossEntropyLoss(), (x, y), epochs=5, batch_size=10)
    assert result.update_ratios is not None
    assert all(1e-4 < v < 1e-2 for v in result.update_ratios.epoch_medians[0])  # type: ignore[operator]
    assert result.flags == []


def test_a_nan_run_gets_its_reason() -> None:
    def log_of_zero(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -(out * 0).log().mean() * 0 + nn.functional.cross_entropy(out, y) * math.nan

    def objective(trial: optuna.Trial) -> float:
        model = nn.Linear(4, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        data = (torch.randn(20, 4), torch.zeros(20, dtype=torch.long))
        return fit(model, opt, log_of_zero, data, epochs=2, eval_data=data, trial=trial).final

    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs[PRUNED_REASON] == f"non-finite loss (nan) at step 0: {NON_FINITE}"
    assert (
        "learning rate too high (or a division by zero / log of zero in the loss)"
        in (trial.user_attrs[PRUNED_REASON])
    )
