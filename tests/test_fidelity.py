"""Tests for the search's fidelity: trials that train their whole schedule compressed.

``Schedule.compressed`` shortens every period alike, so a compressed run goes through the same
shape (warm-up, cycles, decay to the end) in fewer steps; a study at ``fidelity`` 1/3 trains
each search trial that way, step by step as the docs say, and its finalists and final runs in
full.
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tiny_task
import torch
from optuna.trial import TrialState
from spies import training_steps

from lrsearch.exceptions import InvalidParameterError
from lrsearch.report import note_markdown, report_html
from lrsearch.schedules import KINDS, Schedule, compressed_epochs
from lrsearch.space import setup_from_params
from lrsearch.store import EPOCHS_RUN, TRAINED_EPOCHS, load_stored
from lrsearch.study import run_study
from lrsearch.tasks import steps_per_epoch

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# One of each kind whose periods are whole multiples of 3, run over T = 270 steps.
FULL = 270
SHAPES: dict[str, Schedule] = {
    "constant": Schedule("constant", max_lr=0.1),
    "step": Schedule("step", max_lr=0.1, step_size=60, decay=0.5),
    "exponential": Schedule("exponential", max_lr=0.1, step_size=30, decay=0.7),
    "triangular": Schedule("triangular", max_lr=0.1, base_lr=0.01, step_size=45),
    "triangular2": Schedule("triangular2", max_lr=0.1, base_lr=0.01, step_size=45),
    "exp_range": Schedule("exp_range", max_lr=0.1, base_lr=0.01, step_size=45, decay=0.5),
    "sgdr": Schedule("sgdr", max_lr=0.1, base_lr=0.001, step_size=30, decay=0.8, cycle_mult=2),
    "onecycle": Schedule("onecycle", max_lr=0.1, base_lr=0.004),
    "cosine": Schedule("cosine", max_lr=0.1, base_lr=0.001, warmup=30),
    "wsd": Schedule("wsd", max_lr=0.1, base_lr=0.0, warmup=27, cooldown=0.2),
    "inverse_sqrt": Schedule("inverse_sqrt", max_lr=0.1, warmup=30),
    "plateau": Schedule("plateau", max_lr=0.1, decay=0.5, patience=6),
}


def test_every_kind_has_a_shape_here() -> None:
    assert set(SHAPES) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_a_compressed_schedule_is_the_same_shape_in_a_third_of_the_steps(kind: str) -> None:
    schedule = SHAPES[kind]
    short = schedule.compressed(1 / 3)
    assert short.kind == schedule.kind and short.max_lr == schedule.max_lr
    assert short.base_lr == schedule.base_lr
    full, fast = schedule.lrs(FULL), short.lrs(FULL // 3)
    # Step k of the short run stands for steps 3k..3k+2 of the full one; rounding the phases
    # to whole steps moves it by at most a step of its own: its LR lies within the full run's
    # LRs one short step either side (each of the 90 steps, the last one included).
    for k, lr in enumerate(fast):
        window = full[max(0, 3 * k - 3) : 3 * k + 6]
        assert window.min() * (1 - 1e-9) <= lr <= window.max() * (1 + 1e-9), (k, lr, window)
    assert len(fast) == FULL // 3


def test_periods_shrink_with_the_run_and_a_plateau_patience_too() -> None:
    assert SHAPES["step"].compressed(1 / 3).step_size == 20
    assert SHAPES["cosine"].compressed(1 / 3).warmup == 10
    assert SHAPES["plateau"].compressed(1 / 3).patience == 2
    # A period never rounds to nothing: a half-cycle stays at least a step.
    assert SHAPES["triangular"].compressed(0.001).step_size == 1
    assert SHAPES["cosine"].compressed(1.0) == SHAPES["cosine"]


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), "1/3"])
def test_a_bad_fraction_is_an_error(bad: Any) -> None:
    with pytest.raises(InvalidParameterError, match="fraction"):
        SHAPES["step"].compressed(bad)


def test_compressed_epochs_is_a_share_of_the_run_and_never_nothing() -> None:
    assert [compressed_epochs(e, 1 / 3) for e in (1, 2, 3, 6, 20, 75)] == [1, 1, 1, 2, 7, 25]
    assert compressed_epochs(8, 1.0) == 8
    with pytest.raises(InvalidParameterError, match="fidelity"):
        compressed_epochs(8, 0)


@contextlib.contextmanager
def _lrs_by_run() -> Iterator[dict[str | None, list[list[float]]]]:
    """Every training run's LR at each optimizer step (the LR the step used), per stage."""
    runs: dict[str | None, list[list[float]]] = collections.defaultdict(list)
    seen: dict[int, list[float]] = {}
    kept: list[torch.optim.Optimizer] = []  # alive, so no two runs share an id

    def record(stage: str | None, optimizer: torch.optim.Optimizer) -> None:
        if id(optimizer) not in seen:
            kept.append(optimizer)
            seen[id(optimizer)] = []
            runs[stage].append(seen[id(optimizer)])
        seen[id(optimizer)].append(float(optimizer.param_groups[0]["lr"]))

    with training_steps(record):
        yield runs


def test_a_study_at_a_third_trains_each_trial_compressed_and_the_rest_in_full(
    tmp_path: Any,
) -> None:
    url = f"sqlite:///{tmp_path / 'lrsearch.db'}"
    kinds = tuple(k for k in KINDS if k != "plateau")  # plateau's LR follows the metric
    cfg = tiny_task.config(
        n_trials=10, epochs=6, fidelity=1 / 3, pruner="none", finalists=2, kinds=kinds,
        arms=("tuned", "constant-cv"),
    )  # fmt: skip
    with _lrs_by_run() as runs:
        result = run_study(cfg, storage=url)
    stored = load_stored("tiny", storage=url)
    trials = sorted(stored.trials("search"), key=lambda t: t.number)
    assert len(trials) == len(runs["search"]) == 10
    spe = steps_per_epoch(tiny_task.N_TRAIN - math.ceil(0.2 * tiny_task.N_TRAIN), 20)
    for trial, lrs in zip(trials, runs["search"], strict=True):
        assert trial.user_attrs[TRAINED_EPOCHS] == 2
        full = setup_from_params(trial.params, optimizers=("task",), steps_per_epoch=spe, epochs=6)
        expected = full.schedule.compressed(1 / 3).lrs(2 * spe)
        # Two epochs of steps, not six (one, where the run diverged in its first).
        assert len(lrs) == trial.user_attrs[EPOCHS_RUN] * spe
        assert len(lrs) == 2 * spe or trial.state == TrialState.PRUNED
        np.testing.assert_allclose(lrs, expected[: len(lrs)], rtol=1e-6)
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 5
    # The finalists' CV and the final comparison train the full six epochs.
    full_steps = 6 * steps_per_epoch(tiny_task.N_TRAIN, 20)
    assert runs["final"] and all(len(lrs) == full_steps for lrs in runs["final"])
    assert runs["finalists"]
    assert all(len(lrs) > 2 * spe for lrs in runs["finalists"])
    # The tuned arm's validation score is a compressed run's, and the study says so.
    assert result.best_epochs == 2
    page = report_html(stored)
    assert "each trained 2 of the run&#x27;s 6 epochs with its whole schedule compressed" in page
    assert "trials, each trained 2 of the run's 6 epochs with its whole" in note_markdown(stored)
