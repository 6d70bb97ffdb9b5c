"""``run_study``: the whole pipeline on a study, with its figures and note on the dashboard.

The pipeline (:mod:`lrsearch.pipeline`) stores the work; this module, above both the pipeline
and the presentation (:mod:`lrsearch.report`), adds what optuna-dashboard shows: the
range-test figure as soon as it is stored, the comparison figures and the note when the result
changes; and the result's table and verdict (:class:`StudyResult`). Everything is stored in
one Optuna storage (default ``sqlite:///studies/lrsearch.db``); :mod:`lrsearch.store` names
every study and attribute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pandas as pd
from optuna.storages import RDBStorage

from lrsearch import pipeline
from lrsearch.config import StudyConfig
from lrsearch.pipeline import run_range_test
from lrsearch.pipeline.context import Progress
from lrsearch.report import attach_to_dashboard, comparison_table, verdict
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


@dataclasses.dataclass(frozen=True)
class StudyResult(pipeline.StudyResult):
    """What a study found, as stored, with its final comparison as a table and in one sentence.

    The fields are :class:`lrsearch.pipeline.StudyResult`'s, derived from the stored units by
    :func:`load_result`; :meth:`table` and :meth:`verdict` present them (as the CLI prints them).
    """

    @classmethod
    def of(cls, result: pipeline.StudyResult) -> StudyResult:
        """The same result, with its presentation."""
        return cls(**{f.name: getattr(result, f.name) for f in dataclasses.fields(result)})

    def table(self) -> pd.DataFrame:
        """The final comparison, one row per arm (empty without one)."""
        return comparison_table(self.arms, self.metric)

    def verdict(self) -> str:
        """One sentence: whether the tuned schedule beat each other arm, significantly."""
        return verdict(self.arms, self.direction)


def load_result(
    name: str, *, storage: str | None = None, store: RDBStorage | None = None
) -> StudyResult:
    """Rebuild the :class:`StudyResult` of a stored study without running anything.

    Args:
        name: The study name.
        storage: Its storage URL (default ``sqlite:///studies/lrsearch.db``).
        store: An open storage to use instead.

    Raises:
        LrsearchError: No database, no such study, no range test or no completed trial yet.
    """
    return StudyResult.of(pipeline.load_result(name, storage=storage, store=store))


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
        The :class:`StudyResult`, derived from the stored units.

    Raises:
        InvalidParameterError: A bad config or override (before anything is written).
        LrsearchError: The storage cannot be opened, the study exists with another config,
            ``fresh`` with live workers, or a stage cannot finish.

    Example:
        >>> result = run_study("digits", overrides={"n_trials": 8})  # doctest: +SKIP
        >>> print(result.table())  # doctest: +SKIP
    """
    result = pipeline.run_study(
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
    return StudyResult.of(result)
