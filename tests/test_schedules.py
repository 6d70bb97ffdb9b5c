"""Tests for lrsearch/schedules.py: Schedule, its kinds, build(), lrs() and conversions.

The expected learning rates come from ``oracles.py``, DESIGN.md's formulas written out in NumPy
independently of torch; a few literal values checked by hand pin the oracle itself down.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from assertions import invalid
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import oracle_lrs

from lrsearch import KINDS, InvalidParameterError, LrsearchError, Schedule

# torch warns (UserWarning) when a scheduler is stepped out of order; none of that may happen.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

Fields = dict[str, Any]

# Several parameter sets per kind, with the run length each is checked over: step_size 1, decay 1
# and < 1, sgdr with cycle_mult 1, 2, 3 and a floor of 0, onecycle at several pct_start (down to
# the shortest run it accepts), and long runs of about 2000 steps.
CASES: dict[str, list[tuple[Fields, int]]] = {
    "constant": [
        ({"max_lr": 0.1}, 40),
        ({"max_lr": 3e-4}, 2000),
    ],
    "step": [
        ({"max_lr": 0.1, "step_size": 2, "decay": 0.5}, 40),
        ({"max_lr": 1.0, "step_size": 1, "decay": 0.9}, 150),
        ({"max_lr": 0.05, "step_size": 30, "decay": 1.0}, 100),
        ({"max_lr": 0.3, "step_size": 300, "decay": 0.3}, 2000),
    ],
    "exponential": [
        ({"max_lr": 1.0, "step_size": 2, "decay": 0.25}, 40),
        ({"max_lr": 0.1, "step_size": 1, "decay": 0.97}, 150),
        ({"max_lr": 0.02, "step_size": 7, "decay": 1.0}, 50),
        ({"max_lr": 0.5, "step_size": 400, "decay": 0.2}, 2000),
    ],
    "triangular": [
        ({"base_lr": 0.01, "max_lr": 0.1, "step_size": 4}, 50),
        ({"base_lr": 1e-3, "max_lr": 0.2, "step_size": 1}, 20),
        ({"base_lr": 1e-4, "max_lr": 1.0, "step_size": 250}, 2000),
    ],
    "triangular2": [
        ({"base_lr": 0.01, "max_lr": 0.1, "step_size": 4}, 50),
        ({"base_lr": 1e-3, "max_lr": 0.2, "step_size": 1}, 20),
        ({"base_lr": 1e-4, "max_lr": 1.0, "step_size": 250}, 2000),
    ],
    "exp_range": [
        ({"base_lr": 0.01, "max_lr": 0.1, "step_size": 4, "decay": 0.5}, 50),
        ({"base_lr": 1e-3, "max_lr": 0.2, "step_size": 1, "decay": 0.8}, 20),
        ({"base_lr": 0.02, "max_lr": 0.3, "step_size": 5, "decay": 1.0}, 40),
        ({"base_lr": 1e-4, "max_lr": 1.0, "step_size": 250, "decay": 0.9}, 2000),
    ],
    "sgdr": [
        ({"base_lr": 0.0, "max_lr": 0.1, "step_size": 10, "decay": 1.0}, 50),
        ({"base_lr": 1e-3, "max_lr": 0.1, "step_size": 5, "decay": 0.5, "cycle_mult": 2}, 200),
        ({"base_lr": 0.0, "max_lr": 0.3, "step_size": 3, "decay": 0.7, "cycle_mult": 3}, 2000),
        ({"base_lr": 1e-3, "max_lr": 0.1, "step_size": 1, "decay": 0.9}, 30),
        ({"base_lr": 0.0, "max_lr": 1.0, "step_size": 1, "decay": 0.8, "cycle_mult": 2}, 40),
    ],
    "onecycle": [
        ({"base_lr": 4e-3, "max_lr": 0.1}, 100),
        ({"base_lr": 1e-3, "max_lr": 0.5, "pct_start": 0.1}, 2000),
        ({"base_lr": 0.01, "max_lr": 0.2, "pct_start": 0.5}, 37),
        ({"base_lr": 0.05, "max_lr": 0.1, "pct_start": 0.9, "final_div_factor": 10.0}, 50),
        ({"base_lr": 0.02, "max_lr": 0.4, "pct_start": 0.25, "final_div_factor": 1.0}, 8),
    ],
}

ALL_CASES = [
    pytest.param(kind, fields, steps, id=f"{kind}-{i}")
    for kind, cases in CASES.items()
    for i, (fields, steps) in enumerate(cases)
]

# One mid-length case per kind, for the tests that drive a real optimizer through many runs.
ONE_PER_KIND: dict[str, tuple[Fields, int]] = {
    "constant": ({"max_lr": 0.1}, 80),
    "step": ({"max_lr": 0.1, "step_size": 7, "decay": 0.5}, 80),
    "exponential": ({"max_lr": 0.1, "step_size": 5, "decay": 0.6}, 80),
    "triangular": ({"base_lr": 0.01, "max_lr": 0.1, "step_size": 6}, 80),
    "triangular2": ({"base_lr": 0.01, "max_lr": 0.1, "step_size": 6}, 80),
    "exp_range": ({"base_lr": 0.01, "max_lr": 0.1, "step_size": 6, "decay": 0.7}, 80),
    "sgdr": ({"base_lr": 0.0, "max_lr": 0.1, "step_size": 5, "decay": 0.8, "cycle_mult": 2}, 80),
    "onecycle": ({"base_lr": 4e-3, "max_lr": 0.1, "pct_start": 0.4}, 80),
}

OPTIMIZERS = ("sgd", "adam")
MOMENTUM = 0.9
BETAS = (0.85, 0.995)  # not Adam's defaults, so a reset to the defaults shows too


def make(kind: str, fields: Fields) -> Schedule:
    return Schedule(kind, **fields)


def oracle(kind: str, fields: Fields, steps: int) -> np.ndarray:
    return oracle_lrs(kind, steps, **fields)


# -- a real (tiny) training run ----------------------------------------------------------------


class Run:
    """A small model, its optimizer and a fixed batch, trained for real one step at a time."""

    def __init__(self, optimizer: str = "sgd", group_lrs: tuple[float, ...] = (0.05,)) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(*(torch.nn.Linear(4, 4) for _ in group_lrs))
        groups = [
            {"params": layer.parameters(), "lr": lr}
            for layer, lr in zip(self.model, group_lrs, strict=True)
        ]
        self.optimizer: torch.optim.Optimizer
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=group_lrs[0], momentum=MOMENTUM)
        else:
            self.optimizer = torch.optim.Adam(groups, lr=group_lrs[0], betas=BETAS)
        generator = torch.Generator().manual_seed(1)
        self.x = torch.randn(16, 4, generator=generator)
        self.y = torch.randn(16, 4, generator=generator)

    def train_step(self) -> None:
        self.optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        loss.backward()
        self.optimizer.step()

    def group_lrs(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def follow(self, scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> np.ndarray:
        """Train ``steps`` steps; row t holds every group's LR in force during step t."""
        seen = []
        for _ in range(steps):
            seen.append(self.group_lrs())
            self.train_step()
            scheduler.step()
        return np.asarray(seen, dtype=np.float64)


# -- closed-form values ------------------------------------------------------------------------


def test_every_kind_is_covered() -> None:
    assert set(CASES) == set(KINDS)
    assert set(ONE_PER_KIND) == set(KINDS)


@pytest.mark.parametrize(("kind", "fields", "steps"), ALL_CASES)
def test_lrs_match_the_formula(kind: str, fields: Fields, steps: int) -> None:
    got = make(kind, fields).lrs(steps)
    assert got.dtype == np.float64
    assert got.shape == (steps,)
    np.testing.assert_allclose(got, oracle(kind, fields, steps), rtol=1e-6, atol=0)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize(("kind", "fields", "steps"), ALL_CASES)
def test_build_reproduces_lrs_in_a_real_run(
    kind: str, fields: Fields, steps: int, optimizer: str
) -> None:
    schedule = make(kind, fields)
    run = Run(optimizer)
    scheduler = schedule.build(run.optimizer, steps)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    seen = run.follow(scheduler, steps)[:, 0]
    np.testing.assert_allclose(seen, schedule.lrs(steps), rtol=1e-12, atol=0)


C4, C8 = math.cos(math.pi / 4), math.cos(math.pi / 8)

# Values worked out by hand from DESIGN.md's table, independently of both oracle and torch.
LITERALS = [
    pytest.param("constant", {"max_lr": 0.1}, [0.1, 0.1, 0.1], id="constant"),
    pytest.param(
        "step",
        {"max_lr": 0.1, "step_size": 2, "decay": 0.5},
        [0.1, 0.1, 0.05, 0.05, 0.025],
        id="step",
    ),
    pytest.param(
        "exponential",
        {"max_lr": 1.0, "step_size": 2, "decay": 0.25},
        [1.0, 0.5, 0.25, 0.125, 0.0625],
        id="exponential",
    ),
    pytest.param(
        "triangular",
        {"base_lr": 0.1, "max_lr": 0.5, "step_size": 2},
        [0.1, 0.3, 0.5, 0.3, 0.1, 0.3, 0.5, 0.3, 0.1],
        id="triangular",
    ),
    pytest.param(
        "triangular2",
        {"base_lr": 0.1, "max_lr": 0.5, "step_size": 2},
        [0.1, 0.3, 0.5, 0.3, 0.1, 0.2, 0.3, 0.2, 0.1, 0.15, 0.2],
        id="triangular2",
    ),
    pytest.param(
        "exp_range",  # amplitude 0.4 * 0.25 ** (t / 2) = 0.4 * 0.5 ** t, full at odd t
        {"base_lr": 0.1, "max_lr": 0.5, "step_size": 1, "decay": 0.25},
        [0.1, 0.3, 0.1, 0.15, 0.1, 0.1125],
        id="exp_range",
    ),
    pytest.param(
        "sgdr",  # cycles of 2, 4, 8 steps peaking at 1, 0.5, 0.25, down towards 0
        {"base_lr": 0.0, "max_lr": 1.0, "step_size": 2, "decay": 0.5, "cycle_mult": 2},
        [1.0, 0.5, 0.5, 0.5 * (1 + C4) / 2, 0.25, 0.5 * (1 - C4) / 2, 0.25, 0.25 * (1 + C8) / 2],
        id="sgdr",
    ),
    pytest.param(
        "sgdr",  # cycles of 3 steps, floor 0.1, peak 1 then 0.5
        {"base_lr": 0.1, "max_lr": 1.0, "step_size": 3, "decay": 0.5},
        [1.0, 0.1 + 0.9 * 0.75, 0.1 + 0.9 * 0.25, 0.5, 0.1 + 0.4 * 0.75, 0.1 + 0.4 * 0.25],
        id="sgdr-floor",
    ),
    pytest.param(
        "onecycle",  # warm-up ends at step 6 * 0.5 - 1 = 2; then 3 steps down to 0.1 / 10
        {"base_lr": 0.1, "max_lr": 1.0, "pct_start": 0.5, "final_div_factor": 10.0},
        [0.1, 0.55, 1.0, 0.7525, 0.2575, 0.01],
        id="onecycle",
    ),
]


@pytest.mark.parametrize(("kind", "fields", "expected"), LITERALS)
def test_hand_computed_values(kind: str, fields: Fields, expected: list[float]) -> None:
    steps = len(expected)
    assert oracle(kind, fields, steps).tolist() == pytest.approx(expected, rel=1e-9)
    assert make(kind, fields).lrs(steps).tolist() == pytest.approx(expected, rel=1e-9)


def test_docstring_example_exactly() -> None:
    expected = [0.1, 0.1, 0.05, 0.05, 0.025]
    assert Schedule("step", max_lr=0.1, step_size=2, decay=0.5).lrs(5).tolist() == expected


@pytest.mark.parametrize(("kind", "fields", "steps"), ALL_CASES)
def test_lrs_stay_within_bounds(kind: str, fields: Fields, steps: int) -> None:
    lrs = make(kind, fields).lrs(steps)
    assert np.all(np.isfinite(lrs))
    if fields.get("base_lr") == 0:
        assert np.all(lrs >= 0)
    else:
        assert np.all(lrs > 0)
    assert np.all(lrs <= fields["max_lr"] * (1 + 1e-12))
    # The peak is reached, except by exp_range, whose amplitude starts shrinking at step 0 (and
    # nearly by onecycle, when its warm-up ends between two steps).
    if kind != "exp_range" or fields["decay"] == 1:
        assert lrs.max() == pytest.approx(fields["max_lr"], rel=1e-2)


@st.composite
def random_schedules(draw: st.DrawFn) -> tuple[str, Fields, int]:
    kind = draw(st.sampled_from(KINDS))
    max_lr = draw(st.floats(1e-5, 10.0))
    fields: Fields = {"max_lr": max_lr}
    if kind in ("triangular", "triangular2", "exp_range", "sgdr", "onecycle"):
        low = 0.0 if kind == "sgdr" else 1e-4
        fields["base_lr"] = max_lr * draw(st.floats(low, 0.99))
    if kind not in ("constant", "onecycle"):
        fields["step_size"] = draw(st.integers(1, 60))
    if kind in ("step", "exponential", "exp_range", "sgdr"):
        fields["decay"] = draw(st.floats(0.3, 1.0))
    if kind == "sgdr":
        fields["cycle_mult"] = draw(st.integers(1, 4))
    min_steps = 1
    if kind == "onecycle":
        fields["pct_start"] = draw(st.floats(0.02, 0.98))
        fields["final_div_factor"] = draw(st.floats(1.0, 1e5))
        min_steps = math.ceil(2 / fields["pct_start"]) + 1
    return kind, fields, draw(st.integers(min_steps, min_steps + 300))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(random_schedules())
def test_random_schedules_match_the_formula(case: tuple[str, Fields, int]) -> None:
    kind, fields, steps = case
    # The atol is for sgdr with a floor of 0 after many decaying restarts: both sides compute
    # the tiny peak from large numbers, so an LR of 1e-11 * max_lr keeps only a few digits.
    np.testing.assert_allclose(
        make(kind, fields).lrs(steps),
        oracle(kind, fields, steps),
        rtol=1e-6,
        atol=1e-12 * fields["max_lr"],
    )


# -- several param groups, rebuilding, momentum ------------------------------------------------

GROUP_LRS = (0.1, 0.01, 0.5)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("kind", KINDS)
def test_param_groups_keep_their_ratios(kind: str, optimizer: str) -> None:
    fields, steps = ONE_PER_KIND[kind]
    schedule = make(kind, fields)
    run = Run(optimizer, GROUP_LRS)
    seen = run.follow(schedule.build(run.optimizer, steps), steps)
    np.testing.assert_allclose(seen[:, 0], schedule.lrs(steps), rtol=1e-12, atol=0)
    ratios = np.asarray(GROUP_LRS) / GROUP_LRS[0]
    got = seen / seen[:, :1]
    np.testing.assert_allclose(got, np.broadcast_to(ratios, got.shape), rtol=1e-9, atol=0)


@pytest.mark.parametrize("second", KINDS)
@pytest.mark.parametrize("first", KINDS)
def test_building_twice_follows_the_second_schedule(first: str, second: str) -> None:
    run = Run("sgd", GROUP_LRS)
    fields, steps = ONE_PER_KIND[first]
    run.follow(make(first, fields).build(run.optimizer, steps), 23)

    fields, steps = ONE_PER_KIND[second]
    schedule = make(second, fields)
    seen = run.follow(schedule.build(run.optimizer, steps), steps)
    np.testing.assert_allclose(seen[:, 0], schedule.lrs(steps), rtol=1e-12, atol=0)
    ratios = np.asarray(GROUP_LRS) / GROUP_LRS[0]
    np.testing.assert_allclose(seen / seen[:, :1], np.broadcast_to(ratios, seen.shape), rtol=1e-9)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("kind", KINDS)
def test_momentum_is_left_alone(kind: str, optimizer: str) -> None:
    fields, steps = ONE_PER_KIND[kind]
    run = Run(optimizer, GROUP_LRS)

    def momenta() -> list[Any]:
        key = "momentum" if optimizer == "sgd" else "betas"
        return [group[key] for group in run.optimizer.param_groups]

    before = momenta()
    assert before == ([MOMENTUM] * 3 if optimizer == "sgd" else [BETAS] * 3)
    scheduler = make(kind, fields).build(run.optimizer, steps)
    assert momenta() == before
    for _ in range(steps):
        run.train_step()
        scheduler.step()
        assert momenta() == before


# -- checkpoints -------------------------------------------------------------------------------


def checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` through torch.save / torch.load (weights_only, torch's default), as on disk."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_resumes_mid_schedule(kind: str, optimizer: str) -> None:
    fields, steps = ONE_PER_KIND[kind]
    schedule = make(kind, fields)
    done = 37

    run_a = Run(optimizer)
    sched_a = schedule.build(run_a.optimizer, steps)
    run_a.follow(sched_a, done)
    saved = checkpoint(
        {"optimizer": run_a.optimizer.state_dict(), "scheduler": sched_a.state_dict()}
    )

    run_b = Run(optimizer, group_lrs=(0.7,))  # a different starting LR, overwritten by the load
    sched_b = schedule.build(run_b.optimizer, steps)
    run_b.model.load_state_dict(run_a.model.state_dict())
    run_b.optimizer.load_state_dict(saved["optimizer"])
    sched_b.load_state_dict(saved["scheduler"])

    rest = steps - done
    seen_a = run_a.follow(sched_a, rest)[:, 0]
    seen_b = run_b.follow(sched_b, rest)[:, 0]
    np.testing.assert_array_equal(seen_b, seen_a)
    np.testing.assert_allclose(seen_b, schedule.lrs(steps)[done:], rtol=1e-12, atol=0)
    for p_a, p_b in zip(run_a.model.parameters(), run_b.model.parameters(), strict=True):
        torch.testing.assert_close(p_b, p_a)  # same LRs, same optimizer state: same training


# -- validation --------------------------------------------------------------------------------


def test_invalid_parameter_error_is_both_kinds_of_error() -> None:
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, LrsearchError)


@pytest.mark.parametrize("kind", ["cosine", "Step", "", None])
def test_unknown_kind_lists_the_valid_ones(kind: Any) -> None:
    with invalid("kind", kind) as info:
        Schedule(kind, max_lr=0.1)
    for name in KINDS:
        assert name in str(info.value)


NAN, INF = float("nan"), float("inf")

# Valid fields per kind, for BAD_FIELDS to spoil one at a time.
VALID: dict[str, Fields] = {
    "constant": {"max_lr": 0.1},
    "step": {"max_lr": 0.1, "step_size": 2, "decay": 0.5},
    "exponential": {"max_lr": 0.1, "step_size": 2, "decay": 0.5},
    "triangular": {"max_lr": 0.1, "base_lr": 0.01, "step_size": 4},
    "triangular2": {"max_lr": 0.1, "base_lr": 0.01, "step_size": 4},
    "exp_range": {"max_lr": 0.1, "base_lr": 0.01, "step_size": 4, "decay": 0.9},
    "sgdr": {"max_lr": 0.1, "base_lr": 0.0, "step_size": 4, "decay": 0.9, "cycle_mult": 2},
    "onecycle": {"max_lr": 0.1, "base_lr": 0.01},
}


def spoil(kind: str, field: str, values: tuple[object, ...]) -> list[Any]:
    """Cases of kind's valid fields with ``field`` set to each bad value in turn."""
    return [
        pytest.param(kind, VALID[kind] | {field: v}, field, v, id=f"{kind}-{field}={v!r}")
        for v in values
    ]


# (kind, fields, the field the message must name, the bad value it must show)
BAD_FIELDS = [
    # learning rates
    *spoil("constant", "max_lr", (0, -0.1, NAN, INF, -INF, "0.1", True, None)),
    *spoil("onecycle", "max_lr", (NAN, 0.01)),  # 0.01 is not above base_lr
    *spoil("triangular", "base_lr", (0.1, 0.2, 0, 0.0, -0.01, NAN, INF)),
    *spoil("triangular2", "base_lr", (0.1, 0, -0.01)),
    *spoil("exp_range", "base_lr", (0.1, 0, -0.01)),
    *spoil("onecycle", "base_lr", (0.1, 0.3, 0, NAN)),
    *spoil("sgdr", "base_lr", (0.1, -1e-9, NAN, INF)),
    # step_size
    *spoil("step", "step_size", (0, -1, 1.5, 2.0, True, NAN)),
    *spoil("exponential", "step_size", (0, -1, 1.5, True)),
    *spoil("triangular", "step_size", (0, -1, 1.5, True)),
    *spoil("exp_range", "step_size", (0, 2.5)),
    *spoil("sgdr", "step_size", (0, 2.5)),
    # decay
    *spoil("step", "decay", (0, 0.0, -0.1, 1.5, 1.0000001, NAN, INF)),
    *spoil("exponential", "decay", (0, -0.1, 1.5, NAN)),
    *spoil("exp_range", "decay", (0, 1.5, NAN)),
    *spoil("sgdr", "decay", (0, -0.1, 2.0)),
    # cycle_mult
    *spoil("sgdr", "cycle_mult", (0, -2, 1.5, True)),
    # onecycle's own
    *spoil("onecycle", "pct_start", (0, 0.0, 1, 1.0, -0.2, NAN)),
    *spoil("onecycle", "final_div_factor", (0.5, 0, -10.0, INF)),
    # fields the kind does not use
    *spoil("constant", "base_lr", (0.01,)),
    *spoil("constant", "step_size", (3,)),
    *spoil("constant", "decay", (0.5,)),
    *spoil("step", "base_lr", (0.01,)),
    *spoil("exponential", "cycle_mult", (3,)),
    *spoil("triangular", "cycle_mult", (2,)),
    *spoil("triangular", "decay", (0.5,)),
    *spoil("triangular2", "decay", (0.5,)),
    *spoil("exp_range", "final_div_factor", (10.0,)),
    *spoil("sgdr", "pct_start", (0.5,)),
    *spoil("onecycle", "step_size", (10,)),
    *spoil("onecycle", "decay", (0.9,)),
    *spoil("onecycle", "cycle_mult", (2,)),
]


@pytest.mark.parametrize(("kind", "fields", "field", "value"), BAD_FIELDS)
def test_bad_fields_are_rejected(kind: str, fields: Fields, field: str, value: object) -> None:
    with invalid(field, value):
        Schedule(kind, **fields)


# (kind, fields without the one the kind needs, the missing field)
MISSING = [
    ("step", {"max_lr": 0.1, "step_size": 2}, "decay"),
    ("step", {"max_lr": 0.1, "decay": 0.5}, "step_size"),
    ("exponential", {"max_lr": 0.1, "step_size": 2}, "decay"),
    ("exponential", {"max_lr": 0.1, "decay": 0.5}, "step_size"),
    ("triangular", {"max_lr": 0.1, "step_size": 2}, "base_lr"),
    ("triangular", {"max_lr": 0.1, "base_lr": 0.01}, "step_size"),
    ("triangular2", {"max_lr": 0.1, "step_size": 2}, "base_lr"),
    ("triangular2", {"max_lr": 0.1, "base_lr": 0.01}, "step_size"),
    ("exp_range", {"max_lr": 0.1, "base_lr": 0.01, "step_size": 2}, "decay"),
    ("exp_range", {"max_lr": 0.1, "base_lr": 0.01, "decay": 0.9}, "step_size"),
    ("exp_range", {"max_lr": 0.1, "step_size": 2, "decay": 0.9}, "base_lr"),
    ("sgdr", {"max_lr": 0.1, "step_size": 2, "decay": 0.9}, "base_lr"),
    ("sgdr", {"max_lr": 0.1, "base_lr": 0.0, "decay": 0.9}, "step_size"),
    ("sgdr", {"max_lr": 0.1, "base_lr": 0.0, "step_size": 2}, "decay"),
    ("onecycle", {"max_lr": 0.1}, "base_lr"),
]


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [pytest.param(*case, id=f"{case[0]}-{case[2]}") for case in MISSING],
)
def test_missing_fields_are_named(kind: str, fields: Fields, field: str) -> None:
    with invalid(field, kind):
        Schedule(kind, **fields)


def test_max_lr_is_required() -> None:
    with pytest.raises(TypeError, match="max_lr"):
        Schedule("constant")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("sgdr", {"max_lr": 0.1, "base_lr": 0, "step_size": 2, "decay": 1.0}),
        ("sgdr", {"max_lr": 0.1, "base_lr": 0.0, "step_size": 2, "decay": 1e-3}),
        ("step", {"max_lr": 0.1, "step_size": np.int64(2), "decay": 1}),
        ("onecycle", {"max_lr": 1, "base_lr": 1e-9, "pct_start": 1e-3, "final_div_factor": 1}),
        ("triangular", {"max_lr": np.float64(0.1), "base_lr": 0.1 - 1e-12, "step_size": 1}),
    ],
)
def test_edge_values_are_accepted(kind: str, fields: Fields) -> None:
    Schedule(kind, **fields)  # no error


def test_numbers_are_normalised_so_equal_schedules_compare_equal() -> None:
    a = Schedule("sgdr", max_lr=1, base_lr=0, step_size=np.int64(4), decay=1)
    b = Schedule("sgdr", max_lr=1.0, base_lr=0.0, step_size=4, decay=1.0)
    assert a == b
    assert hash(a) == hash(b)
    assert type(a.max_lr) is float and type(a.base_lr) is float and type(a.decay) is float
    assert type(a.step_size) is int


def test_schedule_is_frozen() -> None:
    schedule = Schedule("constant", 0.1)
    with pytest.raises(AttributeError):
        schedule.max_lr = 0.2  # type: ignore[misc]


@pytest.mark.parametrize("steps", [0, -3, 2.5, 10.0, True, None])
@pytest.mark.parametrize("kind", KINDS)
def test_total_steps_must_be_a_positive_integer(kind: str, steps: Any) -> None:
    fields, _ = ONE_PER_KIND[kind]
    schedule = make(kind, fields)
    with invalid("total_steps", steps):
        schedule.lrs(steps)
    run = Run()
    with invalid("total_steps", steps):
        schedule.build(run.optimizer, steps)


@pytest.mark.parametrize(("pct_start", "shortest"), [(0.3, 7), (0.5, 4), (0.25, 8), (0.1, 20)])
def test_onecycle_needs_two_warmup_steps(pct_start: float, shortest: int) -> None:
    schedule = Schedule("onecycle", 0.1, base_lr=0.01, pct_start=pct_start)
    np.testing.assert_allclose(
        schedule.lrs(shortest),
        oracle_lrs("onecycle", shortest, max_lr=0.1, base_lr=0.01, pct_start=pct_start),
        rtol=1e-6,
    )
    with invalid("total_steps", shortest - 1):
        schedule.lrs(shortest - 1)
    with invalid("total_steps", shortest - 1):
        schedule.build(Run().optimizer, shortest - 1)


def test_build_needs_a_positive_first_group_lr() -> None:
    schedule = Schedule("constant", 0.1)
    run = Run(group_lrs=(0.0, 0.1))
    with invalid("lr", 0.0):
        schedule.build(run.optimizer, 10)


def test_build_needs_an_optimizer() -> None:
    with pytest.raises(TypeError, match="optimizer"):
        Schedule("constant", 0.1).build(torch.nn.Linear(2, 2), 10)  # type: ignore[arg-type]


# -- conversions -------------------------------------------------------------------------------

SPE = 10  # steps per epoch

# One schedule per kind whose step_size is a whole number of epochs (3 of SPE steps). Fields, not
# Schedules, so that a broken constructor fails these tests rather than the module's import.
IN_EPOCHS: dict[str, Fields] = {
    "constant": {"max_lr": 0.1},
    "step": {"max_lr": 0.1, "step_size": 3 * SPE, "decay": 0.5},
    "exponential": {"max_lr": 0.1, "step_size": 3 * SPE, "decay": 0.9},
    "triangular": {"max_lr": 0.1, "base_lr": 0.01, "step_size": 3 * SPE},
    "triangular2": {"max_lr": 0.1, "base_lr": 0.01, "step_size": 3 * SPE},
    "exp_range": {"max_lr": 0.1, "base_lr": 0.01, "step_size": 3 * SPE, "decay": 0.9},
    "sgdr": {"max_lr": 0.1, "base_lr": 0.0, "step_size": 3 * SPE, "decay": 0.7, "cycle_mult": 2},
    "onecycle": {"max_lr": 0.1, "base_lr": 0.004},
}


def in_epochs(kind: str) -> Schedule:
    return make(kind, IN_EPOCHS[kind])


# What each kind's params hold, beyond "schedule" and "max_lr".
PARAM_KEYS = {
    "constant": set(),
    "step": {"step_size", "decay"},
    "exponential": {"step_size", "decay"},
    "triangular": {"base_lr", "step_size"},
    "triangular2": {"base_lr", "step_size"},
    "exp_range": {"base_lr", "step_size", "decay"},
    "sgdr": {"base_lr", "step_size", "decay", "cycle_mult"},
    "onecycle": {"base_lr"},
}


def test_conversion_fixtures_cover_every_kind() -> None:
    assert set(IN_EPOCHS) == set(KINDS)
    assert set(PARAM_KEYS) == set(KINDS)


@pytest.mark.parametrize(("kind", "fields", "steps"), ALL_CASES)
def test_dict_round_trip_through_json(kind: str, fields: Fields, steps: int) -> None:
    schedule = make(kind, fields)
    data = schedule.to_dict()
    assert data["kind"] == kind
    assert Schedule.from_dict(json.loads(json.dumps(data, allow_nan=False))) == schedule


def test_from_dict_rejects_unknown_fields() -> None:
    data = Schedule("constant", 0.1).to_dict() | {"warmup": 5}
    with invalid("warmup"):
        Schedule.from_dict(data)


@pytest.mark.parametrize("missing", ["kind", "max_lr"])
def test_from_dict_names_a_missing_field(missing: str) -> None:
    data = Schedule("constant", 0.1).to_dict()
    del data[missing]
    with invalid(missing):
        Schedule.from_dict(data)


def test_from_dict_validates_values() -> None:
    data = Schedule("step", 0.1, step_size=2, decay=0.5).to_dict() | {"decay": 2.0}
    with invalid("decay", 2.0):
        Schedule.from_dict(data)


@pytest.mark.parametrize("prefix", ["", "lr/"])
@pytest.mark.parametrize("kind", KINDS)
def test_params_round_trip(kind: str, prefix: str) -> None:
    schedule = in_epochs(kind)
    params = schedule.to_params(steps_per_epoch=SPE, prefix=prefix)
    assert set(params) == {prefix + k for k in {"schedule", "max_lr"} | PARAM_KEYS[kind]}
    assert params[prefix + "schedule"] == kind
    assert params[prefix + "max_lr"] == schedule.max_lr
    if "step_size" in PARAM_KEYS[kind]:
        assert params[prefix + "step_size"] == 3  # in epochs
    back = Schedule.from_params(params, steps_per_epoch=SPE, epochs=3, prefix=prefix)
    assert back == schedule


@pytest.mark.parametrize("kind", KINDS)
def test_from_params_ignores_the_rest_of_the_objective(kind: str) -> None:
    schedule = in_epochs(kind)
    params = schedule.to_params(steps_per_epoch=SPE, prefix="opt_")
    # the user's own parameters, unprefixed lookalikes of ours, and other kinds' fields
    noise = {
        "weight_decay": 1e-4,
        "schedule": "constant",
        "max_lr": 123.0,
        "step_size": 99,
        "opt_pct_start": 0.9,
        "opt_final_div_factor": 5.0,
    }
    for name, value in {"base_lr": 1e-5, "decay": 0.5, "cycle_mult": 4, "step_size": 1}.items():
        noise.setdefault("opt_" + name, value)
    params = noise | params
    assert Schedule.from_params(params, steps_per_epoch=SPE, prefix="opt_") == schedule


@pytest.mark.parametrize("spe", [1, 7, 32])
def test_from_params_converts_step_size_from_epochs(spe: int) -> None:
    params = {"schedule": "triangular", "max_lr": 0.1, "base_lr": 0.01, "step_size": 4}
    schedule = Schedule.from_params(params, steps_per_epoch=spe, epochs=4)
    assert schedule == Schedule("triangular", 0.1, base_lr=0.01, step_size=4 * spe)
    assert schedule.to_params(steps_per_epoch=spe) == params


def test_from_params_refuses_a_step_size_longer_than_the_run() -> None:
    params = {"schedule": "step", "max_lr": 0.1, "step_size": 5, "decay": 0.5}
    with invalid("step_size", 5):
        Schedule.from_params(params, steps_per_epoch=SPE, epochs=4)
    with invalid("p_step_size", 5):
        Schedule.from_params(
            {"p_" + k: v for k, v in params.items()}, steps_per_epoch=SPE, epochs=4, prefix="p_"
        )
    # no epochs given: nothing to compare with
    assert Schedule.from_params(params, steps_per_epoch=SPE).step_size == 5 * SPE


@pytest.mark.parametrize("missing", ["schedule", "max_lr"])
def test_from_params_needs_schedule_and_max_lr(missing: str) -> None:
    params = {"schedule": "step", "max_lr": 0.1, "step_size": 2, "decay": 0.5}
    del params[missing]
    with invalid(missing):
        Schedule.from_params(params, steps_per_epoch=SPE)
    prefixed = {"x_" + k: v for k, v in params.items()} | {missing: "not this one"}
    with invalid("x_" + missing):
        Schedule.from_params(prefixed, steps_per_epoch=SPE, prefix="x_")


def test_from_params_errors() -> None:
    with invalid("schedule", "cosine"):
        Schedule.from_params({"schedule": "cosine", "max_lr": 0.1}, steps_per_epoch=SPE)
    with invalid("decay", "step"):  # a required field missing from params
        Schedule.from_params(
            {"schedule": "step", "max_lr": 0.1, "step_size": 2}, steps_per_epoch=SPE
        )
    with invalid("step_size", 1.5):  # epochs are whole
        Schedule.from_params(
            {"schedule": "step", "max_lr": 0.1, "step_size": 1.5, "decay": 0.5},
            steps_per_epoch=SPE,
        )
    with invalid("steps_per_epoch", 0):
        Schedule.from_params({"schedule": "constant", "max_lr": 0.1}, steps_per_epoch=0)
    with invalid("epochs", 0):  # checked even for kinds without a step_size
        Schedule.from_params({"schedule": "constant", "max_lr": 0.1}, steps_per_epoch=1, epochs=0)
    with invalid("max_lr", -1.0):
        Schedule.from_params({"schedule": "constant", "max_lr": -1.0}, steps_per_epoch=SPE)


@pytest.mark.parametrize("kind", ["step", "exponential", "triangular", "exp_range", "sgdr"])
def test_to_params_needs_whole_epochs(kind: str) -> None:
    fields = dict(ONE_PER_KIND[kind][0])
    fields["step_size"] = 25
    with invalid("step_size", 25):
        make(kind, fields).to_params(steps_per_epoch=SPE)
    assert make(kind, fields).to_params(steps_per_epoch=5)["step_size"] == 5


@pytest.mark.parametrize(("field", "value"), [("pct_start", 0.5), ("final_div_factor", 100.0)])
def test_to_params_refuses_onecycle_fields_outside_the_search_space(
    field: str, value: float
) -> None:
    schedule = Schedule("onecycle", 0.1, base_lr=0.01, **{field: value})
    with invalid(field, value):
        schedule.to_params(steps_per_epoch=SPE)


# -- for people --------------------------------------------------------------------------------


@pytest.mark.parametrize("spe", [None, SPE])
@pytest.mark.parametrize("kind", KINDS)
def test_figure_plots_lrs_on_a_log_axis(kind: str, spe: int | None) -> None:
    schedule = in_epochs(kind)
    steps = 95
    fig = schedule.figure(steps, steps_per_epoch=spe)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 1
    trace = fig.data[0]
    np.testing.assert_array_equal(np.asarray(trace.y, dtype=np.float64), schedule.lrs(steps))
    x = np.arange(steps, dtype=np.float64) / (spe or 1)
    np.testing.assert_allclose(np.asarray(trace.x, dtype=np.float64), x, rtol=1e-12)
    assert fig.layout.yaxis.type == "log"
    assert ("epoch" if spe else "step") in fig.layout.xaxis.title.text


@pytest.mark.parametrize(("kind", "fields", "steps"), ALL_CASES)
def test_describe_names_the_kind(kind: str, fields: Fields, steps: int) -> None:
    text = make(kind, fields).describe()
    assert isinstance(text, str)
    assert text.strip()
    assert kind in text
    assert make(kind, fields).describe(steps_per_epoch=7).strip()


@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"constant", "onecycle"}))
def test_describe_gives_periods_in_epochs(kind: str) -> None:
    schedule = in_epochs(kind)
    assert "3 epochs" in schedule.describe(steps_per_epoch=SPE)
    assert "30 steps" in schedule.describe()
    assert "30 steps" in schedule.describe(steps_per_epoch=7)  # not a whole number of epochs


def test_sgdr_peak_decays_to_the_floor_and_rests_there() -> None:
    # max_lr * decay**k falls under base_lr from the second restart on: the peak stays at
    # base_lr, so the learning rate never leaves [base_lr, max_lr].
    fields = {"base_lr": 0.5, "max_lr": 1.0, "step_size": 4, "decay": 0.25}
    lrs = make("sgdr", fields).lrs(12)
    first = [0.5 + 0.25 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    assert lrs[:4] == pytest.approx(first, rel=1e-12)
    assert lrs[4:] == pytest.approx([0.5] * 8, rel=1e-12)
    assert lrs == pytest.approx(oracle("sgdr", fields, 12), rel=1e-12)
