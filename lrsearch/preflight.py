"""Pre-flight: one batch of a task through its model, loss, metric and one optimizer step.

A study runs a task's code hundreds of times; a mistake in it (a model that raises, a loss
whose output and target shapes only broadcast, a loss that is already NaN) should be one
clear line before anything is written, not a traceback in the middle of the search, or worse,
a normal-looking table of meaningless numbers. :func:`preflight` is that check. It also
measures what the verdicts of a study compare the tuned arm with: the untrained model's metric
on the validation split, and for accuracy the share of the most common class there (chance).

Everything runs on a copy of torch's RNG state (:func:`torch.random.fork_rng`), so a study
draws the same numbers with or without it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from lrsearch.exceptions import InvalidParameterError
from lrsearch.tasks import Data, OptimizerFactory, Task, first_batch, labels
from lrsearch.training import evaluate

__all__ = ["Baseline", "PreflightError", "preflight"]


class PreflightError(InvalidParameterError):
    """A task's model, loss, metric or optimizer fails on one batch (exit code 2 in the CLI)."""


@dataclasses.dataclass(frozen=True)
class Baseline:
    """What doing nothing scores, for the verdicts on a study's result.

    Attributes:
        untrained: The metric of the freshly initialised model on the validation split.
        chance: For ``accuracy``, the share of the most common class in the validation split
            (what always guessing it scores); ``None`` for other metrics.
    """

    untrained: float
    chance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (a non-finite ``untrained`` is stored as ``None``)."""
        return {
            "untrained": self.untrained if math.isfinite(self.untrained) else None,
            "chance": self.chance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        """The inverse of :meth:`to_dict`."""
        untrained = data.get("untrained")
        chance = data.get("chance")
        return cls(
            untrained=math.nan if untrained is None else float(untrained),
            chance=None if chance is None else float(chance),
        )


def preflight(
    task: Task,
    device: torch.device,
    *,
    optimizers: dict[str, OptimizerFactory] | None = None,
    validation: Data | None = None,
    seed: int = 0,
    lr: float = 1e-7,
) -> Baseline:
    """Run one batch of ``task.train`` through the model, the loss, the metric and one step of
    each optimizer; measure the untrained model on ``validation``.

    Args:
        task: The task.
        device: Where it will train.
        optimizers: Optimizer factories to take one step with, by name (default: the task's).
        validation: Where the untrained model is scored (default: the first batch).
        seed: Seeds the model's initialisation (torch's RNG is put back afterwards).
        lr: The learning rate of the one step (tiny: only whether it runs is checked).

    Returns:
        The :class:`Baseline` the study's verdicts compare the tuned arm with.

    Raises:
        PreflightError: Something fails; the message names the task and the cause.

    Example:
        >>> x, y = torch.randn(40, 3), torch.arange(40) % 2
        >>> task = Task(lambda: torch.nn.Linear(3, 2), (x, y), (x, y), epochs=1, name="demo")
        >>> preflight(task, torch.device("cpu")).chance
        0.5
        >>> bad = Task(lambda: torch.nn.Linear(4, 2), (x, y), (x, y), epochs=1, name="bad")
        >>> preflight(bad, torch.device("cpu"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lrsearch.preflight.PreflightError: task 'bad': the model fails on one batch of train ...
    """
    optimizers = optimizers or {"task": task.make_optimizer}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for name, make in optimizers.items():
            model = _make(task, device)
            _step(task, model, make, name, lr, device)
        torch.manual_seed(seed)
        model = _make(task, device)
        scored = validation if validation is not None else first_batch(task.train, task.batch_size)
        return Baseline(
            untrained=_metric(task, model, scored, device),
            chance=_chance(scored) if task.metric == "accuracy" else None,
        )


def _fail(task: Task, what: str, exc: BaseException | None = None) -> PreflightError:
    cause = "" if exc is None else f": {type(exc).__name__}: {' '.join(str(exc).split())}"
    return PreflightError(f"task {task.name!r}: {what}{cause}")


def _make(task: Task, device: torch.device) -> nn.Module:
    try:
        model = task.make_model()
    except Exception as exc:  # user code: whatever it raises is the task's fault
        raise _fail(task, "make_model() failed", exc) from exc
    if not isinstance(model, nn.Module):
        raise _fail(task, f"make_model() must return a torch.nn.Module; got {type(model)}")
    return model.to(device)


def _shape(obj: Any) -> str:
    return str(tuple(obj.shape)) if isinstance(obj, torch.Tensor) else type(obj).__name__


def _step(
    task: Task,
    model: nn.Module,
    make: OptimizerFactory,
    name: str,
    lr: float,
    device: torch.device,
) -> None:
    """One training step on the first batch; every failure is a :class:`PreflightError`."""
    x, y = _on(first_batch(task.train, task.batch_size), device)
    model.train()
    try:
        out = model(x)
    except Exception as exc:
        raise _fail(
            task, f"the model fails on one batch of train (inputs of shape {_shape(x)})", exc
        ) from exc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loss = task.loss(out, y)
        except Exception as exc:
            raise _fail(
                task,
                f"the loss fails on the model's outputs {_shape(out)} and targets {_shape(y)}",
                exc,
            ) from exc
    for warning in caught:
        if "target size" in str(warning.message):  # torch: shapes that only broadcast
            raise _fail(
                task,
                f"the loss compares outputs of shape {_shape(out)} with targets of shape "
                f"{_shape(y)}, which only broadcast (the loss would be meaningless): make the "
                "model's output match the targets (e.g. squeeze the last dimension)",
            )
    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
        raise _fail(task, f"the loss must return a scalar tensor; got {_shape(loss)}")
    if not math.isfinite(float(loss.item())):
        raise _fail(task, f"the loss of the untrained model is {float(loss.item())} on one batch")
    if not loss.requires_grad:
        raise _fail(task, "the loss does not depend on the model's parameters (no gradient)")
    try:
        optimizer = make(model.parameters(), lr)
        loss.backward()
        optimizer.step()
    except Exception as exc:
        raise _fail(task, f"one step of optimizer {name!r} fails", exc) from exc


def _on(batch: tuple[Any, Any], device: torch.device) -> tuple[Any, Any]:
    x, y = batch
    return x.to(device), y.to(device)


def _metric(task: Task, model: nn.Module, data: Data, device: torch.device) -> float:
    try:
        if task.metric == "accuracy":
            x, y = _on(first_batch(data, task.batch_size), device)
            with torch.no_grad():
                out = model.eval()(x)
            # argmax over dim 1 compared with targets of another shape would broadcast.
            if out.dim() != 2 or out.shape[1] < 2 or y.dim() != 1 or len(out) != len(y):
                raise _fail(
                    task,
                    "metric 'accuracy' needs outputs of shape (batch, classes >= 2) and "
                    f"class-index targets of shape (batch,); got {_shape(out)} and {_shape(y)}",
                )
        value = evaluate(model, data, metric=task.metric, loss=task.loss, device=device)
    except PreflightError:
        raise
    except Exception as exc:
        raise _fail(task, f"the metric {task.metric_name!r} cannot be computed", exc) from exc
    if math.isnan(value):
        raise _fail(task, f"the metric {task.metric_name!r} of the untrained model is NaN")
    return value


def _chance(data: Data) -> float | None:
    y = labels(data)
    if y is None or len(y) == 0:
        return None
    _, counts = np.unique(y, return_counts=True)
    return float(counts.max() / counts.sum())
