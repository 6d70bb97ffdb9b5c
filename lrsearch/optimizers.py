"""The optimizers lrsearch trains with besides a task's own, as ``(params, lr) -> Optimizer``.

Two families:

- What a search may choose among (config key ``optimizers``, :data:`~lrsearch.choices.OPTIMIZERS`):
  ``task`` (the task's own factory), ``sgd`` (momentum 0.9), ``nesterov`` (momentum 0.9,
  Nesterov), ``adamw`` (:func:`lrsearch.tasks.adamw`: ``torch.optim.AdamW`` decaying only
  matrices, nanoGPT's way, whose ``weight_decay`` the search also draws).
  :func:`search_optimizer` turns a name into a factory.
- The fixed recipes of the final comparison's other arms: Adam at 3e-4 (:func:`adam`), and the
  learning-rate-free optimizers a user would pick instead of tuning, from their authors'
  packages: Prodigy (:func:`prodigy`, ``prodigyopt``) and Schedule-Free AdamW
  (:func:`schedule_free_adamw`, ``schedulefree``), whose ``train()`` / ``eval()`` the training
  loop calls (:func:`lrsearch.training.fit`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from lrsearch.choices import OPTIMIZERS
from lrsearch.exceptions import InvalidParameterError
from lrsearch.space import LRBounds
from lrsearch.tasks import OptimizerFactory, adamw, sgd

__all__ = [
    "ADAMW_WEIGHT_DECAY",
    "ADAPTIVE_SPAN",
    "OPTIMIZERS",
    "SGD_SPAN",
    "adam",
    "has_train_eval",
    "plausible_span",
    "prodigy",
    "schedule_free_adamw",
    "search_optimizer",
]

#: AdamW's weight decay where the search does not draw it (the range test): nanoGPT's 0.1
#: (torch's default, 0.01, barely acts at the LRs AdamW trains with).
ADAMW_WEIGHT_DECAY = 0.1


#: Where the best constant LR of an adaptive optimizer (Adam and its kin, which scale each step by
#: a running gradient norm) plausibly lies, and of the others (SGD and its kin): the bounds a
#: study searches when its range test cannot be read (the docs' range-test page has what they
#: were checked against).
ADAPTIVE_SPAN = LRBounds(1e-6, 1e-1)
SGD_SPAN = LRBounds(1e-5, 10.0)

_ADAPTIVE = (
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.Adagrad,
    torch.optim.Adadelta,
    torch.optim.RMSprop,
)


def plausible_span(make: OptimizerFactory) -> LRBounds:
    """:data:`ADAPTIVE_SPAN` for an adaptive optimizer, else :data:`SGD_SPAN` (the factory is
    called once on a throwaway parameter to see which it makes).

    Example:
        >>> plausible_span(adamw()), plausible_span(sgd())
        (LRBounds(low=1e-06, high=0.1), LRBounds(low=1e-05, high=10.0))
    """
    made = make([nn.Parameter(torch.zeros(1))], 1e-3)
    return ADAPTIVE_SPAN if isinstance(made, _ADAPTIVE) else SGD_SPAN


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` with its defaults (betas 0.9/0.999, no weight decay).

    Example:
        >>> adam(torch.nn.Linear(2, 1).parameters(), 3e-4).defaults["lr"]
        0.0003
    """
    return torch.optim.Adam(params, lr=lr)


def _nesterov(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)


def search_optimizer(
    name: str, task_optimizer: OptimizerFactory | None, *, weight_decay: float | None = None
) -> OptimizerFactory:
    """The factory of search optimizer ``name`` (one of :data:`OPTIMIZERS`).

    Args:
        name: ``task``, ``sgd``, ``nesterov`` or ``adamw``.
        task_optimizer: The task's own factory (what ``task`` means; only needed for it).
        weight_decay: ``adamw`` only: its decay (default :data:`ADAMW_WEIGHT_DECAY`).

    Raises:
        InvalidParameterError: An unknown name, a weight decay for another optimizer than
            ``adamw``, or ``task`` without ``task_optimizer``.

    Example:
        >>> make = search_optimizer("nesterov", sgd())
        >>> make(torch.nn.Linear(2, 1).parameters(), 0.1).defaults["nesterov"]
        True
    """
    if name not in OPTIMIZERS:
        raise InvalidParameterError(f"optimizer must be one of {list(OPTIMIZERS)}; got {name!r}")
    if weight_decay is not None and name != "adamw":
        raise InvalidParameterError(
            f"weight_decay is searched for adamw only; got it for optimizer {name!r}"
        )
    if name == "task":
        if task_optimizer is None:
            raise InvalidParameterError("optimizer 'task' needs the task's optimizer factory")
        return task_optimizer
    if name == "sgd":
        return sgd()
    if name == "nesterov":
        return _nesterov
    return adamw(ADAMW_WEIGHT_DECAY if weight_decay is None else weight_decay)


def prodigy(params: Iterable[nn.Parameter], lr: float = 1.0) -> torch.optim.Optimizer:
    """``prodigyopt.Prodigy`` at its defaults (its authors advise ``lr=1.0`` with a cosine
    annealing of the LR to 0, which the arm's schedule does).

    Example:
        >>> type(prodigy(torch.nn.Linear(2, 1).parameters())).__name__
        'Prodigy'
    """
    from prodigyopt import Prodigy

    return Prodigy(params, lr=lr)


def schedule_free_adamw(warmup_steps: int) -> OptimizerFactory:
    """A factory of ``schedulefree.AdamWScheduleFree`` at its documented defaults (lr 0.0025,
    betas 0.9/0.999, no weight decay) with a linear warmup of ``warmup_steps`` inside the
    optimizer (it needs no LR schedule: the arm's stays constant).

    The optimizer has to be told ``train()`` before training steps and ``eval()`` before
    evaluation: :func:`lrsearch.training.fit` does so (see :func:`has_train_eval`).

    Example:
        >>> opt = schedule_free_adamw(10)(torch.nn.Linear(2, 1).parameters(), 0.0025)
        >>> opt.defaults["warmup_steps"], has_train_eval(opt)
        (10, True)
    """
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise InvalidParameterError(f"warmup_steps must be an integer >= 0; got {warmup_steps!r}")

    def make(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        from schedulefree import AdamWScheduleFree

        return AdamWScheduleFree(params, lr=lr, warmup_steps=warmup_steps)

    make.__qualname__ = f"schedule_free_adamw(warmup_steps={warmup_steps})"
    return make


def has_train_eval(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` keeps train and eval weights (Schedule-Free's ``train()`` /
    ``eval()``), which the training loop must switch between.

    Example:
        >>> has_train_eval(torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1))
        False
    """
    return callable(getattr(optimizer, "train", None)) and callable(
        getattr(optimizer, "eval", None)
    )
