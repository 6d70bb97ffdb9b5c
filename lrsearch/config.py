"""Study configs: ``studies/NAME.toml``, validated into a frozen :class:`StudyConfig`.

A config is looked up as ``./studies/NAME.toml`` first (the working directory), then among the
configs packaged with lrsearch (``charlm``, ``digits``, ``mnist1d``). Every key is optional
except ``task``; :data:`KEYS` lists them with their meaning, and the README's table is generated
from the same text. Unknown keys, wrong types and out-of-range values raise
:class:`~lrsearch.exceptions.InvalidParameterError` naming the key and the value, before
anything is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import numbers
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from lrsearch._validation import (
    POSITIVE_REAL,
    Constraint,
    InstanceOf,
    Interval,
    Names,
    Options,
    Satisfies,
    below,
    check,
)
from lrsearch.choices import (
    ARMS,
    DEVICES,
    KINDS,
    MIN_ITER,
    OPTIMIZERS,
    PRUNERS,
    REDO_SWEEPS,
    SAMPLERS,
)
from lrsearch.exceptions import InvalidParameterError

__all__ = [
    "KEYS",
    "PRUNERS",
    "SAMPLERS",
    "StudyConfig",
    "check_study_name",
    "find_config",
    "load_config",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_STUDY_NAME: Final = Satisfies(
    lambda name: isinstance(name, str) and bool(_NAME.fullmatch(name)) and ".." not in name,
    "must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or digit, no '..' "
    "or '/')",
)

#: Every config key: (meaning, default shown in the docs).
KEYS: dict[str, tuple[str, str]] = {
    "task": (
        '`"charlm"`, `"digits"`, `"mnist1d"` or `"package.module:function"` giving a `Task`',
        "required",
    ),
    "n_trials": ("search trials in total (a resumed study runs only the missing ones)", "40"),
    "timeout": ("seconds after which the search starts no new trial", "none"),
    "budget": ("full runs the tuning may spend at most: plans the keys not set", "none"),
    "fidelity": (
        "share of the run each search trial trains, its whole schedule compressed to fit; "
        "finalists and final runs train in full",
        "1 (a `budget` plans 1/3)",
    ),
    "seed": ("seeds the sampler, the splits, the range test and model inits", "0"),
    "sampler": ("`tpe` (multivariate, grouped) or `random`", "`tpe`"),
    "pruner": (
        "`median`, `halving` (successive halving), `hyperband` or `none`; each judges a trial "
        "only after its schedule's first cycle or warm-up",
        "`median`",
    ),
    "warmup_epochs": (
        "epochs before the pruner may stop any trial",
        "epochs // 4 (`median`, `hyperband`), 0 (`halving`)",
    ),
    "kinds": ("schedule kinds to search", "all twelve"),
    "optimizers": (
        "optimizers the search chooses among: `task` (the task's own), `sgd` (momentum 0.9), "
        "`nesterov`, `adamw` (its `weight_decay` searched too); with several, the range test "
        "runs once per optimizer and each draws its LRs from its own bounds; the first is the "
        "constant-cv arm's",
        '`["task"]`',
    ),
    "epochs": ("epochs of every training run (overrides the task's)", "the task's"),
    "batch_size": ("training batch size (overrides the task's)", "the task's"),
    "validation_fraction": ("share of `train` held out to score search trials", "0.2"),
    "cv_folds": ("folds of the constant-LR cross-validation", "5"),
    "cv_grid": ("constant LRs on the log grid over the range-test bounds", "8"),
    "finalists": (
        "top search trials re-scored on the constant baseline's CV folds; the best CV mean "
        "becomes the tuned arm (1: the best search trial as it is)",
        "5",
    ),
    "final_seeds": ("seeds per arm in the final comparison", "5"),
    "arms": (
        "arms of the final comparison: `tuned` and any of `constant-cv`, `adam-3e-4`, "
        "`prodigy`, `schedule-free-adamw`",
        "all five",
    ),
    "device": ("`auto`, `cpu` or `cuda`", "`auto`"),
    "threads": ("torch CPU threads (0: one per core, at most 8)", "0"),
    "heartbeat_interval": ("seconds between a running unit's heartbeats in the storage", "10"),
    "grace_period": (
        "seconds without a heartbeat after which a unit of a dead worker is run again "
        "(more than `heartbeat_interval`)",
        "30",
    ),
    "diagnostics": (
        "measure the update/weight ratio per param group in the range test and the search "
        "trials, stored and flagged when far from 1e-3 (`false`: off; why a run failed is "
        "said either way)",
        "`true`",
    ),
    "range_test.start_lr": ("first LR of the range test", "1e-7"),
    "range_test.end_lr": ("last LR of the range test", "10.0"),
    "range_test.num_iter": ("steps of the range test", "100"),
    "range_test.repeats": ("sweeps with different seeds, medians taken", "1"),
    "range_test.redo": (
        "sweeps of a doubtful range test's redo (a small `budget` plans fewer)",
        "3",
    ),
}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """A validated study config. Build one with :func:`load_config` or directly.

    Example:
        >>> cfg = StudyConfig(name="demo", task="digits", n_trials=10)
        >>> cfg.n_trials, cfg.pruner, cfg.kinds[:2]
        (10, 'median', ('constant', 'step'))
    """

    name: str
    task: str
    n_trials: int = 40
    timeout: float | None = None
    budget: float | None = None
    fidelity: float = 1.0
    seed: int = 0
    sampler: str = "tpe"
    pruner: str = "median"
    warmup_epochs: int | None = None
    kinds: tuple[str, ...] = KINDS
    optimizers: tuple[str, ...] = ("task",)
    epochs: int | None = None
    batch_size: int | None = None
    validation_fraction: float = 0.2
    cv_folds: int = 5
    cv_grid: int = 8
    finalists: int = 5
    final_seeds: int = 5
    arms: tuple[str, ...] = ARMS
    device: str = "auto"
    threads: int = 0
    heartbeat_interval: int = 10
    grace_period: int = 30
    diagnostics: bool = True
    range_start_lr: float = 1e-7
    range_end_lr: float = 10.0
    range_num_iter: int = 100
    range_repeats: int = 1
    range_redo: int = REDO_SWEEPS
    source: str = "<python>"
    #: The keys set, not defaulted (field names): a ``budget`` plans only the others. Built
    #: directly, the fields that differ from their defaults.
    given: frozenset[str] | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_study_name(self.name)
        if self.given is None:
            differ = {k for k, default in _DEFAULTS.items() if getattr(self, k) != default}
            object.__setattr__(self, "given", frozenset(differ))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in _RULES and not (value is None and field.default is None):
                checked = check(_key(field.name), value, *_RULES[field.name])
                if field.name in _LISTS:
                    object.__setattr__(self, field.name, checked)
        check("arms", list(self.arms), _HAS_TUNED)
        check(
            "grace_period",
            self.grace_period,
            _longer("heartbeat_interval", self.heartbeat_interval),
        )
        check(
            "range_test.start_lr",
            self.range_start_lr,
            below("range_test.end_lr", self.range_end_lr),
        )

    def replace(self, **changes: Any) -> StudyConfig:
        """A copy with ``changes`` (keys as in the TOML file; ``None`` values are ignored).

        The changed keys count as set (:attr:`given`); a ``budget`` among them outranks the
        config's own keys, as a command-line flag outranks the file: only the keys changed
        with it stay set."""
        fields = _to_fields({k: v for k, v in changes.items() if v is not None})
        kept = frozenset() if "budget" in fields else (self.given or frozenset())
        return dataclasses.replace(self, **fields, given=kept | frozenset(fields))

    def to_dict(self) -> dict[str, Any]:
        """The config as TOML-shaped, JSON-safe data (stored on the study)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _UNPLANNED:
                continue
            if f.name.startswith("range_"):
                out.setdefault("range_test", {})[f.name.removeprefix("range_")] = value
            elif value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def check_study_name(name: object) -> str:
    """``name`` if it is a valid study name (letters, digits, ``_.-``; no paths), else an error.

    Example:
        >>> check_study_name("digits")
        'digits'
    """
    return str(check("study name", name, _STUDY_NAME))


def find_config(name: str, *, cwd: Path | None = None) -> Path | None:
    """Where the config of study ``name`` is: ``./studies/NAME.toml``, then the packaged one."""
    check_study_name(name)
    local = (cwd or Path.cwd()) / "studies" / f"{name}.toml"
    if local.is_file():
        return local
    packaged = importlib.resources.files("lrsearch") / "studies" / f"{name}.toml"
    if packaged.is_file():
        return Path(str(packaged))
    return None


def load_config(
    name: str, *, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> StudyConfig:
    """Load and validate the config of study ``name``.

    Args:
        name: The study name; also names the file unless ``path`` is given.
        path: An explicit TOML file.
        overrides: Keys that replace the file's (the CLI's flags); ``None`` values are ignored.

    Returns:
        The :class:`StudyConfig`.

    Raises:
        InvalidParameterError: No such config, bad TOML, an unknown key, a bad value.

    Example:
        >>> cfg = load_config("digits", overrides={"n_trials": 5})
        >>> cfg.task, cfg.n_trials
        ('digits', 5)
    """
    check_study_name(name)
    if path is None:
        found = find_config(name)
        if found is None:
            raise InvalidParameterError(
                f"no config for study {name!r}: looked for ./studies/{name}.toml and the "
                "packaged configs (charlm, digits, mnist1d)"
            )
        path = found
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidParameterError(f"cannot read config {str(path)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidParameterError(f"{path}: not valid UTF-8 ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidParameterError(f"{path}: not valid TOML ({exc})") from exc
    data = dict(raw)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    data.update(flags)
    try:
        if "task" not in data:
            raise InvalidParameterError("missing key 'task'")
        fields = _to_fields(data)
        # A budget given as an override replans the file's keys (see StudyConfig.replace).
        given = _to_fields(flags) if "budget" in flags else fields
        return StudyConfig(name=name, source=str(path), **fields, given=frozenset(given))
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{path}: {exc}") from None


def _to_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key == "range_test":
            if not isinstance(value, Mapping):
                raise InvalidParameterError(f"range_test must be a table; got {value!r}")
            for sub, sub_value in value.items():
                if f"range_test.{sub}" not in KEYS:
                    raise _unknown(f"range_test.{sub}")
                fields[f"range_{sub}"] = sub_value
        elif key.startswith("range_test."):
            if key not in KEYS:
                raise _unknown(key)
            fields[f"range_{key.removeprefix('range_test.')}"] = value
        elif key in KEYS:
            fields[key] = tuple(value) if key in _LISTS and isinstance(value, list) else value
        else:
            raise _unknown(key)
    return fields


_LISTS = ("kinds", "optimizers", "arms")
#: Fields that are not config keys.
_UNPLANNED = ("name", "source", "given")


def _at_least(low: int) -> Interval:
    return Interval(int, low, None, closed="left")


# What each field must be (a field whose default is None may also be None: not set).
_RULES: Final[Mapping[str, tuple[Constraint, ...]]] = {
    "task": (
        Satisfies(lambda task: isinstance(task, str) and task != "", "must be a non-empty string"),
    ),
    "n_trials": (_at_least(1),),
    "timeout": (POSITIVE_REAL,),
    "budget": (POSITIVE_REAL,),
    "fidelity": (Interval(numbers.Real, 0, 1, closed="right"),),
    "seed": (_at_least(0),),
    "sampler": (Options(SAMPLERS),),
    "pruner": (Options(PRUNERS),),
    "warmup_epochs": (_at_least(0),),
    "kinds": (Names(KINDS),),
    "optimizers": (Names(OPTIMIZERS),),
    "arms": (Names(ARMS),),
    "epochs": (_at_least(1),),
    "batch_size": (_at_least(1),),
    "validation_fraction": (Interval(numbers.Real, 0, 0.9, closed="neither"),),
    "cv_folds": (_at_least(2),),
    "cv_grid": (_at_least(2),),
    "finalists": (_at_least(1),),
    "final_seeds": (_at_least(2),),
    "device": (Options(DEVICES),),
    "threads": (_at_least(0),),
    "heartbeat_interval": (_at_least(1),),
    "grace_period": (_at_least(2),),
    "diagnostics": (InstanceOf(bool, "true or false"),),
    "range_start_lr": (POSITIVE_REAL,),
    "range_end_lr": (POSITIVE_REAL,),
    "range_num_iter": (_at_least(MIN_ITER),),
    "range_repeats": (_at_least(1),),
    "range_redo": (_at_least(0),),
}

_HAS_TUNED: Final = Satisfies(
    lambda arms: "tuned" in arms,
    "must include 'tuned' (the comparison is the tuned schedule against each other arm)",
)


def _longer(other: str, bound: int) -> Interval:
    return Interval(int, bound, None, closed="neither", words=f"longer than {other}={bound!r}")


def _key(field: str) -> str:
    """The TOML key of a field: ``range_test.start_lr`` for ``range_start_lr``."""
    return f"range_test.{field.removeprefix('range_')}" if field.startswith("range_") else field


# What a mistyped key is compared with, and the key each spelling suggests: every key, the
# `range_test` table itself, and its sub-keys written without the table (`num_iter` at the top
# level suggests `range_test.num_iter`).
_SPELLINGS: dict[str, str] = (
    {key: key for key in KEYS}
    | {"range_test": "range_test"}
    | {key.removeprefix("range_test."): key for key in KEYS if key.startswith("range_test.")}
)


def _unknown(key: str) -> InvalidParameterError:
    """The error for an unknown ``key``: the nearest valid key, or all of them if none is near.

    Example:
        >>> str(_unknown("epochz"))
        "unknown key 'epochz' (did you mean 'epochs'?)"
    """
    close = difflib.get_close_matches(key, _SPELLINGS, n=1)
    hint = f"did you mean {_SPELLINGS[close[0]]!r}?" if close else f"valid keys: {', '.join(KEYS)}"
    return InvalidParameterError(f"unknown key {key!r} ({hint})")


_DEFAULTS: Final[Mapping[str, Any]] = {
    f.name: f.default for f in dataclasses.fields(StudyConfig) if f.name not in _UNPLANNED
}
