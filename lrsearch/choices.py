"""The closed sets of names (and the limits) a study config is checked against.

Torch-free on purpose: reading and validating ``studies/NAME.toml`` imports this module and
nothing heavier. The modules that own each concept import their names from here
(:mod:`lrsearch.schedules` its kinds, :mod:`lrsearch.training` its devices, the range test its
shortest sweep), so there is one list of each.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ARMS",
    "ARM_ORDER",
    "CYCLICAL_KINDS",
    "DEVICES",
    "KINDS",
    "MIN_ITER",
    "OPTIMIZERS",
    "PER_EPOCH_KINDS",
    "PER_STEP_KINDS",
    "PRUNERS",
    "REDO_FACTOR",
    "REDO_SWEEPS",
    "SAMPLERS",
    "SNAPSHOT_ARM",
]

#: Schedule kinds (see :class:`lrsearch.Schedule`).
KINDS: Final[tuple[str, ...]] = (
    "constant",
    "step",
    "exponential",
    "triangular",
    "triangular2",
    "exp_range",
    "sgdr",
    "onecycle",
    "cosine",
    "wsd",
    "inverse_sqrt",
    "plateau",
)

#: Kinds that restart: their learning rate comes back down at the end of every cycle, so each
#: cycle ends near a different minimum (:meth:`lrsearch.Schedule.cycle_ends`; snapshot ensembles).
CYCLICAL_KINDS: Final[tuple[str, ...]] = ("triangular", "triangular2", "exp_range", "sgdr")

#: Kinds whose scheduler is stepped once per epoch with the validation metric
#: (``scheduler.step(value)``), not once per optimizer step.
PER_EPOCH_KINDS: Final[tuple[str, ...]] = ("plateau",)

#: Kinds whose scheduler is stepped once per optimizer step (``scheduler.step()``): all the
#: others. What :func:`lrsearch.suggest_schedule` offers unless told otherwise, because an
#: objective's own loop steps its scheduler that way.
PER_STEP_KINDS: Final[tuple[str, ...]] = tuple(k for k in KINDS if k not in PER_EPOCH_KINDS)

#: Where training runs: ``auto`` is CUDA when torch sees a device, else the CPU.
DEVICES: Final[tuple[str, ...]] = ("auto", "cpu", "cuda")

#: Optuna samplers a study can use.
SAMPLERS: Final[tuple[str, ...]] = ("tpe", "random")

#: Optuna pruners a study can use.
PRUNERS: Final[tuple[str, ...]] = ("halving", "median", "hyperband", "none")

#: The shortest range-test sweep (optimizer steps) whose curve can be read.
MIN_ITER: Final = 5

#: A doubtful range test is redone with this many sweeps, each this many times as long
#: (:mod:`lrsearch.pipeline.range_test`; here so the budget planner can count them).
REDO_SWEEPS: Final = 3
REDO_FACTOR: Final = 4

#: The arms of the final comparison, in the order tables list them (``tuned`` first).
ARMS: Final[tuple[str, ...]] = (
    "tuned",
    "constant-cv",
    "adam-3e-4",
    "prodigy",
    "schedule-free-adamw",
)

#: The tuned runs' own snapshot ensemble: an arm of the comparison without training of its own
#: (no units; not in :data:`ARMS`), there when the tuned schedule has two cycles or more.
SNAPSHOT_ARM: Final = "tuned-snapshots"

#: The order tables and figures list the arms in: ``tuned``, its snapshot ensemble, the rest.
ARM_ORDER: Final[tuple[str, ...]] = (ARMS[0], SNAPSHOT_ARM, *ARMS[1:])

#: Optimizers a search may choose among (see :mod:`lrsearch.optimizers`): ``task`` is the
#: task's own; ``sgd`` (momentum 0.9), ``nesterov`` (the same with Nesterov momentum),
#: ``adamw`` (torch's AdamW; its ``weight_decay`` is searched too).
OPTIMIZERS: Final[tuple[str, ...]] = ("task", "sgd", "nesterov", "adamw")
