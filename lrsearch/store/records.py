"""Typed records of what lrsearch stores, each with ``to_dict`` / ``from_dict`` (JSON only).

The pipeline writes them as Optuna user attrs (names in :mod:`lrsearch.store.names`); the
report, the export and the CLI read them back through the same classes, so a field has one
spelling. Non-finite floats are stored as ``null`` (strict JSON).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Final, Self

from lrsearch.store.names import PRUNED_REASON, STOP_CODE

__all__ = [
    "RATIO_BAND",
    "STAGE_WORDS",
    "STOP_CODES",
    "TUNING_STAGES",
    "VERIFICATION_STAGES",
    "ArmResult",
    "Cost",
    "FinalRun",
    "Finalist",
    "Record",
    "RunRecord",
    "StageCost",
    "StageTime",
    "StopReason",
    "StudySummary",
    "Timings",
    "UpdateRatios",
]

#: Where the update/weight ratio of a healthy step lies: a decade either side of CS231n's rule of
#: thumb, about 1e-3 per step.
RATIO_BAND: Final = (1e-4, 1e-2)
#: A group is flagged when more than this share of its measured steps lies outside the band.
FLAG_SHARE: Final = 0.5


def _num(value: float | None) -> float | None:
    """A float for JSON: ``None`` for NaN/inf (read back as NaN by :func:`_float`)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


class Record:
    """What every stored record shares: ``from_dict`` keeps the fields the class knows.

    A record written by a later release may carry fields this one does not know; they are
    dropped on read rather than refused. Records whose fields need converting (NaN stored as
    ``null``) override :meth:`_convert`.
    """

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The record stored as ``data`` (``to_dict``'s output)."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**cls._convert({k: v for k, v in data.items() if k in names}))

    @classmethod
    def _convert(cls, fields: dict[str, Any]) -> dict[str, Any]:
        return fields


#: What stopped a run early, as codes: the pruner (``pruned``), the pruner on a run whose
#: training loss had stopped falling (``stalled``), a loss that blew up (``diverged``), a NaN
#: or inf (``non-finite``), anything else (``other``).
STOP_CODES: Final = ("pruned", "stalled", "diverged", "non-finite", "other")


@dataclasses.dataclass(frozen=True)
class StopReason(Record):
    """Why a run stopped early: a code that code reads, and words that people read.

    Stored on a trial as user attrs ``stop_code`` and ``pruned_reason``
    (:meth:`to_attrs`); a trial stored before the code existed gets it from its words
    (:meth:`from_attrs`).

    Attributes:
        code: One of :data:`STOP_CODES`.
        words: What happened, then what it says about the learning rate.

    Example:
        >>> stop = StopReason("diverged", "diverged in epoch 2: learning rate too high")
        >>> StopReason.from_attrs(stop.to_attrs()) == stop
        True
        >>> StopReason.from_attrs({"pruned_reason": "pruner: stopped after epoch 3"}).code
        'pruned'
    """

    code: str
    words: str

    def __post_init__(self) -> None:
        if self.code not in STOP_CODES:
            raise ValueError(f"code must be one of {STOP_CODES}; got {self.code!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_attrs(self) -> dict[str, str]:
        """The trial user attrs that store it."""
        return {STOP_CODE: self.code, PRUNED_REASON: self.words}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> StopReason | None:
        """The reason stored in a trial's user attrs, ``None`` if it did not stop early."""
        words = attrs.get(PRUNED_REASON)
        if not words:
            return None
        code = attrs.get(STOP_CODE)
        return cls(code if code in STOP_CODES else cls.classify(words), words)

    @staticmethod
    def classify(words: str) -> str:
        """The code of a reason stored as words only (by a release before the codes).

        Example:
            >>> StopReason.classify("non-finite training loss in epoch 3: learning rate too high")
            'non-finite'
        """
        if words.startswith("pruner"):
            return "stalled" if "too low" in words else "pruned"
        if "non-finite" in words or "division by zero" in words:
            return "non-finite"
        if "diverged" in words or "too high" in words:
            return "diverged"
        return "other"


def _sig(value: float, digits: int) -> float | None:
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class StudySummary(Record):
    """What a study found so far, short enough for one line of ``optuna studies`` (study NAME's
    user attr ``summary``); the records behind it live on the units.

    Attributes:
        bounds: The searched LR range as it stands, ``[low, high]`` (first optimizer).
        tuned: The tuned arm's schedule in words, once the finalists are scored.
        test: Each arm's mean test metric, once the final comparison is done.
        warnings: The codes of the study's warnings (``StudyWarning.code``).
        cost: Full runs of training that decided the tuned arm and that only measure it,
            ``{"tuning": x, "verification": y}`` (:class:`Cost`), once the study has a result.

    Example:
        >>> StudySummary(bounds=[0.0123456, 1.5]).to_dict()
        {'bounds': [0.0123, 1.5]}
    """

    bounds: list[float] | None = None
    tuned: str | None = None
    test: dict[str, float] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    cost: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.bounds is not None:
            out["bounds"] = [_sig(v, 3) for v in self.bounds]
        if self.tuned is not None:
            out["tuned"] = self.tuned
        if self.test:
            out["test"] = {arm: _sig(v, 4) for arm, v in self.test.items()}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.cost:
            out["cost"] = {part: _sig(v, 3) for part, v in self.cost.items()}
        return out


@dataclasses.dataclass(frozen=True)
class FinalRun(Record):
    """One run of the final comparison: an arm trained on all of ``train`` with one seed and
    scored on ``test`` after every epoch (a unit of study ``NAME/final``).

    Attributes:
        arm: The arm's name (``tuned``, ``constant-cv``, ...).
        seed: The model seed.
        params: The arm's schedule params (``{"lr": x}`` for a constant arm).
        optimizer: ``"task"`` (the task's own) or the optimizer's name (``"Adam"``).
        schedule: The schedule in words.
        curve: Test metric after each epoch; a run that stopped early is padded with its last
            value to ``epochs``.
        epochs: Epochs of the run.
        steps: Optimizer steps of the whole run as planned (a run that diverged took fewer: its
            unit's user attr ``steps`` counts them).
        stop_reason: ``None`` for a full run, else why it stopped (diverged).
        train_seconds: Seconds inside training and evaluation.
        snapshot_steps: The steps of the snapshots ensembled at the end (a tuned run whose
            schedule has cycles; empty otherwise).
        ensemble_final: The test metric of the ensemble of those snapshots, else ``None``.
        snapshot_final: The test metric of the last of them alone, else ``None``.

    Example:
        >>> run = FinalRun("tuned", 1000, {"lr": 0.1}, "task", "constant 0.1", [0.5, 0.75], 2, 20)
        >>> FinalRun.from_dict(run.to_dict()) == run, run.final
        (True, 0.75)
    """

    arm: str
    seed: int
    params: dict[str, Any]
    optimizer: str
    schedule: str
    curve: list[float]
    epochs: int
    steps: int
    stop_reason: str | None = None
    train_seconds: float = 0.0
    snapshot_steps: list[int] = dataclasses.field(default_factory=list)
    ensemble_final: float | None = None
    snapshot_final: float | None = None

    @property
    def final(self) -> float:
        """The test metric at the end of the run."""
        return self.curve[-1] if self.curve else math.nan

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["curve"] = [_num(v) for v in self.curve]
        for name in ("ensemble_final", "snapshot_final"):
            out[name] = _num(out[name])
        return out

    @classmethod
    def _convert(cls, fields: dict[str, Any]) -> dict[str, Any]:
        fields["curve"] = [_float(v) for v in fields["curve"]]
        if fields.get("snapshot_steps"):  # a stored null is a NaN score, not a missing one
            for name in ("ensemble_final", "snapshot_final"):
                fields[name] = _float(fields.get(name))
        return fields


@dataclasses.dataclass(frozen=True)
class Finalist(Record):
    """A top search trial re-scored on the constant baseline's CV folds (study
    ``NAME/finalists``); the best ``cv_mean`` becomes the tuned arm.

    Attributes:
        trial: The search trial's number.
        params: Its params.
        value: Its validation value in the search.
        fold_scores: The metric on each CV fold (up to the fold that diverged).
        cv_mean: Their mean, ``None`` when a fold diverged.
        diverged: Why a fold diverged, else ``None``.
    """

    trial: int
    params: dict[str, Any]
    value: float
    fold_scores: list[float]
    cv_mean: float | None
    diverged: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["fold_scores"] = [_num(v) for v in self.fold_scores]
        out["cv_mean"] = _num(self.cv_mean)
        return out

    @classmethod
    def _convert(cls, fields: dict[str, Any]) -> dict[str, Any]:
        fields["fold_scores"] = [_float(v) for v in fields["fold_scores"]]
        return fields


@dataclasses.dataclass(frozen=True)
class ArmResult(Record):
    """One arm of the final comparison, summarised over its seeds (study user attr
    ``comparison`` maps arm names to these).

    Attributes:
        test_metric_mean: Mean final test metric over seeds.
        test_metric_std: Its sample standard deviation (0 for one seed).
        test_metric_per_seed: Final test metric of each seed, in ``seeds`` order.
        test_curve_mean: Mean test metric after each epoch.
        test_curve_per_seed: Each seed's curve.
        epochs: Epochs of every run.
        steps: Optimizer steps of every run.
        params: The arm's params.
        schedule: Its schedule in words.
        optimizer: ``"task"`` or the optimizer's name.
        seeds: The model seeds.
        stop_reasons: Per seed, ``None`` or why the run stopped early.
        train_seconds: Seconds inside training, all seeds.
        target: The constant-cv arm's final mean (when that arm ran).
        epochs_to_target: First epoch whose mean curve reaches ``target`` (``None``: never).
        tuned_minus_this: For arms other than ``tuned``: the paired interval of
            tuned - this over seeds (``mean_diff``, ``ci_low``, ``ci_high``, ``level``,
            ``p_value``, ``significant``, ``n``).
        last_snapshot_per_seed: ``tuned-snapshots`` only: the last snapshot's test metric per
            seed (the single model the ensemble is measured against).
        ensemble_minus_last_snapshot: ``tuned-snapshots`` only: the paired interval of the
            ensemble - its last snapshot over seeds (the ensemble's own gain).
    """

    test_metric_mean: float
    test_metric_std: float
    test_metric_per_seed: list[float]
    test_curve_mean: list[float]
    test_curve_per_seed: list[list[float]]
    epochs: int
    steps: int
    params: dict[str, Any]
    schedule: str
    optimizer: str
    seeds: list[int]
    stop_reasons: list[str | None]
    train_seconds: float
    target: float | None = None
    epochs_to_target: int | None = None
    tuned_minus_this: dict[str, Any] | None = None
    last_snapshot_per_seed: list[float] | None = None
    ensemble_minus_last_snapshot: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.target is None:  # no constant-cv arm: no target to reach
            del out["target"], out["epochs_to_target"]
        for name in ("tuned_minus_this", "last_snapshot_per_seed", "ensemble_minus_last_snapshot"):
            if out[name] is None:
                del out[name]
        return out


@dataclasses.dataclass(frozen=True)
class RunRecord(Record):
    """One ``lrsearch run`` invocation on a study: who ran it, where, and what it did.

    Stored on the run's own trial of study ``NAME/runs`` (user attr ``run_record``; 0.1.0 kept
    it as study user attr :attr:`key`) and written only by the process it describes, so workers
    never overwrite each other's records. The units it ran are not
    stored here: :func:`lrsearch.store.history` counts them from the units themselves (user
    attr ``worker`` is the run's :attr:`worker`), so the history and the timings agree however
    a run ended.

    Attributes:
        started: Start time (ISO 8601, UTC).
        host: Host name.
        pid: Process id.
        versions: lrsearch, optuna, torch and Python versions.
        device: Where it trained (``cpu``, ``cuda``).
        storage: The storage URL, password masked.
        status: ``running`` (or killed: see :meth:`finished`), ``finished`` or ``failed``.
        last_seen: When it last wrote this record (ISO 8601, UTC); a live run refreshes it
            every heartbeat interval.
        ended: When it ended, or ``None``.
        error: The one-line error of a failed run.
        units: Units it ran to an end, per stage (filled in on read; not stored).
    """

    started: str
    host: str
    pid: int
    versions: dict[str, str]
    device: str
    storage: str
    status: str = "running"
    last_seen: str = ""
    ended: str | None = None
    error: str | None = None
    units: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        """The study user attr 0.1.0 stored this record under (``run:<started>:<host>:<pid>``)."""
        return f"run:{self.started}:{self.host}:{self.pid}"

    @property
    def worker(self) -> str:
        """``host:pid@started``, as stored on the units it ran (unique per invocation)."""
        return f"{self.host}:{self.pid}@{self.started}"

    @property
    def n_units(self) -> int:
        """Units it ran, all stages."""
        return sum(self.units.values())

    def finished(self) -> bool:
        """Whether the run ended by itself (finished or failed); a killed run did not."""
        return self.ended is not None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        del out["units"]  # counted from the units on read
        return out


@dataclasses.dataclass(frozen=True)
class StageTime:
    """The time the units of one stage took, whoever ran them.

    Attributes:
        units: Units that ran to an end (complete, pruned or failed).
        seconds: Their durations, summed (from each trial's start to its end).
        train_seconds: Of that, seconds inside training and evaluation.
        start: The first unit's start (ISO 8601), ``None`` without units.
        end: The last unit's end (ISO 8601), ``None`` without units.
    """

    units: int
    seconds: float
    train_seconds: float
    start: str | None
    end: str | None


@dataclasses.dataclass(frozen=True)
class Timings:
    """Seconds per stage, summed over the units stored (derived on read, never stored).

    Attributes:
        stages: Per stage (``range_test``, ``search``, ``constant_cv``, ``adam``,
            ``finalists``, ``final``), a :class:`StageTime`.
        wall: Seconds from the first unit's start to the last unit's end.
    """

    stages: dict[str, StageTime]
    wall: float

    @property
    def busy(self) -> float:
        """Seconds of all units, summed (more than ``wall`` when workers ran in parallel)."""
        return sum(s.seconds for s in self.stages.values())

    @property
    def inside_training(self) -> float:
        """Seconds inside training and evaluation, all units."""
        return sum(s.train_seconds for s in self.stages.values())

    @property
    def units(self) -> int:
        """Units that ran, all stages."""
        return sum(s.units for s in self.stages.values())

    def to_dict(self) -> dict[str, float]:
        """Flat seconds: one entry per stage, ``busy``, ``inside_training``, ``wall``."""
        out = {stage: t.seconds for stage, t in self.stages.items()}
        out |= {"busy": self.busy, "inside_training": self.inside_training, "wall": self.wall}
        return out


#: The stages whose training decides the tuned arm: the range test (the bounds), the search,
#: the constant-LR CV grid (its choice seeds the search) and the finalists (they pick the arm).
TUNING_STAGES: Final = ("range_test", "search", "constant_cv", "finalists")
#: The stages that only measure it: the recipe arms' validation runs, the final comparison.
VERIFICATION_STAGES: Final = ("adam", "prodigy", "schedule_free_adamw", "final")
#: Each stage's name in the cost's words (a recipe arm's: the arm's).
STAGE_WORDS: Final = {
    "range_test": "range test",
    "search": "search",
    "constant_cv": "constant-cv",
    "finalists": "finalists",
    "adam": "adam-3e-4",
    "prodigy": "prodigy",
    "schedule_free_adamw": "schedule-free-adamw",
    "final": "final comparison",
}
#: How the cost's line breaks each down: a name and the stages it sums (the recipes together).
_PARTS: Final = {
    "tuning": tuple((STAGE_WORDS[s], (s,)) for s in TUNING_STAGES),
    "verification": (("recipes", VERIFICATION_STAGES[:-1]), (STAGE_WORDS["final"], ("final",))),
}


@dataclasses.dataclass(frozen=True)
class StageCost(Record):
    """The training one stage's units did.

    Attributes:
        units: Units that ran to an end (complete, pruned or failed; a unit run twice by
            accident counts twice: it trained twice).
        steps: Their optimizer steps (user attr ``steps`` of each unit).
        estimated: Of those units, how many stored no step count (stored by a release before
            they did): their steps are estimated from what they stored.
    """

    units: int = 0
    steps: int = 0
    estimated: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Cost(Record):
    """What a study spent on training, in optimizer steps and in full-run equivalents (derived
    from the units on read, never stored at study level).

    A full run is one run of the final comparison: the study's epochs over all of ``train``
    (:attr:`run_steps` optimizer steps). :attr:`tuning` is what decided the tuned arm
    (:data:`TUNING_STAGES`), :attr:`verification` what only measures it
    (:data:`VERIFICATION_STAGES`). Evaluation (forward passes only) is not counted.

    Attributes:
        run_steps: Optimizer steps of one full run (epochs x steps per epoch on all of train).
        stages: Per stage, a :class:`StageCost`.

    Example:
        >>> cost = Cost(100, {"search": StageCost(10, 600), "final": StageCost(4, 400)})
        >>> cost.tuning, cost.verification, cost.runs("search")
        (6.0, 4.0, 6.0)
        >>> cost.describe()
        'tuning 6.0 runs (search 6.0); verification 4.0 runs (final comparison 4.0); a run is 100 optimizer steps'
        >>> Cost.from_dict(cost.to_dict()) == cost
        True
    """  # noqa: E501

    run_steps: int
    stages: dict[str, StageCost]

    def steps(self, *stages: str) -> int:
        """Optimizer steps of ``stages`` (all of them when none is named)."""
        return sum(c.steps for s, c in self.stages.items() if not stages or s in stages)

    def runs(self, *stages: str) -> float:
        """Full-run equivalents of ``stages``: their steps / :attr:`run_steps`."""
        return self.steps(*stages) / self.run_steps if self.run_steps > 0 else math.nan

    @property
    def tuning(self) -> float:
        """Full runs that decided the tuned arm."""
        return self.runs(*TUNING_STAGES)

    @property
    def verification(self) -> float:
        """Full runs that only measure it."""
        return self.runs(*VERIFICATION_STAGES)

    @property
    def recorded(self) -> bool:
        """Whether every unit recorded its steps (none was estimated)."""
        return not any(c.estimated for c in self.stages.values())

    def units(self, *stages: str) -> int:
        """Units of ``stages`` that ran (all of them when none is named)."""
        return sum(c.units for s, c in self.stages.items() if not stages or s in stages)

    def describe(self) -> str:
        """The cost in one line: tuning and verification in full runs, part by part (the
        recipe arms together as ``recipes``; a part without units left out), and whether any
        unit's steps were estimated."""
        groups = []
        for name, stages in (("tuning", TUNING_STAGES), ("verification", VERIFICATION_STAGES)):
            each = ", ".join(
                f"{words} {_runs(self.runs(*part))}"
                for words, part in _PARTS[name]
                if self.units(*part)
            )
            groups.append(
                f"{name} {_runs(self.runs(*stages))} runs" + (f" ({each})" if each else "")
            )
        groups.append(f"a run is {self.run_steps} optimizer steps")
        estimated = sum(c.estimated for c in self.stages.values())
        if estimated:
            groups.append(f"estimated for the {estimated} units that stored no step count")
        return "; ".join(groups)

    def to_dict(self) -> dict[str, Any]:
        """Steps and runs per stage, of tuning and of verification, and :attr:`recorded`."""
        stages = {s: c.to_dict() | {"runs": self.runs(s)} for s, c in self.stages.items()}
        return {
            "run_steps": self.run_steps,
            "tuning": {"steps": self.steps(*TUNING_STAGES), "runs": self.tuning},
            "verification": {
                "steps": self.steps(*VERIFICATION_STAGES),
                "runs": self.verification,
            },
            "recorded": self.recorded,
            "stages": stages,
        }

    @classmethod
    def _convert(cls, fields: dict[str, Any]) -> dict[str, Any]:
        fields["stages"] = {s: StageCost.from_dict(c) for s, c in fields["stages"].items()}
        return fields


def _runs(value: float) -> str:
    """Full runs in a few digits: ``30.0``, ``2.5``, ``0.43``."""
    return f"{value:.1f}" if value >= 0.95 or value == 0 else f"{value:.2g}"


@dataclasses.dataclass(frozen=True)
class UpdateRatios(Record):
    """The update/weight ratio ``||dw|| / ||w||`` of one training run, per param group.

    ``dw`` is what one optimizer step changed, ``w`` the weights after it; both norms run over
    every parameter of the group that requires a gradient. CS231n's rule of thumb puts a healthy
    step near 1e-3: far below, the learning rate barely moves the weights; far above, it
    overwrites them. A search trial stores this under user attr ``update_ratios``.

    Attributes:
        epoch_medians: Per param group, the median ratio over each epoch's measured steps
            (``[group][epoch]``; ``None`` for an epoch whose weights had no norm).
        epoch_lrs: Per epoch, the median learning rate (first param group) of its measured
            steps: the x of the report's ratio-against-LR figure.
        medians: Per group, the median over every measured step.
        share_low: Per group, the share of measured steps below ``RATIO_BAND[0]``.
        share_high: Per group, the share of measured steps above ``RATIO_BAND[1]``.
        measured_steps: Steps measured in all.
        every: One optimizer step in every ``every`` was measured (the medians are over those).

    Example:
        >>> r = UpdateRatios([[2e-5, 3e-5]], [0.01, 0.01], [2.5e-5], [1.0], [0.0], 8, 1)
        >>> r.flags
        ['LR probably too low for layer group 0: update/weight ratio below 1e-04 in 100% of the measured steps (median 2.5e-05; rule of thumb about 1e-3)']
        >>> UpdateRatios.from_dict(r.to_dict()) == r
        True
    """  # noqa: E501

    epoch_medians: list[list[float | None]]
    epoch_lrs: list[float]
    medians: list[float | None]
    share_low: list[float]
    share_high: list[float]
    measured_steps: int
    every: int

    @property
    def flags(self) -> list[str]:
        """One sentence per param group that sat outside ``RATIO_BAND`` for most of its
        measured steps (empty when every group looks healthy)."""
        low, high = RATIO_BAND
        out = []
        for k, (below, above) in enumerate(zip(self.share_low, self.share_high, strict=True)):
            median = self.medians[k]
            if below > FLAG_SHARE:
                out.append(_ratio_flag("low", k, f"below {low:.0e}", below, median))
            elif above > FLAG_SHARE:
                out.append(_ratio_flag("high", k, f"above {high:.0e}", above, median))
        return out

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["epoch_medians"] = [[_num(v) for v in group] for group in self.epoch_medians]
        out["medians"] = [_num(v) for v in self.medians]
        out["flags"] = self.flags  # for a reader of the raw storage; derived again on read
        return out


def _ratio_flag(way: str, group: int, where: str, share: float, median: float | None) -> str:
    typical = "" if median is None else f"median {median:.2g}; "
    return (
        f"LR probably too {way} for layer group {group}: update/weight ratio {where} in "
        f"{share:.0%} of the measured steps ({typical}rule of thumb about 1e-3)"
    )
