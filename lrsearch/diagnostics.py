"""What explains a learning rate: the update/weight ratio of the steps, and why a run failed.

**Update/weight ratio.** :class:`UpdateRatioMonitor` measures ``||dw|| / ||w||`` per param group
around an optimizer step (CS231n's rule of thumb: about 1e-3). It costs one copy of the weights
(kept where they live) and a handful of ``torch._foreach_*`` kernels per measured step, with no
Python loop over the parameters and no GPU sync: the ratios wait on the device until
:meth:`UpdateRatioMonitor.end_epoch`, where the training loop syncs anyway. :func:`measure_every`
picks which steps a training run measures (about :data:`SAMPLES_PER_EPOCH` per epoch, so the
cost stays a small fraction of a step); the per-epoch medians are over those steps. The range
test measures every step of its sweep.

**Why a run failed.** :data:`NON_FINITE`, :data:`TOO_HIGH` and :func:`stall_reason` are the
words the training loop appends to a stopped or pruned run's reason: a NaN/inf loss or a blow-up
means the learning rate was too high, a training loss that has stopped falling means it was too
low (or the run is stuck).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import torch
from torch.optim import Optimizer

from lrsearch.store.records import RATIO_BAND, UpdateRatios

__all__ = [
    "NON_FINITE",
    "SAMPLES_PER_EPOCH",
    "STALL_EPOCHS",
    "TOO_HIGH",
    "TOO_LOW",
    "UpdateRatioMonitor",
    "loss_stalled",
    "measure_every",
    "stall_reason",
]

#: Why a NaN or inf loss happens.
NON_FINITE: Final = "learning rate too high (or a division by zero / log of zero in the loss)"
#: Why a loss blows up.
TOO_HIGH: Final = "learning rate too high"
#: Why a training loss stops falling.
TOO_LOW: Final = "learning rate too low, or stuck"

#: Epochs without a new lowest training loss after which a run counts as stalled.
STALL_EPOCHS: Final = 3
#: A new lowest loss must beat the old one by this share of its size to count as a fall.
STALL_TOLERANCE: Final = 1e-3

#: Steps a training run measures per epoch, at least (the median of each epoch is over them).
SAMPLES_PER_EPOCH: Final = 8


def measure_every(steps_per_epoch: int) -> int:
    """Measure one optimizer step in every ``measure_every(steps_per_epoch)``: at least
    :data:`SAMPLES_PER_EPOCH` steps per epoch, fewer on long epochs.

    Example:
        >>> measure_every(32), measure_every(5), measure_every(1000)
        (4, 1, 125)
    """
    return max(1, steps_per_epoch // SAMPLES_PER_EPOCH)


class UpdateRatioMonitor:
    """Measures ``||dw|| / ||w||`` per param group of ``optimizer`` around its steps.

    Call :meth:`before` just before ``optimizer.step()`` and :meth:`after` just after it;
    :meth:`end_epoch` closes an epoch, :meth:`result` gives the run's :class:`UpdateRatios`.
    ``dw`` is what the step changed and ``w`` the weights after it, both over the parameters of
    the group that require a gradient. A step that must not count (an AMP step the scaler
    skipped, a NaN loss) is dropped with :meth:`discard`.

    Args:
        optimizer: The optimizer whose groups are measured; their parameters should live on one
            device.
        every: :meth:`due` says yes on one step in ``every``.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
        >>> opt = torch.optim.SGD([w], lr=0.1)
        >>> w.grad = torch.tensor([0.3, 0.4])
        >>> monitor = UpdateRatioMonitor(opt)
        >>> monitor.before(); opt.step(); monitor.after()
        >>> ratios, lrs = monitor.take()  # |dw| = 0.1 * 0.5; |w| = 5 - 0.05
        >>> round(float(ratios[0, 0]), 6), lrs.tolist()
        (0.010101, [0.1])
    """

    def __init__(self, optimizer: Optimizer, *, every: int = 1) -> None:
        self.groups = len(optimizer.param_groups)
        self.every = every
        self._optimizer = optimizer
        params: list[torch.Tensor] = []
        group_of: list[int] = []
        for g, group in enumerate(optimizer.param_groups):
            for p in group["params"]:
                if p.requires_grad:
                    # A detached view shares the storage the optimizer updates in place.
                    params.append(p.detach())
                    group_of.append(g)
        self._params = params
        self._before = [p.clone() for p in params]
        device = params[0].device if params else torch.device("cpu")
        # Sums of squared norms per group as one matrix product: no loop over parameters.
        self._members = torch.zeros(len(params), self.groups, device=device)
        self._members[torch.arange(len(params)), torch.tensor(group_of, dtype=torch.long)] = 1.0
        self._queued: list[torch.Tensor] = []
        self._lrs: list[float | torch.Tensor] = []
        self._epochs: list[tuple[np.ndarray, np.ndarray]] = []

    def due(self, step: int) -> bool:
        """Whether optimizer step ``step`` (from 0) is one to measure."""
        return step % self.every == 0

    def before(self) -> None:
        """Keep the weights (and the learning rate) the coming step starts from."""
        if self._params:
            torch._foreach_copy_(self._before, self._params)
        lr = self._optimizer.param_groups[0]["lr"]
        self._lrs.append(lr.detach().clone() if isinstance(lr, torch.Tensor) else float(lr))

    def after(self) -> None:
        """Queue the ratio of the step just taken, per group (on the device: no sync)."""
        if not self._params:
            self._queued.append(torch.full((self.groups,), math.nan))
            return
        torch._foreach_sub_(self._before, self._params)  # before - after = -dw
        moved = torch.stack(torch._foreach_norm(self._before)).float()
        size = torch.stack(torch._foreach_norm(self._params)).float()
        sums = torch.stack((moved * moved, size * size)) @ self._members
        self._queued.append((sums[0] / sums[1]).sqrt())

    def discard(self) -> None:
        """Forget the step queued last (it did not count)."""
        if self._queued:
            self._queued.pop()
            self._lrs.pop()

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """The queued ratios, ``(steps, groups)``, and the learning rates they were taken at;
        clears the queue (one device-to-host copy)."""
        if not self._queued:
            return np.empty((0, self.groups)), np.empty(0)
        ratios = torch.stack(self._queued).cpu().numpy().astype(np.float64)
        lrs = np.asarray([float(lr) for lr in self._lrs], dtype=np.float64)
        self._queued.clear()
        self._lrs.clear()
        return ratios, lrs

    def end_epoch(self) -> None:
        """Close an epoch: its measured steps become one median per group."""
        self._epochs.append(self.take())

    def result(self) -> UpdateRatios:
        """What the run's measured steps say, epoch by epoch and as a whole."""
        if self._queued:
            self.end_epoch()
        epochs = [ratios for ratios, _ in self._epochs if len(ratios)]
        every = np.concatenate(epochs) if epochs else np.empty((0, self.groups))
        finite = np.where(np.isfinite(every), every, np.nan)
        low, high = RATIO_BAND
        n = len(finite)
        return UpdateRatios(
            epoch_medians=[
                [_median(ratios[:, g]) for ratios, _ in self._epochs] for g in range(self.groups)
            ],
            epoch_lrs=[_nan_if_none(_median(lrs)) for _, lrs in self._epochs],
            medians=[_median(finite[:, g]) for g in range(self.groups)],
            share_low=[float(np.sum(finite[:, g] < low)) / max(n, 1) for g in range(self.groups)],
            share_high=[
                float(np.sum(finite[:, g] > high)) / max(n, 1) for g in range(self.groups)
            ],
            measured_steps=n,
            every=self.every,
        )


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else None


def loss_stalled(losses: Sequence[float], epochs: int = STALL_EPOCHS) -> bool:
    """Whether the last ``epochs`` epochs brought no new lowest training loss.

    A fall counts when it beats the lowest loss before them by :data:`STALL_TOLERANCE` of its
    size. Needs more than ``epochs`` epochs; a non-finite loss is not a stall (it is worse).

    Example:
        >>> loss_stalled([2.30, 2.30, 2.30, 2.30]), loss_stalled([2.3, 2.0, 1.7, 1.5])
        (True, False)
    """
    if len(losses) <= epochs or not all(math.isfinite(v) for v in losses):
        return False
    best_before = min(losses[:-epochs])
    return min(losses[-epochs:]) > best_before - STALL_TOLERANCE * abs(best_before)


def stall_reason(losses: Sequence[float], epochs: int = STALL_EPOCHS) -> str | None:
    """:data:`TOO_LOW`, with the evidence, when :func:`loss_stalled`; else ``None``.

    Example:
        >>> stall_reason([2.3, 2.3, 2.3, 2.3])
        'learning rate too low, or stuck (the training loss has not fallen for 3 epochs)'
    """
    if not loss_stalled(losses, epochs):
        return None
    return f"{TOO_LOW} (the training loss has not fallen for {epochs} epochs)"
