"""Tests for lrsearch/optimizers.py and the training loop's handling of Schedule-Free's
train/eval weights."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from schedulefree import AdamWScheduleFree
from torch import nn

from lrsearch.exceptions import InvalidParameterError
from lrsearch.optimizers import (
    ADAMW_WEIGHT_DECAY,
    has_train_eval,
    prodigy,
    schedule_free_adamw,
    search_optimizer,
)
from lrsearch.tasks import sgd
from lrsearch.training import evaluate, fit


def _params() -> Any:
    return nn.Linear(3, 2).parameters()


def test_search_optimizers_are_what_their_names_say() -> None:
    task_own = sgd(momentum=0.5)
    assert search_optimizer("task", task_own) is task_own
    plain = search_optimizer("sgd", None)(_params(), 0.1)
    assert type(plain) is torch.optim.SGD
    assert plain.defaults["momentum"] == 0.9 and not plain.defaults["nesterov"]
    nesterov = search_optimizer("nesterov", None)(_params(), 0.1)
    assert nesterov.defaults["momentum"] == 0.9 and nesterov.defaults["nesterov"]
    adamw = search_optimizer("adamw", None)(_params(), 1e-3)
    assert type(adamw) is torch.optim.AdamW
    assert adamw.defaults["weight_decay"] == ADAMW_WEIGHT_DECAY
    tuned = search_optimizer("adamw", None, weight_decay=0.003)(_params(), 1e-3)
    assert tuned.defaults["weight_decay"] == 0.003


@pytest.mark.parametrize(
    ("name", "task_own", "decay", "match"),
    [
        ("adam", sgd(), None, "optimizer must be one of"),
        ("sgd", sgd(), 0.1, "weight_decay is searched for adamw only"),
        ("task", None, None, "needs the task's optimizer factory"),
    ],
)
def test_bad_search_optimizers_are_refused(
    name: str, task_own: Any, decay: float | None, match: str
) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        search_optimizer(name, task_own, weight_decay=decay)


def test_the_learning_rate_free_optimizers_are_their_authors_classes() -> None:
    from prodigyopt import Prodigy

    assert isinstance(prodigy(_params()), Prodigy)
    sf = schedule_free_adamw(7)(_params(), 0.0025)
    assert isinstance(sf, AdamWScheduleFree) and sf.defaults["warmup_steps"] == 7
    assert has_train_eval(sf) and not has_train_eval(torch.optim.SGD(_params(), lr=0.1))
    with pytest.raises(InvalidParameterError, match="warmup_steps"):
        schedule_free_adamw(-1)


class _Spy(AdamWScheduleFree):  # type: ignore[misc]
    """Records the order of train(), eval() and step() calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def train(self) -> None:
        self.calls.append("train")
        super().train()

    def eval(self) -> None:
        self.calls.append("eval")
        super().eval()

    def step(self, closure: Any = None) -> Any:
        if not self.calls or self.calls[-1] != "step":
            self.calls.append("step")
        return super().step(closure)


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] > 0).long()


def test_fit_trains_schedule_free_on_train_weights_and_evaluates_the_average() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = _Spy(model.parameters(), lr=0.01, warmup_steps=2)
    seen: list[float] = []

    def on_epoch(epoch: int, value: float) -> None:
        # Evaluation happens at the averaged weights: x, not the training point y.
        seen.append(value)
        assert opt.calls[-1] == "eval"

    data = _data()
    result = fit(
        model,
        opt,
        nn.CrossEntropyLoss(),
        data,
        epochs=3,
        batch_size=16,
        eval_data=data,
        on_epoch=on_epoch,
    )
    assert opt.calls == ["train", "step", "eval"] * 3
    assert len(seen) == 3 and result.values == seen
    # The run ends at the averaged weights, where it was scored.
    assert not opt.param_groups[0]["train_mode"]
    assert evaluate(model, data) == result.final


def test_schedule_free_without_train_calls_fails_so_the_loop_must_make_them() -> None:
    model = nn.Linear(3, 2)
    opt = AdamWScheduleFree(model.parameters(), lr=0.01)
    nn.CrossEntropyLoss()(model(_data()[0]), _data()[1]).backward()
    with pytest.raises(Exception, match="not in train mode"):
        opt.step()


def test_batchnorm_statistics_are_recomputed_at_the_averaged_weights() -> None:
    torch.manual_seed(0)
    # momentum 1: the running statistics are those of the last batch BatchNorm saw.
    model = nn.Sequential(
        nn.Linear(3, 8), nn.BatchNorm1d(8, momentum=1.0), nn.ReLU(), nn.Linear(8, 2)
    )
    opt = AdamWScheduleFree(model.parameters(), lr=0.05)
    data = _data(128)
    fit(model, opt, nn.CrossEntropyLoss(), data, epochs=2, batch_size=32, eval_data=data)
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm1d)
    assert not opt.param_groups[0]["train_mode"]  # the model holds the averaged weights
    with torch.no_grad():
        last = model[0](data[0][96:128])  # the refresh's last batch, in the data's order
    assert torch.allclose(bn.running_mean, last.mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, last.var(0, unbiased=True), atol=1e-5)
    assert int(bn.num_batches_tracked) == 2 * (4 + 4)  # per epoch: 4 to train, 4 to refresh
