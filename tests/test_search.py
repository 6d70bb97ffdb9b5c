"""Tests for lrsearch/pipeline/search.py: the sampler a claimed search trial gets, and what a
search trial leaves on its trial.

TPE's constant liar makes it read the study afresh for every group of the conditional space;
the search asks for it only when other trials are running, which is safe only if TPE alone
draws the same without it. Both are checked on in-memory studies over lrsearch's own space.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import tiny_task
from optuna.trial import TrialState

from lrsearch.choices import KINDS
from lrsearch.config import StudyConfig
from lrsearch.pipeline import search
from lrsearch.pipeline.search import claim_sampler, make_sampler
from lrsearch.space import LRBounds, suggest_setup
from lrsearch.store import (
    EPOCH_LRS,
    EPOCHS_RUN,
    FLAGS,
    LR_MEAN,
    LR_PEAK,
    OPTIMIZER,
    PRUNED_REASON,
    SCHEDULE,
    STOP_CODE,
    StopReason,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

CFG = StudyConfig(name="s", task="digits", seed=3)


def _draws(constant_liar: bool, n_trials: int = 16) -> list[dict[str, object]]:
    study = optuna.create_study(direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        setup = suggest_setup(
            trial, bounds={"task": (1e-3, 0.5)}, steps_per_epoch=10, epochs=20, kinds=KINDS
        )
        # Any deterministic score: it steers TPE once its start-up trials are done.
        return -abs(math.log10(setup.schedule.max_lr) + 1.5)

    for number in range(n_trials):
        study.sampler = make_sampler(CFG, number, constant_liar=constant_liar)
        study.optimize(objective, n_trials=1)
    return [t.params for t in study.trials]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_alone_tpe_draws_the_same_with_and_without_the_constant_liar() -> None:
    # 16 trials: past TPE's 10 start-up trials, so the model (and the liar) are in play.
    assert _draws(constant_liar=True) == _draws(constant_liar=False)


def test_the_claimed_trial_gets_the_liar_only_while_another_trial_runs() -> None:
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"x": 1.0})
    assert not claim_sampler(study, CFG, 0)._constant_liar  # type: ignore[attr-defined]
    other = study.ask()
    assert study.trials[other.number].state == TrialState.RUNNING
    assert claim_sampler(study, CFG, 1)._constant_liar  # type: ignore[attr-defined]
    study.tell(other, 0.0)
    assert not claim_sampler(study, CFG, 2)._constant_liar  # type: ignore[attr-defined]


def test_pruned_and_completed_search_trials_carry_the_same_record(tmp_path: Path) -> None:
    # The literature's seeds at the top of a wide range diverge on the tiny task (pruned); their
    # AdamW twins complete. Both are written by TrialRecord: what they trained and what it did.
    ctx = tiny_task.context(
        tmp_path / "s.db", n_trials=6, epochs=6, warmup_epochs=1, optimizers=("task", "adamw")
    )
    bounds = {"task": LRBounds(1e-3, 1.0), "adamw": LRBounds(1e-4, 1e-1)}
    trials = search.ensure(ctx, bounds, heal=False)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned and complete
    for t in trials:
        attrs = t.user_attrs
        assert {SCHEDULE, LR_PEAK, LR_MEAN, EPOCHS_RUN, EPOCH_LRS} <= attrs.keys()
        assert attrs.get(OPTIMIZER) == ("adamw" if attrs[SCHEDULE].startswith("adamw") else None)
        assert len(attrs[EPOCH_LRS]) == attrs[EPOCHS_RUN]
    for t in complete:
        assert FLAGS in t.user_attrs and STOP_CODE not in t.user_attrs
        assert t.user_attrs[EPOCHS_RUN] == 6
    diverged = [t for t in pruned if t.user_attrs[STOP_CODE] == "diverged"]
    assert diverged
    for t in diverged:
        words = t.user_attrs[PRUNED_REASON]
        assert words.startswith("diverged in epoch ") and words.endswith("learning rate too high")
        assert StopReason.from_attrs(t.user_attrs) == StopReason("diverged", words)
