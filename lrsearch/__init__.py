"""lrsearch: find a learning rate and a schedule for a PyTorch model, on Optuna.

The public API lives here; import from ``lrsearch``, never from its modules. Names are loaded
on first use (PEP 562), so ``import lrsearch`` and reading a study config do not import torch;
``lrsearch.Schedule`` and friends import what they need when first touched.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from lrsearch.version import __version__ as __version__

if TYPE_CHECKING:
    from lrsearch.choices import KINDS
    from lrsearch.config import StudyConfig, load_config
    from lrsearch.exceptions import InvalidParameterError, LrsearchError
    from lrsearch.frameworks import (
        hf_optimizers,
        hf_steps_per_epoch,
        hf_total_steps,
        lightning_scheduler,
    )
    from lrsearch.pipeline import StudyWarning
    from lrsearch.preflight import PreflightError
    from lrsearch.range_test import RangeTestResult, range_test
    from lrsearch.report import EXPORT_COLUMNS, export_frame, report_html
    from lrsearch.schedules import Schedule
    from lrsearch.space import (
        LRBounds,
        Setup,
        seed_params,
        seed_peak,
        suggest_schedule,
        suggest_setup,
    )
    from lrsearch.store import Cost, load_stored
    from lrsearch.study import StudyResult, load_result, run_study
    from lrsearch.tasks import Task, load_task

#: Where each public name lives.
_HOME: dict[str, str] = {
    "Cost": "lrsearch.store",
    "EXPORT_COLUMNS": "lrsearch.report",
    "KINDS": "lrsearch.choices",
    "InvalidParameterError": "lrsearch.exceptions",
    "LRBounds": "lrsearch.space",
    "LrsearchError": "lrsearch.exceptions",
    "RangeTestResult": "lrsearch.range_test",
    "Schedule": "lrsearch.schedules",
    "Setup": "lrsearch.space",
    "StudyConfig": "lrsearch.config",
    "StudyResult": "lrsearch.study",
    "StudyWarning": "lrsearch.pipeline",
    "PreflightError": "lrsearch.preflight",
    "Task": "lrsearch.tasks",
    "export_frame": "lrsearch.report",
    "hf_optimizers": "lrsearch.frameworks",
    "hf_steps_per_epoch": "lrsearch.frameworks",
    "hf_total_steps": "lrsearch.frameworks",
    "lightning_scheduler": "lrsearch.frameworks",
    "load_config": "lrsearch.config",
    "load_result": "lrsearch.study",
    "load_stored": "lrsearch.store",
    "load_task": "lrsearch.tasks",
    "range_test": "lrsearch.range_test",
    "report_html": "lrsearch.report",
    "run_study": "lrsearch.study",
    "seed_params": "lrsearch.space",
    "seed_peak": "lrsearch.space",
    "suggest_schedule": "lrsearch.space",
    "suggest_setup": "lrsearch.space",
}

__all__ = [
    "EXPORT_COLUMNS",
    "KINDS",
    "Cost",
    "InvalidParameterError",
    "LRBounds",
    "LrsearchError",
    "PreflightError",
    "RangeTestResult",
    "Schedule",
    "Setup",
    "StudyConfig",
    "StudyResult",
    "StudyWarning",
    "Task",
    "export_frame",
    "hf_optimizers",
    "hf_steps_per_epoch",
    "hf_total_steps",
    "lightning_scheduler",
    "load_config",
    "load_result",
    "load_stored",
    "load_task",
    "range_test",
    "report_html",
    "run_study",
    "seed_params",
    "seed_peak",
    "suggest_schedule",
    "suggest_setup",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'lrsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


#: Public functions that share their name with the subpackage they live in.
_SHADOWED = frozenset({"range_test"})


class _Package(types.ModuleType):
    """This package's module type: ``lrsearch.range_test`` stays the function.

    Loading a subpackage binds it to the parent's attribute of the same name (after the
    subpackage's own code has run), which would replace the public function ``range_test``
    with the ``lrsearch.range_test`` package as soon as anything imports from it. Here the
    function it exports under that name is bound instead; ``from lrsearch.range_test import
    ...`` still finds the package in ``sys.modules`` (``import lrsearch.range_test as m`` gives
    the function: use ``from lrsearch import range_test as ...`` or the names it exports).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
