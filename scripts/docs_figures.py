"""The benchmark figures of the docs (docs/img/bench-*.svg), drawn from the measured numbers.

    .venv/bin/python scripts/docs_figures.py [--out docs/img]

Each benchmark on docs/benchmarks.md is led by a figure. Rerunning most of them takes from ten
minutes to over an hour on 2 CPU cores (the command of each is on that page), so this script does
not rerun them: it draws each figure from the numbers those runs printed, written out below as
constants, one block per benchmark. To refresh a figure, rerun its benchmark, copy its printed
table into the block and run this script again. Writing SVG needs plotly's ``kaleido``
(``pip install kaleido``), which draws with a Chromium found on the machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

TEMPLATE = "plotly_white"
ARM_COLOURS = {
    "tuned": "#1f77b4",
    "constant-cv": "#ff7f0e",
    "adam-3e-4": "#2ca02c",
    "prodigy": "#7f7f7f",
    "schedule-free-adamw": "#9467bd",
}

# --- Results: the pipeline against its baselines (scripts/bench_study.py --parts arms) --------
# tuned - arm, paired over the final seeds, 95% Student-t interval; for charlm (a loss) the sign
# is flipped below so that right of 0 is "tuned better" on every panel.
ARMS_INTERVALS: dict[str, dict[str, tuple[float, float, float]]] = {
    "digits (accuracy)": {
        "constant-cv": (0.0138, -0.0140, 0.0415),
        "adam-3e-4": (0.0489, 0.0369, 0.0609),
        "prodigy": (-0.0009, -0.0063, 0.0045),
        "schedule-free-adamw": (0.0080, 0.0023, 0.0137),
    },
    "mnist1d (accuracy)": {
        "constant-cv": (0.0426, 0.0149, 0.0703),
        "adam-3e-4": (0.3698, 0.3362, 0.4034),
        "prodigy": (0.0334, 0.0199, 0.0469),
        "schedule-free-adamw": (0.1336, 0.1115, 0.1557),
    },
    "charlm (loss, nats per character)": {
        "constant-cv": (0.0, 0.0, 0.0),
        "adam-3e-4": (-0.5855, -0.6422, -0.5288),
        "prodigy": (-0.3499, -0.6701, -0.0297),
        "schedule-free-adamw": (-0.4062, -0.5080, -0.3044),
    },
}

# --- mnist1d's ceiling (scripts/bench_mnist1d_ceiling.py), 10 fresh model seeds -----------------
CEILING_ONECYCLE = {0.119: 0.9562, 0.141: 0.9558, 0.168: 0.9570, 0.2: 0.9530}
CEILING_OTHERS = {"WSD at 0.1": (0.1, 0.9578), "cosine at 0.141": (0.141, 0.9557)}
CEILING_SEARCH = {"the search's pick (study test seeds, Intel)": 0.9570, "(AMD)": 0.9586}

# --- Where the seeds peak (benchmarks/range_test/peaks.py), held out, 27 problems ---------------
# (median regret, problems above 1.5)
PEAKS_COSINE = {
    "high": (1.685, 17),
    "the suggestion": (1.259, 11),
    "seed_peak (shipped)": (1.285, 10),
}
PEAKS_ONECYCLE_TRAINED = {
    "high": (1.726, 15),
    "seed_peak": (1.351, 9),
    "steepest fall (shipped)": (1.212, 9),
}

# --- Does the wider family help? (scripts/bench_kinds.py), all 12 - classic 8, best validation --
KINDS_DIFF = {
    "digits": [-0.0037, -0.0074, 0.0000],
    "mnist1d (25 epochs)": [0.0013, 0.0137, -0.0138],
}

# --- The range test, held out (benchmarks/range_test/heldout.py) ------------------------------
# problem: (lrsearch, torch-lr-finder, fastai valley, lightning) regret
RANGE_TEST_REGRET: dict[str, tuple[float, float, float, float]] = {
    "digits-mlp": (1.335, 1.040, 2.162, 1.040),
    "cancer-bce": (2.345, 7.245, 1.231, 7.245),
    "teacher-mse": (1.064, 2.040, 1.127, 2.040),
    "friedman-mse": (1.717, 10.119, 1.247, 1.144),
    "moons-ce": (1.040, 1.114, 1.124, 1.185),
    "diabetes-mse": (1.271, 1.532, 1.239, 1.436),
    "classif-ce": (2.295, 2.306, 1.294, 2.312),
    "mnist1d-cnn": (1.282, 6.379, 1.433, 6.379),
    "digits-bn-cnn": (1.052, 1.032, 1.900, 1.032),
    "digits-cnn": (0.904, 1.583, 1.239, 8.833),
    "mnist1d-bn-cnn": (1.073, 2.313, 1.054, 2.424),
    "digits-resnet": (1.531, 1.324, 5.714, 1.684),
    "mnist1d-resnet": (0.943, 2.250, 1.113, 2.082),
    "digits-resnet-w": (1.142, 1.469, 3.263, 1.469),
    "mnist1d-resnet-s": (1.077, 1.313, 0.977, 1.313),
    "mnist1d-gru": (1.331, 1.502, 1.501, 1.505),
    "mnist1d-lstm": (1.584, 1.585, 1.051, 1.586),
    "digits-gru": (1.201, 15.992, 1.560, 15.992),
    "char-lstm": (1.114, 1.067, 1.275, 1.067),
    "char-gpt": (1.164, 1.007, 1.195, 1.000),
    "digits-vit": (1.340, 4.403, 0.994, 4.403),
    "mnist1d-vit": (1.148, 1.415, 1.133, 1.415),
    "digits-vit-sgd": (7.417, 6.353, 1.213, 7.186),
    "digits-ae": (1.103, 1.050, 1.044, 1.072),
    "mnist1d-ae": (1.555, 4.537, 1.078, 4.829),
    "cancer-ae": (4.512, 4.013, 0.958, 4.570),
    "digits-conv-ae": (1.735, 1.540, 1.649, 1.493),
}
RANGE_TEST_TOOLS = ("lrsearch", "torch-lr-finder", "fastai valley", "Lightning lr_find")

# --- Many workers, one study (scripts/bench_workers.py): wall seconds per worker count ---------
WORKERS_WALL = {
    ("digits", "sqlite"): {1: 35.5, 2: 24.0, 4: 34.6},
    ("digits", "postgresql"): {1: 43.4, 2: 28.3, 4: 38.0},
    ("mnist1d", "sqlite"): {1: 88.1, 2: 53.8, 4: 54.2},
    ("mnist1d", "postgresql"): {1: 84.6, 2: 54.5, 4: 62.8},
}

# --- What the diagnostics cost (scripts/bench_diagnostics.py): ms per step, median and IQR ------
DIAGNOSTICS_MS = {
    "off": (2.156, 2.062, 2.272),
    "on (1 step in 5)": (2.079, 2.007, 2.611),
    "every step": (2.218, 2.174, 2.958),
}

# --- Snapshot ensembles (lrsearch run --study mnist1d-cyclic): test accuracy per final seed -----
SNAPSHOT_LAST = [0.930, 0.931, 0.930, 0.941, 0.954]
SNAPSHOT_ENSEMBLE = [0.934, 0.929, 0.938, 0.945, 0.956]

# --- Judging plateau as its final runs train it (scripts/bench_plateau_watch.py) --------------
# bias = plateau's mean (search - final) minus cosine's, > 0 when the search overrates plateau
PLATEAU_BIAS = {
    "digits (accuracy)": (0.0009, -0.0030),
    "mnist1d (accuracy)": (0.0222, -0.0291),
    "charlm (nats)": (0.1983, 0.0652),
}

# --- Pruning, real searches (scripts/bench_study.py --parts pruning) ---------------------------
# per seed: (epochs trained / the unpruned search's, best validation value - unpruned best, pts)
PRUNING = {
    ("digits", "median (default)"): [
        (0.674, 0.00),
        (0.629, -0.37),
        (0.653, -0.37),
        (0.573, -0.37),
        (0.621, 0.00),
    ],
    ("digits", "halving"): [
        (0.517, -0.37),
        (0.517, -0.74),
        (0.578, -0.37),
        (0.583, -0.37),
        (0.532, 0.0),
    ],
    ("mnist1d", "median (default)"): [(0.506, 0.75), (0.510, -0.87), (0.479, 0.00)],
    ("mnist1d", "halving"): [(0.308, 0.50), (0.385, -4.00), (0.386, -0.63)],
}

# --- Seeding (scripts/bench_study.py --parts seeding): trials to 99% of each seed's best -------
# None = never within the budget (30 digits trials, 40 mnist1d trials)
SEEDING = {
    "digits (30 trials)": (
        [12, 3, 20, 5, 7, 4, 1, 14, 1, 1],
        [5, 15, None, 15, 6, 1, 15, 5, 11, 2],
        30,
    ),
    "mnist1d (40 trials)": (
        [12, 12, 14, 7, 26, 11, 40, 12, 14, 11],
        [5, None, 31, 36, None, 35, 33, None, None, 12],
        40,
    ),
}

# --- Overhead (scripts/bench_study.py --parts arms; scripts/bench_storage_floor.py) -----------
# seconds: (inside training and evaluation, Optuna's own storage calls for the search, wall)
OVERHEAD = {"digits": (39.4, 3.53, 47.7), "mnist1d": (425.2, 5.73, 436.5)}


def _layout(fig: go.Figure, title: str, *, height: int = 420, width: int = 900) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title, "x": 0.01},
        height=height,
        width=width,
        margin={"l": 60, "r": 20, "t": 70, "b": 50},
    )
    return fig


def arms_intervals() -> go.Figure:
    """Tuned minus each arm, paired interval, one panel per task (right of 0: tuned better)."""
    tasks = list(ARMS_INTERVALS)
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks, horizontal_spacing=0.12)
    for col, task in enumerate(tasks, start=1):
        sign = -1.0 if "loss" in task else 1.0
        for arm, (mid, low, high) in ARMS_INTERVALS[task].items():
            a, b = sorted((sign * low, sign * high))
            fig.add_trace(
                go.Scatter(
                    x=[sign * mid],
                    y=[arm],
                    mode="markers",
                    marker={"size": 10, "color": ARM_COLOURS[arm]},
                    error_x={
                        "type": "data",
                        "symmetric": False,
                        "array": [b - sign * mid],
                        "arrayminus": [sign * mid - a],
                    },
                    showlegend=False,
                ),
                row=1,
                col=col,
            )
        fig.add_vline(x=0, line_dash="dash", line_color="grey", row=1, col=col)
        fig.update_yaxes(autorange="reversed", showticklabels=col == 1, row=1, col=col)
        fig.update_xaxes(title_text="tuned better by", row=1, col=col)
    return _layout(
        fig,
        "The tuned schedule against each arm on the test set: paired difference, 95% interval",
        height=360,
        width=1000,
    )


def mnist1d_ceiling() -> go.Figure:
    fig = go.Figure()
    peaks = list(CEILING_ONECYCLE)
    fig.add_trace(
        go.Scatter(
            x=peaks,
            y=[100 * v for v in CEILING_ONECYCLE.values()],
            mode="lines+markers",
            name="1cycle, grid over its peak",
        )
    )
    for name, (peak, value) in CEILING_OTHERS.items():
        fig.add_trace(
            go.Scatter(x=[peak], y=[100 * value], mode="markers", name=name, marker={"size": 11})
        )
    for name, value in CEILING_SEARCH.items():
        fig.add_trace(
            go.Scatter(
                x=[0.167],
                y=[100 * value],
                mode="markers",
                name=name,
                marker={"size": 13, "symbol": "star"},
            )
        )
    fig.update_xaxes(type="log", title_text="peak learning rate")
    fig.update_yaxes(title_text="test accuracy, % (mean over seeds)")
    return _layout(fig, "mnist1d: the best schedules of an oracle's grid, on fresh model seeds")


def _regret_bars(fig: go.Figure, data: dict[str, tuple[float, int]], col: int) -> None:
    names = list(data)
    fig.add_trace(
        go.Bar(
            x=names,
            y=[m for m, _ in data.values()],
            text=[f"{m:.3f}<br>{n} of 27 over 1.5" for m, n in data.values()],
            textposition="outside",
            marker_color=["#bbbbbb"] * (len(names) - 1) + ["#1f77b4"],
            showlegend=False,
        ),
        row=1,
        col=col,
    )


def seed_peaks() -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["warm-up + cosine seed", "1cycle seed (trained)"],
    )
    _regret_bars(fig, PEAKS_COSINE, 1)
    _regret_bars(fig, PEAKS_ONECYCLE_TRAINED, 2)
    fig.update_yaxes(range=[1, 1.95], title_text="median regret (held out)", row=1, col=1)
    fig.update_yaxes(range=[1, 1.95], row=1, col=2)
    return _layout(fig, "Where the seeds peak: regret of the seed's peak, 27 problems", width=1000)


def kinds() -> go.Figure:
    fig = go.Figure()
    for task, diffs in KINDS_DIFF.items():
        fig.add_trace(
            go.Scatter(
                x=[100 * d for d in diffs],
                y=[task] * len(diffs),
                mode="markers+text",
                text=[f"seed {i}" for i in range(len(diffs))],
                textposition="top center",
                marker={"size": 12},
                showlegend=False,
            )
        )
    fig.add_vline(x=0, line_dash="dash", line_color="grey")
    fig.update_xaxes(
        title_text="best validation accuracy, all 12 kinds minus the classic 8 (points)"
    )
    return _layout(fig, "All twelve kinds against the classic eight, 30 trials each", height=300)


def range_test_regret() -> go.Figure:
    problems = list(RANGE_TEST_REGRET)
    fig = go.Figure()
    symbols = ("circle", "x", "diamond", "triangle-up")
    for i, tool in enumerate(RANGE_TEST_TOOLS):
        fig.add_trace(
            go.Scatter(
                x=[RANGE_TEST_REGRET[p][i] for p in problems],
                y=problems,
                mode="markers",
                name=tool,
                marker={"size": 11 if i == 0 else 8, "symbol": symbols[i]},
            )
        )
    fig.add_vline(
        x=1.5,
        line_dash="dash",
        line_color="grey",
        annotation_text="1.5x",
        annotation_position="top",
    )
    fig.update_xaxes(type="log", title_text="regret: loss at the suggested LR / the grid's best")
    fig.update_yaxes(autorange="reversed")
    return _layout(
        fig,
        "Range-test suggestions, held out: regret per problem (27 problems, 6 families)",
        height=820,
        width=950,
    )


def workers() -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=["digits", "mnist1d"])
    for (task, storage), walls in WORKERS_WALL.items():
        n = list(walls)
        fig.add_trace(
            go.Scatter(
                x=n,
                y=[walls[1] / walls[k] for k in n],
                mode="lines+markers",
                name=storage,
                legendgroup=storage,
                showlegend=task == "digits",
                line={
                    "dash": "solid" if storage == "sqlite" else "dot",
                    "color": "#1f77b4" if storage == "sqlite" else "#d62728",
                },
            ),
            row=1,
            col=1 if task == "digits" else 2,
        )
    for col in (1, 2):
        fig.update_xaxes(title_text="workers (on 2 cores)", tickvals=[1, 2, 4], row=1, col=col)
        fig.update_yaxes(range=[0.8, 2.0], row=1, col=col)
    fig.update_yaxes(title_text="speed-up over one worker", row=1, col=1)
    return _layout(fig, "Many workers on one study: wall-time speed-up")


def diagnostics() -> go.Figure:
    names = list(DIAGNOSTICS_MS)
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[m for m, _, _ in DIAGNOSTICS_MS.values()],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [h - m for m, _, h in DIAGNOSTICS_MS.values()],
                "arrayminus": [m - low for m, low, _ in DIAGNOSTICS_MS.values()],
            },
            marker_color="#1f77b4",
        )
    )
    fig.update_yaxes(title_text="ms per optimizer step (median, IQR)", rangemode="tozero")
    return _layout(
        fig, "The update/weight-ratio diagnostics: time per step, mnist1d CNN", height=380
    )


def snapshots() -> go.Figure:
    fig = go.Figure()
    for i, (last, ens) in enumerate(zip(SNAPSHOT_LAST, SNAPSHOT_ENSEMBLE, strict=True)):
        fig.add_trace(
            go.Scatter(
                x=["last snapshot", "ensemble of 4 snapshots"],
                y=[100 * last, 100 * ens],
                mode="lines+markers",
                name=f"seed {i}",
            )
        )
    fig.update_yaxes(title_text="test accuracy, %")
    return _layout(
        fig, "Snapshot ensemble of a triangular2 run on mnist1d, per final seed", height=380
    )


def plateau() -> go.Figure:
    tasks = list(PLATEAU_BIAS)
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["accuracy tasks", "charlm"], column_widths=[0.65, 0.35]
    )
    for when, idx, colour in (
        ("watching its own judge", 0, "#d62728"),
        ("as shipped", 1, "#1f77b4"),
    ):
        for col, group in ((1, tasks[:2]), (2, tasks[2:])):
            fig.add_trace(
                go.Bar(
                    x=group,
                    y=[PLATEAU_BIAS[t][idx] for t in group],
                    name=when,
                    marker_color=colour,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(title_text="how far the search overrates plateau", row=1, col=1)
    return _layout(fig, "plateau in the search: bias of its score against cosine's")


def pruning() -> go.Figure:
    fig = go.Figure()
    symbols = {"digits": "circle", "mnist1d": "diamond"}
    for (task, pruner), points in PRUNING.items():
        fig.add_trace(
            go.Scatter(
                x=[r for r, _ in points],
                y=[d for _, d in points],
                mode="markers",
                name=f"{task}, {pruner}",
                marker={"size": 11, "symbol": symbols[task], "opacity": 0.8},
            )
        )
    fig.update_xaxes(title_text="epochs trained / the unpruned search's", range=[0.25, 0.75])
    fig.update_yaxes(title_text="best validation value - unpruned best (points)")
    return _layout(fig, "Pruning: epochs saved against the best trial lost, per seed")


def seeding() -> go.Figure:
    tasks = list(SEEDING)
    fig = make_subplots(rows=1, cols=2, subplot_titles=tasks)
    for col, task in enumerate(tasks, start=1):
        seeded, blind, budget = SEEDING[task]
        for name, values, colour in (
            ("seeded", seeded, "#1f77b4"),
            ("blind", blind, "#d62728"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=list(range(len(values))),
                    y=[budget + 1 if v is None else v for v in values],
                    mode="markers",
                    name=name,
                    marker={"size": 10, "color": colour},
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.add_hline(
            y=budget + 1,
            line_dash="dot",
            line_color="grey",
            annotation_text="never",
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="config seed", row=1, col=col)
    fig.update_yaxes(title_text="trials to 99% of the seed's best", row=1, col=1)
    return _layout(fig, "Seeding: trials until TPE reaches 99% of the best, per config seed")


def overhead() -> go.Figure:
    tasks = list(OVERHEAD)
    inside = [OVERHEAD[t][0] for t in tasks]
    floor = [OVERHEAD[t][1] / OVERHEAD[t][0] for t in tasks]
    rest = [(OVERHEAD[t][2] - OVERHEAD[t][0] - OVERHEAD[t][1]) / OVERHEAD[t][0] for t in tasks]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(y=tasks, x=[1.0] * len(tasks), name="training and evaluation", orientation="h")
    )
    fig.add_trace(go.Bar(y=tasks, x=floor, name="Optuna's own storage calls", orientation="h"))
    fig.add_trace(go.Bar(y=tasks, x=rest, name="lrsearch's bookkeeping", orientation="h"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(
        title_text="wall time / time inside training "
        f"(training: {inside[0]:.0f} s, {inside[1]:.0f} s)",
        range=[0.9, 1.25],
    )
    return _layout(fig, "Where a whole study's wall time goes, one worker", height=320)


FIGURES = {
    "bench-arms": arms_intervals,
    "bench-mnist1d-ceiling": mnist1d_ceiling,
    "bench-seed-peaks": seed_peaks,
    "bench-kinds": kinds,
    "bench-range-test": range_test_regret,
    "bench-workers": workers,
    "bench-diagnostics": diagnostics,
    "bench-snapshots": snapshots,
    "bench-plateau": plateau,
    "bench-pruning": pruning,
    "bench-seeding": seeding,
    "bench-overhead": overhead,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--format", choices=["svg", "png"], default="svg")
    parser.add_argument("--only", nargs="*", choices=sorted(FIGURES), help="draw only these")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(FIGURES)
    paths = [args.out / f"{name}.{args.format}" for name in names]
    # One kaleido session (one browser start) for all of them.
    figures = [FIGURES[name]() for name in names]
    pio.write_images(
        figures,
        paths,
        width=[f.layout.width for f in figures],
        height=[f.layout.height for f in figures],
    )
    for path in paths:
        print(f"wrote {path}")
    print(f"command: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
