"""Planning a study to a budget: the tuning stages sized to spend at most ``budget`` full runs.

A full run is one final-comparison run: the task's epochs over all of ``train``
(:mod:`lrsearch.pipeline.cost`). :func:`plan` is a pure function of the config and the task's
sizes (no storage, no clock, no random numbers), so every worker, and a resumed run, plans the
same. Each stage's cost is an **upper bound**, from sizes alone:

- the range test: every sweep of each searched optimizer in full, and the redo a doubtful
  reading gets (``range_test.redo`` sweeps ``REDO_FACTOR`` times as long), whether or not it
  comes;
- a search trial: its whole length on the search-train split (a pruned one trains less), at
  the planned ``fidelity``: :data:`FIDELITY` of the run, its schedule compressed to fit
  (:meth:`~lrsearch.Schedule.compressed`), unless ``fidelity`` is set; compressed trials run
  to their end (no pruner, unless ``pruner`` is set): the reading measured is the complete
  compressed schedule, and a trial stopped early would leave its share of the budget unspent;
- the constant-LR CV: the grid's points and every point healing may add (one per decade a side
  of the bounds can grow, :data:`~lrsearch.pipeline.bounds.CAP_DECADES` each side), each
  trained on every fold's rest of ``train``;
- the finalists: each trained on every fold's rest (none with one finalist).

How the budget is spent:

0. the range test keeps its sweeps; its redo keeps the most sweeps (``range_test.redo``, 3 by
   default, down to none) whose worst case leaves the test at most :data:`RANGE_SHARE` of the
   budget, so a small budget on short runs still has room to search (a doubtful reading
   without a redo searches the optimizer's plausible span, with a warning), unless
   ``range_test.redo`` is set;
1. the CV takes the richest rung of :data:`CV_LADDER` that costs at most :data:`CV_SHARE` of
   the rest; when even the cheapest does not fit, the ``constant-cv`` arm is dropped, unless
   ``arms``, ``cv_folds`` or ``cv_grid`` was set (then the cheapest rung is kept);
2. the finalists: the most (5 down to 2) that cost at most :data:`FINALIST_SHARE` (with
   compressed trials, :data:`PROMOTION_SHARE`: the finalists are the full-length check of a
   cheaper ranking, a rung of successive halving), else 1 (the
   best search trial as it is, no CV);
3. the search trials take everything left, at least one (the literature's seeds are trials).

A key set (in the file beside ``budget``, or as an override with it) is kept and the others are
planned around it; if the keys set cannot fit, or the budget cannot hold the range test and
one trial, :func:`plan` raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Final

from lrsearch.choices import REDO_FACTOR, REDO_SWEEPS
from lrsearch.config import StudyConfig
from lrsearch.exceptions import InvalidParameterError
from lrsearch.pipeline.bounds import CAP_DECADES, EXTEND_DECADES
from lrsearch.pipeline.cost import search_epoch_steps
from lrsearch.schedules import compressed_epochs
from lrsearch.store import ATTR_CONFIG, ATTR_TASK
from lrsearch.tasks import steps_per_epoch

__all__ = [
    "CV_LADDER",
    "CV_SHARE",
    "EXTRA_POINTS",
    "FIDELITY",
    "FINALIST_SHARE",
    "PROMOTION_SHARE",
    "RANGE_SHARE",
    "BudgetPlan",
    "Sizes",
    "plan",
    "stored_plan",
]

#: The CV's (folds, grid points), richest first: the defaults, then cheaper.
CV_LADDER: Final = ((5, 8), (4, 6), (3, 5), (3, 4), (2, 4), (2, 3), (2, 2))
#: The most of the budget the range test may take, its redo counted in full (fewer redo
#: sweeps, down to none, until it fits).
RANGE_SHARE: Final = 0.5
#: The most of the budget (after the range test) the CV, and the finalists, may take.
CV_SHARE: Final = 0.5
FINALIST_SHARE: Final = 0.15
PROMOTION_SHARE: Final = 1 / 3
#: The share of the run a budget's search trials train, compressed: the cheapest reading that
#: ranked complete schedules as the full run does on the built-in tasks (``docs/benchmarks.md``,
#: "Fidelities that respect schedules").
FIDELITY: Final = 1 / 3
#: Points healing may add to the CV grid: one per extension, on both sides.
EXTRA_POINTS: Final = 2 * math.ceil(CAP_DECADES / EXTEND_DECADES)

_CV_KEYS: Final = ("arms", "cv_folds", "cv_grid")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What costs are computed from: the task's ``train`` size, batch size and epochs."""

    n_train: int
    batch_size: int
    epochs: int

    @property
    def run_steps(self) -> int:
        """Optimizer steps of one full run."""
        return self.epochs * steps_per_epoch(self.n_train, self.batch_size)

    def runs(self, steps: float) -> float:
        """``steps`` in full runs."""
        return steps / self.run_steps


def trial_runs(cfg: StudyConfig, sizes: Sizes) -> float:
    """A search trial's cost at most, in full runs: its epochs at ``cfg.fidelity`` on the
    search-train split."""
    spe = search_epoch_steps(sizes.n_train, sizes.batch_size, cfg.validation_fraction)
    return sizes.runs(compressed_epochs(sizes.epochs, cfg.fidelity) * spe)


def range_test_runs(cfg: StudyConfig, sizes: Sizes) -> float:
    """The range test's cost at most: each optimizer's sweeps and a redo, in full runs."""
    sweeps = cfg.range_num_iter * (cfg.range_repeats + cfg.range_redo * REDO_FACTOR)
    return sizes.runs(len(cfg.optimizers) * sweeps)


def cv_point_runs(folds: int, sizes: Sizes) -> float:
    """One LR (or finalist) scored by ``folds``-fold CV, at most: every fold's rest of
    ``train`` (the smallest fold, ``n_train // folds``, leaves the most), in full runs."""
    rest = sizes.n_train - sizes.n_train // folds
    return sizes.runs(folds * sizes.epochs * steps_per_epoch(rest, sizes.batch_size))


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    """What :func:`plan` chose, and each tuning stage's cost at most, in full runs.

    Example:
        >>> cfg = StudyConfig(name="demo", task="digits", budget=20.0)
        >>> p = plan(cfg, Sizes(n_train=1347, batch_size=32, epochs=20))
        >>> p.n_trials, p.trial_epochs, p.cv_grid, p.cv_folds, p.finalists, p.total <= 20
        (15, 7, 3, 2, 5, True)
    """

    budget: float
    n_trials: int
    pruner: str
    fidelity: float
    trial_epochs: int
    epochs: int
    cv_grid: int
    cv_folds: int
    finalists: int
    arms: tuple[str, ...]
    range_redo: int
    range_test: float
    search: float
    constant_cv: float
    finalist_cv: float

    @property
    def total(self) -> float:
        """The tuning's cost at most, in full runs."""
        return self.range_test + self.search + self.constant_cv + self.finalist_cv

    def apply(self, cfg: StudyConfig) -> StudyConfig:
        """``cfg`` with the planned keys (the keys it set stay as they are)."""
        return dataclasses.replace(
            cfg,
            n_trials=self.n_trials,
            pruner=self.pruner,
            fidelity=self.fidelity,
            cv_grid=self.cv_grid,
            cv_folds=self.cv_folds,
            finalists=self.finalists,
            arms=self.arms,
            range_redo=self.range_redo,
        )

    def describe(self) -> str:
        """The plan in one line."""
        cv = (
            f"a CV grid of {self.cv_grid} points over {self.cv_folds} folds"
            if "constant-cv" in self.arms
            else "no constant-cv arm"
        )
        finalists = "no finalists" if self.finalists == 1 else f"{self.finalists} finalists"
        trials = f"{self.n_trials} trial{'s' if self.n_trials > 1 else ''}"
        if self.trial_epochs < self.epochs:
            trials += f" compressed to {self.trial_epochs} of {self.epochs} epochs"
        if self.range_redo < REDO_SWEEPS:
            redo = "no" if self.range_redo == 0 else f"a {self.range_redo}-sweep"
            trials = f"{redo} range-test redo, {trials}"
        return (
            f"budget {self.budget:g} runs: {trials}, {cv}, {finalists} "
            f"(at most {self.total:.1f} runs)"
        )


def plan(cfg: StudyConfig, sizes: Sizes) -> BudgetPlan:
    """Size the tuning stages of ``cfg`` to spend at most ``cfg.budget`` full runs (the
    module's docs say how); a pure function of its arguments.

    Args:
        cfg: The config; its :attr:`~lrsearch.config.StudyConfig.given` keys are kept.
        sizes: The task's ``train`` size, batch size and epochs.

    Returns:
        The :class:`BudgetPlan` (:meth:`BudgetPlan.apply` gives the planned config).

    Raises:
        InvalidParameterError: ``cfg`` has no budget, the budget cannot hold the range test and
            one search trial, or the keys set cost more than it.

    Example:
        >>> cfg = StudyConfig(name="demo", task="digits", budget=5.0)
        >>> plan(cfg, Sizes(n_train=1347, batch_size=32, epochs=20)).describe()
        'budget 5 runs: 12 trials compressed to 7 of 20 epochs, no constant-cv arm, no finalists (at most 4.8 runs)'
    """  # noqa: E501
    if cfg.budget is None:
        raise InvalidParameterError("budget: not set; nothing to plan")
    budget, given = float(cfg.budget), cfg.given or frozenset()
    if "fidelity" not in given:
        cfg = dataclasses.replace(cfg, fidelity=FIDELITY)
    pruner = cfg.pruner if "pruner" in given or cfg.fidelity == 1 else "none"
    if "range_redo" not in given:  # the most redo sweeps within the share, else none
        redo = next(
            (
                r
                for r in range(cfg.range_redo, 0, -1)
                if range_test_runs(dataclasses.replace(cfg, range_redo=r), sizes)
                <= RANGE_SHARE * budget
            ),
            0,
        )
        cfg = dataclasses.replace(cfg, range_redo=redo)
    range_test, trial = range_test_runs(cfg, sizes), trial_runs(cfg, sizes)
    if budget < range_test + trial:
        raise InvalidParameterError(
            f"budget must hold the range test (at most {range_test:.2f} runs) and one search "
            f"trial (at most {trial:.2f}): at least {range_test + trial:.2f}; got {budget:g}"
        )
    rest = budget - range_test
    folds, grid, arms = _plan_cv(cfg, sizes, rest)
    point = cv_point_runs(folds, sizes)
    constant_cv = (grid + EXTRA_POINTS) * point if "constant-cv" in arms else 0.0
    finalists = cfg.finalists
    if "finalists" not in given:
        share = FINALIST_SHARE if cfg.fidelity == 1 else PROMOTION_SHARE
        room = min(share * rest, rest - constant_cv - trial)  # one trial left at least
        fits = [f for f in (5, 4, 3, 2) if f * point <= room]
        finalists = fits[0] if fits else 1
    if "n_trials" in given and "finalists" not in given:
        finalists = min(finalists, cfg.n_trials)
    finalist_cv = finalists * point if finalists > 1 else 0.0
    n_trials = cfg.n_trials
    if "n_trials" not in given:
        n_trials = max(1, math.floor((rest - constant_cv - finalist_cv) / trial + 1e-9))
    chosen = BudgetPlan(
        budget, n_trials, pruner, cfg.fidelity, compressed_epochs(sizes.epochs, cfg.fidelity),
        sizes.epochs, grid, folds, finalists, arms, cfg.range_redo,
        range_test, n_trials * trial, constant_cv, finalist_cv,
    )  # fmt: skip
    if chosen.total > budget * (1 + 1e-9):
        raise InvalidParameterError(_too_much(chosen, cfg))
    return chosen


def _plan_cv(cfg: StudyConfig, sizes: Sizes, rest: float) -> tuple[int, int, tuple[str, ...]]:
    """The CV's folds and grid points, and the arms (without ``constant-cv`` when it cannot
    fit and was not asked for)."""
    given = cfg.given or frozenset()
    folds_set, grid_set = "cv_folds" in given, "cv_grid" in given
    rungs = list(
        dict.fromkeys(
            (cfg.cv_folds if folds_set else f, cfg.cv_grid if grid_set else g)
            for f, g in CV_LADDER
        )
    )
    if "constant-cv" not in cfg.arms:
        return rungs[-1][0] if not folds_set else cfg.cv_folds, cfg.cv_grid, cfg.arms
    for folds, grid in rungs:
        if (grid + EXTRA_POINTS) * cv_point_runs(folds, sizes) <= CV_SHARE * rest:
            return folds, grid, cfg.arms
    if any(key in given for key in _CV_KEYS):
        return (*rungs[-1], cfg.arms)
    return rungs[-1][0], cfg.cv_grid, tuple(a for a in cfg.arms if a != "constant-cv")


def _too_much(chosen: BudgetPlan, cfg: StudyConfig) -> str:
    """The one-line error for keys set that cost more than the budget."""
    given = cfg.given or frozenset()
    costs = {
        "n_trials": f"n_trials={chosen.n_trials} (search at most {chosen.search:.1f} runs)",
        "cv_grid": f"cv_grid={chosen.cv_grid}",
        "cv_folds": f"cv_folds={chosen.cv_folds}",
        "arms": "arms with constant-cv",
        "finalists": f"finalists={chosen.finalists} (at most {chosen.finalist_cv:.1f} runs)",
    }
    named = [words for key, words in costs.items() if key in given]
    if any(key in given for key in _CV_KEYS) and "constant-cv" in chosen.arms:
        named.append(f"the constant-LR CV at most {chosen.constant_cv:.1f} runs")
    return (
        f"budget {chosen.budget:g} runs cannot hold the keys set: {', '.join(named)}; with the "
        f"range test (at most {chosen.range_test:.1f}) and the rest the tuning needs up to "
        f"{chosen.total:.1f}"
    )


def stored_plan(attrs: Mapping[str, Any]) -> BudgetPlan | None:
    """The plan a stored study ran with (``StoredStudy.attrs``: its config, planned, and its
    task's size), or ``None`` when it had no budget."""
    stored = dict(attrs.get(ATTR_CONFIG) or {})
    if stored.get("budget") is None:
        return None
    cfg = StudyConfig(name="stored", task=str(stored["task"])).replace(**stored)
    n_train = int((attrs.get(ATTR_TASK) or {}).get("n_train", 1))
    return plan(cfg, Sizes(n_train, int(stored["batch_size"]), int(stored["epochs"])))
