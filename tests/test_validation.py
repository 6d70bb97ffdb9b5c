"""The constraints of lrsearch._validation, and the modules that check arguments with them."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import pytest
import torch

from lrsearch import InvalidParameterError, LrsearchError, Schedule, StudyConfig, range_test
from lrsearch._validation import (
    NON_NEGATIVE_INT,
    NON_NEGATIVE_REAL,
    POSITIVE_INT,
    POSITIVE_REAL,
    REAL,
    Constraint,
    InstanceOf,
    Interval,
    Names,
    Options,
    OrNone,
    Satisfies,
    below,
    check,
    check_non_negative_int,
    check_positive_int,
    check_positive_real,
    check_real,
    check_seed,
    validate_params,
)

NAN, INF = math.nan, math.inf


def fails(name: str, value: object, *constraints: Constraint) -> str:
    """The message ``check`` fails with: one line, an InvalidParameterError (a ValueError)."""
    with pytest.raises(InvalidParameterError) as info:
        check(name, value, *constraints)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, LrsearchError)
    assert "\n" not in message and message.startswith(f"{name} ")
    return message


# -- each kind of constraint -----------------------------------------------------------------

# (constraint, good values and their normal form, bad values and the rule each breaks)
CASES: list[tuple[Constraint, list[tuple[object, object]], list[tuple[object, str]]]] = [
    (
        POSITIVE_INT,
        [(1, 1), (7, 7), (np.int64(3), 3)],
        [(0, "must be a positive integer"), (-2, "must be a positive integer")]
        + [(v, "must be a positive integer") for v in (True, 2.0, 2.5, "3", None, NAN)],
    ),
    (
        NON_NEGATIVE_INT,
        [(0, 0), (5, 5)],
        [(-1, "must be a non-negative integer"), (False, "must be a non-negative integer")],
    ),
    (
        Interval(int, 2, None, closed="left"),
        [(2, 2), (10**30, 10**30)],
        [(1, "must be an integer >= 2"), (np.int64(5), "must be an integer >= 2")],
    ),
    (
        Interval(numbers.Integral, 1, 10, closed="both"),
        [(1, 1), (10, 10)],
        [(0, "must be an integer in [1, 10]"), (11, "must be an integer in [1, 10]")],
    ),
    (
        REAL,
        [(0, 0.0), (-1.5, -1.5), (np.float32(0.5), 0.5)],
        [
            (True, "must be a real number"),
            ("1", "must be a real number"),
            (None, "must be a real number"),
            (NAN, "must be finite"),
            (INF, "must be finite"),
            (-INF, "must be finite"),
            (10**400, "must be finite"),  # beyond float range: a bad value, not a crash
        ],
    ),
    (
        POSITIVE_REAL,
        [(1e-9, 1e-9), (3, 3.0)],
        [(0, "must be a positive finite number"), (-0.1, "must be a positive finite number")],
    ),
    (
        NON_NEGATIVE_REAL,
        [(0, 0.0), (0.5, 0.5)],
        [(-1e-12, "must be a non-negative finite number")],
    ),
    (
        Interval(numbers.Real, 0, 1, closed="right"),
        [(1, 1.0), (1e-6, 1e-6)],
        [(0, "must be in (0, 1]"), (1.0000001, "must be in (0, 1]")],
    ),
    (
        Interval(numbers.Real, 0, 1, closed="neither"),
        [(0.5, 0.5)],
        [(0.0, "must be in (0, 1)"), (1, "must be in (0, 1)")],
    ),
    (
        Interval(numbers.Real, 1, None, closed="left"),
        [(1, 1.0)],
        [(0.5, "must be >= 1")],
    ),
    (
        Interval(numbers.Real, None, 0, closed="neither"),
        [(-1, -1.0)],
        [(0, "must be < 0")],
    ),
    (
        below("end_lr", 0.1),
        [(0.05, 0.05)],
        [(0.1, "must be below end_lr=0.1"), (1.0, "must be below end_lr=0.1")],
    ),
    (
        Options(("exp", "linear")),
        [("exp", "exp")],
        [(v, "must be one of ['exp', 'linear']") for v in ("cos", "EXP", None, ["exp"])],
    ),
    (
        InstanceOf(bool, "true or false"),
        [(True, True), (False, False)],
        [(1, "must be true or false"), ("off", "must be true or false")],
    ),
    (
        Satisfies(lambda v: isinstance(v, str) and v != "", "must be a non-empty string"),
        [("a", "a")],
        [("", "must be a non-empty string"), (3, "must be a non-empty string")],
    ),
    (
        OrNone(POSITIVE_INT),
        [(None, None), (np.int64(2), 2)],
        [(0, "must be a positive integer or None"), (1.5, "must be a positive integer or None")],
    ),
]


@pytest.mark.parametrize(
    ("constraint", "value", "normal"),
    [
        pytest.param(c, value, normal, id=f"{i}-{value!r}")
        for i, (c, good, _) in enumerate(CASES)
        for value, normal in good
    ],
)
def test_good_values_pass_in_their_normal_form(
    constraint: Constraint, value: object, normal: object
) -> None:
    out = check("x", value, constraint)
    assert out == normal and type(out) is type(normal)


@pytest.mark.parametrize(
    ("constraint", "value", "rule"),
    [
        pytest.param(c, value, rule, id=f"{i}-{value!r}")
        for i, (c, _, bad) in enumerate(CASES)
        for value, rule in bad
    ],
)
def test_bad_values_fail_in_one_sentence_with_the_name_and_the_value(
    constraint: Constraint, value: object, rule: str
) -> None:
    shown = value.item() if isinstance(value, np.generic) else value  # as Python shows it
    assert fails("some_arg", value, constraint) == f"some_arg {rule}; got {shown!r}"


def test_names_are_a_non_empty_list_of_distinct_choices() -> None:
    names = Names(("step", "cosine", "wsd"))
    assert check("kinds", ["wsd", "step"], names) == ("wsd", "step")
    assert check("kinds", ("cosine",), names) == ("cosine",)
    assert fails("kinds", "step", names) == "kinds must be a list of names; got 'step'"
    assert fails("kinds", (), names) == (
        "kinds must name at least one of ['step', 'cosine', 'wsd']; got []"
    )
    # The name that is not a choice is shown alone; a repeat shows the list.
    assert fails("kinds", ["step", "warmup"], names) == (
        "kinds must be one of ['step', 'cosine', 'wsd']; got 'warmup'"
    )
    assert fails("kinds", ("step", "step"), names) == (
        "kinds has a repeated name; got ['step', 'step']"
    )


def test_constraints_apply_in_order_and_the_first_broken_is_reported() -> None:
    rules = (POSITIVE_REAL, below("max_lr", 0.1))
    assert check("base_lr", 0.01, *rules) == 0.01
    assert fails("base_lr", -1, *rules) == "base_lr must be a positive finite number; got -1"
    assert fails("base_lr", 0.5, *rules) == "base_lr must be below max_lr=0.1; got 0.5"
    assert check("x", 5) == 5  # no constraint: as it is


def test_numpy_scalars_are_shown_as_the_numbers_they_hold() -> None:
    assert fails("lr", np.float64(-0.5), POSITIVE_REAL).endswith("; got -0.5")
    assert fails("n", np.int64(0), POSITIVE_INT).endswith("; got 0")


def test_the_check_functions_keep_their_words() -> None:
    assert check_real("x", 2) == 2.0 and type(check_real("x", 2)) is float
    assert check_positive_real("x", np.float64(0.5)) == 0.5
    assert check_positive_int("x", np.int64(4)) == 4 and type(check_positive_int("x", 4)) is int
    assert check_non_negative_int("x", 0) == 0
    assert check_seed("seed", None) is None and check_seed("seed", 3) == 3
    for function, value, words in [
        (check_real, True, "x must be a real number; got True"),
        (check_real, INF, "x must be finite; got inf"),
        (check_positive_real, 0.0, "x must be a positive finite number; got 0.0"),
        (check_positive_int, 0, "x must be a positive integer; got 0"),
        (check_non_negative_int, -1, "x must be a non-negative integer; got -1"),
        (check_seed, -1, "x must be a non-negative integer or None; got -1"),
    ]:
        with pytest.raises(InvalidParameterError) as info:
            function("x", value)
        assert str(info.value) == words


# -- validate_params -------------------------------------------------------------------------


@validate_params(n=POSITIVE_INT, lr=POSITIVE_REAL, seed=OrNone(NON_NEGATIVE_INT))
def _train(n: int, *, lr: float = 0.1, seed: int | None = None) -> tuple[Any, Any, Any]:
    """A function whose arguments are checked."""
    return n, lr, seed


def test_validate_params_checks_and_converts_the_arguments_given() -> None:
    assert _train(np.int64(3), lr=1) == (3, 1.0, None)
    assert type(_train(np.int64(3))[0]) is int
    assert _train(2, seed=4) == (2, 0.1, 4)
    with pytest.raises(InvalidParameterError, match=r"^n must be a positive integer; got 0$"):
        _train(0)
    with pytest.raises(InvalidParameterError, match=r"^lr must be finite; got nan$"):
        _train(1, lr=NAN)
    with pytest.raises(TypeError):  # a wrong call is still Python's error
        _train(1, 2)  # type: ignore[misc]
    assert (
        _train.__name__ == "_train" and _train.__doc__ == "A function whose arguments are checked."
    )


def test_validate_params_refuses_a_constraint_for_no_argument() -> None:
    with pytest.raises(TypeError, match="nope"):

        @validate_params(nope=POSITIVE_INT)
        def f(n: int) -> int:
            return n


# -- config, range_test and Schedule fail through it -----------------------------------------


def _config(**fields: Any) -> None:
    StudyConfig(name="t", task="digits", **fields)


def _range_test(**kwargs: Any) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.randn(4, 2), torch.randn(4, 1)) for _ in range(3)]
    range_test(model, opt, torch.nn.functional.mse_loss, batches, **kwargs)


def _schedule(**fields: Any) -> None:
    Schedule("cosine", **{"max_lr": 0.1, "base_lr": 0.0, **fields})


# The same bad value of a learning rate in each: (call, keyword, the name the message gives).
LEARNING_RATES = [
    (_config, "range_start_lr", "range_test.start_lr"),
    (_range_test, "start_lr", "start_lr"),
    (_schedule, "max_lr", "max_lr"),
]


@pytest.mark.parametrize(("call", "keyword", "name"), LEARNING_RATES)
@pytest.mark.parametrize("value", [-1, 0.0, NAN, INF, "0.1", True])
def test_a_bad_learning_rate_fails_alike_in_config_range_test_and_schedule(
    call: Any, keyword: str, name: str, value: object
) -> None:
    with pytest.raises(InvalidParameterError) as info:
        call(**{keyword: value})
    # The very sentence check() gives for the same name and value.
    assert str(info.value) == fails(name, value, POSITIVE_REAL)


#: The same kind of mistake, made in config, range test and schedule: one sentence shape.
_MISTAKES = [
    # a bound below another
    (
        _config,
        {"range_start_lr": 1.0, "range_end_lr": 0.5},
        "range_test.start_lr must be below range_test.end_lr=0.5; got 1.0",
    ),
    (
        _range_test,
        {"start_lr": 1.0, "end_lr": 0.5},
        "start_lr must be below end_lr=0.5; got 1.0",
    ),
    (_schedule, {"max_lr": 0.1, "base_lr": 0.5}, "base_lr must be below max_lr=0.1; got 0.5"),
    # a name not among the choices
    (_config, {"sampler": "cmaes"}, "sampler must be one of ['tpe', 'random']; got 'cmaes'"),
    (_range_test, {"mode": "cos"}, "mode must be one of ['exp', 'linear']; got 'cos'"),
    (
        Schedule,
        {"kind": "linear", "max_lr": 0.1},
        "kind must be one of ['constant', 'step', 'exponential', 'triangular', "
        "'triangular2', 'exp_range', 'sgdr', 'onecycle', 'cosine', 'wsd', 'inverse_sqrt', "
        "'plateau']; got 'linear'",
    ),
    # integer and flag arguments
    (_range_test, {"repeats": 0}, "repeats must be a positive integer; got 0"),
    (_range_test, {"total_steps": 0}, "total_steps must be a positive integer or None; got 0"),
    (_schedule, {"warmup": -1}, "warmup must be a non-negative integer; got -1"),
    (_config, {"n_trials": 0}, "n_trials must be an integer >= 1; got 0"),
    (_config, {"diagnostics": 1}, "diagnostics must be true or false; got 1"),
]


@pytest.mark.parametrize(("call", "kwargs", "message"), _MISTAKES)
def test_the_same_mistake_fails_alike_wherever_it_is_made(
    call: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidParameterError) as info:
        call(**kwargs)
    assert str(info.value) == message
