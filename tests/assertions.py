"""Assertion helpers shared by the test modules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from lrsearch import InvalidParameterError, LrsearchError


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
