"""Check a whole study on a CUDA GPU, by hand (CI has no GPU).

    python scripts/check_cuda_study.py [--tasks digits charlm] [--out DIR] [--full]
        [--device cpu]  (a dry run of the script itself where there is no GPU)

For each task it runs ``run_study`` with ``device = "cuda"`` (by default on a shortened
budget: 8 search trials, 2 CV folds x 3 grid LRs, 2 finalists, 2 final seeds; ``--full`` keeps
the packaged config) and searching two optimizers (the task's own and AdamW), then checks:

1. every worker's run record says it trained on ``cuda``;
2. every arm of the comparison (tuned, constant-cv, adam-3e-4, prodigy, schedule-free-adamw)
   has a finite test metric for every seed;
3. each recipe arm's optimizer, built by the pipeline and stepped on a CUDA model, keeps its
   state on the GPU (Prodigy's and Schedule-Free AdamW's buffers included), and Schedule-Free's
   ``train()`` / ``eval()`` round trip leaves the weights on the GPU.

Prints the comparison table of each study, a summary table and the command. Needs a CUDA GPU
and lrsearch with its dependencies importable (no optuna-dashboard or plotly needed).
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
import time
import warnings
from pathlib import Path

import optuna
import pandas as pd
import torch

from lrsearch.choices import ARMS
from lrsearch.config import load_config
from lrsearch.pipeline.arms import RECIPES
from lrsearch.store import load_stored, run_records
from lrsearch.study import run_study
from lrsearch.tasks import load_task

SHORT = {
    "n_trials": 8,
    "cv_folds": 2,
    "cv_grid": 3,
    "finalists": 2,
    "final_seeds": 2,
}


def _state_devices(optimizer: torch.optim.Optimizer) -> set[str]:
    return {
        value.device.type
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor) and value.dim() > 0
    }


def check_recipes(task_name: str, device: str) -> list[str]:
    """Step each recipe arm's optimizer on a model of the task on ``device``; return what is
    wrong."""
    task = load_task(task_name)
    problems = []
    x, y = task.train if isinstance(task.train, tuple) else (None, None)
    assert x is not None and y is not None, "the built-in tasks hold tensors"
    xb, yb = x[: task.batch_size].to(device), y[: task.batch_size].to(device)
    for name, recipe in RECIPES.items():
        model = task.make_model().to(device)
        opt = recipe.optimizer_factory(100)(model.parameters(), recipe.lr)
        if hasattr(opt, "train"):
            opt.train()
        for _ in range(3):
            opt.zero_grad()
            task.loss(model(xb), yb).backward()
            opt.step()
        if hasattr(opt, "eval"):
            opt.eval()
            opt.train()
        where = _state_devices(opt) | {p.device.type for p in model.parameters()}
        if where != {device}:
            problems.append(f"{task_name}/{name}: tensors on {sorted(where)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["digits", "charlm"])
    parser.add_argument("--out", type=Path, default=Path("bench_out/cuda_study"))
    parser.add_argument("--full", action="store_true", help="the packaged config's budget")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args(argv)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, problems = [], []
    for task in args.tasks:
        storage = f"sqlite:///{(args.out / f'{task}.db').resolve()}"
        overrides = {"device": device, "optimizers": ["task", "adamw"]}
        if not args.full:
            overrides |= SHORT
        cfg = load_config(task, overrides=overrides)
        began = time.perf_counter()
        result = run_study(cfg, storage=storage, fresh=True)
        seconds = time.perf_counter() - began
        where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
        print(f"\n## {task} on {where} ({seconds:.0f} s)\n")
        print(result.table().to_markdown(index=False))
        print(f"\n{result.verdict()}")
        devices = {r.device for r in run_records(load_stored(task, storage=storage).search)}
        if devices != {device}:
            problems.append(f"{task}: run records say {sorted(devices)}")
        comparison = result.comparison or {}
        for arm in ARMS:
            finals = comparison.get(arm, {}).get("test_metric_per_seed", [])
            if len(finals) != cfg.final_seeds or not all(math.isfinite(v) for v in finals):
                problems.append(f"{task}/{arm}: test metrics {finals}")
        problems += check_recipes(task, device)
        rows.append(
            {
                "task": task,
                "seconds": f"{seconds:.0f}",
                "tuned optimizer": result.optimizer,
                "tuned": result.schedule_words,
                "devices in run records": ", ".join(sorted(devices)),
                "arms with finite metrics": sum(
                    len(comparison.get(a, {}).get("test_metric_per_seed", [])) == cfg.final_seeds
                    for a in ARMS
                ),
            }
        )
    print("\n## summary\n")
    print(pd.DataFrame(rows).to_markdown(index=False))
    for line in problems:
        print(f"PROBLEM: {line}")
    print("\nall checks passed" if not problems else f"\n{len(problems)} problem(s)")
    print("command: " + shlex.join(["python", "scripts/check_cuda_study.py", *argv]))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
