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

The helpers that take data apart (:func:`subset`, :func:`labels`, :func:`first_batch`,
:func:`steps_per_epoch`) live in :mod:`lrsearch.tasks.data`, with :data:`Data` and
:class:`Split`.
"""

from __future__ import annotations

from lrsearch.tasks import charlm, digits, mnist1d
from lrsearch.tasks._task import (
    BUILTIN_TASKS,
    METRICS,
    OptimizerFactory,
    Task,
    adamw,
    load_task,
    sgd,
)
from lrsearch.tasks.data import Data, Split, first_batch, labels, steps_per_epoch, subset

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
    "first_batch",
    "labels",
    "load_task",
    "mnist1d",
    "sgd",
    "steps_per_epoch",
    "subset",
]
