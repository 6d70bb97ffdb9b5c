"""Benchmark: what the update/weight-ratio diagnostics add to a training step (by hand, not CI).

Trains the ``mnist1d`` task's CNN (SGD with momentum, batch 100, 40 steps an epoch) with
:func:`lrsearch.training.fit` in three modes, side by side in one process, interleaved repeat
by repeat (the order rotates) so that drifts of a shared machine hit every mode alike:

- ``off``: ``diagnostics=False``, the plain loop;
- ``on``: ``diagnostics=True``, as every run measures (one step in ``measure_every(40) = 5``);
- ``every step``: the same measurement on every step, to show what the sampling saves.

Each repeat trains a fresh model from the same seed for ``--epochs`` epochs without evaluation;
the time per optimizer step is ``FitResult.seconds / FitResult.steps`` (training only). The
table gives the median over repeats, the spread (interquartile range) and the ratio of medians
to ``off``; the goal is ``on <= 1.03x``. On a busy machine the spread of whole steps can hide
a cost of a few percent, so the script also times what one measured step adds by itself
(``before()`` + ``after()`` around an optimizer step, minus the step alone) and states it as a
share of the median plain step.

Usage:
    python scripts/bench_diagnostics.py                 # 15 repeats of 3 epochs
    python scripts/bench_diagnostics.py --repeats 5 --epochs 1 --device cuda
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

import lrsearch.training as training
from lrsearch.diagnostics import UpdateRatioMonitor, measure_every
from lrsearch.tasks import load_task, steps_per_epoch

MODES = ("off", "on", "every step")


def _step_seconds(mode: str, epochs: int, device: torch.device, seed: int) -> float:
    task = load_task("mnist1d")
    every_step: Callable[[int], int] = lambda steps: 1  # noqa: E731
    # The "every step" mode measures every step through the loop's own hook for the stride.
    training.measure_every = every_step if mode == "every step" else measure_every  # type: ignore[attr-defined]
    torch.manual_seed(0)
    model = task.make_model().to(device)
    optimizer = task.make_optimizer(model.parameters(), 0.05)
    result = training.fit(
        model,
        optimizer,
        task.loss,
        task.train,
        epochs=epochs,
        batch_size=task.batch_size,
        seed=seed,
        device=device,
        diagnostics=mode != "off",
    )
    return result.seconds / result.steps


def _measure_seconds(device: torch.device, n: int = 200) -> float:
    """Seconds one measured step adds by itself: ``before()`` + ``after()`` around an optimizer
    step, minus the step alone (median of ``n``; the queue is taken every 40, as an epoch does)."""
    task = load_task("mnist1d")
    torch.manual_seed(0)
    model = task.make_model().to(device)
    optimizer = task.make_optimizer(model.parameters(), 0.05)
    x, y = task.train[0][:100].to(device), task.train[1][:100].to(device)
    task.loss(model(x), y).backward()
    monitor = UpdateRatioMonitor(optimizer)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    plain, measured = [], []
    for i in range(n):
        sync()
        began = time.perf_counter()
        optimizer.step()
        sync()
        plain.append(time.perf_counter() - began)
        began = time.perf_counter()
        monitor.before()
        optimizer.step()
        monitor.after()
        if i % 40 == 39:
            monitor.take()
        sync()
        measured.append(time.perf_counter() - began)
    return statistics.median(measured) - statistics.median(plain)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: as is)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    _step_seconds("off", 1, device, 0)  # warm-up: data generation, allocator, kernels
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(args.repeats):
        order = MODES[r % len(MODES) :] + MODES[: r % len(MODES)]
        for mode in order:
            times[mode].append(_step_seconds(mode, args.epochs, device, r))
    base = statistics.median(times["off"])
    task = load_task("mnist1d")
    spe = steps_per_epoch(task.n_train, task.batch_size)
    print(f"command: python {shlex.join(['scripts/bench_diagnostics.py', *sys.argv[1:]])}")
    gpu = f", {torch.cuda.get_device_name()}" if device.type == "cuda" else ""
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}; "
        f"mnist1d CNN, batch {task.batch_size}, {spe} steps/epoch, {args.epochs} epochs x "
        f"{args.repeats} repeats, interleaved"
    )
    print()
    print("| diagnostics | measured steps | ms/step (median) | IQR (ms) | vs off |")
    print("|---|---|---|---|---|")
    measured = {"off": "none", "on": f"1 in {measure_every(spe)}", "every step": "all"}
    for mode in MODES:
        values = np.asarray(times[mode]) * 1e3
        q1, q3 = np.percentile(values, [25, 75])
        median = float(np.median(values))
        print(
            f"| {mode} | {measured[mode]} | {median:.3f} | {q1:.3f}-{q3:.3f} | "
            f"{median / (base * 1e3):.3f}x |"
        )
    extra = _measure_seconds(device)
    every = measure_every(spe)
    print()
    print(
        f"one measured step adds {extra * 1e6:.0f} us by itself (median of 200, the step alone "
        f"subtracted): {extra / base:.2%} of a step when every step is measured, "
        f"{extra / every / base:.2%} at 1 in {every}"
    )


if __name__ == "__main__":
    main()
