"""What ``lrsearch run`` leaves on optuna-dashboard: figures and a note on study NAME."""

from __future__ import annotations

from collections.abc import Mapping

import optuna

from lrsearch.pipeline.comparison import comparison_table, verdict
from lrsearch.pipeline.verdicts import StudyWarning
from lrsearch.report.figures import COMPARISON_PANELS, comparison_figure, range_test_figure
from lrsearch.report.reading import causes_in_words, has_complete, metric_name, tuned_trial
from lrsearch.report.tables import snapshot_sentence
from lrsearch.store import ATTR_RANGE_TEST, ATTR_RANGE_TESTS, ATTR_WARNINGS, FLAGS, trial_states

__all__ = ["DASHBOARD_GRAPHS", "attach_to_dashboard", "note_markdown"]

#: The graph ids under which ``lrsearch run`` saves its figures for optuna-dashboard (saving
#: again under the same id replaces the graph, so a resumed study does not pile them up).
DASHBOARD_GRAPHS: Mapping[str, str] = {
    "range_test": "lrsearch-range-test",
    "seeds": "lrsearch-comparison-seeds",
    "curves": "lrsearch-comparison-curves",
}


def note_markdown(study: optuna.Study) -> str:
    """The study note for optuna-dashboard: verdict, winning schedule, comparison table."""
    attrs = study.user_attrs
    metric = metric_name(study)
    comparison = attrs.get("comparison")
    states = {"COMPLETE": 0, "PRUNED": 0} | trial_states(study)
    lines = [f"## lrsearch: study `{study.study_name}`", ""]
    warnings = [StudyWarning.from_dict(w) for w in attrs.get(ATTR_WARNINGS) or []]
    if warnings:
        lines += [f"- **{w.line()}**" for w in warnings] + [""]
    rt = attrs.get(ATTR_RANGE_TEST)
    if rt is not None:
        lines.append(
            f"**Range test:** LR bounds {rt['low']:.3g} to {rt['high']:.3g}, "
            f"suggestion {rt['suggestion']:.3g}."
        )
        for name, each in attrs.get(ATTR_RANGE_TESTS, {}).items():  # one per optimizer
            lines.append(
                f"- {name}: bounds {each['low']:.3g} to {each['high']:.3g}, "
                f"suggestion {each['suggestion']:.3g}"
            )
        lines.append("")
    counts = ", ".join(f"{n} {s.lower()}" for s, n in states.items() if n)
    lines.append(f"**Search:** {counts} trials.")
    lines += _diagnostics_lines(study)
    if comparison:
        tuned = comparison["tuned"]
        lines += [
            "",
            f"**Winning schedule:** {tuned['schedule']}.",
            "",
            f"**Verdict:** {verdict(comparison, study.direction.name.lower())}.",
            "",
            f"Final comparison on the held-out test set ({len(tuned['test_metric_per_seed'])} "
            "seeds per arm):",
            "",
            comparison_table(comparison, metric).to_markdown(index=False),
        ]
        snapshots = snapshot_sentence(comparison)
        if snapshots:
            lines += ["", f"**Snapshot ensemble:** {snapshots}."]
    elif has_complete(study):
        best = study.best_trial
        lines += [
            "",
            f"**Best search trial:** #{best.number}, validation {metric} {best.value:.4f}: "
            f"{best.user_attrs.get('schedule', '')}. No final comparison yet.",
        ]
    lines += ["", f"Full report: `lrsearch report --study {study.study_name}`"]
    return "\n".join(lines) + "\n"


def _diagnostics_lines(study: optuna.Study) -> list[str]:
    """Why search trials stopped early, and what the diagnostics say of the winning trial."""
    lines = []
    causes = causes_in_words(study)
    if causes:
        lines += ["", f"**Why search trials stopped early:** {causes}."]
    number = tuned_trial(study)
    if number is None and has_complete(study):
        number = study.best_trial.number
    if number is not None:
        flags = study.trials[number].user_attrs.get(FLAGS) or []
        if flags:
            lines += ["", f"**Diagnostics of trial #{number}:** " + "; ".join(flags) + "."]
    return lines


def attach_to_dashboard(study: optuna.Study) -> None:
    """Save the range-test figure, the comparison figure and the note to study NAME.

    optuna-dashboard shows them on the study's page. Each is saved under a fixed id, so calling
    this again (a resumed study) replaces them.
    """
    from optuna_dashboard import save_note, save_plotly_graph_object

    if "range_test" in study.user_attrs:
        save_plotly_graph_object(
            study, range_test_figure(study), graph_object_id=DASHBOARD_GRAPHS["range_test"]
        )
    comparison = study.user_attrs.get("comparison")
    if comparison:
        # Two figures, not one with two panels: a dashboard card is half a page wide.
        for panel in COMPARISON_PANELS:
            save_plotly_graph_object(
                study,
                comparison_figure(comparison, metric=metric_name(study), panels=(panel,)),
                graph_object_id=DASHBOARD_GRAPHS[panel],
            )
    save_note(study, note_markdown(study))
