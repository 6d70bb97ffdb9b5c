"""Argument checks shared by lrsearch's modules; each failure names the argument and its value."""

from __future__ import annotations

import math
import numbers

from lrsearch.exceptions import InvalidParameterError


def check_real(name: str, value: object) -> float:
    """``value`` as a finite float, or an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(f"{name} must be a real number; got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidParameterError(f"{name} must be finite; got {out!r}")
    return out


def check_positive_real(name: str, value: object) -> float:
    """``value`` as a finite float above 0, or an error naming ``name``."""
    out = check_real(name, value)
    if not out > 0:
        raise InvalidParameterError(f"{name} must be a positive finite number; got {out!r}")
    return out


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1, or an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidParameterError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_non_negative_int(name: str, value: object) -> int:
    """``value`` as an int >= 0, or an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InvalidParameterError(f"{name} must be a non-negative integer; got {value!r}")
    return int(value)


def check_seed(name: str, value: object) -> int | None:
    """``value`` as an int >= 0 (or ``None``), or an error naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InvalidParameterError(
            f"{name} must be a non-negative integer or None; got {value!r}"
        )
    return int(value)
