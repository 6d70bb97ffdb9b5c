"""``Task``: what a user hands lrsearch, and ``load_task`` to find one by name."""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from lrsearch._validation import check_positive_int
from lrsearch.exceptions import InvalidParameterError
from lrsearch.tasks.data import Data, Split

__all__ = ["BUILTIN_TASKS", "METRICS", "OptimizerFactory", "Task", "adamw", "load_task", "sgd"]

OptimizerFactory = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]
Metric = Callable[[torch.Tensor, torch.Tensor], float]

#: Metric names lrsearch computes itself, with their direction.
METRICS: dict[str, Literal["maximize", "minimize"]] = {"accuracy": "maximize", "loss": "minimize"}

BUILTIN_TASKS = ("charlm", "digits", "mnist1d")


def sgd(momentum: float = 0.9, weight_decay: float = 0.0) -> OptimizerFactory:
    """An optimizer factory for ``torch.optim.SGD`` with momentum (the default of every task).

    Args:
        momentum: SGD momentum.
        weight_decay: L2 penalty.

    Returns:
        A function ``(params, lr) -> torch.optim.SGD``.

    Example:
        >>> import torch
        >>> opt = sgd()(torch.nn.Linear(2, 1).parameters(), 0.1)
        >>> opt.param_groups[0]["momentum"], opt.param_groups[0]["lr"]
        (0.9, 0.1)
    """

    def make(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    make.__qualname__ = f"sgd(momentum={momentum}, weight_decay={weight_decay})"
    return make


def adamw(weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95)) -> OptimizerFactory:
    """An optimizer factory for ``torch.optim.AdamW`` that decays only matrices (nanoGPT's way).

    Weights of two or more dimensions (linear layers, embeddings) form a group with
    ``weight_decay``; biases and normalisation gains a group without. Both groups start at the
    same LR, so a schedule moves them together.

    Args:
        weight_decay: Decoupled weight decay of the matrices.
        betas: Adam's ``(beta1, beta2)``.

    Returns:
        A function ``(params, lr) -> torch.optim.AdamW``.

    Example:
        >>> import torch
        >>> opt = adamw()(torch.nn.Linear(2, 1).parameters(), 1e-3)
        >>> [(len(g["params"]), g["weight_decay"], g["lr"]) for g in opt.param_groups]
        [(1, 0.1, 0.001), (1, 0.0, 0.001)]
    """

    def make(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        params = list(params)
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)

    make.__qualname__ = f"adamw(weight_decay={weight_decay}, betas={betas})"
    return make


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A learning problem: model, data, loss, metric, optimizer, batch size and epochs.

    lrsearch tunes the learning-rate schedule of ``make_optimizer`` for this task. ``test`` is
    read only by the final comparison; searches and cross-validation split ``train``. Give
    ``test`` as a zero-argument function to load it lazily (and to prove nothing else reads it).

    Args:
        make_model: Returns a freshly initialised model (drawing from torch's global RNG, which
            lrsearch seeds before each call).
        train: Training data: ``(x, y)`` tensors or a map-style ``Dataset`` of pairs.
        test: Held-out data of the same kind, or a zero-argument function returning it.
        loss: The training criterion, ``loss(outputs, targets) -> scalar tensor``.
        metric: ``"accuracy"`` (argmax of the outputs), ``"loss"`` (mean of ``loss``), or a
            function ``(outputs, targets) -> float`` over a whole evaluation set.
        direction: ``"maximize"`` or ``"minimize"``; inferred for the named metrics.
        metric_name: Name shown for a metric function (default: its ``__name__``).
        make_optimizer: ``(params, lr) -> Optimizer``; SGD with momentum 0.9 by default.
        batch_size: Training batch size.
        epochs: Training epochs of every run (search trials, CV folds, final comparison).
        stratify: Stratify validation splits and CV folds by label (default: for accuracy).
        groups: Optional group id of every training example (e.g. the document a text window
            comes from): a group stays on one side of every split, so validation and CV score
            groups the model did not train on, as a test set of unseen groups does.
        name: A label for messages and the stored config.

    Raises:
        InvalidParameterError: A field has a bad value (the message names it).

    Example:
        >>> import torch
        >>> x, y = torch.randn(40, 3), torch.arange(40) % 2
        >>> task = Task(lambda: torch.nn.Linear(3, 2), (x, y), (x[:8], y[:8]), epochs=2)
        >>> task.direction, task.metric_name, task.n_train
        ('maximize', 'accuracy', 40)
    """

    make_model: Callable[[], nn.Module]
    train: Data
    test: Data | Callable[[], Data]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = dataclasses.field(
        default_factory=nn.CrossEntropyLoss
    )
    metric: str | Metric = "accuracy"
    direction: Literal["maximize", "minimize"] | None = None
    metric_name: str | None = None
    make_optimizer: OptimizerFactory = dataclasses.field(default_factory=sgd)
    batch_size: int = 32
    epochs: int = 20
    stratify: bool | None = None
    groups: Sequence[int] | np.ndarray | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        if not callable(self.make_model):
            raise InvalidParameterError(f"make_model must be callable; got {self.make_model!r}")
        _check_data("train", self.train)
        if not callable(self.test) or isinstance(self.test, Dataset):
            _check_data("test", self.test)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("epochs", self.epochs)
        if isinstance(self.metric, str):
            if self.metric not in METRICS:
                raise InvalidParameterError(
                    f"metric must be one of {sorted(METRICS)} or a function; got {self.metric!r}"
                )
            implied = METRICS[self.metric]
            if self.direction not in (None, implied):
                raise InvalidParameterError(
                    f"metric {self.metric!r} is to {implied}; got direction={self.direction!r}"
                )
            object.__setattr__(self, "direction", implied)
            object.__setattr__(self, "metric_name", self.metric_name or self.metric)
        elif callable(self.metric):
            if self.direction not in ("maximize", "minimize"):
                raise InvalidParameterError(
                    "a metric function needs direction='maximize' or 'minimize'; "
                    f"got {self.direction!r}"
                )
            name = self.metric_name or getattr(self.metric, "__name__", "metric")
            object.__setattr__(self, "metric_name", name)
        else:
            raise InvalidParameterError(
                f"metric must be a name or a function; got {self.metric!r}"
            )
        if self.stratify is None:
            object.__setattr__(self, "stratify", self.metric == "accuracy")
        if self.n_train < 2:
            raise InvalidParameterError(f"train must hold at least 2 examples; got {self.n_train}")
        if self.groups is not None:
            groups = np.asarray(self.groups)
            if groups.shape != (self.n_train,) or not np.issubdtype(groups.dtype, np.integer):
                raise InvalidParameterError(
                    f"groups must hold one integer per training example ({self.n_train}); got "
                    f"an array of shape {groups.shape} and dtype {groups.dtype}"
                )
            if len(np.unique(groups)) < 2:
                raise InvalidParameterError("groups must name at least 2 groups to split by")
            object.__setattr__(self, "groups", groups)

    @classmethod
    def from_split(cls, split: Split, make_model: Callable[[], nn.Module], **fields: Any) -> Task:
        """The task of ``split``'s tensors: its training part to train on, its test part held
        out; ``fields`` are the other :class:`Task` fields (how the built-in tasks are made).

        Example:
            >>> import torch
            >>> s = Split(torch.zeros(4, 2), torch.arange(4) % 2, torch.zeros(2, 2),
            ...           torch.arange(2))
            >>> Task.from_split(s, lambda: torch.nn.Linear(2, 2), epochs=3).n_train
            4
        """
        train, test = (split.x_train, split.y_train), (split.x_test, split.y_test)
        return cls(make_model=make_model, train=train, test=test, **fields)

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return _length(self.train)

    @property
    def maximize(self) -> bool:
        """Whether a larger metric is better."""
        return self.direction == "maximize"

    def load_test(self) -> Data:
        """The held-out data (calling ``test`` if it is a loader function)."""
        if callable(self.test) and not isinstance(self.test, Dataset):
            data = self.test()
            _check_data("test", data)
            return data
        return self.test

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary of the task for the study's stored config."""
        return {
            "name": self.name,
            "n_train": self.n_train,
            "metric": self.metric_name,
            "direction": self.direction,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "optimizer": getattr(self.make_optimizer, "__qualname__", repr(self.make_optimizer)),
            **(
                {"groups": len(np.unique(np.asarray(self.groups)))}
                if self.groups is not None
                else {}
            ),
        }


def _check_data(name: str, data: object) -> None:
    if isinstance(data, Dataset):
        return
    if (
        isinstance(data, tuple)
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        x, y = data
        if len(x) != len(y) or len(x) == 0:
            raise InvalidParameterError(
                f"{name} tensors must be non-empty and of equal length; got {len(x)} and {len(y)}"
            )
        return
    raise InvalidParameterError(
        f"{name} must be an (x, y) tuple of tensors or a torch Dataset; got {type(data).__name__}"
    )


def _length(data: Data) -> int:
    if isinstance(data, tuple):
        return len(data[0])
    return len(data)  # type: ignore[arg-type]


def load_task(spec: str | Task, **overrides: Any) -> Task:
    """Find a task: a built-in name or ``"package.module:function"`` returning a :class:`Task`.

    Args:
        spec: ``"charlm"``, ``"digits"``, ``"mnist1d"``, ``"package.module:function"``
            (called with no arguments; it may also name a ``Task`` object), or a ``Task``
            (returned as is).
        **overrides: Task fields to replace, e.g. ``epochs=5`` or ``batch_size=64``.

    Returns:
        The task.

    Raises:
        InvalidParameterError: Unknown name, unimportable module, missing attribute, or the
            object is not a ``Task``.

    Example:
        >>> load_task("digits", epochs=3).epochs
        3
    """
    if isinstance(spec, Task):
        task = spec
    elif not isinstance(spec, str) or not spec:
        raise InvalidParameterError(f"task must be a name or 'module:function'; got {spec!r}")
    elif ":" not in spec:
        if spec not in BUILTIN_TASKS:
            raise InvalidParameterError(
                f"unknown task {spec!r}; built-in tasks are {list(BUILTIN_TASKS)}, "
                "or give 'package.module:function'"
            )
        module = importlib.import_module(f"lrsearch.tasks.{spec}")
        task = module.task()
    else:
        task = _import_task(spec)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return task
    fields = {f.name for f in dataclasses.fields(Task)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InvalidParameterError(f"Task has no field {unknown[0]!r}; fields: {sorted(fields)}")
    if "metric" in overrides:
        # A new metric brings its own direction, name and stratification unless given too.
        for derived in ("direction", "metric_name", "stratify"):
            overrides.setdefault(derived, None)
    return dataclasses.replace(task, **overrides)


def _working_directory_importable() -> None:
    """Let ``task = "mytask:make_task"`` import ``./mytask.py``, as ``uvicorn module:app``
    does: the working directory goes first on ``sys.path`` (``python -m`` puts it there, a
    console script does not)."""
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        sys.path.insert(0, cwd)


def _import_task(spec: str) -> Task:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr.isidentifier():
        raise InvalidParameterError(f"task must look like 'package.module:function'; got {spec!r}")
    _working_directory_importable()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a broken user module is a config error, whatever it raises
        raise InvalidParameterError(
            f"task {spec!r}: cannot import {module_name!r} ({exc})"
        ) from exc
    if not hasattr(module, attr):
        raise InvalidParameterError(f"task {spec!r}: module {module_name!r} has no {attr!r}")
    obj = getattr(module, attr)
    if callable(obj) and not isinstance(obj, Task):
        try:
            obj = obj()
        except Exception as exc:  # a factory that cannot be called as asked is a config error
            raise InvalidParameterError(
                f"task {spec!r}: calling {attr}() failed ({type(exc).__name__}: {exc})"
            ) from exc
    if not isinstance(obj, Task):
        raise InvalidParameterError(
            f"task {spec!r} must give an lrsearch.tasks.Task; got {type(obj).__name__}"
        )
    return obj
