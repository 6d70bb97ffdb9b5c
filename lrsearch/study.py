"""``run_study``: the whole pipeline on a study, with its figures and note on the dashboard.

The pipeline (:mod:`lrsearch.pipeline`) stores the work; this module, above both the pipeline
and the presentation (:mod:`lrsearch.report`), adds what optuna-dashboard shows: the
range-test figure as soon as it is stored, the comparison figures and the note when the result
changes. Everything is stored in one Optuna storage (default ``sqlite:///studies/lrsearch.db``);
:mod:`lrsearch.store` names every study and attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lrsearch.config import StudyConfig
from lrsearch.pipeline import StudyResult, load_result, run_range_test
from lrsearch.pipeline import run_study as _run_pipeline
from lrsearch.pipeline.context import Progress
from lrsearch.report import attach_to_dashboard
from lrsearch.space import LRBounds
from lrsearch.store import (
    DEFAULT_STORAGE,
    StoredStudy,
    list_studies,
    load_stored,
    mask_url,
    open_storage,
)
from lrsearch.tasks import Task

__all__ = [
    "DEFAULT_STORAGE",
    "StoredStudy",
    "StudyResult",
    "list_studies",
    "load_result",
    "load_stored",
    "mask_url",
    "open_storage",
    "run_range_test",
    "run_study",
]


def run_study(
    config: StudyConfig | str,
    *,
    storage: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    fresh: bool = False,
    skip_baselines: bool = False,
    task: Task | None = None,
    progress: Progress | None = None,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    search_bounds: LRBounds | None = None,
    enqueue_seeds: bool = True,
) -> StudyResult:
    """Run (or resume, or join as one more worker) study ``NAME`` end to end.

    Range test, the constant-LR CV (its choice seeds the search), seeded pruned search, the
    recipe baselines, finalists re-scored by CV, the final comparison on the held-out test
    set; each unit of work through Optuna's queue, so any number of processes on one storage
    give one study. The dashboard gets the range-test figure, the comparison figures and a
    note.

    Args:
        config: A :class:`~lrsearch.config.StudyConfig` or a study name whose config is
            ``./studies/NAME.toml`` or a packaged one.
        storage: Optuna storage URL (default ``sqlite:///studies/lrsearch.db``; PostgreSQL or
            MySQL for workers on many machines).
        overrides: Config keys to replace (the CLI's flags).
        fresh: Delete the study first (refused while another worker is live).
        skip_baselines: Search only: no baselines, no final comparison.
        task: A :class:`~lrsearch.tasks.Task` to use instead of the config's ``task``.
        progress: Called as ``progress(stage, done, total)`` while work advances.
        heartbeat_interval: Seconds between a running unit's heartbeats (default: the config's
            ``heartbeat_interval``).
        grace_period: Seconds without a heartbeat after which a unit is failed and retried
            (default: the config's ``grace_period``).
        search_bounds: Search ``max_lr``/``base_lr`` over these bounds instead of the range
            test's (for ablations).
        enqueue_seeds: Enqueue the literature's schedules first (``False`` for ablations).

    Returns:
        The :class:`~lrsearch.pipeline.StudyResult`, derived from the stored units.

    Raises:
        InvalidParameterError: A bad config or override (before anything is written).
        LrsearchError: The storage cannot be opened, the study exists with another config,
            ``fresh`` with live workers, or a stage cannot finish.

    Example:
        >>> result = run_study("digits", overrides={"n_trials": 8})  # doctest: +SKIP
        >>> print(result.table())  # doctest: +SKIP
    """
    return _run_pipeline(
        config,
        storage=storage,
        overrides=overrides,
        fresh=fresh,
        skip_baselines=skip_baselines,
        task=task,
        progress=progress,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        search_bounds=search_bounds,
        enqueue_seeds=enqueue_seeds,
        on_stored=attach_to_dashboard,
    )
