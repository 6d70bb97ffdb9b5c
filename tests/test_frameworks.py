"""Tests for lrsearch/frameworks.py against the real packages: a Schedule driven by PyTorch
Lightning, by the Hugging Face Trainer and by a plain loop applies exactly ``Schedule.lrs()``.

The learning rate is read where it is applied: a step pre-hook on the torch optimizer records
``param_groups[0]["lr"]`` every time ``optimizer.step()`` runs, whoever calls it. The runs are
tiny (50 examples, batches of 8, 3 epochs, a linear model on the CPU).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lrsearch import Schedule
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.frameworks import (
    hf_optimizers,
    hf_steps_per_epoch,
    hf_total_steps,
    lightning_scheduler,
)

N, BATCH, ACCUMULATION, EPOCHS = 50, 8, 2, 3
#: 7 batches an epoch, the last accumulation short: ceil(7 / 2) = 4 optimizer steps.
STEPS_PER_EPOCH = 4
TOTAL = EPOCHS * STEPS_PER_EPOCH

#: Every per-step kind's shape: warm-up, cycles, restarts, a cooldown, plain decay.
SCHEDULES = {
    "cosine": Schedule("cosine", 0.1, base_lr=0.01, warmup=3),
    "onecycle": Schedule("onecycle", 0.1, base_lr=0.004),
    "triangular2": Schedule("triangular2", 0.1, base_lr=0.01, step_size=2),
    "sgdr": Schedule("sgdr", 0.1, base_lr=0.001, step_size=3, decay=0.5, cycle_mult=2),
    "wsd": Schedule("wsd", 0.1, base_lr=0.0, warmup=2, cooldown=0.3),
    "step": Schedule("step", 0.1, step_size=5, decay=0.5),
}
PLATEAU = Schedule("plateau", 0.1, base_lr=0.001, decay=0.5, patience=0)
#: The metric after each epoch, scripted so the plateau schedule lowers the LR: no improvement
#: after epoch 1, then an improvement (a loss: lower is better).
SCRIPT = (1.0, 1.0, 0.5)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g)
    return x, x.sum(dim=1, keepdim=True)


def _record(optimizer: torch.optim.Optimizer) -> list[float]:
    """The LR of every ``optimizer.step()`` from now on, read just before the step."""
    applied: list[float] = []
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: applied.append(opt.param_groups[0]["lr"])
    )
    return applied


def _expected(schedule: Schedule, steps: int = TOTAL, *, maximize: bool = False) -> np.ndarray:
    if schedule.kind != "plateau":
        return schedule.lrs(steps)
    return schedule.lrs(steps, metrics=SCRIPT, steps_per_epoch=STEPS_PER_EPOCH, maximize=maximize)


def test_hf_steps_per_epoch_is_the_ceiling_of_batches_over_accumulation() -> None:
    assert hf_steps_per_epoch(N, BATCH, ACCUMULATION) == STEPS_PER_EPOCH
    assert hf_steps_per_epoch(48, 8, 2) == 3
    assert hf_steps_per_epoch(49, 8, 2) == 4
    assert hf_steps_per_epoch(49, 8, 2, drop_last=True) == 3
    assert hf_steps_per_epoch(100, 8, 1, world_size=4) == 4  # each process 4 batches
    assert hf_steps_per_epoch(3, 8, 4) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_examples": 0, "batch_size": 8}, "n_examples must be a positive integer; got 0"),
        ({"n_examples": 10, "batch_size": 2.0}, "batch_size must be a positive integer"),
        ({"n_examples": 10, "batch_size": 2, "accumulation": 0}, "accumulation must be"),
        ({"n_examples": 10, "batch_size": 2, "world_size": -1}, "world_size must be"),
        (
            {"n_examples": 7, "batch_size": 8, "drop_last": True},
            "n_examples must hold one batch of 8 (batch_size x world_size) with drop_last; got 7",
        ),
    ],
)
def test_hf_steps_per_epoch_refuses_bad_numbers(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        hf_steps_per_epoch(**kwargs)


def test_lightning_scheduler_refuses_a_plateau_without_monitor_and_an_endless_run() -> None:
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(InvalidParameterError, match="monitor must name the logged metric"):
        lightning_scheduler(PLATEAU, opt, 10)
    endless = types.SimpleNamespace(estimated_stepping_batches=float("inf"))
    with pytest.raises(InvalidParameterError, match="no end"):
        lightning_scheduler(SCHEDULES["cosine"], opt, endless)
    with pytest.raises(InvalidParameterError, match="total_steps must be a positive integer"):
        lightning_scheduler(SCHEDULES["cosine"], opt, 0)
    # monitor is ignored by a per-step kind: one configure_optimizers serves every kind.
    config = lightning_scheduler(SCHEDULES["cosine"], opt, 10, monitor="val_loss")
    assert set(config) == {"scheduler", "interval", "frequency"}


# --- a plain loop ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [*SCHEDULES, "plateau"])
def test_a_plain_loop_applies_the_schedule(kind: str) -> None:
    schedule = SCHEDULES.get(kind, PLATEAU)
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    steps_per_epoch = math.ceil(len(loader) / ACCUMULATION)
    scheduler = schedule.build(opt, total_steps=EPOCHS * steps_per_epoch)
    applied = _record(opt)
    for epoch in range(EPOCHS):
        for i, (xb, yb) in enumerate(loader):
            (nn.functional.mse_loss(model(xb), yb) / ACCUMULATION).backward()
            if (i + 1) % ACCUMULATION == 0 or i + 1 == len(loader):
                opt.step()
                opt.zero_grad()
                if schedule.kind != "plateau":
                    scheduler.step()
        if schedule.kind == "plateau":
            scheduler.step(SCRIPT[epoch])  # type: ignore[call-arg]
    assert applied == pytest.approx(_expected(schedule).tolist(), rel=1e-12, abs=0)


# --- PyTorch Lightning -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lightning() -> Any:
    return pytest.importorskip("lightning.pytorch")


def _lightning_run(
    pl: Any, tmp_path: Path, schedule: Schedule, *, bare: bool = False
) -> tuple[list[float], Any]:
    class Module(pl.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(4, 1)
            self.applied: list[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", SCRIPT[self.current_epoch])

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=1.0, momentum=0.9)
            self.applied = _record(opt)
            if bare:  # Lightning's default: a scheduler on its own is stepped once per epoch
                return [opt], [schedule.build(opt, self.trainer.estimated_stepping_batches)]
            config = lightning_scheduler(schedule, opt, self.trainer, monitor="val_loss")
            return {"optimizer": opt, "lr_scheduler": config}

    x, y = _data()
    module = Module()
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accumulate_grad_batches=ACCUMULATION,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        default_root_dir=tmp_path,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few workers, small logging interval: not ours
        trainer.fit(
            module,
            DataLoader(TensorDataset(x, y), batch_size=BATCH),
            DataLoader(TensorDataset(x, y), batch_size=BATCH),
        )
    return module.applied, trainer


@pytest.mark.parametrize("kind", [*SCHEDULES, "plateau"])
def test_lightning_applies_the_schedule(lightning: Any, tmp_path: Path, kind: str) -> None:
    schedule = SCHEDULES.get(kind, PLATEAU)
    applied, trainer = _lightning_run(lightning, tmp_path, schedule)
    assert trainer.estimated_stepping_batches == TOTAL == trainer.global_step
    assert applied == pytest.approx(_expected(schedule).tolist(), rel=1e-12, abs=0)


def test_lightning_steps_a_bare_scheduler_per_epoch_the_trap(
    lightning: Any, tmp_path: Path
) -> None:
    schedule = SCHEDULES["cosine"]
    applied, _ = _lightning_run(lightning, tmp_path, schedule, bare=True)
    assert len(applied) == TOTAL
    assert applied != pytest.approx(schedule.lrs(TOTAL).tolist())
    # The LR moved once an epoch: one value per epoch, the schedule's first ones.
    epochs = [applied[e * STEPS_PER_EPOCH : (e + 1) * STEPS_PER_EPOCH] for e in range(EPOCHS)]
    assert [set(e) for e in epochs] == [{v} for v in schedule.lrs(TOTAL)[:EPOCHS].tolist()]


# --- the Hugging Face Trainer ------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformers() -> Any:
    return pytest.importorskip("transformers")


class _Regression(nn.Module):
    """A linear model the way the Trainer calls one: keyword inputs, a dict with ``loss``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.linear(x)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


class _Examples(Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int = N) -> None:
        x, y = _data()
        self.x, self.y = x[:n], y[:n]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def _hf_args(hf: Any, tmp_path: Path, **changes: Any) -> Any:
    fields: dict[str, Any] = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": BATCH,
        "gradient_accumulation_steps": ACCUMULATION,
        "num_train_epochs": EPOCHS,
        "use_cpu": True,
        "report_to": [],
        "save_strategy": "no",
        "logging_strategy": "no",
        "disable_tqdm": True,
        "remove_unused_columns": False,
        "seed": 0,
    }
    fields.update(changes)
    return hf.TrainingArguments(**fields)


def _hf_run(hf: Any, args: Any, schedule: Schedule, n: int = N) -> tuple[list[float], Any]:
    model = _Regression()
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    applied = _record(opt)
    scripted: Iterator[float] = iter(SCRIPT)
    data = _Examples(n)
    trainer = hf.Trainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=data,
        optimizers=hf_optimizers(schedule, opt, args, len(data)),
        compute_metrics=lambda prediction: {"score": next(scripted)},
    )
    trainer.train()
    return applied, trainer


@pytest.mark.parametrize("kind", [*SCHEDULES, "plateau"])
def test_hf_trainer_applies_the_schedule(transformers: Any, tmp_path: Path, kind: str) -> None:
    schedule = SCHEDULES.get(kind, PLATEAU)
    evaluate: dict[str, Any] = {}
    if kind == "plateau":
        evaluate = {
            "eval_strategy": "epoch",
            "metric_for_best_model": "score",
            "greater_is_better": False,
        }
    args = _hf_args(transformers, tmp_path, **evaluate)
    assert hf_total_steps(args, N) == TOTAL
    applied, trainer = _hf_run(transformers, args, schedule)
    assert trainer.state.global_step == TOTAL == trainer.state.max_steps
    assert applied == pytest.approx(_expected(schedule).tolist(), rel=1e-12, abs=0)


@pytest.mark.parametrize(
    ("n", "batch", "accumulation", "drop_last"),
    [(48, 8, 2, False), (49, 8, 2, False), (49, 8, 2, True), (20, 8, 4, False)],
)
def test_hf_steps_per_epoch_is_what_the_trainer_takes(
    transformers: Any, tmp_path: Path, n: int, batch: int, accumulation: int, drop_last: bool
) -> None:
    args = _hf_args(
        transformers,
        tmp_path,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        dataloader_drop_last=drop_last,
        num_train_epochs=2,
    )
    spe = hf_steps_per_epoch(n, batch, accumulation, drop_last=drop_last)
    applied, trainer = _hf_run(transformers, args, Schedule("constant", 0.1), n)
    assert len(applied) == 2 * spe == trainer.state.global_step


def test_hf_max_steps_is_the_total(transformers: Any, tmp_path: Path) -> None:
    args = _hf_args(transformers, tmp_path, max_steps=9)
    assert hf_total_steps(args, N) == 9
    applied, _ = _hf_run(transformers, args, SCHEDULES["onecycle"])
    assert applied == pytest.approx(SCHEDULES["onecycle"].lrs(9).tolist(), rel=1e-12, abs=0)


def test_hf_plateau_needs_per_epoch_evaluation_and_a_metric(
    transformers: Any, tmp_path: Path
) -> None:
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(InvalidParameterError, match="eval_strategy='epoch'; got 'no'"):
        hf_optimizers(PLATEAU, opt, _hf_args(transformers, tmp_path), N)
    args = _hf_args(transformers, tmp_path, eval_strategy="epoch")
    with pytest.raises(InvalidParameterError, match="needs metric_for_best_model"):
        hf_optimizers(PLATEAU, opt, args, N)


def test_hf_total_steps_refuses_an_older_transformers(
    transformers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lrsearch.frameworks

    args = _hf_args(transformers, tmp_path)
    monkeypatch.setattr(lrsearch.frameworks, "_transformers_version", lambda: "4.51.3")
    with pytest.raises(LrsearchError, match=r"transformers >= 4\.52 .*got transformers 4\.51\.3"):
        hf_total_steps(args, N)
    assert hf_total_steps(_hf_args(transformers, tmp_path, max_steps=7), N) == 7


# --- the docs ----------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "frameworks.md"


def test_the_docs_recipes_run_as_written(
    lightning: Any, transformers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks fenced as ```python are complete programs; ```py marks a fragment.
    monkeypatch.chdir(tmp_path)  # the Trainer's output_dir
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    printed = []
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(block, str(DOC), "exec"), {"__name__": "__docs__"})
        printed.append(out.getvalue().splitlines()[-1])
    # The plain loop, Lightning (64 examples, batches of 8, accumulation 2, 3 epochs), the
    # Trainer (50 examples, same): the steps the docs' comments count.
    assert printed == ["24 steps, last LR 0.001", "12 optimizer steps", "12 optimizer steps"]
