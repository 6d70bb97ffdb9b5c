"""Tests for lrsearch/schedules.py: Schedule, its kinds, build(), lrs() and conversions.

The expected learning rates come from ``oracles.py``, the docs' formulas written out in NumPy
independently of torch; a few literal values checked by hand pin the oracle itself down.

``plateau`` follows a metric: wherever a test runs every kind, ``plateau`` is stepped once per
epoch of ``PLATEAU_SPE`` steps with ``PLATEAU_METRICS`` (a loss that improves, then stalls for a
while, again and again), and its expected LRs are that replay.
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
from lrsearch.choices import PER_EPOCH_KINDS, PER_STEP_KINDS

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
    "cosine": [
        ({"base_lr": 0.0, "max_lr": 0.1}, 50),
        ({"base_lr": 1e-3, "max_lr": 0.1, "warmup": 10}, 100),
        ({"base_lr": 0.01, "max_lr": 0.1, "warmup": 1}, 30),
        ({"base_lr": 0.05, "max_lr": 0.5, "warmup": 99}, 100),  # one cosine step
        ({"base_lr": 0.0, "max_lr": 1.0, "warmup": 200}, 2000),
        ({"base_lr": 3e-5, "max_lr": 3e-4, "warmup": 200}, 6000),  # nanoGPT's shape
    ],
    "wsd": [
        ({"base_lr": 0.0, "max_lr": 0.1, "cooldown": 0.2}, 50),
        ({"base_lr": 1e-3, "max_lr": 0.1, "warmup": 5, "cooldown": 0.1}, 100),
        ({"base_lr": 0.01, "max_lr": 0.2, "warmup": 3, "cooldown": 0.925}, 40),  # no stable phase
        ({"base_lr": 0.0, "max_lr": 0.3, "warmup": 1, "cooldown": 0.01}, 30),  # D = max(1, 0)
        ({"base_lr": 0.0, "max_lr": 0.3, "warmup": 2, "cooldown": 0.25}, 10),  # round(2.5) = 2
        ({"base_lr": 1e-4, "max_lr": 1.0, "warmup": 100, "cooldown": 0.5}, 2000),
    ],
    "inverse_sqrt": [
        ({"max_lr": 0.1}, 50),
        ({"max_lr": 0.1, "warmup": 1}, 20),
        ({"max_lr": 1.0, "warmup": 10}, 200),
        ({"max_lr": 0.3, "warmup": 60}, 40),  # the run ends inside the warm-up
        ({"max_lr": 1e-3, "warmup": 400}, 2000),
    ],
    "plateau": [
        ({"base_lr": 0.0, "max_lr": 0.1, "decay": 0.5, "patience": 0}, 60),
        ({"base_lr": 1e-3, "max_lr": 0.1, "decay": 0.1, "patience": 2}, 200),
        ({"base_lr": 0.02, "max_lr": 0.1, "decay": 0.7, "patience": 1}, 400),  # hits the floor
        ({"base_lr": 1e-3, "max_lr": 0.1, "decay": 1.0, "patience": 0}, 80),  # never lowered
        ({"base_lr": 1e-5, "max_lr": 0.5, "decay": 0.9, "patience": 3}, 2000),
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
    "cosine": ({"base_lr": 0.01, "max_lr": 0.1, "warmup": 12}, 80),
    "wsd": ({"base_lr": 0.01, "max_lr": 0.1, "warmup": 12, "cooldown": 0.3}, 80),
    "inverse_sqrt": ({"max_lr": 0.1, "warmup": 12}, 80),
    "plateau": ({"base_lr": 0.01, "max_lr": 0.1, "decay": 0.5, "patience": 1}, 80),
}

# plateau's metric: a loss whose level drops every 6 epochs and stays flat in between, so the
# LR is lowered inside every flat stretch (patience 0-3) and not when the loss improves.
PLATEAU_SPE = 4
PLATEAU_METRICS = [1.0 / (1 + e // 6) for e in range(1000)]

OPTIMIZERS = ("sgd", "adam", "adamw")
MOMENTUM = 0.9
BETAS = (0.85, 0.995)  # not Adam's defaults, so a reset to the defaults shows too


def make(kind: str, fields: Fields) -> Schedule:
    return Schedule(kind, **fields)


def oracle(kind: str, fields: Fields, steps: int) -> np.ndarray:
    if kind in PER_EPOCH_KINDS:
        replay = {"metrics": PLATEAU_METRICS, "steps_per_epoch": PLATEAU_SPE}
        return oracle_lrs(kind, steps, **fields, **replay)
    return oracle_lrs(kind, steps, **fields)


def lrs_of(schedule: Schedule, steps: int) -> np.ndarray:
    """``schedule.lrs(steps)``; for ``plateau``, replayed over ``PLATEAU_METRICS``."""
    if schedule.kind in PER_EPOCH_KINDS:
        return schedule.lrs(steps, metrics=PLATEAU_METRICS, steps_per_epoch=PLATEAU_SPE)
    return schedule.lrs(steps)


def advance(scheduler: torch.optim.lr_scheduler.LRScheduler, step: int) -> None:
    """What a training loop does after optimizer step ``step`` (from 0): ``scheduler.step()``,
    or, for ``plateau``, at the end of each epoch of ``PLATEAU_SPE`` steps,
    ``scheduler.step(that epoch's metric)``."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step()
    elif (step + 1) % PLATEAU_SPE == 0:
        scheduler.step(PLATEAU_METRICS[(step + 1) // PLATEAU_SPE - 1])


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
        elif optimizer == "adam":
            self.optimizer = torch.optim.Adam(groups, lr=group_lrs[0], betas=BETAS)
        else:
            self.optimizer = torch.optim.AdamW(
                groups, lr=group_lrs[0], betas=BETAS, weight_decay=0.05
            )
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

    def follow(
        self, scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int, start: int = 0
    ) -> np.ndarray:
        """Train steps ``start .. start + steps - 1`` of a run; row t holds every group's LR in
        force during the t-th of them."""
        seen = []
        for step in range(start, start + steps):
            seen.append(self.group_lrs())
            self.train_step()
            advance(scheduler, step)
        return np.asarray(seen, dtype=np.float64)


# -- closed-form values ------------------------------------------------------------------------


def test_every_kind_is_covered() -> None:
    assert set(CASES) == set(KINDS)
    assert set(ONE_PER_KIND) == set(KINDS)


@pytest.mark.parametrize(("kind", "fields", "steps"), ALL_CASES)
def test_lrs_match_the_formula(kind: str, fields: Fields, steps: int) -> None:
    got = lrs_of(make(kind, fields), steps)
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
    np.testing.assert_allclose(seen, lrs_of(schedule, steps), rtol=1e-12, atol=0)


C4, C8 = math.cos(math.pi / 4), math.cos(math.pi / 8)

# Values worked out by hand from docs/schedules.md's table, independently of oracle and torch.
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
    pytest.param(
        "cosine",  # warm-up 1/2, 2/2; then a cosine over the 4 steps left, down towards 0
        {"base_lr": 0.0, "max_lr": 1.0, "warmup": 2},
        [0.5, 1.0, 1.0, (1 + C4) / 2, 0.5, (1 - C4) / 2],
        id="cosine",
    ),
    pytest.param(
        "cosine",  # no warm-up: from the peak at step 0; floor 0.2
        {"base_lr": 0.2, "max_lr": 1.0},
        [1.0, 0.2 + 0.8 * (1 + C4) / 2, 0.6, 0.2 + 0.8 * (1 - C4) / 2],
        id="cosine-floor",
    ),
    pytest.param(
        "wsd",  # T = 8, D = 4: warm-up 2 steps, stable to step 3, then 1 - sqrt(k/4) to 0.2
        {"base_lr": 0.2, "max_lr": 1.0, "warmup": 2, "cooldown": 0.5},
        [
            0.5,
            1.0,
            1.0,
            1.0,
            1.0,
            0.6,
            0.2 + 0.8 * (1 - math.sqrt(0.5)),
            0.2 + 0.8 * (1 - math.sqrt(0.75)),
        ],
        id="wsd",
    ),
    pytest.param(
        "inverse_sqrt",  # warm-up 1/4 .. 4/4, then sqrt(4 / (t+1))
        {"max_lr": 1.0, "warmup": 4},
        [0.25, 0.5, 0.75, 1.0, math.sqrt(0.8), math.sqrt(4 / 6), math.sqrt(4 / 7), math.sqrt(0.5)],
        id="inverse_sqrt",
    ),
    pytest.param(
        "inverse_sqrt",  # no warm-up: max_lr / sqrt(t+1)
        {"max_lr": 0.6},
        [0.6, 0.6 / math.sqrt(2), 0.6 / math.sqrt(3), 0.3],
        id="inverse_sqrt-no-warmup",
    ),
    pytest.param(
        "plateau",  # PLATEAU_METRICS is flat (1.0) for 6 epochs of 4 steps: epoch 0 sets the
        # best, every later flat epoch halves the LR (patience 0) until the floor 0.1
        {"base_lr": 0.1, "max_lr": 0.8, "decay": 0.5, "patience": 0},
        [0.8] * 8 + [0.4] * 4 + [0.2] * 4 + [0.1] * 4,
        id="plateau",
    ),
]


@pytest.mark.parametrize(("kind", "fields", "expected"), LITERALS)
def test_hand_computed_values(kind: str, fields: Fields, expected: list[float]) -> None:
    steps = len(expected)
    assert oracle(kind, fields, steps).tolist() == pytest.approx(expected, rel=1e-9)
    assert lrs_of(make(kind, fields), steps).tolist() == pytest.approx(expected, rel=1e-9)


def test_docstring_example_exactly() -> None:
    expected = [0.1, 0.1, 0.05, 0.05, 0.025]
    assert Schedule("step", max_lr=0.1, step_size=2, decay=0.5).lrs(5).tolist() == expected


@pytest.mark.parametrize(("kind", "fields", "steps"), ALL_CASES)
def test_lrs_stay_within_bounds(kind: str, fields: Fields, steps: int) -> None:
    lrs = lrs_of(make(kind, fields), steps)
    assert np.all(np.isfinite(lrs))
    if fields.get("base_lr") == 0:
        assert np.all(lrs >= 0)
    else:
        assert np.all(lrs > 0)
    assert np.all(lrs <= fields["max_lr"] * (1 + 1e-12))
    # The peak is reached, except by exp_range, whose amplitude starts shrinking at step 0 (and
    # nearly by onecycle, when its warm-up ends between two steps), and by a run that ends
    # inside its warm-up.
    warmup = fields.get("warmup", 0)
    if (kind != "exp_range" or fields["decay"] == 1) and warmup <= steps:
        assert lrs.max() == pytest.approx(fields["max_lr"], rel=1e-2)
    # A floor is a floor: the kinds that decay towards base_lr never go under it once warm.
    if kind in ("sgdr", "cosine", "wsd", "plateau"):
        assert np.all(lrs[warmup:] >= fields["base_lr"] * (1 - 1e-12))


@st.composite
def random_schedules(draw: st.DrawFn) -> tuple[str, Fields, int, Fields]:
    """A kind, its fields, a run length, and (for plateau) a replay: metrics, steps per epoch
    and direction."""
    kind = draw(st.sampled_from(KINDS))
    max_lr = draw(st.floats(1e-5, 10.0))
    fields: Fields = {"max_lr": max_lr}
    if kind not in ("constant", "step", "exponential", "inverse_sqrt"):
        low = 0.0 if kind in ("sgdr", "cosine", "wsd", "plateau") else 1e-4
        fields["base_lr"] = max_lr * draw(st.floats(low, 0.99))
    if kind in ("step", "exponential", "triangular", "triangular2", "exp_range", "sgdr"):
        fields["step_size"] = draw(st.integers(1, 60))
    if kind in ("step", "exponential", "exp_range", "sgdr", "plateau"):
        fields["decay"] = draw(st.floats(0.3, 1.0))
    if kind == "sgdr":
        fields["cycle_mult"] = draw(st.integers(1, 4))
    min_steps = 1
    if kind == "onecycle":
        fields["pct_start"] = draw(st.floats(0.02, 0.98))
        fields["final_div_factor"] = draw(st.floats(1.0, 1e5))
        min_steps = math.ceil(2 / fields["pct_start"]) + 1
    steps = draw(st.integers(min_steps, min_steps + 300))
    if kind in ("cosine", "inverse_sqrt"):
        fields["warmup"] = draw(st.integers(0, steps - 1))
    if kind == "wsd":
        fields["cooldown"] = draw(st.floats(0.001, 1.0))
        fields["warmup"] = draw(st.integers(0, steps - max(1, round(fields["cooldown"] * steps))))
    replay: Fields = {}
    if kind == "plateau":
        fields["patience"] = draw(st.integers(0, 4))
        spe = draw(st.integers(1, 12))
        # Few distinct values, so runs of equal (flat) epochs are common.
        level = st.sampled_from([0.5, 0.8, 0.9, 0.95, 1.0, 1.2])
        replay = {
            "metrics": draw(st.lists(level, min_size=-(-steps // spe), max_size=-(-steps // spe))),
            "steps_per_epoch": spe,
            "maximize": draw(st.booleans()),
        }
    return kind, fields, steps, replay


@settings(max_examples=300, deadline=None, derandomize=True)
@given(random_schedules())
def test_random_schedules_match_the_formula(case: tuple[str, Fields, int, Fields]) -> None:
    kind, fields, steps, replay = case
    # The atol is for sgdr with a floor of 0 after many decaying restarts: both sides compute
    # the tiny peak from large numbers, so an LR of 1e-11 * max_lr keeps only a few digits.
    np.testing.assert_allclose(
        make(kind, fields).lrs(steps, **replay),
        oracle_lrs(kind, steps, **fields, **replay),
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
    np.testing.assert_allclose(seen[:, 0], lrs_of(schedule, steps), rtol=1e-12, atol=0)
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
    np.testing.assert_allclose(seen[:, 0], lrs_of(schedule, steps), rtol=1e-12, atol=0)
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
    for step in range(steps):
        run.train_step()
        advance(scheduler, step)
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
    seen_a = run_a.follow(sched_a, rest, start=done)[:, 0]
    seen_b = run_b.follow(sched_b, rest, start=done)[:, 0]
    np.testing.assert_array_equal(seen_b, seen_a)
    np.testing.assert_allclose(seen_b, lrs_of(schedule, steps)[done:], rtol=1e-12, atol=0)
    for p_a, p_b in zip(run_a.model.parameters(), run_b.model.parameters(), strict=True):
        torch.testing.assert_close(p_b, p_a)  # same LRs, same optimizer state: same training


# -- validation --------------------------------------------------------------------------------


def test_invalid_parameter_error_is_both_kinds_of_error() -> None:
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, LrsearchError)


@pytest.mark.parametrize("kind", ["linear", "Step", "cosine_with_restarts", "", None])
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
    "cosine": {"max_lr": 0.1, "base_lr": 0.0, "warmup": 5},
    "wsd": {"max_lr": 0.1, "base_lr": 0.0, "warmup": 5, "cooldown": 0.2},
    "inverse_sqrt": {"max_lr": 0.1, "warmup": 5},
    "plateau": {"max_lr": 0.1, "base_lr": 0.0, "decay": 0.5, "patience": 2},
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
    # the floors of the newer kinds (0 is fine: they end or rest there)
    *spoil("cosine", "base_lr", (0.1, 0.2, -0.01, NAN, INF, "0")),
    *spoil("wsd", "base_lr", (0.1, -1e-9, NAN)),
    *spoil("plateau", "base_lr", (0.1, 0.3, -0.01, NAN)),
    *spoil("cosine", "max_lr", (0, -0.1, NAN)),
    # warmup
    *spoil("cosine", "warmup", (-1, 1.5, 2.0, True, NAN, "5")),
    *spoil("wsd", "warmup", (-1, 0.5, True)),
    *spoil("inverse_sqrt", "warmup", (-3, 2.5, False, INF)),
    # cooldown
    *spoil("wsd", "cooldown", (0, 0.0, -0.2, 1.0000001, 2.0, NAN, INF, True, "0.2")),
    # patience and plateau's decay
    *spoil("plateau", "patience", (-1, 1.5, 2.0, True, NAN, "2")),
    *spoil("plateau", "decay", (0, -0.5, 1.5, NAN)),
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
    *spoil("step", "warmup", (10,)),
    *spoil("onecycle", "warmup", (1,)),
    *spoil("plateau", "warmup", (5,)),
    *spoil("cosine", "cooldown", (0.2,)),
    *spoil("inverse_sqrt", "cooldown", (0.5,)),
    *spoil("sgdr", "patience", (3,)),
    *spoil("wsd", "patience", (0,)),
    *spoil("cosine", "step_size", (10,)),
    *spoil("cosine", "decay", (0.5,)),
    *spoil("inverse_sqrt", "base_lr", (0.01,)),
    *spoil("plateau", "step_size", (4,)),
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
    ("sgdr", {"max_lr": 0.1, "base_lr": 0.0, "decay": 0.9}, "step_size"),
    ("sgdr", {"max_lr": 0.1, "base_lr": 0.0, "step_size": 2}, "decay"),
    ("onecycle", {"max_lr": 0.1}, "base_lr"),
    ("wsd", {"max_lr": 0.1, "base_lr": 0.0}, "cooldown"),
    ("plateau", {"max_lr": 0.1, "base_lr": 0.0, "decay": 0.5}, "patience"),
    ("plateau", {"max_lr": 0.1, "base_lr": 0.0, "patience": 1}, "decay"),
]


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [pytest.param(*case, id=f"{case[0]}-{case[2]}") for case in MISSING],
)
def test_missing_fields_are_named(kind: str, fields: Fields, field: str) -> None:
    with invalid(field, kind):
        Schedule(kind, **fields)


# The kinds whose floor may be 0 (where they end or rest) take an omitted base_lr as 0.
FLOOR_KINDS = {
    "sgdr": {"max_lr": 0.1, "step_size": 2, "decay": 0.9},
    "cosine": {"max_lr": 0.1, "warmup": 3},
    "wsd": {"max_lr": 0.1, "cooldown": 0.2},
    "plateau": {"max_lr": 0.1, "decay": 0.5, "patience": 1},
}


def test_floor_kinds_are_the_kinds_with_a_base_lr_that_may_be_zero() -> None:
    # Every kind that reads base_lr either defaults it (here) or requires it (MISSING).
    required = {kind for kind, _, field in MISSING if field == "base_lr"}
    assert set(FLOOR_KINDS) | required == {kind for kind in KINDS if "base_lr" in VALID[kind]}
    assert not set(FLOOR_KINDS) & required


@pytest.mark.parametrize("kind", FLOOR_KINDS)
def test_an_omitted_floor_is_zero(kind: str) -> None:
    schedule = Schedule(kind, **FLOOR_KINDS[kind])
    assert schedule.base_lr == 0.0 and type(schedule.base_lr) is float
    assert schedule == Schedule(kind, base_lr=0.0, **FLOOR_KINDS[kind])
    assert schedule.to_dict()["base_lr"] == 0.0
    assert Schedule.from_dict(schedule.to_dict()) == schedule
    params = schedule.to_params(steps_per_epoch=1)
    assert params["base_lr"] == 0.0  # the params form is as before: the floor is explicit
    assert Schedule.from_params(params, steps_per_epoch=1) == schedule


def test_an_omitted_floor_lets_plateau_decay_towards_zero() -> None:
    schedule = Schedule("plateau", 0.1, decay=0.5, patience=0)
    lrs = schedule.lrs(6, metrics=[1.0] * 5, steps_per_epoch=1)
    assert lrs.tolist() == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.0125, 0.00625])
    assert Schedule("cosine", 1.0).lrs(5)[-1] == pytest.approx(math.cos(math.pi * 4 / 5 / 2) ** 2)


@pytest.mark.parametrize(
    ("kind", "fields", "why"),
    [
        ("onecycle", {"max_lr": 0.1}, "div_factor"),
        ("triangular", {"max_lr": 0.1, "step_size": 2}, "cycle"),
        ("triangular2", {"max_lr": 0.1, "step_size": 2}, "cycle"),
        ("exp_range", {"max_lr": 0.1, "step_size": 2, "decay": 0.9}, "cycle"),
    ],
)
def test_kinds_that_start_at_base_lr_still_require_it(kind: str, fields: Fields, why: str) -> None:
    with invalid("base_lr", kind) as info:
        Schedule(kind, **fields)
    assert why in str(info.value)


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
        ("cosine", {"max_lr": 0.1, "base_lr": 0}),  # warmup defaults to 0
        ("inverse_sqrt", {"max_lr": 0.1, "warmup": np.int64(0)}),
        ("wsd", {"max_lr": 0.1, "base_lr": 0.0, "cooldown": 1}),
        ("wsd", {"max_lr": 0.1, "base_lr": 0.0, "cooldown": 1e-9, "warmup": 10**6}),
        ("plateau", {"max_lr": 0.1, "base_lr": 0.0, "decay": 1, "patience": 0}),
        ("plateau", {"max_lr": 0.1, "base_lr": 0.0, "decay": 1e-3, "patience": np.int64(50)}),
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
    c = Schedule("wsd", max_lr=1, base_lr=0, warmup=np.int64(3), cooldown=np.float32(0.5))
    assert c == Schedule("wsd", max_lr=1.0, base_lr=0.0, warmup=3, cooldown=0.5)
    assert type(c.warmup) is int and type(c.cooldown) is float
    d = Schedule("plateau", max_lr=1.0, base_lr=0.0, decay=0.5, patience=np.int64(2))
    assert type(d.patience) is int and d.patience == 2


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
    "cosine": {"max_lr": 0.1, "base_lr": 0.001, "warmup": 3 * SPE},
    "wsd": {"max_lr": 0.1, "base_lr": 0.0, "warmup": 3 * SPE, "cooldown": 0.2},
    "inverse_sqrt": {"max_lr": 0.1, "warmup": 3 * SPE},
    "plateau": {"max_lr": 0.1, "base_lr": 0.001, "decay": 0.5, "patience": 3},
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
    "cosine": {"base_lr", "warmup"},
    "wsd": {"base_lr", "warmup", "cooldown"},
    "inverse_sqrt": {"warmup"},
    "plateau": {"base_lr", "decay", "patience"},
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
    data = Schedule("constant", 0.1).to_dict() | {"eta_min": 0.0}
    with invalid("eta_min"):
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
    for name in ("step_size", "warmup", "patience"):
        if name in PARAM_KEYS[kind]:
            assert params[prefix + name] == 3  # in epochs
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
    other_fields = {
        "base_lr": 1e-5,
        "decay": 0.5,
        "cycle_mult": 4,
        "step_size": 1,
        "warmup": 2,
        "cooldown": 0.3,
        "patience": 7,
    }
    for name, value in other_fields.items():
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
    with invalid("schedule", "linear"):
        Schedule.from_params({"schedule": "linear", "max_lr": 0.1}, steps_per_epoch=SPE)
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


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("step", "step_size"),
        ("exponential", "step_size"),
        ("triangular", "step_size"),
        ("exp_range", "step_size"),
        ("sgdr", "step_size"),
        ("cosine", "warmup"),
        ("wsd", "warmup"),
        ("inverse_sqrt", "warmup"),
    ],
)
def test_to_params_needs_whole_epochs(kind: str, field: str) -> None:
    fields = dict(ONE_PER_KIND[kind][0])
    fields[field] = 25
    with invalid(field, 25):
        make(kind, fields).to_params(steps_per_epoch=SPE)
    assert make(kind, fields).to_params(steps_per_epoch=5)[field] == 5


@pytest.mark.parametrize("kind", ["cosine", "wsd", "inverse_sqrt"])
def test_from_params_converts_warmup_from_epochs_and_refuses_one_longer_than_the_run(
    kind: str,
) -> None:
    params = in_epochs(kind).to_params(steps_per_epoch=SPE) | {"warmup": 2}
    assert Schedule.from_params(params, steps_per_epoch=7, epochs=2).warmup == 14
    assert Schedule.from_params(params | {"warmup": 0}, steps_per_epoch=7).warmup == 0
    with invalid("warmup", 3):
        Schedule.from_params(params | {"warmup": 3}, steps_per_epoch=SPE, epochs=2)
    with invalid("warmup", -1):
        Schedule.from_params(params | {"warmup": -1}, steps_per_epoch=SPE)
    with invalid("warmup", 1.5):
        Schedule.from_params(params | {"warmup": 1.5}, steps_per_epoch=SPE)
    # Not in params: no warm-up (a params dict from before warm-ups existed still loads).
    del params["warmup"]
    assert Schedule.from_params(params, steps_per_epoch=SPE).warmup == 0


def test_patience_stays_in_epochs_through_params() -> None:
    params = {"schedule": "plateau", "max_lr": 0.1, "base_lr": 0.0, "decay": 0.5, "patience": 4}
    schedule = Schedule.from_params(params, steps_per_epoch=SPE, epochs=3)
    assert schedule.patience == 4  # epochs, whatever steps_per_epoch is: no conversion
    assert schedule.to_params(steps_per_epoch=SPE) == params


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


# plateau has no period in steps: its patience is counted in epochs (test below).
@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"constant", "onecycle", "plateau"}))
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


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        (
            Schedule("cosine", 0.1, base_lr=0.001, warmup=20),
            "cosine from 0.1 down to 0.001, linear warm-up 2 epochs",
        ),
        (Schedule("cosine", 0.1, base_lr=0.0), "cosine from 0.1 down to 0"),
        (
            Schedule("wsd", 0.3, base_lr=1e-4, warmup=10, cooldown=0.2),
            "wsd at 0.3, then 1-sqrt down to 0.0001 over the last 20% of the run, "
            "linear warm-up 1 epoch",
        ),
        (
            Schedule("inverse_sqrt", 0.05, warmup=25),
            "inverse_sqrt from 0.05 falling as 1/sqrt(step), linear warm-up 25 steps",
        ),
        (
            Schedule("plateau", 0.1, base_lr=0.001, decay=0.5, patience=3),
            "plateau from 0.1, times 0.5 once 4 epochs in a row bring no improvement "
            "(patience 3 epochs), floor 0.001",
        ),
        (
            Schedule("plateau", 0.1, base_lr=0.0, decay=0.2, patience=0),
            "plateau from 0.1, times 0.2 once 1 epoch in a row bring no improvement "
            "(patience 0 epochs), floor 0",
        ),
        (
            Schedule("plateau", 0.1, base_lr=0.0, decay=1.0, patience=2),
            "plateau at 0.1, never lowered (decay 1)",
        ),
    ],
)
def test_describe_the_newer_kinds(schedule: Schedule, words: str) -> None:
    assert schedule.describe(steps_per_epoch=SPE) == words


# -- the newer kinds: warm-up, torch's own schedulers, the run's length -------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        Schedule("cosine", 0.4, base_lr=0.0, warmup=8),
        Schedule("wsd", 0.4, base_lr=0.0, warmup=8, cooldown=0.5),
        Schedule("inverse_sqrt", 0.4, warmup=8),
    ],
    ids=lambda s: s.kind,
)
def test_warmup_is_linear_from_a_first_step_above_zero(schedule: Schedule) -> None:
    lrs = schedule.lrs(40)
    assert lrs[0] == pytest.approx(0.4 / 8, rel=1e-12)  # (t+1)/w: never 0
    np.testing.assert_allclose(lrs[:8], 0.4 * np.arange(1, 9) / 8, rtol=1e-12)
    assert lrs[7] == pytest.approx(0.4, rel=1e-12)  # the peak on the warm-up's last step


def scheduler_types(scheduler: torch.optim.lr_scheduler.LRScheduler) -> list[str]:
    inner = getattr(scheduler, "_schedulers", None)
    if inner is None:
        return [type(scheduler).__name__]
    return [type(s).__name__ for s in inner]


@pytest.mark.parametrize(
    ("schedule", "types"),
    [
        (Schedule("cosine", 0.1, base_lr=0.0, warmup=5), ["LinearLR", "LambdaLR"]),
        (Schedule("cosine", 0.1, base_lr=0.0), ["LambdaLR"]),
        (
            Schedule("wsd", 0.1, base_lr=0.0, warmup=5, cooldown=0.2),
            ["LinearLR", "ConstantLR", "LambdaLR"],
        ),
        (Schedule("wsd", 0.1, base_lr=0.0, cooldown=0.2), ["ConstantLR", "LambdaLR"]),
        (Schedule("wsd", 0.1, base_lr=0.0, warmup=10, cooldown=0.75), ["LinearLR", "LambdaLR"]),
        (Schedule("inverse_sqrt", 0.1, warmup=5), ["LinearLR", "LambdaLR"]),
        (Schedule("inverse_sqrt", 0.1), ["LambdaLR"]),
        (Schedule("plateau", 0.1, base_lr=0.0, decay=0.5, patience=1), ["ReduceLROnPlateau"]),
    ],
    ids=lambda v: v.kind if isinstance(v, Schedule) else "-".join(v),
)
def test_the_newer_kinds_are_torchs_own_schedulers(schedule: Schedule, types: list[str]) -> None:
    scheduler = schedule.build(Run().optimizer, 40)
    assert scheduler_types(scheduler) == types
    if len(types) > 1:
        assert isinstance(scheduler, torch.optim.lr_scheduler.SequentialLR)


@pytest.mark.parametrize(
    ("schedule", "floor"),
    [
        (Schedule("cosine", 0.5, base_lr=0.05, warmup=4), 0.05),
        (Schedule("wsd", 0.5, base_lr=0.05, warmup=4, cooldown=0.3), 0.05),
    ],
    ids=lambda v: v.kind if isinstance(v, Schedule) else str(v),
)
def test_stepping_past_the_end_rests_at_the_floor(schedule: Schedule, floor: float) -> None:
    # An objective's loop that also steps after its last optimizer step (the README's does)
    # must not see the LR climb back (cosine) or fall under the floor (1 - sqrt > 1).
    run = Run()
    scheduler = schedule.build(run.optimizer, 20)
    seen = run.follow(scheduler, 30)[:, 0]
    np.testing.assert_allclose(seen[:20], schedule.lrs(20), rtol=1e-12)
    np.testing.assert_allclose(seen[20:], floor, rtol=1e-12)


def test_cosine_needs_a_step_after_its_warmup() -> None:
    schedule = Schedule("cosine", 0.1, base_lr=0.0, warmup=10)
    assert schedule.lrs(11)[-1] == pytest.approx(0.1)
    for steps in (10, 3):
        with invalid("total_steps", steps):
            schedule.lrs(steps)
        with invalid("total_steps", steps):
            schedule.build(Run().optimizer, steps)


@pytest.mark.parametrize(
    ("warmup", "cooldown", "shortest"),
    # T = 12 holds 10 + round(2.4) = 12 steps; T = 11 would need 10 + round(2.2) = 12
    [(0, 0.5, 1), (10, 0.5, 20), (10, 0.2, 12), (3, 1.0, None), (0, 1.0, 1)],
)
def test_wsd_needs_room_for_warmup_and_cooldown(
    warmup: int, cooldown: float, shortest: int | None
) -> None:
    schedule = Schedule("wsd", 0.1, base_lr=0.0, warmup=warmup, cooldown=cooldown)
    if shortest is None:  # a cooldown of the whole run leaves no room for any warm-up
        for steps in (1, 10, 1000):
            with invalid("total_steps", steps):
                schedule.lrs(steps)
        return
    np.testing.assert_allclose(
        schedule.lrs(shortest),
        oracle_lrs("wsd", shortest, max_lr=0.1, base_lr=0.0, warmup=warmup, cooldown=cooldown),
        rtol=1e-6,
    )
    if shortest > 1:
        with invalid("total_steps", shortest - 1):
            schedule.lrs(shortest - 1)
        with invalid("total_steps", shortest - 1):
            schedule.build(Run().optimizer, shortest - 1)


def test_wsd_cooldown_rounds_half_to_even() -> None:
    # D = max(1, round(c * T)) with Python's round: 0.25 * 10 = 2.5 -> 2, 0.25 * 14 = 3.5 -> 4.
    for steps, d in ((10, 2), (14, 4)):
        lrs = Schedule("wsd", 1.0, base_lr=0.0, cooldown=0.25).lrs(steps)
        assert np.count_nonzero(lrs < 1.0) == d - 1  # the cooldown's first step is still 1.0
        assert lrs[steps - d - 1] == lrs[steps - d] == 1.0


# -- plateau: the metric moves the learning rate -----------------------------------------------


def plateau(**fields: Any) -> Schedule:
    return Schedule("plateau", **({"max_lr": 0.8, "base_lr": 0.0, "decay": 0.5} | fields))


@pytest.mark.parametrize("maximize", [False, True])
def test_plateau_without_a_metric_never_drops(maximize: bool) -> None:
    schedule = plateau(patience=0)
    np.testing.assert_array_equal(schedule.lrs(50, maximize=maximize), np.full(50, 0.8))


@pytest.mark.parametrize("maximize", [False, True])
def test_plateau_drops_after_patience_flat_epochs_and_not_while_improving(
    maximize: bool,
) -> None:
    # The same story for an accuracy and for a loss (1 - accuracy; positive, as losses are:
    # torch's relative threshold reads a flat negative metric as improving):
    # epochs 0-3 improve, 4-6 are flat, 7 improves, 8-10 are flat again.
    story = [0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5]
    metrics = story if maximize else [1 - v for v in story]
    lrs = plateau(patience=1).lrs(12, metrics=metrics, steps_per_epoch=1, maximize=maximize)
    # The LR of epoch e+1 follows the value after epoch e. Flat epochs 4 and 5 exceed patience
    # 1 on epoch 5: halved from epoch 6 on; epoch 6 is the first bad one after it; epoch 7
    # improves; 8 and 9 are flat: halved again from epoch 10.
    assert lrs.tolist() == [0.8] * 6 + [0.4] * 4 + [0.2] * 2
    np.testing.assert_allclose(
        lrs,
        oracle_lrs(
            "plateau",
            12,
            max_lr=0.8,
            base_lr=0.0,
            decay=0.5,
            patience=1,
            metrics=metrics,
            steps_per_epoch=1,
            maximize=maximize,
        ),
        rtol=1e-12,
    )
    # The wrong direction reads the same story the other way round: every epoch after the first
    # is "worse" than epoch 0, so the LR drops every other epoch.
    wrong = plateau(patience=1).lrs(12, metrics=metrics, steps_per_epoch=1, maximize=not maximize)
    assert wrong.tolist() == [0.8] * 3 + [0.4] * 2 + [0.2] * 2 + [0.1] * 2 + [0.05] * 2 + [0.025]


def test_plateau_rests_on_its_floor() -> None:
    lrs = plateau(base_lr=0.15, patience=0).lrs(10, metrics=[1.0] * 9, steps_per_epoch=1)
    assert lrs.tolist() == [0.8, 0.8, 0.4, 0.2, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15]


def test_plateau_steps_per_epoch_spreads_each_epoch_lr_over_its_steps() -> None:
    lrs = plateau(patience=0).lrs(10, metrics=[1.0, 1.0, 1.0], steps_per_epoch=3)
    assert lrs.tolist() == [0.8] * 6 + [0.4] * 3 + [0.2]


def test_plateau_build_is_reduce_lr_on_plateau_in_the_metrics_direction() -> None:
    run = Run("sgd", GROUP_LRS)
    schedule = plateau(base_lr=0.02, decay=0.25, patience=2)
    scheduler = schedule.build(run.optimizer, 100, maximize=True)
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert scheduler.mode == "max" and scheduler.factor == 0.25 and scheduler.patience == 2
    ratios = np.asarray(GROUP_LRS) / GROUP_LRS[0]
    assert scheduler.min_lrs == pytest.approx((0.02 * ratios).tolist(), rel=1e-12)
    assert run.group_lrs() == pytest.approx((0.8 * ratios).tolist(), rel=1e-12)
    assert schedule.build(Run().optimizer, 100).mode == "min"  # a loss, as in torch


def test_plateau_with_decay_1_is_never_lowered() -> None:
    run = Run("sgd", GROUP_LRS)
    scheduler = plateau(decay=1.0, patience=0).build(run.optimizer, 10)
    for _ in range(5):
        run.train_step()
        scheduler.step(1.0)  # flat: a reduction is due every epoch
    assert run.group_lrs() == pytest.approx([0.8 * r / GROUP_LRS[0] for r in GROUP_LRS])


def test_plateau_lowers_tiny_learning_rates_too() -> None:
    # torch's default eps=1e-8 would skip a reduction smaller than that and break the ratio.
    run = Run("adam", (1e-6, 1e-9))
    scheduler = plateau(max_lr=1e-6, patience=0).build(run.optimizer, 10)
    for _ in range(3):
        run.train_step()
        scheduler.step(1.0)
    assert run.group_lrs() == pytest.approx([2.5e-7, 2.5e-10], rel=1e-12)


@pytest.mark.parametrize("kind", PER_STEP_KINDS)
def test_the_other_kinds_ignore_metrics(kind: str) -> None:
    fields, steps = ONE_PER_KIND[kind]
    schedule = make(kind, fields)
    replay = schedule.lrs(steps, metrics=[1.0] * 100, steps_per_epoch=3, maximize=True)
    np.testing.assert_array_equal(replay, schedule.lrs(steps))


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"metrics": [1.0, 1.0]}, "steps_per_epoch", None),
        ({"steps_per_epoch": 2}, "metrics", None),
        ({"metrics": [1.0] * 9, "steps_per_epoch": 0}, "steps_per_epoch", 0),
        ({"metrics": [1.0] * 8, "steps_per_epoch": 1}, "metrics", 9),  # needs 9 of 10 epochs
        ({"metrics": [1.0] * 2, "steps_per_epoch": 3}, "metrics", 3),  # needs 3 of 4 epochs
        ({"metrics": [1.0, NAN, 1.0, 1.0], "steps_per_epoch": 3}, "metrics", NAN),
        ({"metrics": [1.0, "1", 1.0, 1.0], "steps_per_epoch": 3}, "metrics", "1"),
        ({"metrics": "1111", "steps_per_epoch": 3}, "metrics", "1111"),
    ],
)
def test_bad_replays_are_rejected(kwargs: Fields, field: str, value: object) -> None:
    for kind in ("plateau", "cosine"):  # checked for every kind, so a typo fails the same way
        fields = {"max_lr": 0.1, "base_lr": 0.0} | (
            {"decay": 0.5, "patience": 1} if kind == "plateau" else {}
        )
        with invalid(field, value):
            Schedule(kind, **fields).lrs(10, **kwargs)
    assert len(plateau(patience=0).lrs(10, metrics=[1.0] * 3, steps_per_epoch=4)) == 10


@pytest.mark.parametrize("kind", ["cosine", "wsd", "inverse_sqrt", "plateau"])
def test_the_newer_kinds_drive_tensor_learning_rates(kind: str) -> None:
    # Fused and capturable optimizers keep each group's LR as a tensor, updated in place.
    fields, steps = ONE_PER_KIND[kind]
    schedule = make(kind, fields)
    run = Run("adam", GROUP_LRS)
    for group in run.optimizer.param_groups:
        group["lr"] = torch.tensor(group["lr"], dtype=torch.float64)
        group["foreach"] = False  # torch takes a tensor LR on the CPU only without foreach
    seen = run.follow(schedule.build(run.optimizer, steps), steps)
    assert all(isinstance(g["lr"], torch.Tensor) for g in run.optimizer.param_groups)
    np.testing.assert_allclose(seen[:, 0], lrs_of(schedule, steps), rtol=1e-12, atol=0)
    ratios = np.asarray(GROUP_LRS) / GROUP_LRS[0]
    np.testing.assert_allclose(seen / seen[:, :1], np.broadcast_to(ratios, seen.shape), rtol=1e-9)


# -- cycle_ends ---------------------------------------------------------------------------------

CYCLICAL = ("triangular", "triangular2", "exp_range", "sgdr")
CYCLICAL_CASES = [case for case in ALL_CASES if case.values[0] in CYCLICAL]


def closed_form_cycle_ends(kind: str, fields: Fields, steps: int) -> list[int]:
    """The docs' cycles: ``2s`` steps each for Smith's CLR kinds; ``s * m**k`` for sgdr's
    restart ``k``, so cycle ``k`` ends after ``s (m**k - 1) / (m - 1)`` steps (``s k`` for m=1)."""
    s = fields["step_size"]
    if kind != "sgdr":
        return [2 * s * k for k in range(1, steps // (2 * s) + 1)]
    m = fields.get("cycle_mult", 1)
    ends, k = [], 1
    while True:
        end = s * k if m == 1 else s * (m**k - 1) // (m - 1)
        if end > steps:
            return ends
        ends.append(end)
        k += 1


def test_the_cyclical_kinds_are_the_restarting_ones() -> None:
    from lrsearch.choices import CYCLICAL_KINDS

    assert set(CYCLICAL_KINDS) == set(CYCLICAL)


@pytest.mark.parametrize(("kind", "fields", "steps"), CYCLICAL_CASES)
def test_cycle_ends_match_the_closed_form(kind: str, fields: Fields, steps: int) -> None:
    assert make(kind, fields).cycle_ends(steps) == closed_form_cycle_ends(kind, fields, steps)


@pytest.mark.parametrize(("kind", "fields", "steps"), CYCLICAL_CASES)
def test_the_lr_restarts_right_after_each_cycle_end(kind: str, fields: Fields, steps: int) -> None:
    # Read off the oracle's LRs, not the closed form: after n steps the next cycle begins, at
    # the low point for Smith's kinds and at a (decayed) peak for sgdr.
    lrs = oracle(kind, fields, steps + 1)
    for k, n in enumerate(make(kind, fields).cycle_ends(steps), start=1):
        if kind == "sgdr":  # restart k begins at its decayed peak (which rests on the floor)
            peak = max(fields["max_lr"] * fields["decay"] ** k, fields["base_lr"])
            assert lrs[n] == pytest.approx(peak, rel=1e-9)
        else:
            assert lrs[n] == pytest.approx(fields["base_lr"], rel=1e-9)


@pytest.mark.parametrize(
    ("kind", "fields", "steps", "expected"),
    [
        ("triangular", {"base_lr": 0.01, "max_lr": 0.1, "step_size": 4}, 16, [8, 16]),
        ("triangular", {"base_lr": 0.01, "max_lr": 0.1, "step_size": 4}, 15, [8]),  # mid-cycle
        ("triangular", {"base_lr": 0.01, "max_lr": 0.1, "step_size": 4}, 7, []),
        ("exp_range", {"base_lr": 0.01, "max_lr": 0.1, "step_size": 1, "decay": 0.5}, 5, [2, 4]),
        ("sgdr", {"base_lr": 0.0, "max_lr": 0.1, "step_size": 3, "decay": 1.0}, 10, [3, 6, 9]),
        (
            "sgdr",
            {"base_lr": 0.0, "max_lr": 0.1, "step_size": 1, "decay": 0.5, "cycle_mult": 3},
            40,
            [1, 4, 13, 40],
        ),
    ],
)
def test_cycle_ends_by_hand(kind: str, fields: Fields, steps: int, expected: list[int]) -> None:
    assert make(kind, fields).cycle_ends(steps) == expected


@pytest.mark.parametrize(
    ("kind", "fields", "steps"), [c for c in ALL_CASES if c.values[0] not in CYCLICAL]
)
def test_kinds_that_do_not_restart_have_no_cycle_ends(
    kind: str, fields: Fields, steps: int
) -> None:
    assert make(kind, fields).cycle_ends(steps) == []


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_cycle_ends_checks_total_steps(steps: Any) -> None:
    with invalid("total_steps", steps):
        make("triangular", {"base_lr": 0.01, "max_lr": 0.1, "step_size": 4}).cycle_ends(steps)
