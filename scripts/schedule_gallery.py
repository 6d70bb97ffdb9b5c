"""Draw every schedule kind on one page, to see the family at a glance.

    .venv/bin/python scripts/schedule_gallery.py [--out schedule_gallery.html]

Writes a self-contained HTML file (plotly.js embedded, opens offline): one panel per kind,
the seeds of ``seed_params`` and a few other members of the search space, LR on a log axis
against epochs.
"""

from __future__ import annotations

import argparse
import sys

from plotly.subplots import make_subplots

from lrsearch import KINDS, LRBounds, Schedule, seed_params

BOUNDS = LRBounds(1e-3, 0.1)
EPOCHS, SPE = 20, 50

EXAMPLES: dict[str, list[Schedule]] = {
    "constant": [Schedule("constant", 0.01)],
    "step": [Schedule("step", 0.1, step_size=5 * SPE, decay=0.3)],
    "exponential": [Schedule("exponential", 0.1, step_size=5 * SPE, decay=0.3)],
    "triangular": [Schedule("triangular", 0.1, base_lr=1e-3, step_size=5 * SPE)],
    "triangular2": [],  # the CLR seed
    "exp_range": [Schedule("exp_range", 0.1, base_lr=1e-3, step_size=2 * SPE, decay=0.5)],
    "sgdr": [Schedule("sgdr", 0.1, base_lr=1e-4, step_size=2 * SPE, decay=0.8, cycle_mult=2)],
    "onecycle": [],  # the 1cycle seed
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="schedule_gallery.html")
    args = parser.parse_args(argv)

    seeds = [
        Schedule.from_params(p, steps_per_epoch=SPE)
        for p in seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS)
    ]
    fig = make_subplots(rows=4, cols=2, subplot_titles=KINDS, vertical_spacing=0.07)
    for i, kind in enumerate(KINDS):
        row, col = divmod(i, 2)
        for schedule in EXAMPLES[kind] + [s for s in seeds if s.kind == kind]:
            single = schedule.figure(EPOCHS * SPE, steps_per_epoch=SPE)
            trace = single.data[0]
            trace.name = schedule.describe(SPE)
            fig.add_trace(trace, row=row + 1, col=col + 1)
        fig.update_yaxes(type="log", title_text="learning rate", row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="epoch", row=row + 1, col=col + 1)
    fig.update_layout(
        height=1400,
        width=1100,
        title=f"lrsearch schedules: {EPOCHS} epochs of {SPE} steps, bounds {BOUNDS.low:g}-"
        f"{BOUNDS.high:g}",
        legend={"orientation": "h", "y": -0.05},
    )
    fig.write_html(args.out, include_plotlyjs=True)
    print(f"wrote {args.out}\ncommand: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
