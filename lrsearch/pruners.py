"""Pruning a schedule search: judge a trial in its schedule's own terms.

An Optuna pruner compares trials at the same epoch. Schedules are not in the same phase at the
same epoch: a cyclical schedule mid-cycle sits at its highest learning rate and scores far below
what it scores when the cycle ends, and a schedule still warming up (``warmup``, 1cycle's rise to
its peak) has barely started. :class:`ScheduleAwarePruner` wraps any Optuna pruner and asks it
about a trial only once the trial's schedule has come through its own start
(:func:`first_judged_epoch`), and never after the run's last epoch (the run is done: pruning
it would discard a finished result and save nothing).

A trial whose params are not lrsearch's schedule params (an objective of a user's own) is
judged from the first epoch, as the wrapped pruner would judge it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial

from lrsearch._validation import check_non_negative_int, check_positive_int
from lrsearch.choices import CYCLICAL_KINDS
from lrsearch.exceptions import InvalidParameterError
from lrsearch.schedules import Schedule, compressed_epochs
from lrsearch.space import setup_from_params

__all__ = ["ScheduleAwarePruner", "first_judged_epoch"]


def first_judged_epoch(schedule: Schedule, *, steps_per_epoch: int, epochs: int) -> int:
    """The first epoch after which a trial training with ``schedule`` may be pruned.

    - kinds that restart (:data:`~lrsearch.choices.CYCLICAL_KINDS`): the end of the first
      cycle (:meth:`~lrsearch.Schedule.cycle_ends`: two half-cycles, or ``sgdr``'s first
      restart cycle), the run's end when no cycle ends within it;
    - ``onecycle``: the peak (``pct_start`` of the run), where its warm-up ends;
    - any kind with a ``warmup``: its end;
    - else the first epoch.

    Args:
        schedule: The trial's schedule (``step_size`` and ``warmup`` in optimizer steps).
        steps_per_epoch: Optimizer steps per epoch.
        epochs: The run's length in epochs.

    Returns:
        An epoch in ``[1, epochs]``.

    Example:
        >>> tri = Schedule("triangular", max_lr=0.1, base_lr=0.01, step_size=30)
        >>> first_judged_epoch(tri, steps_per_epoch=10, epochs=20)
        6
        >>> first_judged_epoch(Schedule("constant", max_lr=0.1), steps_per_epoch=10, epochs=20)
        1
    """
    spe = check_positive_int("steps_per_epoch", steps_per_epoch)
    epochs = check_positive_int("epochs", epochs)
    steps = schedule.warmup
    if schedule.kind in CYCLICAL_KINDS:
        ends = schedule.cycle_ends(spe * epochs)
        steps = max(steps, ends[0] if ends else spe * epochs)
    elif schedule.kind == "onecycle":
        steps = max(steps, math.ceil(schedule.pct_start * spe * epochs))
    return min(epochs, max(1, math.ceil(steps / spe)))


class ScheduleAwarePruner(BasePruner):
    """Wrap an Optuna pruner so that a trial is judged only after its schedule's own start.

    ``pruner.prune`` is asked only from :func:`first_judged_epoch` of the trial's schedule
    (rebuilt from its params) and ``warmup_epochs`` on, and never after the last epoch.
    Wrapping successive halving this way, a trial that reaches a rung while still in its
    first cycle is compared at that rung when its cycle ends (Optuna's halving records the
    value a trial has when it is first asked past the rung).

    Args:
        pruner: The pruner that decides (``optuna.pruners.*``).
        epochs: The run's length in epochs (steps are epochs, as reported by
            :func:`lrsearch.training.fit`).
        steps_per_epoch: Optimizer steps per epoch of the trials' training.
        optimizers: The study's searched optimizers (they prefix the params; see
            :func:`lrsearch.space.suggest_setup`).
        warmup_epochs: Epochs before any trial may be pruned, whatever its schedule (of the
            trials' training, compressed or not).
        fidelity: The share of the run the trials train, their schedules compressed to fit
            (:meth:`~lrsearch.Schedule.compressed`): a schedule's start is judged at the same
            share of the shorter run.

    Raises:
        InvalidParameterError: A bad number, or ``pruner`` is not an Optuna pruner.

    Example:
        >>> from lrsearch.space import search_space
        >>> pruner = ScheduleAwarePruner(optuna.pruners.SuccessiveHalvingPruner(), epochs=20,
        ...                              steps_per_epoch=10)
        >>> params = {"schedule": "triangular", "max_lr": 0.1, "base_lr": 0.001, "step_size": 3}
        >>> space = search_space((0.001, 1.0), epochs=20)
        >>> trial = optuna.trial.create_trial(
        ...     params=params, distributions={k: space[k] for k in params}, value=0.9)
        >>> pruner.judged_from(trial)  # a half-cycle of 3 epochs: the first cycle ends at 6
        6
    """

    def __init__(
        self,
        pruner: BasePruner,
        *,
        epochs: int,
        steps_per_epoch: int,
        optimizers: Sequence[str] = ("task",),
        warmup_epochs: int = 0,
        fidelity: float = 1.0,
    ) -> None:
        if not isinstance(pruner, BasePruner):
            raise InvalidParameterError(f"pruner must be an Optuna pruner; got {pruner!r}")
        self._pruner = pruner
        self._epochs = check_positive_int("epochs", epochs)
        self._spe = check_positive_int("steps_per_epoch", steps_per_epoch)
        self._optimizers = tuple(optimizers)
        self._warmup = check_non_negative_int("warmup_epochs", warmup_epochs)
        self._trained = compressed_epochs(self._epochs, fidelity)

    @property
    def wrapped(self) -> BasePruner:
        """The pruner that decides."""
        return self._pruner

    def judged_from(self, trial: FrozenTrial) -> int:
        """The first epoch after which ``trial`` may be pruned (``warmup_epochs`` included)."""
        try:
            setup = setup_from_params(
                trial.params,
                optimizers=self._optimizers,
                steps_per_epoch=self._spe,
                epochs=self._epochs,
            )
        except (InvalidParameterError, KeyError, TypeError, ValueError):
            own = 1  # not (yet) a schedule of lrsearch's space
        else:
            own = first_judged_epoch(
                setup.schedule, steps_per_epoch=self._spe, epochs=self._epochs
            )
            own = max(1, math.ceil(own * self._trained / self._epochs))
        return max(own, self._warmup)

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        """Whether to prune ``trial`` now (see the class)."""
        step = trial.last_step
        if step is None or step >= self._trained or step < self.judged_from(trial):
            return False
        return self._pruner.prune(study, trial)
