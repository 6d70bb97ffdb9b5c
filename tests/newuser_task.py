"""The new user's first model: a small BatchNorm CNN on noisy synthetic 16x16 images.

Four classes of shifted shapes (left half, top half, a diagonal half, a disc) buried in Gaussian
noise several times their contrast; 800 training images, 6 epochs of batch 32, SGD with
momentum. A range test of 100 rungs cannot read it (the loss falls by a few batch-noise
deviations), and a study that trusted that reading searched a decade of LRs where the model
learns nothing. Importable as ``newuser_task:task``.
"""

from __future__ import annotations

import torch
from torch import nn

from lrsearch.tasks import Task, sgd

__all__ = ["images", "make_model", "task"]

N_TRAIN = 800
N_TEST = 400
NOISE = 6.0


def images(n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of shape (1, 16, 16), labels 0..3 in turn."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    shapes = torch.stack(
        [
            (cols < 8).float(),
            (rows < 8).float(),
            ((rows + cols) < 16).float(),
            (((rows - 7.5) ** 2 + (cols - 7.5) ** 2) < 25).float(),
        ]
    )
    shifts = torch.randint(-2, 3, (n, 2), generator=g).tolist()
    x = torch.stack(
        [
            torch.roll(shapes[c], (dy, dx), (0, 1))
            for c, (dy, dx) in zip(y.tolist(), shifts, strict=True)
        ]
    )
    x = x + NOISE * torch.randn(n, 16, 16, generator=g)
    return x.unsqueeze(1), y


def make_model() -> nn.Module:
    """Two conv blocks with BatchNorm, then a linear layer to 4 logits."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 4),
    )


def task() -> Task:
    """The new user's task: 150 optimizer steps in all (6 epochs of 25 batches)."""
    return Task(
        make_model,
        images(N_TRAIN, seed=0),
        lambda: images(N_TEST, seed=1),
        make_optimizer=sgd(),
        batch_size=32,
        epochs=6,
        name="newuser-cnn",
    )
