"""Small helpers on torch optimizers' param groups, shared by schedules and the range test."""

from __future__ import annotations

import math
from typing import Any

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


def set_lr(group: dict[str, Any], value: float) -> None:
    """Set a param group's LR, in place when it is a tensor (capturable / fused optimizers)."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value
