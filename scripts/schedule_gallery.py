"""Draw every schedule kind on one page, to see the family at a glance.

    .venv/bin/python scripts/schedule_gallery.py [--out schedule_gallery.html]
    .venv/bin/python scripts/schedule_gallery.py --image docs/img/schedule-gallery.png

Writes a self-contained HTML file (plotly.js embedded, opens offline): one panel per kind,
the seeds of ``seed_params`` and a few other members of the search space, LR on a log axis
against epochs. ``plateau`` follows a validation metric, so its panel replays it over an
illustrative loss curve (``LOSS``) that improves, stalls, improves and stalls again.
``--image`` writes a static PNG or SVG instead (the docs' figure), through plotly's ``kaleido``
(``pip install kaleido``), which draws with a Chromium found on the machine.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lrsearch import KINDS, LRBounds, Schedule, seed_params

BOUNDS = LRBounds(1e-3, 0.1)
EPOCHS, SPE = 20, 50
COLS = 3

# An illustrative validation loss after each epoch: falls, stalls for 5 epochs, falls, stalls.
LOSS = [1.0 / (1 + e) for e in range(6)] + [1 / 6] * 5 + [0.12, 0.1] + [0.1] * (EPOCHS - 13)

EXAMPLES: dict[str, list[Schedule]] = {
    "constant": [Schedule("constant", 0.01)],
    "step": [Schedule("step", 0.1, step_size=5 * SPE, decay=0.3)],
    "exponential": [Schedule("exponential", 0.1, step_size=5 * SPE, decay=0.3)],
    "triangular": [Schedule("triangular", 0.1, base_lr=1e-3, step_size=5 * SPE)],
    "triangular2": [],  # the CLR seed
    "exp_range": [Schedule("exp_range", 0.1, base_lr=1e-3, step_size=2 * SPE, decay=0.5)],
    "sgdr": [Schedule("sgdr", 0.1, base_lr=1e-4, step_size=2 * SPE, decay=0.8, cycle_mult=2)],
    "onecycle": [],  # the 1cycle seed
    "cosine": [Schedule("cosine", 0.1, base_lr=0.0, warmup=2 * SPE)],  # and the nanoGPT seed
    "wsd": [Schedule("wsd", 0.1, base_lr=1e-3, cooldown=0.1)],  # and the 20% seed
    "inverse_sqrt": [
        Schedule("inverse_sqrt", 0.1, warmup=2 * SPE),
        Schedule("inverse_sqrt", 0.1, warmup=SPE // 2),
    ],
    "plateau": [
        Schedule("plateau", 0.1, base_lr=1e-3, decay=0.5, patience=1),
        Schedule("plateau", 0.1, base_lr=1e-3, decay=0.2, patience=3),
    ],
}


def trace(schedule: Schedule) -> go.Scatter:
    """The schedule's LR against epochs, named by its description (plateau: replayed)."""
    total = EPOCHS * SPE
    if schedule.kind == "plateau":
        lrs = schedule.lrs(total, metrics=LOSS, steps_per_epoch=SPE)
        name = schedule.describe(SPE) + " (on the illustrative loss)"
    else:
        lrs = schedule.lrs(total)
        name = schedule.describe(SPE)
    return go.Scatter(x=np.arange(total) / SPE, y=lrs, mode="lines", name=name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="schedule_gallery.html")
    parser.add_argument("--image", help="write a static .png or .svg to this path instead")
    args = parser.parse_args(argv)

    seeds = [
        Schedule.from_params(p, steps_per_epoch=SPE)
        for p in seed_params(BOUNDS, steps_per_epoch=SPE, epochs=EPOCHS)
    ]
    rows = math.ceil(len(KINDS) / COLS)
    fig = make_subplots(rows=rows, cols=COLS, subplot_titles=KINDS, vertical_spacing=0.08)
    for i, kind in enumerate(KINDS):
        row, col = divmod(i, COLS)
        for schedule in EXAMPLES[kind] + [s for s in seeds if s.kind == kind]:
            fig.add_trace(trace(schedule), row=row + 1, col=col + 1)
        fig.update_yaxes(type="log", title_text="learning rate", row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="epoch", row=row + 1, col=col + 1)
    fig.update_layout(
        height=380 * rows,
        width=1500,
        title=f"lrsearch schedules: {EPOCHS} epochs of {SPE} steps, bounds {BOUNDS.low:g}-"
        f"{BOUNDS.high:g}",
        legend={"orientation": "h", "y": -0.05},
    )
    if args.image:
        fig.write_image(args.image)
        out = args.image
    else:
        fig.write_html(args.out, include_plotlyjs=True)
        out = args.out
    print(f"wrote {out}\ncommand: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
