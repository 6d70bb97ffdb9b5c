"""Tasks: what lrsearch tunes a schedule for (:class:`Task`), and the built-in ones.

A :class:`Task` bundles a model factory, train and test data, a loss, a metric with its
direction, an optimizer factory (:func:`sgd`, :func:`adamw` or your own), a batch size and
epochs. :func:`load_task` finds one by name: a built-in (``"charlm"``, ``"digits"``,
``"mnist1d"``: no download) or ``"package.module:function"``.

Each built-in module (:mod:`lrsearch.tasks.charlm`, :mod:`lrsearch.tasks.digits`,
:mod:`lrsearch.tasks.mnist1d`) has a ``load_data()`` that returns a :class:`Split` of in-memory
tensors, a ``make_model()`` that returns a freshly initialised ``torch.nn.Module`` producing
logits, and ``task()``. ``digits`` and ``mnist1d`` classify (accuracy, SGD with momentum);
``charlm`` predicts the next character at every position of a window (its labels are 2-D, its
metric is the test loss in nats per character, its optimizer AdamW).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "BUILTIN_TASKS",
    "METRICS",
    "Data",
    "OptimizerFactory",
    "Split",
    "Task",
    "adamw",
    "charlm",
    "digits",
    "load_task",
    "mnist1d",
    "sgd",
    "steps_per_epoch",
]


class Split(NamedTuple):
    """A task's data as in-memory tensors: a training part and a held-out test part.

    Labels are int64 class indices, ready for ``CrossEntropyLoss``: one per example for the
    classification tasks (float32 features), one per position for ``charlm`` (whose features
    are int64 character ids too). The test part is for the final comparison only; validation
    data are carved from the training part.

    Example:
        >>> import torch
        >>> s = Split(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long),
        ...           torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
        >>> s.x_train.shape, len(s.y_test)
        (torch.Size([3, 2]), 1)
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


# Imported after Split is defined: the task modules import Split from this package.
from lrsearch.tasks import charlm, digits, mnist1d  # noqa: E402
from lrsearch.tasks._task import (  # noqa: E402
    BUILTIN_TASKS,
    METRICS,
    Data,
    OptimizerFactory,
    Task,
    adamw,
    load_task,
    sgd,
    steps_per_epoch,
)
