"""The report's plotly figures: range test, schedules, learning curves, final comparison,
Optuna's parameter importances and parallel coordinates. Each reads a stored study only."""

from __future__ import annotations

import html
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from lrsearch.choices import ARM_ORDER, PER_EPOCH_KINDS, SNAPSHOT_ARM
from lrsearch.exceptions import LrsearchError
from lrsearch.report.reading import Comparison, StudyReading, as_arms, read, schedule_words
from lrsearch.schedules import Schedule
from lrsearch.store import (
    EPOCH_LRS,
    RATIO_BAND,
    UPDATE_RATIOS,
    ArmResult,
    StopReason,
    StoredStudy,
    UpdateRatios,
    top_trials,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "ARM_COLORS",
    "COMPARISON_PANELS",
    "comparison_figure",
    "importance_figure",
    "learning_curves_figure",
    "parallel_figure",
    "range_test_figure",
    "schedules_figure",
    "update_ratio_figure",
]

_log = logging.getLogger(__name__)

#: Each arm's colour, the same in every figure and panel that draws arms (every arm of
#: :data:`~lrsearch.choices.ARM_ORDER`, each its own; grey is left for reference lines).
ARM_COLORS: Mapping[str, str] = {
    "tuned": "#1f77b4",
    SNAPSHOT_ARM: "#17becf",
    "constant-cv": "#ff7f0e",
    "adam-3e-4": "#2ca02c",
    "prodigy": "#d62728",
    "schedule-free-adamw": "#9467bd",
}
_PALETTE = ("#1f77b4", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_LEVEL = 0.95


def range_test_figure(study: StoredStudy | StudyReading) -> go.Figure:
    """The stored range test: raw and smoothed loss against LR, bounds shaded, suggestion.

    Raises:
        LrsearchError: The study has no range test yet.
    """
    reading = read(study)
    rt = reading.range_test
    if rt is None:
        raise LrsearchError(f"study {reading.stored.name!r} has no range test yet")
    fig = rt.figure()
    fig.update_layout(legend={"orientation": "h", "y": -0.18})
    return fig


def schedules_figure(study: StoredStudy | StudyReading, *, top: int = 5) -> go.Figure:
    """LR per optimizer step of the best search trials, as they were trained.

    The range-test bounds are shaded and the cross-validated constant LR (when there is one) is
    a dashed line, so each schedule can be read against both.
    """
    import plotly.graph_objects as go

    reading = read(study)
    spe = reading.steps_per_epoch
    n_epochs = reading.epochs
    steps = spe * n_epochs
    x = np.arange(steps)
    tuned = reading.tuned_trial
    fig = go.Figure()
    rt = None if reading.range_test is None else reading.range_test.bounds
    if rt is not None:
        fig.add_hrect(y0=rt.low, y1=rt.high, fillcolor="rgba(44, 160, 44, 0.10)", line_width=0)
    shown: list[float] = []
    for i, trial in enumerate(top_trials(reading.search, top)):
        schedule = Schedule.from_params(trial.params, steps_per_epoch=spe, epochs=n_epochs)
        lrs = _as_trained(trial, schedule, spe, steps)
        shown += [float(lrs.min()), float(lrs.max())]
        chosen = trial.number == tuned
        label = f"#{trial.number} {trial.params['schedule']}" + (" (tuned arm)" if chosen else "")
        fig.add_trace(
            go.Scatter(
                x=x[: len(lrs)],
                y=lrs,
                mode="lines",
                name=label,
                line={"color": _PALETTE[i % len(_PALETTE)], "width": 3 if chosen else 1.5},
                customdata=x[: len(lrs)] / spe,
                hovertemplate=(
                    f"trial {trial.number}: {html.escape(schedule.describe(spe))}<br>"
                    "step %{x} (epoch %{customdata:.2f})<br>LR %{y:.3g}<extra></extra>"
                ),
            )
        )
    lr = reading.constant_lr
    if lr is not None:
        fig.add_trace(
            go.Scatter(
                x=[0, steps - 1],
                y=[lr, lr],
                mode="lines",
                name=f"constant-cv LR {lr:.3g}",
                line={"color": ARM_COLORS["constant-cv"], "dash": "dash"},
            )
        )
    yaxis: dict[str, Any] = {"title": "learning rate", "type": "log"}
    if shown and rt is not None:
        # 1cycle ends orders of magnitude below its start; do not let that tail flatten the rest.
        low = max(min(shown), rt.low / 100)
        high = max(max(shown), rt.high)
        yaxis["range"] = [math.log10(low) - 0.2, math.log10(high) + 0.2]
    fig.update_layout(
        title=f"LR schedules of the top {top} search trials (shaded: range-test bounds)",
        xaxis={"title": f"training step (optimizer steps, {spe} per epoch)"},
        yaxis=yaxis,
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _as_trained(trial: FrozenTrial, schedule: Schedule, spe: int, steps: int) -> np.ndarray:
    """The LR of every step as the trial trained it: a metric-driven schedule (``plateau``)
    from the LRs it stored per epoch, any other from its formula."""
    stored = trial.user_attrs.get(EPOCH_LRS)
    if schedule.kind in PER_EPOCH_KINDS and stored:
        return np.repeat(np.asarray(stored, dtype=float), spe)[:steps]
    return schedule.lrs(steps)


def learning_curves_figure(study: StoredStudy | StudyReading) -> go.Figure:
    """Validation metric per epoch of every search trial; pruned trials dotted and grey."""
    import plotly.graph_objects as go

    reading = read(study)
    metric = reading.metric
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    trials = reading.search.get_trials(deepcopy=False, states=states)
    best_trial = reading.best_trial()
    best = None if best_trial is None else best_trial.number
    tuned = reading.tuned_trial
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
        stop = StopReason.from_attrs(trial.user_attrs)
        why = "" if stop is None else stop.words
        words = schedule_words(trial) or ""
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


def update_ratio_figure(study: StoredStudy | StudyReading) -> go.Figure | None:
    """The update/weight ratio ``||dw|| / ||w||`` against the learning rate, log-log.

    Lines: each step of the range test's (first) sweep, per param group. Markers: each epoch of
    every search trial that measured it (the median over its measured steps, at the median LR
    of those steps), the tuned arm's trial drawn larger. The band from ``RATIO_BAND`` is shaded
    and CS231n's rule of thumb, 1e-3, dashed. ``None`` when nothing was measured.
    """
    import plotly.graph_objects as go

    reading = read(study)
    fig = go.Figure()
    rt = reading.range_test
    for sweep in () if rt is None else rt.sweeps[:1]:
        for g, ratios in enumerate(() if sweep.update_ratios is None else sweep.update_ratios):
            fig.add_trace(
                go.Scatter(
                    x=sweep.lrs.tolist(),
                    y=[float(v) for v in ratios],
                    mode="lines",
                    line={"color": _PALETTE[g % len(_PALETTE)], "width": 2},
                    name=f"range test, group {g}",
                    hovertemplate=f"range test, group {g}: LR %{{x:.3g}}, ratio %{{y:.3g}}"
                    "<extra></extra>",
                )
            )
    tuned = reading.tuned_trial
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    for trial in reading.search.get_trials(deepcopy=False, states=states):
        stored = trial.user_attrs.get(UPDATE_RATIOS)
        if not stored:
            continue
        ratios = UpdateRatios.from_dict(stored)
        chosen = trial.number == tuned
        for g, medians in enumerate(ratios.epoch_medians):
            label = f"tuned arm #{trial.number}" if chosen else "search trials, per epoch"
            fig.add_trace(
                go.Scatter(
                    x=ratios.epoch_lrs,
                    y=[math.nan if v is None else v for v in medians],
                    mode="markers",
                    marker={
                        "color": _PALETTE[g % len(_PALETTE)],
                        "size": 10 if chosen else 6,
                        "opacity": 1.0 if chosen else 0.45,
                        "symbol": "diamond" if chosen else "circle",
                    },
                    name=f"{label}, group {g}",
                    legendgroup=f"{label}, group {g}",
                    showlegend=not any(t.name == f"{label}, group {g}" for t in fig.data),
                    customdata=list(range(1, len(medians) + 1)),
                    hovertemplate=(
                        f"trial {trial.number} ({trial.state.name.lower()}), group {g}, "
                        "epoch %{customdata}: LR %{x:.3g}, median ratio %{y:.3g}<extra></extra>"
                    ),
                )
            )
    if not fig.data:
        return None
    low, high = RATIO_BAND
    fig.add_hrect(y0=low, y1=high, fillcolor="rgba(44, 160, 44, 0.10)", line_width=0)
    fig.add_hline(y=1e-3, line_dash="dash", line_color="#7f7f7f")
    fig.update_layout(
        title=(
            "Update/weight ratio ||dw||/||w|| against the learning rate (shaded: "
            f"{low:g} to {high:g}; dashed: the rule of thumb, 1e-3)"
        ),
        xaxis={"title": "learning rate", "type": "log"},
        yaxis={"title": "update/weight ratio per step", "type": "log"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


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
    comparison: Comparison,
    *,
    metric: str = "metric",
    panels: Sequence[str] = COMPARISON_PANELS,
) -> go.Figure:
    """The final comparison: per-seed test scores with mean and 95% interval per arm
    (``"seeds"``, left); the mean test curve per epoch of each arm with its epochs-to-target
    marked (``"curves"``, right). ``panels`` picks one of them for narrow places (the
    dashboard's cards). ``comparison`` is ``{arm: ArmResult}`` (or as ``StudyResult.comparison``
    holds it).
    """
    from plotly.subplots import make_subplots

    if not panels or any(p not in COMPARISON_PANELS for p in panels):
        raise ValueError(f"panels must be some of {COMPARISON_PANELS}; got {panels!r}")
    given = as_arms(comparison)
    arms = [a for a in ARM_ORDER if a in given]
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
            _seed_traces(fig, arm, given[arm], seeds)
        if curves is not None:
            _curve_traces(fig, arm, given[arm], curves)
    target = next((given[a].target for a in arms if given[a].target is not None), None)
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
        _zoom_curves(fig, given, arms, curves)
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


def _seed_traces(fig: go.Figure, arm: str, data: ArmResult, at: Mapping[str, int]) -> None:
    """One arm's per-seed test scores, and its mean with the 95% interval as error bars."""
    import plotly.graph_objects as go

    color = ARM_COLORS[arm]
    per_seed = [float(v) for v in data.test_metric_per_seed]
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
            customdata=data.seeds,
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


def _curve_traces(fig: go.Figure, arm: str, data: ArmResult, at: Mapping[str, int]) -> None:
    """One arm's mean test curve per epoch, with a star at its first epoch at the target."""
    import plotly.graph_objects as go

    color = ARM_COLORS[arm]
    curve = [float(v) for v in data.test_curve_mean]
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
    reached = data.epochs_to_target
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
    fig: go.Figure, given: Mapping[str, ArmResult], arms: Sequence[str], where: Mapping[str, int]
) -> None:
    """Show the last three quarters of the curves' range, where the arms differ."""
    values = [v for a in arms for v in given[a].test_curve_mean if math.isfinite(v)]
    if not values:
        return
    lo, hi = min(values), max(values)
    finals = [given[a].test_metric_mean for a in arms]
    span = hi - lo
    if span <= 0:
        return
    # Early epochs of a slow arm can sit far below the rest; keep every final in view.
    low = min(min(finals), lo + 0.5 * span) - 0.05 * span
    high = max(max(finals), hi) + 0.05 * span
    fig.update_yaxes(range=[low, high], **where)


def importance_figure(study: StoredStudy | StudyReading) -> go.Figure | None:
    """Optuna's parameter importances for the validation metric (``None``: too few trials)."""
    search = study.search
    try:
        with warnings.catch_warnings():
            # "Some regimes ... have less than 2 trials": a small study's importances are rough;
            # the figure is still the best summary there is.
            warnings.simplefilter("ignore", UserWarning)
            fig = optuna.visualization.plot_param_importances(search)
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


def parallel_figure(study: StoredStudy | StudyReading) -> go.Figure | None:
    """Optuna's parallel coordinates of the completed trials (``None``: too few trials)."""
    try:
        fig = optuna.visualization.plot_parallel_coordinate(study.search)
    except (ValueError, RuntimeError) as exc:
        _log.info("no parallel coordinates: %s", exc)
        return None
    if not fig.data:
        return None
    metric = read(study).metric
    for trace in fig.data:
        if getattr(trace, "dimensions", None):
            trace.dimensions[0].label = f"validation {metric}"
    fig.update_layout(
        title=f"Parallel coordinates of the completed trials (colour: validation {metric})"
    )
    return fig
