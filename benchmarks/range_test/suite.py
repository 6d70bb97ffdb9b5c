"""Compute and cache the range-test suite: every problem's sweeps and its constant-LR grid.

    .venv/bin/python benchmarks/range_test/suite.py [--problems NAME ...] [--out DIR]

By hand, never in CI (about an hour on one CPU core, once; then seconds). For each problem of
``problems.PROBLEMS`` it computes, and appends to a cache file, what scoring a suggestion rule
needs, so that re-scoring a rule trains nothing:

- **sweeps**, for range-test seeds 0..4, each from the model that ``torch.manual_seed(seed)``
  makes and a ``DataLoader`` shuffled by a generator seeded with ``seed``, on one ladder
  (100 steps, exponential, 1e-7 to 10):

  - lrsearch's ``range_test`` with divergence detection off (``diverge_threshold=1e12``): the
    whole ladder's raw losses until a NaN/inf, so any causal stop rule (ours, fastai's,
    Lightning's) can be replayed on it exactly;
  - timed, interleaved (the order alternating with the seed): lrsearch's ``range_test`` as a
    user calls it, and torch-lr-finder 0.2.2 (``LRFinder`` constructor + ``range_test`` +
    ``reset``, its defaults), whose own curve and steepest-point suggestion are stored.

- **the grid**: 17 constant LRs a quarter decade apart (SGD from 3e-4, Adam/AdamW from 1e-5;
  widened by a quarter decade at a time while the best mean is at an end) x seeds 0..2, each
  a fixed-budget run of the problem's epochs from seed ``s``'s initial model; its score is the
  final validation loss, capped at the untrained model's (a run that diverged or ended worse
  than it began learned nothing).

The cache is ``DIR/cache/NAME-KEY.jsonl`` (default ``DIR = bench_out/range_test_suite``), one
JSON record per sweep or training run; ``KEY`` hashes the problem's definition (its fields and
the source of its model and data functions), this file's training code and
``SUITE_VERSION``, so a changed problem gets a new file and an unchanged one trains nothing.
Training runs at any LR (the grid's, or a suggestion's) go to the same file, so
``heldout.py`` adds the runs it needs at the suggested LRs and never repeats one.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import io
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from problems import PROBLEMS, Data, Problem
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrsearch.range_test import range_test
from lrsearch.schedules import Schedule

logger = logging.getLogger("range_test_suite")

#: Bump when anything that changes a cached number changes outside the hashed sources.
SUITE_VERSION = 1
START_LR, END_LR, NUM_ITER = 1e-7, 10.0, 100
SWEEP_SEEDS = 5
GRID_SEEDS = 3
GRID_SIZE = 17
GRID_STEP = 0.25  # decades between grid LRs
DEFAULT_OUT = Path("bench_out/range_test_suite")


# -- the cache -------------------------------------------------------------------------------


def _source(obj: Any) -> str:
    obj = inspect.unwrap(obj)
    target = obj if inspect.isfunction(obj) or inspect.isclass(obj) else type(obj)
    with contextlib.suppress(OSError, TypeError):
        return inspect.getsource(target)
    return repr(obj)


def problem_key(problem: Problem) -> str:
    """A hash of everything that decides the problem's numbers."""
    parts = [
        f"version={SUITE_VERSION}",
        f"torch={torch.__version__}",
        repr((problem.name, problem.family, problem.optimizer_name, problem.batch_size)),
        repr((problem.epochs, problem.grid)),
        _source(problem.make_model),
        _source(problem.load),
        _source(problem.make_loss),
        _source(train_fixed),
        _source(Problem.optimizer),
    ]
    # Factories made by closures (mlp((...)), rnn(...)) differ only in their name.
    parts.append(getattr(problem.make_model, "__qualname__", ""))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def lr_key(lr: float) -> str:
    """A training run's LR as a cache key (exact: the float's hex form)."""
    return float(lr).hex()


class Cache:
    """One problem's records, read from and appended to its JSONL file."""

    def __init__(self, out: Path, problem: Problem) -> None:
        self.path = out / "cache" / f"{problem.name}-{problem_key(problem)}.jsonl"
        self.runs: dict[tuple[str, int], dict[str, Any]] = {}
        self.sweeps: dict[int, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                record = json.loads(line)
                if record["kind"] == "train":
                    self.runs[(record["lr_key"], record["seed"])] = record
                else:
                    self.sweeps[record["seed"]] = record

    def add(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if record["kind"] == "train":
            self.runs[(record["lr_key"], record["seed"])] = record
        else:
            self.sweeps[record["seed"]] = record

    def run(self, problem: Problem, data: Data, lr: float, seed: int) -> dict[str, Any]:
        """The cached run at ``lr`` and ``seed``, trained now if it is not there."""
        key = (lr_key(lr), seed)
        if key not in self.runs:
            record = {"kind": "train", "lr_key": key[0], **train_fixed(problem, data, lr, seed)}
            self.add(record)
            logger.info(
                "%s lr %.4g seed %d: score %.4g (%.1fs)",
                problem.name,
                lr,
                seed,
                record["score"],
                record["seconds"],
            )
        return self.runs[key]


# -- training --------------------------------------------------------------------------------


def fresh_model(problem: Problem, seed: int) -> nn.Module:
    """Seed ``seed``'s initial model."""
    torch.manual_seed(seed)
    return problem.make_model()


@torch.no_grad()
def val_loss(model: nn.Module, loss_fn: nn.Module, data: Data) -> float:
    """The validation loss in eval mode (the model goes back to train mode)."""
    model.eval()
    value = float(loss_fn(model(data.x_val), data.y_val).item())
    model.train()
    return value


def train_fixed(
    problem: Problem, data: Data, lr: float, seed: int, *, schedule: Schedule | None = None
) -> dict[str, Any]:
    """Train seed ``seed``'s initial model at constant ``lr`` for the problem's epochs (or,
    given ``schedule``, with it stepped after every optimizer step over the problem's
    ``total_steps``; ``lr`` is then its peak, the optimizer's starting LR).

    Batches are drawn without replacement by a generator seeded with ``seed`` (the last
    partial batch of an epoch is dropped). The score is the final validation loss, capped at
    the untrained model's: NaN/inf or ending worse than the start both count as "learned
    nothing".
    """
    began = time.perf_counter()
    model = fresh_model(problem, seed)
    loss_fn = problem.make_loss()
    initial = val_loss(model, loss_fn, data)
    optimizer = problem.optimizer(model, lr)
    scheduler = None if schedule is None else schedule.build(optimizer, problem.total_steps(data))
    gen = torch.Generator().manual_seed(seed)
    n, batch = len(data.y_fit), problem.batch_size
    steps, diverged = 0, False
    model.train()
    for _ in range(problem.epochs):
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
            if scheduler is not None:
                scheduler.step()
            steps += 1
        if diverged:
            break
    final = math.nan if diverged else val_loss(model, loss_fn, data)
    score = initial if not math.isfinite(final) else min(final, initial)
    return {
        "lr": lr,
        "seed": seed,
        "val_loss": final,
        "initial_val_loss": initial,
        "score": score,
        "diverged": diverged,
        "steps": steps,
        "seconds": time.perf_counter() - began,
    }


# -- sweeps ----------------------------------------------------------------------------------


def loader(problem: Problem, data: Data, seed: int) -> DataLoader[tuple[torch.Tensor, ...]]:
    """The sweeps' loader: shuffled by a generator seeded with ``seed``, full batches."""
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
def quiet() -> Iterator[None]:
    """Swallow prints, progress bars and warnings (torch-lr-finder has all three)."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield


class Start(NamedTuple):
    """What a range test starts from: seed ``seed``'s model (and a copy of its state), the
    optimizer at ``START_LR``, the seeded loader and the loss."""

    model: nn.Module
    reference: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer
    batches: DataLoader[tuple[torch.Tensor, ...]]
    criterion: nn.Module

    @classmethod
    def of(cls, problem: Problem, data: Data, seed: int) -> Start:
        model = fresh_model(problem, seed)
        reference = {k: v.clone() for k, v in model.state_dict().items()}
        optimizer = problem.optimizer(model, START_LR)
        return cls(model, reference, optimizer, loader(problem, data, seed), problem.make_loss())

    def restored(self) -> bool:
        """The model's state and the optimizer's LR are as they were."""
        return (
            _same_state(self.model, self.reference)
            and self.optimizer.param_groups[0]["lr"] == START_LR
        )


def run_ours(problem: Problem, data: Data, seed: int, **kwargs: Any) -> dict[str, Any]:
    """One lrsearch range test from seed ``seed``'s model and data order, timed."""
    model, _, optimizer, batches, criterion = start = Start.of(problem, data, seed)
    with quiet():
        began = time.perf_counter()
        result = range_test(
            model,
            optimizer,
            criterion,
            batches,
            start_lr=START_LR,
            end_lr=END_LR,
            num_iter=NUM_ITER,
            **kwargs,
        )
        seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "iters": result.num_iter_run,
        "suggestion": result.suggestion,
        "low": result.bounds.low,
        "high": result.bounds.high,
        "stop_reason": result.sweeps[0].stop_reason,
        "restored": start.restored(),
        "lrs": result.lrs.tolist(),
        "losses_raw": result.losses_raw.tolist(),
    }


def run_tlf(problem: Problem, data: Data, seed: int) -> dict[str, Any]:
    """One torch-lr-finder range test (constructor + range_test + reset), timed."""
    from torch_lr_finder import LRFinder

    model, _, optimizer, batches, criterion = start = Start.of(problem, data, seed)
    with quiet():
        began = time.perf_counter()
        finder = LRFinder(model, optimizer, criterion)
        finder.range_test(batches, end_lr=END_LR, num_iter=NUM_ITER)
        finder.reset()
        seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "iters": len(finder.history["lr"]),
        "restored": start.restored(),
        "lrs": [float(v) for v in finder.history["lr"]],
        "losses": [float(v) for v in finder.history["loss"]],
    }


def sweep_record(problem: Problem, data: Data, seed: int) -> dict[str, Any]:
    """Seed ``seed``'s sweeps: the whole ladder (untimed), then ours and tlf timed."""
    full = run_ours(problem, data, seed, diverge_threshold=1e12)
    timed: dict[str, dict[str, Any]] = {}
    for tool in ("ours", "tlf") if seed % 2 == 0 else ("tlf", "ours"):
        timed[tool] = (run_ours if tool == "ours" else run_tlf)(problem, data, seed)
    ours, tlf = timed["ours"], timed["tlf"]
    n = ours["iters"]
    return {
        "kind": "sweep",
        "seed": seed,
        "full": {"lrs": full["lrs"], "losses_raw": full["losses_raw"]},
        "ours": {k: v for k, v in ours.items() if k not in ("lrs", "losses_raw")},
        "ours_is_prefix_of_full": ours["losses_raw"] == full["losses_raw"][:n],
        "tlf": tlf,
        "ours_first": seed % 2 == 0,
    }


# -- a problem, end to end ---------------------------------------------------------------------


def grid_lrs(problem: Problem) -> np.ndarray:
    """The starting grid: GRID_SIZE LRs GRID_STEP decades apart from the problem's low end."""
    return problem.grid[0] * 10 ** (GRID_STEP * np.arange(GRID_SIZE))


def grid_means(cache: Cache, lrs: Sequence[float]) -> np.ndarray:
    """Mean score over the grid seeds at each LR (runs must be cached)."""
    return np.array(
        [np.mean([cache.runs[(lr_key(lr), s)]["score"] for s in range(GRID_SEEDS)]) for lr in lrs]
    )


def compute(problem: Problem, out: Path) -> Cache:
    """Make sure the problem's sweeps and grid are in its cache; return the cache."""
    cache = Cache(out, problem)
    data = problem.load()
    if len(cache.sweeps) < SWEEP_SEEDS:
        with quiet():  # warm-up, untimed: first calls pay one-off costs
            run_ours(problem, data, 10_000)
            run_tlf(problem, data, 10_000)
    for seed in range(SWEEP_SEEDS):
        if seed not in cache.sweeps:
            cache.add(sweep_record(problem, data, seed))
            logger.info("%s sweep seed %d done", problem.name, seed)
    lrs = list(grid_lrs(problem))
    while True:
        for lr in lrs:
            for seed in range(GRID_SEEDS):
                cache.run(problem, data, float(lr), seed)
        best = int(np.argmin(grid_means(cache, lrs)))
        if best == 0:
            lrs.insert(0, lrs[0] / 10**GRID_STEP)
        elif best == len(lrs) - 1:
            lrs.append(lrs[-1] * 10**GRID_STEP)
        else:
            break
        logger.info("%s: best at the grid's end, now %.3g to %.3g", problem.name, lrs[0], lrs[-1])
    return cache


def grid_of(problem: Problem, cache: Cache) -> dict[str, Any]:
    """The problem's grid as cached: its LRs (ascending), mean scores, best LR and score."""
    base = grid_lrs(problem)
    step = 10**GRID_STEP
    lrs = list(base)
    # Widened grids extend the base one step at a time: take every cached extension.
    while (lr_key(lrs[0] / step), 0) in cache.runs:
        lrs.insert(0, lrs[0] / step)
    while (lr_key(lrs[-1] * step), 0) in cache.runs:
        lrs.append(lrs[-1] * step)
    means = grid_means(cache, lrs)
    best = int(np.argmin(means))
    return {
        "lrs": [float(v) for v in lrs],
        "mean_score": [float(v) for v in means],
        "best_lr": float(lrs[best]),
        "best_score": float(means[best]),
    }


def setup(threads: int) -> None:
    """Torch threads, and progress logged to stderr (lrsearch's own advice silenced)."""
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("lrsearch").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Compute (or find cached) every problem's sweeps and grid."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    setup(args.threads)
    began = time.perf_counter()
    for name in args.problems:
        t0 = time.perf_counter()
        cache = compute(PROBLEMS[name], args.out)
        grid = grid_of(PROBLEMS[name], cache)
        logger.info(
            "%s: best %.4g at lr %.3g, %d grid LRs (%.0fs)",
            name,
            grid["best_score"],
            grid["best_lr"],
            len(grid["lrs"]),
            time.perf_counter() - t0,
        )
    logger.info("all done in %.0fs; load average %s", time.perf_counter() - began, os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
