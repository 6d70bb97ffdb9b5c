"""Tests for lrsearch/export.py: a real tiny study (with a diverging search trial) exported to
one frame, checked row by row against what the storage holds, through a CSV round trip, and
the errors for a missing database, study or bad name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import tiny_task
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from lrsearch.choices import ARMS, SNAPSHOT_ARM
from lrsearch.cli import cli
from lrsearch.config import StudyConfig
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.pipeline import load_result
from lrsearch.pipeline.arms import ADAM_LR
from lrsearch.pipeline.comparison import final_seeds
from lrsearch.report import EXPORT_COLUMNS, export_frame
from lrsearch.store import FOLD_SCORES, SCHEDULE, UNIT_FINAL_RUN, FinalRun
from lrsearch.study import run_study

# lrsearch silences these at import; pytest resets warning filters for every test.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SOURCES = {
    "tiny": "search",
    "tiny/constant-cv": "constant-cv",
    "tiny/adam-3e-4": "adam-3e-4",
    "tiny/prodigy": "prodigy",
    "tiny/schedule-free-adamw": "schedule-free-adamw",
}
SCHEDULE_PARAMS = (
    "max_lr",
    "base_lr",
    "step_size",
    "decay",
    "cycle_mult",
    "warmup",
    "cooldown",
    "patience",
)
BAD_LR = 1e3  # a constant LR the tiny task's SGD diverges at


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _trials(url: str, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def _na(value: Any) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and math.isnan(value))
    )


def _comparison(url: str) -> dict[str, Any]:
    """The study's final comparison as ``load_result`` derives it from the final runs."""
    comparison = load_result("tiny", storage=url).comparison
    assert comparison is not None
    return comparison


def _cells(series: pd.Series) -> list[Any]:
    """The values of ``series`` as plain Python objects, every kind of missing as ``None``."""
    return [None if _na(v) else v for v in series.astype(object)]


@dataclasses.dataclass(frozen=True)
class Done:
    """A finished tiny study whose first search trial diverged, and its export."""

    path: Path
    url: str
    config: StudyConfig
    frame: pd.DataFrame


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Done:
    path = tmp_path_factory.mktemp("export") / "lrsearch.db"
    url = _url(path)
    study = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    study.enqueue_trial({"schedule": "constant", "max_lr": BAD_LR})
    cfg = tiny_task.config()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Optuna: BAD_LR is outside the LR range
        run_study(cfg, storage=url)
    return Done(path, url, cfg, export_frame("tiny", storage=url))


def _rows(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    return frame[frame["source"] == source]


# --- shape ----------------------------------------------------------------------------------


def test_columns_are_the_documented_ones_in_order(done: Done) -> None:
    assert tuple(done.frame.columns) == EXPORT_COLUMNS
    assert len(set(EXPORT_COLUMNS)) == len(EXPORT_COLUMNS)
    dtypes = done.frame.dtypes.astype(str)
    assert {c: dtypes[c] for c in ("trial", "seed", "epochs_run", "seeded")} == {
        "trial": "Int64",
        "seed": "Int64",
        "epochs_run": "Int64",
        "seeded": "boolean",
    }
    for column in ("value", *SCHEDULE_PARAMS, "duration_s"):
        assert dtypes[column] == "float64", column


def test_one_row_per_stored_trial_and_per_final_run(done: Done) -> None:
    frame = done.frame
    for name, source in SOURCES.items():
        rows = _rows(frame, source)
        trials = _trials(done.url, name)
        assert len(rows) == len(trials) > 0, source
        assert set(rows["study"]) == {name}
        assert list(rows["trial"]) == [t.number for t in trials]
    comparison = _comparison(done.url)
    final = _rows(frame, "final")
    assert len(final) == len(comparison) * done.config.final_seeds
    assert len(final) == sum(len(arm["test_metric_per_seed"]) for arm in comparison.values())
    assert len(frame) == sum(len(_trials(done.url, n)) for n in SOURCES) + len(final)
    # Sources come in order: search, constant-cv, the recipes, final.
    order = list(dict.fromkeys(frame["source"]))
    assert order == [*SOURCES.values(), "final"]


# --- trial rows against the storage ---------------------------------------------------------


def test_search_rows_match_the_stored_trials(done: Done) -> None:
    rows = _rows(done.frame, "search")
    for trial, (_, row) in zip(_trials(done.url, "tiny"), rows.iterrows(), strict=True):
        assert row["state"] == trial.state.name
        if trial.value is None:
            assert _na(row["value"])
        else:
            assert row["value"] == pytest.approx(trial.value)
        assert (row["value_on"], row["metric"], row["optimizer"]) == (
            "validation",
            "accuracy",
            "task",
        )
        assert row["schedule"] == trial.params["schedule"]
        for key in SCHEDULE_PARAMS:
            if key in trial.params:
                assert row[key] == pytest.approx(trial.params[key]), key
            else:
                assert _na(row[key]), key
        assert set(trial.params) <= {"schedule", *SCHEDULE_PARAMS}
        attrs = trial.user_attrs
        assert row["schedule_words"] == attrs["schedule"]
        assert (row["worker"], row["train_s"]) == (attrs["worker"], attrs["train_seconds"])
        assert _cells(pd.Series([row["epochs_run"]])) == [attrs.get("epochs_run")]
        assert _cells(pd.Series([row["pruned_reason"]])) == [attrs.get("pruned_reason")]
        assert row["seeded"] == bool(attrs.get("seeded", False))
        assert _na(row["arm"]) and _na(row["seed"]) and _na(row["fold_scores"])
        assert trial.duration is not None and trial.datetime_start is not None
        assert row["duration_s"] == pytest.approx(trial.duration.total_seconds())
        assert row["datetime_start"] == pd.Timestamp(trial.datetime_start)
    # The literature's seeds are marked; the diverging trial enqueued first is not one.
    assert rows["seeded"].sum() >= 2 and not rows["seeded"].iloc[0]


def test_a_diverged_search_trial_is_pruned_with_its_reason(done: Done) -> None:
    first = _rows(done.frame, "search").iloc[0]
    assert (first["schedule"], first["max_lr"]) == ("constant", BAD_LR)
    assert first["state"] == "PRUNED"
    assert any(w in first["pruned_reason"] for w in ("non-finite", "diverged"))
    assert first["epochs_run"] >= 1
    # Every pruned trial says why, as the study recorded it.
    pruned = done.frame[done.frame["state"] == "PRUNED"]
    assert pruned["pruned_reason"].notna().all()


def test_constant_cv_rows_match_the_stored_trials(done: Done) -> None:
    rows = _rows(done.frame, "constant-cv")
    for trial, (_, row) in zip(
        _trials(done.url, "tiny/constant-cv"), rows.iterrows(), strict=True
    ):
        assert row["state"] == trial.state.name
        if trial.state.name == "PRUNED":  # a fold diverged: no mean, the folds it ran
            assert np.isnan(row["value"]) and trial.value is None
        else:
            assert row["value"] == pytest.approx(trial.value)
            assert row["value"] == pytest.approx(np.mean(json.loads(row["fold_scores"])))
        assert json.loads(row["fold_scores"]) == trial.user_attrs[FOLD_SCORES]
        assert (row["value_on"], row["schedule"], row["optimizer"]) == (
            "cv mean",
            "constant",
            "task",
        )
        # A constant schedule's one LR is its max_lr.
        assert row["max_lr"] == trial.params["lr"]
        assert all(_na(row[k]) for k in SCHEDULE_PARAMS[1:])
        assert row["schedule_words"] == trial.user_attrs[SCHEDULE]
        assert _na(row["seeded"]) and _na(row["arm"]) and _na(row["epochs_run"])


def test_adam_rows_match_the_stored_trial(done: Done) -> None:
    (trial,) = _trials(done.url, "tiny/adam-3e-4")
    (_, row), *_ = _rows(done.frame, "adam-3e-4").iterrows()
    assert row["value"] == pytest.approx(trial.value)
    assert (row["state"], row["value_on"], row["schedule"], row["optimizer"]) == (
        "COMPLETE",
        "validation",
        "constant",
        "Adam",
    )
    assert row["max_lr"] == trial.params["lr"] == ADAM_LR
    # The words the trial stored are those of the comparison.
    comparison = _comparison(done.url)
    assert row["schedule_words"] == comparison["adam-3e-4"]["schedule"] == "constant 0.0003"
    assert trial.user_attrs[SCHEDULE] == row["schedule_words"]


@pytest.mark.parametrize(
    ("source", "kind", "optimizer", "lr"),
    [
        ("prodigy", "cosine", "Prodigy", 1.0),
        ("schedule-free-adamw", "constant", "AdamWScheduleFree", 0.0025),
    ],
)
def test_learning_rate_free_rows_match_their_stored_trial(
    done: Done, source: str, kind: str, optimizer: str, lr: float
) -> None:
    (trial,) = _trials(done.url, f"tiny/{source}")
    (_, row), *_ = _rows(done.frame, source).iterrows()
    assert row["value"] == pytest.approx(trial.value)
    assert (row["state"], row["value_on"], row["schedule"], row["optimizer"]) == (
        "COMPLETE",
        "validation",
        kind,
        optimizer,
    )
    assert row["max_lr"] == trial.params["lr"] == lr
    assert row["schedule_words"] == trial.user_attrs[SCHEDULE]


# --- final rows -----------------------------------------------------------------------------


def test_final_rows_are_the_comparisons_per_seed_test_metrics(done: Done) -> None:
    comparison = _comparison(done.url)
    final = _rows(done.frame, "final")
    assert list(dict.fromkeys(final["arm"])) == list(comparison)
    assert set(comparison) - {SNAPSHOT_ARM} == set(ARMS)
    assert set(final["study"]) == {"tiny"}
    for name, arm in comparison.items():
        rows = final[final["arm"] == name]
        assert list(rows["value"]) == pytest.approx(arm["test_metric_per_seed"])
        assert list(rows["seed"]) == arm["seeds"]
        assert set(rows["value_on"]) == {"test"} and set(rows["state"]) == {"COMPLETE"}
        assert set(rows["schedule_words"]) == {arm["schedule"]}
        assert set(rows["optimizer"]) == {arm["optimizer"]}
        assert list(rows["epochs_run"]) == [arm["epochs"]] * len(rows)
        assert rows["trial"].isna().all() and rows["pruned_reason"].isna().all()
        if name == SNAPSHOT_ARM:  # the tuned runs' snapshots: no unit of their own
            continue
        # Each run's own unit: its wall time, its seconds inside training, who ran it.
        assert (rows["duration_s"] > 0).all() and (rows["train_s"] > 0).all()
        assert (rows["train_s"] <= rows["duration_s"]).all()
        assert rows["worker"].str.contains(":").all() and rows["datetime_start"].notna().all()
        params = arm["params"]
        if "schedule" in params:  # the tuned arm, Prodigy's cosine
            assert set(rows["schedule"]) == {params["schedule"]}
            for key in SCHEDULE_PARAMS:
                expected = params.get(key, math.nan)
                assert list(rows[key]) == pytest.approx([expected] * len(rows), nan_ok=True)
        else:
            assert set(rows["schedule"]) == {"constant"}
            assert list(rows["max_lr"]) == [params["lr"]] * len(rows)
    assert set(final.loc[final["arm"] == "adam-3e-4", "max_lr"]) == {ADAM_LR}


_SET_ATTR = """
UPDATE trial_user_attributes SET value_json = ? WHERE key = ? AND trial_id = (
    SELECT t.trial_id FROM trials t JOIN studies s ON t.study_id = s.study_id
    WHERE s.study_name = ? AND t.number = ?
)"""


def test_a_diverged_final_run_is_marked(done: Done, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    shutil.copy(done.path, copy)
    reason = "diverged in epoch 1: mean loss 99 > 4 x the first loss 1"
    # The final run of constant-cv's second seed stopped early (its unit says so).
    seed = final_seeds(done.config.seed, done.config.final_seeds)[1]
    runs = {
        t.number: FinalRun.from_dict(t.user_attrs[UNIT_FINAL_RUN])
        for t in _trials(_url(copy), "tiny/final")
    }
    ((number, run),) = [
        (n, r) for n, r in runs.items() if (r.arm, r.seed) == ("constant-cv", seed)
    ]
    run = dataclasses.replace(run, stop_reason=reason)
    db = sqlite3.connect(copy)  # a finished trial's attrs cannot change through Optuna
    with db:
        db.execute(_SET_ATTR, (json.dumps(run.to_dict()), UNIT_FINAL_RUN, "tiny/final", number))
    db.close()

    final = _rows(export_frame("tiny", storage=_url(copy)), "final")
    rows = final[final["arm"] == "constant-cv"]
    assert list(rows["state"]) == ["COMPLETE", "DIVERGED"]
    assert _cells(rows["pruned_reason"]) == [None, reason]
    assert _cells(rows["epochs_run"]) == [run.epochs, None]
    assert set(final.loc[final["arm"] != "constant-cv", "state"]) == {"COMPLETE"}


# --- CSV ------------------------------------------------------------------------------------


def test_a_csv_round_trip_keeps_columns_and_values(done: Done, tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    done.frame.to_csv(path, index=False)
    back = pd.read_csv(path)
    assert list(back.columns) == list(EXPORT_COLUMNS)
    assert len(back) == len(done.frame)
    frame = done.frame
    for column in EXPORT_COLUMNS:
        ours, theirs = frame[column], back[column]
        if column == "datetime_start":
            parsed = pd.to_datetime(theirs)
            assert _cells(parsed) == _cells(ours.astype("datetime64[us]")), column
        elif pd.api.types.is_numeric_dtype(ours) and not pd.api.types.is_bool_dtype(ours):
            expected = ours.to_numpy(dtype=float, na_value=np.nan)
            got = theirs.to_numpy(dtype=float, na_value=np.nan)
            np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=column)
        else:
            assert _cells(theirs) == _cells(ours), column
    # The JSON lists survive as JSON.
    cv = back[back["source"] == "constant-cv"]
    assert all(isinstance(json.loads(s), list) for s in cv["fold_scores"])


# --- other stored shapes --------------------------------------------------------------------


def test_a_study_without_trials_is_an_empty_frame_with_the_columns(tmp_path: Path) -> None:
    url = _url(tmp_path / "empty.db")
    optuna.create_study(study_name="empty", storage=url, direction="maximize")
    frame = export_frame("empty", storage=url)
    assert frame.empty and tuple(frame.columns) == EXPORT_COLUMNS
    assert str(frame.dtypes["trial"]) == "Int64" and str(frame.dtypes["value"]) == "float64"


def test_an_unexpected_param_is_appended_not_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = _url(tmp_path / "extra.db")
    study = optuna.create_study(study_name="extra", storage=url, direction="maximize")
    study.set_metric_names(["accuracy"])  # Optuna then names its value column value_accuracy
    lr = FloatDistribution(1e-4, 1.0, log=True)
    kind = CategoricalDistribution(["constant"])
    study.add_trial(
        optuna.trial.create_trial(
            params={"schedule": "constant", "max_lr": 0.1},
            distributions={"schedule": kind, "max_lr": lr},
            value=0.8,
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            params={"schedule": "constant", "max_lr": 0.2, "momentum": 0.9},
            distributions={"schedule": kind, "max_lr": lr, "momentum": FloatDistribution(0, 1)},
            value=0.7,
            state=TrialState.COMPLETE,
        )
    )
    with caplog.at_level(logging.WARNING, logger="lrsearch.export"):
        frame = export_frame("extra", storage=url)
    assert tuple(frame.columns) == (*EXPORT_COLUMNS, "params_momentum")
    assert _cells(frame["params_momentum"]) == [None, 0.9]
    assert list(frame["value"]) == pytest.approx([0.8, 0.7])
    assert list(frame["max_lr"]) == pytest.approx([0.1, 0.2])
    assert list(frame["source"]) == ["search", "search"]
    assert "momentum" in caplog.text


# --- errors ---------------------------------------------------------------------------------


def test_a_missing_database_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "lrsearch.db"
    with pytest.raises(LrsearchError, match="no study database at sqlite:///"):
        export_frame("tiny", storage=_url(path))
    assert not path.exists() and not path.parent.exists()


def test_a_missing_study_is_an_error(done: Done) -> None:
    before = done.path.read_bytes()
    with pytest.raises(LrsearchError, match=rf"^no study 'nope' in {done.url}$"):
        export_frame("nope", storage=done.url)
    assert done.path.read_bytes() == before


def test_exporting_writes_nothing(done: Done) -> None:
    before = done.path.read_bytes()
    export_frame("tiny", storage=done.url)
    assert done.path.read_bytes() == before


@pytest.mark.parametrize("name", ["", "../x", "tiny/constant-cv", "a b"])
def test_a_bad_name_is_an_error(name: str, tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(InvalidParameterError, match="study name"):
        export_frame(name, storage=_url(path))
    assert not path.exists()


# --- `lrsearch export` -----------------------------------------------------------------------


def test_cli_export_writes_the_frame_as_csv(done: Done, tmp_path: Path) -> None:
    out = tmp_path / "runs.csv"
    result = CliRunner().invoke(
        cli, ["export", "--study", "tiny", "--storage", done.url, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{len(done.frame)} rows: {out}\n"
    back = pd.read_csv(out)
    assert tuple(back.columns) == EXPORT_COLUMNS
    assert len(back) == len(done.frame)
    assert list(back["source"]) == list(done.frame["source"])
    np.testing.assert_allclose(back["value"], done.frame["value"].astype(float), equal_nan=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--study", "missing"], "no study 'missing' in "),
        (["--study", "tiny", "--out", "nodir/runs.csv"], "--out: folder 'nodir' does not exist"),
        (["--study", "tiny", "--out", "."], "--out: '.' is a folder; give a file name"),
    ],
)
def test_cli_export_bad_input_is_one_line_and_writes_nothing(
    done: Done, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if "--out" not in args:
        args = [*args, "--out", "runs.csv"]
    result = CliRunner().invoke(cli, ["export", "--storage", done.url, *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("lrsearch: error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
