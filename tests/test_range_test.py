"""Tests for lrsearch/range_test.py: range_test, its restore, its ladder and its reading.

Every sweep here runs a tiny CPU model for 20 to 100 steps. The known answers come from
linear regression, whose loss is a quadratic: gradient descent on it is stable below
``2 / L``, ``L`` the largest eigenvalue of the Hessian, computed here in closed form.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import math
import random
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from assertions import invalid
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, TensorDataset

from lrsearch import InvalidParameterError, LrsearchError, RangeTestResult, range_test
from lrsearch.range_test import Sweep, read_curve
from lrsearch.range_test.curve import SUGGESTION_RULE, Rule
from lrsearch.range_test.result import (
    MAX_SPREAD_DECADES,
    MIN_SIGNAL_TO_NOISE,
    MIN_VALLEY_RUNGS,
    median_lr,
)

Batch = tuple[torch.Tensor, torch.Tensor]

N_FEATURES = 4
NO_DIVERGENCE = {"start_lr": 1e-4, "end_lr": 1e-2}  # max lr * L = 0.02 on unit-variance data


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: faster on these tiny tensors, and not stalled by a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- data, models, criteria --------------------------------------------------------------------


def regression(
    n: int = 64, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = x @ w + 0.5`` on unit-variance features, so the Hessian of the MSE is near 2 I."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_FEATURES, generator=generator, dtype=dtype)
    y = x @ torch.linspace(1.0, -2.0, N_FEATURES, dtype=dtype) + 0.5
    return x, y


def batches(n_batches: int, batch_size: int = 16, seed: int = 0) -> list[Batch]:
    x, y = regression(n_batches * batch_size, seed)
    return list(zip(x.split(batch_size), y.split(batch_size), strict=True))


def linear(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(N_FEATURES, 1).to(dtype)


def sgd(model: nn.Module, lr: float = 0.01) -> Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr)


def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(out.reshape(target.shape), target)


class Criterion:
    """MSE (plus ``shift``) that counts its calls and records every group's LR at each one.

    ``fail_at``: raise a RuntimeError at that call (1-based). ``bad_from``: from that call on,
    return ``bad`` (NaN or inf) instead of the loss. ``draw_rngs``: consume the NumPy and
    Python RNGs on each call, so restoring them is not a no-op.
    """

    def __init__(
        self,
        optimizer: Optimizer | None = None,
        *,
        shift: float = 0.0,
        fail_at: int | None = None,
        bad_from: int | None = None,
        bad: float = math.nan,
        draw_rngs: bool = False,
    ) -> None:
        self.optimizer = optimizer
        self.shift = shift
        self.fail_at = fail_at
        self.bad_from = bad_from
        self.bad = bad
        self.draw_rngs = draw_rngs
        self.calls = 0
        self.group_lrs: list[list[float]] = []
        self.targets: list[torch.Tensor] = []

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.targets.append(target)
        if self.optimizer is not None:
            self.group_lrs.append([float(g["lr"]) for g in self.optimizer.param_groups])
        if self.calls == self.fail_at:
            raise RuntimeError(f"criterion fails at call {self.calls}")
        if self.draw_rngs:
            np.random.rand()  # noqa: NPY002
            random.random()
        loss = mse(out, target) + self.shift
        if self.bad_from is not None and self.calls >= self.bad_from:
            loss = loss * 0 + self.bad
        return loss

    @property
    def first_group_lrs(self) -> np.ndarray:
        return np.asarray([lrs[0] for lrs in self.group_lrs])


class Net(nn.Module):
    """Linear, BatchNorm, dropout, a weight tied between two layers and non-persistent buffers
    that forward updates in place: everything a restore can miss."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(N_FEATURES, 6)
        self.bn = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.2)
        self.mid = nn.Linear(6, 6)
        self.tied = nn.Linear(6, 6, bias=False)
        self.tied.weight = self.mid.weight
        self.head = nn.Linear(6, 1)
        self.register_buffer("forwards", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("input_mean", torch.zeros(N_FEATURES), persistent=False)
        self.seen_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        self.forwards.add_(1)
        with torch.no_grad():
            self.input_mean.lerp_(x.mean(0), 0.1)
        h = self.drop(torch.relu(self.bn(self.inp(x))))
        h = torch.relu(self.tied(torch.relu(self.mid(h))))
        return self.head(h).squeeze(-1)


def make_optimizer(kind: str, params: Any, lr: float = 0.01) -> Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    return torch.optim.Adam(params, lr=lr, betas=(0.85, 0.995))


def train_steps(
    model: nn.Module, optimizer: Optimizer, data: Sequence[Batch], steps: int = 3
) -> None:
    model.train()
    for i in range(steps):
        x, y = data[i % len(data)]
        optimizer.zero_grad()
        mse(model(x), y).backward()
        optimizer.step()


# -- comparing states --------------------------------------------------------------------------


def assert_same(got: Any, expected: Any, path: str = "") -> None:
    """Exact equality, recursing into dicts, sequences, tensors and arrays."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor), path
        assert got.dtype == expected.dtype and got.shape == expected.shape, path
        assert torch.equal(got, expected), path
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected, err_msg=path)
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), path
        for key in expected:
            assert_same(got[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert type(got) is type(expected) and len(got) == len(expected), path
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"


def model_state(model: nn.Module) -> dict[str, Any]:
    """Every parameter and buffer (tied and non-persistent ones too), grad and module mode."""
    named = [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]
    return {
        "tensors": {name: t.detach().clone() for name, t in named},
        "grads": {
            name: None if p.grad is None else p.grad.clone()
            for name, p in model.named_parameters(remove_duplicate=False)
        },
        "training": {name: m.training for name, m in model.named_modules()},
    }


def rng_states(generator: torch.Generator | None = None) -> dict[str, Any]:
    states = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "python": random.getstate(),
    }
    if generator is not None:
        states["loader"] = generator.get_state()
    return states


def set_rng_states(states: dict[str, Any], generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    random.setstate(states["python"])
    if generator is not None:
        generator.set_state(states["loader"])


def next_draws(generator: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.rand(4),
        "numpy": np.random.rand(4),  # noqa: NPY002
        "python": random.random(),
        "loader": torch.rand(4, generator=generator),
    }


class Setup:
    """Net, a stepped optimizer (momentum buffers or Adam moments exist), grads (one None),
    a shuffled DataLoader with its own generator, and the modules in the asked-for mode."""

    def __init__(self, optimizer: str, mode: str) -> None:
        torch.manual_seed(0)
        self.model = Net()
        self.optimizer = make_optimizer(optimizer, self.model.parameters())
        x, y = regression(48)
        self.loader = DataLoader(
            TensorDataset(x, y),
            batch_size=16,
            shuffle=True,
            generator=torch.Generator().manual_seed(1),
        )
        train_steps(self.model, self.optimizer, list(self.loader), steps=4)
        self.model.head.bias.grad = None
        if mode == "eval":
            self.model.eval()
        elif mode == "mixed":  # training, with a frozen BatchNorm
            self.model.train()
            self.model.bn.eval()
        self.model.seen_training.clear()
        self.params = list(self.model.parameters())
        self.before = self.state()
        self.rng = rng_states(self.generator)
        self.expected_draws = next_draws(self.generator)
        set_rng_states(self.rng, self.generator)

    @property
    def generator(self) -> torch.Generator:
        generator = self.loader.generator
        assert isinstance(generator, torch.Generator)
        return generator

    def state(self) -> dict[str, Any]:
        return {
            "model": model_state(self.model),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def assert_restored(self) -> None:
        assert_same(self.state(), self.before)
        assert_same(rng_states(self.generator), self.rng)
        # The very same objects: the optimizer still holds the model's parameters, ties hold.
        assert list(self.model.parameters()) == self.params
        assert self.model.tied.weight is self.model.mid.weight
        groups = self.optimizer.param_groups
        assert [p for g in groups for p in g["params"]] == self.params
        assert_same(next_draws(self.generator), self.expected_draws)


MODES = ["eval", "train", "mixed"]
OPTIMIZERS = ["sgd", "adam"]


# -- restoring everything ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_everything_is_restored_after_a_sweep(optimizer: str, mode: str) -> None:
    setup = Setup(optimizer, mode)
    criterion = Criterion(setup.optimizer, draw_rngs=True)
    result = range_test(
        setup.model,
        setup.optimizer,
        criterion,
        setup.loader,
        start_lr=1e-4,
        end_lr=1.0,
        num_iter=30,
    )
    assert result.num_iter_run >= 5  # the sweep really trained
    assert setup.model.seen_training and all(setup.model.seen_training)
    setup.assert_restored()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("where", ["criterion", "forward"])
def test_everything_is_restored_after_an_exception_mid_sweep(
    where: str, optimizer: str, mode: str
) -> None:
    setup = Setup(optimizer, mode)
    criterion = Criterion(setup.optimizer, draw_rngs=True)
    if where == "criterion":
        criterion.fail_at = 17
    else:
        forwards = 0

        def fail_at_17(module: nn.Module, args: Any) -> None:
            nonlocal forwards
            forwards += 1
            if forwards == 17:
                raise RuntimeError("forward fails at call 17")

        handle = setup.model.register_forward_pre_hook(fail_at_17)
    with pytest.raises(RuntimeError, match="fails at call 17"):
        range_test(
            setup.model,
            setup.optimizer,
            criterion,
            setup.loader,
            start_lr=1e-4,
            end_lr=1e-2,
            num_iter=30,
        )
    assert criterion.calls == (17 if where == "criterion" else 16)
    if where == "forward":
        handle.remove()
    setup.assert_restored()


def test_restore_survives_a_second_sweep_on_the_same_objects() -> None:
    setup = Setup("adam", "eval")
    for _ in range(2):
        range_test(setup.model, setup.optimizer, mse, setup.loader, end_lr=1.0, num_iter=20)
        setup.assert_restored()
        set_rng_states(setup.rng, setup.generator)  # assert_restored drew from them


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_fresh_optimizer_is_left_without_state(optimizer: str) -> None:
    torch.manual_seed(0)
    model = Net()
    opt = make_optimizer(optimizer, model.parameters())
    twin_model, twin_opt = copy.deepcopy((model, opt))
    data = batches(3)
    range_test(model, opt, mse, data, start_lr=1e-4, end_lr=1.0, num_iter=20)
    assert len(opt.state) == 0
    assert opt.state_dict() == twin_opt.state_dict()
    # The first real step: momentum starts from the gradient, Adam's bias correction from 1.
    for m, o in ((model, opt), (twin_model, twin_opt)):
        torch.manual_seed(5)
        train_steps(m, o, data, steps=2)
    for p, q in zip(model.parameters(), twin_model.parameters(), strict=True):
        assert torch.equal(p, q)


# -- the ladder --------------------------------------------------------------------------------

GROUP_LRS = (1e-3, 1e-4, 5e-3)


def test_param_groups_keep_their_ratios() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(N_FEATURES, 4), nn.Tanh(), nn.Linear(4, 4), nn.Linear(4, 1))
    layers = [model[0], model[2], model[3]]
    groups = [
        {"params": layer.parameters(), "lr": lr}
        for layer, lr in zip(layers, GROUP_LRS, strict=True)
    ]
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    criterion = Criterion(opt)
    result = range_test(model, opt, criterion, batches(4), start_lr=1e-5, end_lr=10.0, num_iter=60)
    seen = np.asarray(criterion.group_lrs)
    assert seen.shape == (result.num_iter_run, 3)
    np.testing.assert_array_equal(seen[:, 0], result.lrs)
    ratios = np.asarray(GROUP_LRS) / GROUP_LRS[0]
    np.testing.assert_allclose(seen / seen[:, :1], np.broadcast_to(ratios, seen.shape), rtol=1e-12)
    assert [g["lr"] for g in opt.param_groups] == list(GROUP_LRS)


@pytest.mark.parametrize("num_iter", [5, 37, 100])
@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_ladder_hits_both_ends_and_is_evenly_spaced(mode: Any, num_iter: int) -> None:
    model = linear()
    opt = sgd(model)
    criterion = Criterion(opt)
    result = range_test(
        model, opt, criterion, batches(4), mode=mode, num_iter=num_iter, **NO_DIVERGENCE
    )
    start, end = NO_DIVERGENCE["start_lr"], NO_DIVERGENCE["end_lr"]
    lrs = result.lrs
    assert result.sweeps[0].stop_reason == "completed"
    assert result.num_iter_run == len(lrs) == num_iter == result.num_iter
    assert lrs[0] == start and lrs[-1] == end
    assert np.all(np.diff(lrs) > 0)
    if mode == "exp":
        ratio = (end / start) ** (1 / (num_iter - 1))
        np.testing.assert_allclose(lrs[1:] / lrs[:-1], ratio, rtol=1e-9)
    else:
        np.testing.assert_allclose(np.diff(lrs), (end - start) / (num_iter - 1), rtol=1e-9)
    np.testing.assert_array_equal(criterion.first_group_lrs, lrs)
    assert (result.start_lr, result.end_lr, result.mode) == (start, end, mode)


@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_a_range_too_narrow_to_diverge_says_raise_end_lr(mode: Any) -> None:
    model = linear()
    full_batch = [regression(64)]  # no batch-to-batch noise: the loss falls at every step
    result = range_test(
        model, sgd(model), mse, full_batch, mode=mode, num_iter=50, **NO_DIVERGENCE
    )
    assert result.sweeps[0].stop_reason == "completed"
    assert np.all(np.diff(result.losses_raw) < 0)
    assert result.never_diverged
    assert not result.diverged and not result.no_valley
    assert result.sweeps[0].high == NO_DIVERGENCE["end_lr"]  # still falling at the last rung
    assert result.bounds.high == pytest.approx(NO_DIVERGENCE["end_lr"], rel=1e-12)
    assert any("raise end_lr" in line for line in result.advice)


def test_one_sweep_gives_its_own_values_exactly() -> None:
    model = linear()
    full_batch = [regression(64)]
    result = range_test(model, sgd(model), mse, full_batch, num_iter=50, **NO_DIVERGENCE)
    sweep = result.sweeps[0]
    assert (result.bounds.low, result.bounds.high) == (sweep.low, sweep.high)
    assert result.suggestion == sweep.suggestion
    assert result.bounds.high <= result.end_lr


# -- losses of any sign, NaN and inf -----------------------------------------------------------


def quadratic(
    seed: int = 0, label_noise: float = 0.3, batch_size: int = 32
) -> tuple[list[Batch], float]:
    """Linear regression in float64 batches, and the stability limit ``2 / L`` of its MSE.

    With label noise in minibatches, the noise keeps the top eigendirection excited and the
    loss turns up promptly once the LR passes ``2 / L``. Without (``label_noise=0``, one full
    batch), the sweep drives that direction to ~0 first, and the loss can sit near 0 for many
    rungs past the limit.
    """
    generator = torch.Generator().manual_seed(seed)
    n, scales = 256 if label_noise == 0 else 512, torch.tensor([1.0, 0.5, 0.25]).double()
    x = torch.randn(n, 3, generator=generator, dtype=torch.float64) * scales
    y = x @ torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64) + 0.5
    y = y + label_noise * torch.randn(n, generator=generator, dtype=torch.float64)
    design = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    top = float(torch.linalg.eigvalsh(2 * design.T @ design / n).max())  # the Hessian's
    return list(zip(x.split(batch_size), y.split(batch_size), strict=True)), 2 / top


def noise_free_quadratic() -> tuple[list[Batch], float]:
    return quadratic(label_noise=0.0, batch_size=256)


def zero_linear(n_in: int = 3) -> nn.Module:
    model = nn.Linear(n_in, 1).double()
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    return model


def quadratic_sweep(
    data: list[Batch] | None = None, shift: float = 0.0, num_iter: int = 60, **kwargs: Any
) -> RangeTestResult:
    data = quadratic()[0] if data is None else data
    model = zero_linear()
    return range_test(
        model,
        sgd(model),
        Criterion(shift=shift),
        data,
        start_lr=1e-3,
        end_lr=10.0,
        num_iter=num_iter,
        **kwargs,
    )


@pytest.mark.parametrize("problem", ["full-batch", "minibatch"])
def test_negative_losses_do_not_stop_the_sweep(problem: str) -> None:
    data = noise_free_quadratic()[0] if problem == "full-batch" else quadratic()[0]
    plain = quadratic_sweep(data)
    shifted = quadratic_sweep(data, shift=-100.0)
    i_min = int(np.argmin(shifted.losses_raw))
    assert np.all(shifted.losses_raw[: i_min + 1] < 0)
    assert shifted.sweeps[0].stop_reason == plain.sweeps[0].stop_reason == "diverged"
    # The rule only looks at differences of losses: shifting them changes nothing.
    assert shifted.num_iter_run == plain.num_iter_run
    np.testing.assert_allclose(shifted.losses_raw, plain.losses_raw - 100.0, rtol=0, atol=1e-9)
    assert shifted.suggestion == pytest.approx(plain.suggestion, rel=1e-9)
    assert shifted.bounds.low == pytest.approx(plain.bounds.low, rel=1e-9)
    assert shifted.bounds.high == pytest.approx(plain.bounds.high, rel=1e-9)
    assert shifted.bounds.low < shifted.suggestion < shifted.bounds.high
    # It stopped past the minimum, on a loss far above it, not at the first negative loss.
    assert shifted.num_iter_run - 1 > i_min
    assert shifted.losses_raw[-1] - shifted.losses_raw[i_min] > 10 * (
        shifted.losses_raw[0] - shifted.losses_raw[i_min]
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_stops_the_sweep_at_once(bad: float) -> None:
    model = linear()
    before = model_state(model)
    opt = sgd(model)
    criterion = Criterion(opt, bad_from=40, bad=bad)
    result = range_test(model, opt, criterion, batches(4), num_iter=60, **NO_DIVERGENCE)
    assert criterion.calls == 40  # nothing after the bad call
    assert result.num_iter_run == 39  # the 39 finite losses before it
    sweep = result.sweeps[0]
    assert sweep.stop_reason == "non-finite"
    assert sweep.diverged and result.diverged
    assert np.all(np.isfinite(sweep.losses_raw)) and np.all(np.isfinite(sweep.losses))
    assert math.isfinite(result.suggestion) and result.suggestion > 0
    np.testing.assert_array_equal(criterion.first_group_lrs[:39], result.lrs)
    assert_same(model_state(model), before)  # the NaN step's weights are gone


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_loss_too_early_to_read_raises_and_restores(bad: float) -> None:
    model = linear()
    model.eval()
    before = model_state(model)
    opt = sgd(model)
    state = copy.deepcopy(opt.state_dict())
    with pytest.raises(LrsearchError, match=r"after 2 steps \(non-finite\).*start_lr"):
        range_test(model, opt, Criterion(bad_from=3, bad=bad), batches(4), num_iter=20)
    assert_same(model_state(model), before)
    assert_same(opt.state_dict(), state)


# -- loaders and batches -----------------------------------------------------------------------


def test_a_dataloader_shorter_than_num_iter_is_cycled() -> None:
    x, y = regression(24)
    drawn = []

    def collate(items: list[Batch]) -> list[torch.Tensor]:
        drawn.append(len(items))
        return torch.utils.data.default_collate(items)

    loader = DataLoader(TensorDataset(x, y), batch_size=8, collate_fn=collate)
    assert len(loader) == 3
    model = linear()
    result = range_test(model, sgd(model), mse, loader, num_iter=50, **NO_DIVERGENCE)
    assert result.sweeps[0].stop_reason == "completed"
    assert result.num_iter_run == 50
    assert drawn == [8] * 50  # one batch per step, the loader read again 17 times


def test_a_list_of_pairs_is_a_loader_and_is_cycled_in_order() -> None:
    data = batches(3)
    model = linear()
    criterion = Criterion()
    result = range_test(model, sgd(model), criterion, data, num_iter=50, **NO_DIVERGENCE)
    assert result.num_iter_run == criterion.calls == 50
    for step, target in enumerate(criterion.targets):
        assert target is data[step % 3][1]


@pytest.mark.parametrize("container", [tuple, list])
def test_pairs_as_tuples_or_lists(container: type) -> None:
    data = [container(pair) for pair in batches(3)]
    model = linear()
    result = range_test(model, sgd(model), mse, data, num_iter=20, **NO_DIVERGENCE)
    assert result.num_iter_run == 20


def triples() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [(x, y, torch.ones_like(y)) for x, y in batches(3)]


def test_a_longer_tuple_needs_batch_fn() -> None:
    model = linear()
    model.eval()
    with pytest.raises(ValueError, match=r"batch_fn.*length 3") as info:
        range_test(model, sgd(model), mse, triples(), num_iter=20)
    assert isinstance(info.value, LrsearchError)
    assert not model.training  # restored: the error came from inside the sweep


def test_a_longer_tuple_works_with_batch_fn() -> None:
    model = linear()
    result = range_test(
        model,
        sgd(model),
        mse,
        triples(),
        batch_fn=lambda b: (b[0], b[1]),
        num_iter=20,
        **NO_DIVERGENCE,
    )
    assert result.num_iter_run == 20


class KeywordModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(N_FEATURES, 1)
        self.seen: list[str] = []

    def forward(self, *, x: torch.Tensor) -> torch.Tensor:
        self.seen.append("x")
        return self.lin(x)


def test_dict_batches_go_to_the_model_as_keywords() -> None:
    data = [{"x": x, "y": y} for x, y in batches(3)]
    torch.manual_seed(0)
    model = KeywordModel()
    with pytest.raises(ValueError, match=r"batch_fn.*dict with keys \['x', 'y'\]"):
        range_test(model, sgd(model), mse, data, num_iter=20)
    result = range_test(
        model,
        sgd(model),
        mse,
        data,
        batch_fn=lambda b: ({"x": b["x"]}, b["y"]),
        num_iter=20,
        **NO_DIVERGENCE,
    )
    assert result.num_iter_run == 20
    assert model.seen == ["x"] * 20


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 1)
        self.b = nn.Linear(2, 1, bias=False)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.a(left) + self.b(right)


def test_tuple_inputs_go_to_the_model_as_positional_arguments() -> None:
    data = [((x[:, :2], x[:, 2:]), y) for x, y in batches(3)]
    torch.manual_seed(0)
    model = TwoInputs()
    result = range_test(model, sgd(model), mse, data, num_iter=20, **NO_DIVERGENCE)
    assert result.num_iter_run == 20


# -- bad arguments -----------------------------------------------------------------------------


NAN, INF = math.nan, math.inf

# (keyword arguments to spoil, the name the message must give, the values it must show)
BAD_ARGUMENTS = [
    ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr", (0.1, 1.0)),
    ({"start_lr": 0.1, "end_lr": 0.1}, "start_lr", (0.1, 0.1)),
    ({"start_lr": 0}, "start_lr", (0,)),
    ({"start_lr": -1e-3}, "start_lr", (-1e-3,)),
    ({"start_lr": NAN}, "start_lr", (NAN,)),
    ({"start_lr": "1e-3"}, "start_lr", ("1e-3",)),
    ({"end_lr": INF}, "end_lr", (INF,)),
    ({"num_iter": 4}, "num_iter", (4,)),
    ({"num_iter": 0}, "num_iter", (0,)),
    ({"num_iter": 2.5}, "num_iter", (2.5,)),
    ({"num_iter": True}, "num_iter", (True,)),
    ({"mode": "cosine"}, "mode", ("cosine",)),
    ({"diverge_threshold": 0}, "diverge_threshold", (0,)),
    ({"diverge_threshold": -0.5}, "diverge_threshold", (-0.5,)),
    ({"diverge_threshold": NAN}, "diverge_threshold", (NAN,)),
    ({"repeats": 0}, "repeats", (0,)),
    ({"repeats": 1.5}, "repeats", (1.5,)),
    ({"seed": -1}, "seed", (-1,)),
    ({"seed": 0.5}, "seed", (0.5,)),
]


@pytest.mark.parametrize(
    ("kwargs", "name", "values"),
    [pytest.param(*case, id=f"{case[1]}-{i}") for i, case in enumerate(BAD_ARGUMENTS)],
)
def test_bad_arguments_are_rejected(
    kwargs: dict[str, Any], name: str, values: tuple[object, ...]
) -> None:
    model = linear()
    before = model_state(model)
    with invalid(name, *values):
        range_test(model, sgd(model), mse, batches(3), **kwargs)
    assert_same(model_state(model), before)


def test_an_empty_loader_is_rejected_and_restores() -> None:
    model = linear()
    model.eval()
    opt = sgd(model)
    with invalid("loader"):
        range_test(model, opt, mse, [], num_iter=20)
    assert not model.training


@pytest.mark.parametrize(
    ("criterion", "shown"),
    [
        (lambda out, target: (out.reshape(target.shape) - target) ** 2, "(16,)"),
        (lambda out, target: mse(out, target).item(), "float"),
    ],
    ids=["vector", "float"],
)
def test_a_criterion_that_is_not_a_scalar_tensor_is_rejected(
    criterion: Callable[[torch.Tensor, torch.Tensor], Any], shown: str
) -> None:
    model = linear()
    model.eval()
    before = model_state(model)
    with invalid("criterion") as info:
        range_test(model, sgd(model), criterion, batches(3), num_iter=20)
    assert shown in str(info.value)
    assert_same(model_state(model), before)


def test_a_first_group_with_lr_0_is_rejected() -> None:
    model = nn.Sequential(nn.Linear(N_FEATURES, 2), nn.Linear(2, 1))
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.0}, {"params": model[1].parameters()}],
        lr=0.1,
    )
    with invalid("lr", 0.0):
        range_test(model, opt, mse, batches(3), num_iter=20)


@pytest.mark.parametrize("wrong", ["model", "optimizer"])
def test_model_and_optimizer_must_be_torch_objects(wrong: str) -> None:
    model = linear()
    args: dict[str, Any] = {"model": model, "optimizer": sgd(model)}
    args[wrong] = "not one"
    with invalid(wrong, "not one"):
        range_test(args["model"], args["optimizer"], mse, batches(3), num_iter=20)


# -- results -----------------------------------------------------------------------------------


def test_to_dict_is_json_and_from_dict_inverts_it() -> None:
    result = quadratic_sweep(repeats=2, num_iter=40)
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = RangeTestResult.from_dict(json.loads(text))
    assert back.suggestion == result.suggestion
    assert back.bounds == result.bounds
    assert (back.start_lr, back.end_lr, back.num_iter, back.mode) == (1e-3, 10.0, 40, "exp")
    assert len(back.sweeps) == 2
    for got, sweep in zip(back.sweeps, result.sweeps, strict=True):
        for name in ("lrs", "losses_raw", "losses"):
            assert getattr(got, name).dtype == np.float64
            np.testing.assert_array_equal(getattr(got, name), getattr(sweep, name))
        for name in ("stop_reason", "suggestion", "low", "high", "steepest", "no_valley"):
            assert getattr(got, name) == getattr(sweep, name)
    assert back.to_dict() == json.loads(text)


def test_from_dict_rejects_what_is_not_a_stored_range_test() -> None:
    with pytest.raises(ValueError, match="not a stored range test") as info:
        RangeTestResult.from_dict({"suggestion": 0.1})
    assert isinstance(info.value, LrsearchError)


def test_to_frame_has_one_row_per_step() -> None:
    result = quadratic_sweep(repeats=2, num_iter=40)
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["sweep", "step", "lr", "loss_raw", "loss"]
    assert len(frame) == sum(len(s.lrs) for s in result.sweeps)
    for i, sweep in enumerate(result.sweeps):
        rows = frame[frame["sweep"] == i]
        np.testing.assert_array_equal(rows["step"], np.arange(len(sweep.lrs)))
        np.testing.assert_array_equal(rows["lr"], sweep.lrs)
        np.testing.assert_array_equal(rows["loss_raw"], sweep.losses_raw)
        np.testing.assert_array_equal(rows["loss"], sweep.losses)


def figure_of_a_sweep() -> tuple[RangeTestResult, go.Figure]:
    result = quadratic_sweep()
    return result, result.figure()


def test_figure_has_a_log_axis_both_curves_and_the_suggestion() -> None:
    result, fig = figure_of_a_sweep()
    assert isinstance(fig, go.Figure)
    assert fig.layout.xaxis.type == "log"
    traces = {trace.name: trace for trace in fig.data}
    assert set(traces) == {"loss", "smoothed loss"}
    np.testing.assert_array_equal(traces["loss"].x, result.lrs)
    np.testing.assert_array_equal(traces["loss"].y, result.losses_raw)
    np.testing.assert_array_equal(traces["smoothed loss"].y, result.losses)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert [(s.x0, s.x1) for s in lines] == [(result.suggestion, result.suggestion)]
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [(s.x0, s.x1) for s in rects] == [(result.bounds.low, result.bounds.high)]


def test_figure_labels_sit_on_what_they_label() -> None:
    # On a log axis plotly.js reads annotation x as log10(x).
    result, fig = figure_of_a_sweep()
    texts = {a.text.split()[0]: a for a in fig.layout.annotations}
    assert set(texts) == {"low", "high", "suggestion"}
    assert texts["suggestion"].x == pytest.approx(math.log10(result.suggestion))
    assert texts["low"].x == pytest.approx(math.log10(result.bounds.low))
    assert texts["high"].x == pytest.approx(math.log10(result.bounds.high))
    assert f"{result.suggestion:.3g}" in texts["suggestion"].text


# -- reading the curve -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_bounds_bracket_the_stability_limit_of_a_quadratic(seed: int) -> None:
    data, limit = quadratic(seed)
    result = quadratic_sweep(data)
    assert result.sweeps[0].stop_reason == "diverged"
    assert result.diverged and not result.no_valley and not result.never_diverged
    assert result.advice == []
    assert limit / 3 < result.bounds.high < 3 * limit
    assert result.bounds.low < result.suggestion < result.bounds.high
    sweep = result.sweeps[0]
    assert sweep.low <= sweep.steepest <= sweep.high
    assert result.suggestion < limit  # a constant LR that converges


def test_the_reading_of_a_noise_free_quadratic_does_not_ring() -> None:
    data, limit = noise_free_quadratic()
    result = quadratic_sweep(data, num_iter=100)
    assert result.diverged
    # The smoother never leaves the data's range (a quadratic-order filter rang to -0.22 here).
    assert result.losses.min() >= result.losses_raw.min()
    assert result.suggestion < limit  # a constant LR that converges
    # Past 2/L the error grows by |1 - lr * L| per step, barely above 1 at first, so a
    # noise-free loss climbs back half of its fall (the edge) only several rungs later: high,
    # the last rung before that, lies past the limit, within a decade.
    assert limit < result.bounds.high < 10 * limit


def valley(x: float) -> float:
    """A loss against x = log10(LR): 1 up to 1e-4, a half cosine down to 0.1 at 1e-2 (steepest
    at 1e-3, 5% of the fall done at 10**VALLEY_LOW), then a parabola up again, back up by half
    of the fall at 10**VALLEY_HALF_CLIMB."""
    if x < -4:
        return 1.0
    if x < -2:
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (x + 4) / 2))
    return 0.1 + 2 * (x + 2) ** 2


VALLEY_LOW = -4 + 2 * math.acos(0.9) / math.pi  # 0.1 + 0.45 * (1 + 0.9) = 1 - 0.05 * 0.9
VALLEY_HALF_CLIMB = -2 + math.sqrt(0.225)  # 0.1 + 2 * 0.225 = 0.1 + 0.5 * 0.9
VALLEY_TENTH_CLIMB = -2 + math.sqrt(0.045)  # 0.1 + 2 * 0.045 = 0.1 + 0.1 * 0.9


class Scripted:
    """A loss that is ``curve(log10(lr))`` plus seeded uniform noise; the model's output only
    carries the graph (times 0), so the curve is known exactly."""

    def __init__(
        self, optimizer: Optimizer, curve: Callable[[float], float], noise: float = 0.0
    ) -> None:
        self.optimizer = optimizer
        self.curve = curve
        self.noise = noise
        self.rng = np.random.default_rng(0)

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = math.log10(self.optimizer.param_groups[0]["lr"])
        value = self.curve(x) + self.noise * self.rng.uniform(-1, 1)
        return (out * 0).sum() + value


def scripted_sweep(noise: float = 0.0, **kwargs: Any) -> RangeTestResult:
    model = linear()
    opt = sgd(model)
    return range_test(
        model,
        opt,
        Scripted(opt, valley, noise),
        batches(2),
        start_lr=1e-6,
        end_lr=0.1,
        num_iter=100,
        **kwargs,
    )


RUNG = 5 / 99  # decades between rungs from 1e-6 to 0.1 in 100


@pytest.mark.parametrize("noise", [0.0, 0.02])
def test_bounds_and_suggestion_of_a_known_curve(noise: float) -> None:
    result = scripted_sweep(noise, diverge_threshold=100.0)  # let it run to the end
    sweep = result.sweeps[0]
    assert sweep.stop_reason == "completed" and result.num_iter_run == 100
    assert not result.no_valley and not result.never_diverged and not result.diverged
    assert result.advice == []
    # A centred mean pulls the minimum of this lopsided valley (gentle cosine on the left, steep
    # parabola on the right) towards the gentle side, by up to 3 rungs (0.15 decade).
    assert -2 - 3 * RUNG <= math.log10(sweep.minimum) <= -2 + RUNG
    # The edge: the parabola has climbed back half of the fall (0.45) at -2 + sqrt(0.225);
    # high is two rungs before the rung before it has climbed back 10% (-2 + sqrt(0.045)).
    assert math.log10(sweep.edge) == pytest.approx(VALLEY_HALF_CLIMB, abs=2 * RUNG)
    assert math.log10(sweep.high) == pytest.approx(VALLEY_TENTH_CLIMB - 3 * RUNG, abs=2 * RUNG)
    assert math.log10(sweep.low) == pytest.approx(VALLEY_LOW, abs=2 * RUNG)
    assert math.log10(sweep.steepest) == pytest.approx(-3, abs=4 * RUNG)
    assert math.log10(sweep.midway) == pytest.approx(-3, abs=2 * RUNG)
    assert result.suggestion == SUGGESTION_RULE.suggest(sweep)
    assert result.bounds.low <= result.suggestion <= result.bounds.high


@pytest.mark.parametrize("threshold", [0.1, 0.25, 0.5, 1.0])
def test_diverge_threshold_is_a_fraction_of_the_fall(threshold: float) -> None:
    result = scripted_sweep(diverge_threshold=threshold)
    assert result.sweeps[0].stop_reason == "diverged" and result.diverged
    # The median of the last 5 losses rises past best + threshold * fall (best 0.1, fall 0.9)
    # where the parabola does, two rungs (what a median of 5 lags a rising curve by) later.
    crossing = -2 + math.sqrt(threshold * 0.9 / 2)
    stop = math.log10(result.lrs[-1])
    assert crossing + 1.5 * RUNG <= stop <= crossing + 3 * RUNG


def test_diverge_threshold_applies_to_a_noisy_curve() -> None:
    # Uniform noise of +-0.3: a single loss has sd 0.17, the median of 5 about 0.09, so a
    # fall of 0.9 is clear, and a rise from 0.1 back to 2.1 (twice the start) is divergence.
    result = scripted_sweep(noise=0.3)
    assert not result.no_valley
    assert result.sweeps[0].stop_reason == "diverged"
    assert math.log10(result.lrs[-1]) < -1.2


def heavy_tailed_plateau_then_blowup(n: int = 100, blowup: int = 80, seed: int = 0) -> list[float]:
    """Per-batch losses like a small regression's: a plateau at 1 with heavy-tailed noise
    (Student t, 1.5 degrees of freedom, scale 0.1), then from step ``blowup`` a doubling per
    step."""
    rng = np.random.default_rng(seed)
    plateau = 1 + 0.1 * rng.standard_t(1.5, size=n)
    return [float(v) if i < blowup else 2.0 ** (i - blowup + 1) for i, v in enumerate(plateau)]


@pytest.mark.parametrize("seed", range(20))
def test_heavy_tailed_noise_on_a_plateau_does_not_stop_the_watch(seed: int) -> None:
    from lrsearch.range_test.sweep import DivergenceWatch

    losses = heavy_tailed_plateau_then_blowup(seed=seed)
    watch = DivergenceWatch(threshold=0.5, min_steps=10)
    stop = next(i for i, v in enumerate(losses) if watch.diverged(v))
    # Not on the plateau; within the three steps a median of 5 needs to see the blow-up.
    assert 80 <= stop <= 83


def test_a_noisy_start_gets_a_fifth_of_the_ladder_before_any_verdict() -> None:
    from lrsearch.range_test.sweep import DivergenceWatch

    # The first ten losses of a small transformer's sweep (Adam, MNIST-1D patches), then the
    # same level: a dip and a rise of 0.1 among nine step-to-step differences of about 0.02.
    start = [2.473, 2.417, 2.424, 2.36, 2.359, 2.366, 2.476, 2.476, 2.46, 2.435]
    losses = start + [2.43 + 0.03 * (-1) ** i for i in range(30)]
    early = DivergenceWatch(0.5, min_steps=10)
    assert any(early.diverged(v) for v in losses[:10])  # a verdict after a tenth: too soon
    watch = DivergenceWatch.for_ladder(100, 0.5)
    assert watch.min_steps == 20
    assert not any(watch.diverged(v) for v in losses)


def test_a_flat_loss_has_no_valley_and_says_so() -> None:
    model = linear()

    def constant(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (out * 0).sum() + 1

    result = range_test(
        model, sgd(model), constant, batches(3), start_lr=1e-4, end_lr=1.0, num_iter=50
    )
    assert result.no_valley
    assert np.all(result.losses_raw == 1.0)
    assert result.sweeps[0].stop_reason == "completed"
    assert any("never clearly fell" in line for line in result.advice)
    assert 0 < result.bounds.low < result.bounds.high
    assert math.isfinite(result.suggestion) and result.suggestion > 0


# -- reading the curve -------------------------------------------------------------------------


def ladder(n: int = 100, start: float = 1e-7, end: float = 1.0) -> np.ndarray:
    return np.geomspace(start, end, n)


def fall_then_wall(x: np.ndarray, wall: float = -2.0) -> np.ndarray:
    """A loss that falls linearly in log-LR from 1 at 1e-6 to 0.1 at 10**wall, then blows up
    (to 5) at once: a sharp valley right before the blow-up, as SGD's often is."""
    falling = np.clip(1 - 0.9 * (x + 6) / (wall + 6), 0.1, 1.0)
    return np.where(x <= wall, falling, 5.0)


def test_a_sharp_valley_before_the_blow_up_is_not_filled_in() -> None:
    lrs = ladder()
    x = np.log10(lrs)
    rung = float(x[1] - x[0])
    stop = int(np.searchsorted(x, -2.0)) + 4  # the sweep stops a few rungs past the wall
    sweep = read_curve(lrs[:stop], fall_then_wall(x[:stop]))
    # A centred window across the wall would lift the last 6 rungs before it and put the
    # minimum half a window early (0.4 decade); cut at the blow-up, it stays at the wall.
    assert math.log10(sweep.minimum) >= -2.0 - 2 * rung
    assert math.log10(sweep.edge) == pytest.approx(-2.0, abs=2 * rung)
    # high: two rungs before the last rung before the climb (one step per rung cannot show an
    # instability that takes a few steps to grow).
    assert sweep.high < sweep.edge
    assert math.log10(sweep.high) >= -2.0 - 4 * rung
    # Half of the fall (from 1 to 0.1) is done half way along the linear fall, at 10**-4: read
    # up to 2 rungs early, as a centred mean rounds the bottom of a curve still falling at the
    # cut (its smoothed minimum is 0.15, not 0.1).
    assert math.log10(sweep.midway) == pytest.approx(-4.0, abs=2 * rung)
    # The smoothed curve never leaves the data's range, and shows the blow-up itself.
    assert sweep.losses.min() >= sweep.losses_raw.min()
    assert sweep.losses[-1] == pytest.approx(1.0)  # back up to where losses are clipped


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_midway_and_edge_of_a_known_curve_are_read_between_rungs(noise: float) -> None:
    lrs = ladder(120, 1e-6, 1.0)
    x = np.log10(lrs)
    rng = np.random.default_rng(0)
    losses = np.array([valley(v) for v in x]) + noise * rng.uniform(-1, 1, len(x))
    stop = int(np.searchsorted(x, -1.0))  # 0.1 + 2 * 1 = 2.1: blown up well past the start
    sweep = read_curve(lrs[:stop], losses[:stop], stop_reason="diverged")
    rung = float(x[1] - x[0])
    # Half of the fall (0.55) is the cosine's midpoint, 1e-3; the running median climbs back
    # half of the fall where the parabola reaches 0.55: -2 + sqrt(0.45 / 2).
    assert math.log10(sweep.midway) == pytest.approx(-3.0, abs=2 * rung)
    assert math.log10(sweep.edge) == pytest.approx(-2 + math.sqrt(0.225), abs=2 * rung)
    assert sweep.low < sweep.midway < sweep.minimum <= sweep.high < sweep.edge


def known_sweep() -> Sweep:
    lrs = ladder(120, 1e-6, 1.0)
    x = np.log10(lrs)
    stop = int(np.searchsorted(x, -1.0))
    return read_curve(lrs[:stop], np.array([valley(v) for v in x[:stop]]))


def test_the_suggestion_is_the_rules_reading_of_the_curve() -> None:
    sweep = known_sweep()
    rule = SUGGESTION_RULE
    anchor = {"midway": sweep.midway, "steepest": sweep.steepest, "minimum": sweep.minimum}
    expected = min(
        math.log10(sweep.edge) + rule.cap, math.log10(anchor[rule.anchor]) + rule.offset
    )
    expected = min(max(10**expected, sweep.low), sweep.high)
    assert sweep.suggestion == pytest.approx(expected, rel=1e-12)
    assert sweep.low <= sweep.suggestion <= sweep.high


@pytest.mark.parametrize("steps", [10, 100, 1000, 10_000, 100_000])
def test_total_steps_moves_the_suggestion_by_the_rules_slope(steps: int) -> None:
    lrs = ladder(120, 1e-6, 1.0)
    x = np.log10(lrs)
    stop = int(np.searchsorted(x, -1.0))
    losses = np.array([valley(v) for v in x[:stop]])
    rule = Rule(anchor="midway", offset=0.0, slope=-0.5, cap=0.0, reference_steps=1000)
    base = read_curve(lrs[:stop], losses, rule=rule)
    sweep = read_curve(lrs[:stop], losses, rule=rule, total_steps=steps)
    # midway (1e-3) * (steps / 1000) ** -0.5, inside [low, high], capped at the edge.
    expected = min(max(base.midway * (steps / 1000) ** -0.5, sweep.low), base.high, base.edge)
    assert sweep.suggestion == pytest.approx(expected, rel=1e-9)
    assert base.suggestion == pytest.approx(base.midway, rel=1e-9)  # no total_steps: 1000
    # The reading and high do not depend on the run's length; low reaches down by the sweep's
    # length over the run's, when the run is the longer (without it, low is the sweep's own).
    assert (sweep.high, sweep.midway, sweep.edge) == (base.high, base.midway, base.edge)
    n = len(sweep.lrs)
    assert sweep.low == pytest.approx(base.low * min(1, n / steps), rel=1e-12)


def test_longer_runs_get_smaller_suggestions_with_the_default_rule() -> None:
    sweep = known_sweep()
    got = [SUGGESTION_RULE.suggest(sweep, total_steps=t) for t in (50, 500, 5000, 50_000)]
    assert got == sorted(got, reverse=True)
    assert got[0] > got[-1]


def test_range_test_passes_total_steps_on_and_stores_it() -> None:
    data = quadratic()[0]
    short = quadratic_sweep(data, total_steps=10)
    long = quadratic_sweep(data, total_steps=100_000)
    plain = quadratic_sweep(data)
    assert (short.total_steps, long.total_steps, plain.total_steps) == (10, 100_000, None)
    np.testing.assert_array_equal(short.losses_raw, long.losses_raw)  # the same sweep
    assert short.bounds.high == long.bounds.high == plain.bounds.high
    assert long.bounds.low < plain.bounds.low <= short.bounds.low
    assert long.suggestion < plain.suggestion <= short.suggestion
    back = RangeTestResult.from_dict(json.loads(json.dumps(long.to_dict(), allow_nan=False)))
    assert back.total_steps == 100_000
    assert back.suggestion == long.suggestion


def test_without_a_valley_the_suggestion_is_the_cap_below_where_the_loss_climbs() -> None:
    lrs = ladder(100, 1e-6, 1.0)
    x = np.log10(lrs)
    rng = np.random.default_rng(0)
    # Flat at 2 with noise (the model learns nothing in 100 steps), then up from 10**-1.5.
    losses = 2 + 0.01 * rng.standard_normal(100) + np.where(x > -1.5, 5 * (x + 1.5), 0.0)
    stop = int(np.searchsorted(x, -1.0))
    rule = Rule(anchor="midway", offset=5.0, slope=-1.0, cap=-1.3, reference_steps=100)
    sweep = read_curve(lrs[:stop], losses[:stop], rule=rule, total_steps=10**6)
    assert sweep.no_valley
    assert math.log10(sweep.edge) == pytest.approx(-1.5, abs=3 * (x[1] - x[0]))
    # Neither the anchor's offset nor the run's length plays a part: only the cap.
    assert sweep.suggestion == pytest.approx(sweep.edge * 10**-1.3, rel=1e-9)
    assert sweep.low <= sweep.suggestion <= sweep.high


@pytest.mark.parametrize("seed", range(20))
def test_a_flat_curves_wobble_is_not_read_as_a_blow_up(seed: int) -> None:
    # A GRU that learns nothing in 100 steps: cross-entropy at ln 10 with batch noise, until
    # the LR passes 10**-0.5 and the loss climbs.
    lrs = ladder(100, 1e-7, 10.0)
    x = np.log10(lrs)
    rng = np.random.default_rng(seed)
    losses = 2.303 + 0.008 * rng.standard_normal(100) + np.where(x > -0.5, 0.3 * (x + 0.5), 0)
    stop = int(np.searchsorted(x, 0.5))
    sweep = read_curve(lrs[:stop], losses[:stop])
    assert sweep.no_valley
    # Where the climb is seen depends on the noise (a centred window here is a decade wide),
    # but never 6 decades early, where a cut at a wobble of the running median put it.
    assert -1.0 <= math.log10(sweep.edge) <= math.log10(sweep.lrs[-1])


@pytest.mark.parametrize("bad", [0, -5, 2.5, "100", True])
def test_a_bad_total_steps_is_rejected(bad: Any) -> None:
    model = zero_linear()
    with pytest.raises(ValueError, match="total_steps") as info:
        range_test(model, sgd(model), Criterion(), quadratic()[0], total_steps=bad)
    assert isinstance(info.value, LrsearchError)


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"anchor": "edge"}, "anchor"),
        ({"offset": math.nan}, "offset"),
        ({"slope": math.inf}, "slope"),
        ({"reference_steps": 0}, "reference_steps"),
    ],
)
def test_a_bad_rule_is_rejected(changes: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        dataclasses.replace(SUGGESTION_RULE, **changes)


def test_a_result_stored_before_total_steps_midway_and_edge_still_loads() -> None:
    stored = quadratic_sweep(num_iter=40).to_dict()
    del stored["total_steps"]
    for sweep in stored["sweeps"]:
        del sweep["midway"], sweep["edge"]
    back = RangeTestResult.from_dict(stored)
    assert back.total_steps is None
    assert math.isnan(back.sweeps[0].midway) and math.isnan(back.sweeps[0].edge)
    assert back.suggestion == stored["suggestion"]
    again = json.loads(json.dumps(back.to_dict(), allow_nan=False))  # NaN is stored as null
    assert again["sweeps"][0]["edge"] is None


# -- repeats and seeds -------------------------------------------------------------------------


def shuffled(generator: bool) -> DataLoader[Any]:
    x, y = regression(96)
    return DataLoader(
        TensorDataset(x, y),
        batch_size=8,
        shuffle=True,
        generator=torch.Generator().manual_seed(7) if generator else None,
    )


def sweep_with(loader: DataLoader[Any], **kwargs: Any) -> tuple[RangeTestResult, Criterion]:
    """A sweep of Net from the same start every time; the criterion saw every step's targets."""
    torch.manual_seed(0)
    model = Net()
    opt = make_optimizer("sgd", model.parameters())
    train_steps(model, opt, batches(2), steps=3)  # momentum buffers exist: restore must matter
    torch.manual_seed(123)  # the same global RNG on every call, whatever seed= does
    criterion = Criterion()
    result = range_test(
        model, opt, criterion, loader, start_lr=1e-4, end_lr=10.0, num_iter=40, **kwargs
    )
    return result, criterion


def targets_per_sweep(result: RangeTestResult, criterion: Criterion) -> list[torch.Tensor]:
    ends = np.cumsum([len(s.lrs) for s in result.sweeps])
    return [torch.cat(criterion.targets[a:b]) for a, b in zip([0, *ends[:-1]], ends, strict=True)]


@pytest.mark.parametrize("generator", [False, True], ids=["global-rng", "own-generator"])
def test_repeats_are_seeded_sweeps_and_their_median(generator: bool) -> None:
    loader = shuffled(generator)
    result, criterion = sweep_with(loader, repeats=3, seed=0)
    assert len(result.sweeps) == 3
    suggestions = [s.suggestion for s in result.sweeps]
    assert result.spread_decades >= 0
    assert result.spread_decades == pytest.approx(
        math.log10(max(suggestions) / min(suggestions)), abs=1e-12
    )
    assert result.suggestion == pytest.approx(float(np.median(suggestions)), rel=1e-12)
    assert result.steepest == float(np.median([s.steepest for s in result.sweeps]))
    assert result.bounds.low < result.bounds.high
    # Sweep r is the sweep seed r runs alone, from the same restored start.
    for r, sweep in enumerate(result.sweeps):
        alone = sweep_with(loader, seed=r)[0].sweeps[0]
        np.testing.assert_array_equal(sweep.lrs, alone.lrs)
        np.testing.assert_array_equal(sweep.losses_raw, alone.losses_raw)
    # Each sweep saw the data in another order.
    seen = [t[:40] for t in targets_per_sweep(result, criterion)]
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])


@pytest.mark.parametrize("generator", [False, True], ids=["global-rng", "own-generator"])
def test_the_same_seed_reproduces_the_sweeps_and_another_changes_the_order(
    generator: bool,
) -> None:
    loader = shuffled(generator)
    a, seen_a = sweep_with(loader, repeats=3, seed=0)
    b, seen_b = sweep_with(loader, repeats=3, seed=0)
    for x, y in zip(a.sweeps, b.sweeps, strict=True):
        np.testing.assert_array_equal(x.lrs, y.lrs)
        np.testing.assert_array_equal(x.losses_raw, y.losses_raw)
        np.testing.assert_array_equal(x.losses, y.losses)
    assert a.suggestion == b.suggestion and a.bounds == b.bounds
    assert all(torch.equal(p, q) for p, q in zip(seen_a.targets, seen_b.targets, strict=True))
    other, seen_other = sweep_with(loader, seed=5)
    assert not torch.equal(torch.cat(seen_other.targets[:5]), torch.cat(seen_a.targets[:5]))
    assert not np.array_equal(other.losses_raw[:10], a.losses_raw[:10])


# -- AMP ---------------------------------------------------------------------------------------


def inf_grad_at(calls: set[int] | Callable[[int], bool]) -> type[torch.autograd.Function]:
    """An identity whose backward returns inf gradients at the given (1-based) calls."""
    bad = calls if callable(calls) else calls.__contains__

    class InfGrad(torch.autograd.Function):
        backward_calls = 0

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x.clone()

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            InfGrad.backward_calls += 1
            return torch.full_like(grad, math.inf) if bad(InfGrad.backward_calls) else grad

    return InfGrad


class Poisoned(nn.Module):
    """Linear, an identity with scheduled inf gradients, Linear."""

    def __init__(self, function: type[torch.autograd.Function]) -> None:
        super().__init__()
        self.function = function
        self.inp = nn.Linear(N_FEATURES, 8)
        self.out = nn.Linear(8, 1)
        self.dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        self.dtypes.append(h.dtype)
        return self.out(torch.relu(self.function.apply(h)))


def amp_setup(
    calls: set[int] | Callable[[int], bool],
) -> tuple[Poisoned, Optimizer, torch.amp.GradScaler, list[Batch]]:
    torch.manual_seed(0)
    function = inf_grad_at(calls)
    model = Poisoned(function)
    opt = make_optimizer("sgd", model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    data = [regression(32)]
    for _ in range(2):  # give the scaler a live scale and a growth tracker
        opt.zero_grad()
        with torch.autocast("cpu"):
            loss = mse(model(data[0][0]), data[0][1])
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    function.backward_calls = 0
    model.dtypes.clear()
    return model, opt, scaler, data


def test_amp_skipped_steps_do_not_advance_the_ladder() -> None:
    model, opt, scaler, data = amp_setup({10, 11})
    before = {"model": model_state(model), "optimizer": copy.deepcopy(opt.state_dict())}
    scaler_state = scaler.state_dict()
    assert scaler_state["_growth_tracker"] == 2
    criterion = Criterion(opt)
    result = range_test(model, opt, criterion, data, scaler=scaler, num_iter=30, **NO_DIVERGENCE)
    assert result.sweeps[0].stop_reason == "completed"
    assert result.num_iter_run == 30
    assert criterion.calls == 32  # two calls whose steps the scaler skipped
    assert model.dtypes == [torch.bfloat16] * 32  # under autocast, CPU's bfloat16
    seen = criterion.first_group_lrs
    np.testing.assert_array_equal(np.delete(seen, [9, 10]), result.lrs)
    assert seen[9] == seen[10] == seen[11] == result.lrs[9]  # the skipped rung, run again
    assert scaler.state_dict() == scaler_state
    assert_same({"model": model_state(model), "optimizer": opt.state_dict()}, before)


def test_amp_stops_when_the_scaler_keeps_skipping() -> None:
    model, opt, scaler, data = amp_setup(lambda call: call >= 10)
    scaler_state = scaler.state_dict()
    criterion = Criterion(opt)
    result = range_test(model, opt, criterion, data, scaler=scaler, num_iter=30, **NO_DIVERGENCE)
    assert result.sweeps[0].stop_reason == "amp-skips"
    assert result.num_iter_run == 9
    assert criterion.calls == 9 + 20
    assert not result.diverged
    assert scaler.state_dict() == scaler_state


# -- LR schedulers -----------------------------------------------------------------------------

SCHEDULERS: dict[str, Callable[[Optimizer], torch.optim.lr_scheduler.LRScheduler]] = {
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
    "cosine": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10),
    "onecycle": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=20),
}


def scheduled(kind: str) -> tuple[nn.Module, Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(0)
    model = nn.Linear(N_FEATURES, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = SCHEDULERS[kind](opt)
    data = batches(3)
    for _ in range(3):
        train_steps(model, opt, data, steps=1)
        scheduler.step()
    return model, opt, scheduler


@pytest.mark.parametrize("kind", list(SCHEDULERS))
def test_an_attached_scheduler_is_left_as_it_was(kind: str) -> None:
    model, opt, scheduler = scheduled(kind)
    lr = opt.param_groups[0]["lr"]
    state = copy.deepcopy(scheduler.state_dict())
    range_test(model, opt, mse, batches(3), start_lr=1e-4, end_lr=10.0, num_iter=30)
    assert opt.param_groups[0]["lr"] == lr
    assert_same(scheduler.state_dict(), state)
    # Training goes on exactly as on a twin that never saw a range test.
    twin_model, twin_opt, twin_scheduler = scheduled(kind)
    data = batches(3)
    for m, o, s in ((model, opt, scheduler), (twin_model, twin_opt, twin_scheduler)):
        for _ in range(3):
            train_steps(m, o, data, steps=1)
            s.step()
    assert scheduler.get_last_lr() == twin_scheduler.get_last_lr()
    for p, q in zip(model.parameters(), twin_model.parameters(), strict=True):
        assert torch.equal(p, q)


# -- known gaps --------------------------------------------------------------------------------


class Counter(nn.Module):
    """Counts its forward calls in a buffer it reassigns, as ``self.n = self.n + 1`` does."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(N_FEATURES, 1)
        self.register_buffer("n", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.n = self.n + 1
        return self.lin(x)


def test_a_buffer_reassigned_in_forward_is_restored() -> None:
    torch.manual_seed(0)
    model = Counter()
    range_test(model, sgd(model), mse, batches(3), num_iter=20, **NO_DIVERGENCE)
    assert model.n.item() == 0


# -- refinement: short confirmation runs ---------------------------------------------------------


def test_refinement_candidates_span_two_thirds_decades_below_the_edge() -> None:
    from lrsearch.range_test.sweep import _candidates

    assert _candidates(0.1, high=1.0, k=3) == pytest.approx([0.1 / 3, 0.1, 0.3])
    # Nothing above the edge: the span slides down under it.
    assert _candidates(0.1, high=0.2, k=3) == pytest.approx([0.2 / 9, 0.2 / 3, 0.2])
    # A suggestion above high (no valley) is the top.
    assert _candidates(0.1, high=0.05, k=2) == pytest.approx([0.1 / 9, 0.1])


def test_refinement_picks_the_candidate_that_trains_best_from_the_same_start() -> None:
    data, limit = quadratic(0)
    result = quadratic_sweep(data, refine=5, refine_steps=12)
    refinement = result.refinement
    assert refinement is not None and refinement.steps == 12
    candidates = np.asarray(refinement.candidates)
    assert len(candidates) == 5 and np.all(np.diff(np.log(candidates)) > 0)
    assert candidates[-1] <= max(result.bounds.high, result.sweeps[0].suggestion) * (1 + 1e-12)
    # The oracle: each candidate trained by hand from the zero model on the same batches.
    for lr, score in zip(candidates, refinement.scores, strict=True):
        model = zero_linear()
        optimizer = sgd(model, lr)
        losses = []
        for i in range(12):
            x, y = data[i % len(data)]
            optimizer.zero_grad()
            loss = mse(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        if lr < limit:
            assert score == pytest.approx(np.mean(losses[-3:]), rel=1e-9)
    finite = [s for s in refinement.scores if math.isfinite(s)]
    assert finite and refinement.chosen == candidates[int(np.argmin(refinement.scores))]
    assert result.suggestion == refinement.chosen
    assert result.suggestion < limit
    # Without refine the sweep's own suggestion stands.
    assert quadratic_sweep(data).refinement is None


def test_a_diverging_candidate_scores_inf_and_is_never_chosen() -> None:
    from lrsearch.range_test.sweep import _Sweeper

    class Snap:
        restores = 0

        def restore(self) -> None:
            Snap.restores += 1

    class Runs(_Sweeper):
        """A sweeper whose runs are made up: an LR above 1 "diverges" after 3 steps."""

        def __init__(self) -> None:
            self.snapshot = Snap()  # type: ignore[assignment]
            self.generators = []

        def run(
            self, rungs: np.ndarray, measure: bool = False
        ) -> tuple[np.ndarray, np.ndarray, str, None]:
            lr = float(rungs[0])
            if lr > 1.0:
                return rungs[:3], np.array([1.0, 5.0, 50.0]), "diverged", None
            return rungs, np.full(len(rungs), 1.0 / lr), "completed", None

    got = Runs().confirm([0.1, 0.5, 2.0], 8, 0)
    assert got.scores == (10.0, 2.0, math.inf)
    assert got.chosen == 0.5 and Snap.restores == 3
    every = Runs().confirm([2.0, 3.0], 8, 0)
    assert every.scores == (math.inf, math.inf) and every.chosen == 2.0  # the smallest


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_everything_is_restored_after_refinement(optimizer: str) -> None:
    setup = Setup(optimizer, "train")
    criterion = Criterion(setup.optimizer, draw_rngs=True)
    result = range_test(
        setup.model,
        setup.optimizer,
        criterion,
        setup.loader,
        start_lr=1e-4,
        end_lr=1.0,
        num_iter=30,
        refine=3,
        refine_steps=6,
    )
    assert result.refinement is not None and len(result.refinement.candidates) == 3
    setup.assert_restored()


def test_refinement_round_trips_through_json() -> None:
    from lrsearch.range_test import Refinement

    result = quadratic_sweep(refine=3, refine_steps=5)
    assert result.refinement is not None
    stored = dataclasses.replace(
        result, refinement=dataclasses.replace(result.refinement, scores=(1.0, math.inf, 2.0))
    )
    text = json.dumps(stored.to_dict(), allow_nan=False)
    back = RangeTestResult.from_dict(json.loads(text))
    assert back.refinement == stored.refinement
    assert isinstance(back.refinement, Refinement)
    assert RangeTestResult.from_dict(quadratic_sweep().to_dict()).refinement is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"refine": -1}, "refine"),
        ({"refine": 1.5}, "refine"),
        ({"refine": True}, "refine"),
        ({"refine": 3, "refine_steps": 0}, "refine_steps"),
    ],
)
def test_bad_refine_arguments_are_rejected(kwargs: dict[str, Any], name: str) -> None:
    model = linear()
    with pytest.raises(LrsearchError, match=f"^{name} must be"):
        range_test(model, sgd(model), mse, batches(3), **kwargs)


# -- the package -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        "import lrsearch",
        "import lrsearch.range_test.curve",
        "from lrsearch.range_test import Sweep",
        "import lrsearch.report",
    ],
)
def test_lrsearch_range_test_is_the_function_whatever_was_imported_first(first: str) -> None:
    """The subpackage shares the function's name; the function must win either way."""
    code = (
        f"{first}\n"
        "import inspect, lrsearch\n"
        "from lrsearch import range_test\n"
        "from lrsearch.range_test import range_test as direct\n"
        "assert inspect.isfunction(lrsearch.range_test), lrsearch.range_test\n"
        "assert range_test is direct is lrsearch.range_test\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_package_exports_its_public_names_and_nothing_private() -> None:
    package = importlib.import_module("lrsearch.range_test")

    assert set(package.__all__) == {
        "Doubt",
        "RangeTestResult",
        "Refinement",
        "Sweep",
        "range_test",
        "read_curve",
    }
    for name in package.__all__:
        assert getattr(package, name).__module__.startswith("lrsearch.range_test.")


# -- update/weight ratios -----------------------------------------------------------------------


def test_the_sweep_measures_the_update_ratio_of_every_step() -> None:
    result = quadratic_sweep(num_iter=40, seed=0)
    sweep = result.sweeps[0]
    assert sweep.update_ratios is not None
    assert sweep.update_ratios.shape == (1, len(sweep.lrs))  # one param group
    first = sweep.update_ratios[0, 1:]  # the first step starts from all-zero weights
    assert np.all(np.isfinite(first)) and np.all(first > 0)
    back = RangeTestResult.from_dict(json.loads(json.dumps(result.to_dict())))
    np.testing.assert_allclose(back.sweeps[0].update_ratios, sweep.update_ratios)


def test_the_sweep_without_diagnostics_measures_nothing_and_runs_the_same() -> None:
    plain = quadratic_sweep(num_iter=40, seed=0, diagnostics=False)
    measured = quadratic_sweep(num_iter=40, seed=0)
    assert plain.sweeps[0].update_ratios is None
    assert plain.to_dict()["sweeps"][0]["update_ratios"] is None
    np.testing.assert_array_equal(plain.losses_raw, measured.losses_raw)


def test_a_sweep_stored_before_the_ratios_reads_back_without_them() -> None:
    stored = quadratic_sweep(num_iter=40, seed=0).to_dict()
    for sweep in stored["sweeps"]:
        del sweep["update_ratios"]
    assert RangeTestResult.from_dict(stored).sweeps[0].update_ratios is None


# --- how far a reading can be trusted ---------------------------------------------------------


def _valley(n: int = 100, *, fall: float = 1.5, noise: float = 0.02, seed: int = 0) -> Sweep:
    """A sweep over 1e-5..1 whose loss falls by ``fall`` around 1e-3 and blows up past
    10**-1.5, with Gaussian batch noise of ``noise``."""
    lrs = np.geomspace(1e-5, 1.0, n)
    x = np.log10(lrs)
    rng = np.random.default_rng(seed)
    losses = np.where(x < -1.5, 2 - fall / (1 + np.exp(-4 * (x + 3))), 10.0)
    return read_curve(lrs, losses + noise * rng.standard_normal(n), total_steps=500)


def _result(*sweeps: Sweep) -> RangeTestResult:
    return RangeTestResult.from_sweeps(list(sweeps), start_lr=1e-5, end_lr=1.0, num_iter=100)


def test_a_clear_valley_is_read_with_confidence() -> None:
    sweep = _valley()
    assert sweep.signal_to_noise > 20
    assert sweep.valley_rungs >= 30
    result = _result(sweep)
    assert result.confident and result.doubts == ()
    assert result.to_dict()["confident"] is True and result.to_dict()["doubts"] == []


@pytest.mark.parametrize("seed", range(5))
def test_a_fall_lost_in_its_noise_is_doubted(seed: int) -> None:
    # The new user's case: a fall of about three batch-noise deviations, which the smoother
    # can still turn into a "valley" with bounds.
    sweep = _valley(fall=0.3, noise=0.1, seed=seed)
    result = _result(sweep)
    assert not result.confident
    (doubt,) = [d for d in result.doubts if d.code == "no-fall"]
    assert "never clearly fell" in doubt.text
    assert sweep.signal_to_noise < MIN_SIGNAL_TO_NOISE or sweep.no_valley


def test_a_fall_in_the_last_steps_is_doubted() -> None:
    lrs = np.geomspace(1e-5, 1.0, 100)
    losses = np.full(100, 2.0)
    losses[-6:] = [1.6, 1.2, 0.8, 0.5, 6.0, 9.0]  # falls, then blows up at once
    sweep = read_curve(lrs, losses + 0.001 * np.random.default_rng(0).standard_normal(100))
    assert sweep.valley_rungs < MIN_VALLEY_RUNGS
    assert "late-fall" in [d.code for d in _result(sweep).doubts]


def test_sweeps_that_disagree_are_doubted() -> None:
    early = _valley()
    late = read_curve(
        early.lrs * 10**-1.5, early.losses_raw, total_steps=500
    )  # the same curve, read 1.5 decades lower
    result = _result(early, late)
    assert result.spread_decades > MAX_SPREAD_DECADES
    assert [d.code for d in result.doubts] == ["disagree"]
    assert _result(early, early).confident


def test_a_sweep_stored_before_its_noise_was_kept_is_judged_on_no_valley() -> None:
    data = _valley().to_dict()
    for key in ("fall", "noise", "fall_start"):
        del data[key]
    old = Sweep.from_dict(data)
    assert math.isnan(old.signal_to_noise)
    assert _result(old).confident  # its valley is clear, and nothing else is known
    again = Sweep.from_dict(_valley().to_dict())
    assert (again.fall, again.noise, again.fall_start) == (
        _valley().fall,
        _valley().noise,
        _valley().fall_start,
    )


def test_from_sweeps_takes_the_medians_and_keeps_a_valid_range() -> None:
    sweeps = [_valley(seed=s) for s in range(3)]
    result = _result(*sweeps)
    assert result.suggestion == median_lr([s.suggestion for s in sweeps])
    assert result.bounds.low == median_lr([s.low for s in sweeps])
    with pytest.raises(InvalidParameterError, match="at least one sweep"):
        _result()
