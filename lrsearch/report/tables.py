"""The report's pandas tables: top trials, the comparison, the settings and the history."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna
import pandas as pd

from lrsearch.choices import SNAPSHOT_ARM
from lrsearch.pipeline.bounds import CAUSES
from lrsearch.pipeline.comparison import comparison_table, verdict
from lrsearch.report.reading import cause, diagnosed_trials, metric_name, tuned_trial
from lrsearch.store import (
    ATTR_BOUNDS_HISTORY,
    ATTR_CONFIG,
    ATTR_FINALISTS,
    ATTR_RANGE_TEST,
    ATTR_TASK,
    StoredStudy,
    history,
    timings,
    top_trials,
)

__all__ = [
    "bounds_table",
    "comparison_table",
    "diagnostics_table",
    "history_table",
    "settings_table",
    "snapshot_sentence",
    "snapshots_table",
    "top_trials_table",
    "verdict",
]


def top_trials_table(study: optuna.Study, n: int = 10) -> pd.DataFrame:
    """The best ``n`` completed search trials with their schedule in words and, for the
    finalists, their cross-validated score (the tuned arm is the best of those)."""
    metric = metric_name(study)
    finalists = {f["trial"]: f for f in study.user_attrs.get(ATTR_FINALISTS, [])}
    tuned = tuned_trial(study)
    rows = []
    for rank, trial in enumerate(top_trials(study, n), start=1):
        fin = finalists.get(trial.number)
        rows.append(
            {
                "rank": rank,
                "trial": trial.number,
                f"validation {metric}": round(float(trial.value), 4),  # type: ignore[arg-type]
                "CV mean (finalists)": (
                    round(fin["cv_mean"], 4) if fin and fin["cv_mean"] is not None else ""
                ),
                "tuned arm": "yes" if trial.number == tuned else "",
                "schedule": trial.user_attrs.get("schedule", trial.params.get("schedule")),
                "seeded": "yes" if trial.user_attrs.get("seeded") else "",
            }
        )
    return pd.DataFrame(rows)


def snapshots_table(comparison: Mapping[str, Any] | None, metric: str) -> pd.DataFrame:
    """Single model against snapshot ensemble, seed by seed (empty without the
    ``tuned-snapshots`` arm): the tuned run's final model, its last snapshot, the ensemble."""
    data = (comparison or {}).get(SNAPSHOT_ARM)
    if not data:
        return pd.DataFrame()
    tuned = comparison["tuned"]  # type: ignore[index]
    rows = [
        {
            "seed": seed,
            f"tuned: final model ({metric})": round(final, 4),
            "last snapshot": round(last, 4),
            "ensemble": round(ensemble, 4),
            "ensemble - last snapshot": f"{ensemble - last:+.4f}",
        }
        for seed, final, last, ensemble in zip(
            data["seeds"],
            tuned["test_metric_per_seed"],
            data["last_snapshot_per_seed"],
            data["test_metric_per_seed"],
            strict=True,
        )
    ]
    return pd.DataFrame(rows)


def snapshot_sentence(comparison: Mapping[str, Any] | None) -> str:
    """The snapshot ensemble's gain over its last snapshot, with the paired 95% interval
    (``""`` without the ``tuned-snapshots`` arm)."""
    data = (comparison or {}).get(SNAPSHOT_ARM)
    if not data or "ensemble_minus_last_snapshot" not in data:
        return ""
    d = data["ensemble_minus_last_snapshot"]
    sig = "significant" if d["significant"] else "not significant"
    return (
        f"snapshot ensemble - its last snapshot: {d['mean_diff']:+.4f} "
        f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] over {d['n']} seeds ({sig})"
    )


def diagnostics_table(study: optuna.Study) -> pd.DataFrame:
    """The search trials the diagnostics have something to say about: why each stopped (its
    ``pruned_reason``, and the cause in short) and its update/weight-ratio and loss flags."""
    rows = [
        {
            "trial": trial.number,
            "state": trial.state.name.lower(),
            "schedule": trial.user_attrs.get("schedule", trial.params.get("schedule")),
            "cause": cause(reason) if reason else "",
            "why it stopped": reason or "",
            "flags": "; ".join(flags),
        }
        for trial, reason, flags in diagnosed_trials(study)
    ]
    return pd.DataFrame(rows)


def settings_table(stored: StoredStudy) -> pd.DataFrame:
    """Every setting of the study (config, task, range test) and the seconds its units took
    per stage, summed over whichever workers ran them."""
    attrs = stored.attrs
    rows: list[tuple[str, str, Any]] = []
    for key, value in sorted(attrs.get(ATTR_CONFIG, {}).items()):
        rows.append(("config", key, value))
    for key, value in sorted(attrs.get(ATTR_TASK, {}).items()):
        rows.append(("task", key, value))
    rt = attrs.get(ATTR_RANGE_TEST, {})
    for key in ("low", "high", "suggestion", "diverged", "never_diverged", "no_valley"):
        if key in rt:
            rows.append(("range test", key, rt[key]))
    spent = timings(stored)
    for stage, time in spent.stages.items():
        if time.units:
            rows.append(("seconds", f"{stage} ({time.units} units)", round(time.seconds, 1)))
    rows.append(("seconds", "all units", round(spent.busy, 1)))
    rows.append(("seconds", "inside training", round(spent.inside_training, 1)))
    rows.append(("seconds", "wall (first unit to last)", round(spent.wall, 1)))
    frame = pd.DataFrame(rows, columns=["group", "setting", "value"])
    frame["value"] = frame["value"].map(_setting)
    return frame


def bounds_table(study: optuna.Study) -> pd.DataFrame:
    """The searched LR range step by step: where it started and each widening (empty for a
    study stored before the history was kept)."""
    rows = study.user_attrs.get(ATTR_BOUNDS_HISTORY) or []
    return pd.DataFrame(
        [
            {
                "optimizer": row["optimizer"],
                "step": row["step"],
                "bounds": f"{row['low']:.3g} .. {row['high']:.3g}",
                "from": CAUSES.get(row["cause"], row["cause"]),
                "LR at the edge": "" if row["lr"] is None else f"{row['lr']:.3g}",
                "trial": "" if row["trial"] is None else f"#{row['trial']}",
            }
            for row in rows
        ]
    )


def history_table(stored: StoredStudy) -> pd.DataFrame:
    """Every ``lrsearch run`` on the study: when, where, which versions, what it ran."""
    rows = []
    for run in history(stored):
        units = ", ".join(f"{stage} {n}" for stage, n in run.units.items()) or "nothing left"
        status = run.status if run.finished() else "did not finish (killed, or still running)"
        rows.append(
            {
                "started (UTC)": run.started[:19].replace("T", " "),
                "ended (UTC)": (run.ended or "")[:19].replace("T", " "),
                "host": run.host,
                "pid": run.pid,
                "status": status + (f": {run.error}" if run.error else ""),
                "units run": units,
                "device": run.device,
                "versions": ", ".join(f"{k} {v}" for k, v in run.versions.items()),
            }
        )
    return pd.DataFrame(rows)


def _setting(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value)
