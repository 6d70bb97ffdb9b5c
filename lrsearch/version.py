"""lrsearch's version, in a module of its own so that any layer can read it without importing
the package's front (which loads the rest lazily)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
