"""What a stored study looks like: figures, tables, the HTML report, the dashboard, the export.

Presentation only: everything here reads what the pipeline stored (through
:mod:`lrsearch.store`) and trains nothing; nothing in the pipeline or the store imports it.
Figures are plotly (Optuna's ``optuna.visualization`` draws the importances and the parallel
coordinates); tables are pandas; the report is one HTML file with plotly.js embedded, so it
opens offline.
"""

from __future__ import annotations

from lrsearch.report.dashboard import DASHBOARD_GRAPHS, attach_to_dashboard, note_markdown
from lrsearch.report.export import EXPORT_COLUMNS, export_frame
from lrsearch.report.figures import (
    ARM_COLORS,
    COMPARISON_PANELS,
    comparison_figure,
    importance_figure,
    learning_curves_figure,
    parallel_figure,
    range_test_figure,
    schedules_figure,
    update_ratio_figure,
)
from lrsearch.report.html import report_html
from lrsearch.report.reading import search_steps_per_epoch
from lrsearch.report.tables import (
    bounds_table,
    comparison_table,
    diagnostics_table,
    history_table,
    settings_table,
    snapshot_sentence,
    snapshots_table,
    top_trials_table,
    verdict,
)

__all__ = [
    "ARM_COLORS",
    "COMPARISON_PANELS",
    "DASHBOARD_GRAPHS",
    "EXPORT_COLUMNS",
    "attach_to_dashboard",
    "bounds_table",
    "comparison_figure",
    "comparison_table",
    "diagnostics_table",
    "export_frame",
    "history_table",
    "importance_figure",
    "learning_curves_figure",
    "note_markdown",
    "parallel_figure",
    "range_test_figure",
    "report_html",
    "schedules_figure",
    "search_steps_per_epoch",
    "settings_table",
    "snapshot_sentence",
    "snapshots_table",
    "top_trials_table",
    "update_ratio_figure",
    "verdict",
]
