"""Tests for lrsearch/pipeline/cost.py: a study's cost is what its units trained.

A spy counts every optimizer step that trains (a step with gradients) during a tiny study,
by the stage whose unit was running; the steps the units recorded must add up to it, stage
by stage, and the full-run equivalents must be those steps over one final run's.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_task
import torch
from spies import training_steps

from lrsearch.config import StudyConfig
from lrsearch.pipeline.cost import cost_of, stored_steps_per_epoch
from lrsearch.report import export_frame
from lrsearch.store import (
    COST,
    STEPS,
    TUNING_STAGES,
    VERIFICATION_STAGES,
    Cost,
    StageCost,
    load_stored,
    ran_to_end,
)
from lrsearch.study import StudyResult, run_study

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

FIXTURES = Path(__file__).parent / "fixtures"
STAGES = (*TUNING_STAGES, *VERIFICATION_STAGES)


@dataclasses.dataclass(frozen=True)
class Spied:
    """A tiny study run under the spy: its result, and the steps counted per stage."""

    url: str
    config: StudyConfig
    result: StudyResult
    counted: collections.Counter[str | None]


@contextlib.contextmanager
def _spy() -> Iterator[collections.Counter[str | None]]:
    """Count every training optimizer step inside the block, by the stage whose unit was
    running (``None``: outside any unit, the pre-flight's)."""
    counted: collections.Counter[str | None] = collections.Counter()

    def count(stage: str | None, _: torch.optim.Optimizer) -> None:
        counted[stage] += 1

    with training_steps(count):
        yield counted


@pytest.fixture(scope="module")
def spied(tmp_path_factory: pytest.TempPathFactory) -> Spied:
    url = f"sqlite:///{tmp_path_factory.mktemp('cost') / 'lrsearch.db'}"
    # Three range-test sweeps (and the redo where they are doubtful), a median pruner that
    # stops search trials early, every arm (Prodigy and Schedule-Free AdamW among them).
    cfg = tiny_task.config(n_trials=8, range_repeats=3, pruner="median", epochs=3)
    with _spy() as counted:
        result = run_study(cfg, storage=url)
    return Spied(url, cfg, result, counted)


def test_the_units_recorded_the_steps_they_trained(spied: Spied) -> None:
    counted = spied.counted
    assert counted[None] == len(spied.config.optimizers)  # the pre-flight's step, in no unit
    stored = load_stored("tiny", storage=spied.url)
    recorded = {
        stage: sum(t.user_attrs[STEPS] for t in stored.trials(stage) if ran_to_end(t))
        for stage in STAGES
    }
    assert recorded == {stage: counted[stage] for stage in STAGES}
    assert all(recorded[stage] > 0 for stage in STAGES)
    # A pruned search trial counts the epoch it trained, not the three it was planned for.
    spe = stored_steps_per_epoch(stored.attrs)
    pruned = [t for t in stored.trials("search") if t.state.name == "PRUNED"]
    assert pruned
    assert all(t.user_attrs[STEPS] == t.user_attrs["epochs_run"] * spe["search"] for t in pruned)


def test_the_cost_is_the_counted_steps_in_full_runs(spied: Spied) -> None:
    cost, counted = spied.result.cost, spied.counted
    assert cost is not None and cost.recorded
    stored = load_stored("tiny", storage=spied.url)
    full = spied.config.epochs * stored_steps_per_epoch(stored.attrs)["full"]
    assert cost.run_steps == full == 3 * 10  # 200 examples, batch 20
    for stage in STAGES:
        assert cost.stages[stage].steps == counted[stage]
        assert cost.runs(stage) == pytest.approx(counted[stage] / full)
    assert cost.tuning == pytest.approx(sum(counted[s] for s in TUNING_STAGES) / full)
    assert cost.verification == pytest.approx(sum(counted[s] for s in VERIFICATION_STAGES) / full)
    # Every final run trained in full: the comparison costs as many runs as it has.
    assert cost.runs("final") == len(stored.trials("final"))
    assert cost_of(stored) == cost


def test_the_export_carries_the_cost_and_each_runs_steps(spied: Spied) -> None:
    cost = spied.result.cost
    assert cost is not None
    frame = export_frame("tiny", storage=spied.url)
    assert frame.attrs[COST] == cost.to_dict()
    for source, stage in (
        ("search", "search"),
        ("constant-cv", "constant_cv"),
        ("final", "final"),
    ):
        rows = frame[frame["source"] == source]
        assert int(rows["steps"].sum()) == cost.stages[stage].steps


def test_a_study_stored_by_0_1_0_gets_its_cost_estimated(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "legacy-0.1.0.db", tmp_path / "legacy.db")
    stored = load_stored("legacy", storage=f"sqlite:///{tmp_path / 'legacy.db'}")
    cost = cost_of(stored)
    assert not cost.recorded
    assert all(c.estimated == c.units for c in cost.stages.values())
    spe = stored_steps_per_epoch(stored.attrs)
    epochs = int(stored.attrs["config"]["epochs"])
    assert cost.run_steps == epochs * spe["full"]
    # A final run of 0.1.0 stored its length: the comparison is its runs, each a full run.
    assert cost.runs("final") == cost.stages["final"].units
    # A search trial trained its epochs_run; a range test its sweeps' rungs.
    search = [t for t in stored.trials("search") if ran_to_end(t)]
    epochs_run = sum(t.user_attrs["epochs_run"] for t in search)
    assert cost.stages["search"].steps == epochs_run * spe["search"]
    (unit,) = stored.trials("range_test")
    sweeps = unit.user_attrs["range_test"]["sweeps"]
    assert cost.stages["range_test"].steps == sum(len(s["lrs"]) for s in sweeps)
    # A CV unit: each fold it scored, trained on the rest of train (100 of 200, batch 20).
    cv = [t for t in stored.trials("constant_cv") if ran_to_end(t)]
    folds = sum(len(t.user_attrs["fold_scores"]) for t in cv)
    assert cost.stages["constant_cv"].steps == folds * epochs * 5
    assert cost.tuning > 0 and cost.verification > 0
    assert cost.describe().endswith("; estimated for the 27 units that stored no step count")


def test_cost_record_round_trips_and_reads_in_words() -> None:
    cost = Cost(
        200,
        {
            "range_test": StageCost(1, 40),
            "search": StageCost(20, 3000),
            "constant_cv": StageCost(4, 1600),
            "finalists": StageCost(2, 800),
            "adam": StageCost(1, 160),
            "prodigy": StageCost(1, 160),
            "final": StageCost(10, 2000),
        },
    )
    assert Cost.from_dict(cost.to_dict()) == cost
    assert cost.tuning == pytest.approx((40 + 3000 + 1600 + 800) / 200)
    assert cost.verification == pytest.approx(11.6)
    assert cost.describe() == (
        "tuning 27.2 runs (range test 0.2, search 15.0, constant-cv 8.0, finalists 4.0); "
        "verification 11.6 runs (recipes 1.6, final comparison 10.0); "
        "a run is 200 optimizer steps"
    )
    assert math.isnan(Cost(0, {}).tuning)
