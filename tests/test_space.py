"""Tests for lrsearch/space.py: LRBounds, search_space, suggest_schedule, seed_params."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FixedTrial, TrialState

from lrsearch import KINDS, LRBounds, LrsearchError, Schedule, seed_params, suggest_schedule
from lrsearch.choices import PER_STEP_KINDS
from lrsearch.exceptions import InvalidParameterError
from lrsearch.schedules import USES
from lrsearch.space import (
    ONECYCLE_DIV,
    SEED_PEAK_DECADES,
    patience_range,
    search_space,
    seed_peak,
    seed_setups,
    setup_from_params,
    step_size_range,
    suggest_setup,
    warmup_range,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

BOUNDS = LRBounds(1e-3, 0.3)
SPE = 12  # steps per epoch
EPOCHS = 20


# -- LRBounds --------------------------------------------------------------------------------


def test_bounds_accept_numbers_and_report_decades() -> None:
    b = LRBounds(1e-4, 1)
    assert (b.low, b.high) == (1e-4, 1.0)
    assert isinstance(b.high, float)
    assert b.decades == pytest.approx(4.0)
    assert LRBounds.coerce((1e-4, 1.0)) == b
    assert LRBounds.coerce(b) is b


@pytest.mark.parametrize(
    ("low", "high", "match"),
    [
        (0.1, 0.1, r"low must be below high=0\.1; got low=0\.1"),
        (0.2, 0.1, r"low must be below high=0\.1; got low=0\.2"),
        (0.0, 0.1, r"low must be a positive finite number; got 0\.0"),
        (-1e-3, 0.1, r"low must be a positive finite number; got -0\.001"),
        (1e-3, math.inf, r"high must be finite; got inf"),
        (math.nan, 0.1, r"low must be finite; got nan"),
        (True, 0.1, r"low must be a real number; got True"),
        ("0.1", 1.0, r"low must be a real number; got '0\.1'"),
    ],
)
def test_bounds_reject_bad_values(low: Any, high: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        LRBounds(low, high)
    assert isinstance(info.value, LrsearchError)


@pytest.mark.parametrize("value", ["1e-3,1", (1e-3,), (1e-3, 0.1, 1.0), None])
def test_bounds_coerce_rejects_non_pairs(value: Any) -> None:
    with pytest.raises(ValueError, match="bounds must be an LRBounds or"):
        LRBounds.coerce(value)


# -- search_space ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epochs", "expected"),
    [(1, (1, 1)), (3, (1, 1)), (4, (2, 2)), (6, (2, 3)), (20, (2, 10)), (200, (2, 10))],
)
def test_step_size_range_fits_whole_cycles_in_the_run(
    epochs: int, expected: tuple[int, int]
) -> None:
    assert step_size_range(epochs) == expected


@pytest.mark.parametrize(
    ("epochs", "warmup", "patience"),
    [
        (1, (0, 0), (0, 0)),
        (4, (0, 0), (0, 1)),
        (5, (0, 1), (0, 1)),
        (20, (0, 4), (0, 5)),
        (43, (0, 8), (0, 10)),
        (200, (0, 40), (0, 10)),
    ],
)
def test_warmup_and_patience_ranges_grow_with_the_run(
    epochs: int, warmup: tuple[int, int], patience: tuple[int, int]
) -> None:
    assert warmup_range(epochs) == warmup  # up to a fifth of the run
    assert patience_range(epochs) == patience  # up to a quarter of it, at most 10


def test_search_space_ranges_follow_the_bounds() -> None:
    space = search_space(BOUNDS, epochs=EPOCHS, kinds=KINDS)
    assert list(space) == [
        "schedule",
        "max_lr",
        "base_lr",
        "step_size",
        "decay",
        "cycle_mult",
        "warmup",
        "cooldown",
        "patience",
    ]
    assert space["schedule"] == CategoricalDistribution(KINDS)
    max_lr, base_lr = space["max_lr"], space["base_lr"]
    assert isinstance(max_lr, FloatDistribution) and isinstance(base_lr, FloatDistribution)
    assert max_lr.log and base_lr.log
    assert max_lr.high == BOUNDS.high
    # base_lr <= low < max_lr: the two ranges touch but never overlap.
    assert base_lr.high == BOUNDS.low < max_lr.low
    assert max_lr.low == pytest.approx(BOUNDS.low, rel=1e-15)
    assert base_lr.low == pytest.approx(BOUNDS.low / 10)
    assert space["step_size"] == IntDistribution(2, 10)
    assert space["decay"] == FloatDistribution(0.1, 1.0)
    assert space["cycle_mult"] == IntDistribution(1, 2)
    assert space["warmup"] == IntDistribution(0, 4)  # epochs: a fifth of 20
    assert space["cooldown"] == FloatDistribution(0.05, 0.5)
    assert space["patience"] == IntDistribution(0, 5)  # epochs: a quarter of 20


def test_the_default_kinds_are_those_stepped_once_per_optimizer_step() -> None:
    # An objective's own loop calls scheduler.step() after every optimizer step; plateau wants
    # scheduler.step(metric) once per epoch, so a search offers it only when asked.
    space = search_space(BOUNDS, epochs=EPOCHS)
    assert space["schedule"] == CategoricalDistribution(PER_STEP_KINDS)
    assert set(KINDS) - set(PER_STEP_KINDS) == {"plateau"}
    assert "patience" not in space  # only plateau reads it
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(
        lambda t: suggest_schedule(t, bounds=BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS).max_lr,
        n_trials=60,
    )
    kinds = {t.params["schedule"] for t in study.trials}
    assert kinds == set(PER_STEP_KINDS)  # every one of them, and never plateau


@pytest.mark.parametrize("kind", KINDS)
def test_search_space_holds_only_what_the_kinds_read(kind: str) -> None:
    space = search_space(BOUNDS, epochs=EPOCHS, kinds=[kind], prefix="opt_")
    assert set(space) == {"opt_schedule", "opt_max_lr"} | {"opt_" + n for n in USES[kind]} - {
        "opt_pct_start",
        "opt_final_div_factor",
    }


@pytest.mark.parametrize(
    ("kinds", "match"),
    [
        ([], "kinds must be a non-empty sequence"),
        ("step", "kinds must be a non-empty sequence of schedule kinds; got 'step'"),
        (["step", "linear"], "got unknown 'linear'"),
        (["step", "step"], r"kinds must not repeat a kind; got \['step', 'step'\]"),
    ],
)
def test_bad_kinds_are_rejected(kinds: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        suggest_schedule(
            FixedTrial({}), bounds=BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, kinds=kinds
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps_per_epoch": 0}, "steps_per_epoch must be a positive integer; got 0"),
        ({"epochs": 0}, "epochs must be a positive integer; got 0"),
        ({"epochs": 2.5}, "epochs must be a positive integer; got 2.5"),
        ({"bounds": (0.3, 1e-3)}, "low must be below high"),
        ({"bounds": "wide"}, "bounds must be an LRBounds or"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"bounds": BOUNDS, "steps_per_epoch": SPE, "epochs": EPOCHS}
    args.update(kwargs)
    trial = FixedTrial({"schedule": "constant", "max_lr": 0.01})
    with pytest.raises(ValueError, match=match):
        suggest_schedule(trial, **args)


# -- suggest_schedule with FixedTrial ---------------------------------------------------------

FIXED: dict[str, tuple[dict[str, Any], Schedule]] = {
    "constant": ({"max_lr": 0.02}, Schedule("constant", 0.02)),
    "step": (
        {"max_lr": 0.2, "step_size": 3, "decay": 0.5},
        Schedule("step", 0.2, step_size=3 * SPE, decay=0.5),
    ),
    "exponential": (
        {"max_lr": 0.2, "step_size": 2, "decay": 0.3},
        Schedule("exponential", 0.2, step_size=2 * SPE, decay=0.3),
    ),
    "triangular": (
        {"max_lr": 0.2, "base_lr": 5e-4, "step_size": 4},
        Schedule("triangular", 0.2, base_lr=5e-4, step_size=4 * SPE),
    ),
    "triangular2": (
        {"max_lr": 0.1, "base_lr": 1e-3, "step_size": 5},
        Schedule("triangular2", 0.1, base_lr=1e-3, step_size=5 * SPE),
    ),
    "exp_range": (
        {"max_lr": 0.1, "base_lr": 1e-3, "step_size": 2, "decay": 0.8},
        Schedule("exp_range", 0.1, base_lr=1e-3, step_size=2 * SPE, decay=0.8),
    ),
    "sgdr": (
        {"max_lr": 0.3, "base_lr": 1e-4, "step_size": 2, "decay": 0.9, "cycle_mult": 2},
        Schedule("sgdr", 0.3, base_lr=1e-4, step_size=2 * SPE, decay=0.9, cycle_mult=2),
    ),
    "onecycle": (
        {"max_lr": 0.3, "base_lr": 1e-3},
        Schedule("onecycle", 0.3, base_lr=1e-3),
    ),
    "cosine": (
        {"max_lr": 0.1, "base_lr": 1e-3, "warmup": 2},
        Schedule("cosine", 0.1, base_lr=1e-3, warmup=2 * SPE),
    ),
    "wsd": (
        {"max_lr": 0.2, "base_lr": 1e-4, "warmup": 0, "cooldown": 0.15},
        Schedule("wsd", 0.2, base_lr=1e-4, cooldown=0.15),
    ),
    "inverse_sqrt": (
        {"max_lr": 0.05, "warmup": 4},
        Schedule("inverse_sqrt", 0.05, warmup=4 * SPE),
    ),
    "plateau": (
        {"max_lr": 0.1, "base_lr": 5e-4, "decay": 0.3, "patience": 3},
        Schedule("plateau", 0.1, base_lr=5e-4, decay=0.3, patience=3),
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_fixed_trial_gives_the_expected_schedule(kind: str) -> None:
    values, expected = FIXED[kind]
    # Extra entries (the user's own parameters, other kinds' ones) must not leak in.
    params = {"schedule": kind, **values, "weight_decay": 1e-4}
    if kind == "constant":
        params["base_lr"] = 1e-3
    schedule = suggest_schedule(
        FixedTrial(params), bounds=BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, kinds=KINDS
    )
    assert schedule == expected
    assert schedule.to_params(steps_per_epoch=SPE) == {"schedule": kind, **values}
    # FixedTrial gives the same schedule every time: the suggestion is deterministic.
    again = suggest_schedule(
        FixedTrial(params), bounds=BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, kinds=KINDS
    )
    assert again == schedule


def test_fixed_trial_missing_a_parameter_fails() -> None:
    trial = FixedTrial({"schedule": "step", "max_lr": 0.1, "decay": 0.5})
    with pytest.raises(ValueError, match="step_size"):
        suggest_schedule(trial, bounds=BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS)


def test_prefix_keeps_two_schedules_apart() -> None:
    def objective(trial: optuna.Trial) -> float:
        enc = suggest_schedule(
            trial, bounds=BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, prefix="enc_"
        )
        dec = suggest_schedule(
            trial, bounds=(1e-2, 1.0), steps_per_epoch=SPE, epochs=EPOCHS, prefix="dec_"
        )
        trial.set_user_attr("enc", enc.to_dict())
        trial.set_user_attr("dec", dec.to_dict())
        return enc.max_lr + dec.max_lr

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(objective, n_trials=10)
    for trial in study.trials:
        assert {p.split("_")[0] for p in trial.params} == {"enc", "dec"}
        for prefix in ("enc_", "dec_"):
            rebuilt = Schedule.from_params(trial.params, steps_per_epoch=SPE, prefix=prefix)
            assert rebuilt.to_dict() == trial.user_attrs[prefix[:-1]]


# -- suggest_schedule in real studies ---------------------------------------------------------

N_SAMPLED = 40

SAMPLERS: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
    "tpe": lambda: optuna.samplers.TPESampler(seed=0, multivariate=True, group=True),
    "random": lambda: optuna.samplers.RandomSampler(seed=0),
    "gp": lambda: optuna.samplers.GPSampler(seed=0),
    "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=0),
    "qmc": lambda: optuna.samplers.QMCSampler(seed=0),
    "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=0),
}


def _objective(trial: optuna.Trial) -> float:
    schedule = suggest_schedule(
        trial, bounds=BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, kinds=KINDS
    )
    trial.set_user_attr("schedule", schedule.to_dict())
    lrs = schedule.lrs(SPE * EPOCHS)
    # A smooth target with an optimum inside the space, so model-based samplers have a signal.
    return float(abs(np.log10(lrs.mean()) - np.log10(0.03)))


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_searches_the_space(
    sampler: str, storage: str, tmp_path: Any, recwarn: pytest.WarningsRecorder
) -> None:
    url = None if storage == "memory" else f"sqlite:///{tmp_path / 'study.db'}"
    warnings.simplefilter("ignore")  # samplers warn that conditional params fall back
    study = optuna.create_study(storage=url, study_name="s", sampler=SAMPLERS[sampler]())
    study.optimize(_objective, n_trials=N_SAMPLED)

    if url is not None:  # read back through a fresh connection: what the dashboard sees
        study = optuna.load_study(study_name="s", storage=url)
    trials = study.get_trials()
    assert len(trials) == N_SAMPLED
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.params["schedule"] for t in trials}) >= 3  # more than one kind explored
    space = search_space(BOUNDS, epochs=EPOCHS, kinds=KINDS)
    for t in trials:
        schedule = Schedule.from_params(t.params, steps_per_epoch=SPE, epochs=EPOCHS)
        assert schedule.to_dict() == t.user_attrs["schedule"]
        for name, dist in t.distributions.items():
            assert dist == space[name]  # one distribution per name, across kinds
        assert BOUNDS.low < schedule.max_lr <= BOUNDS.high
        if schedule.base_lr is not None:
            assert BOUNDS.low / 10 * (1 - 1e-12) <= schedule.base_lr <= BOUNDS.low
            assert schedule.base_lr < schedule.max_lr
        lrs = schedule.lrs(SPE * EPOCHS)
        assert np.all(np.isfinite(lrs))
        assert np.all(lrs > 0)
        assert np.all(lrs <= schedule.max_lr * (1 + 1e-12))
        # The newer fields, where the kind has them, lie in their ranges (in epochs).
        assert 0 <= schedule.warmup <= 4 * SPE and schedule.warmup % SPE == 0
        if schedule.cooldown is not None:
            assert 0.05 <= schedule.cooldown <= 0.5
        if schedule.patience is not None:
            assert 0 <= schedule.patience <= 5
    # Across the study, the new kinds were drawn too (the space offers every kind).
    assert len({t.params["schedule"] for t in trials}) >= 6


# -- seed_params -----------------------------------------------------------------------------


def test_seeds_are_the_literature_recipes_and_end_with_whole_cycles() -> None:
    seeds = {p["schedule"]: p for p in seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS)}
    assert list(seeds) == ["triangular2", "onecycle", "sgdr", "cosine", "wsd"]
    clr = Schedule.from_params(seeds["triangular2"], steps_per_epoch=SPE, epochs=EPOCHS)
    assert (clr.base_lr, clr.max_lr) == (BOUNDS.low, BOUNDS.high)
    assert seeds["triangular2"]["step_size"] == 5  # two whole 10-epoch cycles in 20 epochs
    one = Schedule.from_params(seeds["onecycle"], steps_per_epoch=SPE)
    assert one.max_lr == BOUNDS.high
    assert one.base_lr == BOUNDS.low  # high / 25 lies above the base_lr range: clipped
    sgdr = Schedule.from_params(seeds["sgdr"], steps_per_epoch=SPE)
    assert sgdr.max_lr == BOUNDS.high and sgdr.decay == 1.0
    assert seeds["sgdr"]["step_size"] == 10  # two whole cycles
    # Each run ends at a cycle's low point, as the recipes ask.
    for schedule in (clr, sgdr):
        lrs = schedule.lrs(SPE * EPOCHS)
        assert lrs[-1] < lrs.max() / 5


def test_modern_seeds_warm_up_then_cosine_or_wsd_from_the_high_bound() -> None:
    seeds = {p["schedule"]: p for p in seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS)}
    # nanoGPT: warm-up, then a cosine from the peak to a tenth of it. A tenth of 0.3 lies above
    # the base_lr range [1e-4, 1e-3], so the floor is the range's top, the low bound.
    assert seeds["cosine"] == {"schedule": "cosine", "max_lr": 0.3, "base_lr": 1e-3, "warmup": 1}
    # Hägele et al.: warm-up, hold the peak, 20% 1-sqrt cooldown to the lowest floor.
    assert seeds["wsd"] == {
        "schedule": "wsd",
        "max_lr": 0.3,
        "base_lr": pytest.approx(1e-4, rel=1e-12),
        "warmup": 1,
        "cooldown": 0.2,
    }
    total = SPE * EPOCHS
    wsd = Schedule.from_params(seeds["wsd"], steps_per_epoch=SPE, epochs=EPOCHS).lrs(total)
    held = np.flatnonzero(np.isclose(wsd, 0.3, rtol=1e-12, atol=0))
    assert held[0] == SPE - 1 and held[-1] == total - round(0.2 * total)  # warm-up, hold, cool
    cosine = Schedule.from_params(seeds["cosine"], steps_per_epoch=SPE, epochs=EPOCHS)
    lrs = cosine.lrs(total)
    assert lrs[0] == pytest.approx(0.3 / SPE) and lrs[SPE] == pytest.approx(0.3)
    assert 1e-3 < lrs[-1] < 1.05e-3  # the cosine ends one step short of its floor


@pytest.mark.parametrize(
    ("bounds", "floor"),
    [
        (LRBounds(0.02, 0.1), 0.01),  # within a decade: exactly a tenth of the peak
        (LRBounds(1e-3, 1.0), 1e-3),  # a tenth is above low: clipped to low
    ],
)
def test_cosine_seed_ends_at_a_tenth_of_the_peak_within_the_base_range(
    bounds: LRBounds, floor: float
) -> None:
    (seed,) = seed_params(bounds, steps_per_epoch=SPE, epochs=EPOCHS, kinds=["cosine"])
    assert seed["base_lr"] == pytest.approx(floor, rel=1e-12)


@pytest.mark.parametrize(("epochs", "warmup"), [(1, 0), (4, 0), (5, 1), (50, 1)])
def test_modern_seeds_warm_up_one_epoch_where_the_space_allows(epochs: int, warmup: int) -> None:
    seeds = seed_params(BOUNDS, steps_per_epoch=SPE, epochs=epochs, kinds=["cosine", "wsd"])
    assert [s["warmup"] for s in seeds] == [warmup, warmup]
    for seed in seeds:  # and the seed runs over the whole run
        schedule = Schedule.from_params(seed, steps_per_epoch=SPE, epochs=epochs)
        assert len(schedule.lrs(SPE * epochs)) == SPE * epochs


@pytest.mark.parametrize(
    ("bounds", "start"),
    [
        (LRBounds(1e-2, 0.1), 0.1 / 25),  # torch's div_factor of 25 fits the base_lr range
        (LRBounds(1e-4, 1.0), 1e-4),  # 1 / 25 is above low: clipped to low
        (LRBounds(1e-2, 0.02), 1e-3),  # 0.02 / 25 is below low / 10: clipped up
    ],
)
def test_onecycle_seed_starts_25_times_lower_within_the_base_range(
    bounds: LRBounds, start: float
) -> None:
    (seed,) = seed_params(bounds, steps_per_epoch=SPE, epochs=EPOCHS, kinds=["onecycle"])
    assert seed["base_lr"] == pytest.approx(start, rel=1e-12)
    assert seed["max_lr"] == bounds.high


@pytest.mark.parametrize("epochs", [1, 3, 7, 20, 33])
def test_seeds_lie_inside_the_space_and_are_enqueued_as_they_are(epochs: int) -> None:
    seeds = seed_params(BOUNDS, steps_per_epoch=SPE, epochs=epochs)
    space = search_space(BOUNDS, epochs=epochs)
    for seed in seeds:
        for name, value in seed.items():
            assert space[name]._contains(space[name].to_internal_repr(value)), (name, value)

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for seed in seeds:
        study.enqueue_trial(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an out-of-range enqueued value would warn

        def objective(trial: optuna.Trial) -> float:
            s = suggest_schedule(trial, bounds=BOUNDS, steps_per_epoch=SPE, epochs=epochs)
            return s.max_lr

        study.optimize(objective, n_trials=len(seeds))
    assert [t.params for t in study.trials] == seeds


def test_modern_seeds_peak_where_asked_smiths_at_high_all_inside_the_space() -> None:
    inside = {
        s["schedule"]: s
        for s in seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, peak=0.02)
    }
    # Smith defines CLR's and 1cycle's top as the range test's upper bound: they keep it
    # unless 1cycle is given its own peak.
    assert [inside[k]["max_lr"] for k in ("triangular2", "onecycle")] == [BOUNDS.high] * 2
    assert [inside[k]["max_lr"] for k in ("sgdr", "cosine", "wsd")] == [0.02] * 3
    assert inside["cosine"]["base_lr"] == pytest.approx(1e-3)  # a tenth, 2e-3, is above low
    above = seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, peak=5.0)
    assert above == seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS)  # high, as before
    below = seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, peak=1e-9)
    space = search_space(BOUNDS, epochs=EPOCHS)
    for seed in below:  # clipped to the bottom of max_lr's range, every value inside the space
        if seed["schedule"] in ("sgdr", "cosine", "wsd"):
            assert seed["max_lr"] == pytest.approx(BOUNDS.low)
        for name, value in seed.items():
            assert space[name]._contains(space[name].to_internal_repr(value)), (name, value)


def test_the_onecycle_seed_peaks_at_its_own_peak_clipped_into_the_space() -> None:
    plain = seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, peak=0.02)
    own = seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, peak=0.02, onecycle_peak=0.01)
    (onecycle,) = [s for s in own if s["schedule"] == "onecycle"]
    assert onecycle["max_lr"] == 0.01
    start = min(max(0.01 / ONECYCLE_DIV, BOUNDS.low / 10), BOUNDS.low)  # the base_lr range
    assert onecycle["base_lr"] == pytest.approx(start)
    # only 1cycle moved
    assert [s for s in own if s["schedule"] != "onecycle"] == [
        s for s in plain if s["schedule"] != "onecycle"
    ]
    space = search_space(BOUNDS, epochs=EPOCHS)
    for asked, top in [(50.0, BOUNDS.high), (1e-9, BOUNDS.low)]:
        seeds = seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, onecycle_peak=asked)
        (onecycle,) = [s for s in seeds if s["schedule"] == "onecycle"]
        assert onecycle["max_lr"] == pytest.approx(top)
        for name, value in onecycle.items():
            assert space[name]._contains(space[name].to_internal_repr(value)), (name, value)


@pytest.mark.parametrize("peak", [0.0, -1e-3, math.nan, "0.1"])
@pytest.mark.parametrize("which", ["peak", "onecycle_peak"])
def test_a_bad_seed_peak_is_rejected(peak: Any, which: str) -> None:
    with pytest.raises(InvalidParameterError, match=f"{which} must be"):
        seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, **{which: peak})


def test_seed_peak_is_decades_over_the_suggestion_never_above_high() -> None:
    assert seed_peak(1e-3, 0.3, decades=1.0) == pytest.approx(1e-2)
    assert seed_peak(1e-3, 0.3, decades=0.0) == pytest.approx(1e-3)
    assert seed_peak(0.1, 0.3, decades=1.0) == 0.3
    assert seed_peak(1e-3, 0.3) == pytest.approx(1e-3 * 10**SEED_PEAK_DECADES)
    with pytest.raises(InvalidParameterError, match="suggestion must be"):
        seed_peak(math.nan, 0.3)


def test_seed_kinds_filter_and_prefix() -> None:
    seeds = seed_params(
        BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS, kinds=["sgdr", "step"], prefix="p_"
    )
    assert [s["p_schedule"] for s in seeds] == ["sgdr"]
    assert all(k.startswith("p_") for k in seeds[0])


# -- properties ------------------------------------------------------------------------------


def _value_in(dist: Any) -> st.SearchStrategy[Any]:
    if isinstance(dist, CategoricalDistribution):
        return st.sampled_from(dist.choices)
    if isinstance(dist, IntDistribution):
        return st.integers(dist.low, dist.high)
    return st.floats(dist.low, dist.high)


@st.composite
def _sampled_schedules(draw: st.DrawFn) -> tuple[Schedule, int]:
    low = 10 ** draw(st.floats(-6, 0))
    bounds = LRBounds(low, low * 10 ** draw(st.floats(0.05, 3)))
    epochs = draw(st.integers(1, 30))
    spe = draw(st.integers(1, 40))
    space = search_space(bounds, epochs=epochs, kinds=KINDS)
    kind = draw(st.sampled_from(KINDS))
    params = {"schedule": kind}
    params.update({n: draw(_value_in(d)) for n, d in space.items() if n != "schedule"})
    schedule = suggest_schedule(
        FixedTrial(params), bounds=bounds, steps_per_epoch=spe, epochs=epochs, kinds=KINDS
    )
    assert Schedule.from_params(params, steps_per_epoch=spe, epochs=epochs) == schedule
    return schedule, epochs * spe


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sampled_schedules())
def test_every_sampled_schedule_has_finite_positive_lrs_at_most_max_lr(
    drawn: tuple[Schedule, int],
) -> None:
    schedule, total_steps = drawn
    if schedule.kind == "onecycle" and total_steps * schedule.pct_start < 2:
        with pytest.raises(ValueError, match="total_steps must be at least"):
            schedule.lrs(total_steps)
        return
    lrs = schedule.lrs(total_steps)
    assert lrs.shape == (total_steps,)
    assert np.all(np.isfinite(lrs))
    assert np.all(lrs > 0)
    assert np.all(lrs <= schedule.max_lr * (1 + 1e-12))
    assert schedule.base_lr is None or schedule.base_lr < schedule.max_lr


# -- several optimizers: suggest_setup / setup_from_params / seed_setups ----------------------

MULTI = {
    "sgd": LRBounds(1e-3, 1.0),
    "nesterov": LRBounds(2e-3, 0.5),
    "adamw": LRBounds(1e-5, 3e-2),
}


def _setup_objective(trial: optuna.Trial) -> float:
    setup = suggest_setup(trial, bounds=MULTI, steps_per_epoch=SPE, epochs=EPOCHS, kinds=KINDS)
    trial.set_user_attr("setup", [setup.optimizer, setup.schedule.to_dict(), setup.weight_decay])
    target = {"sgd": 0.05, "nesterov": 0.02, "adamw": 1e-3}[setup.optimizer]
    return float(abs(np.log10(setup.schedule.lrs(SPE * EPOCHS).mean()) - np.log10(target)))


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_searches_several_optimizers_each_in_its_own_bounds(
    sampler: str, tmp_path: Any, recwarn: pytest.WarningsRecorder
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    warnings.simplefilter("ignore")
    study = optuna.create_study(storage=url, study_name="s", sampler=SAMPLERS[sampler]())
    for params in seed_setups(MULTI, steps_per_epoch=SPE, epochs=EPOCHS, kinds=KINDS):
        study.enqueue_trial(params)
    study.optimize(_setup_objective, n_trials=N_SAMPLED)
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.params["optimizer"] for t in trials} == set(MULTI)
    spaces = {
        name: search_space(bounds, epochs=EPOCHS, kinds=KINDS, prefix=f"{name}:")
        for name, bounds in MULTI.items()
    }
    for t in trials:
        setup = setup_from_params(
            t.params, optimizers=list(MULTI), steps_per_epoch=SPE, epochs=EPOCHS
        )
        # The params give back what the trial trained.
        assert [setup.optimizer, setup.schedule.to_dict(), setup.weight_decay] == t.user_attrs[
            "setup"
        ]
        bounds = MULTI[setup.optimizer]
        assert bounds.low < setup.schedule.max_lr <= bounds.high
        # Names and distributions are fixed per optimizer; nothing of another optimizer.
        for name, dist in t.distributions.items():
            if name == "optimizer":
                assert dist == optuna.distributions.CategoricalDistribution(list(MULTI))
            elif name == "adamw:weight_decay":
                assert setup.optimizer == "adamw"
                assert dist == optuna.distributions.FloatDistribution(1e-4, 0.5, log=True)
            else:
                assert dist == spaces[setup.optimizer][name]
        assert (setup.weight_decay is not None) == (setup.optimizer == "adamw")


def test_one_optimizer_keeps_the_plain_names() -> None:
    trial = optuna.trial.FixedTrial({"schedule": "constant", "max_lr": 0.01, "weight_decay": 0.2})
    setup = suggest_setup(trial, bounds={"adamw": (1e-4, 0.1)}, steps_per_epoch=SPE, epochs=EPOCHS)
    assert setup.optimizer == "adamw" and setup.weight_decay == 0.2
    plain = suggest_setup(
        optuna.trial.FixedTrial({"schedule": "constant", "max_lr": 0.01}),
        bounds={"task": (1e-4, 0.1)},
        steps_per_epoch=SPE,
        epochs=EPOCHS,
    )
    assert plain.optimizer == "task" and plain.weight_decay is None
    assert plain.describe() == plain.schedule.describe()


def test_a_known_constant_is_the_first_optimizers_last_seed() -> None:
    # The study's CV-chosen constant LR: one more seed, after every other, for the optimizer
    # the constant-LR arm runs (the first), with that optimizer's names and AdamW's decay.
    seeds = seed_setups(
        MULTI, steps_per_epoch=SPE, epochs=EPOCHS, kinds=["cosine", "constant"], constant_lr=0.05
    )
    assert [p["optimizer"] for p in seeds] == ["sgd", "nesterov", "adamw", "sgd"]
    assert seeds[-1] == {"optimizer": "sgd", "sgd:schedule": "constant", "sgd:max_lr": 0.05}
    assert all(p[f"{p['optimizer']}:schedule"] == "cosine" for p in seeds[:-1])
    adamw_first = {"adamw": MULTI["adamw"], "sgd": MULTI["sgd"]}
    last = seed_setups(
        adamw_first, steps_per_epoch=SPE, epochs=EPOCHS, kinds=["constant"], constant_lr=1e9
    )
    assert last == [
        {
            "optimizer": "adamw",
            "adamw:schedule": "constant",
            "adamw:max_lr": MULTI["adamw"].high,  # clipped into the max_lr range
            "adamw:weight_decay": 0.1,
        }
    ]
    # Not searched, or not given: no such seed.
    for kinds, lr in ((["cosine"], 0.05), (["cosine", "constant"], None)):
        plain = seed_setups(MULTI, steps_per_epoch=SPE, epochs=EPOCHS, kinds=kinds, constant_lr=lr)
        assert all(p[f"{p['optimizer']}:schedule"] != "constant" for p in plain)


def test_seed_setups_take_turns_and_decay_adamw_like_nanogpt() -> None:
    seeds = seed_setups(MULTI, steps_per_epoch=SPE, epochs=EPOCHS, kinds=["cosine", "sgdr"])
    assert [p["optimizer"] for p in seeds] == ["sgd", "nesterov", "adamw"] * 2
    for params in seeds:
        name = params["optimizer"]
        assert params[f"{name}:max_lr"] == MULTI[name].high
        assert ("adamw:weight_decay" in params) == (name == "adamw")
    assert seeds[2]["adamw:weight_decay"] == 0.1
    peaked = seed_setups(
        MULTI, steps_per_epoch=SPE, epochs=EPOCHS, kinds=["cosine"], peaks={"adamw": 1e-3}
    )
    assert [p[f"{p['optimizer']}:max_lr"] for p in peaked] == [
        MULTI["sgd"].high,  # no peak given: its high
        MULTI["nesterov"].high,
        1e-3,
    ]
    onecycle = seed_setups(
        MULTI,
        steps_per_epoch=SPE,
        epochs=EPOCHS,
        kinds=["onecycle", "cosine"],
        peaks={"adamw": 1e-3},
        onecycle_peaks={"adamw": 2e-3, "sgd": 0.1},
    )
    tops = [(p["optimizer"], p[f"{p['optimizer']}:schedule"]) for p in onecycle]
    assert dict(zip(tops, [p[f"{p['optimizer']}:max_lr"] for p in onecycle], strict=True)) == {
        ("sgd", "onecycle"): 0.1,
        ("nesterov", "onecycle"): MULTI["nesterov"].high,
        ("adamw", "onecycle"): 2e-3,
        ("sgd", "cosine"): MULTI["sgd"].high,
        ("nesterov", "cosine"): MULTI["nesterov"].high,
        ("adamw", "cosine"): 1e-3,
    }


@pytest.mark.parametrize(
    ("bounds", "match"),
    [({}, "bounds must map"), ({"adam": (1e-3, 1.0)}, "optimizers must be among")],
)
def test_bad_optimizer_bounds_are_rejected(bounds: Any, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        suggest_setup(optuna.trial.FixedTrial({}), bounds=bounds, steps_per_epoch=1, epochs=2)


def test_params_of_another_optimizer_are_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="not one of the study's"):
        setup_from_params(
            {"optimizer": "adamw"}, optimizers=["sgd", "nesterov"], steps_per_epoch=1, epochs=2
        )
