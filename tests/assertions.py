"""Assertion helpers shared by the test modules."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from lrsearch import InvalidParameterError, LrsearchError
from lrsearch.range_test.result import median_lr
from lrsearch.space import seed_peak


@contextmanager
def invalid(name: str, *values: object) -> Iterator[pytest.ExceptionInfo[ValueError]]:
    """Expect an InvalidParameterError naming ``name`` and (in order) each of ``values``."""
    pattern = rf"\b{re.escape(name)}\b"
    for value in values:
        pattern += rf".*{re.escape(repr(value))}(?!\d)"
    with pytest.raises(ValueError, match=pattern) as info:
        yield info
    assert isinstance(info.value, LrsearchError)
    assert isinstance(info.value, InvalidParameterError)


def seed_top(kind: str, rt: Mapping[str, Any], *, high: float | None = None) -> float:
    """Where a study's enqueued seed of ``kind`` peaks, from its stored range test ``rt``:
    Smith's CLR at the search's ``high`` (default the range test's), 1cycle at the sweeps'
    median steepest fall (kept in [low, high]), the others at ``seed_peak`` of the
    suggestion."""
    top = float(rt["high"]) if high is None else high
    if kind == "triangular2":
        return top
    if kind == "onecycle":
        steepest = median_lr([s["steepest"] for s in rt["sweeps"]])
        return min(max(steepest, rt["low"]), top)
    return seed_peak(rt["suggestion"], rt["high"])
