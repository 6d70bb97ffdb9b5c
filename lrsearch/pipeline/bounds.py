"""Bounds that heal: a winner at an edge of the searched LR range extends that side.

One short sweep is not a hard box. When the CV-chosen constant LR lands on the grid's last (or
first) point, or the best search trial peaks within :data:`EDGE_DECADES` of an edge of its
optimizer's bounds, that side is extended by :data:`EXTEND_DECADES`, at most :data:`CAP_DECADES`
past where the study started (the range test's reading, its redo, or a plausible span); the
stage goes on over the wider range. Each extension is a record: a trial of study
``NAME/bounds`` keyed ``bounds/OPTIMIZER/K`` (the K-th extension of that optimizer), so every
worker, and a resumed run, reads the same history; two workers deciding the same K at once
write the same key, and readers take the first.

TPE, given a wider distribution than its earlier trials had, keeps drawing inside the old
range (its good trials all lie there: in a toy study, 25 trials after the range grew tenfold
drew nothing past the old edge). So an extension found by the search also names two schedules
to try in the new range: the best trial's, its peak moved half and a whole decade past the old
edge (:meth:`Extension.seeds`); the search runs them next, and TPE learns from them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from lrsearch.space import LRBounds, optimizer_prefix
from lrsearch.store import UNIT, UNIT_BOUNDS, first_done

__all__ = [
    "CAP_DECADES",
    "CAUSES",
    "EDGE_DECADES",
    "EXTEND_DECADES",
    "Extension",
    "at_edge",
    "bounds_key",
    "current",
    "extended",
    "history",
    "record",
    "steps",
]

#: A winner this close to an edge (decades of LR) sits at it.
EDGE_DECADES: Final = 0.25
#: Each extension widens one side by this many decades.
EXTEND_DECADES: Final = 1.0
#: No side goes further than this past where the study started.
CAP_DECADES: Final = 3.0

Side = Literal["low", "high"]

#: A bounds-history row's cause (:func:`steps`), in words.
CAUSES: Final = {
    "range-test": "the range test",
    "redo": "the redone range test",
    "wide": "the optimizer's plausible span",
    "cv-edge": "widened: the CV-chosen constant sat at the grid's end",
    "search-edge": "widened: the best search trial peaked at the edge",
}


def bounds_key(optimizer: str, number: int) -> str:
    """The key of optimizer ``optimizer``'s ``number``-th extension.

    Example:
        >>> bounds_key("task", 0)
        'bounds/task/0'
    """
    return f"bounds/{optimizer}/{number}"


@dataclasses.dataclass(frozen=True)
class Extension:
    """One extension of a searched optimizer's bounds.

    Attributes:
        optimizer: The searched optimizer (``task``: the task's own).
        number: Its place in that optimizer's history (0, 1, ...).
        side: ``"low"`` or ``"high"``.
        low: The bounds' low end after it. high: their high end after it.
        cause: ``"cv-edge"`` (the CV-chosen constant at the grid's end) or ``"search-edge"``
            (the best search trial's peak at an edge).
        lr: The LR that sat at the edge.
        trial: The search trial that did (``None`` for the CV grid).
        params: That trial's params (the search's seeds in the new range are made from them).
    """

    optimizer: str
    number: int
    side: Side
    low: float
    high: float
    cause: str
    lr: float
    trial: int | None = None
    params: Mapping[str, Any] | None = None

    @property
    def bounds(self) -> LRBounds:
        """The bounds after this extension."""
        return LRBounds(self.low, self.high)

    def seeds(self, optimizers: Sequence[str]) -> list[dict[str, Any]]:
        """The search's schedules to try in the new range: the trial's params with the peak
        moved half and a whole decade past the old edge (a base LR moves with a falling peak,
        so it stays in its range). None for an extension the CV grid made.

        Example:
            >>> ext = Extension("task", 0, "high", 1e-3, 1.0, "search-edge", 0.1, 7,
            ...                 {"schedule": "constant", "max_lr": 0.1})
            >>> [round(p["max_lr"], 3) for p in ext.seeds(["task"])]
            [0.316, 1.0]
        """
        if self.params is None:
            return []
        prefix = optimizer_prefix(optimizers, self.optimizer)
        sign = 1.0 if self.side == "high" else -1.0
        out: list[dict[str, Any]] = []
        for decades in (0.5, 1.0):
            factor = 10 ** (sign * decades)
            peak = min(max(self.lr * factor, self.low), self.high)
            if out and out[-1][prefix + "max_lr"] == peak:  # both clipped to the cap: one trial
                continue
            params = dict(self.params)
            params[prefix + "max_lr"] = peak
            base = params.get(prefix + "base_lr")
            if base is not None and self.side == "low":
                params[prefix + "base_lr"] = float(base) * peak / self.lr
            out.append(params)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return dataclasses.asdict(self) | {
            "params": None if self.params is None else dict(self.params)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Extension:
        """The inverse of :meth:`to_dict`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def at_edge(lr: float, bounds: LRBounds) -> Side | None:
    """The side of ``bounds`` that ``lr`` sits at (within :data:`EDGE_DECADES`), if any.

    Example:
        >>> at_edge(0.09, LRBounds(1e-4, 0.1)), at_edge(0.01, LRBounds(1e-4, 0.1))
        ('high', None)
    """
    if math.log10(bounds.high / lr) < EDGE_DECADES:
        return "high"
    if math.log10(lr / bounds.low) < EDGE_DECADES:
        return "low"
    return None


def extended(bounds: LRBounds, side: Side, start: LRBounds) -> LRBounds | None:
    """``bounds`` with ``side`` widened by :data:`EXTEND_DECADES`, or ``None`` when that side
    is already :data:`CAP_DECADES` past ``start`` (where the study started).

    Example:
        >>> extended(LRBounds(1e-3, 0.1), "high", LRBounds(1e-3, 0.1))
        LRBounds(low=0.001, high=1.0)
        >>> extended(LRBounds(1e-3, 100.0), "high", LRBounds(1e-3, 0.1)) is None
        True
    """
    step = 10**EXTEND_DECADES
    if side == "high":
        cap = start.high * 10**CAP_DECADES
        if bounds.high >= cap * (1 - 1e-9):
            return None
        return LRBounds(bounds.low, min(bounds.high * step, cap))
    cap = start.low / 10**CAP_DECADES
    if bounds.low <= cap * (1 + 1e-9):
        return None
    return LRBounds(max(bounds.low / step, cap), bounds.high)


def history(trials: Iterable[FrozenTrial], optimizer: str) -> list[Extension]:
    """Optimizer ``optimizer``'s extensions, in order (the first record per key; the history
    stops at the first missing number)."""
    done = first_done(trials)
    out: list[Extension] = []
    while bounds_key(optimizer, len(out)) in done:
        out.append(
            Extension.from_dict(done[bounds_key(optimizer, len(out))].user_attrs[UNIT_BOUNDS])
        )
    return out


def current(start: LRBounds, extensions: Sequence[Extension]) -> LRBounds:
    """The bounds after ``extensions`` (``start`` without any)."""
    return extensions[-1].bounds if extensions else start


def record(
    study: optuna.Study, extension: Extension, lock: AbstractContextManager[Any] | None = None
) -> bool:
    """Store ``extension`` as a finished trial of ``study`` (study ``NAME/bounds``), unless its
    key is stored already; holding ``lock`` (the study's storage lock), so two workers that
    reach the same decision at once store it once. Whether this call stored it."""
    with lock if lock is not None else contextlib.nullcontext():
        key = bounds_key(extension.optimizer, extension.number)
        if key in first_done(study.get_trials(deepcopy=False)):
            return False
        _store(study, extension)
        return True


def _store(study: optuna.Study, extension: Extension) -> None:
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            value=float(extension.number),
            user_attrs={
                UNIT: bounds_key(extension.optimizer, extension.number),
                UNIT_BOUNDS: extension.to_dict(),
            },
        )
    )


def steps(
    optimizer: str, source: str, start: LRBounds, extensions: Sequence[Extension]
) -> list[dict[str, Any]]:
    """The bounds' history as rows for a table: where the study started (``source``:
    ``range-test``, ``redo`` or ``wide``), then each extension (its cause, the LR at the edge
    and the search trial that had it).

    Example:
        >>> ext = Extension("task", 0, "high", 1e-3, 1.0, "cv-edge", 0.1)
        >>> [(r["cause"], r["high"]) for r in steps("task", "range-test", LRBounds(1e-3, 0.1),
        ...                                         [ext])]
        [('range-test', 0.1), ('cv-edge', 1.0)]
    """
    rows = [
        {
            "optimizer": optimizer,
            "step": 0,
            "cause": source,
            "low": start.low,
            "high": start.high,
            "lr": None,
            "trial": None,
        }
    ]
    rows += [
        {
            "optimizer": optimizer,
            "step": e.number + 1,
            "cause": e.cause,
            "low": e.low,
            "high": e.high,
            "lr": e.lr,
            "trial": e.trial,
        }
        for e in extensions
    ]
    return rows
