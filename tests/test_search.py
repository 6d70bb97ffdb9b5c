"""Tests for lrsearch/pipeline/search.py: the sampler a claimed search trial gets.

TPE's constant liar makes it read the study afresh for every group of the conditional space;
the search asks for it only when other trials are running, which is safe only if TPE alone
draws the same without it. Both are checked on in-memory studies over lrsearch's own space.
"""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from lrsearch.choices import KINDS
from lrsearch.config import StudyConfig
from lrsearch.pipeline.search import claim_sampler, make_sampler
from lrsearch.space import suggest_setup

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
