"""The whole report of a study as one self-contained HTML page (plotly.js embedded)."""

from __future__ import annotations

import datetime
import html
from typing import TYPE_CHECKING

import pandas as pd
from optuna.trial import TrialState

from lrsearch.exceptions import LrsearchError
from lrsearch.pipeline.arms import RECIPES
from lrsearch.report import figures, tables
from lrsearch.report.reading import StudyReading, causes_in_words, read
from lrsearch.store import ATTR_GRID, FINISHED, StopReason, StoredStudy, trial_states
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


def _warnings_html(reading: StudyReading) -> list[str]:
    """The study's warnings, in a box at the top (nothing when there are none)."""
    if not reading.warnings:
        return []
    items = "".join(f"<li>{html.escape(w.line())}</li>" for w in reading.warnings)
    return [f'<div class="warnings" id="warnings"><ul>{items}</ul></div>']


def _missing(text: str) -> str:
    return f'<p class="missing">{html.escape(text)}</p>'


def _table_html(frame: pd.DataFrame) -> str:
    if frame.empty:
        return _missing("nothing to show")
    return frame.to_html(index=False, border=0, escape=True, na_rep="")


def report_html(stored: StoredStudy | StudyReading) -> str:
    """The whole report of a stored study as one self-contained HTML page (plotly.js embedded).

    Args:
        stored: The study as :func:`lrsearch.store.load_stored` reads it.

    Returns:
        The HTML text. It loads no script from the network.

    Raises:
        LrsearchError: The study has no range test yet.
    """
    reading = read(stored)
    if reading.range_test is None:
        where = reading.stored
        raise LrsearchError(f"study {where.name!r} in {where.storage} has no range test yet")
    return "\n".join(
        [
            *_head(reading),
            *_warnings_html(reading),
            _summary_html(reading),
            *_range_test_html(reading),
            "<h2>2. LR schedules of the top trials</h2>",
            _figure_html(figures.schedules_figure(reading), "fig-schedules"),
            "<h2>3. Validation learning curves of the search</h2>",
            _figure_html(figures.learning_curves_figure(reading), "fig-learning-curves"),
            "<h2>4. Final comparison on the held-out test set</h2>",
            *_comparison_html(reading),
            "<h2>5. What mattered in the search</h2>",
            *_search_html(reading),
            "<h2>6. Top trials</h2>",
            _table_html(tables.top_trials_table(reading)),
            "<h2>7. Settings</h2>",
            _table_html(tables.settings_table(reading)),
            *_cost_html(reading),
            "<h2>8. Diagnostics: the update/weight ratio, and why runs stopped</h2>",
            *_diagnostics_html(reading),
            "<h2>9. History: every <code>lrsearch run</code> on this study</h2>",
            _table_html(tables.history_table(reading)),
            "</body></html>",
        ]
    )


def _head(reading: StudyReading) -> list[str]:
    """The page's head (plotly.js inlined) and its title line."""
    from plotly.offline import get_plotlyjs

    name = html.escape(reading.search.study_name)
    made = datetime.datetime.now().astimezone()
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>lrsearch report: {name}</title>",
        f"<style>{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>lrsearch report: study <code>{name}</code></h1>",
        (
            f'<p class="meta">{html.escape(reading.stored.storage)} · made '
            f"{made:%Y-%m-%d %H:%M %Z} by lrsearch "
            f"{html.escape(__version__)} · metric: {html.escape(reading.metric)} "
            f"({html.escape(reading.direction)})</p>"
        ),
    ]


def _range_test_html(reading: StudyReading) -> list[str]:
    """Section 1: the range test, its advice, and the searched range step by step."""
    rt = reading.range_test
    parts = [
        "<h2>1. LR range test</h2>",
        _figure_html(figures.range_test_figure(reading), "fig-range-test"),
    ]
    parts += [f"<p>Note: {html.escape(line)}</p>" for line in rt.advice] if rt else []
    bounds = tables.bounds_table(reading)
    if not bounds.empty:
        parts += ["<h3>The searched LR range, step by step</h3>", _table_html(bounds)]
    return parts


def _comparison_html(reading: StudyReading) -> list[str]:
    """Section 4: the final comparison's figure, table, snapshots and verdict."""
    arms, metric = reading.arms, reading.metric
    if not arms:
        return [_missing("no final comparison: the study ran with --skip-baselines")]
    return [
        _figure_html(figures.comparison_figure(arms, metric=metric), "fig-comparison"),
        _table_html(tables.comparison_table(arms, metric)),
        *_snapshots_html(reading),
        f"<p>{html.escape(tables.verdict(arms, reading.direction))}.</p>",
    ]


def _search_html(reading: StudyReading) -> list[str]:
    """Section 5: Optuna's importances and parallel coordinates (or why they are missing)."""
    parts = []
    for make, div_id, what in (
        (figures.importance_figure, "fig-importances", "parameter importances"),
        (figures.parallel_figure, "fig-parallel", "parallel coordinates"),
    ):
        fig = make(reading)
        parts.append(
            _figure_html(fig, div_id)
            if fig is not None
            else _missing(f"no {what}: too few completed trials")
        )
    return parts


def _snapshots_html(reading: StudyReading) -> list[str]:
    """The snapshot ensemble against the single model, seed by seed (nothing without it)."""
    frame = tables.snapshots_table(reading.arms, reading.metric)
    if frame.empty:
        return []
    return [
        "<h3>Snapshot ensemble: the tuned runs' models at their last cycle ends, averaged</h3>",
        _table_html(frame),
        f"<p>{html.escape(tables.snapshot_sentence(reading.arms))}.</p>",
    ]


def _diagnostics_html(reading: StudyReading) -> list[str]:
    fig = figures.update_ratio_figure(reading)
    parts = [
        _figure_html(fig, "fig-update-ratio")
        if fig is not None
        else _missing("no update/weight ratios: the study ran with diagnostics = false"),
        "<p>CS231n's rule of thumb: a step should change the weights by about 1e-3 of their "
        "size. Far below, the learning rate barely moves them; far above, it overwrites them.</p>",
    ]
    frame = tables.diagnostics_table(reading)
    if frame.empty:
        return [*parts, _missing("no search trial stopped early or was flagged")]
    return [*parts, _table_html(frame)]


def _summary_html(reading: StudyReading) -> str:
    """The box at the top: the verdict (or the best trial so far), the baselines, the search."""
    arms, best = reading.arms, reading.best_in_words()
    items: list[tuple[str, str]] = []
    if arms:
        items.append(("Verdict", tables.verdict(arms, reading.direction)))
        items.append(("Tuned schedule", arms["tuned"].schedule))
    elif best is not None:
        items.append(("Best search trial", best))
    constant_cv = reading.stored.constant_cv
    if constant_cv is not None and reading.chosen_lr is not None:
        folds = reading.config.get("cv_folds", "k")
        grid = constant_cv.user_attrs.get(ATTR_GRID, [])
        items.append(
            (
                f"Constant LR chosen by {folds}-fold CV",
                f"{reading.chosen_lr:.3g} (from a grid of {len(grid)})",
            )
        )
    items += _recipes(reading)
    counts = sorted(trial_states(reading.search).items())
    searched = ", ".join(f"{n} {s.lower()}" for s, n in counts)
    fidelity = reading.fidelity_in_words()
    items.append(("Search trials", searched if fidelity is None else f"{searched}, {fidelity}"))
    causes = causes_in_words(reading)
    if causes:
        items.append(("Why search trials stopped early", causes))
    if _counted(reading):
        assert reading.cost is not None
        items.append(("Cost", reading.cost.describe()))
    body = "".join(f"<li><b>{html.escape(k)}:</b> {html.escape(v)}.</li>" for k, v in items)
    return f'<div class="summary"><ul>{body}</ul></div>'


def _counted(reading: StudyReading) -> bool:
    """Whether the study's units counted their steps. A study stored before they did shows no
    cost: its report stays the one its release made (the CLI and the export estimate it)."""
    return reading.cost is not None and reading.cost.recorded


def _cost_html(reading: StudyReading) -> list[str]:
    """What each stage trained, in optimizer steps and full runs (nothing without a count)."""
    if not _counted(reading):
        return []
    return [
        "<h3>What it cost: the optimizer steps of every unit, in full runs</h3>",
        _table_html(tables.cost_table(reading)),
        "<p>A full run is one run of the final comparison (the epochs over all of train). "
        "Tuning decided the tuned arm; verification only measures it. Evaluation is not "
        "counted.</p>",
    ]


def _recipes(reading: StudyReading) -> list[tuple[str, str]]:
    """Each fixed recipe's validation run: what it scored, or why it stopped."""
    items = []
    for recipe in RECIPES.values():
        scored = reading.stored.stages.get(recipe.stage)
        done = [] if scored is None else scored.get_trials(deepcopy=False, states=FINISHED)
        if done:
            trial = done[0]
            label = (
                f"{recipe.name} ({recipe.optimizer}, {recipe.schedule().describe()}{recipe.note})"
            )
            stop = StopReason.from_attrs(trial.user_attrs)
            said = (
                f"validation {reading.metric} {float(trial.value):.4f}"  # type: ignore[arg-type]
                if trial.state == TrialState.COMPLETE
                else f"stopped: {'pruned' if stop is None else stop.words}"
            )
            items.append((label, said))
    return items
