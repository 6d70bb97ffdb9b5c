"""What ``lrsearch run`` leaves on optuna-dashboard: figures and a note on study NAME."""

from __future__ import annotations

from collections.abc import Mapping

from lrsearch.report.figures import COMPARISON_PANELS, comparison_figure, range_test_figure
from lrsearch.report.reading import StudyReading, causes_in_words, read
from lrsearch.report.tables import comparison_table, snapshot_sentence, verdict
from lrsearch.store import FLAGS, StoredStudy, trial_states

__all__ = ["DASHBOARD_GRAPHS", "attach_to_dashboard", "note_markdown"]

#: The graph ids under which ``lrsearch run`` saves its figures for optuna-dashboard (saving
#: again under the same id replaces the graph, so a resumed study does not pile them up).
DASHBOARD_GRAPHS: Mapping[str, str] = {
    "range_test": "lrsearch-range-test",
    "seeds": "lrsearch-comparison-seeds",
    "curves": "lrsearch-comparison-curves",
}


def note_markdown(study: StoredStudy | StudyReading) -> str:
    """The study note for optuna-dashboard: verdict, winning schedule, comparison table."""
    reading = read(study)
    search, arms = reading.search, reading.arms
    states = {"COMPLETE": 0, "PRUNED": 0} | trial_states(search)
    lines = [f"## lrsearch: study `{search.study_name}`", ""]
    if reading.warnings:
        lines += [f"- **{w.line()}**" for w in reading.warnings] + [""]
    lines += _range_test_lines(reading)
    counts = ", ".join(f"{n} {s.lower()}" for s, n in states.items() if n)
    fidelity = reading.fidelity_in_words()
    lines.append(f"**Search:** {counts} trials" + ("." if fidelity is None else f", {fidelity}."))
    lines += _diagnostics_lines(reading)
    best = reading.best_in_words()
    if arms:
        tuned = arms["tuned"]
        lines += [
            "",
            f"**Winning schedule:** {tuned.schedule}.",
            "",
            f"**Verdict:** {verdict(arms, reading.direction)}.",
            "",
            f"Final comparison on the held-out test set ({len(tuned.test_metric_per_seed)} "
            "seeds per arm):",
            "",
            comparison_table(arms, reading.metric).to_markdown(index=False),
        ]
        snapshots = snapshot_sentence(arms)
        if snapshots:
            lines += ["", f"**Snapshot ensemble:** {snapshots}."]
    elif best is not None:
        lines += ["", f"**Best search trial:** {best}. No final comparison yet."]
    if reading.cost is not None:
        lines += ["", f"**Cost:** {reading.cost.describe()}."]
    lines += ["", f"Full report: `lrsearch report --study {search.study_name}`"]
    return "\n".join(lines) + "\n"


def _range_test_lines(reading: StudyReading) -> list[str]:
    """The range test's bounds and suggestion (one line per optimizer when several)."""
    rt = reading.range_test
    if rt is None:
        return []
    lines = [
        f"**Range test:** LR bounds {rt.bounds.low:.3g} to {rt.bounds.high:.3g}, "
        f"suggestion {rt.suggestion:.3g}."
    ]
    if len(reading.range_tests) > 1:
        lines += [
            f"- {name}: bounds {each.bounds.low:.3g} to {each.bounds.high:.3g}, "
            f"suggestion {each.suggestion:.3g}"
            for name, each in reading.range_tests.items()
        ]
    return [*lines, ""]


def _diagnostics_lines(reading: StudyReading) -> list[str]:
    """Why search trials stopped early, and what the diagnostics say of the winning trial."""
    lines = []
    causes = causes_in_words(reading)
    if causes:
        lines += ["", f"**Why search trials stopped early:** {causes}."]
    number = reading.tuned_trial
    best = reading.best_trial()
    if number is None and best is not None:
        number = best.number
    if number is not None:
        flags = reading.search.trials[number].user_attrs.get(FLAGS) or []
        if flags:
            lines += ["", f"**Diagnostics of trial #{number}:** " + "; ".join(flags) + "."]
    return lines


def attach_to_dashboard(study: StoredStudy | StudyReading) -> None:
    """Save the range-test figure, the comparison figure and the note to study NAME.

    optuna-dashboard shows them on the study's page. Each is saved under a fixed id, so calling
    this again (a resumed study) replaces them.
    """
    from optuna_dashboard import save_note, save_plotly_graph_object

    reading = read(study)
    search = reading.search
    if reading.range_test is not None:
        save_plotly_graph_object(
            search, range_test_figure(reading), graph_object_id=DASHBOARD_GRAPHS["range_test"]
        )
    if reading.arms:
        # Two figures, not one with two panels: a dashboard card is half a page wide.
        for panel in COMPARISON_PANELS:
            save_plotly_graph_object(
                search,
                comparison_figure(reading.arms, metric=reading.metric, panels=(panel,)),
                graph_object_id=DASHBOARD_GRAPHS[panel],
            )
    save_note(search, note_markdown(reading))
