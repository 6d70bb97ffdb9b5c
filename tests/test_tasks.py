"""Tests for lrsearch/tasks: the built-in data (digits, mnist1d) and their models."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from lrsearch import InvalidParameterError
from lrsearch.tasks import Split, digits, mnist1d

TASKS: dict[str, tuple[Callable[[], Split], Callable[[], nn.Module]]] = {
    "digits": (digits.load_data, digits.make_model),
    "mnist1d": (mnist1d.load_data, mnist1d.make_model),
}


@pytest.mark.parametrize(
    ("name", "n_train", "n_test", "feature_shape"),
    [("digits", 1347, 450, (64,)), ("mnist1d", 4000, 1000, (1, 40))],
)
def test_shapes_dtypes_and_ranges(
    name: str, n_train: int, n_test: int, feature_shape: tuple[int, ...]
) -> None:
    split = TASKS[name][0]()
    assert isinstance(split, Split)
    assert split.x_train.shape == (n_train, *feature_shape)
    assert split.x_test.shape == (n_test, *feature_shape)
    assert split.y_train.shape == (n_train,) and split.y_test.shape == (n_test,)
    for x in (split.x_train, split.x_test):
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
    for y in (split.y_train, split.y_test):
        assert y.dtype == torch.int64
        assert set(y.unique().tolist()) == set(range(10))


def test_digits_features_are_scaled_to_unit_interval() -> None:
    split = digits.load_data()
    x = torch.cat([split.x_train, split.x_test])
    assert x.min() == 0.0 and x.max() == 1.0


@pytest.mark.parametrize("test_size", [0.25, 0.4])
def test_digits_split_is_stratified(test_size: float) -> None:
    split = digits.load_data(test_size=test_size)
    train_counts = torch.bincount(split.y_train, minlength=10)
    test_counts = torch.bincount(split.y_test, minlength=10)
    # Each class sends its own share (to within one rounding) to the test part.
    expected = test_size * (train_counts + test_counts)
    assert (test_counts - expected).abs().max() <= 1.0


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan")])
def test_digits_rejects_bad_test_size(bad: float) -> None:
    with pytest.raises(InvalidParameterError, match="test_size"):
        digits.load_data(test_size=bad)


def test_digits_seed_changes_the_split_and_only_the_split() -> None:
    a, b = digits.load_data(seed=0), digits.load_data(seed=1)
    assert not torch.equal(a.y_test, b.y_test)
    # Same images overall: a re-shuffle of the same pool.
    pool_a = torch.cat([a.x_train, a.x_test]).sum(dim=0)
    pool_b = torch.cat([b.x_train, b.x_test]).sum(dim=0)
    assert torch.allclose(pool_a, pool_b)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_loading_is_deterministic(name: str) -> None:
    first, second = TASKS[name][0](), TASKS[name][0]()
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_mnist1d_returns_fresh_tensors_each_call() -> None:
    first = mnist1d.load_data()
    first.x_train.zero_()
    assert mnist1d.load_data().x_train.abs().sum() > 0


def test_mnist1d_loading_leaves_global_rngs_alone() -> None:
    mnist1d._generate.cache_clear()  # force a real generation, which reseeds internally
    # The legacy global generators are the point here: make_dataset reseeds them.
    np.random.seed(1234)  # noqa: NPY002
    random.seed(1234)
    np_before, py_before = np.random.get_state(), random.getstate()  # noqa: NPY002
    mnist1d.load_data()
    np_after = np.random.get_state()  # noqa: NPY002
    assert np_after[0] == np_before[0]
    np.testing.assert_array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert random.getstate() == py_before


def test_mnist1d_classes_are_roughly_balanced() -> None:
    counts = torch.bincount(mnist1d.load_data().y_train, minlength=10)
    assert counts.min() >= 350 and counts.max() <= 450


@pytest.mark.parametrize("name", sorted(TASKS))
def test_models_output_logits_for_a_batch(name: str) -> None:
    load, make = TASKS[name]
    split = load()
    torch.manual_seed(0)
    model = make()
    out = model(split.x_train[:7])
    assert out.shape == (7, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # Logits, not probabilities: rows need not sum to one.
    assert not torch.allclose(out.sum(dim=1), torch.ones(7))


def test_mnist1d_model_is_the_paper_cnn() -> None:
    model = mnist1d.make_model()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    shapes = [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs]
    assert shapes == [
        (1, 25, (5,), (2,), (1,)),
        (25, 25, (3,), (2,), (1,)),
        (25, 25, (3,), (2,), (1,)),
    ]
    (linear,) = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert (linear.in_features, linear.out_features) == (125, 10)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_model_init_follows_torch_seed(name: str) -> None:
    make = TASKS[name][1]
    torch.manual_seed(3)
    a = make().state_dict()
    torch.manual_seed(3)
    b = make().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_digits_mlp_learns_with_a_few_hundred_sgd_steps() -> None:
    split = digits.load_data()
    torch.manual_seed(0)
    model = digits.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    n, batch = len(split.y_train), 64
    step = 0
    while step < 400:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - batch + 1, batch):
            idx = perm[start : start + batch]
            opt.zero_grad()
            loss_fn(model(split.x_train[idx]), split.y_train[idx]).backward()
            opt.step()
            step += 1
    with torch.no_grad():
        accuracy = (model(split.x_test).argmax(dim=1) == split.y_test).float().mean().item()
    assert accuracy > 0.9
