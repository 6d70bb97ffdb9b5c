"""The ``digits`` task: scikit-learn's bundled 8x8 handwritten digits and a one-hidden-layer MLP.

1797 images of 64 pixels (intensities 0-16), 10 classes, shipped inside scikit-learn, so loading
needs no network. The held-out test part is a fixed stratified split.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from lrsearch._validation import check_real
from lrsearch.exceptions import InvalidParameterError
from lrsearch.tasks._task import Task
from lrsearch.tasks.data import Split

__all__ = ["IN_FEATURES", "NUM_CLASSES", "load_data", "make_model", "task"]

IN_FEATURES = 64
NUM_CLASSES = 10
_HIDDEN = 128
_MAX_INTENSITY = 16.0  # the bundled images are 4-bit: 0..16


def load_data(*, test_size: float = 0.25, seed: int = 0) -> Split:
    """Load the digits as tensors with a fixed stratified train/test split.

    Args:
        test_size: Fraction of the 1797 images held out as the test part, in ``(0, 1)``.
        seed: Seed of the split (``train_test_split``'s ``random_state``); the same seed gives
            the same split.

    Returns:
        A :class:`~lrsearch.tasks.Split`: features float32 of shape ``(N, 64)`` scaled to
        ``[0, 1]``, labels int64 in ``0..9``. Each class keeps its share in both parts.

    Raises:
        InvalidParameterError: ``test_size`` outside ``(0, 1)``.

    Example:
        >>> split = load_data()
        >>> split.x_train.shape, split.x_test.shape, split.y_train.dtype
        (torch.Size([1347, 64]), torch.Size([450, 64]), torch.int64)
    """
    test_size = check_real("test_size", test_size)
    if not 0.0 < test_size < 1.0:
        raise InvalidParameterError(f"test_size must be in (0, 1); got {test_size!r}")
    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / _MAX_INTENSITY
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return Split(
        torch.from_numpy(np.ascontiguousarray(x_train)),
        torch.from_numpy(np.ascontiguousarray(y_train)),
        torch.from_numpy(np.ascontiguousarray(x_test)),
        torch.from_numpy(np.ascontiguousarray(y_test)),
    )


def make_model() -> nn.Module:
    """A freshly initialised MLP 64 -> 128 -> ReLU -> 10 that outputs logits (no softmax).

    Initialisation draws from torch's global RNG; seed it (``torch.manual_seed``) for a
    reproducible model. Pair it with ``nn.CrossEntropyLoss``.

    Returns:
        The model.

    Example:
        >>> import torch
        >>> make_model()(torch.zeros(5, 64)).shape
        torch.Size([5, 10])
    """
    return nn.Sequential(
        nn.Linear(IN_FEATURES, _HIDDEN),
        nn.ReLU(),
        nn.Linear(_HIDDEN, NUM_CLASSES),
    )


def task() -> Task:
    """The embedded default task: digits, the MLP, SGD with momentum, 20 epochs of batch 32.

    Returns:
        A :class:`~lrsearch.tasks.Task` with 1347 training and 450 held-out test images, the
        cross-entropy loss and accuracy (to maximize).

    Example:
        >>> t = task()
        >>> t.name, t.n_train, t.metric_name, t.direction
        ('digits', 1347, 'accuracy', 'maximize')
    """
    return Task.from_split(load_data(), make_model, batch_size=32, epochs=20, name="digits")
