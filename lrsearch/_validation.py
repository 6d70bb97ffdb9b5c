"""One way to check an argument: constraints as data, applied in one place.

A constraint (:class:`Interval`, :class:`Options`, :class:`Names`, :class:`InstanceOf`,
:class:`Satisfies`, :class:`OrNone`) says what a value must be; :func:`check` applies one or
more of them to a named value, and :func:`validate_params` applies them to a function's
arguments, the way scikit-learn's ``utils/_param_validation.py`` does. Every failure is an
:class:`~lrsearch.exceptions.InvalidParameterError` (a ``ValueError``) of one sentence shape,
``"{name} {rule}; got {value!r}"``: ``step_size must be a positive integer; got 0``.

This module imports no torch: a study config is validated with it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final, Literal, ParamSpec, TypeVar

from lrsearch.exceptions import InvalidParameterError

__all__ = [
    "NON_NEGATIVE_INT",
    "NON_NEGATIVE_REAL",
    "POSITIVE_INT",
    "POSITIVE_REAL",
    "REAL",
    "Constraint",
    "InstanceOf",
    "Interval",
    "Names",
    "Options",
    "OrNone",
    "Satisfies",
    "below",
    "check",
    "validate_params",
]

#: What is wrong with a value: the rule it breaks ("must be a positive integer") and the value
#: to show (the value itself, or the element of a list that broke it).
Fault = tuple[str, object]

P = ParamSpec("P")
R = TypeVar("R")


class Constraint(ABC):
    """A rule one value must follow."""

    @abstractmethod
    def fault(self, value: object) -> Fault | None:
        """What is wrong with ``value``, or ``None`` when it follows the rule."""

    def convert(self, value: Any) -> Any:
        """``value`` (which follows the rule) in its normal form: an ``int``, a ``float``..."""
        return value


def check(name: str, value: Any, *constraints: Constraint) -> Any:
    """``value`` converted by ``constraints`` once it follows every one, in order.

    Args:
        name: The argument, field or key, as the message names it.
        value: Its value.
        *constraints: The rules it must follow; the first it breaks is the one reported.

    Returns:
        The value in its normal form (the last constraint's :meth:`~Constraint.convert`).

    Raises:
        InvalidParameterError: ``"{name} {rule}; got {value!r}"`` for the first rule broken.

    Example:
        >>> check("step_size", 3, POSITIVE_INT)
        3
        >>> check("step_size", 0, POSITIVE_INT)
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.InvalidParameterError: step_size must be a positive integer; got 0
    """
    for constraint in constraints:
        fault = constraint.fault(value)
        if fault is not None:
            rule, shown = fault
            raise InvalidParameterError(f"{name} {rule}; got {_shown(shown)}")
        value = constraint.convert(value)
    return value


def validate_params(**constraints: Constraint) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Check the named arguments of every call with :func:`check`, and pass them converted.

    Arguments left at their default are not checked. Checks between arguments (one below
    another) belong in the function, with :func:`check` too.

    Example:
        >>> @validate_params(n=POSITIVE_INT)
        ... def twice(n: int) -> int:
        ...     return 2 * n
        >>> twice(n=True)
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.InvalidParameterError: n must be a positive integer; got True
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(func)
        unknown = set(constraints) - set(signature.parameters)
        if unknown:
            raise TypeError(f"{func.__qualname__} has no argument(s) {sorted(unknown)}")

        @functools.wraps(func)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            for name, constraint in constraints.items():
                if name in bound.arguments:
                    bound.arguments[name] = check(name, bound.arguments[name], constraint)
            return func(*bound.args, **bound.kwargs)

        return checked

    return decorate


@dataclass(frozen=True)
class Interval(Constraint):
    """A number of ``type`` between ``left`` and ``right`` (``None``: unbounded).

    Integers (``type`` ``int`` or ``numbers.Integral``; never a ``bool``) have one rule, their
    range's. Reals (``numbers.Real``) must be a real number, then finite, then in range; each
    is its own rule. ``words`` names the range in messages (default: ``"an integer >= 1"``,
    ``"in (0, 1]"``, ``"> 0"``...).

    Example:
        >>> check("decay", 2, Interval(numbers.Real, 0, 1, closed="right"))
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.InvalidParameterError: decay must be in (0, 1]; got 2
        >>> check("lr", math.nan, POSITIVE_REAL)
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.InvalidParameterError: lr must be finite; got nan
    """

    type: type
    left: float | None
    right: float | None
    closed: Literal["left", "right", "both", "neither"]
    words: str | None = None

    @property
    def integral(self) -> bool:
        """Whether the values are integers."""
        return issubclass(self.type, numbers.Integral)

    def fault(self, value: object) -> Fault | None:
        """The first rule ``value`` breaks: a number, finite, in range."""
        if isinstance(value, bool) or not isinstance(value, self.type):
            return (self._rule() if self.integral else "must be a real number"), value
        if isinstance(value, numbers.Integral) and self.integral:
            return None if self._holds(int(value)) else (self._rule(), value)
        assert isinstance(value, numbers.Real)
        number = math.nan
        # A TOML integer is unbounded: one beyond float range is just a bad value.
        with contextlib.suppress(OverflowError):
            number = float(value)
        if not math.isfinite(number):
            return "must be finite", value
        return None if self._holds(number) else (self._rule(), value)

    def convert(self, value: Any) -> Any:
        """An ``int`` or a ``float``."""
        return int(value) if self.integral else float(value)

    def _holds(self, number: float) -> bool:
        low_ok = self.left is None or (
            number >= self.left if self.closed in ("left", "both") else number > self.left
        )
        high_ok = self.right is None or (
            number <= self.right if self.closed in ("right", "both") else number < self.right
        )
        return low_ok and high_ok

    def _rule(self) -> str:
        if self.words is not None:
            return f"must be {self.words}"
        closed_left = self.closed in ("left", "both")
        closed_right = self.closed in ("right", "both")
        if self.right is None or self.left is None:
            bound, sign = (
                (self.left, ">=" if closed_left else ">")
                if self.right is None
                else (self.right, "<=" if closed_right else "<")
            )
            return f"must be {'an integer ' if self.integral else ''}{sign} {bound}"
        brackets = ("[" if closed_left else "(", "]" if closed_right else ")")
        span = f"{brackets[0]}{self.left}, {self.right}{brackets[1]}"
        return f"must be {'an integer ' if self.integral else ''}in {span}"


@dataclass(frozen=True)
class Options(Constraint):
    """One of ``choices``.

    Example:
        >>> check("mode", "cos", Options(("exp", "linear")))
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.InvalidParameterError: mode must be one of ['exp', 'linear']; got 'cos'
    """

    choices: tuple[object, ...]

    def fault(self, value: object) -> Fault | None:
        """``value`` unless it is one of the choices."""
        return None if _among(value, self.choices) else (f"must be {self.words}", value)

    @property
    def words(self) -> str:
        """``one of [...]``."""
        return f"one of {list(self.choices)}"


@dataclass(frozen=True)
class Names(Constraint):
    """A non-empty list (or tuple) of distinct names among ``choices``; converted to a tuple.

    Example:
        >>> check("kinds", ["step", "step"], Names(("step", "cosine")))
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.InvalidParameterError: kinds has a repeated name; got ['step', 'step']
    """

    choices: tuple[str, ...]

    def fault(self, value: object) -> Fault | None:
        """Not a list, an empty one, a name not among the choices (shown alone), a repeat; a
        tuple is shown as the list a TOML file has."""
        if not isinstance(value, list | tuple):
            return "must be a list of names", value
        if not value:
            return f"must name at least one of {list(self.choices)}", list(value)
        for name in value:
            if not _among(name, self.choices):
                return Options(self.choices).fault(name)
        if len(set(value)) != len(value):
            return "has a repeated name", list(value)
        return None

    def convert(self, value: Any) -> tuple[str, ...]:
        """A tuple."""
        return tuple(value)


@dataclass(frozen=True)
class InstanceOf(Constraint):
    """An instance of ``types`` (``words`` names them in messages).

    Example:
        >>> check("diagnostics", 1, InstanceOf(bool, "true or false"))
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.InvalidParameterError: diagnostics must be true or false; got 1
    """

    types: type | tuple[type, ...]
    words: str

    def fault(self, value: object) -> Fault | None:
        """``value`` unless it is an instance."""
        return None if isinstance(value, self.types) else (f"must be {self.words}", value)


@dataclass(frozen=True)
class Satisfies(Constraint):
    """Whatever ``test`` accepts; ``rule`` says what that is (``"must include 'tuned'"``).

    Example:
        >>> check("name", "", Satisfies(bool, "must not be empty"))
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.InvalidParameterError: name must not be empty; got ''
    """

    test: Callable[[Any], bool]
    rule: str

    def fault(self, value: object) -> Fault | None:
        """``value`` unless ``test`` accepts it."""
        return None if self.test(value) else (self.rule, value)


@dataclass(frozen=True)
class OrNone(Constraint):
    """``None``, or what ``constraint`` accepts.

    Example:
        >>> check("seed", None, OrNone(NON_NEGATIVE_INT)) is None
        True
        >>> check("seed", -1, OrNone(NON_NEGATIVE_INT))
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.InvalidParameterError: seed must be a non-negative integer or None; got -1
    """  # noqa: E501

    constraint: Constraint

    def fault(self, value: object) -> Fault | None:
        """``constraint``'s fault, which ``None`` would not have had."""
        fault = None if value is None else self.constraint.fault(value)
        return None if fault is None else (f"{fault[0]} or None", fault[1])

    def convert(self, value: Any) -> Any:
        """``None``, or ``constraint``'s form."""
        return None if value is None else self.constraint.convert(value)


def below(other: str, bound: float) -> Interval:
    """A real number below ``other``'s value ``bound`` (``"must be below end_lr=0.1"``).

    Example:
        >>> check("start_lr", 1.0, below("end_lr", 0.1))
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.InvalidParameterError: start_lr must be below end_lr=0.1; got 1.0
    """
    return Interval(numbers.Real, None, bound, closed="neither", words=f"below {other}={bound!r}")


REAL: Final = Interval(numbers.Real, None, None, closed="neither")
POSITIVE_REAL: Final = Interval(
    numbers.Real, 0, None, closed="neither", words="a positive finite number"
)
NON_NEGATIVE_REAL: Final = Interval(
    numbers.Real, 0, None, closed="left", words="a non-negative finite number"
)
POSITIVE_INT: Final = Interval(
    numbers.Integral, 1, None, closed="left", words="a positive integer"
)
NON_NEGATIVE_INT: Final = Interval(
    numbers.Integral, 0, None, closed="left", words="a non-negative integer"
)


def _among(value: object, choices: Collection[object]) -> bool:
    try:
        return value in choices
    except TypeError:  # an unhashable value asked of a set
        return False


def _shown(value: object) -> str:
    """``repr(value)``; a NumPy scalar as the Python number it holds (``0.5``, not
    ``np.float64(0.5)``)."""
    if isinstance(value, numbers.Number) and callable(getattr(value, "item", None)):
        value = value.item()  # type: ignore[attr-defined]
    return repr(value)


# -- the same checks as functions, for the modules that call them ----------------------------


def check_real(name: str, value: object) -> float:
    """``value`` as a finite float, or an error naming ``name``."""
    return float(check(name, value, REAL))


def check_positive_real(name: str, value: object) -> float:
    """``value`` as a finite float above 0, or an error naming ``name``."""
    return float(check(name, value, POSITIVE_REAL))


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1, or an error naming ``name``."""
    return int(check(name, value, POSITIVE_INT))


def check_non_negative_int(name: str, value: object) -> int:
    """``value`` as an int >= 0, or an error naming ``name``."""
    return int(check(name, value, NON_NEGATIVE_INT))


def check_seed(name: str, value: object) -> int | None:
    """``value`` as an int >= 0 (or ``None``), or an error naming ``name``."""
    out = check(name, value, OrNone(NON_NEGATIVE_INT))
    return None if out is None else int(out)
