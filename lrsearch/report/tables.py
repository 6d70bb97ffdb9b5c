"""The report's pandas tables: top trials, the comparison, the settings and the history."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from lrsearch.choices import ARM_ORDER, SNAPSHOT_ARM
from lrsearch.pipeline.bounds import CAUSES
from lrsearch.report.reading import (
    Comparison,
    StudyReading,
    as_arms,
    cause,
    diagnosed_trials,
    read,
    schedule_words,
)
from lrsearch.store import (
    SEEDED,
    STAGE_WORDS,
    TUNING_STAGES,
    VERIFICATION_STAGES,
    StoredStudy,
    history,
    timings,
    top_trials,
)

__all__ = [
    "bounds_table",
    "comparison_table",
    "cost_table",
    "diagnostics_table",
    "history_table",
    "settings_table",
    "snapshot_sentence",
    "snapshots_table",
    "top_trials_table",
    "verdict",
]


def top_trials_table(study: StoredStudy | StudyReading, n: int = 10) -> pd.DataFrame:
    """The best ``n`` completed search trials with their schedule in words and, for the
    finalists, their cross-validated score (the tuned arm is the best of those)."""
    reading = read(study)
    finalists = {f.trial: f for f in reading.finalists}
    tuned = reading.tuned_trial
    rows = []
    for rank, trial in enumerate(top_trials(reading.search, n), start=1):
        fin = finalists.get(trial.number)
        cv_mean = None if fin is None else fin.cv_mean
        rows.append(
            {
                "rank": rank,
                "trial": trial.number,
                f"validation {reading.metric}": round(float(trial.value), 4),  # type: ignore[arg-type]
                "CV mean (finalists)": (
                    round(cv_mean, 4) if cv_mean is not None and math.isfinite(cv_mean) else ""
                ),
                "tuned arm": "yes" if trial.number == tuned else "",
                "schedule": schedule_words(trial),
                "seeded": "yes" if trial.user_attrs.get(SEEDED) else "",
            }
        )
    return pd.DataFrame(rows)


#: How the table names an arm's optimizer.
_OPTIMIZER_WORDS = {
    "task": "task's",
    "sgd": "SGD",
    "nesterov": "SGD Nesterov",
    "adamw": "AdamW",
    "Adam": "Adam",
    "Prodigy": "Prodigy",
    "AdamWScheduleFree": "Schedule-Free AdamW",
}


def comparison_table(comparison: Comparison, metric: str) -> pd.DataFrame:
    """The final comparison, one row per arm (empty without one): test metric mean ± std,
    tuned - arm with its 95% interval, whether that is significant, epochs to the target, the
    schedule in words.

    The target is the constant-cv arm's final mean test metric, and the column's header says
    so with its value (``epochs to 0.9716 (constant-cv)``); a comparison without that arm has
    no target, and no such column.

    Example:
        >>> from lrsearch.store import ArmResult
        >>> arm = ArmResult(0.9, 0.01, [0.9], [0.8, 0.9], [[0.8, 0.9]], 2, 20, {"lr": 0.1},
        ...                 "constant 0.1", "task", [1000], [None], 1.0, 0.9, 2)
        >>> list(comparison_table({"tuned": arm}, "accuracy").columns)[-2:]
        ['epochs to 0.9000 (constant-cv)', 'schedule']
    """
    given = as_arms(comparison)
    arms = [(arm, given[arm]) for arm in ARM_ORDER if arm in given]
    target = next((d.target for _, d in arms if d.target is not None), None)
    rows = []
    for arm, data in arms:
        diff = data.tuned_minus_this
        row = {
            "arm": arm,
            "optimizer": _OPTIMIZER_WORDS.get(data.optimizer, data.optimizer),
            f"test {metric}": f"{data.test_metric_mean:.4f} ± {data.test_metric_std:.4f}",
            "tuned - arm [95% CI]": (
                f"{diff['mean_diff']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]"
                if diff
                else ""
            ),
            "significant": ("yes" if diff["significant"] else "no") if diff else "",
        }
        if target is not None:
            reached = data.epochs_to_target
            row[f"epochs to {target:.4f} (constant-cv)"] = (
                f"{reached}/{data.epochs}" if reached is not None else f"not in {data.epochs}"
            )
        row["schedule"] = data.schedule
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(comparison: Comparison, direction: str) -> str:
    """One sentence: whether the tuned schedule beat each other arm, significantly."""
    arms = as_arms(comparison)
    if not arms:
        return "no final comparison (baselines skipped)"
    better = "higher" if direction == "maximize" else "lower"
    parts = []
    for arm in ARM_ORDER[1:]:
        diff = arms[arm].tuned_minus_this if arm in arms else None
        if diff is None:
            continue
        sign = diff["mean_diff"] if direction == "maximize" else -diff["mean_diff"]
        word = "beats" if sign > 0 else ("ties" if sign == 0 else "loses to")
        sig = "significantly" if diff["significant"] else "not significantly"
        parts.append(f"{word} {arm} ({sig}, {better} is better)")
    return "tuned " + "; ".join(parts)


def snapshots_table(comparison: Comparison, metric: str) -> pd.DataFrame:
    """Single model against snapshot ensemble, seed by seed (empty without the
    ``tuned-snapshots`` arm): the tuned run's final model, its last snapshot, the ensemble."""
    arms = as_arms(comparison)
    data = arms.get(SNAPSHOT_ARM)
    if data is None or data.last_snapshot_per_seed is None:
        return pd.DataFrame()
    rows = [
        {
            "seed": seed,
            f"tuned: final model ({metric})": round(final, 4),
            "last snapshot": round(last, 4),
            "ensemble": round(ensemble, 4),
            "ensemble - last snapshot": f"{ensemble - last:+.4f}",
        }
        for seed, final, last, ensemble in zip(
            data.seeds,
            arms["tuned"].test_metric_per_seed,
            data.last_snapshot_per_seed,
            data.test_metric_per_seed,
            strict=True,
        )
    ]
    return pd.DataFrame(rows)


def snapshot_sentence(comparison: Comparison) -> str:
    """The snapshot ensemble's gain over its last snapshot, with the paired 95% interval
    (``""`` without the ``tuned-snapshots`` arm)."""
    data = as_arms(comparison).get(SNAPSHOT_ARM)
    d = None if data is None else data.ensemble_minus_last_snapshot
    if not d:
        return ""
    sig = "significant" if d["significant"] else "not significant"
    return (
        f"snapshot ensemble - its last snapshot: {d['mean_diff']:+.4f} "
        f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] over {d['n']} seeds ({sig})"
    )


def diagnostics_table(study: StoredStudy | StudyReading) -> pd.DataFrame:
    """The search trials the diagnostics have something to say about: why each stopped (its
    stop reason in words, and the cause in short) and its update/weight-ratio and loss flags."""
    rows = [
        {
            "trial": trial.number,
            "state": trial.state.name.lower(),
            "schedule": schedule_words(trial),
            "cause": cause(stop) if stop else "",
            "why it stopped": stop.words if stop else "",
            "flags": "; ".join(flags),
        }
        for trial, stop, flags in diagnosed_trials(study)
    ]
    return pd.DataFrame(rows)


#: The range test's fields the settings show.
_RANGE_TEST_SETTINGS = ("low", "high", "suggestion", "diverged", "never_diverged", "no_valley")


def settings_table(stored: StoredStudy | StudyReading) -> pd.DataFrame:
    """Every setting of the study (config, task, range test) and the seconds its units took
    per stage, summed over whichever workers ran them."""
    reading = read(stored)
    rows: list[tuple[str, str, Any]] = []
    for key, value in sorted(reading.config.items()):
        rows.append(("config", key, value))
    for key, value in sorted(reading.task.items()):
        rows.append(("task", key, value))
    rt = reading.range_test
    if rt is not None:
        found = {
            "low": rt.bounds.low,
            "high": rt.bounds.high,
            "suggestion": rt.suggestion,
            "diverged": bool(rt.diverged),
            "never_diverged": bool(rt.never_diverged),
            "no_valley": bool(rt.no_valley),
        }
        rows += [("range test", key, found[key]) for key in _RANGE_TEST_SETTINGS]
    spent = timings(reading.stored)
    for stage, time in spent.stages.items():
        if time.units:
            rows.append(("seconds", f"{stage} ({time.units} units)", round(time.seconds, 1)))
    rows.append(("seconds", "all units", round(spent.busy, 1)))
    rows.append(("seconds", "inside training", round(spent.inside_training, 1)))
    rows.append(("seconds", "wall (first unit to last)", round(spent.wall, 1)))
    frame = pd.DataFrame(rows, columns=["group", "setting", "value"])
    frame["value"] = frame["value"].map(_setting)
    return frame


def cost_table(study: StoredStudy | StudyReading) -> pd.DataFrame:
    """What each stage trained: its units, their optimizer steps and the full runs those make,
    then the tuning's and the verification's totals (empty before the study has a result)."""
    cost = read(study).cost
    if cost is None:
        return pd.DataFrame()
    rows = []
    for part, stages in (("tuning", TUNING_STAGES), ("verification", VERIFICATION_STAGES)):
        for stage in (*(s for s in stages if cost.units(s)), None):
            every = stages if stage is None else (stage,)
            rows.append(
                {
                    "part": part,
                    "stage": "all" if stage is None else STAGE_WORDS[stage],
                    "units": cost.units(*every),
                    "optimizer steps": cost.steps(*every),
                    "full runs": round(cost.runs(*every), 2),
                }
            )
    return pd.DataFrame(rows)


def bounds_table(study: StoredStudy | StudyReading) -> pd.DataFrame:
    """The searched LR range step by step: where it started and each widening (empty before
    the study has a result)."""
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
            for row in read(study).bounds_history
        ]
    )


def history_table(stored: StoredStudy | StudyReading) -> pd.DataFrame:
    """Every ``lrsearch run`` on the study: when, where, which versions, what it ran."""
    rows = []
    for run in history(stored.stored if isinstance(stored, StudyReading) else stored):
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
