"""Tests for lrsearch/pipeline/verdicts.py: each doubt about a study's answer is said, with
what to do, and nothing is said about an answer that is not doubtful."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from lrsearch.pipeline.bounds import Extension
from lrsearch.pipeline.range_test import Reading
from lrsearch.pipeline.verdicts import StudyWarning, verdicts
from lrsearch.preflight import Baseline
from lrsearch.range_test import RangeTestResult, read_curve
from lrsearch.space import LRBounds
from lrsearch.store import ArmResult

CLEAR = dict(fall=1.5, noise=0.02)
NOISY = dict(fall=0.3, noise=0.1)


def _rt(*, fall: float, noise: float, n: int = 100) -> RangeTestResult:
    lrs = np.geomspace(1e-5, 1.0, n)
    x = np.log10(lrs)
    losses = np.where(x < -1.5, 2 - fall / (1 + np.exp(-4 * (x + 3))), 10.0)
    sweep = read_curve(lrs, losses + noise * np.random.default_rng(0).standard_normal(n))
    return RangeTestResult.from_sweeps([sweep], start_lr=1e-5, end_lr=1.0, num_iter=n)


def _trials(values: list[float]) -> list[FrozenTrial]:
    return [optuna.trial.create_trial(value=v, state=TrialState.COMPLETE) for v in values]


def _arm(mean: float, diff: float | None = None, significant: bool = False) -> ArmResult:
    interval = None if diff is None else {"mean_diff": diff, "significant": significant}
    return ArmResult(
        mean,
        0.0,
        [mean],
        [mean],
        [[mean]],
        1,
        1,
        {},
        "",
        "task",
        [0],
        [None],
        0.0,
        tuned_minus_this=interval,
    )


def _codes(**changes: Any) -> list[str]:
    readings = changes.pop("readings", {"task": Reading(_rt(**CLEAR), run_steps=500)})
    start = readings["task"].bounds
    fields: dict[str, Any] = {
        "optimizers": ("task",),
        "readings": readings,
        "extensions": {"task": []},
        "tuned_optimizer": "task",
        "tuned_peak": float(np.sqrt(start.low * start.high)),  # well inside
        "tuned_value": 0.9,
        "constant_lr": float(np.sqrt(start.low * start.high)),
        "arms": {"tuned": _arm(0.9), "constant-cv": _arm(0.88, 0.02)},
        "baseline": Baseline(untrained=0.25, chance=0.25),
        "search": _trials([0.9, 0.7]),
        "maximize": True,
        "metric": "accuracy",
    }
    fields.update(changes)
    found = verdicts(**fields)
    for warning in found:
        assert warning.line().startswith("warning: ") and "\n" not in warning.text
    return [w.code for w in found]


def test_a_sound_study_says_nothing() -> None:
    assert _codes() == []


def test_a_redone_range_test_is_said_and_so_is_a_wide_start() -> None:
    first = _rt(**NOISY)
    assert not first.confident
    redone = Reading(first, _rt(**CLEAR), run_steps=500)
    assert _codes(readings={"task": redone}) == ["range-test-redone"]
    wide = Reading(first, _rt(**NOISY), LRBounds(1e-5, 10.0), run_steps=500)
    assert _codes(readings={"task": wide}) == ["range-test-redone", "range-test-unconfident"]
    # The redo's 400-step sweeps were longer than a whole run of 120 steps.
    short = Reading(first, _rt(**NOISY, n=400), LRBounds(1e-5, 10.0), run_steps=120)
    assert _codes(readings={"task": short}) == [
        "range-test-redone",
        "range-test-unconfident",
        "runs-too-short",
    ]


def test_extended_bounds_are_said_when_the_winner_lies_past_the_start() -> None:
    reading = Reading(_rt(**CLEAR), run_steps=500)
    start = reading.bounds
    ext = Extension("task", 0, "high", start.low, start.high * 10, "cv-edge", start.high)
    past = start.high * 3  # inside the widened bounds, past the range test's
    codes = _codes(readings={"task": reading}, extensions={"task": [ext]}, constant_lr=past)
    assert codes == ["bounds-extended"]
    # A widening the winners did not need is history, not a doubt.
    assert _codes(readings={"task": reading}, extensions={"task": [ext]}) == []


@pytest.mark.parametrize("what", ["tuned_peak", "constant_lr"])
def test_a_winner_still_at_an_edge_is_said(what: str) -> None:
    reading = Reading(_rt(**CLEAR), run_steps=500)
    start = reading.bounds
    exts = [
        Extension("task", k, "high", start.low, start.high * 10 ** (k + 1), "search-edge", 1.0)
        for k in range(3)
    ]
    top = start.high * 1000
    codes = _codes(readings={"task": reading}, extensions={"task": exts}, **{what: top})
    assert codes == ["bounds-extended", "bounds-at-cap"]
    found = verdicts(
        optimizers=("task",),
        readings={"task": reading},
        extensions={"task": exts},
        tuned_optimizer="task",
        tuned_peak=top if what == "tuned_peak" else None,
        tuned_value=0.9,
        constant_lr=top if what == "constant_lr" else None,
        arms=None,
        baseline=None,
        search=[],
        maximize=True,
        metric="accuracy",
    )
    (edge,) = [w for w in found if w.code == "bounds-at-cap"]
    assert "its cap" in edge.text and "range_test.end_lr" in edge.text
    # At the edge without the cap: the search ended before it could look further.
    low_edge = _codes(**{what: start.low})
    assert low_edge == ["bounds-at-cap"]


def test_a_tuned_arm_at_chance_is_said() -> None:
    codes = _codes(arms={"tuned": _arm(0.26), "constant-cv": _arm(0.59, -0.33, True)})
    assert "tuned-at-chance" in codes
    # For a loss: no better than the untrained model on validation.
    loss = _codes(
        arms={"tuned": _arm(1.4), "constant-cv": _arm(1.0, 0.4, True)},
        baseline=Baseline(untrained=1.38),
        tuned_value=1.39,
        search=_trials([1.39, 1.5]),
        maximize=False,
        metric="loss",
    )
    assert "tuned-at-chance" in loss and "all-trials-failed" in loss


def test_a_tuned_arm_worse_than_every_other_is_said() -> None:
    comparison = {
        "tuned": _arm(0.80),
        "constant-cv": _arm(0.85, -0.05, True),
        "prodigy": _arm(0.83, -0.03, False),
    }
    assert _codes(arms=comparison) == ["tuned-worst"]
    # Worse than one arm but not all: nothing to say.
    comparison["prodigy"] = _arm(0.79, 0.01, False)
    assert _codes(arms=comparison) == []
    # Worse than every arm but by noise alone: nothing to say either.
    tie = {"tuned": _arm(0.80), "a": _arm(0.81, -0.01), "b": _arm(0.805, -0.005)}
    assert _codes(arms=tie) == []


def test_a_search_that_never_beat_the_untrained_model_is_said() -> None:
    assert _codes(search=_trials([0.24, 0.25])) == ["all-trials-failed"]


def test_a_study_warning_round_trips() -> None:
    warning = StudyWarning("bounds-extended", "the range was widened")
    assert StudyWarning.from_dict(warning.to_dict()) == warning
    assert warning.line() == "warning: the range was widened"
