"""Tests for lrsearch/pipeline/bounds.py and the healing it drives: a winner at an edge widens
that side, as a stored record every worker reads, up to a cap."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import tiny_task
from optuna.trial import TrialState

from lrsearch.pipeline import bounds as _bounds
from lrsearch.pipeline.arms import healed_grid
from lrsearch.pipeline.bounds import Extension, at_edge, current, extended, history, record
from lrsearch.pipeline.run import run_study
from lrsearch.space import LRBounds
from lrsearch.store import UNIT, StudyNames


def test_at_edge_is_a_quarter_decade() -> None:
    bounds = LRBounds(1e-4, 1e-1)
    assert at_edge(1e-1, bounds) == "high"
    assert at_edge(1e-1 / 10**0.24, bounds) == "high"
    assert at_edge(1e-1 / 10**0.26, bounds) is None
    assert at_edge(1e-4 * 10**0.24, bounds) == "low"
    assert at_edge(1e-3, bounds) is None


def test_extended_widens_one_side_by_a_decade_up_to_the_cap() -> None:
    start = LRBounds(1e-3, 1e-1)
    now = start
    for _ in range(3):
        wider = extended(now, "high", start)
        assert wider is not None
        assert wider.low == now.low
        assert math.log10(wider.high / now.high) == pytest.approx(1.0)
        now = wider
    assert now.high == pytest.approx(100.0)
    assert extended(now, "high", start) is None  # 3 decades past the start: the cap
    lower = extended(now, "low", start)
    assert lower is not None and lower.low == pytest.approx(1e-4) and lower.high == now.high


def test_history_reads_the_first_record_per_key_in_order() -> None:
    study = optuna.create_study()
    one = Extension("task", 0, "high", 1e-3, 1.0, "cv-edge", 0.1)
    rival = Extension("task", 0, "high", 1e-3, 0.5, "cv-edge", 0.1)  # the same key, later
    two = Extension("task", 1, "low", 1e-4, 1.0, "search-edge", 1.1e-3, 4, {"max_lr": 1.1e-3})
    gap = Extension("task", 3, "high", 1e-4, 10.0, "search-edge", 0.9, 5)  # no number 2
    for ext in (one, rival, two, gap):
        record(study, ext)
    got = history(study.trials, "task")
    assert got == [one, two]
    assert history(study.trials, "adamw") == []
    assert current(LRBounds(1e-3, 0.1), got) == LRBounds(1e-4, 1.0)
    assert current(LRBounds(1e-3, 0.1), []) == LRBounds(1e-3, 0.1)
    assert {t.user_attrs[UNIT] for t in study.trials} == {
        "bounds/task/0",
        "bounds/task/1",
        "bounds/task/3",
    }


def test_an_extensions_seeds_step_into_the_new_range() -> None:
    up = Extension(
        "sgd", 0, "high", 1e-3, 1.0, "search-edge", 0.1, 3,
        {"optimizer": "sgd", "sgd:schedule": "cosine", "sgd:max_lr": 0.1, "sgd:base_lr": 1e-4},
    )  # fmt: skip
    seeds = up.seeds(["sgd", "adamw"])
    assert [s["sgd:max_lr"] for s in seeds] == pytest.approx([10**-0.5, 1.0])
    assert all(s["sgd:base_lr"] == 1e-4 and s["optimizer"] == "sgd" for s in seeds)
    down = Extension(
        "task", 0, "low", 1e-5, 0.1, "search-edge", 1e-4, 3,
        {"schedule": "triangular", "max_lr": 1e-4, "base_lr": 1e-5},
    )  # fmt: skip
    seeds = down.seeds(["task"])
    assert [s["max_lr"] for s in seeds] == pytest.approx([10**-4.5, 1e-5])
    # The base LR falls with the peak, so it stays inside its range below the new low.
    assert [s["base_lr"] / s["max_lr"] for s in seeds] == pytest.approx([0.1, 0.1])
    assert Extension("task", 0, "high", 1e-3, 1.0, "cv-edge", 0.1).seeds(["task"]) == []
    # Near the cap both steps clip to the new high: one schedule, not the same one twice.
    capped = Extension("task", 3, "high", 1e-3, 0.15, "search-edge", 0.1, 5, {"max_lr": 0.1})
    assert [s["max_lr"] for s in capped.seeds(["task"])] == [0.15]


def test_extension_round_trips() -> None:
    ext = Extension("task", 2, "low", 1e-5, 0.1, "search-edge", 1e-4, 3, {"max_lr": 1e-4})
    assert Extension.from_dict(ext.to_dict()) == ext


def test_the_healed_grid_keeps_its_points_and_gains_one_per_extension() -> None:
    start = LRBounds(1e-3, 1e-1)
    base = healed_grid(start, 5, [])
    assert base == pytest.approx([1e-3, 10**-2.5, 1e-2, 10**-1.5, 1e-1])
    up = Extension("task", 0, "high", 1e-3, 1.0, "cv-edge", 0.1)
    down = Extension("task", 1, "low", 1e-4, 1.0, "search-edge", 1e-3, 2, {"max_lr": 1e-3})
    up_again = Extension("task", 2, "high", 1e-4, 10.0, "cv-edge", 10**-0.5)
    grown = healed_grid(start, 5, [up, down, up_again])
    assert grown == pytest.approx([10**-3.5, *base, 10**-0.5, 1.0])
    # A coarse grid steps half a decade past its end, never past the bounds.
    coarse = healed_grid(LRBounds(1e-3, 1.0), 2, [Extension("t", 0, "high", 1e-3, 2.0, "x", 1)])
    assert coarse == pytest.approx([1e-3, 1.0, 2.0])


# --- whole studies ----------------------------------------------------------------------------

#: The tiny task's range test read over a ladder that stops short of its best LRs (about 0.1 to
#: 1 with SGD): a confident reading (the loss falls clearly) whose high end is too low.
NARROW = {"range_start_lr": 1e-4, "range_end_lr": 0.03, "range_num_iter": 40}


def test_a_range_too_narrow_heals_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'narrow.db'}"
    cfg = tiny_task.config("narrow", n_trials=10, cv_grid=3, **NARROW)
    result = run_study(cfg, storage=url)
    assert result.range_test.confident  # the sweep read well; the ladder was too short
    first = result.bounds_history[0]
    assert first["cause"] == "range-test"
    assert first["high"] == pytest.approx(result.range_test.bounds.high)
    grown = result.bounds_history[1:]
    assert grown, "a CV choice at the grid's top must widen the bounds"
    assert grown[0]["cause"] == "cv-edge"
    assert result.bounds.high >= 10 * first["high"] * (1 - 1e-9)
    # The grid gained a point past its top per extension, and the chosen constant lies past
    # the range test's high.
    cv = optuna.load_study(study_name=StudyNames("narrow").constant_cv, storage=url)
    grid = sorted(t.params["lr"] for t in cv.trials)
    records = optuna.load_study(study_name=StudyNames("narrow").bounds, storage=url).trials
    start = LRBounds(first["low"], first["high"])
    assert grid == pytest.approx(healed_grid(start, 3, history(records, "task")))
    assert len(grid) > 3 and grid[-1] > first["high"]
    assert result.constant_lr is not None and result.constant_lr > first["high"]
    codes = [w.code for w in result.warnings]
    assert "bounds-extended" in codes
    # Every search trial drew its peak from the bounds in force when it ran: none above the
    # last extension's high, and some above the range test's.
    search = optuna.load_study(study_name="narrow", storage=url)
    peaks = [t.params["max_lr"] for t in search.trials if t.state != TrialState.FAIL]
    assert max(peaks) <= result.bounds.high * (1 + 1e-9)
    assert max(peaks) > first["high"]


def test_healing_is_off_when_the_space_is_given(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'given.db'}"
    given = LRBounds(1e-4, 0.03)
    cfg = tiny_task.config("given", n_trials=6, cv_grid=3, **NARROW)
    result = run_study(cfg, storage=url, search_bounds=given)
    records = optuna.load_study(study_name=StudyNames("given").bounds, storage=url).trials
    assert records == []
    assert all(not rows["step"] for rows in result.bounds_history)


def test_at_edge_rejects_nothing_inside() -> None:
    # Guard for the module's constants: the edge is narrower than one extension.
    assert _bounds.EDGE_DECADES < _bounds.EXTEND_DECADES <= _bounds.CAP_DECADES
