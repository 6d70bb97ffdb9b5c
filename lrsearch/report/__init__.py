"""What a stored study looks like: figures, tables, the HTML report, the dashboard, the export.

Presentation only: everything here reads what the pipeline stored (through
:mod:`lrsearch.store`) and trains nothing; nothing in the pipeline or the store imports it.
Figures are plotly (Optuna's ``optuna.visualization`` draws the importances and the parallel
coordinates); tables are pandas; the report is one HTML file with plotly.js embedded, so it
opens offline.
"""

from __future__ import annotations

from lrsearch.report import dashboard, export, figures, html, tables
from lrsearch.report.dashboard import *  # noqa: F403  (re-exported: the dashboard's hooks)
from lrsearch.report.export import *  # noqa: F403  (re-exported: the export)
from lrsearch.report.figures import *  # noqa: F403  (re-exported: every figure)
from lrsearch.report.html import *  # noqa: F403  (re-exported: the HTML report)
from lrsearch.report.reading import search_steps_per_epoch
from lrsearch.report.tables import *  # noqa: F403  (re-exported: every table)

__all__ = [
    *dashboard.__all__,
    *export.__all__,
    *figures.__all__,
    *html.__all__,
    *tables.__all__,
    "search_steps_per_epoch",
]
