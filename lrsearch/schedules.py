"""Learning-rate schedules as data.

A :class:`Schedule` is a frozen value object: a kind and a handful of numbers. It becomes a
``torch.optim.lr_scheduler`` object with :meth:`Schedule.build`, stepped once per optimizer
step, and gives the same per-step learning rates as a NumPy array with :meth:`Schedule.lrs`
(which runs that very scheduler on a throw-away optimizer, so the two can never disagree).

The kinds and their formulas are in ``DESIGN.md``; ``t`` is the optimizer step from 0 and
``step_size`` is in optimizer steps. Every kind is one of torch's built-in schedulers except
``sgdr``: torch's ``CosineAnnealingWarmRestarts`` has neither a per-restart decay nor a floor
per parameter group, so ``sgdr`` is a ``LambdaLR`` over its closed form. Once ``sgdr``'s
decayed peak ``max_lr * decay**k`` would fall under ``base_lr``, the peak rests at ``base_lr``
(the learning rate never leaves ``[base_lr, max_lr]``).

Momentum is never touched. torch's ``CyclicLR`` and ``OneCycleLR`` cycle momentum (or Adam's
beta1) by default; lrsearch turns that off, so a schedule changes the learning rate and nothing
else, and the optimizer's momentum stays what its user set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import torch
from torch.optim import Optimizer, lr_scheduler

from lrsearch._optim import lr_ratios, set_lrs
from lrsearch._validation import check_positive_int, check_real
from lrsearch.choices import KINDS
from lrsearch.exceptions import InvalidParameterError

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["KINDS", "Schedule"]


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
}

_DEFAULTS: Final[Mapping[str, object]] = {
    "base_lr": None,
    "step_size": None,
    "decay": None,
    "cycle_mult": 1,
    "pct_start": 0.3,
    "final_div_factor": 1e4,
}


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: which kind, and its numbers.

    Args:
        kind: One of :data:`KINDS`.
        max_lr: The peak (or, for ``constant``, the only) learning rate.
        base_lr: The low end of a cycle: ``triangular``, ``triangular2``, ``exp_range``,
            ``onecycle`` (its start) and ``sgdr`` (its floor, which may be 0).
        step_size: In optimizer steps: the decay period of ``step`` and ``exponential``, the
            half-cycle of the cyclical kinds, the first restart cycle of ``sgdr``.
        decay: In (0, 1]: the factor per ``step_size`` (``step``, ``exponential``), per cycle
            of the amplitude (``exp_range``) or per restart of the peak (``sgdr``, whose peak
            never decays below ``base_lr``).
        cycle_mult: ``sgdr`` only: each restart cycle is this many times longer than the last.
        pct_start: ``onecycle`` only: the fraction of the run spent warming up.
        final_div_factor: ``onecycle`` only: the run ends at ``base_lr / final_div_factor``.

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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidParameterError(
                f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}"
            )
        uses = USES[self.kind]
        for name, default in _DEFAULTS.items():
            value = getattr(self, name)
            if name not in uses and value != default:
                raise InvalidParameterError(
                    f"{name} does not apply to kind {self.kind!r}; got {value!r}"
                )
            if name in uses and value is None:
                raise InvalidParameterError(f"{name} is required for kind {self.kind!r}")

        set_ = object.__setattr__  # normalise numbers so equal schedules compare equal
        max_lr = check_real("max_lr", self.max_lr)
        if not max_lr > 0:
            raise InvalidParameterError(f"max_lr must be a positive finite number; got {max_lr!r}")
        set_(self, "max_lr", max_lr)
        if self.base_lr is not None:
            base_lr = check_real("base_lr", self.base_lr)
            floor_ok = base_lr >= 0 if self.kind == "sgdr" else base_lr > 0
            if not floor_ok:
                rule = "non-negative" if self.kind == "sgdr" else "positive"
                raise InvalidParameterError(
                    f"base_lr must be a {rule} finite number; got {base_lr!r}"
                )
            if not base_lr < max_lr:
                raise InvalidParameterError(
                    f"base_lr must be below max_lr={max_lr!r}; got {base_lr!r}"
                )
            set_(self, "base_lr", base_lr)
        if self.step_size is not None:
            set_(self, "step_size", check_positive_int("step_size", self.step_size))
        if self.decay is not None:
            decay = check_real("decay", self.decay)
            if not 0 < decay <= 1:
                raise InvalidParameterError(f"decay must be in (0, 1]; got {decay!r}")
            set_(self, "decay", decay)
        set_(self, "cycle_mult", check_positive_int("cycle_mult", self.cycle_mult))
        pct_start = check_real("pct_start", self.pct_start)
        if not 0 < pct_start < 1:
            raise InvalidParameterError(f"pct_start must be in (0, 1); got {pct_start!r}")
        set_(self, "pct_start", pct_start)
        final_div = check_real("final_div_factor", self.final_div_factor)
        if not final_div >= 1:
            raise InvalidParameterError(f"final_div_factor must be >= 1; got {final_div!r}")
        set_(self, "final_div_factor", final_div)

    # -- building ------------------------------------------------------------------------

    def build(self, optimizer: Optimizer, total_steps: int) -> lr_scheduler.LRScheduler:
        """Attach this schedule to ``optimizer`` as a torch LR scheduler.

        Call ``scheduler.step()`` once after every ``optimizer.step()``. The first param
        group follows the schedule; every other group keeps the ratio its learning rate had
        to the first group's when ``build`` was called. Momentum is left alone.

        Args:
            optimizer: Any torch optimizer (SGD, Adam, ...); its learning rates are overwritten.
            total_steps: How many optimizer steps the run takes (``onecycle`` needs it; the
                others accept it so every kind is built the same way).

        Returns:
            A ``torch.optim.lr_scheduler.LRScheduler`` whose ``state_dict()`` /
            ``load_state_dict()`` resume it mid-schedule.

        Raises:
            InvalidParameterError: ``total_steps`` is not a positive integer (or too short for
                ``onecycle``'s warm-up), or the first group's learning rate is not positive.

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
        return _BUILDERS[self.kind](self, optimizer, ratios, total_steps)

    def lrs(self, total_steps: int) -> np.ndarray:
        """The learning rate at every optimizer step ``0 .. total_steps - 1``.

        No optimizer is needed: the scheduler :meth:`build` makes is run on a throw-away one,
        so these are exactly the values a real run sees.

        Args:
            total_steps: How many steps to return.

        Returns:
            A float64 array of shape ``(total_steps,)``.

        Example:
            >>> Schedule("exponential", max_lr=1.0, step_size=2, decay=0.25).lrs(3).tolist()
            [1.0, 0.5, 0.25]
        """
        total_steps = self._check_total_steps(total_steps)
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=1.0)
        scheduler = self.build(optimizer, total_steps)
        # A no-op step (no gradients) first, so torch does not warn about the call order.
        optimizer.step()
        group = optimizer.param_groups[0]
        out = np.empty(total_steps, dtype=np.float64)
        for t in range(total_steps):
            out[t] = float(group["lr"])
            if t + 1 < total_steps:
                scheduler.step()
        return out

    def _check_total_steps(self, total_steps: int) -> int:
        total_steps = check_positive_int("total_steps", total_steps)
        if self.kind == "onecycle" and self.pct_start * total_steps < 2:
            need = math.ceil(2 / self.pct_start)
            raise InvalidParameterError(
                f"total_steps must be at least {need} for onecycle with pct_start="
                f"{self.pct_start} (two warm-up steps); got {total_steps}"
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
            steps_per_epoch: Optimizer steps per epoch; ``step_size`` is stored in epochs.
            epochs: The run's length in epochs; when given, a ``step_size`` longer than the
                run is an error.
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
            Schedule(kind='step', max_lr=0.1, base_lr=None, step_size=20, decay=0.5, cycle_mult=1, pct_start=0.3, final_div_factor=10000.0)
        """  # noqa: E501
        spe = check_positive_int("steps_per_epoch", steps_per_epoch)
        if epochs is not None:
            epochs = check_positive_int("epochs", epochs)
        for name in ("schedule", "max_lr"):
            if prefix + name not in params:
                raise InvalidParameterError(
                    f"params has no {prefix + name!r} entry; got keys {sorted(params)}"
                )
        kind = params[prefix + "schedule"]
        if kind not in KINDS:
            raise InvalidParameterError(
                f"{prefix}schedule must be one of {', '.join(KINDS)}; got {kind!r}"
            )
        fields: dict[str, Any] = {
            name: params[prefix + name]
            for name in ("base_lr", "step_size", "decay", "cycle_mult")
            if name in USES[kind] and prefix + name in params
        }
        if "step_size" in fields:
            step_epochs = check_positive_int(prefix + "step_size", fields["step_size"])
            if epochs is not None and step_epochs > epochs:
                raise InvalidParameterError(
                    f"{prefix}step_size of {step_epochs} epochs is longer than the run's "
                    f"{epochs} epochs"
                )
            fields["step_size"] = step_epochs * spe
        return cls(kind=kind, max_lr=params[prefix + "max_lr"], **fields)

    def to_params(self, *, steps_per_epoch: int, prefix: str = "") -> dict[str, Any]:
        """The ``trial.params`` that :meth:`from_params` turns back into this schedule.

        Handy for ``study.enqueue_trial(schedule.to_params(steps_per_epoch=...))``.

        Args:
            steps_per_epoch: Optimizer steps per epoch; ``step_size`` must be whole epochs.
            prefix: The prefix given to ``suggest_schedule``.

        Returns:
            A dict of parameter name to value.

        Raises:
            InvalidParameterError: ``step_size`` is not a whole number of epochs, or the
                schedule has a ``pct_start`` / ``final_div_factor`` the search space lacks.

        Example:
            >>> Schedule("triangular", 0.1, base_lr=0.01, step_size=40).to_params(
            ...     steps_per_epoch=20)
            {'schedule': 'triangular', 'max_lr': 0.1, 'base_lr': 0.01, 'step_size': 2}
        """
        spe = check_positive_int("steps_per_epoch", steps_per_epoch)
        for name in ("pct_start", "final_div_factor"):
            if getattr(self, name) != _DEFAULTS[name]:
                raise InvalidParameterError(
                    f"{name} is not a search parameter, so a schedule with {name}="
                    f"{getattr(self, name)!r} has no params form"
                )
        out: dict[str, Any] = {prefix + "schedule": self.kind, prefix + "max_lr": self.max_lr}
        for name in ("base_lr", "step_size", "decay", "cycle_mult"):
            if name not in USES[self.kind]:
                continue
            value = getattr(self, name)
            if name == "step_size":
                if value % spe:
                    raise InvalidParameterError(
                        f"step_size must be a whole number of epochs of {spe} steps; "
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

    # -- for people ----------------------------------------------------------------------

    def describe(self, steps_per_epoch: int | None = None) -> str:
        """The schedule in words, with periods in epochs when ``steps_per_epoch`` is given.

        Example:
            >>> Schedule("triangular2", 0.1, base_lr=0.01, step_size=200).describe(100)
            'triangular2 0.01 to 0.1, half-cycle 2 epochs, amplitude halved each cycle'
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
    # exp_range: torch scales the amplitude by gamma**t; DESIGN's d**(t / 2s) is gamma = d**(1/2s).
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
}


# -- validation helpers -------------------------------------------------------------------
