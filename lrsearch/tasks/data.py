"""The data a task holds, and the helpers that take it apart: :data:`Data`, :class:`Split`,
:func:`subset`, :func:`labels`, :func:`first_batch`, :func:`steps_per_epoch`.

Imports nothing from the rest of :mod:`lrsearch.tasks`, so the built-in task modules and
``Task`` can both import from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = ["Data", "Split", "first_batch", "labels", "steps_per_epoch", "subset"]

#: Data a task can hold: in-memory ``(features, labels)`` tensors (batched by indexing, the fast
#: path) or any map-style ``torch.utils.data.Dataset`` yielding ``(input, target)`` pairs.
Data = tuple[torch.Tensor, torch.Tensor] | Dataset[Any]


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


def subset(data: Data, indices: Sequence[int] | np.ndarray) -> Data:
    """The examples of ``data`` at ``indices`` (tensors are indexed, datasets wrapped).

    Example:
        >>> x, y = subset((torch.arange(5.0), torch.arange(5)), [3, 1])
        >>> x.tolist(), y.tolist()
        ([3.0, 1.0], [3, 1])
    """
    idx = np.asarray(indices, dtype=np.int64)
    if isinstance(data, tuple):
        t = torch.from_numpy(idx)
        return data[0][t], data[1][t]
    return Subset(data, idx.tolist())


def first_batch(data: Data, batch_size: int) -> tuple[Any, Any]:
    """The first ``batch_size`` examples of ``data`` as one ``(inputs, targets)`` batch, in
    the data's own order (a dataset's examples collated as a DataLoader collates them).

    Example:
        >>> x, y = first_batch((torch.arange(10.0), torch.arange(10)), 4)
        >>> x.tolist(), y.tolist()
        ([0.0, 1.0, 2.0, 3.0], [0, 1, 2, 3])
    """
    if isinstance(data, tuple):
        return data[0][:batch_size], data[1][:batch_size]
    batch = next(iter(DataLoader(data, batch_size=batch_size)))
    return batch[0], batch[1]


def labels(data: Data) -> np.ndarray | None:
    """Class labels for stratified splitting, where they can be had without a pass over data.

    Example:
        >>> labels((torch.zeros(3, 2), torch.tensor([2, 0, 1]))).tolist()
        [2, 0, 1]
    """
    if isinstance(data, tuple):
        return data[1].detach().cpu().numpy()
    targets = getattr(data, "targets", None)
    return None if targets is None else np.asarray(targets)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``n`` examples (the last batch may be short).

    Example:
        >>> steps_per_epoch(100, 32)
        4
    """
    return max(1, math.ceil(n / batch_size))
