"""lrsearch: find a learning rate and a schedule for a PyTorch model, on Optuna.

The public API lives here; import from ``lrsearch``, never from its modules.
"""

from __future__ import annotations

from lrsearch.config import StudyConfig, load_config
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.export import EXPORT_COLUMNS, export_frame
from lrsearch.range_test import RangeTestResult, range_test
from lrsearch.report import report_html
from lrsearch.schedules import KINDS, Schedule
from lrsearch.space import LRBounds, seed_params, suggest_schedule
from lrsearch.study import StudyResult, load_result, run_study
from lrsearch.tasks import Task, load_task

__all__ = [
    "EXPORT_COLUMNS",
    "KINDS",
    "InvalidParameterError",
    "LRBounds",
    "LrsearchError",
    "RangeTestResult",
    "Schedule",
    "StudyConfig",
    "StudyResult",
    "Task",
    "export_frame",
    "load_config",
    "load_result",
    "load_task",
    "range_test",
    "report_html",
    "run_study",
    "seed_params",
    "suggest_schedule",
]

__version__ = "0.1.0"
