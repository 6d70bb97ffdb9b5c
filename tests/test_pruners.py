"""Tests for lrsearch/pruners.py: a trial is judged only after its schedule's own start.

The wrapped pruner is a recording stub that always says "prune", so each test sees exactly when
:class:`ScheduleAwarePruner` lets it be asked; real studies (in memory) drive Optuna's own
successive halving through :func:`lrsearch.training.fit`.
"""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import torch
from assertions import invalid
from optuna.trial import FrozenTrial, TrialState

from lrsearch import Schedule
from lrsearch.config import StudyConfig
from lrsearch.pipeline.search import make_pruner
from lrsearch.pruners import ScheduleAwarePruner, first_judged_epoch
from lrsearch.space import search_space, suggest_setup
from lrsearch.training import fit

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPE, EPOCHS = 10, 20


class AlwaysPrune(optuna.pruners.BasePruner):
    """Says ``answer`` (default: prune) whenever asked, and remembers the steps it was asked at."""

    def __init__(self, answer: bool = True) -> None:
        self.asked: list[int] = []
        self.answer = answer

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        assert trial.last_step is not None
        self.asked.append(trial.last_step)
        return self.answer


def frozen(params: dict[str, Any], *, prefix: str = "") -> FrozenTrial:
    space = search_space((1e-3, 1.0), epochs=EPOCHS, prefix=prefix)
    dists = {
        k: space.get(k, optuna.distributions.CategoricalDistribution(["sgd", "adamw"]))
        for k in params
    }
    return optuna.trial.create_trial(params=params, distributions=dists, value=0.5)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (Schedule("constant", max_lr=0.1), 1),
        (Schedule("step", max_lr=0.1, step_size=30, decay=0.5), 1),
        # Cyclical: two half-cycles of 3 epochs.
        (Schedule("triangular", max_lr=0.1, base_lr=0.01, step_size=30), 6),
        (Schedule("triangular2", max_lr=0.1, base_lr=0.01, step_size=45), 9),
        (Schedule("exp_range", max_lr=0.1, base_lr=0.01, step_size=30, decay=0.9), 6),
        # SGDR: the first restart cycle is step_size long.
        (Schedule("sgdr", max_lr=0.1, base_lr=0.01, step_size=50, decay=1.0), 5),
        # 1cycle peaks at pct_start of the run: 0.3 x 20 epochs.
        (Schedule("onecycle", max_lr=0.1, base_lr=0.004), 6),
        (Schedule("cosine", max_lr=0.1, base_lr=0.01, warmup=25), 3),
        (Schedule("wsd", max_lr=0.1, base_lr=0.01, warmup=40, cooldown=0.2), 4),
        # A cycle longer than the run: judged at the end at the latest.
        (Schedule("triangular", max_lr=0.1, base_lr=0.01, step_size=150), EPOCHS),
    ],
)
def test_first_judged_epoch_is_the_end_of_the_schedules_own_start(
    schedule: Schedule, expected: int
) -> None:
    assert first_judged_epoch(schedule, steps_per_epoch=SPE, epochs=EPOCHS) == expected


def _asked_steps(pruner: ScheduleAwarePruner, trial: FrozenTrial, epochs: int) -> list[int]:
    study = optuna.create_study(direction="maximize")
    decisions = []
    for step in range(1, epochs + 1):
        at_step = optuna.trial.create_trial(
            params=trial.params,
            distributions=trial.distributions,
            intermediate_values={s: 0.5 for s in range(1, step + 1)},
            state=TrialState.RUNNING,
        )
        if pruner.prune(study, at_step):
            decisions.append(step)
    return decisions


def test_a_cyclical_schedule_is_never_pruned_mid_cycle_before_its_first_cycle_ends() -> None:
    inner = AlwaysPrune()
    pruner = ScheduleAwarePruner(inner, epochs=EPOCHS, steps_per_epoch=SPE)
    # step_size 4 epochs: the first cycle ends after epoch 8.
    trial = frozen({"schedule": "triangular", "max_lr": 0.1, "base_lr": 0.001, "step_size": 4})
    assert _asked_steps(pruner, trial, EPOCHS) == list(range(8, EPOCHS))
    assert inner.asked[0] == 8


def test_no_trial_is_pruned_after_the_last_epoch_nor_before_warmup_epochs() -> None:
    inner = AlwaysPrune()
    pruner = ScheduleAwarePruner(inner, epochs=EPOCHS, steps_per_epoch=SPE, warmup_epochs=3)
    trial = frozen({"schedule": "constant", "max_lr": 0.1})
    assert _asked_steps(pruner, trial, EPOCHS) == list(range(3, EPOCHS))
    assert EPOCHS not in inner.asked


def test_prefixed_params_of_an_optimizer_search_are_read() -> None:
    pruner = ScheduleAwarePruner(
        AlwaysPrune(), epochs=EPOCHS, steps_per_epoch=SPE, optimizers=("sgd", "adamw")
    )
    params = {
        "optimizer": "adamw",
        "adamw:schedule": "sgdr",
        "adamw:max_lr": 0.1,
        "adamw:base_lr": 0.001,
        "adamw:step_size": 7,
        "adamw:decay": 0.5,
        "adamw:cycle_mult": 1,
    }
    assert pruner.judged_from(frozen(params, prefix="adamw:")) == 7


def test_a_trial_that_is_no_lrsearch_schedule_is_judged_from_the_first_epoch() -> None:
    pruner = ScheduleAwarePruner(AlwaysPrune(), epochs=EPOCHS, steps_per_epoch=SPE)
    other = optuna.trial.create_trial(
        params={"x": 1.0},
        distributions={"x": optuna.distributions.FloatDistribution(0, 2)},
        value=0.0,
    )
    assert pruner.judged_from(other) == 1


def test_bad_arguments_are_refused() -> None:
    with invalid("pruner must be an Optuna pruner"):
        ScheduleAwarePruner("median", epochs=3, steps_per_epoch=1)  # type: ignore[arg-type]
    with invalid("epochs"):
        ScheduleAwarePruner(AlwaysPrune(), epochs=0, steps_per_epoch=1)
    with invalid("warmup_epochs"):
        ScheduleAwarePruner(AlwaysPrune(), epochs=3, steps_per_epoch=1, warmup_epochs=-1)


@pytest.mark.parametrize(
    ("name", "inner"),
    [
        ("halving", optuna.pruners.SuccessiveHalvingPruner),
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
    ],
)
def test_make_pruner_wraps_the_configs_pruner(name: str, inner: type) -> None:
    pruner = make_pruner(StudyConfig(name="p", task="digits", pruner=name), 20, steps_per_epoch=5)
    assert isinstance(pruner, ScheduleAwarePruner) and isinstance(pruner.wrapped, inner)
    none = make_pruner(StudyConfig(name="p", task="digits", pruner="none"), 20)
    assert isinstance(none, optuna.pruners.NopPruner)


def test_halving_through_fit_reports_every_epoch_and_spares_a_cycle_until_it_ends() -> None:
    # Trial 0 (constant, scores 1.0) sets the rungs; every later trial scores 0.0, the worst
    # at every rung, so halving prunes it at the first epoch it is asked about.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=gen)
    y = x[:, :3].argmax(dim=1)
    epochs, spe = 12, 5  # 40 examples, batch 8

    def objective(trial: optuna.Trial) -> float:
        score = 1.0 if trial.number == 0 else 0.0
        setup = suggest_setup(
            trial, bounds={"task": (1e-3, 0.5)}, steps_per_epoch=spe, epochs=epochs
        )
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        result = fit(
            model,
            torch.optim.SGD(model.parameters(), lr=setup.schedule.max_lr),
            torch.nn.CrossEntropyLoss(),
            (x, y),
            epochs=epochs,
            batch_size=8,
            schedule=setup.schedule,
            eval_data=(x, y),
            metric=lambda out, target: score,
            trial=trial,
        )
        return result.final

    cfg = StudyConfig(name="p", task="digits", pruner="halving")
    study = optuna.create_study(
        direction="maximize", pruner=make_pruner(cfg, epochs, steps_per_epoch=spe)
    )
    study.enqueue_trial({"schedule": "constant", "max_lr": 0.1})
    study.enqueue_trial({"schedule": "constant", "max_lr": 0.05})
    study.enqueue_trial(
        {"schedule": "triangular", "max_lr": 0.1, "base_lr": 0.001, "step_size": 3}
    )
    study.optimize(objective, n_trials=3)
    first, constant, cyclical = study.trials
    assert first.state == TrialState.COMPLETE
    assert constant.state == TrialState.PRUNED and constant.user_attrs["epochs_run"] == 1
    # The triangular schedule's first cycle is 2 x 3 epochs: not judged before it ends.
    assert cyclical.state == TrialState.PRUNED and cyclical.user_attrs["epochs_run"] == 6
    # Every epoch run was reported, so the pruner saw each one when it was asked.
    assert sorted(cyclical.intermediate_values) == list(range(1, 7))
    assert sorted(first.intermediate_values) == list(range(1, epochs + 1))


def test_fit_never_asks_the_pruner_after_the_last_epoch() -> None:
    # Asking then would throw a finished run away and save nothing (digits lost 9 trials so).
    recorder = AlwaysPrune(answer=False)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    y = x[:, :3].argmax(dim=1)

    def objective(trial: optuna.Trial) -> float:
        model = torch.nn.Linear(4, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = torch.nn.CrossEntropyLoss()
        return fit(model, opt, loss, (x, y), epochs=3, eval_data=(x, y), trial=trial).final

    study = optuna.create_study(direction="maximize", pruner=recorder)
    study.optimize(objective, n_trials=1)
    assert recorder.asked == [1, 2]
    assert sorted(study.trials[0].intermediate_values) == [1, 2, 3]
