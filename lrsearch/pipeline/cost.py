"""What a study spent on training: :func:`cost_of`, its units' optimizer steps per stage, in
full-run equivalents, derived from the stored units on read (as the timings are).

Every unit records the optimizer steps it trained (user attr ``steps``, written with its time
by whoever ran it: :func:`lrsearch.training.clock` adds up what each run took). A unit stored
before that (by lrsearch 0.1.0) gets its steps estimated from what it did store:

- a range test: the lengths of its sweeps (exact);
- a search trial or a recipe arm's validation run: its ``epochs_run`` (all the epochs when not
  stored) times the search's steps per epoch;
- a constant-cv or finalist unit: each fold it scored, trained on the rest of ``train`` for all
  the epochs (a fold that stopped early counts in full);
- a final run: its record's ``steps``, the run's planned length (a run that diverged counts in
  full).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from optuna.trial import FrozenTrial

from lrsearch.range_test import RangeTestResult
from lrsearch.store import (
    ATTR_CONFIG,
    ATTR_STEPS_PER_EPOCH,
    ATTR_TASK,
    EPOCHS_RUN,
    FOLD_SCORES,
    FOLD_SIZES,
    FULL,
    SEARCH,
    STEPS,
    TUNING_STAGES,
    UNIT_FINAL_RUN,
    UNIT_RANGE_TEST,
    VERIFICATION_STAGES,
    Cost,
    FinalRun,
    StageCost,
    StoredStudy,
    ran_to_end,
)
from lrsearch.tasks import steps_per_epoch

__all__ = ["cost_of", "search_epoch_steps", "stored_steps_per_epoch"]


def search_epoch_steps(n_train: int, batch_size: int, validation_fraction: float) -> int:
    """Optimizer steps per epoch of a search trial, from sizes alone: the search split leaves
    ``ceil(n_train * validation_fraction)`` examples out (what the split gives up to rounding).

    Example:
        >>> search_epoch_steps(100, 10, 0.2), search_epoch_steps(1347, 32, 0.2)
        (8, 34)
    """
    n_fit = n_train - math.ceil(n_train * validation_fraction)
    return steps_per_epoch(max(1, n_fit), batch_size)


def stored_steps_per_epoch(attrs: Mapping[str, Any]) -> dict[str, int]:
    """Optimizer steps per epoch of the search trials and of a full run, ``{"search": n,
    "full": n}``, as the study's runs recorded them (``StoredStudy.attrs``).

    A study stored before they were recorded gets them from the task size, the validation
    fraction and the batch size, which is what the splits give up to rounding.

    Example:
        >>> attrs = {"config": {"batch_size": 10}, "task": {"n_train": 100}}
        >>> stored_steps_per_epoch(attrs)
        {'search': 8, 'full': 10}
    """
    cfg = attrs.get(ATTR_CONFIG) or {}
    n_train = int((attrs.get(ATTR_TASK) or {}).get("n_train", 1))
    batch = int(cfg.get("batch_size", 1))
    fraction = float(cfg.get("validation_fraction", 0.2))
    out = {
        SEARCH: search_epoch_steps(n_train, batch, fraction),
        FULL: steps_per_epoch(n_train, batch),
    }
    return out | {k: int(v) for k, v in (attrs.get(ATTR_STEPS_PER_EPOCH) or {}).items()}


def cost_of(stored: StoredStudy) -> Cost:
    """The study's training per stage: units, optimizer steps, full-run equivalents.

    Summed over every unit that ran to an end, whoever ran it (a unit run twice by accident
    counts twice: it trained twice); a unit without a step count is estimated (see the
    module's docs) and counted in :attr:`StageCost.estimated`.

    Example:
        After ``lrsearch run --study digits`` (a finished study, so no doctest):

        ```python
        spent = cost_of(load_stored("digits"))
        print(spent.describe(), spent.runs("search"))
        ```
    """
    shape = _Shape.read(stored)
    stages = {}
    for stage in (*TUNING_STAGES, *VERIFICATION_STAGES):
        ran = [t for t in stored.trials(stage) if ran_to_end(t)]
        steps = estimated = 0
        for trial in ran:
            recorded = trial.user_attrs.get(STEPS)
            if recorded is None:
                estimated += 1
                recorded = shape.estimate(stage, trial)
            steps += int(recorded)
        stages[stage] = StageCost(len(ran), steps, estimated)
    return Cost(shape.epochs * shape.spe[FULL], stages)


@dataclasses.dataclass(frozen=True)
class _Shape:
    """What estimating a unit's steps needs: the runs' epochs, batches and folds."""

    epochs: int
    batch_size: int
    n_train: int
    spe: dict[str, int]
    fold_sizes: list[int]

    @classmethod
    def read(cls, stored: StoredStudy) -> _Shape:
        attrs = stored.attrs
        cfg = attrs.get(ATTR_CONFIG) or {}
        n_train = int((attrs.get(ATTR_TASK) or {}).get("n_train", 1))
        folds = int(cfg.get("cv_folds", 5))
        sizes = next(
            (
                t.user_attrs[FOLD_SIZES]
                for t in stored.trials("constant_cv")
                if FOLD_SIZES in t.user_attrs
            ),
            [n_train // folds] * folds,
        )
        return cls(
            int(cfg.get("epochs", 1)),
            int(cfg.get("batch_size", 1)),
            n_train,
            stored_steps_per_epoch(attrs),
            [int(n) for n in sizes],
        )

    def estimate(self, stage: str, trial: FrozenTrial) -> int:
        """The steps a unit stored without a count trained, from what it stored."""
        attrs = trial.user_attrs
        if stage == "range_test":
            record = attrs.get(UNIT_RANGE_TEST)
            return 0 if record is None else RangeTestResult.from_dict(record).steps_taken
        if stage == "final":
            run = attrs.get(UNIT_FINAL_RUN)
            return 0 if run is None else FinalRun.from_dict(run).steps
        if stage in ("constant_cv", "finalists"):
            sizes = attrs.get(FOLD_SIZES) or self.fold_sizes
            scored = len(attrs.get(FOLD_SCORES) or sizes)
            return sum(
                self.epochs * steps_per_epoch(self.n_train - int(n), self.batch_size)
                for n in sizes[:scored]
            )
        return int(attrs.get(EPOCHS_RUN, self.epochs)) * self.spe[SEARCH]
