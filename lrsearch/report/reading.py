"""Reading back what a study stored, once, for the figures, tables, note and export.

:func:`read` turns a :class:`~lrsearch.store.StoredStudy` into one :class:`StudyReading`: the
:class:`~lrsearch.pipeline.StudyResult` that :func:`~lrsearch.pipeline.load_result` derives
from the units when the study has got that far, else the pieces a study under way already has
(its config, task and metric, its range tests). Every record comes through its class; nothing
here reads a study-level blob by hand, so a study stored by 0.1.0 reads the same way (the
store's readers fall back on its old attrs). No training, no writing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lrsearch.diagnostics import NON_FINITE, TOO_HIGH, TOO_LOW
from lrsearch.exceptions import LrsearchError
from lrsearch.pipeline import StudyResult, StudyWarning, result_of
from lrsearch.pipeline import range_test as _range_test
from lrsearch.pipeline.cost import stored_steps_per_epoch
from lrsearch.range_test import RangeTestResult
from lrsearch.schedules import compressed_epochs
from lrsearch.store import (
    ATTR_CONFIG,
    ATTR_DIRECTION,
    ATTR_METRIC,
    ATTR_TASK,
    FLAGS,
    SCHEDULE,
    SEARCH,
    TRAINED_EPOCHS,
    ArmResult,
    Cost,
    Finalist,
    StopReason,
    StoredStudy,
)

__all__ = [
    "Comparison",
    "StudyReading",
    "as_arms",
    "cause",
    "causes_in_words",
    "diagnosed_trials",
    "read",
    "schedule_words",
    "search_steps_per_epoch",
]


#: A final comparison as the report's functions take it: ``{arm: ArmResult}``, or the same as
#: stored (``StudyResult.comparison``: ``{arm: ArmResult.to_dict()}``), or ``None``.
Comparison = Mapping[str, ArmResult | Mapping[str, Any]] | None


def as_arms(comparison: Comparison) -> dict[str, ArmResult]:
    """``comparison`` as records, ``{arm: ArmResult}`` (empty without one)."""
    return {
        arm: data if isinstance(data, ArmResult) else ArmResult.from_dict(data)
        for arm, data in (comparison or {}).items()
    }


@dataclasses.dataclass(frozen=True)
class StudyReading:
    """A stored study as the report reads it (made by :func:`read`).

    Attributes:
        stored: The study as :func:`lrsearch.store.load_stored` opened it.
        config: The config it was made with (TOML-shaped; empty when unknown).
        task: The task's description (``Task.describe()``; empty when unknown).
        metric: The task's metric name (``"metric"`` when unknown).
        direction: ``"maximize"`` or ``"minimize"``.
        steps_per_epoch: Optimizer steps per epoch of the search trials.
        optimizers: The optimizers it searched (the config's ``optimizers``).
        range_tests: Each searched optimizer's range test read so far (the first optimizer's
            is :attr:`range_test`).
        result: What the study found (``None`` before a range test and a completed trial).
    """

    stored: StoredStudy
    config: Mapping[str, Any]
    task: Mapping[str, Any]
    metric: str
    direction: str
    steps_per_epoch: int
    optimizers: tuple[str, ...]
    range_tests: Mapping[str, RangeTestResult]
    result: StudyResult | None = None

    @property
    def search(self) -> optuna.Study:
        """Optuna study NAME: the search trials."""
        return self.stored.search

    @property
    def maximize(self) -> bool:
        """Whether a larger metric is better."""
        return self.direction == "maximize"

    @property
    def epochs(self) -> int:
        """Epochs of every training run of the study."""
        return int(self.config.get("epochs", 1))

    @property
    def range_test(self) -> RangeTestResult | None:
        """The first searched optimizer's range test (``None`` before it ran)."""
        return self.range_tests.get(self.optimizers[0])

    @functools.cached_property
    def arms(self) -> dict[str, ArmResult] | None:
        """The final comparison, ``{arm: ArmResult}`` (``None`` without one)."""
        arms = None if self.result is None else self.result.arms
        return arms or None

    @property
    def finalists(self) -> tuple[Finalist, ...]:
        """The finalists' CV scores (empty before them, or without them)."""
        return () if self.result is None else self.result.finalists

    @property
    def warnings(self) -> tuple[StudyWarning, ...]:
        """Where the study's answer may be wrong (empty: nothing doubtful, or no answer yet)."""
        return () if self.result is None else self.result.warnings

    @property
    def bounds_history(self) -> tuple[dict[str, Any], ...]:
        """Each searched optimizer's bounds, step by step (empty before a result)."""
        return () if self.result is None else self.result.bounds_history

    @property
    def tuned_trial(self) -> int | None:
        """The search trial whose schedule the comparison calls ``tuned`` (``None`` without a
        comparison)."""
        return None if self.result is None or not self.arms else self.result.tuned_trial

    @property
    def cost(self) -> Cost | None:
        """What the study trained, per stage (``None`` before a result)."""
        return None if self.result is None else self.result.cost

    @property
    def constant_lr(self) -> float | None:
        """The constant-cv arm's LR in the comparison (``None`` without that arm)."""
        if self.result is None or "constant-cv" not in (self.arms or {}):
            return None
        return self.result.constant_lr

    @property
    def chosen_lr(self) -> float | None:
        """The constant LR the CV grid chose (``None`` before it, or without it)."""
        return None if self.result is None else self.result.constant_lr

    def complete(self) -> list[FrozenTrial]:
        """The completed search trials."""
        return self.search.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def best_trial(self) -> FrozenTrial | None:
        """The best search trial by its validation value (``None``: none completed)."""
        return self.search.best_trial if self.complete() else None

    def fidelity_in_words(self) -> str | None:
        """How long search trials trained when shorter than a run (``None``: full runs)."""
        fidelity = float(self.config.get("fidelity", 1.0))
        if fidelity == 1:
            return None
        epochs = int(self.config["epochs"])
        return (
            f"each trained {compressed_epochs(epochs, fidelity)} of the run's {epochs} epochs "
            "with its whole schedule compressed into them"
        )

    def best_in_words(self) -> str | None:
        """``"#3, validation accuracy 0.9500: <its schedule>"`` (``None``: none completed)."""
        best = self.best_trial()
        if best is None:
            return None
        words = best.user_attrs.get(SCHEDULE, "")
        epochs = best.user_attrs.get(TRAINED_EPOCHS)
        short = "" if epochs is None else f" after {epochs} epochs, compressed"
        return f"#{best.number}, validation {self.metric} {best.value:.4f}{short}: {words}"


def read(study: StoredStudy | StudyReading) -> StudyReading:
    """``study`` read once for the report (a reading is returned as it is).

    Example:
        After ``lrsearch run --study digits`` (a finished study, so no doctest):

        ```python
        reading = read(load_stored("digits"))
        reading.arms["tuned"].test_metric_mean
        ```
    """
    if isinstance(study, StudyReading):
        return study
    attrs = study.attrs
    config = dict(attrs.get(ATTR_CONFIG) or {})
    direction = attrs.get(ATTR_DIRECTION) or study.search.direction.name.lower()
    optimizers = tuple(config.get("optimizers", ("task",)))
    result = _result(study)
    if result is not None:
        range_tests = dict(result.range_tests) or {optimizers[0]: result.range_test}
    else:  # a study under way: what its range-test units hold so far
        readings = _range_test.load_all(study, optimizers)
        range_tests = {n: readings[n].range_test for n in optimizers if n in readings}
    return StudyReading(
        stored=study,
        config=config,
        task=dict(attrs.get(ATTR_TASK) or {}),
        metric=str(attrs.get(ATTR_METRIC) or "metric"),
        direction=str(direction),
        steps_per_epoch=search_steps_per_epoch(study),
        optimizers=optimizers,
        range_tests=range_tests,
        result=result,
    )


def _result(stored: StoredStudy) -> StudyResult | None:
    """What the study found, or ``None`` while it has no range test or no completed trial."""
    try:
        return result_of(stored)
    except LrsearchError:
        return None


def search_steps_per_epoch(study: StoredStudy | StudyReading) -> int:
    """Optimizer steps per epoch of the search trials (stored by ``run_study``).

    A study stored before this was recorded gets it from the task size, the validation fraction
    and the batch size, which is what the split gives up to rounding.
    """
    if isinstance(study, StudyReading):
        return study.steps_per_epoch
    return stored_steps_per_epoch(study.attrs)[SEARCH]


def schedule_words(trial: FrozenTrial) -> Any:
    """A trial's schedule in words as stored (its kind, for a trial stored without them)."""
    return trial.user_attrs.get(SCHEDULE, trial.params.get("schedule"))


#: What each stop code says about the learning rate, in a few words (``other``: the words).
_CAUSES: Mapping[str, str] = {
    "pruned": "the pruner (behind the other trials)",
    "stalled": TOO_LOW,
    "diverged": TOO_HIGH,
    "non-finite": NON_FINITE,
}


def cause(stop: StopReason) -> str:
    """What a run's stop says about the learning rate, in a few words, read from its code: the
    diagnosis the training loop gave, ``"the pruner"`` for a plain pruning, else the words.

    Example:
        >>> cause(StopReason("diverged", "diverged in epoch 2: learning rate too high"))
        'learning rate too high'
        >>> cause(StopReason.from_attrs({"pruned_reason": "pruner: stopped after epoch 3"}))
        'the pruner (behind the other trials)'
    """
    return _CAUSES.get(stop.code, stop.words)


def diagnosed_trials(
    study: StoredStudy | StudyReading,
) -> list[tuple[FrozenTrial, StopReason | None, list[str]]]:
    """The finished search trials with something to say: ``(trial, why it stopped or None,
    its diagnostics' flags)``, in trial order."""
    out = []
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    for trial in read(study).search.get_trials(deepcopy=False, states=states):
        stop = StopReason.from_attrs(trial.user_attrs)
        flags = list(trial.user_attrs.get(FLAGS) or [])
        if stop or flags:
            out.append((trial, stop, flags))
    return out


def causes_in_words(study: StoredStudy | StudyReading) -> str:
    """The causes of the search trials' early stops, most frequent first, e.g.
    ``"3 x learning rate too high; 1 x the pruner (behind the other trials)"`` (``""``: none).
    """
    counts = Counter(cause(stop) for _, stop, _ in diagnosed_trials(study) if stop)
    return "; ".join(f"{n} x {what}" for what, n in counts.most_common())
