"""The pipeline: one module per stage, each "make sure it is done, then load it".

:mod:`~lrsearch.pipeline.range_test` -> :mod:`~lrsearch.pipeline.search` ->
:mod:`~lrsearch.pipeline.arms` (constant-LR CV, Adam 3e-4) ->
:mod:`~lrsearch.pipeline.finalists` -> :mod:`~lrsearch.pipeline.comparison`, run by
:func:`run_study` (:mod:`~lrsearch.pipeline.run`); units of work go through Optuna's queue
(:mod:`~lrsearch.pipeline.queue`). :func:`load_result` derives the result from what is stored.
"""

from __future__ import annotations

from lrsearch.pipeline.context import prepare
from lrsearch.pipeline.range_test import preview as run_range_test
from lrsearch.pipeline.result import StudyResult, load_result, result_of
from lrsearch.pipeline.run import run_study
from lrsearch.pipeline.verdicts import StudyWarning

__all__ = [
    "StudyResult",
    "StudyWarning",
    "load_result",
    "prepare",
    "result_of",
    "run_range_test",
    "run_study",
]
