"""lrsearch: find a learning rate and a schedule for a PyTorch model, on Optuna.

The public API lives here; import from ``lrsearch``, never from its modules.
"""

from __future__ import annotations

from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.range_test import RangeTestResult, range_test
from lrsearch.schedules import KINDS, Schedule
from lrsearch.space import LRBounds, seed_params, suggest_schedule

__all__ = [
    "KINDS",
    "InvalidParameterError",
    "LRBounds",
    "LrsearchError",
    "RangeTestResult",
    "Schedule",
    "range_test",
    "seed_params",
    "suggest_schedule",
]

__version__ = "0.1.0"
