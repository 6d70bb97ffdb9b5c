"""The whole report of a study as one self-contained HTML page (plotly.js embedded)."""

from __future__ import annotations

import datetime
import html
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from lrsearch.exceptions import LrsearchError
from lrsearch.pipeline.arms import RECIPES
from lrsearch.pipeline.verdicts import StudyWarning
from lrsearch.range_test import RangeTestResult
from lrsearch.report.figures import (
    comparison_figure,
    importance_figure,
    learning_curves_figure,
    parallel_figure,
    range_test_figure,
    schedules_figure,
    update_ratio_figure,
)
from lrsearch.report.reading import causes_in_words, has_complete, metric_name
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
from lrsearch.store import (
    ATTR_CHOSEN_LR,
    ATTR_COMPARISON,
    ATTR_CONFIG,
    ATTR_GRID,
    ATTR_RANGE_TEST,
    ATTR_WARNINGS,
    FINISHED,
    PRUNED_REASON,
    StoredStudy,
    trial_states,
)
from lrsearch.version import __version__

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["report_html"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; }
.meta { color: #666; margin-top: 0; }
.summary { background: #f5f7fa; border-left: 4px solid #1f77b4; padding: 0.6rem 1rem; }
.warnings { background: #fff6e5; border-left: 4px solid #e69500; padding: 0.6rem 1rem; }
.figure { margin: 1rem 0; } .missing { color: #888; font-style: italic; }
table.dataframe { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
table.dataframe th, table.dataframe td { border: 1px solid #ddd; padding: 0.25rem 0.6rem;
       text-align: left; }
table.dataframe th { background: #f0f0f0; }
"""


def _figure_html(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(height=480, margin={"t": 80}, template="plotly_white")
    body = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="figure">{body}</div>'


def _warnings_html(study: optuna.Study) -> list[str]:
    """The study's warnings, in a box at the top (nothing when there are none)."""
    stored = study.user_attrs.get(ATTR_WARNINGS) or []
    if not stored:
        return []
    items = "".join(f"<li>{html.escape(StudyWarning.from_dict(w).line())}</li>" for w in stored)
    return [f'<div class="warnings" id="warnings"><ul>{items}</ul></div>']


def _missing(text: str) -> str:
    return f'<p class="missing">{html.escape(text)}</p>'


def _table_html(frame: pd.DataFrame) -> str:
    if frame.empty:
        return _missing("nothing to show")
    return frame.to_html(index=False, border=0, escape=True, na_rep="")


def report_html(stored: StoredStudy) -> str:
    """The whole report of a stored study as one self-contained HTML page (plotly.js embedded).

    Args:
        stored: The study as :func:`lrsearch.store.load_stored` reads it.

    Returns:
        The HTML text. It loads no script from the network.

    Raises:
        LrsearchError: The study has no range test yet.
    """
    from plotly.offline import get_plotlyjs

    study, storage = stored.search, stored.storage
    if ATTR_RANGE_TEST not in study.user_attrs:
        raise LrsearchError(f"study {stored.name!r} in {storage} has no range test yet")
    name = study.study_name
    metric = metric_name(study)
    comparison = study.user_attrs.get(ATTR_COMPARISON)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>lrsearch report: {html.escape(name)}</title>",
        f"<style>{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>lrsearch report: study <code>{html.escape(name)}</code></h1>",
        (
            f'<p class="meta">{html.escape(storage)} · made '
            f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by lrsearch "
            f"{html.escape(__version__)} · metric: {html.escape(metric)} "
            f"({html.escape(study.direction.name.lower())})</p>"
        ),
        *_warnings_html(study),
        _summary_html(stored),
        "<h2>1. LR range test</h2>",
        _figure_html(range_test_figure(study), "fig-range-test"),
    ]
    rt = RangeTestResult.from_dict(study.user_attrs[ATTR_RANGE_TEST])
    parts += [f"<p>Note: {html.escape(line)}</p>" for line in rt.advice]
    bounds = bounds_table(study)
    if not bounds.empty:
        parts += ["<h3>The searched LR range, step by step</h3>", _table_html(bounds)]
    parts += [
        "<h2>2. LR schedules of the top trials</h2>",
        _figure_html(schedules_figure(study), "fig-schedules"),
        "<h2>3. Validation learning curves of the search</h2>",
        _figure_html(learning_curves_figure(study), "fig-learning-curves"),
        "<h2>4. Final comparison on the held-out test set</h2>",
    ]
    if comparison:
        parts += [
            _figure_html(comparison_figure(comparison, metric=metric), "fig-comparison"),
            _table_html(comparison_table(comparison, metric)),
            *_snapshots_html(comparison, metric),
            f"<p>{html.escape(verdict(comparison, study.direction.name.lower()))}.</p>",
        ]
    else:
        parts.append(_missing("no final comparison: the study ran with --skip-baselines"))
    parts.append("<h2>5. What mattered in the search</h2>")
    for make, div_id, what in (
        (importance_figure, "fig-importances", "parameter importances"),
        (parallel_figure, "fig-parallel", "parallel coordinates"),
    ):
        fig = make(study)
        parts.append(
            _figure_html(fig, div_id)
            if fig is not None
            else _missing(f"no {what}: too few completed trials")
        )
    parts += [
        "<h2>6. Top trials</h2>",
        _table_html(top_trials_table(study)),
        "<h2>7. Settings</h2>",
        _table_html(settings_table(stored)),
        "<h2>8. Diagnostics: the update/weight ratio, and why runs stopped</h2>",
        *_diagnostics_html(study),
        "<h2>9. History: every <code>lrsearch run</code> on this study</h2>",
        _table_html(history_table(stored)),
        "</body></html>",
    ]
    return "\n".join(parts)


def _snapshots_html(comparison: dict[str, Any], metric: str) -> list[str]:
    """The snapshot ensemble against the single model, seed by seed (nothing without it)."""
    frame = snapshots_table(comparison, metric)
    if frame.empty:
        return []
    return [
        "<h3>Snapshot ensemble: the tuned runs' models at their last cycle ends, averaged</h3>",
        _table_html(frame),
        f"<p>{html.escape(snapshot_sentence(comparison))}.</p>",
    ]


def _diagnostics_html(study: optuna.Study) -> list[str]:
    fig = update_ratio_figure(study)
    parts = [
        _figure_html(fig, "fig-update-ratio")
        if fig is not None
        else _missing("no update/weight ratios: the study ran with diagnostics = false"),
        "<p>CS231n's rule of thumb: a step should change the weights by about 1e-3 of their "
        "size. Far below, the learning rate barely moves them; far above, it overwrites them.</p>",
    ]
    frame = diagnostics_table(study)
    if frame.empty:
        return [*parts, _missing("no search trial stopped early or was flagged")]
    return [*parts, _table_html(frame)]


def _summary_html(stored: StoredStudy) -> str:
    study, constant_cv = stored.search, stored.constant_cv
    attrs = study.user_attrs
    metric = metric_name(study)
    comparison = attrs.get(ATTR_COMPARISON)
    items: list[tuple[str, str]] = []
    if comparison:
        items.append(("Verdict", verdict(comparison, study.direction.name.lower())))
        items.append(("Tuned schedule", comparison["tuned"]["schedule"]))
    elif has_complete(study):
        best = study.best_trial
        items.append(
            (
                "Best search trial",
                f"#{best.number}, validation {metric} {best.value:.4f}: "
                f"{best.user_attrs.get('schedule', '')}",
            )
        )
    if constant_cv is not None and ATTR_CHOSEN_LR in constant_cv.user_attrs:
        folds = attrs.get(ATTR_CONFIG, {}).get("cv_folds", "k")
        grid = constant_cv.user_attrs.get(ATTR_GRID, [])
        chosen = float(constant_cv.user_attrs[ATTR_CHOSEN_LR])
        items.append(
            (
                f"Constant LR chosen by {folds}-fold CV",
                f"{chosen:.3g} (from a grid of {len(grid)})",
            )
        )
    for recipe in RECIPES.values():
        scored = stored.stages.get(recipe.stage)
        done = [] if scored is None else scored.get_trials(deepcopy=False, states=FINISHED)
        if done:
            trial = done[0]
            label = (
                f"{recipe.name} ({recipe.optimizer}, {recipe.schedule().describe()}{recipe.note})"
            )
            said = (
                f"validation {metric} {float(trial.value):.4f}"  # type: ignore[arg-type]
                if trial.state == TrialState.COMPLETE
                else f"stopped: {trial.user_attrs.get(PRUNED_REASON, 'pruned')}"
            )
            items.append((label, said))
    counts = sorted(trial_states(study).items())
    items.append(("Search trials", ", ".join(f"{n} {s.lower()}" for s, n in counts)))
    causes = causes_in_words(study)
    if causes:
        items.append(("Why search trials stopped early", causes))
    body = "".join(f"<li><b>{html.escape(k)}:</b> {html.escape(v)}.</li>" for k, v in items)
    return f'<div class="summary"><ul>{body}</ul></div>'
