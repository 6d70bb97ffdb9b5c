"""Benchmark lrsearch's LR range test against torch-lr-finder 0.2.2 and fastai's ``valley``.

    .venv/bin/python scripts/bench_range_test.py [--problems digits-mlp gru] [--seeds 10]
        [--grid-size 17] [--grid-seeds 2] [--quick] [--out bench_out] [--threads 2]

A benchmark to run by hand (minutes, timing-sensitive); never part of the test suite. It prints
four pandas tables and the exact command that produced them, and writes every raw number to
``--out``.

Five small problems, each with a model factory, a training part and a validation part carved
from its *training* split (test splits are never touched), a loss, a batch size, SGD
(momentum 0.9) and a fixed budget of optimizer steps:

- ``digits-mlp``     lrsearch.tasks.digits: MLP 64-128-10, cross-entropy, batch 64.
- ``mnist1d-cnn``    lrsearch.tasks.mnist1d: the paper's Conv1d CNN, cross-entropy, batch 100.
- ``regression-mlp`` synthetic: 2000 x 20 Gaussian inputs, a random tanh teacher network plus
  noise (a tenth of the target's variance), MLP 20-64-64-1, MSE, batch 64.
- ``bn-cnn``         the digits as 1x8x8 images through Conv2d+BatchNorm2d+ReLU twice
  (BatchNorm's running statistics test what a range test restores), batch 64.
- ``gru``            MNIST-1D read as 40 time steps of 1 feature by a GRU (hidden 32), batch 100.

The three range tests start from the same freshly initialised model (``torch.manual_seed(seed)``
before the factory) and see the same data order (a fresh ``DataLoader`` over a ``TensorDataset``
with ``shuffle=True`` and a generator seeded with ``seed``, for each tool), with the same ladder:
100 steps, exponential, 1e-7 to 10.

- **ours**: ``lrsearch.range_test.range_test``; ``result.suggestion`` and ``result.bounds``.
- **torch-lr-finder**: ``LRFinder(model, optimizer, criterion)`` with the optimizer's lr at
  1e-7, ``.range_test(loader, end_lr=10, num_iter=100)`` (its defaults: exp, smooth_f=0.05,
  diverge_th=5), then ``.reset()``. Its suggestion is what ``LRFinder.plot(suggest_lr=True)``
  computes (skip 10 at the start, 5 at the end, ``np.gradient(losses).argmin()``), re-done here
  from ``finder.history`` without plotting.
- **fastai valley**: fastai's ``lr_find`` + ``valley`` re-implemented (fastai itself is not a
  dependency) and applied to the raw per-step losses that *our* range test recorded (same
  ladder, same start): fastai's debiased EMA (beta 0.98), its stop rule (smoothed loss > 4x its
  minimum), drop the first ``num_it // 10`` and last 5 points, then the longest-valley rule. Where
  our test stopped earlier than fastai's rule would have, fastai sees the shorter curve.

Measurements:

1. **Speed**: wall time (``time.perf_counter``) of ours vs torch-lr-finder, constructor + test +
   reset for torch-lr-finder. The two tools are interleaved within each problem and seed, the
   order alternating with the seed, so machine load hits both alike; one untimed warm-up pair
   per problem goes first. Also each tool's iteration count (they stop on different rules).
2. **Quality**: a log grid of constant LRs (per-problem ends, chosen so the grid's best is
   interior) x ``--grid-seeds`` seeds, each trained for the problem's fixed budget from the
   same init as the range test of that seed. The score of a run is its final validation loss,
   capped at the validation loss of the untrained model: a run that diverged (NaN/inf) or ended
   worse than it started counts as having learned nothing. ``best`` = the lowest mean over
   seeds on the grid; each tool's suggestion (from seed 0's range test) is trained at exactly
   that LR with the same seeds, and ``regret = mean score / best``.
3. **Coverage**: whether the grid's best LR lies inside our ``[low, high]`` (seed 0), and the
   fraction of seeds for which it does.
4. **Stability**: over ``--seeds`` seeds (init and data order), the spread of each tool's
   suggestion: ``log10(max / min)`` and the standard deviation of ``log10``.

Run time with the defaults: 10.5-12 minutes on 2 CPU cores (measured with other processes
running; the GRU grid is half of it). ``--quick`` takes about 15 seconds.

``--out`` receives ``range_tests.csv`` (one row per problem, seed and tool), ``grid.csv`` and
``suggested_runs.csv`` (one row per training run), ``curves.json`` (every curve: our lrs, raw
and smoothed losses; torch-lr-finder's lrs and its smoothed losses), ``grid.json`` (the grid's
mean scores per LR), the four tables as CSV and ``meta.json``. To compare candidate suggestion
rules offline, without re-training, use :func:`evaluate_rule`::

    import sys; sys.path.insert(0, "scripts")
    import bench_range_test as bench
    print(bench.evaluate_rule("bench_out", bench.fastai_valley))
    print(bench.evaluate_rule("bench_out", lambda lrs, raw: 0.1 * lrs[raw.argmin()]))

Its regrets are a piecewise-linear interpolation (in log-LR) of the grid's mean scores:
for development only. The printed tables come from real training runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrsearch.range_test import range_test
from lrsearch.tasks import digits, mnist1d

logger = logging.getLogger("bench_range_test")

START_LR = 1e-7
END_LR = 10.0
NUM_ITER = 100
VAL_FRACTION = 0.2
TOOLS = ("ours", "torch-lr-finder", "fastai-valley")
#: With --refine K: lrsearch's range test with K confirmation runs, a fourth tool.
REFINED = "ours-refined"
TIMED_TOOLS = ("ours", "torch-lr-finder")

Rule = Callable[[np.ndarray, np.ndarray], float]


# -- problems --------------------------------------------------------------------------------


class Data(NamedTuple):
    """A problem's in-memory data: the part to train on and the validation part."""

    x_fit: torch.Tensor
    y_fit: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@dataclasses.dataclass(frozen=True)
class Problem:
    """One benchmark problem: what to train, on what, how, and for how long."""

    name: str
    make_model: Callable[[], nn.Module]
    load: Callable[[], Data]
    make_loss: Callable[[], nn.Module]
    batch_size: int
    budget: int  # optimizer steps of every fixed-budget training run
    grid: tuple[float, float]  # ends of the constant-LR grid
    momentum: float = 0.9

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """SGD with this problem's momentum at ``lr``."""
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=self.momentum)


def _carve(x: torch.Tensor, y: torch.Tensor, *, stratify: bool) -> Data:
    """Split a training split into a fitting part and a validation part (fixed seed)."""
    idx = np.arange(len(y))
    fit, val = train_test_split(
        idx, test_size=VAL_FRACTION, random_state=0, stratify=y.numpy() if stratify else None
    )
    fit_t, val_t = torch.from_numpy(np.sort(fit)), torch.from_numpy(np.sort(val))
    return Data(x[fit_t], y[fit_t], x[val_t], y[val_t])


@functools.cache
def _digits_flat() -> Data:
    split = digits.load_data()
    return _carve(split.x_train, split.y_train, stratify=True)


@functools.cache
def _digits_images() -> Data:
    d = _digits_flat()
    return Data(d.x_fit.view(-1, 1, 8, 8), d.y_fit, d.x_val.view(-1, 1, 8, 8), d.y_val)


@functools.cache
def _mnist1d_channels() -> Data:
    split = mnist1d.load_data()
    return _carve(split.x_train, split.y_train, stratify=True)


@functools.cache
def _mnist1d_sequences() -> Data:
    d = _mnist1d_channels()
    # (N, 1, 40) channels-first -> (N, 40, 1): 40 time steps of one feature.
    fit, val = d.x_fit.transpose(1, 2).contiguous(), d.x_val.transpose(1, 2).contiguous()
    return Data(fit, d.y_fit, val, d.y_val)


@functools.cache
def _regression() -> Data:
    rng = np.random.default_rng(20240601)
    n, d_in, d_hidden = 2000, 20, 32
    x = rng.standard_normal((n, d_in))
    w1 = rng.standard_normal((d_in, d_hidden)) * 2.0 / math.sqrt(d_in)
    w2 = rng.standard_normal((d_hidden, 1)) / math.sqrt(d_hidden)
    signal = np.tanh(x @ w1) @ w2
    signal /= signal.std()
    y = signal + math.sqrt(0.1 / 0.9) * rng.standard_normal((n, 1))  # noise: 10% of variance
    y = (y - y.mean()) / y.std()
    data = _carve(
        torch.from_numpy(x.astype(np.float32)),
        torch.from_numpy(y.astype(np.float32)),
        stratify=False,
    )
    return data


def _regression_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)
    )


def _bn_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


class GRUClassifier(nn.Module):
    """A one-layer GRU over the sequence; a linear head on its last hidden state."""

    def __init__(self, hidden: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        return self.head(h[-1])


# Budgets: about 10 minutes for the default benchmark on 2 CPU cores (the GRU is most of it).
PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in [
        Problem(
            name="digits-mlp",
            make_model=digits.make_model,
            load=_digits_flat,
            make_loss=nn.CrossEntropyLoss,
            batch_size=64,
            budget=1000,
            grid=(1e-4, 3.0),
        ),
        Problem(
            name="mnist1d-cnn",
            make_model=mnist1d.make_model,
            load=_mnist1d_channels,
            make_loss=nn.CrossEntropyLoss,
            batch_size=100,
            budget=3000,
            grid=(1e-4, 3.0),
        ),
        Problem(
            name="regression-mlp",
            make_model=_regression_mlp,
            load=_regression,
            make_loss=nn.MSELoss,
            batch_size=64,
            budget=1500,
            grid=(1e-4, 3.0),
        ),
        Problem(
            name="bn-cnn",
            make_model=_bn_cnn,
            load=_digits_images,
            make_loss=nn.CrossEntropyLoss,
            batch_size=64,
            budget=1000,
            grid=(1e-4, 3.0),
        ),
        Problem(
            name="gru",
            make_model=GRUClassifier,
            load=_mnist1d_sequences,
            make_loss=nn.CrossEntropyLoss,
            batch_size=100,
            budget=1200,
            grid=(1e-4, 3.0),
        ),
    ]
}


# -- suggestion rules of the other tools -----------------------------------------------------


def tlf_steepest(lrs: Sequence[float] | np.ndarray, losses: Sequence[float] | np.ndarray) -> float:
    """torch-lr-finder 0.2.2's ``plot(suggest_lr=True)``: steepest point of its own curve.

    ``losses`` are torch-lr-finder's (already smoothed) ``history["loss"]``. NaN where
    ``plot`` would raise (fewer than 17 points).
    """
    skip_start, skip_end = 10, 5
    if len(lrs) < skip_start + skip_end + 2:
        return math.nan
    lrs_t = list(lrs)[skip_start:-skip_end]
    losses_t = list(losses)[skip_start:-skip_end]
    return float(lrs_t[int(np.gradient(np.array(losses_t)).argmin())])


def fastai_smooth(raw: Sequence[float] | np.ndarray, beta: float = 0.98) -> np.ndarray:
    """fastai's ``AvgSmoothLoss`` over raw losses, cut where ``LRFinder`` would have stopped.

    Debiased EMA; fastai records the point that breaks ``smooth > 4 * best`` and then stops.
    """
    out: list[float] = []
    val, best = 0.0, math.inf
    for count, loss in enumerate(raw, start=1):
        val = beta * val + (1 - beta) * float(loss)  # torch.lerp(loss, val, beta)
        smooth = val / (1 - beta**count)
        out.append(smooth)
        best = min(best, smooth)
        if smooth > 4 * best:
            break
    return np.asarray(out)


def _valley_index(losses: Sequence[float]) -> int:
    """fastai's ``valley``, verbatim in logic: longest decreasing run, 2/3 of the way down."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def fastai_valley(lrs: np.ndarray, raw: np.ndarray, num_it: int = NUM_ITER) -> float:
    """fastai's ``lr_find`` default suggestion, from raw per-step losses on our ladder."""
    smooth = fastai_smooth(raw)
    lrs_t = np.asarray(lrs)[: len(smooth)][num_it // 10 : -5]
    losses_t = smooth[num_it // 10 : -5]
    nan = np.nonzero(np.isnan(losses_t))[0]
    if len(nan):
        lrs_t, losses_t = lrs_t[: nan[0]], losses_t[: nan[0]]
    if len(losses_t) == 0:
        return math.nan  # fastai would raise an IndexError here
    return float(lrs_t[_valley_index(losses_t.tolist())])


def current_rule(lrs: np.ndarray, raw: np.ndarray) -> float:
    """lrsearch's current suggestion rule, re-read from a stored curve (private API: may move).

    Useful as the baseline row when comparing candidates with :func:`evaluate_rule`.
    """
    from lrsearch.range_test import read_curve

    return float(read_curve(np.asarray(lrs), np.asarray(raw), "completed", 0.0).suggestion)


# -- running the tools -----------------------------------------------------------------------


def _fresh_model(problem: Problem, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return problem.make_model()


def _loader(problem: Problem, data: Data, seed: int) -> DataLoader[tuple[torch.Tensor, ...]]:
    return DataLoader(
        TensorDataset(data.x_fit, data.y_fit),
        batch_size=problem.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )


def _same_state(model: nn.Module, reference: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return state.keys() == reference.keys() and all(
        torch.equal(state[k], reference[k]) for k in reference
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow prints, progress bars and warnings (torch-lr-finder has all three)."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield


def run_ours(problem: Problem, data: Data, seed: int, refine: int = 0) -> dict[str, Any]:
    """One timed range test with lrsearch; the row for ``range_tests.csv`` plus the curve.

    ``refine``: confirmation runs (``range_test(refine=...)``), timed with the sweep.
    """
    model = _fresh_model(problem, seed)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = problem.optimizer(model, START_LR)
    loader = _loader(problem, data, seed)
    criterion = problem.make_loss()
    with _quiet():  # the same surroundings as torch-lr-finder gets
        began = time.perf_counter()
        result = range_test(
            model,
            optimizer,
            criterion,
            loader,
            start_lr=START_LR,
            end_lr=END_LR,
            num_iter=NUM_ITER,
            refine=refine,
        )
        seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "refine_seconds": result.refinement.seconds if result.refinement else 0.0,
        "iters": result.num_iter_run,
        "suggestion": result.suggestion,
        "low": result.bounds.low,
        "high": result.bounds.high,
        "diverged": result.diverged,
        "never_diverged": result.never_diverged,
        "no_valley": result.no_valley,
        "restored": _same_state(model, reference) and optimizer.param_groups[0]["lr"] == START_LR,
        "curve": {
            "lrs": result.lrs.tolist(),
            "losses_raw": result.losses_raw.tolist(),
            "losses": result.losses.tolist(),
        },
    }


def run_tlf(problem: Problem, data: Data, seed: int) -> dict[str, Any]:
    """One timed range test with torch-lr-finder (constructor + range_test + reset)."""
    from torch_lr_finder import LRFinder

    model = _fresh_model(problem, seed)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = problem.optimizer(model, START_LR)
    loader = _loader(problem, data, seed)
    criterion = problem.make_loss()
    with _quiet():
        began = time.perf_counter()
        finder = LRFinder(model, optimizer, criterion)
        finder.range_test(loader, end_lr=END_LR, num_iter=NUM_ITER)
        finder.reset()
        seconds = time.perf_counter() - began
    lrs = [float(v) for v in finder.history["lr"]]
    losses = [float(v) for v in finder.history["loss"]]
    return {
        "seconds": seconds,
        "iters": len(lrs),
        "suggestion": tlf_steepest(lrs, losses),
        "restored": _same_state(model, reference) and optimizer.param_groups[0]["lr"] == START_LR,
        "curve": {"lrs": lrs, "losses": losses},
    }


# -- fixed-budget training -------------------------------------------------------------------


@torch.no_grad()
def _val_loss(model: nn.Module, loss_fn: nn.Module, data: Data) -> float:
    model.eval()
    value = float(loss_fn(model(data.x_val), data.y_val).item())
    model.train()
    return value


def train_fixed(problem: Problem, data: Data, lr: float, seed: int) -> dict[str, Any]:
    """Train from seed ``seed``'s init at constant ``lr`` for the budget; score the result.

    The score is the final validation loss, capped at the untrained model's (NaN/inf or worse
    than the start both count as "learned nothing").
    """
    began = time.perf_counter()
    model = _fresh_model(problem, seed)
    loss_fn = problem.make_loss()
    initial = _val_loss(model, loss_fn, data)
    optimizer = problem.optimizer(model, lr)
    gen = torch.Generator().manual_seed(seed)
    n, batch = len(data.y_fit), problem.batch_size
    step, diverged = 0, False
    model.train()
    while step < problem.budget and not diverged:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - batch + 1, batch):
            idx = perm[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(data.x_fit[idx]), data.y_fit[idx])
            if not math.isfinite(loss.item()):
                diverged = True
                break
            loss.backward()
            optimizer.step()
            step += 1
            if step >= problem.budget:
                break
    final = math.nan if diverged else _val_loss(model, loss_fn, data)
    score = initial if not math.isfinite(final) else min(final, initial)
    return {
        "lr": lr,
        "seed": seed,
        "val_loss": final,
        "initial_val_loss": initial,
        "score": score,
        "diverged": diverged,
        "steps": step,
        "seconds": time.perf_counter() - began,
    }


# -- the benchmark ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved command-line settings."""

    problems: tuple[str, ...]
    seeds: int
    grid_size: int
    grid_seeds: int
    budget_scale: float
    out: Path
    threads: int
    rescore: Path | None = None
    refine: int = 0


def bench_problem(problem: Problem, settings: Settings) -> dict[str, Any]:
    """Every measurement for one problem: range tests, the grid, the suggested LRs."""
    data = problem.load()
    budget = max(10, round(problem.budget * settings.budget_scale))
    problem = dataclasses.replace(problem, budget=budget)

    # Warm-up (untimed): first calls pay one-off costs (allocator, lazy init, imports).
    run_ours(problem, data, 10_000)
    run_tlf(problem, data, 10_000)

    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, Any]] = {}
    for seed in range(settings.seeds):
        order = TIMED_TOOLS if seed % 2 == 0 else TIMED_TOOLS[::-1]
        out: dict[str, dict[str, Any]] = {}
        for tool in order:
            out[tool] = (run_ours if tool == "ours" else run_tlf)(problem, data, seed)
        ours, tlf = out["ours"], out["torch-lr-finder"]
        valley = fastai_valley(
            np.array(ours["curve"]["lrs"]), np.array(ours["curve"]["losses_raw"])
        )
        curves[str(seed)] = {"ours": ours.pop("curve"), "torch-lr-finder": tlf.pop("curve")}
        curves[str(seed)]["ours"].update(
            suggestion=ours["suggestion"], low=ours["low"], high=ours["high"]
        )
        curves[str(seed)]["torch-lr-finder"]["suggestion"] = tlf["suggestion"]
        curves[str(seed)]["fastai-valley"] = {"suggestion": valley}
        rows.append(
            {
                "problem": problem.name,
                "seed": seed,
                "tool": "ours",
                "first": order[0] == "ours",
                **ours,
            }
        )
        rows.append(
            {
                "problem": problem.name,
                "seed": seed,
                "tool": "torch-lr-finder",
                "first": order[0] == "torch-lr-finder",
                **tlf,
            }
        )
        rows.append(
            {"problem": problem.name, "seed": seed, "tool": "fastai-valley", "suggestion": valley}
        )
        if settings.refine >= 2:
            refined = run_ours(problem, data, seed, refine=settings.refine)
            refined.pop("curve")
            curves[str(seed)][REFINED] = {"suggestion": refined["suggestion"]}
            rows.append(
                {"problem": problem.name, "seed": seed, "tool": REFINED, "first": False, **refined}
            )
            logger.info(
                "%s seed %d: refined %.3gs (%.3gs refining) -> %.3g",
                problem.name,
                seed,
                refined["seconds"],
                refined["refine_seconds"],
                refined["suggestion"],
            )
        logger.info(
            "%s seed %d: ours %.3gs %d it -> %.3g [%.3g, %.3g]; tlf %.3gs %d it -> %.3g; "
            "valley %.3g",
            problem.name,
            seed,
            ours["seconds"],
            ours["iters"],
            ours["suggestion"],
            ours["low"],
            ours["high"],
            tlf["seconds"],
            tlf["iters"],
            tlf["suggestion"],
            valley,
        )

    grid_lrs = np.geomspace(*problem.grid, settings.grid_size)
    grid_runs = []
    for lr in grid_lrs:
        for seed in range(settings.grid_seeds):
            grid_runs.append({"problem": problem.name, **train_fixed(problem, data, lr, seed)})
        done = grid_runs[-settings.grid_seeds :]
        logger.info(
            "%s grid lr %.3g: scores %s (%.1fs)",
            problem.name,
            lr,
            " ".join(f"{r['score']:.4g}" for r in done),
            sum(r["seconds"] for r in done),
        )
    grid = pd.DataFrame(grid_runs)
    means = grid.groupby("lr")["score"].mean()
    best_lr = float(means.idxmin())
    logger.info(
        "%s grid: best %.3g at lr %.3g (%s)",
        problem.name,
        means.min(),
        best_lr,
        "interior" if grid_lrs[0] < best_lr < grid_lrs[-1] else "AT THE EDGE: widen the grid",
    )

    suggested_runs = []
    for tool in _tools(settings.refine):
        lr = curves["0"][tool]["suggestion"]
        for seed in range(settings.grid_seeds):
            if math.isfinite(lr):
                run = train_fixed(problem, data, lr, seed)
            else:  # no suggestion at all: score as "learned nothing"
                run = {"lr": lr, "seed": seed, "score": math.nan}
            suggested_runs.append({"problem": problem.name, "tool": tool, **run})
        logger.info(
            "%s %s: lr %.3g -> mean score %.4g (best %.4g)",
            problem.name,
            tool,
            lr,
            np.mean([r["score"] for r in suggested_runs[-settings.grid_seeds :]]),
            means.min(),
        )
    return {
        "rows": rows,
        "curves": curves,
        "grid_runs": grid_runs,
        "suggested_runs": suggested_runs,
        "grid": {
            "lrs": [float(v) for v in means.index],
            "mean_score": [float(v) for v in means.values],
            "best_lr": best_lr,
            "best_score": float(means.min()),
            "budget": budget,
            "batch_size": problem.batch_size,
            "grid_seeds": settings.grid_seeds,
        },
    }


def _tools(refine: int) -> tuple[str, ...]:
    return (*TOOLS, REFINED) if refine >= 2 else TOOLS


def _spread(values: pd.Series) -> tuple[float, float]:
    logs = np.log10(values.dropna().to_numpy(dtype=float))
    if len(logs) < 2:
        return math.nan, math.nan
    return float(logs.max() - logs.min()), float(logs.std(ddof=1))


def make_tables(
    rows: pd.DataFrame, grids: dict[str, dict[str, Any]], suggested: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The four result tables, each with per-problem rows and a summary row."""
    problems = list(dict.fromkeys(rows["problem"]))
    tools = _tools(2 if (rows["tool"] == REFINED).any() else 0)

    # 1. speed
    timed = rows[rows["tool"].isin(TIMED_TOOLS)].pivot_table(
        index=["problem", "seed"], columns="tool", values=["seconds", "iters"]
    )
    ratio = timed["seconds"]["ours"] / timed["seconds"]["torch-lr-finder"]
    per_iter = (timed["seconds"]["ours"] / timed["iters"]["ours"]) / (
        timed["seconds"]["torch-lr-finder"] / timed["iters"]["torch-lr-finder"]
    )
    speed_rows = []
    for name in [*problems, "all"]:
        sel = slice(None) if name == "all" else name
        t = timed.loc[sel]
        speed_rows.append(
            {
                "problem": name,
                "ours_s": t["seconds"]["ours"].median(),
                "tlf_s": t["seconds"]["torch-lr-finder"].median(),
                "ratio": ratio.loc[sel].median(),
                "ratio_per_iter": per_iter.loc[sel].median(),
                "ours_iters": t["iters"]["ours"].median(),
                "tlf_iters": t["iters"]["torch-lr-finder"].median(),
            }
        )
    speed = pd.DataFrame(speed_rows).set_index("problem")
    if REFINED in tools:
        # Refined runs are not interleaved with torch-lr-finder: compared with its median.
        refined = rows[rows["tool"] == REFINED].groupby("problem")["seconds"].median()
        speed["refined_s"] = [
            refined.loc[p] if p in refined.index else refined.median() for p in speed.index
        ]
        speed.loc["all", "refined_s"] = refined.median()
        speed["refined_ratio"] = speed["refined_s"] / speed["tlf_s"]

    # 2. quality
    regret = suggested.groupby(["problem", "tool"])["score"].mean().unstack("tool")[list(tools)]
    best = pd.Series({p: grids[p]["best_score"] for p in problems})
    regret = regret.loc[problems].div(best, axis=0)
    lr0 = suggested.groupby(["problem", "tool"])["lr"].first().unstack("tool")[list(tools)]
    quality = pd.concat(
        [
            pd.Series({p: grids[p]["best_lr"] for p in problems}, name="grid_best_lr"),
            best.rename("best_score"),
            lr0.loc[problems].add_prefix("lr_"),
            regret.add_prefix("regret_"),
        ],
        axis=1,
    )
    quality.loc["median"] = quality.median(numeric_only=True)
    quality.loc["median", ["grid_best_lr", "best_score"]] = math.nan
    quality.loc["median", [f"lr_{t}" for t in tools]] = math.nan

    # 3. coverage
    ours = rows[rows["tool"] == "ours"]
    cov_rows = []
    for p in problems:
        b = grids[p]["best_lr"]
        o = ours[ours["problem"] == p]
        inside = (o["low"] <= b) & (b <= o["high"])
        s0 = o[o["seed"] == 0].iloc[0]
        cov_rows.append(
            {
                "problem": p,
                "grid_best_lr": b,
                "low": s0["low"],
                "high": s0["high"],
                "covered": bool(s0["low"] <= b <= s0["high"]),
                "covered_frac_seeds": float(inside.mean()),
            }
        )
    coverage = pd.DataFrame(cov_rows).set_index("problem")
    coverage["covered"] = coverage["covered"].astype(object)  # the summary row holds "k/n"
    coverage.loc["all"] = [
        math.nan,
        math.nan,
        math.nan,
        f"{int(coverage['covered'].sum())}/{len(problems)}",
        coverage["covered_frac_seeds"].mean(),
    ]

    # 4. stability
    stab_rows = []
    for p in problems:
        row: dict[str, Any] = {"problem": p}
        for tool in tools:
            r = rows[(rows["problem"] == p) & (rows["tool"] == tool)]["suggestion"]
            row[f"{tool}_decades"], row[f"{tool}_std"] = _spread(r)
        stab_rows.append(row)
    stability = pd.DataFrame(stab_rows).set_index("problem")
    stability["ours/tlf"] = stability["ours_decades"] / stability["torch-lr-finder_decades"]
    if REFINED in tools:
        stability["refined/tlf"] = (
            stability[f"{REFINED}_decades"] / stability["torch-lr-finder_decades"]
        )
    stability.loc["median"] = stability.median()
    return {"speed": speed, "quality": quality, "coverage": coverage, "stability": stability}


def _bars(tables: dict[str, pd.DataFrame]) -> list[str]:
    q = tables["quality"].drop(index="median")
    s = tables["stability"].drop(index="median")
    others = q[["regret_torch-lr-finder", "regret_fastai-valley"]].min(axis=1)
    lines = []
    for tool, ratio in (("ours", "ours/tlf"), (REFINED, "refined/tlf")):
        if f"regret_{tool}" not in q.columns:
            continue
        mine = q[f"regret_{tool}"]
        beaten = [p for p in q.index if not mine[p] <= others[p]]
        unstable = [p for p in s.index if not s.loc[p, ratio] <= 0.5]
        med = tables["quality"].loc["median", f"regret_{tool}"]
        lines += [
            f"regret: {tool} <= both others on every problem: {not beaten}"
            + (f" (not on {', '.join(beaten)})" if beaten else ""),
            f"regret: {tool} median {med:.3f} <= 1.10: {med <= 1.10}",
            f"stability: {tool} spread <= half of torch-lr-finder's on every problem: "
            f"{not unstable}" + (f" (not on {', '.join(unstable)})" if unstable else ""),
        ]
    return lines


def _json_default(obj: object) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def run(settings: Settings, argv: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Run the benchmark, write ``settings.out`` and return the tables."""
    torch.set_num_threads(settings.threads)
    load_before = os.getloadavg()
    began = time.perf_counter()
    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    grids: dict[str, Any] = {}
    grid_runs: list[dict[str, Any]] = []
    suggested_runs: list[dict[str, Any]] = []
    per_problem_s: dict[str, float] = {}
    for name in settings.problems:
        t0 = time.perf_counter()
        result = bench_problem(PROBLEMS[name], settings)
        per_problem_s[name] = time.perf_counter() - t0
        logger.info("%s done in %.1fs", name, per_problem_s[name])
        rows += result["rows"]
        curves[name] = result["curves"]
        grids[name] = result["grid"]
        grid_runs += result["grid_runs"]
        suggested_runs += result["suggested_runs"]
    total_s = time.perf_counter() - began

    frame = pd.DataFrame(rows)
    tables = make_tables(frame, grids, pd.DataFrame(suggested_runs))

    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "range_tests.csv", index=False)
    pd.DataFrame(grid_runs).to_csv(out / "grid.csv", index=False)
    pd.DataFrame(suggested_runs).to_csv(out / "suggested_runs.csv", index=False)
    for key, table in tables.items():
        table.to_csv(out / f"table_{key}.csv")
    (out / "curves.json").write_text(json.dumps(curves, default=_json_default))
    (out / "grid.json").write_text(json.dumps(grids, indent=1, default=_json_default))
    import torch_lr_finder

    meta = {
        "command": _command(argv),
        "settings": {**settings.__dict__, "out": str(settings.out), "rescore": None},
        "start_lr": START_LR,
        "end_lr": END_LR,
        "num_iter": NUM_ITER,
        "total_seconds": total_s,
        # Other processes on the machine slow multi-threaded torch a lot: keep the evidence.
        "loadavg_1_5_15min_before": load_before,
        "loadavg_1_5_15min_after": os.getloadavg(),
        "per_problem_seconds": per_problem_s,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_lr_finder": getattr(torch_lr_finder, "__version__", "0.2.2"),
            "numpy": np.__version__,
        },
        "machine": platform.platform(),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    tables["_total_seconds"] = pd.DataFrame({"seconds": [total_s]})
    return tables


def _command(argv: Sequence[str]) -> str:
    return shlex.join(["python", "scripts/bench_range_test.py", *argv])


# -- offline re-evaluation -------------------------------------------------------------------


def grid_regrets(grid: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A stored grid (``grid.json``) as log10 of its LRs and their regrets (mean score / best).

    What interpolated regrets are read from: ``np.interp(log10(lr), *grid_regrets(grid))``.
    """
    x = np.log10(np.asarray(grid["lrs"], dtype=float))
    return x, np.asarray(grid["mean_score"], dtype=float) / grid["best_score"]


def evaluate_rule(out_dir: str | Path, rule_fn: Rule, *, label: str | None = None) -> pd.DataFrame:
    """Score a candidate suggestion rule on stored curves, without training anything.

    For development only: the regret is interpolated, piecewise-linearly in log10(LR), from
    the grid's mean scores, and clamped at the grid's ends (``outside`` counts suggestions
    beyond them). The benchmark's printed tables come from real training runs.

    Args:
        out_dir: A ``--out`` directory of a finished run (``curves.json``, ``grid.json``).
        rule_fn: ``rule_fn(lrs, raw_losses) -> lr`` on one of our stored curves (NumPy
            arrays: the ladder as run, and the raw per-step losses).
        label: Name for the table's index level; the function's name by default.

    Returns:
        One row per problem and a ``median`` row: the rule's LR on seed 0's curve and its
        interpolated regret, the median interpolated regret over every seed's curve, the
        spread of its LRs over seeds (decades and std of log10), and ``outside``.
    """
    out = Path(out_dir)
    curves = json.loads((out / "curves.json").read_text())
    grids = json.loads((out / "grid.json").read_text())
    rows = []
    for problem, by_seed in curves.items():
        x, y = grid_regrets(grids[problem])
        lrs = {
            int(seed): float(
                rule_fn(np.asarray(c["ours"]["lrs"]), np.asarray(c["ours"]["losses_raw"]))
            )
            for seed, c in by_seed.items()
        }
        values = np.array([lrs[s] for s in sorted(lrs)])
        finite = values[np.isfinite(values) & (values > 0)]
        regrets = np.interp(np.log10(finite), x, y) if len(finite) else np.array([math.nan])
        r0 = float(np.interp(math.log10(lrs[0]), x, y)) if lrs[0] > 0 else math.nan
        logs = np.log10(finite)
        rows.append(
            {
                "problem": problem,
                "lr_seed0": lrs[0],
                "interp_regret_seed0": r0,
                "interp_regret_median_seeds": float(np.median(regrets)),
                "decades": float(logs.max() - logs.min()) if len(logs) > 1 else math.nan,
                "std_log10": float(logs.std(ddof=1)) if len(logs) > 1 else math.nan,
                "outside": int(np.sum((finite < 10 ** x[0]) | (finite > 10 ** x[-1]))),
                "failed": int(len(values) - len(finite)),
            }
        )
    table = pd.DataFrame(rows).set_index("problem")
    table.loc["median"] = table.median()
    table.loc["median", "lr_seed0"] = math.nan
    table.index.name = label or getattr(rule_fn, "__name__", "rule")
    return table


# -- command line ----------------------------------------------------------------------------


def _parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Tables go to stdout; progress to stderr.",
    )
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--seeds", type=int, default=None, help="range-test seeds (default 10)")
    parser.add_argument("--grid-size", type=int, default=None, help="grid LRs (default 17)")
    parser.add_argument("--grid-seeds", type=int, default=None, help="seeds per LR (default 2)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2 seeds, 5 grid LRs, 1 grid seed, 5%% of each training budget",
    )
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch.set_num_threads (default 2; 1 is ~30%% faster for these small models and "
        "far less hurt by other processes on a 2-core machine)",
    )
    parser.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="K",
        help="also run lrsearch's range test with K confirmation runs (a fourth tool, "
        "'ours-refined'); 0: not",
    )
    parser.add_argument(
        "--rescore",
        type=Path,
        metavar="DIR",
        help="no benchmark: re-score lrsearch's current rule and fastai's valley on the curves "
        "stored in DIR by interpolating its grid (development only), and exit",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    settings = Settings(
        rescore=args.rescore,
        problems=tuple(args.problems),
        seeds=args.seeds if args.seeds is not None else (2 if quick else 10),
        grid_size=args.grid_size if args.grid_size is not None else (5 if quick else 17),
        grid_seeds=args.grid_seeds if args.grid_seeds is not None else (1 if quick else 2),
        budget_scale=0.05 if quick else 1.0,
        out=args.out,
        threads=args.threads,
        refine=args.refine,
    )
    for name in ("seeds", "grid_size", "grid_seeds", "threads"):
        if getattr(settings, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if settings.grid_size < 2:
        parser.error("--grid-size must be at least 2")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; print the tables and the command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    settings = _parse(argv)
    if settings.rescore is not None:
        with pd.option_context("display.width", 250, "display.float_format", "{:.4g}".format):
            print("Interpolated regrets from the stored grid: for development only.\n")
            for rule in (current_rule, fastai_valley):
                print(evaluate_rule(settings.rescore, rule).to_string(), end="\n\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("lrsearch").setLevel(logging.ERROR)  # its per-sweep advice is noise here
    tables = run(settings, argv)
    total = float(tables.pop("_total_seconds")["seconds"].iloc[0])
    titles = {
        "speed": "1. Speed: median seconds per range test; ratio = median of ours/tlf per seed",
        "quality": "2. Quality: regret = mean final val score at the suggestion / grid best",
        "coverage": "3. Coverage: grid's best LR inside ours [low, high]",
        "stability": "4. Stability: spread of the suggestion over seeds (decades; std log10)",
    }
    with pd.option_context(
        "display.width", 250, "display.max_columns", 50, "display.float_format", "{:.4g}".format
    ):
        for key, title in titles.items():
            print(f"\n## {title}\n")
            print(tables[key].to_string())
    print()
    for line in _bars(tables):
        print(line)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\ntotal: {total:.0f}s; load average now {load}; raw results in {settings.out}/")
    print(f"command: {_command(argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
