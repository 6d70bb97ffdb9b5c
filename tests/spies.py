"""A spy on every training optimizer step of a study, by the stage whose unit was running.

Imported by the tests (the tests directory is on ``sys.path``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import lrsearch.pipeline.queue

__all__ = ["training_steps", "trains"]


def trains(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a step moves anything: a parameter has a gradient (``Schedule.lrs`` steps an
    optimizer without any, to replay a schedule)."""
    return any(p.grad is not None for g in optimizer.param_groups for p in g["params"])


@contextlib.contextmanager
def training_steps(
    on_step: Callable[[str | None, torch.optim.Optimizer], None],
) -> Iterator[None]:
    """Inside the block, call ``on_step(stage, optimizer)`` after every optimizer step that
    trains, with the name of the stage whose unit was running (``None``: outside any unit,
    the pre-flight's)."""
    running: list[str] = []
    real = lrsearch.pipeline.queue._run_next

    def run_next(stage: Any, *args: Any) -> None:
        running.append(stage.name)
        try:
            real(stage, *args)
        finally:
            running.pop()

    def hook(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        if trains(optimizer):
            on_step(running[-1] if running else None, optimizer)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lrsearch.pipeline.queue, "_run_next", run_next)
        handle = register_optimizer_step_post_hook(hook)
        try:
            yield
        finally:
            handle.remove()
