"""The names of everything lrsearch stores: the studies of study NAME and their attributes.

One place for every name, so the pipeline that writes them, and the report, export and CLI that
read them, cannot drift apart. Study ``NAME`` holds the search; the work of the other stages
lives in studies named ``NAME/<stage>`` (see :class:`StudyNames`). Every trial that is a unit of
work carries its key in user attr :data:`UNIT`.

Study-level user attrs stay a small summary (what ``optuna studies`` prints on one line): the
records a reader asks for live on trials, each where it was made: a run's config and task on its
trial of ``NAME/runs``, the range test on its unit, the final runs' curves on theirs. A study
stored by 0.1.0 kept config, task, comparison, range test and history among study NAME's user
attrs; the readers of :mod:`lrsearch.store.stored` still find them there.
"""

from __future__ import annotations

import dataclasses
from typing import Final

__all__ = [
    "ARM",
    "ATTR_BASELINE",
    "ATTR_BOUNDS_HISTORY",
    "ATTR_CHOSEN_LR",
    "ATTR_COMPARISON",
    "ATTR_CONFIG",
    "ATTR_DIRECTION",
    "ATTR_FINALISTS",
    "ATTR_GRID",
    "ATTR_METRIC",
    "ATTR_RANGE_TEST",
    "ATTR_RANGE_TESTS",
    "ATTR_STEPS_PER_EPOCH",
    "ATTR_SUMMARY",
    "ATTR_TASK",
    "ATTR_WARNINGS",
    "COST",
    "EPOCHS_RUN",
    "EPOCH_LRS",
    "FINALIST_TRIAL",
    "FLAGS",
    "FOLD_SCORES",
    "FOLD_SIZES",
    "FULL",
    "HEALED",
    "LR_MEAN",
    "LR_PEAK",
    "OPTIMIZER",
    "OPTUNA_FAIL_REASON",
    "PRUNED_REASON",
    "RUN_PREFIX",
    "RUN_RECORD",
    "SCHEDULE",
    "SEARCH",
    "SEED",
    "SEEDED",
    "STEPS",
    "STOP_CODE",
    "TRAINED_EPOCHS",
    "TRAIN_SECONDS",
    "UNIT",
    "UNIT_BOUNDS",
    "UNIT_FINALIST",
    "UNIT_FINAL_RUN",
    "UNIT_RANGE_TEST",
    "UNIT_SPAN",
    "UPDATE_RATIOS",
    "WORKER",
    "StudyNames",
]

# --- user attrs of study NAME (the search): a small summary -----------------------------------
#: The task's metric name and its direction (``maximize`` / ``minimize``).
ATTR_METRIC: Final = "metric"
ATTR_DIRECTION: Final = "direction"
#: What the study found so far, in a few short fields (``StudySummary.to_dict()``).
ATTR_SUMMARY: Final = "summary"

# --- user attrs of a run's trial in study NAME/runs (one trial per ``lrsearch run``) ----------
#: The run's ``RunRecord.to_dict()`` (kept fresh while it runs).
RUN_RECORD: Final = "run_record"
#: The config the run was made with (TOML-shaped); the latest run's is the study's.
ATTR_CONFIG: Final = "config"
#: The task's description (``Task.describe()``).
ATTR_TASK: Final = "task"
#: Optimizer steps per epoch: ``{"search": n, "full": n}`` (keys :data:`SEARCH`, :data:`FULL`).
ATTR_STEPS_PER_EPOCH: Final = "steps_per_epoch"
SEARCH: Final = "search"
FULL: Final = "full"
#: What doing nothing scores (``Baseline.to_dict()``: the untrained model on the validation
#: split, and chance for accuracy), measured by the pre-flight; the verdicts compare with it.
ATTR_BASELINE: Final = "baseline"

# --- user attrs of study NAME kept by 0.1.0 (read from old databases, no longer written) ------
#: The range test (``RangeTestResult.to_dict()``), copied from the range-test unit.
ATTR_RANGE_TEST: Final = "range_test"
#: With several searched optimizers: ``{optimizer: RangeTestResult.to_dict()}`` (the first
#: optimizer's is also :data:`ATTR_RANGE_TEST`).
ATTR_RANGE_TESTS: Final = "range_tests"
#: The final comparison ``{arm: ARM}``, summarised from the final-run units.
ATTR_COMPARISON: Final = "comparison"
#: The finalists' cross-validated scores, from the finalist units (a list, best trial first).
ATTR_FINALISTS: Final = "finalists"
#: Where the study's answer may be wrong: ``[StudyWarning.to_dict(), ...]`` (empty: nothing
#: doubtful), derived from the units by ``load_result`` when a run ends.
ATTR_WARNINGS: Final = "warnings"
#: The searched bounds step by step (``StudyResult.bounds_history``), derived likewise.
ATTR_BOUNDS_HISTORY: Final = "bounds_history"
#: One user attr per ``lrsearch run`` invocation on the study: ``run:<start>:<host>:<pid>``
#: (now a trial of ``NAME/runs``).
RUN_PREFIX: Final = "run:"

# --- user attrs of study NAME/constant-cv ----------------------------------------------------
#: The constant LRs of the CV grid, and the one CV chose.
ATTR_GRID: Final = "grid"
ATTR_CHOSEN_LR: Final = "chosen_lr"

# --- what readers derive from the units, never stored at study level --------------------------
#: The study's cost in optimizer steps and full-run equivalents (``Cost.to_dict()``): a key of
#: the export's ``frame.attrs`` and of the summary.
COST: Final = "cost"

# --- Optuna's own system attrs that lrsearch reads ------------------------------------------
#: Why Optuna failed a trial (set by Optuna, e.g. a stale heartbeat).
OPTUNA_FAIL_REASON: Final = "fail_reason"

# --- user attrs of every unit trial ----------------------------------------------------------
#: The unit's key: readers take the first COMPLETE trial per key.
UNIT: Final = "unit"
#: Who ran it: ``host:pid``.
WORKER: Final = "worker"
#: Seconds spent inside training and evaluation (the rest is bookkeeping).
TRAIN_SECONDS: Final = "train_seconds"
#: Optimizer steps the unit trained, counted as taken: every run of it (each CV fold, up to the
#: one that stopped; each range-test sweep), a pruned or diverged run's up to where it stopped.
#: Evaluation is not counted. Written with :data:`TRAIN_SECONDS`, by whoever runs the unit.
STEPS: Final = "steps"
#: Search trials enqueued from the literature's recipes.
SEEDED: Final = "seeded"
#: Search trials enqueued in a range the bounds just grew to (``Extension.seeds``).
HEALED: Final = "healed"
#: Epochs a search trial trained when its ``fidelity`` was under 1 (its schedule compressed
#: into them, :meth:`~lrsearch.Schedule.compressed`); absent: the full run.
TRAINED_EPOCHS: Final = "trained_epochs"
#: What a trial trained, in words (``Setup.describe``), on search, CV, recipe and final trials.
SCHEDULE: Final = "schedule"
#: The optimizer a trial trained with: ``"task"`` or a searched/recipe optimizer's name.
OPTIMIZER: Final = "optimizer"
#: A CV unit's metric on each fold (up to the fold that stopped), and each fold's size.
FOLD_SCORES: Final = "fold_scores"
FOLD_SIZES: Final = "fold_sizes"
#: A finalist unit's search trial number.
FINALIST_TRIAL: Final = "trial"
#: A final-comparison unit's arm and model seed.
ARM: Final = "arm"
SEED: Final = "seed"
#: A search trial's largest and mean learning rate over the run (first param group).
LR_PEAK: Final = "lr_peak"
LR_MEAN: Final = "lr_mean"

# --- user attrs holding a unit's record, one per stage that has one -------------------------
#: The range-test unit's ``RangeTestResult.to_dict()``.
UNIT_RANGE_TEST: Final = "range_test"
#: A redo range-test unit's plausible span ``[low, high]``: the bounds searched when the redo
#: is doubtful too.
UNIT_SPAN: Final = "span"
#: An extension record's ``Extension.to_dict()`` (study ``NAME/bounds``).
UNIT_BOUNDS: Final = "bounds"
#: A finalist unit's ``Finalist.to_dict()``.
UNIT_FINALIST: Final = "finalist"
#: A final-comparison unit's ``FinalRun.to_dict()``.
UNIT_FINAL_RUN: Final = "run"

# --- user attrs the training loop writes on a trial (lrsearch.training.fit) ------------------
#: Why a run was pruned or stopped, in words (``StopReason.words``: the pruner, a NaN, a
#: divergence, with what it says about the learning rate).
PRUNED_REASON: Final = "pruned_reason"
#: The same as a code (``StopReason.code``, one of ``STOP_CODES``): what code reads.
STOP_CODE: Final = "stop_code"
#: Epochs it trained.
EPOCHS_RUN: Final = "epochs_run"
#: The learning rate of every epoch as trained (what a ``plateau`` schedule really did).
EPOCH_LRS: Final = "epoch_lrs"
#: The run's update/weight ratios (``UpdateRatios.to_dict()``), unless the config's
#: ``diagnostics`` is off.
UPDATE_RATIOS: Final = "update_ratios"
#: What the diagnostics say about the learning rate, in words (a list; empty: nothing to say).
FLAGS: Final = "flags"


@dataclasses.dataclass(frozen=True)
class StudyNames:
    """The Optuna studies that make up lrsearch study ``name``.

    Example:
        >>> names = StudyNames("digits")
        >>> names.search, names.constant_cv, names.final
        ('digits', 'digits/constant-cv', 'digits/final')
    """

    name: str

    @property
    def search(self) -> str:
        """The search trials (and the study's user attrs)."""
        return self.name

    @property
    def range_test(self) -> str:
        """The range-test unit."""
        return f"{self.name}/range-test"

    @property
    def bounds(self) -> str:
        """The history of the searched bounds: one record per extension."""
        return f"{self.name}/bounds"

    @property
    def constant_cv(self) -> str:
        """One trial per constant LR of the CV grid."""
        return f"{self.name}/constant-cv"

    @property
    def adam(self) -> str:
        """The Adam lr=3e-4 baseline's validation run."""
        return f"{self.name}/adam-3e-4"

    @property
    def prodigy(self) -> str:
        """The Prodigy arm's validation run."""
        return f"{self.name}/prodigy"

    @property
    def schedule_free_adamw(self) -> str:
        """The Schedule-Free AdamW arm's validation run."""
        return f"{self.name}/schedule-free-adamw"

    @property
    def runs(self) -> str:
        """One trial per ``lrsearch run`` invocation: who ran it, and with what config."""
        return f"{self.name}/runs"

    @property
    def finalists(self) -> str:
        """The top search trials re-scored on the CV folds."""
        return f"{self.name}/finalists"

    @property
    def final(self) -> str:
        """The final comparison's runs, one trial per arm and seed."""
        return f"{self.name}/final"

    def all(self) -> tuple[str, ...]:
        """Every study name of the study, the search first."""
        return (
            self.search,
            self.range_test,
            self.constant_cv,
            self.adam,
            self.prodigy,
            self.schedule_free_adamw,
            self.finalists,
            self.final,
            self.bounds,
            self.runs,
        )

    @classmethod
    def owner(cls, study_name: str) -> str:
        """The lrsearch study a stored study belongs to (``"a/final"`` -> ``"a"``)."""
        head, _, tail = study_name.rpartition("/")
        if head and tail in _STAGE_SUFFIXES:
            return head
        return study_name


#: What follows ``NAME/`` in the name of each stage's study.
_STAGE_SUFFIXES = tuple(name.partition("/")[2] for name in StudyNames("NAME").all()[1:])
