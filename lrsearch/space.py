"""The search space over schedules: :class:`LRBounds`, :func:`suggest_schedule`, literature seeds.

The space is conditional (define-by-run): a trial first picks the ``schedule`` kind, then only
the parameters that kind reads. A parameter shared by several kinds has one distribution in
every trial, so Optuna's samplers can learn across kinds (and Optuna never sees the same name
with two distributions, which it refuses).

The ranges, from the range test's ``LRBounds(low, high)``:

- ``max_lr``: log-uniform on ``[low, high]`` (the constant LR, the start of a decay, the peak
  of a cycle). Its lower end is one float above ``low`` so ``base_lr < max_lr`` always holds.
- ``base_lr``: log-uniform on ``[low / 10, low]``: Smith's cyclical base is the low bound, and
  a 1cycle start or an SGDR floor sits up to a decade under it.
- ``step_size``: integer epochs on ``[2, 10]`` (Smith 2017: a half-cycle of 2-10 epochs),
  clipped to half the run so one whole cycle fits (``[1, 1]`` for runs under 4 epochs).
- ``decay``: uniform on ``[0.1, 1]`` (per step-size, per cycle, per restart, or per plateau).
- ``cycle_mult``: ``sgdr`` only, 1 or 2 (Loshchilov & Hutter's T_mult).
- ``warmup``: integer epochs on ``[0, epochs // 5]`` (up to a fifth of the run; none for runs
  under 5 epochs), for ``cosine``, ``wsd`` and ``inverse_sqrt``.
- ``cooldown``: ``wsd`` only, uniform on ``[0.05, 0.5]`` (the fraction of the run in the final
  decay; Hägele et al. 2024 find 10-20% enough).
- ``patience``: ``plateau`` only, integer epochs on ``[0, min(10, epochs // 4)]`` (torch's
  default is 10; a quarter of the run leaves room for the LR to drop more than once).

By default a search offers every kind but ``plateau`` (:data:`lrsearch.choices.PER_STEP_KINDS`):
``plateau`` is stepped once per epoch with the validation metric, which an objective's own loop
does not do unless it is written for it; ``kinds=KINDS`` asks for it (lrsearch's own training
loop, :func:`lrsearch.training.fit`, steps it right).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from lrsearch._validation import check_positive_int, check_positive_real, check_real
from lrsearch.choices import OPTIMIZERS, PER_STEP_KINDS
from lrsearch.exceptions import InvalidParameterError
from lrsearch.schedules import KINDS, SEARCH_FIELDS, USES, Schedule

__all__ = [
    "LRBounds",
    "Setup",
    "search_space",
    "seed_params",
    "seed_peak",
    "seed_setups",
    "setup_from_params",
    "suggest_schedule",
    "suggest_setup",
]

BASE_LR_SPAN: Final = 10.0
STEP_SIZE_EPOCHS: Final = (2, 10)
DECAY_RANGE: Final = (0.1, 1.0)
CYCLE_MULTS: Final = (1, 2)
ONECYCLE_DIV: Final = 25.0  # torch's and fastai's default max_lr / start ratio
WARMUP_SHARE: Final = 5  # warm-up of at most a fifth of the run
COOLDOWN_RANGE: Final = (0.05, 0.5)
PATIENCE_EPOCHS: Final = (0, 10)
WSD_COOLDOWN: Final = 0.2  # the seed's cooldown (Hägele et al. 2024: 20% matches cosine)
COSINE_FLOOR: Final = 0.1  # the seed's floor, a tenth of the peak (nanoGPT's min_lr)
WEIGHT_DECAY_RANGE: Final = (1e-4, 0.5)  # AdamW's decoupled decay, log-uniform
SEED_WEIGHT_DECAY: Final = 0.1  # nanoGPT's, the seeds' AdamW decay
#: A study's seeds peak this many decades over the range test's suggestion (at most at
#: ``high``): ``benchmarks/range_test/peaks.py``'s fit on all 27 problems of the range-test
#: suite (each family's leave-one-out fit is 0.1 or 0.2; those are what docs/benchmarks.md scores).
SEED_PEAK_DECADES: Final = 0.2
OPTIMIZER_PARAM: Final = "optimizer"

# The order a trial suggests them in; `schedule` comes first because it decides the rest.
_PARAMS: Final = ("max_lr", *SEARCH_FIELDS)


@dataclass(frozen=True)
class LRBounds:
    """The learning-rate range a search explores, usually read off a range test.

    Args:
        low: Where the loss starts to fall.
        high: The edge before the loss bottoms out or diverges.

    Raises:
        InvalidParameterError: a bound that is not a positive finite number, or
            ``low >= high``.

    Example:
        >>> LRBounds(1e-3, 0.3).decades
        2.477...
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            object.__setattr__(self, name, check_positive_real(name, getattr(self, name)))
        if not self.low < self.high:
            raise InvalidParameterError(
                f"low must be below high={self.high!r}; got low={self.low!r}"
            )

    @property
    def decades(self) -> float:
        """How many decades the range spans: ``log10(high / low)``."""
        return math.log10(self.high / self.low)

    @classmethod
    def coerce(cls, value: LRBounds | Sequence[float]) -> LRBounds:
        """Accept an ``LRBounds`` or a ``(low, high)`` pair."""
        if isinstance(value, LRBounds):
            return value
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
            return cls(value[0], value[1])
        raise InvalidParameterError(f"bounds must be an LRBounds or (low, high); got {value!r}")


def step_size_range(epochs: int) -> tuple[int, int]:
    """The searched ``step_size`` range in epochs, for a run of ``epochs`` epochs.

    Example:
        >>> step_size_range(20), step_size_range(6), step_size_range(3)
        ((2, 10), (2, 3), (1, 1))
    """
    epochs = check_positive_int("epochs", epochs)
    lo = 1 if epochs < 2 * STEP_SIZE_EPOCHS[0] else STEP_SIZE_EPOCHS[0]
    return lo, max(lo, min(STEP_SIZE_EPOCHS[1], epochs // 2))


def warmup_range(epochs: int) -> tuple[int, int]:
    """The searched ``warmup`` range in epochs: none up to a fifth of the run.

    Example:
        >>> warmup_range(20), warmup_range(7), warmup_range(4)
        ((0, 4), (0, 1), (0, 0))
    """
    epochs = check_positive_int("epochs", epochs)
    return 0, epochs // WARMUP_SHARE


def patience_range(epochs: int) -> tuple[int, int]:
    """The searched ``patience`` range in epochs: 0 up to a quarter of the run, at most 10.

    Example:
        >>> patience_range(100), patience_range(20), patience_range(3)
        ((0, 10), (0, 5), (0, 0))
    """
    epochs = check_positive_int("epochs", epochs)
    return PATIENCE_EPOCHS[0], min(PATIENCE_EPOCHS[1], epochs // 4)


def search_space(
    bounds: LRBounds | Sequence[float],
    *,
    epochs: int,
    kinds: Sequence[str] = PER_STEP_KINDS,
    prefix: str = "",
) -> dict[str, BaseDistribution]:
    """The Optuna distribution of every parameter :func:`suggest_schedule` may suggest.

    A trial suggests ``schedule`` and then only the parameters its kind reads.

    Args:
        bounds: The LR range (an :class:`LRBounds` or ``(low, high)``).
        epochs: The run's length in epochs (it caps ``step_size``, ``warmup`` and
            ``patience``).
        kinds: The schedule kinds to choose among, a non-empty subset of :data:`KINDS`
            (default: all but ``plateau``, see the module's notes).
        prefix: Prepended to every parameter name.

    Returns:
        Parameter name to distribution, in the order a trial suggests them.

    Example:
        >>> sorted(search_space((1e-3, 1.0), epochs=20, kinds=["constant"]))
        ['max_lr', 'schedule']
    """
    bounds = LRBounds.coerce(bounds)
    kinds = _check_kinds(kinds)
    used = set().union(*(USES[k] for k in kinds)) | {"max_lr"}
    lo_step, hi_step = step_size_range(epochs)
    every: dict[str, BaseDistribution] = {
        "max_lr": FloatDistribution(math.nextafter(bounds.low, math.inf), bounds.high, log=True),
        "base_lr": FloatDistribution(bounds.low / BASE_LR_SPAN, bounds.low, log=True),
        "step_size": IntDistribution(lo_step, hi_step),
        "decay": FloatDistribution(*DECAY_RANGE),
        "cycle_mult": IntDistribution(*CYCLE_MULTS),
        "warmup": IntDistribution(*warmup_range(epochs)),
        "cooldown": FloatDistribution(*COOLDOWN_RANGE),
        "patience": IntDistribution(*patience_range(epochs)),
    }
    space: dict[str, BaseDistribution] = {prefix + "schedule": CategoricalDistribution(kinds)}
    space.update({prefix + name: every[name] for name in _PARAMS if name in used})
    return space


def suggest_schedule(
    trial: optuna.trial.BaseTrial,
    *,
    bounds: LRBounds | Sequence[float],
    steps_per_epoch: int,
    epochs: int,
    kinds: Sequence[str] = PER_STEP_KINDS,
    prefix: str = "",
) -> Schedule:
    """Suggest a learning-rate schedule in an Optuna trial.

    Suggests ``schedule`` (the kind), then only what that kind reads among ``max_lr``,
    ``base_lr``, ``step_size`` (in epochs), ``decay``, ``cycle_mult``, ``warmup`` (in
    epochs), ``cooldown`` and ``patience`` (in epochs); see :func:`search_space` for the
    ranges. ``base_lr < max_lr`` always holds.

    Args:
        trial: An Optuna trial (or ``FixedTrial``).
        bounds: The LR range, usually ``range_test(...).bounds``.
        steps_per_epoch: Optimizer steps per epoch, to turn ``step_size`` into steps.
        epochs: The run's length in epochs.
        kinds: The kinds to choose among (default: every kind stepped once per optimizer
            step, all of :data:`KINDS` but ``plateau``; pass ``kinds=KINDS`` for it too, and
            step a ``plateau`` scheduler once per epoch with the validation metric). Keep it
            the same for every trial of a study.
        prefix: Prepended to every parameter name, for several schedules in one objective
            or to stay clear of the objective's own parameter names.

    Returns:
        The :class:`Schedule`; ``Schedule.from_params(trial.params, steps_per_epoch=...)``
        gives it back.

    Raises:
        InvalidParameterError: bad bounds, kinds, ``steps_per_epoch`` or ``epochs``.

    Example:
        >>> trial = optuna.trial.FixedTrial({"schedule": "constant", "max_lr": 0.05})
        >>> suggest_schedule(trial, bounds=(1e-3, 1.0), steps_per_epoch=10, epochs=5)
        Schedule(kind='constant', max_lr=0.05, base_lr=None, step_size=None, decay=None, cycle_mult=1, pct_start=0.3, final_div_factor=10000.0, warmup=0, cooldown=None, patience=None)
    """  # noqa: E501
    spe = check_positive_int("steps_per_epoch", steps_per_epoch)
    space = search_space(bounds, epochs=epochs, kinds=kinds, prefix=prefix)
    kind = _suggest(trial, prefix + "schedule", space[prefix + "schedule"])
    params: dict[str, Any] = {prefix + "schedule": kind}
    for name in _PARAMS:
        if name == "max_lr" or name in USES[kind]:
            params[prefix + name] = _suggest(trial, prefix + name, space[prefix + name])
    return Schedule.from_params(params, steps_per_epoch=spe, epochs=epochs, prefix=prefix)


def seed_params(
    bounds: LRBounds | Sequence[float],
    *,
    steps_per_epoch: int,
    epochs: int,
    kinds: Sequence[str] = KINDS,
    prefix: str = "",
    peak: float | None = None,
    onecycle_peak: float | None = None,
    constant: float | None = None,
) -> list[dict[str, Any]]:
    """Known-good schedules from the literature, as params for ``study.enqueue_trial``.

    Smith's CLR takes its top from the range test's upper bound, as Smith defines it; 1cycle
    peaks at ``onecycle_peak`` and the other three at ``peak`` (each kept inside the ``max_lr``
    range; default ``high``, the top of the range, as Smith's 1cycle does): a study passes
    :func:`seed_peak` of its range test, and its steepest point for 1cycle, which lie lower
    (``benchmarks/range_test/peaks.py``, ``--kind onecycle``).

    - Smith's CLR (2017): ``triangular2`` from ``low`` to ``high``, a half-cycle of
      2-10 epochs chosen so the run ends after whole cycles (two or more if they fit).
    - Smith's 1cycle (2018): ``onecycle`` peaking at ``onecycle_peak``, starting 25 times
      lower (kept within the ``base_lr`` range).
    - SGDR (Loshchilov & Hutter 2017): ``sgdr`` from the peak to a floor a decade under
      ``low``, equal cycles that end with the run.
    - Warm-up and cosine (nanoGPT, HuggingFace's ``get_cosine_schedule_with_warmup``):
      ``cosine`` from the peak down to a tenth of it (kept within the ``base_lr`` range, so
      at most ``low``), after a warm-up of one epoch (none for runs under 5 epochs, whose
      ``warmup`` range is 0).
    - Warmup-stable-decay (Hägele et al. 2024): ``wsd`` at the peak with a 20% 1-sqrt
      cooldown to the lowest floor of the space (a decade under ``low``; they cool to 0),
      after the same warm-up.

    Only those whose kind is in ``kinds`` are returned; every value lies inside
    :func:`search_space`, so Optuna takes them as they are.

    Args:
        bounds: The LR range.
        steps_per_epoch: Optimizer steps per epoch.
        epochs: The run's length in epochs.
        kinds: The kinds the study searches.
        prefix: As for :func:`suggest_schedule`.
        peak: SGDR's, cosine's and WSD's peak LR (``None``: ``high``); clipped into the
            ``max_lr`` range.
        onecycle_peak: 1cycle's peak LR (``None``: ``high``); clipped likewise.
        constant: A constant LR known to be good (a study passes its CV-chosen one): one more
            seed, last, ``constant`` at that LR, clipped likewise (``None``: no such seed).

    Returns:
        A list of params dicts.

    Example:
        >>> seed_params((1e-3, 0.1), steps_per_epoch=50, epochs=20, kinds=["triangular2"])
        [{'schedule': 'triangular2', 'max_lr': 0.1, 'base_lr': 0.001, 'step_size': 5}]
        >>> seed_params((1e-3, 0.1), steps_per_epoch=50, epochs=20, kinds=["wsd"], peak=0.02)
        [{'schedule': 'wsd', 'max_lr': 0.02, 'base_lr': 0.0001, 'warmup': 1, 'cooldown': 0.2}]
    """
    spe = check_positive_int("steps_per_epoch", steps_per_epoch)
    space = _SeedSpace.of(bounds, epochs=epochs)
    seeds = _literature_seeds(
        space,
        epochs=epochs,
        steps_per_epoch=spe,
        peak=space.clip("peak", peak),
        onecycle_peak=space.clip("onecycle_peak", onecycle_peak),
    )
    if constant is not None:
        seeds.append(Schedule("constant", max_lr=space.clip("constant", constant)))
    wanted = _check_kinds(kinds)
    return [s.to_params(steps_per_epoch=spe, prefix=prefix) for s in seeds if s.kind in wanted]


@dataclass(frozen=True)
class _SeedSpace:
    """The parts of :func:`search_space` the literature's seeds are placed in."""

    base: FloatDistribution  # base_lr
    top: FloatDistribution  # max_lr
    step_range: range  # step_size, in epochs
    warmup_epochs: int  # the longest warmup, in epochs

    @classmethod
    def of(cls, bounds: LRBounds | Sequence[float], *, epochs: int) -> _SeedSpace:
        space = search_space(bounds, epochs=epochs, kinds=KINDS)
        base, top = space["base_lr"], space["max_lr"]
        steps, warmup = space["step_size"], space["warmup"]
        assert isinstance(base, FloatDistribution) and isinstance(top, FloatDistribution)
        assert isinstance(steps, IntDistribution) and isinstance(warmup, IntDistribution)
        return cls(base, top, range(steps.low, steps.high + 1), warmup.high)

    def clip(self, name: str, value: float | None) -> float:
        """``value`` (a positive LR named ``name``) clipped into the ``max_lr`` range; ``None``
        is its top."""
        if value is None:
            return self.top.high
        return min(max(check_positive_real(name, value), self.top.low), self.top.high)

    def clip_base(self, value: float) -> float:
        """``value`` clipped into the ``base_lr`` range."""
        return min(max(value, self.base.low), self.base.high)


def _literature_seeds(
    space: _SeedSpace, *, epochs: int, steps_per_epoch: int, peak: float, onecycle_peak: float
) -> list[Schedule]:
    """The five recipes :func:`seed_params` lists, in its order, inside ``space``."""
    spe = steps_per_epoch
    warmup_steps = min(1, space.warmup_epochs) * spe
    return [
        Schedule(
            "triangular2",
            max_lr=space.top.high,
            base_lr=space.base.high,
            step_size=_whole_cycles(epochs, space.step_range, epochs_per_cycle=2) * spe,
        ),
        Schedule(
            "onecycle",
            max_lr=onecycle_peak,
            base_lr=space.clip_base(onecycle_peak / ONECYCLE_DIV),
        ),
        Schedule(
            "sgdr",
            max_lr=peak,
            base_lr=space.base.low,
            step_size=_whole_cycles(epochs, space.step_range, epochs_per_cycle=1) * spe,
            decay=1.0,
        ),
        Schedule(
            "cosine",
            max_lr=peak,
            base_lr=space.clip_base(peak * COSINE_FLOOR),
            warmup=warmup_steps,
        ),
        Schedule(
            "wsd",
            max_lr=peak,
            base_lr=space.base.low,
            warmup=warmup_steps,
            cooldown=WSD_COOLDOWN,
        ),
    ]


def seed_peak(suggestion: float, high: float, *, decades: float = SEED_PEAK_DECADES) -> float:
    """Where a study's seeds peak: ``decades`` over the range test's ``suggestion`` (the best
    constant LR it reads for the run's length), never above ``high``.

    ``high`` is the last LR at which one step of a 100-step sweep still helped; a whole run's
    warm-up + cosine does best below it on 23 of the range-test suite's 27 problems (a median
    factor of 2.5 with SGD, 11 with Adam or AdamW), so seeds at ``high`` can spend the first
    trials where nothing learns.

    Example:
        >>> round(seed_peak(1e-3, 0.3), 6), seed_peak(0.25, 0.3)
        (0.001585, 0.3)
    """
    lr = check_positive_real("suggestion", suggestion)
    return min(check_positive_real("high", high), lr * 10 ** check_real("decades", decades))


def _whole_cycles(epochs: int, step_range: range, *, epochs_per_cycle: int) -> int:
    """The largest step size whose cycles (of ``epochs_per_cycle * step`` epochs) end with the
    run, preferring two or more cycles; the largest in range if none ends with it."""
    fits = [s for s in step_range if epochs % (epochs_per_cycle * s) == 0]
    several = [s for s in fits if epochs // (epochs_per_cycle * s) >= 2]
    return max(several or fits or step_range)


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
        raise InvalidParameterError(
            f"kinds must be a non-empty sequence of schedule kinds; got {kinds!r}"
        )
    _refuse_unknown("kinds", kinds, KINDS)
    if len(set(kinds)) != len(kinds):
        raise InvalidParameterError(f"kinds must not repeat a kind; got {list(kinds)!r}")
    return tuple(kinds)


def _suggest(trial: optuna.trial.BaseTrial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


@dataclass(frozen=True)
class Setup:
    """What a search trial trains with: an optimizer of the study's ``optimizers``
    (:data:`lrsearch.choices.OPTIMIZERS`), AdamW's ``weight_decay`` and the schedule.

    Example:
        >>> Setup("adamw", Schedule("constant", max_lr=1e-3), weight_decay=0.1).describe()
        'adamw (weight decay 0.1): constant 0.001'
    """

    optimizer: str
    schedule: Schedule
    weight_decay: float | None = None

    def describe(self, steps_per_epoch: int | None = None) -> str:
        """The optimizer and the schedule in words."""
        what = self.schedule.describe(steps_per_epoch)
        if self.optimizer == "task":
            return what
        decay = "" if self.weight_decay is None else f" (weight decay {self.weight_decay:.3g})"
        return f"{self.optimizer}{decay}: {what}"


def optimizer_prefix(optimizers: Sequence[str], name: str) -> str:
    """The prefix of optimizer ``name``'s parameters: none when the study searches one
    optimizer, else ``"NAME:"`` (each optimizer's LRs have their own names and ranges, so the
    space stays fixed per name and every sampler can learn it).

    Example:
        >>> optimizer_prefix(["task"], "task"), optimizer_prefix(["sgd", "adamw"], "adamw")
        ('', 'adamw:')
    """
    return "" if len(optimizers) == 1 else f"{name}:"


def suggest_setup(
    trial: optuna.trial.BaseTrial,
    *,
    bounds: Mapping[str, LRBounds | Sequence[float]],
    steps_per_epoch: int,
    epochs: int,
    kinds: Sequence[str] = PER_STEP_KINDS,
) -> Setup:
    """Suggest an optimizer (categorical ``optimizer``, only when ``bounds`` names several),
    its schedule over its own LR bounds (:func:`suggest_schedule` with
    :func:`optimizer_prefix`), and for ``adamw`` its ``weight_decay`` (log-uniform on
    ``[1e-4, 0.5]``).

    Args:
        trial: An Optuna trial (or ``FixedTrial``).
        bounds: Each searched optimizer's LR range (its range test's bounds), in order.
        steps_per_epoch: Optimizer steps per epoch.
        epochs: The run's length in epochs.
        kinds: The schedule kinds to choose among.

    Returns:
        The :class:`Setup`; :func:`setup_from_params` gives it back from ``trial.params``.

    Example:
        >>> trial = optuna.trial.FixedTrial({"optimizer": "sgd", "sgd:schedule": "constant",
        ...                                  "sgd:max_lr": 0.05})
        >>> suggest_setup(trial, bounds={"sgd": (1e-3, 1.0), "adamw": (1e-5, 1e-2)},
        ...               steps_per_epoch=10, epochs=5).describe()
        'sgd: constant 0.05'
    """
    optimizers = _check_optimizers(bounds)
    name = (
        optimizers[0]
        if len(optimizers) == 1
        else trial.suggest_categorical(OPTIMIZER_PARAM, optimizers)
    )
    prefix = optimizer_prefix(optimizers, str(name))
    schedule = suggest_schedule(
        trial,
        bounds=bounds[name],
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        kinds=kinds,
        prefix=prefix,
    )
    decay = None
    if name == "adamw":
        decay = trial.suggest_float(prefix + "weight_decay", *WEIGHT_DECAY_RANGE, log=True)
    return Setup(str(name), schedule, decay)


def setup_from_params(
    params: Mapping[str, Any], *, optimizers: Sequence[str], steps_per_epoch: int, epochs: int
) -> Setup:
    """The :class:`Setup` a search trial's ``params`` describe (see :func:`suggest_setup`).

    Example:
        >>> setup_from_params({"schedule": "constant", "max_lr": 0.1}, optimizers=["task"],
        ...                   steps_per_epoch=10, epochs=5).optimizer
        'task'
    """
    optimizers = tuple(optimizers)
    name = optimizers[0] if len(optimizers) == 1 else params.get(OPTIMIZER_PARAM)
    if name not in optimizers:
        raise InvalidParameterError(
            f"params name optimizer {name!r}, not one of the study's {list(optimizers)}"
        )
    prefix = optimizer_prefix(optimizers, str(name))
    schedule = Schedule.from_params(
        dict(params), steps_per_epoch=steps_per_epoch, epochs=epochs, prefix=prefix
    )
    decay = params.get(prefix + "weight_decay") if name == "adamw" else None
    return Setup(str(name), schedule, None if decay is None else float(decay))


def seed_setups(
    bounds: Mapping[str, LRBounds | Sequence[float]],
    *,
    steps_per_epoch: int,
    epochs: int,
    kinds: Sequence[str] = KINDS,
    peaks: Mapping[str, float] | None = None,
    onecycle_peaks: Mapping[str, float] | None = None,
    constant_lr: float | None = None,
) -> list[dict[str, Any]]:
    """:func:`seed_params` for every searched optimizer over its own bounds (peaking at its
    ``peaks`` entry, 1cycle at its ``onecycle_peaks`` entry, each default its ``high``), taking
    turns
    (each optimizer's first recipe, then each one's second, ...) so that a budget shorter than
    all of them still tries every optimizer; AdamW's seeds decay weights by 0.1 (nanoGPT).
    ``constant_lr`` adds a ``constant`` seed for the first optimizer (the one the study's
    constant-LR arm runs), after all the others.

    Example:
        >>> [p["optimizer"] for p in seed_setups({"sgd": (1e-3, 1.0), "adamw": (1e-5, 1e-2)},
        ...  steps_per_epoch=10, epochs=20, kinds=["cosine", "wsd"])]
        ['sgd', 'adamw', 'sgd', 'adamw']
    """
    optimizers = _check_optimizers(bounds)
    per: list[list[dict[str, Any]]] = []
    for name in optimizers:
        prefix = optimizer_prefix(optimizers, name)
        seeds = seed_params(
            bounds[name],
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
            kinds=kinds,
            prefix=prefix,
            peak=None if peaks is None else peaks.get(name),
            onecycle_peak=None if onecycle_peaks is None else onecycle_peaks.get(name),
            constant=constant_lr if name == optimizers[0] else None,
        )
        for params in seeds:
            if len(optimizers) > 1:
                params[OPTIMIZER_PARAM] = name
            if name == "adamw":
                params[prefix + "weight_decay"] = SEED_WEIGHT_DECAY
        per.append(seeds)
    return [p for turn in itertools.zip_longest(*per) for p in turn if p is not None]


def _check_optimizers(bounds: Mapping[str, Any]) -> tuple[str, ...]:
    if not isinstance(bounds, Mapping) or not bounds:
        raise InvalidParameterError(
            f"bounds must map each searched optimizer to its LR range; got {bounds!r}"
        )
    _refuse_unknown("optimizers", list(bounds), OPTIMIZERS)
    return tuple(bounds)


def _refuse_unknown(what: str, names: Sequence[str], allowed: Sequence[str]) -> None:
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise InvalidParameterError(
            f"{what} must be among {', '.join(allowed)}; "
            f"got unknown {', '.join(map(repr, unknown))}"
        )
