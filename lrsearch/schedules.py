"""Learning-rate schedules as data.

A :class:`Schedule` is a frozen value object: a kind and a handful of numbers. It becomes a
``torch.optim.lr_scheduler`` object with :meth:`Schedule.build`, stepped once per optimizer
step, and gives the same per-step learning rates as a NumPy array with :meth:`Schedule.lrs`
(which runs that very scheduler on a throw-away optimizer, so the two can never disagree).

The kinds and their formulas are in the docs (``docs/schedules.md``, "The kinds"); ``t`` is
the optimizer step from 0, ``T`` the run's ``total_steps``, and ``step_size`` and ``warmup`` are
in optimizer steps. Each kind is built from torch's own schedulers, a ``LambdaLR`` over the
closed form only where no built-in gives the formula:

- ``sgdr``: torch's ``CosineAnnealingWarmRestarts`` has neither a per-restart decay nor a floor
  per parameter group, so ``sgdr`` is a ``LambdaLR``. Once its decayed peak
  ``max_lr * decay**k`` would fall under ``base_lr``, the peak rests at ``base_lr`` (the
  learning rate never leaves ``[base_lr, max_lr]``).
- ``cosine``, ``wsd``, ``inverse_sqrt``: a ``SequentialLR`` of a ``LinearLR`` warm-up (factor
  ``(t+1)/w``, which never starts at 0) and the decay. ``cosine``'s decay is a ``LambdaLR``
  because ``CosineAnnealingLR`` has one ``eta_min`` for all param groups: it matches the
  formula for the first group, but a floor above 0 breaks the other groups' ratio. ``wsd`` holds
  with ``ConstantLR`` and cools down with a ``LambdaLR`` (torch has no 1-sqrt decay), and
  ``inverse_sqrt`` decays with a ``LambdaLR`` (no built-in ``1/sqrt(t)`` either).
- ``plateau``: torch's ``ReduceLROnPlateau``, stepped once per **epoch** with the validation
  metric (``scheduler.step(value)``); see :meth:`Schedule.build` for its mode and
  :meth:`Schedule.lrs` for what its learning rates are without a metric.

Momentum is never touched. torch's ``CyclicLR`` and ``OneCycleLR`` cycle momentum (or Adam's
beta1) by default; lrsearch turns that off, so a schedule changes the learning rate and nothing
else, and the optimizer's momentum stays what its user set.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import torch
from torch.optim import Optimizer, lr_scheduler

from lrsearch._optim import lr_ratios, set_lrs
from lrsearch._validation import (
    NON_NEGATIVE_INT,
    NON_NEGATIVE_REAL,
    POSITIVE_INT,
    POSITIVE_REAL,
    REAL,
    Constraint,
    Interval,
    Options,
    Satisfies,
    below,
    check,
)
from lrsearch.choices import CYCLICAL_KINDS, KINDS
from lrsearch.exceptions import InvalidParameterError

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["KINDS", "SEARCH_FIELDS", "Schedule", "compressed_epochs"]


# The optional fields each kind reads; `max_lr` is read by all of them.
USES: Final[Mapping[str, frozenset[str]]] = {
    "constant": frozenset(),
    "step": frozenset({"step_size", "decay"}),
    "exponential": frozenset({"step_size", "decay"}),
    "triangular": frozenset({"base_lr", "step_size"}),
    "triangular2": frozenset({"base_lr", "step_size"}),
    "exp_range": frozenset({"base_lr", "step_size", "decay"}),
    "sgdr": frozenset({"base_lr", "step_size", "decay", "cycle_mult"}),
    "onecycle": frozenset({"base_lr", "pct_start", "final_div_factor"}),
    "cosine": frozenset({"base_lr", "warmup"}),
    "wsd": frozenset({"base_lr", "warmup", "cooldown"}),
    "inverse_sqrt": frozenset({"warmup"}),
    "plateau": frozenset({"base_lr", "decay", "patience"}),
}

# Kinds whose floor `base_lr` may be 0 (it is where they end or rest, not where they start);
# an omitted `base_lr` is 0 for them.
_FLOOR_MAY_BE_ZERO: Final = frozenset({"sgdr", "cosine", "wsd", "plateau"})

# Why a kind that starts at `base_lr` cannot do without one, for the error that says so.
_WHY_REQUIRED: Final[Mapping[tuple[str, str], str]] = {
    ("onecycle", "base_lr"): " (a positive start: div_factor = max_lr / base_lr)",
    **{
        (kind, "base_lr"): " (a positive low end of each cycle)"
        for kind in ("triangular", "triangular2", "exp_range")
    },
}

# The fields a trial's params hold (beyond `schedule` and `max_lr`), in the order
# `suggest_schedule` suggests them; `step_size` and `warmup` are in epochs there.
SEARCH_FIELDS: Final = (
    "base_lr",
    "step_size",
    "decay",
    "cycle_mult",
    "warmup",
    "cooldown",
    "patience",
)

_DEFAULTS: Final[Mapping[str, object]] = {
    "base_lr": None,
    "step_size": None,
    "decay": None,
    "cycle_mult": 1,
    "pct_start": 0.3,
    "final_div_factor": 1e4,
    "warmup": 0,
    "cooldown": None,
    "patience": None,
}


# What each optional field must be once it is given (`max_lr` and `base_lr`: see Schedule).
_RULES: Final[Mapping[str, Constraint]] = {
    "step_size": POSITIVE_INT,
    "decay": Interval(numbers.Real, 0, 1, closed="right"),
    "cycle_mult": POSITIVE_INT,
    "pct_start": Interval(numbers.Real, 0, 1, closed="neither"),
    "final_div_factor": Interval(numbers.Real, 1, None, closed="left"),
    "warmup": NON_NEGATIVE_INT,
    "cooldown": Interval(numbers.Real, 0, 1, closed="right"),
    "patience": NON_NEGATIVE_INT,
}
_NUMBERS: Final = Satisfies(
    lambda v: isinstance(v, Sequence) and not isinstance(v, str), "must be a sequence of numbers"
)


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: which kind, and its numbers.

    Args:
        kind: One of :data:`KINDS`.
        max_lr: The peak (or, for ``constant``, the only) learning rate.
        base_lr: The low end of a cycle: ``triangular``, ``triangular2``, ``exp_range``,
            ``onecycle`` (its start), required and positive for these; the floor of ``sgdr``,
            ``cosine``, ``wsd`` and ``plateau``, which may be 0 and is 0 when omitted.
        step_size: In optimizer steps: the decay period of ``step`` and ``exponential``, the
            half-cycle of the cyclical kinds, the first restart cycle of ``sgdr``.
        decay: In (0, 1]: the factor per ``step_size`` (``step``, ``exponential``), per cycle
            of the amplitude (``exp_range``), per restart of the peak (``sgdr``, whose peak
            never decays below ``base_lr``) or per plateau (``plateau``; 1 never lowers it).
        cycle_mult: ``sgdr`` only: each restart cycle is this many times longer than the last.
        pct_start: ``onecycle`` only: the fraction of the run spent warming up.
        final_div_factor: ``onecycle`` only: the run ends at ``base_lr / final_div_factor``.
        warmup: ``cosine``, ``wsd``, ``inverse_sqrt``: optimizer steps of linear warm-up,
            ``max_lr * (t+1) / warmup`` at step ``t < warmup`` (0: none).
        cooldown: ``wsd`` only, in (0, 1]: the fraction of the run spent in the final 1-sqrt
            decay, ``D = max(1, round(cooldown * T))`` steps (Python's ``round``: half to even).
        patience: ``plateau`` only, in **epochs**: the LR is multiplied by ``decay`` once
            ``patience + 1`` epochs in a row bring no improvement (torch's ``ReduceLROnPlateau``).

    Fields a kind does not use must keep their defaults, so that two equal schedules are
    always equal objects.

    Raises:
        InvalidParameterError: (a ``ValueError``) an unknown kind, a missing field the kind
            needs, a field it does not use, or a bad value; the message names field and value.

    Example:
        >>> s = Schedule("step", max_lr=0.1, step_size=2, decay=0.5)
        >>> s.lrs(5).tolist()
        [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    kind: str
    max_lr: float
    base_lr: float | None = None
    step_size: int | None = None
    decay: float | None = None
    cycle_mult: int = 1
    pct_start: float = 0.3
    final_div_factor: float = 1e4
    warmup: int = 0
    cooldown: float | None = None
    patience: int | None = None

    def __post_init__(self) -> None:
        check("kind", self.kind, Options(KINDS))
        uses = USES[self.kind]
        if self.base_lr is None and self.kind in _FLOOR_MAY_BE_ZERO:
            # An omitted floor is no floor: the LR ends (or rests) at 0. The kinds that start
            # at base_lr (the cyclical ones, onecycle's div_factor) still need one given.
            object.__setattr__(self, "base_lr", 0.0)
        for name, default in _DEFAULTS.items():
            value = getattr(self, name)
            if name not in uses and value != default:
                raise InvalidParameterError(
                    f"{name} does not apply to kind {self.kind!r}; got {value!r}"
                )
            if name in uses and value is None:
                why = _WHY_REQUIRED.get((self.kind, name), "")
                raise InvalidParameterError(f"{name} is required for kind {self.kind!r}{why}")

        set_ = object.__setattr__  # normalise numbers so equal schedules compare equal
        set_(self, "max_lr", check("max_lr", self.max_lr, POSITIVE_REAL))
        if self.base_lr is not None:
            floor = NON_NEGATIVE_REAL if self.kind in _FLOOR_MAY_BE_ZERO else POSITIVE_REAL
            base_lr = check("base_lr", self.base_lr, floor, below("max_lr", self.max_lr))
            set_(self, "base_lr", base_lr)
        for name, constraint in _RULES.items():
            if getattr(self, name) is not None:
                set_(self, name, check(name, getattr(self, name), constraint))

    # -- building ------------------------------------------------------------------------

    def build(
        self, optimizer: Optimizer, total_steps: int, *, maximize: bool = False
    ) -> lr_scheduler.LRScheduler:
        """Attach this schedule to ``optimizer`` as a torch LR scheduler.

        Call ``scheduler.step()`` once after every ``optimizer.step()``, except for ``plateau``:
        its ``ReduceLROnPlateau`` is stepped once per **epoch** with the validation metric,
        ``scheduler.step(value)`` (:func:`lrsearch.training.fit` does both). The first param
        group follows the schedule; every other group keeps the ratio its learning rate had
        to the first group's when ``build`` was called. Momentum is left alone.

        Args:
            optimizer: Any torch optimizer (SGD, Adam, ...); its learning rates are overwritten.
            total_steps: How many optimizer steps the run takes (``onecycle``, ``cosine`` and
                ``wsd`` need it; the others accept it so every kind is built the same way).
            maximize: ``plateau`` only: whether a larger metric is better (``mode="max"``, e.g.
                accuracy) or a smaller one (``mode="min"``, e.g. a loss: the default, as in
                torch). The other kinds ignore it.

        Returns:
            A ``torch.optim.lr_scheduler.LRScheduler`` whose ``state_dict()`` /
            ``load_state_dict()`` resume it mid-schedule.

        Raises:
            InvalidParameterError: ``total_steps`` is not a positive integer (or too short for
                ``onecycle``'s warm-up, ``cosine``'s warm-up or ``wsd``'s warm-up and
                cooldown), or the first group's learning rate is not positive.

        Example:
            >>> model = torch.nn.Linear(2, 1)
            >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            >>> clr = Schedule("triangular", max_lr=0.1, base_lr=0.01, step_size=4)
            >>> sched = clr.build(opt, total_steps=16)
            >>> opt.param_groups[0]["lr"]
            0.01
        """
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer; got {optimizer!r}")
        total_steps = self._check_total_steps(total_steps)
        ratios = lr_ratios(optimizer)
        for group in optimizer.param_groups:
            # A scheduler built earlier leaves `initial_lr` behind, and torch's schedulers
            # would silently start from it instead of from this schedule.
            group.pop("initial_lr", None)
        if self.kind == "plateau":  # the one builder that needs the metric's direction
            return _build_plateau(self, optimizer, ratios, maximize=bool(maximize))
        return _BUILDERS[self.kind](self, optimizer, ratios, total_steps)

    def lrs(
        self,
        total_steps: int,
        *,
        metrics: Sequence[float] | None = None,
        steps_per_epoch: int | None = None,
        maximize: bool = False,
    ) -> np.ndarray:
        """The learning rate at every optimizer step ``0 .. total_steps - 1``.

        No optimizer is needed: the scheduler :meth:`build` makes is run on a throw-away one,
        so these are exactly the values a real run sees.

        ``plateau`` depends on the validation metric. Without ``metrics`` its learning rate
        never drops, so ``lrs`` is ``max_lr`` at every step (what a run whose metric improves
        every epoch sees). With ``metrics`` (the value after each epoch, as
        :attr:`lrsearch.training.FitResult.values` holds them) and ``steps_per_epoch``, the
        scheduler is replayed the way :func:`lrsearch.training.fit` steps it: after epoch
        ``e`` with ``metrics[e]``, so step ``t`` is in epoch ``t // steps_per_epoch`` and
        sees the reductions of the epochs before it. The other kinds do not depend on the
        metric and ignore ``metrics``.

        Args:
            total_steps: How many steps to return.
            metrics: ``plateau``: the metric after each epoch, at least one per epoch but the
                last of the ``total_steps``.
            steps_per_epoch: Optimizer steps per epoch; needed with ``metrics``.
            maximize: ``plateau``: whether a larger metric is better (see :meth:`build`).

        Returns:
            A float64 array of shape ``(total_steps,)``.

        Raises:
            InvalidParameterError: a bad ``total_steps``, ``metrics`` without
                ``steps_per_epoch`` (or the reverse), too few or non-finite metrics.

        Example:
            >>> Schedule("exponential", max_lr=1.0, step_size=2, decay=0.25).lrs(3).tolist()
            [1.0, 0.5, 0.25]
            >>> flat = Schedule("plateau", 1.0, base_lr=0.0, decay=0.5, patience=0)
            >>> flat.lrs(4, metrics=[0.3, 0.3, 0.3], steps_per_epoch=1).tolist()
            [1.0, 1.0, 0.5, 0.25]
        """
        total_steps = self._check_total_steps(total_steps)
        values, spe = _check_replay(total_steps, metrics, steps_per_epoch)
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=1.0)
        scheduler = self.build(optimizer, total_steps, maximize=maximize)
        per_epoch = isinstance(scheduler, lr_scheduler.ReduceLROnPlateau)
        # A no-op step (no gradients) first, so torch does not warn about the call order.
        optimizer.step()
        group = optimizer.param_groups[0]
        out = np.empty(total_steps, dtype=np.float64)
        for t in range(total_steps):
            if t and not per_epoch:
                scheduler.step()
            elif t and values and t % spe == 0:
                assert isinstance(scheduler, lr_scheduler.ReduceLROnPlateau)
                scheduler.step(values[t // spe - 1])
            out[t] = float(group["lr"])
        return out

    def cycle_ends(self, total_steps: int) -> list[int]:
        """Where the cycles of a run of ``total_steps`` end, in optimizer steps taken.

        ``n`` is in the list when the weights after ``n`` optimizer steps finish a cycle: the
        learning rate has come back down, and step ``n`` (from 0) starts the next cycle. These
        are the points where a snapshot ensemble (Huang et al. 2017) keeps the model. From the
        kinds' own formulas (``s`` = ``step_size``, ``m`` = ``cycle_mult``):

        - ``triangular``, ``triangular2``, ``exp_range``: a cycle is ``2s`` steps, so
          ``2s, 4s, 6s, ...``;
        - ``sgdr``: restart cycle ``k`` is ``s * m**k`` steps, so ``s, s + s*m,
          s + s*m + s*m**2, ...``.

        Only whole cycles count: a run that stops mid-cycle does not end one, so ``total_steps``
        itself is in the list only when a cycle ends exactly there. Every other kind does not
        restart (``onecycle``'s one cycle is the whole run) and has no cycle ends: ``[]``.

        Args:
            total_steps: The run's optimizer steps.

        Returns:
            The step counts, ascending, each in ``1 .. total_steps``.

        Raises:
            InvalidParameterError: ``total_steps`` is not a positive integer.

        Example:
            >>> Schedule("triangular2", 0.1, base_lr=0.01, step_size=3).cycle_ends(20)
            [6, 12, 18]
            >>> sgdr = Schedule("sgdr", 0.1, base_lr=0.0, step_size=2, decay=1.0, cycle_mult=2)
            >>> sgdr.cycle_ends(14)
            [2, 6, 14]
            >>> Schedule("cosine", 0.1, base_lr=0.0).cycle_ends(20)
            []
        """
        total_steps = check("total_steps", total_steps, POSITIVE_INT)
        if self.kind not in CYCLICAL_KINDS:
            return []
        assert self.step_size is not None
        if self.kind != "sgdr":
            return list(range(2 * self.step_size, total_steps + 1, 2 * self.step_size))
        ends, length, end = [], self.step_size, self.step_size
        while end <= total_steps:
            ends.append(end)
            length *= self.cycle_mult
            end += length
        return ends

    def _cooldown_steps(self, total_steps: int) -> int:
        """``wsd``'s D: ``max(1, round(cooldown * T))`` steps (``round`` halves to even)."""
        assert self.cooldown is not None
        return max(1, round(self.cooldown * total_steps))

    def _check_total_steps(self, total_steps: int) -> int:
        total_steps = check("total_steps", total_steps, POSITIVE_INT)
        if self.kind == "onecycle" and self.pct_start * total_steps < 2:
            need = math.ceil(2 / self.pct_start)
            raise InvalidParameterError(
                f"total_steps must be at least {need} for onecycle with pct_start="
                f"{self.pct_start} (two warm-up steps); got {total_steps}"
            )
        if self.kind == "cosine" and total_steps <= self.warmup:
            raise InvalidParameterError(
                f"total_steps must be above cosine's warmup={self.warmup} (one cosine step at "
                f"least); got {total_steps}"
            )
        if self.kind == "wsd" and self.warmup + self._cooldown_steps(total_steps) > total_steps:
            raise InvalidParameterError(
                f"total_steps must hold wsd's warmup={self.warmup} and its cooldown of "
                f"{self._cooldown_steps(total_steps)} steps (cooldown={self.cooldown}); "
                f"got {total_steps}"
            )
        return total_steps

    # -- conversions ---------------------------------------------------------------------

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        *,
        steps_per_epoch: int,
        epochs: int | None = None,
        prefix: str = "",
    ) -> Schedule:
        """Rebuild the schedule that :func:`lrsearch.suggest_schedule` suggested.

        Args:
            params: ``trial.params`` (or ``study.best_params``); keys that are not this
                schedule's (the rest of the user's objective) are ignored.
            steps_per_epoch: Optimizer steps per epoch; ``step_size`` and ``warmup`` are
                stored in epochs (``patience`` is in epochs in both).
            epochs: The run's length in epochs; when given, a ``step_size`` or ``warmup``
                longer than the run is an error.
            prefix: The prefix given to ``suggest_schedule``.

        Returns:
            The :class:`Schedule`.

        Raises:
            InvalidParameterError: a missing entry, or a value the schedule refuses.

        Example:
            >>> Schedule.from_params(
            ...     {"schedule": "step", "max_lr": 0.1, "step_size": 2, "decay": 0.5},
            ...     steps_per_epoch=10,
            ... )
            Schedule(kind='step', max_lr=0.1, base_lr=None, step_size=20, decay=0.5, cycle_mult=1, pct_start=0.3, final_div_factor=10000.0, warmup=0, cooldown=None, patience=None)
        """  # noqa: E501
        spe = check("steps_per_epoch", steps_per_epoch, POSITIVE_INT)
        if epochs is not None:
            epochs = check("epochs", epochs, POSITIVE_INT)
        for name in ("schedule", "max_lr"):
            if prefix + name not in params:
                raise InvalidParameterError(
                    f"params has no {prefix + name!r} entry; got keys {sorted(params)}"
                )
        kind = check(prefix + "schedule", params[prefix + "schedule"], Options(KINDS))
        fields: dict[str, Any] = {
            name: params[prefix + name]
            for name in SEARCH_FIELDS
            if name in USES[kind] and prefix + name in params
        }
        for name, constraint in (("step_size", POSITIVE_INT), ("warmup", NON_NEGATIVE_INT)):
            if name not in fields:
                continue
            n_epochs = check(prefix + name, fields[name], constraint)
            if epochs is not None and n_epochs > epochs:
                raise InvalidParameterError(
                    f"{prefix}{name} of {n_epochs} epochs is longer than the run's {epochs} epochs"
                )
            fields[name] = n_epochs * spe
        return cls(kind=kind, max_lr=params[prefix + "max_lr"], **fields)

    def to_params(self, *, steps_per_epoch: int, prefix: str = "") -> dict[str, Any]:
        """The ``trial.params`` that :meth:`from_params` turns back into this schedule.

        Handy for ``study.enqueue_trial(schedule.to_params(steps_per_epoch=...))``.

        Args:
            steps_per_epoch: Optimizer steps per epoch; ``step_size`` and ``warmup`` must be
                whole epochs.
            prefix: The prefix given to ``suggest_schedule``.

        Returns:
            A dict of parameter name to value.

        Raises:
            InvalidParameterError: ``step_size`` or ``warmup`` is not a whole number of epochs,
                or the schedule has a ``pct_start`` / ``final_div_factor`` the search space
                lacks.

        Example:
            >>> Schedule("triangular", 0.1, base_lr=0.01, step_size=40).to_params(
            ...     steps_per_epoch=20)
            {'schedule': 'triangular', 'max_lr': 0.1, 'base_lr': 0.01, 'step_size': 2}
        """
        spe = check("steps_per_epoch", steps_per_epoch, POSITIVE_INT)
        for name in ("pct_start", "final_div_factor"):
            if getattr(self, name) != _DEFAULTS[name]:
                raise InvalidParameterError(
                    f"{name} is not a search parameter, so a schedule with {name}="
                    f"{getattr(self, name)!r} has no params form"
                )
        out: dict[str, Any] = {prefix + "schedule": self.kind, prefix + "max_lr": self.max_lr}
        for name in SEARCH_FIELDS:
            if name not in USES[self.kind]:
                continue
            value = getattr(self, name)
            if name in ("step_size", "warmup"):
                if value % spe:
                    raise InvalidParameterError(
                        f"{name} must be a whole number of epochs of {spe} steps; "
                        f"got {value} steps"
                    )
                value //= spe
            out[prefix + name] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the fields (what lrsearch stores in Optuna user attrs)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        """The inverse of :meth:`to_dict`.

        Raises:
            InvalidParameterError: an unknown field, or a value the schedule refuses.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParameterError(
                f"unknown Schedule field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        missing = [name for name in ("kind", "max_lr") if name not in data]
        if missing:
            raise InvalidParameterError(
                f"a Schedule needs {' and '.join(missing)}; got fields {sorted(data)}"
            )
        return cls(**data)

    def compressed(self, fraction: float) -> Schedule:
        """The same schedule over a run ``fraction`` as long: every period in steps or epochs
        (``step_size``, ``warmup``, ``patience``) times ``fraction``, rounded; the LRs and the
        shares of the run (``pct_start``, ``cooldown``) stay. Trained for ``fraction`` of the
        steps, it goes through the whole shape (warm-up, cycles, decay to the end) in short.

        Example:
            >>> Schedule("step", max_lr=0.1, step_size=90, decay=0.5).compressed(1 / 3)
            Schedule(kind='step', max_lr=0.1, base_lr=None, step_size=30, decay=0.5, cycle_mult=1, pct_start=0.3, final_div_factor=10000.0, warmup=0, cooldown=None, patience=None)
        """  # noqa: E501
        fraction = check("fraction", fraction, Interval(numbers.Real, 0, 1, closed="right"))

        def scaled(value: int | None, least: int) -> int | None:
            return None if value is None else max(least, round(value * fraction))

        return dataclasses.replace(
            self,
            step_size=scaled(self.step_size, 1),
            warmup=scaled(self.warmup, 0) or 0,
            patience=scaled(self.patience, 0),
        )

    # -- for people ----------------------------------------------------------------------

    def describe(self, steps_per_epoch: int | None = None) -> str:
        """The schedule in words, with periods in epochs when ``steps_per_epoch`` is given.

        Example:
            >>> Schedule("triangular2", 0.1, base_lr=0.01, step_size=200).describe(100)
            'triangular2 0.01 to 0.1, half-cycle 2 epochs, amplitude halved each cycle'
            >>> Schedule("cosine", 0.1, base_lr=0.01, warmup=100).describe(100)
            'cosine from 0.1 down to 0.01, linear warm-up 1 epoch'
        """

        def period(steps: int | None) -> str:
            assert steps is not None
            if steps_per_epoch and steps % steps_per_epoch == 0:
                n = steps // steps_per_epoch
                return f"{n} epoch{'s' if n != 1 else ''}"
            return f"{steps} steps"

        g = "{:.3g}".format
        k = self.kind
        if k == "constant":
            return f"constant {g(self.max_lr)}"
        if k in ("step", "exponential"):
            how = "times" if k == "step" else "decaying smoothly by"
            return (
                f"{k} from {g(self.max_lr)}, {how} {g(self.decay)} every {period(self.step_size)}"
            )
        if k == "onecycle":
            assert self.base_lr is not None
            end = self.base_lr / self.final_div_factor
            return (
                f"onecycle {g(self.base_lr)} up to {g(self.max_lr)} then down to {g(end)}, "
                f"warm-up {self.pct_start:.0%}"
            )
        if k == "sgdr":
            text = (
                f"sgdr cosine from {g(self.max_lr)} to {g(self.base_lr)}, "
                f"first cycle {period(self.step_size)}"
            )
            if self.cycle_mult != 1:
                text += f", each cycle {self.cycle_mult}x longer"
            if g(self.decay) != g(1.0):  # a decay that prints as 1 is no decay to a reader
                text += f", peak times {g(self.decay)} per restart"
            return text
        warm = f", linear warm-up {period(self.warmup)}" if self.warmup else ""
        if k == "cosine":
            return f"cosine from {g(self.max_lr)} down to {g(self.base_lr)}{warm}"
        if k == "wsd":
            assert self.cooldown is not None
            return (
                f"wsd at {g(self.max_lr)}, then 1-sqrt down to {g(self.base_lr)} over the last "
                f"{g(100 * self.cooldown)}% of the run{warm}"
            )
        if k == "inverse_sqrt":
            return f"inverse_sqrt from {g(self.max_lr)} falling as 1/sqrt(step){warm}"
        if k == "plateau":
            assert self.patience is not None
            if g(self.decay) == g(1.0):
                return f"plateau at {g(self.max_lr)}, never lowered (decay 1)"
            bad = self.patience + 1
            return (
                f"plateau from {g(self.max_lr)}, times {g(self.decay)} once {bad} "
                f"epoch{'s' if bad != 1 else ''} in a row bring no improvement (patience "
                f"{self.patience} epoch{'s' if self.patience != 1 else ''}), "
                f"floor {g(self.base_lr)}"
            )
        text = f"{k} {g(self.base_lr)} to {g(self.max_lr)}, half-cycle {period(self.step_size)}"
        if k == "triangular2":
            text += ", amplitude halved each cycle"
        elif k == "exp_range":
            text += f", amplitude times {g(self.decay)} per cycle"
        return text

    def figure(self, total_steps: int, steps_per_epoch: int | None = None) -> go.Figure:
        """A plotly figure of the learning rate against the step (or epoch), on a log axis.

        Example:
            >>> fig = Schedule("constant", 0.1).figure(10)
            >>> fig.data[0].y.tolist() == [0.1] * 10
            True
        """
        import plotly.graph_objects as go  # heavy; only figures need it

        lrs = self.lrs(total_steps)
        x: np.ndarray = np.arange(total_steps, dtype=np.float64)
        x_title = "optimizer step"
        if steps_per_epoch:
            x = x / steps_per_epoch
            x_title = "epoch"
        fig = go.Figure(go.Scatter(x=x, y=lrs, mode="lines", name=self.kind))
        fig.update_layout(
            title=self.describe(steps_per_epoch),
            xaxis_title=x_title,
            yaxis_title="learning rate",
            yaxis_type="log",
        )
        return fig


# -- torch builders -----------------------------------------------------------------------


def _build_constant(
    s: Schedule, opt: Optimizer, ratios: list[float], total_steps: int
) -> lr_scheduler.LRScheduler:
    set_lrs(opt, s.max_lr, ratios)
    return lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def _build_step(
    s: Schedule, opt: Optimizer, ratios: list[float], total_steps: int
) -> lr_scheduler.LRScheduler:
    assert s.step_size is not None and s.decay is not None
    set_lrs(opt, s.max_lr, ratios)
    return lr_scheduler.StepLR(opt, step_size=s.step_size, gamma=s.decay)


def _build_exponential(
    s: Schedule, opt: Optimizer, ratios: list[float], total_steps: int
) -> lr_scheduler.LRScheduler:
    assert s.step_size is not None and s.decay is not None
    set_lrs(opt, s.max_lr, ratios)
    return lr_scheduler.ExponentialLR(opt, gamma=s.decay ** (1.0 / s.step_size))


def _build_cyclic(
    s: Schedule, opt: Optimizer, ratios: list[float], total_steps: int
) -> lr_scheduler.LRScheduler:
    assert s.base_lr is not None and s.step_size is not None
    # exp_range: torch scales the amplitude by gamma**t; the docs' d**(t/2s) is gamma = d**(1/2s).
    gamma = 1.0 if s.decay is None else s.decay ** (1.0 / (2 * s.step_size))
    return lr_scheduler.CyclicLR(
        opt,
        base_lr=[s.base_lr * r for r in ratios],
        max_lr=[s.max_lr * r for r in ratios],
        step_size_up=s.step_size,
        mode=s.kind,  # type: ignore[arg-type]  # one of CyclicLR's three modes, by KINDS
        gamma=gamma,
        cycle_momentum=False,
    )


@dataclass(frozen=True)
class _SgdrFactor:
    """``sgdr``'s LR at step t divided by ``max_lr``: a callable object, not a lambda, so that
    ``LambdaLR.state_dict()`` keeps it."""

    floor: float
    cycle: int
    mult: int
    decay: float

    def __call__(self, t: int) -> float:
        restart, start, length = 0, 0, self.cycle
        if self.mult == 1:
            restart = t // self.cycle
            start = restart * self.cycle
        else:
            while t >= start + length:
                start += length
                length *= self.mult
                restart += 1
        peak = max(self.decay**restart, self.floor)  # a decayed peak rests on the floor
        return (
            self.floor + (peak - self.floor) * (1 + math.cos(math.pi * (t - start) / length)) / 2
        )


def _build_sgdr(
    s: Schedule, opt: Optimizer, ratios: list[float], total_steps: int
) -> lr_scheduler.LRScheduler:
    assert s.base_lr is not None and s.step_size is not None and s.decay is not None
    set_lrs(opt, s.max_lr, ratios)
    factor = _SgdrFactor(s.base_lr / s.max_lr, s.step_size, s.cycle_mult, s.decay)
    return lr_scheduler.LambdaLR(opt, lr_lambda=factor)


def _build_onecycle(
    s: Schedule, opt: Optimizer, ratios: list[float], total_steps: int
) -> lr_scheduler.LRScheduler:
    assert s.base_lr is not None
    return lr_scheduler.OneCycleLR(
        opt,
        max_lr=[s.max_lr * r for r in ratios],
        total_steps=total_steps,
        pct_start=s.pct_start,
        anneal_strategy="cos",
        cycle_momentum=False,
        div_factor=s.max_lr / s.base_lr,
        final_div_factor=s.final_div_factor,
    )


_Make = Callable[[], lr_scheduler.LRScheduler]


def _in_sequence(
    opt: Optimizer, phases: Sequence[tuple[int, _Make]], last: _Make
) -> lr_scheduler.LRScheduler:
    """torch's ``SequentialLR`` over ``phases`` (``(steps, make)`` each; an empty phase is left
    out) and then ``last`` to the end of the run; ``last`` alone when every phase is empty.

    The schedulers are made in order: each one's constructor sets the LR the next one sees.
    """
    kept = [(steps, make) for steps, make in phases if steps > 0]
    schedulers = [make() for _, make in kept] + [last()]
    if len(schedulers) == 1:
        return schedulers[0]
    milestones = list(itertools.accumulate(steps for steps, _ in kept))
    return lr_scheduler.SequentialLR(opt, schedulers, milestones=milestones)


def _warmup(opt: Optimizer, warmup: int) -> tuple[int, _Make]:
    """The linear warm-up phase: ``(t+1) / warmup`` times the peak at step ``t < warmup``.

    ``LinearLR``'s factor at step ``t`` is ``start + (end - start) * t / total_iters``; with
    ``start = 1/w``, ``end = 1`` and ``total_iters = w - 1`` that is exactly ``(t+1)/w``, so the
    warm-up never starts at 0 and reaches the peak on its last step. (For ``w = 1``,
    ``total_iters`` is 1 and ``start = end = 1``: one step at the peak.)
    """
    return warmup, lambda: lr_scheduler.LinearLR(
        opt, start_factor=1.0 / warmup, end_factor=1.0, total_iters=max(warmup - 1, 1)
    )


@dataclass(frozen=True)
class _CosineFactor:
    """``cosine``'s decay after the warm-up, at step ``u`` of ``length``, over ``max_lr``.

    ``(1 + cos x) / 2`` is computed as ``cos(x / 2) ** 2``: the same number, without the
    cancellation near the end of the run where the first form loses digits. Past the run's
    end the LR rests at the floor. (A callable object, not a lambda, so that
    ``LambdaLR.state_dict()`` keeps it.)
    """

    floor: float
    length: int

    def __call__(self, u: int) -> float:
        x = min(u, self.length) / self.length
        return self.floor + (1 - self.floor) * math.cos(math.pi * x / 2) ** 2


@dataclass(frozen=True)
class _SqrtCooldownFactor:
    """``wsd``'s 1-sqrt cooldown at step ``u`` of ``length``, over ``max_lr``; past the run's
    end the LR rests at the floor."""

    floor: float
    length: int

    def __call__(self, u: int) -> float:
        return self.floor + (1 - self.floor) * (1 - math.sqrt(min(u, self.length) / self.length))


@dataclass(frozen=True)
class _InverseSqrtFactor:
    """``inverse_sqrt`` after the warm-up, at step ``u`` (``t = warmup + u``), over ``max_lr``."""

    warmup: int

    def __call__(self, u: int) -> float:
        return math.sqrt(max(self.warmup, 1) / (self.warmup + u + 1))


def _build_cosine(
    s: Schedule, opt: Optimizer, ratios: list[float], total_steps: int
) -> lr_scheduler.LRScheduler:
    # CosineAnnealingLR reproduces the formula for the first group (to 1e-15, checked), but its
    # eta_min is one number for every group: with a floor above 0 the other groups' ratio
    # drifts. A LambdaLR scales each group's own peak, so the floor keeps the ratio too.
    assert s.base_lr is not None
    set_lrs(opt, s.max_lr, ratios)
    factor = _CosineFactor(s.base_lr / s.max_lr, total_steps - s.warmup)
    return _in_sequence(
        opt, [_warmup(opt, s.warmup)], lambda: lr_scheduler.LambdaLR(opt, lr_lambda=factor)
    )


def _build_wsd(
    s: Schedule, opt: Optimizer, ratios: list[float], total_steps: int
) -> lr_scheduler.LRScheduler:
    assert s.base_lr is not None
    set_lrs(opt, s.max_lr, ratios)
    cooldown = s._cooldown_steps(total_steps)
    stable = total_steps - s.warmup - cooldown
    factor = _SqrtCooldownFactor(s.base_lr / s.max_lr, cooldown)
    return _in_sequence(
        opt,
        [
            _warmup(opt, s.warmup),
            (stable, lambda: lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)),
        ],
        lambda: lr_scheduler.LambdaLR(opt, lr_lambda=factor),  # torch has no 1-sqrt decay
    )


def _build_inverse_sqrt(
    s: Schedule, opt: Optimizer, ratios: list[float], total_steps: int
) -> lr_scheduler.LRScheduler:
    set_lrs(opt, s.max_lr, ratios)
    factor = _InverseSqrtFactor(s.warmup)
    return _in_sequence(
        opt,
        [_warmup(opt, s.warmup)],
        lambda: lr_scheduler.LambdaLR(opt, lr_lambda=factor),  # torch has no 1/sqrt(t) decay
    )


def _build_plateau(
    s: Schedule, opt: Optimizer, ratios: list[float], *, maximize: bool
) -> lr_scheduler.ReduceLROnPlateau:
    assert s.base_lr is not None and s.decay is not None and s.patience is not None
    set_lrs(opt, s.max_lr, ratios)
    scheduler = lr_scheduler.ReduceLROnPlateau(
        opt,
        mode="max" if maximize else "min",
        factor=min(s.decay, 0.5),
        patience=s.patience,
        # A floor per group keeps the groups' ratio down to the floor; eps=0 applies every
        # reduction, where torch's 1e-8 would skip it for a group whose LR is tiny.
        min_lr=[s.base_lr * r for r in ratios],
        eps=0.0,
    )
    # torch refuses a factor of 1 up front; with 1 (decay 1: never lowered) each reduction
    # leaves the LR where it is.
    scheduler.factor = s.decay
    return scheduler


_Builder = Callable[[Schedule, Optimizer, list[float], int], lr_scheduler.LRScheduler]
_BUILDERS: Final[Mapping[str, _Builder]] = {
    "constant": _build_constant,
    "step": _build_step,
    "exponential": _build_exponential,
    "triangular": _build_cyclic,
    "triangular2": _build_cyclic,
    "exp_range": _build_cyclic,
    "sgdr": _build_sgdr,
    "onecycle": _build_onecycle,
    "cosine": _build_cosine,
    "wsd": _build_wsd,
    "inverse_sqrt": _build_inverse_sqrt,
    # "plateau" needs the metric's direction: Schedule.build calls _build_plateau itself.
}


# -- validation helpers -------------------------------------------------------------------


def _check_replay(
    total_steps: int, metrics: Sequence[float] | None, steps_per_epoch: int | None
) -> tuple[list[float] | None, int]:
    """``metrics`` as finite floats and ``steps_per_epoch`` (1 without a replay), checked for a
    replay over ``total_steps`` steps."""
    if (metrics is None) != (steps_per_epoch is None):
        raise InvalidParameterError(
            "metrics and steps_per_epoch go together (a replay needs both); got "
            f"metrics={metrics!r}, steps_per_epoch={steps_per_epoch!r}"
        )
    if metrics is None:
        return None, 1
    spe = check("steps_per_epoch", steps_per_epoch, POSITIVE_INT)
    check("metrics", metrics, _NUMBERS)
    values = [check(f"metrics[{i}]", v, REAL) for i, v in enumerate(metrics)]
    need = -(-total_steps // spe) - 1  # one per epoch but the last
    if len(values) < need:
        raise InvalidParameterError(
            f"metrics must hold at least {need} values for {total_steps} steps of "
            f"{spe} per epoch (one per epoch but the last); got {len(values)}"
        )
    return values, spe


def compressed_epochs(epochs: int, fidelity: float) -> int:
    """The epochs a run of ``epochs`` trains at ``fidelity`` (a share of the run): at least 1.

    Example:
        >>> compressed_epochs(20, 1 / 3), compressed_epochs(75, 1 / 3), compressed_epochs(2, 0.1)
        (7, 25, 1)
    """
    epochs = check("epochs", epochs, POSITIVE_INT)
    fidelity = check("fidelity", fidelity, Interval(numbers.Real, 0, 1, closed="right"))
    return max(1, round(epochs * fidelity))
