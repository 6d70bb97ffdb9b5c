"""Where lrsearch keeps a study: storage URLs, study and attribute names, typed records.

Everything the pipeline writes and the report, export and CLI read goes through here: one
schema (:mod:`~lrsearch.store.names`, :mod:`~lrsearch.store.records`), one way to open a
storage (:func:`open_storage`) and to read a study back (:func:`load_stored`). It imports no
torch and nothing of the pipeline or the report.
"""

from __future__ import annotations

from lrsearch.store.names import (
    ATTR_CHOSEN_LR,
    ATTR_COMPARISON,
    ATTR_CONFIG,
    ATTR_DIRECTION,
    ATTR_FINALISTS,
    ATTR_GRID,
    ATTR_METRIC,
    ATTR_RANGE_TEST,
    ATTR_STEPS_PER_EPOCH,
    ATTR_TASK,
    EPOCH_LRS,
    EPOCHS_RUN,
    PRUNED_REASON,
    RUN_PREFIX,
    SEEDED,
    TRAIN_SECONDS,
    UNIT,
    WORKER,
    StudyNames,
)
from lrsearch.store.records import ArmResult, Finalist, FinalRun, RunRecord, StageTime, Timings
from lrsearch.store.storage import DEFAULT_STORAGE, StorageLock, backend, mask_url, open_storage
from lrsearch.store.stored import (
    FINISHED,
    STAGES,
    StoredStudy,
    first_done,
    history,
    list_studies,
    load_stored,
    run_records,
    same_params,
    timings,
    top_trials,
    trial_states,
    unit_key,
)

__all__ = [
    "ATTR_CHOSEN_LR",
    "ATTR_COMPARISON",
    "ATTR_CONFIG",
    "ATTR_DIRECTION",
    "ATTR_FINALISTS",
    "ATTR_GRID",
    "ATTR_METRIC",
    "ATTR_RANGE_TEST",
    "ATTR_STEPS_PER_EPOCH",
    "ATTR_TASK",
    "DEFAULT_STORAGE",
    "EPOCHS_RUN",
    "EPOCH_LRS",
    "FINISHED",
    "PRUNED_REASON",
    "RUN_PREFIX",
    "SEEDED",
    "STAGES",
    "TRAIN_SECONDS",
    "UNIT",
    "WORKER",
    "ArmResult",
    "FinalRun",
    "Finalist",
    "RunRecord",
    "StageTime",
    "StorageLock",
    "StoredStudy",
    "StudyNames",
    "Timings",
    "backend",
    "first_done",
    "history",
    "list_studies",
    "load_stored",
    "mask_url",
    "open_storage",
    "run_records",
    "same_params",
    "timings",
    "top_trials",
    "trial_states",
    "unit_key",
]
