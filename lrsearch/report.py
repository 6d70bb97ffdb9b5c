"""What a stored study looks like: plotly figures, the HTML report and the dashboard attachments.

Everything here reads what :func:`lrsearch.study.run_study` stored (the three Optuna studies and
their user attrs) and trains nothing. The figures are plotly; Optuna's own
``optuna.visualization`` draws the parameter importances and the parallel coordinates; tables
are pandas. The report is one HTML file with plotly.js embedded, so it opens offline.

This module does not import :mod:`lrsearch.study` (which calls :func:`attach_to_dashboard`);
it takes Optuna ``Study`` objects, and the CLI loads them.
"""

from __future__ import annotations

import datetime
import html
import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from lrsearch.compare import ARMS
from lrsearch.range_test import RangeTestResult
from lrsearch.schedules import Schedule
from lrsearch.tasks._task import steps_per_epoch as _steps_per_epoch

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "ARM_COLORS",
    "COMPARISON_PANELS",
    "DASHBOARD_GRAPHS",
    "attach_to_dashboard",
    "comparison_figure",
    "comparison_table",
    "learning_curves_figure",
    "note_markdown",
    "range_test_figure",
    "report_html",
    "same_params",
    "schedules_figure",
    "search_steps_per_epoch",
    "top_trials",
    "top_trials_table",
    "trial_states",
    "verdict",
]

_log = logging.getLogger(__name__)

ARM_COLORS: Mapping[str, str] = {
    "tuned": "#1f77b4",
    "constant-cv": "#ff7f0e",
    "adam-3e-4": "#2ca02c",
}
#: The graph ids under which ``lrsearch run`` saves its figures for optuna-dashboard (saving
#: again under the same id replaces the graph, so a resumed study does not pile them up).
DASHBOARD_GRAPHS: Mapping[str, str] = {
    "range_test": "lrsearch-range-test",
    "seeds": "lrsearch-comparison-seeds",
    "curves": "lrsearch-comparison-curves",
}
_PALETTE = ("#1f77b4", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_LEVEL = 0.95


# --- data read back from a study -------------------------------------------------------------


def _metric(study: optuna.Study) -> str:
    return str(study.user_attrs.get("metric") or "metric")


def _maximize(study: optuna.Study) -> bool:
    return study.direction == optuna.study.StudyDirection.MAXIMIZE


def search_steps_per_epoch(study: optuna.Study) -> int:
    """Optimizer steps per epoch of the search trials (stored by ``run_study``).

    A study stored before this was recorded gets it from the task size, the validation fraction
    and the batch size, which is what the split gives up to rounding.
    """
    stored = study.user_attrs.get("steps_per_epoch", {})
    if "search" in stored:
        return int(stored["search"])
    cfg = study.user_attrs.get("config", {})
    n_train = int(study.user_attrs.get("task", {}).get("n_train", 1))
    n_fit = n_train - math.ceil(n_train * float(cfg.get("validation_fraction", 0.2)))
    return _steps_per_epoch(max(1, n_fit), int(cfg.get("batch_size", 1)))


def _epochs(study: optuna.Study) -> int:
    return int(study.user_attrs.get("config", {}).get("epochs", 1))


def top_trials(study: optuna.Study, n: int = 5) -> list[FrozenTrial]:
    """The ``n`` best completed search trials, best first, one per distinct set of params."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: float(t.value), reverse=_maximize(study))  # type: ignore[arg-type]
    out: list[FrozenTrial] = []
    for trial in ranked:
        if all(not same_params(trial.params, t.params) for t in out):
            out.append(trial)
        if len(out) == n:
            break
    return out


def same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two trials' params are the same (floats equal to 12 significant digits)."""
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, float) or isinstance(other, float):
            if not math.isclose(float(value), float(other), rel_tol=1e-12):
                return False
        elif value != other:
            return False
    return True


def _tuned_trial(study: optuna.Study) -> int | None:
    """Number of the search trial whose schedule is the tuned arm (``None`` if unknown)."""
    tuned = (study.user_attrs.get("comparison") or {}).get("tuned")
    if tuned is None:
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if same_params(trial.params, tuned.get("params", {})):
            return trial.number
    return None


# --- figures ---------------------------------------------------------------------------------


def range_test_figure(study: optuna.Study) -> go.Figure:
    """The stored range test: raw and smoothed loss against LR, bounds shaded, suggestion."""
    rt = RangeTestResult.from_dict(study.user_attrs["range_test"])
    fig = rt.figure()
    fig.update_layout(legend={"orientation": "h", "y": -0.18})
    return fig


def schedules_figure(study: optuna.Study, *, top: int = 5) -> go.Figure:
    """LR per optimizer step of the best search trials, as they were trained.

    The range-test bounds are shaded and the cross-validated constant LR (when there is one) is
    a dashed line, so each schedule can be read against both.
    """
    import plotly.graph_objects as go

    spe = search_steps_per_epoch(study)
    epochs = _epochs(study)
    steps = spe * epochs
    x = np.arange(steps)
    tuned = _tuned_trial(study)
    fig = go.Figure()
    rt = study.user_attrs.get("range_test")
    if rt is not None:
        fig.add_hrect(
            y0=rt["low"], y1=rt["high"], fillcolor="rgba(44, 160, 44, 0.10)", line_width=0
        )
    shown: list[float] = []
    for i, trial in enumerate(top_trials(study, top)):
        schedule = Schedule.from_params(trial.params, steps_per_epoch=spe, epochs=epochs)
        lrs = schedule.lrs(steps)
        shown += [float(lrs.min()), float(lrs.max())]
        chosen = trial.number == tuned
        label = f"#{trial.number} {trial.params['schedule']}" + (" (tuned arm)" if chosen else "")
        fig.add_trace(
            go.Scatter(
                x=x,
                y=lrs,
                mode="lines",
                name=label,
                line={"color": _PALETTE[i % len(_PALETTE)], "width": 3 if chosen else 1.5},
                customdata=x / spe,
                hovertemplate=(
                    f"trial {trial.number}: {html.escape(schedule.describe(spe))}<br>"
                    "step %{x} (epoch %{customdata:.2f})<br>LR %{y:.3g}<extra></extra>"
                ),
            )
        )
    constant_lr = _constant_lr(study)
    if constant_lr is not None:
        fig.add_trace(
            go.Scatter(
                x=[0, steps - 1],
                y=[constant_lr, constant_lr],
                mode="lines",
                name=f"constant-cv LR {constant_lr:.3g}",
                line={"color": ARM_COLORS["constant-cv"], "dash": "dash"},
            )
        )
    yaxis: dict[str, Any] = {"title": "learning rate", "type": "log"}
    if shown and rt is not None:
        # 1cycle ends orders of magnitude below its start; do not let that tail flatten the rest.
        low = max(min(shown), rt["low"] / 100)
        high = max(max(shown), rt["high"])
        yaxis["range"] = [math.log10(low) - 0.2, math.log10(high) + 0.2]
    fig.update_layout(
        title=f"LR schedules of the top {top} search trials (shaded: range-test bounds)",
        xaxis={"title": f"training step (optimizer steps, {spe} per epoch)"},
        yaxis=yaxis,
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _constant_lr(study: optuna.Study) -> float | None:
    params = (study.user_attrs.get("comparison") or {}).get("constant-cv", {}).get("params", {})
    lr = params.get("lr")
    return None if lr is None else float(lr)


def learning_curves_figure(study: optuna.Study) -> go.Figure:
    """Validation metric per epoch of every search trial; pruned trials dotted and grey."""
    import plotly.graph_objects as go

    metric = _metric(study)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    best = study.best_trial.number if _has_complete(study) else None
    tuned = _tuned_trial(study)
    fig = go.Figure()
    shown: set[str] = set()
    finals: list[float] = []
    late: list[float] = []

    def order(t: FrozenTrial) -> tuple[bool, bool, bool]:
        return (t.number == tuned, t.number == best, t.state == TrialState.COMPLETE)

    for trial in sorted(trials, key=order):
        epochs = sorted(k for k, v in trial.intermediate_values.items() if math.isfinite(v))
        if not epochs:
            continue
        values = [trial.intermediate_values[e] for e in epochs]
        pruned = trial.state == TrialState.PRUNED
        late += values[1:]
        if not pruned:
            finals.append(values[-1])
        if trial.number == tuned and tuned != best:
            group, style = f"tuned arm #{tuned} (best by CV)", {"color": "#9467bd", "width": 3}
        elif trial.number == best:
            label = "best trial" + (" and tuned arm" if tuned == best else "")
            group, style = f"{label} #{best}", {"color": "#d62728", "width": 3}
        elif pruned:
            group, style = "pruned", {"color": "rgba(127, 127, 127, 0.6)", "dash": "dot"}
        else:
            group, style = "completed", {"color": "rgba(31, 119, 180, 0.45)", "width": 1.5}
        why = trial.user_attrs.get("pruned_reason", "")
        words = trial.user_attrs.get("schedule", trial.params.get("schedule", ""))
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=values,
                mode="lines+markers" if pruned else "lines",
                marker={"symbol": "x", "size": [0] * (len(epochs) - 1) + [8]} if pruned else None,
                line=style,
                name=group,
                legendgroup=group,
                showlegend=group not in shown,
                hovertemplate=(
                    f"trial {trial.number} ({trial.state.name.lower()}): "
                    f"{html.escape(str(words))}<br>{html.escape(str(why))}<br>"
                    f"epoch %{{x}}: {metric} %{{y:.4f}}<extra></extra>"
                ),
            )
        )
        shown.add(group)
    counts = {
        s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED)
    }
    fig.update_layout(
        title=(
            f"Validation {metric} of the search trials: {counts[TrialState.COMPLETE]} completed, "
            f"{counts[TrialState.PRUNED]} pruned (x marks where a pruned trial stopped)"
        ),
        xaxis={"title": "epoch"},
        yaxis={"title": f"validation {metric}"},
        legend={"orientation": "h", "y": -0.2},
    )
    if finals and late:
        # Zoom on where trials finish: the first epoch and the worst pruned runs can sit far off
        # (double-click the plot for everything).
        lo, hi = float(np.quantile(late, 0.05)), max(late)
        lo, hi = min(lo, min(finals)), max(hi, max(finals))
        pad = 0.05 * (hi - lo) or 0.01
        fig.update_yaxes(range=[lo - pad, hi + pad])
    return fig


def trial_states(study: optuna.Study) -> dict[str, int]:
    """How many trials of ``study`` are in each state, by state name (``COMPLETE``, ...)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def _has_complete(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _mean_interval(values: Sequence[float], level: float = _LEVEL) -> tuple[float, float, float]:
    """Mean of ``values`` and its Student-t interval (collapsed to the mean when it cannot be)."""
    a = np.asarray(values, dtype=float)
    mean = float(a.mean())
    if len(a) < 2 or float(a.std()) == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(level, len(a) - 1, loc=mean, scale=stats.sem(a))
    return mean, float(low), float(high)


COMPARISON_PANELS = ("seeds", "curves")


def comparison_figure(
    comparison: Mapping[str, Any],
    *,
    metric: str = "metric",
    panels: Sequence[str] = COMPARISON_PANELS,
) -> go.Figure:
    """The final comparison: per-seed test scores with mean and 95% interval per arm
    (``"seeds"``, left); the mean test curve per epoch of each arm with its epochs-to-target
    marked (``"curves"``, right). ``panels`` picks one of them for narrow places (the
    dashboard's cards).
    """
    from plotly.subplots import make_subplots

    if not panels or any(p not in COMPARISON_PANELS for p in panels):
        raise ValueError(f"panels must be some of {COMPARISON_PANELS}; got {panels!r}")
    arms = [a for a in ARMS if a in comparison]
    titles = {
        "seeds": f"final test {metric}: seeds, mean, {_LEVEL:.0%} interval",
        "curves": f"test {metric} per epoch (mean over seeds)",
    }
    both = len(panels) == 2
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        column_widths=[0.4, 0.6] if both else None,
        subplot_titles=[titles[p] for p in panels] if both else None,
    )
    seeds = {"row": 1, "col": list(panels).index("seeds") + 1} if "seeds" in panels else None
    curves = {"row": 1, "col": list(panels).index("curves") + 1} if "curves" in panels else None
    for arm in arms:
        if seeds is not None:
            _seed_traces(fig, arm, comparison[arm], seeds)
        if curves is not None:
            _curve_traces(fig, arm, comparison[arm], curves)
    target = next((comparison[a].get("target") for a in arms if "target" in comparison[a]), None)
    if target is not None and curves is not None:
        fig.add_hline(
            y=target,
            line_dash="dash",
            line_color="#7f7f7f",
            annotation_text=f"target {target:.4f} (constant-cv final mean)",
            annotation_position="top left",
            **curves,
        )
    if seeds is not None:
        fig.update_xaxes(title_text="arm", **seeds)
        fig.update_yaxes(title_text=f"test {metric}", **seeds)
    if curves is not None:
        _zoom_curves(fig, comparison, arms, curves)
        fig.update_xaxes(title_text="epoch", **curves)
        fig.update_yaxes(title_text=f"test {metric}", **curves)
    if both:
        title = "Final comparison on the held-out test set (stars: first epoch at the target)"
    elif seeds is not None:
        title = f"Final comparison: test {metric} per seed, mean ± {_LEVEL:.0%} CI"
    else:
        title = f"Final comparison: test {metric} per epoch (★ target)"
    fig.update_layout(title=title, legend={"orientation": "h", "y": -0.2})
    return fig


def _seed_traces(fig: go.Figure, arm: str, data: Mapping[str, Any], at: Mapping[str, int]) -> None:
    """One arm's per-seed test scores, and its mean with the 95% interval as error bars."""
    import plotly.graph_objects as go

    color = ARM_COLORS.get(arm, "#7f7f7f")
    per_seed = [float(v) for v in data["test_metric_per_seed"]]
    mean, low, high = _mean_interval(per_seed)
    fig.add_trace(
        go.Scatter(
            x=[arm] * len(per_seed),
            y=per_seed,
            mode="markers",
            marker={"color": color, "size": 8, "opacity": 0.55},
            name=f"{arm}: per seed",
            legendgroup=arm,
            showlegend=False,
            customdata=data.get("seeds", list(range(len(per_seed)))),
            hovertemplate=f"{arm}, seed %{{customdata}}: %{{y:.4f}}<extra></extra>",
        ),
        **at,
    )
    fig.add_trace(
        go.Scatter(
            x=[arm],
            y=[mean],
            mode="markers",
            marker={"color": color, "size": 16, "symbol": "line-ew-open", "line": {"width": 3}},
            error_y={"type": "data", "array": [high - mean], "arrayminus": [mean - low]},
            name=f"{arm}: mean",
            legendgroup=arm,
            showlegend=False,
            hovertemplate=(
                f"{arm}: mean %{{y:.4f}}, {_LEVEL:.0%} interval "
                f"[{low:.4f}, {high:.4f}]<extra></extra>"
            ),
        ),
        **at,
    )


def _curve_traces(
    fig: go.Figure, arm: str, data: Mapping[str, Any], at: Mapping[str, int]
) -> None:
    """One arm's mean test curve per epoch, with a star at its first epoch at the target."""
    import plotly.graph_objects as go

    color = ARM_COLORS.get(arm, "#7f7f7f")
    curve = [float(v) for v in data["test_curve_mean"]]
    fig.add_trace(
        go.Scatter(
            x=list(range(1, len(curve) + 1)),
            y=curve,
            mode="lines",
            line={"color": color, "width": 2},
            name=arm,
            legendgroup=arm,
            hovertemplate=f"{arm}, epoch %{{x}}: %{{y:.4f}}<extra></extra>",
        ),
        **at,
    )
    reached = data.get("epochs_to_target")
    if reached is not None:
        fig.add_trace(
            go.Scatter(
                x=[reached],
                y=[curve[reached - 1]],
                mode="markers+text",
                marker={"color": color, "size": 11, "symbol": "star"},
                text=[f"{reached}"],
                textposition="bottom center",
                textfont={"color": color},
                name=f"{arm} reaches the target",
                legendgroup=arm,
                showlegend=False,
                hovertemplate=f"{arm} reaches the target in epoch {reached}<extra></extra>",
            ),
            **at,
        )


def _zoom_curves(
    fig: go.Figure, comparison: Mapping[str, Any], arms: Sequence[str], where: Mapping[str, int]
) -> None:
    """Show the last three quarters of the curves' range, where the arms differ."""
    values = [v for a in arms for v in comparison[a]["test_curve_mean"] if math.isfinite(v)]
    if not values:
        return
    lo, hi = min(values), max(values)
    finals = [comparison[a]["test_metric_mean"] for a in arms]
    span = hi - lo
    if span <= 0:
        return
    # Early epochs of a slow arm can sit far below the rest; keep every final in view.
    low = min(min(finals), lo + 0.5 * span) - 0.05 * span
    high = max(max(finals), hi) + 0.05 * span
    fig.update_yaxes(range=[low, high], **where)


def _importance_figure(study: optuna.Study) -> go.Figure | None:
    try:
        with warnings.catch_warnings():
            # "Some regimes ... have less than 2 trials": a small study's importances are rough;
            # the figure is still the best summary there is.
            warnings.simplefilter("ignore", UserWarning)
            fig = optuna.visualization.plot_param_importances(study)
    except (ValueError, RuntimeError) as exc:  # too few trials, or nothing varies
        _log.info("no parameter importances: %s", exc)
        return None
    if not fig.data:
        return None
    fig.update_layout(
        title="Parameter importances for the validation metric (Optuna, completed trials)",
        xaxis={"title": "importance for the validation metric (fraction of variance)"},
        yaxis={"title": "parameter"},
    )
    return fig


def _parallel_figure(study: optuna.Study) -> go.Figure | None:
    try:
        fig = optuna.visualization.plot_parallel_coordinate(study)
    except (ValueError, RuntimeError) as exc:
        _log.info("no parallel coordinates: %s", exc)
        return None
    if not fig.data:
        return None
    metric = _metric(study)
    for trace in fig.data:
        if getattr(trace, "dimensions", None):
            trace.dimensions[0].label = f"validation {metric}"
    fig.update_layout(
        title=f"Parallel coordinates of the completed trials (colour: validation {metric})"
    )
    return fig


# --- tables ----------------------------------------------------------------------------------


def comparison_table(comparison: Mapping[str, Any] | None, metric: str) -> pd.DataFrame:
    """The final comparison, one row per arm (empty without one)."""
    rows = []
    for arm in ARMS:
        data = (comparison or {}).get(arm)
        if data is None:
            continue
        diff = data.get("tuned_minus_this")
        reached = data.get("epochs_to_target")
        mean, std = data["test_metric_mean"], data["test_metric_std"]
        rows.append(
            {
                "arm": arm,
                f"test {metric}": f"{mean:.4f} ± {std:.4f}",
                "tuned - arm [95% CI]": (
                    f"{diff['mean_diff']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]"
                    if diff
                    else ""
                ),
                "significant": ("yes" if diff["significant"] else "no") if diff else "",
                "epochs to target": (
                    f"{reached}/{data['epochs']}"
                    if reached is not None
                    else f"not in {data['epochs']}"
                ),
                "schedule": data["schedule"],
            }
        )
    return pd.DataFrame(rows)


def verdict(comparison: Mapping[str, Any] | None, direction: str) -> str:
    """One sentence: whether the tuned schedule beat both baselines, significantly."""
    if not comparison:
        return "no final comparison (baselines skipped)"
    better = "higher" if direction == "maximize" else "lower"
    parts = []
    for arm in ARMS[1:]:
        diff = comparison.get(arm, {}).get("tuned_minus_this")
        if diff is None:
            continue
        sign = diff["mean_diff"] if direction == "maximize" else -diff["mean_diff"]
        word = "beats" if sign > 0 else ("ties" if sign == 0 else "loses to")
        sig = "significantly" if diff["significant"] else "not significantly"
        parts.append(f"{word} {arm} ({sig}, {better} is better)")
    return "tuned " + "; ".join(parts)


def top_trials_table(study: optuna.Study, n: int = 10) -> pd.DataFrame:
    """The best ``n`` completed search trials with their schedule in words and, for the
    finalists, their cross-validated score (the tuned arm is the best of those)."""
    metric = _metric(study)
    finalists = {f["trial"]: f for f in study.user_attrs.get("finalists", [])}
    tuned = _tuned_trial(study)
    rows = []
    for rank, trial in enumerate(top_trials(study, n), start=1):
        fin = finalists.get(trial.number)
        rows.append(
            {
                "rank": rank,
                "trial": trial.number,
                f"validation {metric}": round(float(trial.value), 4),  # type: ignore[arg-type]
                "CV mean (finalists)": (
                    round(fin["cv_mean"], 4) if fin and fin["cv_mean"] is not None else ""
                ),
                "tuned arm": "yes" if trial.number == tuned else "",
                "schedule": trial.user_attrs.get("schedule", trial.params.get("schedule")),
                "seeded": "yes" if trial.user_attrs.get("seeded") else "",
            }
        )
    return pd.DataFrame(rows)


def _settings_table(study: optuna.Study) -> pd.DataFrame:
    attrs = study.user_attrs
    rows: list[tuple[str, str, Any]] = []
    for key, value in sorted(attrs.get("config", {}).items()):
        rows.append(("config", key, value))
    for key, value in sorted(attrs.get("task", {}).items()):
        rows.append(("task", key, value))
    rt = attrs.get("range_test", {})
    for key in ("low", "high", "suggestion", "diverged", "never_diverged", "no_valley"):
        if key in rt:
            rows.append(("range test", key, rt[key]))
    for key, value in sorted(attrs.get("timings", {}).items()):
        rows.append(("seconds", key, round(float(value), 1)))
    frame = pd.DataFrame(rows, columns=["group", "setting", "value"])
    frame["value"] = frame["value"].map(_setting)
    return frame


def _setting(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value)


# --- the dashboard ---------------------------------------------------------------------------


def note_markdown(study: optuna.Study) -> str:
    """The study note for optuna-dashboard: verdict, winning schedule, comparison table."""
    attrs = study.user_attrs
    metric = _metric(study)
    comparison = attrs.get("comparison")
    states = {"COMPLETE": 0, "PRUNED": 0} | trial_states(study)
    lines = [f"## lrsearch: study `{study.study_name}`", ""]
    rt = attrs.get("range_test")
    if rt is not None:
        lines.append(
            f"**Range test:** LR bounds {rt['low']:.3g} to {rt['high']:.3g}, "
            f"suggestion {rt['suggestion']:.3g}."
        )
        lines.append("")
    counts = ", ".join(f"{n} {s.lower()}" for s, n in states.items() if n)
    lines.append(f"**Search:** {counts} trials.")
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
    elif _has_complete(study):
        best = study.best_trial
        lines += [
            "",
            f"**Best search trial:** #{best.number}, validation {metric} {best.value:.4f}: "
            f"{best.user_attrs.get('schedule', '')}. No final comparison yet.",
        ]
    lines += ["", f"Full report: `lrsearch report --study {study.study_name}`"]
    return "\n".join(lines) + "\n"


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
                comparison_figure(comparison, metric=_metric(study), panels=(panel,)),
                graph_object_id=DASHBOARD_GRAPHS[panel],
            )
    save_note(study, note_markdown(study))


# --- the HTML report -------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; }
.meta { color: #666; margin-top: 0; }
.summary { background: #f5f7fa; border-left: 4px solid #1f77b4; padding: 0.6rem 1rem; }
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


def _missing(text: str) -> str:
    return f'<p class="missing">{html.escape(text)}</p>'


def _table_html(frame: pd.DataFrame) -> str:
    if frame.empty:
        return _missing("nothing to show")
    return frame.to_html(index=False, border=0, escape=True, na_rep="")


def report_html(
    study: optuna.Study,
    *,
    storage: str = "",
    constant_cv: optuna.Study | None = None,
    adam: optuna.Study | None = None,
) -> str:
    """The whole report of study NAME as one self-contained HTML page (plotly.js embedded).

    Args:
        study: Study NAME (the search), as stored by :func:`lrsearch.run_study`.
        storage: The storage URL to print (password masked by the caller).
        constant_cv: Study ``NAME/constant-cv`` when it exists (its LR grid and CV scores).
        adam: Study ``NAME/adam-3e-4`` when it exists.

    Returns:
        The HTML text. It loads no script from the network.
    """
    from plotly.offline import get_plotlyjs

    from lrsearch import __version__

    name = study.study_name
    metric = _metric(study)
    comparison = study.user_attrs.get("comparison")
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
        _summary_html(study, constant_cv, adam),
        "<h2>1. LR range test</h2>",
        _figure_html(range_test_figure(study), "fig-range-test"),
    ]
    rt = RangeTestResult.from_dict(study.user_attrs["range_test"])
    parts += [f"<p>Note: {html.escape(line)}</p>" for line in rt.advice]
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
            f"<p>{html.escape(verdict(comparison, study.direction.name.lower()))}.</p>",
        ]
    else:
        parts.append(_missing("no final comparison: the study ran with --skip-baselines"))
    parts.append("<h2>5. What mattered in the search</h2>")
    for make, div_id, what in (
        (_importance_figure, "fig-importances", "parameter importances"),
        (_parallel_figure, "fig-parallel", "parallel coordinates"),
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
        _table_html(_settings_table(study)),
        "</body></html>",
    ]
    return "\n".join(parts)


def _summary_html(
    study: optuna.Study, constant_cv: optuna.Study | None, adam: optuna.Study | None
) -> str:
    attrs = study.user_attrs
    metric = _metric(study)
    comparison = attrs.get("comparison")
    items: list[tuple[str, str]] = []
    if comparison:
        items.append(("Verdict", verdict(comparison, study.direction.name.lower())))
        items.append(("Tuned schedule", comparison["tuned"]["schedule"]))
    elif _has_complete(study):
        best = study.best_trial
        items.append(
            (
                "Best search trial",
                f"#{best.number}, validation {metric} {best.value:.4f}: "
                f"{best.user_attrs.get('schedule', '')}",
            )
        )
    if constant_cv is not None and "chosen_lr" in constant_cv.user_attrs:
        folds = attrs.get("config", {}).get("cv_folds", "k")
        grid = constant_cv.user_attrs.get("grid", [])
        items.append(
            (
                f"Constant LR chosen by {folds}-fold CV",
                f"{float(constant_cv.user_attrs['chosen_lr']):.3g} (from a grid of {len(grid)})",
            )
        )
    if adam is not None:
        done = adam.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if done:
            value = float(done[0].value)  # type: ignore[arg-type]
            items.append(("Adam 3e-4", f"validation {metric} {value:.4f}"))
    counts = sorted(trial_states(study).items())
    items.append(("Search trials", ", ".join(f"{n} {s.lower()}" for s, n in counts)))
    body = "".join(f"<li><b>{html.escape(k)}:</b> {html.escape(v)}.</li>" for k, v in items)
    return f'<div class="summary"><ul>{body}</ul></div>'
