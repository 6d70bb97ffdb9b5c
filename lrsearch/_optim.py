"""Small helpers on torch optimizers' param groups, shared by schedules and the range test."""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from lrsearch.exceptions import InvalidParameterError


def lr_ratios(optimizer: Optimizer) -> list[float]:
    """Each param group's LR divided by the first group's: what a schedule keeps constant."""
    lrs = [float(group["lr"]) for group in optimizer.param_groups]
    if not (math.isfinite(lrs[0]) and lrs[0] > 0):
        raise InvalidParameterError(
            "the first param group's lr sets the other groups' ratios, so it must be a "
            f"positive finite number; got {lrs[0]!r}"
        )
    return [lr / lrs[0] for lr in lrs]


def set_lrs(optimizer: Optimizer, lr: float, ratios: list[float]) -> None:
    """Set every group's LR to ``lr`` times its ratio (from :func:`lr_ratios`), in place where
    the LR is a tensor (capturable / fused optimizers)."""
    for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
        value = lr * ratio
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value
