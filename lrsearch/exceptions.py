"""The exceptions lrsearch raises.

Every error lrsearch raises on purpose is an :class:`LrsearchError`, so callers (and the CLI,
which turns one into a one-line message and exit code 2) can catch them all at once. Errors
about a bad argument or setting are also :class:`ValueError`, the way scikit-learn's
``InvalidParameterError`` is, so code that already catches ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["InvalidParameterError", "LrsearchError"]


class LrsearchError(Exception):
    """Root of every error lrsearch raises on purpose."""


class InvalidParameterError(LrsearchError, ValueError):
    """An argument, field or setting has a bad value; the message names it and the value."""
