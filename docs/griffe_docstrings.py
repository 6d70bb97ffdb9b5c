"""A griffe extension for the API pages: read lrsearch's docstrings as the code means them.

lrsearch's docstrings are Google style, as pytest's doctests and Sphinx's napoleon read them;
griffe (mkdocstrings' parser) differs in two places, fixed here on the text it parses, never in
the code:

- the one runnable example of a docstring stands under ``Example:``; griffe reads only
  ``Examples:`` as code (anything else with a colon becomes an admonition of Markdown, where
  ``>>>`` lines turn into quotes);
- cross-references are Sphinx roles (``:class:`Task```, ``:func:`~lrsearch.space.seed_peak```),
  which Markdown shows as they are written; they become code spans with the name as Sphinx would
  show it (the last part after a ``~``).

mkdocs.yml loads this file through mkdocstrings' ``extensions`` option.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", flags=re.M)
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|data|attr|mod|exc|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxFlavour(griffe.Extension):
    """Renames ``Example:`` to ``Examples:`` and turns Sphinx roles into code spans."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _ROLE.sub(_role, text)
