"""What a report shows, with what changes from one making to the next taken out.

Used by ``test_legacy.py`` to compare the report of a study stored by an earlier release with
the one that release made (kept in ``tests/fixtures/``), and by hand to refresh them.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["figures", "text"]

_CALL = re.compile(r'Plotly\.newPlot\(\s*"([^"]+)",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{', re.S)
#: Figures drawn from a random estimate (fANOVA's forest): only their trace names compare.
_RANDOM = frozenset({"fig-importances"})


def text(html: str) -> str:
    """The report without its scripts, and without where and when it was made."""
    out = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    where_when = r'<p class="meta">[^<]*? · made [^<]*? · '
    return re.sub(where_when, '<p class="meta">WHERE · WHEN · ', out)


def figures(html: str) -> dict[str, Any]:
    """Each figure's traces by the id of its ``div`` (names only for the random ones)."""
    out: dict[str, Any] = {}
    for div, data, _layout in _CALL.findall(html):
        traces = json.loads(data)
        if div in _RANDOM:
            traces = [t.get("name") for t in traces]
        out[div] = traces
    return out
