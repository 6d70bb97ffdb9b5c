"""Tests for lrsearch/tasks: the built-in data (digits, mnist1d), their models, Task, load_task."""

from __future__ import annotations

import json
import random
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from assertions import invalid
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from lrsearch import InvalidParameterError
from lrsearch.schedules import Schedule
from lrsearch.tasks import (
    Split,
    Task,
    adamw,
    digits,
    first_batch,
    labels,
    load_task,
    mnist1d,
    sgd,
    subset,
)

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


# -- Task ---------------------------------------------------------------------------------------


def tiny_data(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 3), torch.arange(n) % 2


def linear() -> nn.Module:
    return nn.Linear(3, 2)


def make_task(**fields: Any) -> Task:
    args: dict[str, Any] = {"make_model": linear, "train": tiny_data(), "test": tiny_data(4)}
    return Task(**{**args, **fields})


def test_task_defaults() -> None:
    task = make_task()
    assert (task.metric, task.metric_name, task.direction, task.maximize) == (
        "accuracy",
        "accuracy",
        "maximize",
        True,
    )
    assert (task.batch_size, task.epochs, task.stratify, task.n_train) == (32, 20, True, 12)
    assert isinstance(task.loss, nn.CrossEntropyLoss)
    opt = task.make_optimizer(linear().parameters(), 0.2)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["lr"] == 0.2 and opt.param_groups[0]["momentum"] == 0.9


def test_task_loss_metric_minimizes_and_does_not_stratify() -> None:
    task = make_task(metric="loss")
    assert (task.direction, task.maximize, task.metric_name, task.stratify) == (
        "minimize",
        False,
        "loss",
        False,
    )
    assert make_task(metric="loss", direction="minimize").direction == "minimize"
    assert make_task(metric="loss", stratify=True).stratify is True


def test_task_metric_function_needs_a_direction() -> None:
    def f1(out: torch.Tensor, y: torch.Tensor) -> float:
        return 0.0

    task = make_task(metric=f1, direction="maximize")
    assert (task.metric_name, task.direction, task.stratify) == ("f1", "maximize", False)
    assert make_task(metric=f1, direction="minimize", metric_name="err").metric_name == "err"
    with invalid("direction", None):
        make_task(metric=f1)
    with invalid("direction", "max"):
        make_task(metric=f1, direction="max")


@pytest.mark.parametrize(
    ("fields", "name", "value"),
    [
        ({"metric": "f1"}, "metric", "f1"),
        ({"metric": "Accuracy"}, "metric", "Accuracy"),
        ({"metric": 3}, "metric", 3),
        ({"metric": "accuracy", "direction": "minimize"}, "direction", "minimize"),
        ({"metric": "loss", "direction": "maximize"}, "direction", "maximize"),
        ({"batch_size": 0}, "batch_size", 0),
        ({"batch_size": 2.0}, "batch_size", 2.0),
        ({"batch_size": True}, "batch_size", True),
        ({"epochs": 0}, "epochs", 0),
        ({"epochs": -1}, "epochs", -1),
        ({"make_model": "linear"}, "make_model", "linear"),
    ],
)
def test_task_rejects_bad_fields(fields: dict[str, Any], name: str, value: object) -> None:
    with invalid(name, value) as info:
        make_task(**fields)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "data", "shown"),
    [
        ("train", (torch.zeros(5, 3), torch.zeros(4)), "5 and 4"),
        ("train", (torch.zeros(0, 3), torch.zeros(0)), "0 and 0"),
        ("train", [torch.zeros(5, 3), torch.zeros(5)], "list"),
        ("train", (torch.zeros(5, 3),), "tuple"),
        ("train", (torch.zeros(5, 3), torch.zeros(5), torch.zeros(5)), "tuple"),
        ("train", (np.zeros((5, 3)), np.zeros(5)), "tuple"),
        ("train", torch.zeros(5, 3), "Tensor"),
        ("test", (torch.zeros(2, 3), torch.zeros(3)), "2 and 3"),
        ("test", None, "NoneType"),
    ],
)
def test_task_rejects_bad_data(field: str, data: object, shown: str) -> None:
    with pytest.raises(InvalidParameterError, match=rf"^{field} .*{shown}"):
        make_task(**{field: data})


def test_task_needs_two_training_examples() -> None:
    with invalid("train", 1):
        make_task(train=tiny_data(1))


def test_task_accepts_datasets() -> None:
    x, y = tiny_data(10)
    task = make_task(train=TensorDataset(x, y), test=TensorDataset(x[:3], y[:3]))
    assert task.n_train == 10
    test = task.load_test()
    assert isinstance(test, TensorDataset) and len(test) == 3


def test_lazy_test_is_loaded_only_when_asked() -> None:
    calls: list[int] = []

    def load() -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return tiny_data(4)

    task = make_task(test=load)
    assert calls == []
    task.describe()
    replaced = load_task(task, epochs=2)
    assert calls == [] and replaced.epochs == 2
    x, y = task.load_test()  # type: ignore[misc]
    assert calls == [1] and len(x) == len(y) == 4
    task.load_test()
    assert calls == [1, 1]  # called again each time: nothing is cached


def test_lazy_test_is_checked_when_loaded() -> None:
    task = make_task(test=lambda: (torch.zeros(3, 3), torch.zeros(2)))
    with pytest.raises(InvalidParameterError, match=r"^test .*3 and 2"):
        task.load_test()


def test_describe_is_json_serialisable() -> None:
    def score(out: torch.Tensor, y: torch.Tensor) -> float:
        return 0.0

    plain = make_task(name="mine", epochs=3, batch_size=4)
    described = json.loads(json.dumps(plain.describe()))
    assert described == {
        "name": "mine",
        "n_train": 12,
        "metric": "accuracy",
        "direction": "maximize",
        "batch_size": 4,
        "epochs": 3,
        "optimizer": "sgd(momentum=0.9, weight_decay=0.0)",
    }
    custom = make_task(
        metric=score,
        direction="minimize",
        test=lambda: tiny_data(2),
        make_optimizer=lambda params, lr: torch.optim.Adam(params, lr=lr),
    ).describe()
    assert json.loads(json.dumps(custom)) == custom
    assert custom["metric"] == "score" and custom["direction"] == "minimize"
    assert isinstance(custom["optimizer"], str)


def test_sgd_factory_sets_momentum_and_weight_decay() -> None:
    opt = sgd(momentum=0.5, weight_decay=1e-4)(linear().parameters(), 0.3)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.3, 0.5, 1e-4)
    assert "momentum=0.5" in sgd(momentum=0.5).__qualname__


def test_adamw_factory_decays_only_matrices() -> None:
    model = nn.Sequential(nn.Embedding(5, 4), nn.LayerNorm(4), nn.Linear(4, 3))
    opt = adamw(weight_decay=0.2, betas=(0.8, 0.9))(model.parameters(), 0.01)
    assert isinstance(opt, torch.optim.AdamW)
    decayed, plain = opt.param_groups
    assert [tuple(p.shape) for p in decayed["params"]] == [(5, 4), (3, 4)]
    assert [tuple(p.shape) for p in plain["params"]] == [(4,), (4,), (3,)]
    assert (decayed["weight_decay"], plain["weight_decay"]) == (0.2, 0.0)
    assert decayed["betas"] == plain["betas"] == (0.8, 0.9)
    assert "weight_decay=0.2" in adamw(weight_decay=0.2).__qualname__
    # A schedule moves both groups together.
    scheduler = Schedule("cosine", max_lr=0.01, base_lr=0.001, warmup=2).build(opt, 10)
    for _ in range(5):
        opt.step()
        scheduler.step()
    assert decayed["lr"] == plain["lr"] < 0.01


def test_adamw_factory_keeps_one_group_when_there_are_no_vectors() -> None:
    opt = adamw()(nn.Linear(3, 2, bias=False).parameters(), 0.1)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.1


# -- load_task ----------------------------------------------------------------------------------


def test_load_task_builtin_digits_with_overrides() -> None:
    task = load_task("digits")
    assert (task.name, task.n_train, task.epochs, task.batch_size) == ("digits", 1347, 20, 32)
    small = load_task("digits", epochs=3, batch_size=None)
    assert (small.epochs, small.batch_size, small.name) == (3, 32, "digits")
    assert small.train is not None and small.n_train == 1347


def test_load_task_builtin_mnist1d() -> None:
    task = load_task("mnist1d", epochs=2)
    assert (task.name, task.n_train, task.epochs, task.direction) == (
        "mnist1d",
        4000,
        2,
        "maximize",
    )


def test_load_task_builtin_charlm() -> None:
    task = load_task("charlm", epochs=2)
    assert (task.name, task.n_train, task.epochs, task.direction, task.metric_name) == (
        "charlm",
        1536,
        2,
        "minimize",
        "loss",
    )


def test_load_task_returns_a_task_object_as_is() -> None:
    task = make_task()
    assert load_task(task) is task
    copy = load_task(task, batch_size=4)
    assert copy is not task and copy.batch_size == 4 and task.batch_size == 32
    with invalid("batch_size", 0):
        load_task(task, batch_size=0)


def test_load_task_by_module_path_of_a_builtin() -> None:
    task = load_task("lrsearch.tasks.digits:task", epochs=3)
    assert (task.name, task.epochs) == ("digits", 3)


USER_MODULE = """
import torch
from lrsearch.tasks import Task

CALLS = []

def make():
    CALLS.append(1)
    x, y = torch.randn(10, 3), torch.arange(10) % 2
    return Task(lambda: torch.nn.Linear(3, 2), (x, y), (x, y), epochs=7, name="user")

READY = Task(lambda: torch.nn.Linear(3, 2), (torch.randn(6, 3), torch.arange(6) % 2),
             (torch.randn(2, 3), torch.arange(2) % 2), name="ready")
NOT_A_TASK = 3

def returns_int():
    return 3
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A user's task module, importable under a name unique to this test."""
    name = f"user_tasks_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_load_task_calls_a_module_function(user_module: str) -> None:
    task = load_task(f"{user_module}:make")
    assert (task.name, task.epochs, task.n_train) == ("user", 7, 10)
    assert sys.modules[user_module].CALLS == [1]
    assert load_task(f"{user_module}:make", epochs=3).epochs == 3


def test_load_task_takes_a_module_attribute_that_is_a_task(user_module: str) -> None:
    task = load_task(f"{user_module}:READY")
    assert task is sys.modules[user_module].READY
    assert load_task(f"{user_module}:READY", epochs=2).epochs == 2


@pytest.mark.parametrize("attr", ["NOT_A_TASK", "returns_int"])
def test_load_task_rejects_what_is_not_a_task(user_module: str, attr: str) -> None:
    with pytest.raises(InvalidParameterError, match=rf"{attr}.*Task; got int"):
        load_task(f"{user_module}:{attr}")


def test_load_task_names_a_missing_attribute(user_module: str) -> None:
    with pytest.raises(InvalidParameterError, match=rf"{user_module}.* has no 'nope'"):
        load_task(f"{user_module}:nope")


def test_load_task_reports_a_module_that_raises_on_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"broken_tasks_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('no GPU here')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InvalidParameterError, match=r"cannot import .*no GPU here") as info:
        load_task(f"{name}:task")
    assert isinstance(info.value.__cause__, RuntimeError)
    sys.modules.pop(name, None)


def test_load_task_reports_an_unimportable_module() -> None:
    with pytest.raises(InvalidParameterError, match=r"cannot import 'no_such_module_xyz'"):
        load_task("no_such_module_xyz:task")


@pytest.mark.parametrize("spec", ["cifar10", "Digits", "digits ", "lrsearch.tasks.digits"])
def test_load_task_rejects_unknown_names(spec: str) -> None:
    with invalid("task", spec) as info:
        load_task(spec)
    assert all(name in str(info.value) for name in ("charlm", "digits", "mnist1d"))


@pytest.mark.parametrize("spec", ["", ":task", "mod:", "mod:1x", "mod:a.b", "a:b:c", 3, None])
def test_load_task_rejects_malformed_specs(spec: object) -> None:
    with invalid("task", spec):
        load_task(spec)  # type: ignore[arg-type]


# -- the data helpers: subset, labels, first_batch ----------------------------------------------


class Targeted(Dataset[tuple[torch.Tensor, int]]):
    """A dataset with a ``targets`` attribute, like torchvision's."""

    def __init__(self, n: int) -> None:
        self.x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
        self.targets = [i % 3 for i in range(n)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], self.targets[i]


@pytest.mark.parametrize("as_array", [False, True])
def test_subset_of_tensors_indexes_both(as_array: bool) -> None:
    x, y = torch.arange(20).reshape(10, 2), torch.arange(10) * 10
    idx: Any = np.array([7, 0, 3]) if as_array else [7, 0, 3]
    out = subset((x, y), idx)
    assert isinstance(out, tuple)
    assert out[0].tolist() == [[14, 15], [0, 1], [6, 7]] and out[1].tolist() == [70, 0, 30]
    empty = subset((x, y), [])
    assert isinstance(empty, tuple) and len(empty[0]) == 0 == len(empty[1])


def test_subset_of_a_dataset_wraps_it() -> None:
    data = Targeted(9)
    out = subset(data, np.array([8, 2]))
    assert isinstance(out, Subset) and len(out) == 2
    assert [int(out[i][0]) for i in range(2)] == [8, 2]
    assert [out[i][1] for i in range(2)] == [2, 2]


def test_labels() -> None:
    y = torch.tensor([2, 0, 1, 1])
    got = labels((torch.zeros(4, 3), y))
    assert isinstance(got, np.ndarray) and got.tolist() == [2, 0, 1, 1]
    targeted = labels(Targeted(5))
    assert targeted is not None and targeted.tolist() == [0, 1, 2, 0, 1]
    assert labels(TensorDataset(torch.zeros(3, 1), torch.zeros(3))) is None


def test_first_batch_in_the_datas_own_order() -> None:
    x, y = torch.arange(12.0).reshape(6, 2), torch.arange(6)
    from_tensors = first_batch((x, y), 4)
    from_dataset = first_batch(TensorDataset(x, y), 4)
    for bx, by in (from_tensors, from_dataset):
        assert bx.tolist() == x[:4].tolist() and by.tolist() == [0, 1, 2, 3]


def test_the_task_modules_import_the_data_from_tasks_data_not_the_package() -> None:
    # The package's __init__ is a plain re-export: nothing in it must be defined before a task
    # module can be imported.
    import lrsearch.tasks as package
    from lrsearch.tasks import data

    assert package.Split is data.Split and package.Data is data.Data
    for module in (digits, mnist1d):
        assert module.Split is data.Split
