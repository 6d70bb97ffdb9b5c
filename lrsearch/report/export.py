"""``export_frame``: one tidy table of everything a study stored, for pandas, CSV or a notebook.

The search trials of study ``NAME``, the trials of its baselines ``NAME/constant-cv`` and
``NAME/adam-3e-4``, and every (arm, seed) run of its final comparison become rows of one
:class:`pandas.DataFrame` with the columns of :data:`EXPORT_COLUMNS`. Trial rows come from
Optuna's ``Study.trials_dataframe``; nothing is trained and nothing is written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import optuna
import pandas as pd

from lrsearch.pipeline.arms import RECIPES
from lrsearch.report.reading import StudyReading, read
from lrsearch.schedules import SEARCH_FIELDS, Schedule
from lrsearch.store import (
    ATTR_METRIC,
    ATTR_WARNINGS,
    COST,
    EPOCHS_RUN,
    FOLD_SCORES,
    OPTIMIZER,
    PRUNED_REASON,
    SCHEDULE,
    SEEDED,
    STEPS,
    TRAIN_SECONDS,
    UNIT_FINAL_RUN,
    WORKER,
    ArmResult,
    FinalRun,
    first_done,
    load_stored,
)

__all__ = ["EXPORT_COLUMNS", "export_frame"]

_log = logging.getLogger(__name__)

# The schedule's own parameters, each a column; a baseline's single param ``lr`` is the max_lr
# of its constant schedule.
_SCHEDULE_PARAMS = ("max_lr", *SEARCH_FIELDS)
_LR_ALIAS = {"lr": "max_lr"}

#: The columns of :func:`export_frame`, in order (params outside them are appended after).
EXPORT_COLUMNS: tuple[str, ...] = (
    "study",
    "source",
    "trial",
    "arm",
    "seed",
    "state",
    "value",
    "value_on",
    "metric",
    "schedule",
    *_SCHEDULE_PARAMS,
    "optimizer",
    "schedule_words",
    "epochs_run",
    "steps",
    "pruned_reason",
    "seeded",
    "fold_scores",
    "duration_s",
    "train_s",
    "worker",
    "datetime_start",
)

_STRINGS = (
    "study",
    "source",
    "arm",
    "state",
    "value_on",
    "metric",
    "schedule",
    "optimizer",
    "schedule_words",
    "pruned_reason",
    "fold_scores",
    "worker",
)
_DTYPES: dict[str, str] = (
    dict.fromkeys(_STRINGS, "string")
    | dict.fromkeys(("trial", "seed", "epochs_run", "steps"), "Int64")
    | dict.fromkeys(("value", *_SCHEDULE_PARAMS, "duration_s", "train_s"), "float64")
    | {"seeded": "boolean", "datetime_start": "datetime64[us]"}
)

_TRIAL_ATTRS = ("number", "value", "datetime_start", "duration", "params", "user_attrs", "state")


#: The studies of the arms scored inside ``train``: (stage, source, what their value is).
_BASELINES = (
    ("constant_cv", "constant-cv", "cv mean"),
    *((recipe.stage, recipe.name, "validation") for recipe in RECIPES.values()),
)


def export_frame(name: str, *, storage: str | None = None) -> pd.DataFrame:
    """Everything study ``name`` stored, one row per trial or final run, as a DataFrame.

    Rows come in this order: the search trials of study ``NAME``, the trials of
    ``NAME/constant-cv``, ``NAME/adam-3e-4``, ``NAME/prodigy`` and
    ``NAME/schedule-free-adamw`` (where those studies exist), then one row per (arm, seed) of
    the final comparison (once it is done). Save it with
    ``frame.to_csv(path, index=False)``. The columns, in this order:

    - ``study``: the storage study the row comes from (``NAME``, ``NAME/constant-cv``,
      ``NAME/adam-3e-4``, ...; final runs: ``NAME``).
    - ``source``: ``search``, ``constant-cv``, ``adam-3e-4``, ``prodigy``,
      ``schedule-free-adamw`` or ``final``.
    - ``trial``: the trial number (NA for final runs).
    - ``arm``: final runs: the arm (``tuned``, ``constant-cv``, ``adam-3e-4``, ``prodigy``,
      ``schedule-free-adamw``; NA for trials).
    - ``seed``: final runs: the model seed (NA for trials).
    - ``state``: the trial state (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``,
      ``WAITING``); final runs: ``COMPLETE``, or ``DIVERGED`` where training stopped early.
    - ``value``: search and recipe trials: the validation metric; constant-cv trials: the mean
      cross-validation metric; final runs: the test metric. ``value_on`` says which:
      ``validation``, ``cv mean`` or ``test``.
    - ``metric``: the task's metric name (e.g. ``accuracy``).
    - ``schedule``: the schedule kind (``constant`` for constant-cv, Adam and Schedule-Free
      AdamW, whose warmup is the optimizer's own; ``cosine`` for Prodigy).
    - ``max_lr``, ``base_lr``, ``step_size``, ``decay``, ``cycle_mult``, ``warmup``,
      ``cooldown``, ``patience``: the schedule's parameters as searched (``step_size``,
      ``warmup`` and ``patience`` in epochs), NaN where a kind has no such parameter. A
      constant baseline's one parameter ``lr`` is its ``max_lr`` (a constant schedule's LR is
      its max LR).
    - ``optimizer``: ``task`` (the task's own), a searched optimizer (``sgd``, ``nesterov``,
      ``adamw``) or a recipe's (``Adam``, ``Prodigy``, ``AdamWScheduleFree``).
    - ``schedule_words``: the schedule in words.
    - ``epochs_run``: epochs trained where recorded (search trials; final runs that did not
      stop early), else NA.
    - ``steps``: the optimizer steps it trained (constant-cv: all folds); NA where not recorded
      (a study stored by 0.1.0; a ``tuned-snapshots`` row: its steps are the ``tuned`` run's).
    - ``pruned_reason``: why a trial was pruned, or why a final run stopped (else NA).
    - ``seeded``: search trials: whether it is one of the literature's enqueued seeds (else NA).
    - ``fold_scores``: constant-cv trials: the per-fold metrics as a JSON list (else NA).
    - ``duration_s``: the trial's wall time in seconds (final runs: their unit's).
    - ``train_s``: of that, seconds inside training and evaluation (NA where a trial's worker
      was killed before it finished).
    - ``worker``: the ``lrsearch run`` that ran it (``host:pid@start``; NA for a trial stored
      by an earlier lrsearch).
    - ``datetime_start``: when the trial started (Optuna's local time; NaT for final runs).

    ``frame.attrs["warnings"]`` holds the study's warnings (``{"code", "text"}`` each: where its
    answer may be wrong, and what to do), which ``lrsearch export`` also prints;
    ``frame.attrs["cost"]`` its cost, ``Cost.to_dict()`` (``None`` before a result).

    A search trial param outside these columns (none is expected) is not dropped: it is
    appended after them as ``params_<name>``. A study without trials gives a frame with these
    columns and no rows. Text columns have pandas' ``string`` dtype; ``trial``, ``seed`` and
    ``epochs_run`` and ``steps`` are ``Int64``; ``seeded`` is ``boolean``.

    Args:
        name: The study name (as given to ``lrsearch run --study``).
        storage: Optuna storage URL (default ``sqlite:///studies/lrsearch.db``). A missing
            SQLite file is an error and is not created.

    Returns:
        The DataFrame, columns :data:`EXPORT_COLUMNS` (plus any unexpected params).

    Raises:
        InvalidParameterError: ``name`` is not a valid study name, or ``storage`` not a URL.
        LrsearchError: The storage cannot be opened or has no study ``name``.

    Example:
        >>> frame = export_frame("digits")  # doctest: +SKIP
        >>> frame.groupby("source")["value"].max()  # doctest: +SKIP
        >>> export_frame("digits", storage="sqlite:///no/such/dir/lrsearch.db")
        Traceback (most recent call last):
        ...
        lrsearch.exceptions.LrsearchError: no study database at sqlite:///no/such/dir/lrsearch.db
    """
    reading = read(load_stored(name, storage=storage))
    frame = _frame(reading)
    _log.debug("exported %d rows of study %r from %s", len(frame), name, reading.stored.storage)
    return frame


def _frame(reading: StudyReading) -> pd.DataFrame:
    """The rows of :func:`export_frame`, its warnings in ``frame.attrs``."""
    # A study made outside lrsearch names no metric: its rows say none (NA).
    stored, metric = reading.stored, reading.stored.attrs.get(ATTR_METRIC)
    parts = [_trial_rows(stored.search, source="search", value_on="validation", metric=metric)]
    for stage, source, value_on in _BASELINES:
        baseline = stored.stages.get(stage)
        if baseline is not None:
            parts.append(_trial_rows(baseline, source=source, value_on=value_on, metric=metric))
    units = _final_units(stored.trials("final"))
    parts.append(_final_rows(stored.name, reading.arms, metric, units))
    frame = _assemble([p for p in parts if len(p)])
    frame.attrs[ATTR_WARNINGS] = [w.to_dict() for w in reading.warnings]
    cost = None if reading.result is None else reading.result.cost
    frame.attrs[COST] = None if cost is None else cost.to_dict()
    return frame


def _column(df: pd.DataFrame, key: str) -> pd.Series:
    """Column ``key`` of ``df``, or all NA when no row has it (an attr no trial set)."""
    if key in df.columns:
        return df[key]
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _trial_rows(
    study: optuna.Study, *, source: str, value_on: str, metric: str | None
) -> pd.DataFrame:
    """One row per trial of ``study``, from Optuna's flattened ``trials_dataframe``."""
    df = study.trials_dataframe(attrs=_TRIAL_ATTRS, multi_index=False)
    if df.empty:
        return pd.DataFrame()
    # The value column is "value", or "value_<name>" once a study names its metric.
    value = next(c for c in df.columns if c == "value" or c.startswith("value_"))
    params = {c.removeprefix("params_"): df[c] for c in df.columns if c.startswith("params_")}
    search = source == "search"
    if not search:
        params = {_LR_ALIAS.get(k, k): v for k, v in params.items()}
    words = _column(df, f"user_attrs_{SCHEDULE}")
    if not search and "max_lr" in params:
        # A constant-cv trial (and an Adam one stored before recipes had words) stores no
        # words: a constant schedule says them itself.
        words = words.where(words.notna(), params["max_lr"].map(_constant_words))
    # A recipe's schedule words start with its kind (Prodigy's cosine; constant otherwise).
    schedule = params.pop("schedule", None) if search else words.str.split().str[0]
    out = pd.DataFrame(
        {
            "study": study.study_name,
            "source": source,
            "trial": df["number"],
            "state": df["state"],
            "value": df[value],
            "value_on": value_on,
            "metric": metric,
            "schedule": schedule,
            **{k: params.pop(k) for k in _SCHEDULE_PARAMS if k in params},
            "optimizer": _column(df, f"user_attrs_{OPTIMIZER}").map(
                lambda v: v if isinstance(v, str) else _EARLIER_OPTIMIZER.get(source, "task")
            ),
            "schedule_words": words,
            "epochs_run": _column(df, f"user_attrs_{EPOCHS_RUN}"),
            "steps": _column(df, f"user_attrs_{STEPS}"),
            "pruned_reason": _column(df, f"user_attrs_{PRUNED_REASON}"),
            "seeded": _column(df, f"user_attrs_{SEEDED}").map(lambda v: v is True)
            if search
            else None,
            "fold_scores": _column(df, f"user_attrs_{FOLD_SCORES}").map(_json_list),
            "duration_s": pd.to_timedelta(df["duration"]).dt.total_seconds(),
            "train_s": _column(df, f"user_attrs_{TRAIN_SECONDS}"),
            "worker": _column(df, f"user_attrs_{WORKER}"),
            "datetime_start": pd.to_datetime(df["datetime_start"]),
        },
        index=df.index,
    )
    return _with_extras(out, params, study.study_name)


#: The optimizer of a trial stored before trials named theirs.
_EARLIER_OPTIMIZER = {"adam-3e-4": "Adam"}


def _final_units(trials: list[optuna.trial.FrozenTrial]) -> dict[str, dict[str, Any]]:
    """Per final run (arm, seed, params), the unit that ran it: its worker, seconds, steps."""
    out: dict[str, dict[str, Any]] = {}
    for unit in first_done(trials).values():
        if UNIT_FINAL_RUN not in unit.user_attrs:
            continue
        run = FinalRun.from_dict(unit.user_attrs[UNIT_FINAL_RUN])
        key = _run_key(run.arm, run.seed, run.params)
        start, end = unit.datetime_start, unit.datetime_complete
        out[key] = {
            "duration_s": (end - start).total_seconds() if start and end else None,
            "train_s": unit.user_attrs.get(TRAIN_SECONDS),
            "steps": unit.user_attrs.get(STEPS),
            "worker": unit.user_attrs.get(WORKER),
            "datetime_start": start,
        }
    return out


def _run_key(arm: str, seed: int, params: Mapping[str, Any]) -> str:
    return json.dumps([arm, seed, params], sort_keys=True)


def _final_rows(
    name: str,
    arms: Mapping[str, ArmResult] | None,
    metric: str | None,
    units: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """One row per (arm, seed) of the final comparison."""
    rows: list[dict[str, Any]] = []
    extras: dict[str, dict[int, Any]] = {}
    for arm_name, arm in (arms or {}).items():
        per_seed = list(arm.test_metric_per_seed)
        n = len(per_seed)
        seeds = _padded(arm.seeds, n)
        reasons = _padded(arm.stop_reasons, n)
        params = dict(arm.params)
        kind = params.pop("schedule", None)
        if kind is None:  # a constant arm, given by its one LR
            kind = "constant"
            params = {_LR_ALIAS.get(k, k): v for k, v in params.items()}
        for value, seed, reason in zip(per_seed, seeds, reasons, strict=True):
            row = len(rows)
            rows.append(
                {
                    "study": name,
                    "source": "final",
                    "arm": arm_name,
                    "seed": seed,
                    "state": "COMPLETE" if reason is None else "DIVERGED",
                    "value": value,
                    "value_on": "test",
                    "metric": metric,
                    "schedule": kind,
                    **{k: params[k] for k in _SCHEDULE_PARAMS if k in params},
                    "optimizer": arm.optimizer,
                    "schedule_words": arm.schedule,
                    "epochs_run": arm.epochs if reason is None else None,
                    "pruned_reason": reason,
                    **units.get(_run_key(arm_name, seed, arm.params), {}),
                }
            )
            for key, param in params.items():
                if key not in _SCHEDULE_PARAMS:
                    extras.setdefault(key, {})[row] = param
    out = pd.DataFrame(rows)
    extra = {k: pd.Series(v, index=out.index, dtype=object) for k, v in extras.items()}
    return _with_extras(out, extra, f"{name} (comparison)")


def _with_extras(out: pd.DataFrame, extras: Mapping[str, pd.Series], where: str) -> pd.DataFrame:
    """``out`` with the params no documented column holds appended as ``params_<name>``."""
    if not extras:
        return out
    _log.warning(
        "study %s has params outside the export's columns: %s (appended as params_<name>)",
        where,
        ", ".join(sorted(extras)),
    )
    return out.assign(**{f"params_{k}": v for k, v in extras.items()})


def _assemble(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts, with the documented columns first and their dtypes, concatenated."""
    extras = sorted({c for p in parts for c in p.columns if c not in EXPORT_COLUMNS})
    columns = [*EXPORT_COLUMNS, *extras]
    # Every part gets the same dtypes first, so concatenating never has to guess one.
    dtypes = _DTYPES | dict.fromkeys(extras, "object")
    typed = [p.reindex(columns=columns).astype(dtypes) for p in parts or [pd.DataFrame()]]
    frame = pd.concat(typed, ignore_index=True)
    if extras:
        frame[extras] = frame[extras].infer_objects()
    return frame


def _padded(values: Any, n: int) -> list[Any]:
    """``values`` as ``n`` items, padded with None (an older comparison may lack the list)."""
    out = list(values or [])[:n]
    return out + [None] * (n - len(out))


def _json_list(value: Any) -> str | None:
    return json.dumps(value) if isinstance(value, list) else None


def _constant_words(lr: Any) -> str | None:
    return Schedule("constant", max_lr=float(lr)).describe() if pd.notna(lr) else None
