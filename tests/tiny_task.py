"""A tiny, seeded, separable classification task and configs for fast end-to-end studies.

Importable as ``tiny_task:task`` (the tests directory is on ``sys.path``), so a config file or
a subprocess can name it. ``slow_task`` sleeps a little per batch so a subprocess is still
mid-study when a test kills it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrsearch.config import StudyConfig
from lrsearch.pipeline.context import Context, RunLog, prepare
from lrsearch.store import open_storage
from lrsearch.tasks import Data, Task

__all__ = [
    "N_TEST",
    "N_TRAIN",
    "config",
    "context",
    "data",
    "make_model",
    "slow_task",
    "task",
]

N_TRAIN = 200
N_TEST = 100
FEATURES = 8
CLASSES = 3


def data(n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points around three fixed Gaussian centres (well separated, but not trivially)."""
    centres = torch.Generator().manual_seed(1234)
    means = 2.0 * torch.randn(CLASSES, FEATURES, generator=centres)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    x = means[y] + torch.randn(n, FEATURES, generator=g)
    return x, y


def make_model() -> nn.Module:
    """A small MLP, 8 -> 16 -> 3 logits."""
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, CLASSES))


def task(
    *,
    epochs: int = 2,
    batch_size: int = 20,
    test: Data | Callable[[], Data] | None = None,
    make_model: Callable[[], nn.Module] = make_model,
) -> Task:
    """The tiny task: 200 training and 100 test examples, batch 20, SGD with momentum."""
    return Task(
        make_model=make_model,
        train=data(N_TRAIN, seed=0),
        test=test if test is not None else data(N_TEST, seed=1),
        batch_size=batch_size,
        epochs=epochs,
        name="tiny",
    )


class _SlowModel(nn.Module):
    """``make_model``'s MLP that sleeps on every forward pass (a stand-in for real work)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.net = make_model()
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        out: torch.Tensor = self.net(x)
        return out


def slow_task(delay: float = 0.01) -> Task:
    """The tiny task whose every forward pass takes ``delay`` seconds longer."""
    return task(make_model=lambda: _SlowModel(delay))


def config(name: str = "tiny", **changes: Any) -> StudyConfig:
    """A study config that runs the whole pipeline on the tiny task in seconds."""
    fields: dict[str, Any] = {
        "name": name,
        "task": "tiny_task:task",
        "n_trials": 6,
        "epochs": 2,
        "cv_folds": 2,
        "cv_grid": 2,
        "final_seeds": 2,
        "finalists": 2,
        "threads": 1,
        "device": "cpu",
        "range_num_iter": 20,
    }
    fields.update(changes)
    return StudyConfig(**fields)


def context(
    path: Path, name: str = "tiny", *, task: Task | None = None, **changes: Any
) -> Context:
    """A pipeline :class:`Context` for the tiny task on a SQLite file at ``path``, with a run
    log (not started: no thread) so stages can be run one at a time."""
    cfg, made, device, _ = prepare(config(name, **changes), task=task)
    store = open_storage(f"sqlite:///{path}", heartbeat_interval=1, grace_period=2)
    ctx = Context(cfg, made, device, store, f"sqlite:///{path}", lambda *a: None, 1, 2)
    ctx.log = RunLog(ctx.study("runs"), device="cpu", storage=ctx.url, interval=1)
    return ctx
