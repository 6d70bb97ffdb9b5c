"""A :class:`~lrsearch.Schedule` inside PyTorch Lightning and the Hugging Face ``Trainer``.

A schedule is a torch ``lr_scheduler`` (:meth:`Schedule.build`), so both frameworks run it as
they are; what goes wrong is the bookkeeping around it, and these helpers do that part:

- **Lightning** steps a scheduler once per *epoch* unless told ``interval="step"``, and the
  run's optimizer steps are ``trainer.estimated_stepping_batches`` (gradient accumulation and
  ``max_steps`` included). :func:`lightning_scheduler` returns the scheduler config for
  ``configure_optimizers`` with both right (``plateau``: once per epoch on ``monitor``).
- **The Hugging Face Trainer** steps a scheduler once per optimizer step, and an epoch is
  ``ceil(n / (batch_size * accumulation * world_size))`` optimizer steps (from transformers
  4.52 on; earlier releases counted the last, partial accumulation differently).
  :func:`hf_optimizers` builds the pair for ``Trainer(optimizers=...)`` over the run's
  optimizer steps; :func:`hf_steps_per_epoch` and :func:`hf_total_steps` are its arithmetic.

Neither framework is imported here: each helper reads the object it is given (a Lightning
``Trainer``, a ``TrainingArguments``), so ``lightning`` and ``transformers`` stay optional.
"""

from __future__ import annotations

import math
import re
from importlib import metadata
from typing import Any, Final

from torch.optim import Optimizer, lr_scheduler

from lrsearch._validation import check_positive_int, check_positive_real
from lrsearch.choices import PER_EPOCH_KINDS
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.schedules import Schedule

__all__ = ["hf_optimizers", "hf_steps_per_epoch", "hf_total_steps", "lightning_scheduler"]

#: The first transformers release whose Trainer counts an epoch's last, partial gradient
#: accumulation as an optimizer step everywhere (before it, the run could stop early).
HF_MIN_VERSION: Final = (4, 52)


def lightning_scheduler(
    schedule: Schedule,
    optimizer: Optimizer,
    trainer_or_total_steps: Any,
    *,
    monitor: str | None = None,
    maximize: bool = False,
) -> dict[str, Any]:
    """The ``lr_scheduler`` entry that Lightning's ``configure_optimizers`` returns.

    Lightning's default ``interval`` is ``"epoch"``: a per-step schedule handed over without
    this config would move once per epoch and be silently wrong. Here every kind but
    ``plateau`` gets ``interval="step"``; ``plateau`` gets ``interval="epoch"`` and
    ``monitor``, the logged metric its ``ReduceLROnPlateau`` is stepped with.

    Args:
        schedule: The schedule, e.g. ``result.schedule_for(...)`` after a study.
        optimizer: The optimizer ``configure_optimizers`` made; its learning rates are set by
            the schedule.
        trainer_or_total_steps: ``self.trainer`` (its ``estimated_stepping_batches`` is the
            run's optimizer steps, accumulation included) or that count as an int.
        monitor: ``plateau``: the name of a metric the module logs (``self.log(...)``) every
            epoch, e.g. ``"val_loss"``. The other kinds ignore it, so one
            ``configure_optimizers`` serves whichever kind a study picks.
        maximize: ``plateau``: whether a larger ``monitor`` is better (see
            :meth:`Schedule.build`).

    Returns:
        ``{"scheduler": ..., "interval": ..., "frequency": 1}`` (and ``"monitor"`` for
        ``plateau``), to return as ``{"optimizer": opt, "lr_scheduler": this}``.

    Raises:
        InvalidParameterError: ``plateau`` without ``monitor``, a run of unknown or no length
            (a Lightning ``Trainer`` with neither ``max_epochs`` nor ``max_steps``), or what
            :meth:`Schedule.build` refuses.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> config = lightning_scheduler(Schedule("cosine", 0.1, base_lr=0.0), opt, 100)
        >>> config["interval"], type(config["scheduler"]).__name__
        ('step', 'LambdaLR')
    """
    total = _lightning_total_steps(trainer_or_total_steps)
    if schedule.kind in PER_EPOCH_KINDS:
        if not isinstance(monitor, str) or not monitor:
            raise InvalidParameterError(
                f"monitor must name the logged metric a {schedule.kind!r} schedule is stepped "
                f"with once per epoch (e.g. 'val_loss'); got {monitor!r}"
            )
        scheduler = schedule.build(optimizer, total, maximize=maximize)
        return {"scheduler": scheduler, "interval": "epoch", "frequency": 1, "monitor": monitor}
    return {"scheduler": schedule.build(optimizer, total), "interval": "step", "frequency": 1}


def _lightning_total_steps(trainer_or_total_steps: Any) -> int:
    total = getattr(trainer_or_total_steps, "estimated_stepping_batches", trainer_or_total_steps)
    if isinstance(total, float) and math.isinf(total):
        raise InvalidParameterError(
            "the trainer's run has no end (estimated_stepping_batches is inf): give the "
            "Trainer max_epochs or max_steps, or pass the total steps"
        )
    return check_positive_int("total_steps", total)


def hf_steps_per_epoch(
    n_examples: int,
    batch_size: int,
    accumulation: int = 1,
    world_size: int = 1,
    *,
    drop_last: bool = False,
) -> int:
    """Optimizer steps per epoch of the Hugging Face ``Trainer`` (transformers >= 4.52).

    Each of ``world_size`` processes reads ``ceil(n / (batch_size * world_size))`` batches
    (``floor`` with ``drop_last``), and the last accumulation of an epoch steps even when it
    is short: ``ceil(batches / accumulation)`` optimizer steps.

    Args:
        n_examples: ``len(train_dataset)``.
        batch_size: ``args.per_device_train_batch_size`` (``args.train_batch_size`` with
            several GPUs in one process).
        accumulation: ``args.gradient_accumulation_steps``.
        world_size: Data-parallel processes (``args.world_size``).
        drop_last: ``args.dataloader_drop_last``.

    Returns:
        The optimizer steps in one epoch.

    Raises:
        InvalidParameterError: an argument that is not a positive integer, or no whole batch
            with ``drop_last``.

    Example:
        >>> hf_steps_per_epoch(100, 8), hf_steps_per_epoch(100, 8, accumulation=2)
        (13, 7)
        >>> hf_steps_per_epoch(100, 8, accumulation=2, world_size=2, drop_last=True)
        3
    """
    n = check_positive_int("n_examples", n_examples)
    per_step = check_positive_int("batch_size", batch_size) * check_positive_int(
        "world_size", world_size
    )
    accumulation = check_positive_int("accumulation", accumulation)
    batches = n // per_step if drop_last else -(-n // per_step)
    if batches == 0:
        raise InvalidParameterError(
            f"n_examples must hold one batch of {per_step} (batch_size x world_size) with "
            f"drop_last; got {n}"
        )
    return -(-batches // accumulation)


def hf_total_steps(args: Any, n_examples: int) -> int:
    """The optimizer steps of a Hugging Face ``Trainer`` run: ``args.max_steps`` when it is
    set, else ``ceil(args.num_train_epochs * steps_per_epoch)`` as the Trainer counts them.

    Args:
        args: The run's ``transformers.TrainingArguments``.
        n_examples: ``len(train_dataset)``.

    Returns:
        The run's optimizer steps (what the schedule is built over).

    Raises:
        LrsearchError: an epoch-based run on transformers older than 4.52 (its Trainer counts
            an epoch's steps differently); InvalidParameterError: bad numbers.

    Example:
        >>> from transformers import TrainingArguments
        >>> args = TrainingArguments("out", per_device_train_batch_size=8, num_train_epochs=3,
        ...                          gradient_accumulation_steps=2, use_cpu=True)
        >>> hf_total_steps(args, 100)
        21
    """
    if args.max_steps > 0:
        return check_positive_int("max_steps", args.max_steps)
    _check_transformers_version()
    steps = hf_steps_per_epoch(
        n_examples,
        args.train_batch_size,
        args.gradient_accumulation_steps,
        args.world_size,
        drop_last=bool(args.dataloader_drop_last),
    )
    epochs = check_positive_real("num_train_epochs", args.num_train_epochs)
    return math.ceil(epochs * steps)


def hf_optimizers(
    schedule: Schedule, optimizer: Optimizer, args: Any, n_examples: int
) -> tuple[Optimizer, lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau]:
    """``Trainer(optimizers=...)`` for a schedule: the optimizer and its scheduler over the
    run's optimizer steps (:func:`hf_total_steps`).

    The Trainer steps the scheduler after every optimizer step, and a ``ReduceLROnPlateau``
    after every evaluation with ``args.metric_for_best_model``. So ``plateau`` needs
    ``eval_strategy="epoch"`` and ``metric_for_best_model``; its direction is
    ``args.greater_is_better``.

    Args:
        schedule: The schedule, e.g. ``result.schedule_for(...)`` after a study.
        optimizer: An optimizer over the model's parameters; its learning rates are set by
            the schedule.
        args: The ``transformers.TrainingArguments`` the Trainer is given.
        n_examples: ``len(train_dataset)`` (the Trainer's default random sampler).

    Returns:
        ``(optimizer, scheduler)``.

    Raises:
        InvalidParameterError: ``plateau`` without per-epoch evaluation or a
            ``metric_for_best_model``, bad numbers, or what :meth:`Schedule.build` refuses;
            LrsearchError: see :func:`hf_total_steps`.

    Example:
        >>> import torch
        >>> from transformers import TrainingArguments
        >>> args = TrainingArguments("out", per_device_train_batch_size=8, num_train_epochs=3,
        ...                          use_cpu=True)
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> opt, sched = hf_optimizers(Schedule("cosine", 0.1, base_lr=0.0), opt, args, 100)
        >>> type(sched).__name__, opt.param_groups[0]["lr"]
        ('LambdaLR', 0.1)
    """
    total = hf_total_steps(args, n_examples)
    if schedule.kind not in PER_EPOCH_KINDS:
        return optimizer, schedule.build(optimizer, total)
    strategy = getattr(args.eval_strategy, "value", args.eval_strategy)
    if strategy != "epoch":
        raise InvalidParameterError(
            f"a {schedule.kind!r} schedule is stepped once per epoch with the evaluation "
            f"metric: it needs eval_strategy='epoch'; got {strategy!r}"
        )
    if not args.metric_for_best_model:
        raise InvalidParameterError(
            f"a {schedule.kind!r} schedule needs metric_for_best_model, the evaluation metric "
            f"the Trainer steps it with; got {args.metric_for_best_model!r}"
        )
    return optimizer, schedule.build(optimizer, total, maximize=bool(args.greater_is_better))


def _transformers_version() -> str | None:
    try:
        return metadata.version("transformers")
    except metadata.PackageNotFoundError:
        return None


def _check_transformers_version() -> None:
    found = _transformers_version()
    if found is None:
        return  # duck-typed arguments without transformers: nothing to check against
    release = tuple(int(part) for part in re.findall(r"\d+", found)[:2])
    if release < HF_MIN_VERSION:
        need = ".".join(map(str, HF_MIN_VERSION))
        raise LrsearchError(
            f"transformers >= {need} counts the Trainer's optimizer steps per epoch the way "
            f"hf_total_steps does; got transformers {found} (set max_steps instead, or upgrade)"
        )
