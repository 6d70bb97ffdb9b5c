"""The oracle of the unseen-problem benchmark: the best constant LR of a 16-point grid.

Independent of lrsearch's training code on purpose: a plain torch loop written here (a model
seeded with ``torch.manual_seed``, batches shuffled by a seeded ``torch.Generator``, the last
batch kept short, a constant LR, the task's own optimizer factory, ``task.epochs`` of
``task.batch_size`` on all of ``task.train``), scored once on ``task.test`` with the task's
metric (accuracy of the argmax, or the mean loss). Only the :class:`lrsearch.Task` container
is lrsearch's.

Each problem is trained at :data:`GRID` (16 LRs, log-spaced from 1e-4 to 10) from
:data:`SEEDS` (2 model seeds); the oracle is the grid LR with the best mean test metric. A run
whose training loss or test metric is not finite has diverged and scores worst (so does any LR
with such a seed). Results are cached as JSON under ``OUT/oracle/``, keyed by the problem's
name and a hash of this file's and ``problems.py``'s source, so reruns are instant and a change
to either recomputes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lrsearch import Task

__all__ = ["GRID", "SEEDS", "code_hash", "compute", "oracle", "train_once"]

#: The constant LRs tried: 16 log-spaced points from 1e-4 to 10 (a third of a decade apart).
GRID: tuple[float, ...] = tuple(float(v) for v in np.logspace(-4, 1, 16))
#: Model (and shuffling) seeds per LR.
SEEDS: tuple[int, ...] = (0, 1)
_EVAL_BATCH = 1024
_HERE = Path(__file__).resolve().parent


def code_hash() -> str:
    """A short hash of the oracle's and the problems' source (what a cached result depends
    on)."""
    digest = hashlib.sha256()
    for name in ("oracle.py", "problems.py"):
        digest.update((_HERE / name).read_bytes())
    return digest.hexdigest()[:12]


def _metric(task: Task, model: nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    """The task's metric on all of ``test``, in eval mode, without gradients."""
    x, y = test
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i : i + _EVAL_BATCH]) for i in range(0, len(x), _EVAL_BATCH)])
    if task.metric == "accuracy":
        return float((out.argmax(dim=1) == y).float().mean())
    if task.metric == "loss":
        return float(task.loss(out, y))
    raise ValueError(f"the oracle scores 'accuracy' or 'loss'; got metric {task.metric!r}")


def train_once(task: Task, lr: float, seed: int) -> dict[str, Any]:
    """Train ``task``'s model at constant ``lr`` from ``seed`` on all of ``train``; score
    ``test``.

    Returns:
        ``{"score": float | None, "seconds": float, "cpu_seconds": float, "steps": int,
        "diverged": bool}``; ``score`` is ``None`` when the run diverged; ``cpu_seconds`` is
        this process's CPU time (with one torch thread: the run's time on one core, whatever
        else the machine runs).
    """
    train, test = task.train, task.load_test()
    if not (isinstance(train, tuple) and isinstance(test, tuple)):
        raise TypeError("the oracle trains on in-memory (x, y) tensors only")
    x, y = train
    began, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    model = task.make_model()
    optimizer = task.make_optimizer(model.parameters(), lr)
    shuffle = torch.Generator().manual_seed(seed)
    steps, diverged = 0, False
    model.train()
    for _ in range(task.epochs):
        order = torch.randperm(len(x), generator=shuffle)
        for start in range(0, len(x), task.batch_size):
            idx = order[start : start + task.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                diverged = True
                break
            loss.backward()
            optimizer.step()
            steps += 1
        if diverged:
            break
    score = None if diverged else _metric(task, model, test)
    if score is not None and not math.isfinite(score):
        score, diverged = None, True
    return {
        "score": score,
        "seconds": time.perf_counter() - began,
        "cpu_seconds": time.process_time() - cpu,
        "steps": steps,
        "diverged": diverged,
    }


def oracle(runs: dict[str, list[dict[str, Any]]], *, maximize: bool) -> dict[str, Any]:
    """The best grid LR of ``runs`` (``{lr as str: [run per seed]}``) and every LR's mean.

    An LR with a diverged seed scores worst; of LRs tied for the best, the middle one wins.
    """
    worst = -math.inf if maximize else math.inf
    means = {}
    for key, seed_runs in runs.items():
        scores = [r["score"] for r in seed_runs]
        means[key] = worst if any(s is None for s in scores) else float(np.mean(scores))
    top = max(means.values()) if maximize else min(means.values())
    # A tie (accuracy on a small test set often is one) goes to the middle tied LR.
    tied = sorted((k for k, v in means.items() if v == top), key=float)
    best = tied[(len(tied) - 1) // 2]
    lrs = [float(k) for k in runs]
    return {
        "best_lr": float(best),
        "best_score": means[best],
        "means": {k: (v if math.isfinite(v) else None) for k, v in means.items()},
        "at_edge": float(best) in (min(lrs), max(lrs)),
    }


def compute(name: str, task: Task, out: Path) -> dict[str, Any]:
    """The oracle of problem ``name``: from the cache under ``out/oracle/`` if current, else
    trained now (32 runs) and cached."""
    path = out / "oracle" / f"{name}-{code_hash()}.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    runs = {repr(lr): [train_once(task, lr, seed) for seed in SEEDS] for lr in GRID}
    record = {
        "problem": name,
        "code_hash": code_hash(),
        "metric": task.metric_name,
        "direction": task.direction,
        "grid": list(GRID),
        "seeds": list(SEEDS),
        "runs": runs,
        "seconds_per_run": float(np.median([r["seconds"] for rs in runs.values() for r in rs])),
        "cpu_seconds_per_run": float(
            np.median([r["cpu_seconds"] for rs in runs.values() for r in rs])
        ),
        "steps": max(r["steps"] for rs in runs.values() for r in rs),
        **oracle(runs, maximize=task.maximize),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record
