"""Tests for lrsearch/study.py: the whole pipeline on a tiny task, its storage contract, resume
(also after a killed worker), divergence and split discipline, in one process. Many workers on
one study: tests/test_workers.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import tiny_task
from assertions import seed_top
from optuna.trial import FrozenTrial, TrialState

import lrsearch.pipeline.arms
import lrsearch.pipeline.comparison
import lrsearch.pipeline.finalists
import lrsearch.pipeline.range_test
import lrsearch.pipeline.result
import lrsearch.pipeline.search
from lrsearch.choices import ARMS, SNAPSHOT_ARM
from lrsearch.config import StudyConfig
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.pipeline import bounds as _bounds
from lrsearch.pipeline.arms import ADAM_LR, healed_grid
from lrsearch.schedules import KINDS, Schedule
from lrsearch.space import LRBounds, seed_params, seed_peak
from lrsearch.store import history, load_stored, timings
from lrsearch.study import StudyResult, list_studies, load_result, run_study
from lrsearch.tasks import Data

TESTS = Path(__file__).resolve().parent
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
NAMES = (
    "tiny",
    "tiny/range-test",
    "tiny/constant-cv",
    "tiny/adam-3e-4",
    "tiny/prodigy",
    "tiny/schedule-free-adamw",
    "tiny/finalists",
    "tiny/final",
    "tiny/bounds",
    "tiny/runs",
)


def _stored_range_test(url: str) -> dict[str, Any]:
    """The study's range test as stored on its unit (``RangeTestResult.to_dict()``)."""
    reading = lrsearch.pipeline.range_test.load(load_stored("tiny", storage=url))
    assert reading is not None
    return reading.range_test.to_dict()


# lrsearch silences these at import; pytest resets warning filters for every test.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _trials(url: str, name: str = "tiny") -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def _finished(trials: list[FrozenTrial]) -> int:
    return sum(t.state in FINISHED for t in trials)


def _max_lr_high(trial: FrozenTrial) -> float:
    dist = trial.distributions["max_lr"]
    assert isinstance(dist, optuna.distributions.FloatDistribution) and dist.log
    return dist.high


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("called although the study already has what it computes")


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (lrsearch.pipeline.search, lrsearch.pipeline.arms, lrsearch.pipeline.comparison):
        monkeypatch.setattr(module, "train_task", _boom)
    monkeypatch.setattr(lrsearch.pipeline.finalists, "cv_scores", _boom)
    monkeypatch.setattr(lrsearch.pipeline.range_test, "study_range_test", _boom)


def _strict_json(text: str) -> Any:
    def reject(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=reject)


@dataclasses.dataclass(frozen=True)
class Done:
    """A finished study on the tiny task, shared by the contract tests."""

    path: Path
    url: str
    result: StudyResult
    config: StudyConfig


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Done:
    path = tmp_path_factory.mktemp("study") / "lrsearch.db"
    cfg = tiny_task.config()
    result = run_study(cfg, storage=_url(path))
    return Done(path, _url(path), result, cfg)


# --- the storage contract -------------------------------------------------------------------


def test_storage_holds_the_search_and_both_baselines(done: Done) -> None:
    assert set(optuna.get_all_study_names(done.url)) == set(NAMES)
    frame = list_studies(done.url)
    assert list(frame["study"]) == ["tiny"]  # its stages' studies are folded into its row
    row = frame.set_index("study").loc["tiny"]
    assert (row["search"], row["range test"], row["comparison"]) == ("6/6", True, True)
    grid = optuna.load_study(study_name="tiny/constant-cv", storage=done.url).user_attrs["grid"]
    arms = set(done.result.comparison or {}) - {SNAPSHOT_ARM}  # the tuned runs' ensemble
    assert (row["constant-cv"], row["final runs"], row["running"]) == (len(grid), len(arms) * 2, 0)
    assert (row["workers"], row["unfinished"]) == (1, 0)


def test_search_trials_carry_their_schedule(done: Done) -> None:
    trials = _trials(done.url)
    assert len(trials) == 6 == _finished(trials)
    rt = _stored_range_test(done.url)
    # The search space is the range test's, grown where a winner sat at its edge: max_lr is
    # searched up to the high bound in force when the trial ran.
    highs = [row["high"] for row in done.result.bounds_history]
    assert highs[0] == rt["high"]
    for t in trials:
        assert t.params["schedule"] in KINDS
        words = t.user_attrs["schedule"]
        assert isinstance(words, str) and words.startswith(t.params["schedule"] + " ")
        assert _max_lr_high(t) == pytest.approx(min(highs, key=lambda h: abs(h - _max_lr_high(t))))
        assert rt["low"] <= t.params["max_lr"] <= _max_lr_high(t) * (1 + 1e-9)
    # The literature's seeds run first.
    seeded = [t.number for t in trials if t.user_attrs.get("seeded")]
    assert seeded == list(range(len(seeded))) and len(seeded) >= 2
    # Smith's CLR at the range test's high bound, 1cycle at its steepest fall, the others over
    # its suggestion (all within [low, high]).
    for t in trials:
        if t.user_attrs.get("seeded"):
            top = seed_top(t.params["schedule"], rt, high=_max_lr_high(t))
            assert t.params["max_lr"] == pytest.approx(top)


def test_range_test_is_stored_as_json(done: Done) -> None:
    attrs = load_stored("tiny", storage=done.url).attrs
    rt = _stored_range_test(done.url)
    assert {"lrs", "losses", "suggestion", "low", "high"} <= set(rt)
    assert len(rt["lrs"]) == len(rt["losses"]) >= 5
    assert np.all(np.diff(rt["lrs"]) > 0)
    assert 0 < rt["low"] < rt["high"]
    assert rt["suggestion"] > 0
    bounds = done.result.range_test.bounds
    assert (rt["low"], rt["high"]) == (bounds.low, bounds.high)
    # The suggestion is for a run as long as a search trial.
    assert rt["total_steps"] == attrs["steps_per_epoch"]["search"] * done.config.epochs


def test_constant_cv_study_contract(done: Done) -> None:
    study = optuna.load_study(study_name="tiny/constant-cv", storage=done.url)
    # The grid over the range test's bounds, grown to the bounds the study ended with.
    records = optuna.load_study(study_name="tiny/bounds", storage=done.url).trials
    extensions = _bounds.history(records, "task")
    grid = healed_grid(done.result.range_test.bounds, done.config.cv_grid, extensions)
    assert len(grid) >= done.config.cv_grid
    trials = study.get_trials()
    assert sorted(t.params["lr"] for t in trials) == pytest.approx(grid, rel=1e-12)
    for t in trials:
        scores = t.user_attrs["fold_scores"]
        # A fold that diverges prunes the unit: the folds after it do not run.
        assert len(scores) == done.config.cv_folds or t.state == TrialState.PRUNED
        assert sum(t.user_attrs["fold_sizes"]) == tiny_task.N_TRAIN
        if t.state == TrialState.COMPLETE:
            assert t.value == pytest.approx(np.mean(scores))
    assert study.user_attrs["chosen_lr"] == done.result.constant_lr == study.best_params["lr"]
    assert study.user_attrs["grid"] == pytest.approx(grid)


def test_adam_study_contract(done: Done) -> None:
    (trial,) = _trials(done.url, "tiny/adam-3e-4")
    assert trial.state == TrialState.COMPLETE
    assert trial.params == {"lr": ADAM_LR}
    assert trial.user_attrs["optimizer"] == "Adam"


def test_comparison_contract(done: Done) -> None:
    comparison = load_result("tiny", storage=done.url).comparison
    assert comparison is not None
    assert set(comparison) - {SNAPSHOT_ARM} == set(ARMS)
    for name in ARMS:
        arm = comparison[name]
        per_seed = arm["test_metric_per_seed"]
        assert len(per_seed) == done.config.final_seeds
        assert arm["test_metric_mean"] == pytest.approx(np.mean(per_seed))
        assert arm["test_metric_std"] == pytest.approx(np.std(per_seed, ddof=1))
        assert arm["epochs"] == 2
        assert len(arm["test_curve_mean"]) == 2
        assert "epochs_to_target" in arm
        assert arm["epochs_to_target"] is None or 1 <= arm["epochs_to_target"] <= 2
        assert all(0.0 <= v <= 1.0 for v in per_seed)
    assert comparison["tuned"]["params"] == done.result.best_params
    assert comparison["constant-cv"]["params"] == {"lr": done.result.constant_lr}
    assert comparison["adam-3e-4"]["params"] == {"lr": ADAM_LR}
    assert "tuned_minus_this" not in comparison["tuned"]
    tuned = comparison["tuned"]["test_metric_mean"]
    for name in ARMS[1:]:
        diff = comparison[name]["tuned_minus_this"]
        assert diff["mean_diff"] == pytest.approx(tuned - comparison[name]["test_metric_mean"])
        assert diff["ci_low"] <= diff["mean_diff"] <= diff["ci_high"]
        assert diff["significant"] == (diff["ci_low"] > 0 or diff["ci_high"] < 0)
    assert done.result.comparison == comparison
    # The study's line in Optuna's own tools: a short summary of the same comparison.
    summary = optuna.load_study(study_name="tiny", storage=done.url).user_attrs["summary"]
    assert summary["test"] == {
        k: pytest.approx(v["test_metric_mean"], rel=1e-3) for k, v in comparison.items()
    }
    assert summary["tuned"] == done.result.schedule_words
    cost = done.result.cost
    assert cost is not None
    assert summary["cost"] == {
        "tuning": pytest.approx(cost.tuning, rel=1e-2),
        "verification": pytest.approx(cost.verification, rel=1e-2),
    }


def test_metric_direction_and_config_are_stored(done: Done) -> None:
    attrs = optuna.load_study(study_name="tiny", storage=done.url).user_attrs
    assert set(attrs) == {"metric", "direction", "summary"}  # a small summary, nothing bulky
    assert attrs["metric"] == "accuracy"
    assert attrs["direction"] == "maximize"
    # What the run was made with is on its trial of NAME/runs.
    (run,) = _trials(done.url, "tiny/runs")
    assert run.state == TrialState.COMPLETE
    assert run.user_attrs["config"] == done.config.to_dict() | {"epochs": 2, "batch_size": 20}
    assert run.user_attrs["config"]["task"] == "tiny_task:task"
    assert run.user_attrs["task"]["n_train"] == tiny_task.N_TRAIN
    assert run.user_attrs["run_record"]["status"] == "finished"
    assert load_stored("tiny", storage=done.url).attrs["config"] == run.user_attrs["config"]


def test_optunas_own_listing_stays_readable(done: Done) -> None:
    # `optuna studies` prints every study's user attrs on its line, padded to the widest: the
    # study's line is a summary, and the records live on the trials.
    optuna_cli = Path(sys.executable).with_name("optuna")
    listing = subprocess.run(
        [str(optuna_cli), "studies", "--storage", done.url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "tiny/runs" in listing and "'summary'" in listing
    assert len(listing.encode()) < 10_000


def test_everything_is_stored_as_plain_json(done: Done) -> None:
    # Optuna keeps attrs as JSON text; nothing may be a pickle or a non-standard NaN/Infinity.
    with sqlite3.connect(done.path) as db:
        for table in (
            "study_user_attributes",
            "study_system_attributes",
            "trial_user_attributes",
            "trial_system_attributes",
        ):
            for key, text in db.execute(f"SELECT key, value_json FROM {table}"):
                assert isinstance(text, str), (table, key)
                _strict_json(text)
    for name in NAMES:
        study = optuna.load_study(study_name=name, storage=done.url)
        json.dumps(study.user_attrs, allow_nan=False)
        for t in study.get_trials():
            json.dumps(t.user_attrs, allow_nan=False)


def test_load_result_rebuilds_the_result(done: Done) -> None:
    loaded = load_result("tiny", storage=done.url)
    for field in ("name", "metric", "direction", "best_params", "best_value", "constant_lr"):
        assert getattr(loaded, field) == getattr(done.result, field), field
    assert loaded.comparison == done.result.comparison
    assert loaded.schedule == done.result.schedule
    assert loaded.range_test.bounds == done.result.range_test.bounds
    assert loaded.bounds == done.result.bounds
    assert loaded.bounds_history == done.result.bounds_history
    assert loaded.warnings == done.result.warnings
    table = loaded.table()
    assert [arm for arm in table["arm"] if arm != SNAPSHOT_ARM] == list(ARMS)
    assert loaded.verdict().startswith("tuned ")


def test_schedule_for_rebuilds_the_tuned_schedule_in_your_own_steps(done: Done) -> None:
    result = done.result
    assert result.optimizers == ("task",)
    # In the study's own steps (200 examples in batches of 20), it is the stored schedule.
    own = result.schedule_for(steps_per_epoch=10, epochs=done.config.epochs)
    assert own == result.schedule
    # In another run's steps: the params' epochs times that run's steps per epoch.
    mine = result.schedule_for(steps_per_epoch=7, epochs=3)
    assert mine == Schedule.from_params(result.best_params, steps_per_epoch=7)
    for name in ("step_size", "warmup"):
        epochs = result.best_params.get(name)
        if epochs is not None:
            assert getattr(mine, name) == 7 * epochs


def test_schedule_for_reads_a_searched_optimizers_params(done: Done) -> None:
    params = {
        "optimizer": "adamw",
        "sgd:schedule": "constant",  # another optimizer's params are not this trial's
        "adamw:schedule": "cosine",
        "adamw:max_lr": 0.01,
        "adamw:base_lr": 0.001,
        "adamw:warmup": 1,
        "adamw:weight_decay": 0.05,
    }
    result = dataclasses.replace(done.result, best_params=params, optimizers=("sgd", "adamw"))
    setup = result.setup_for(steps_per_epoch=30, epochs=5)
    assert (setup.optimizer, setup.weight_decay) == ("adamw", 0.05)
    assert setup.schedule == Schedule("cosine", 0.01, base_lr=0.001, warmup=30)
    assert result.schedule_for(steps_per_epoch=30, epochs=5) == setup.schedule


@pytest.mark.parametrize(
    ("params", "steps_per_epoch", "epochs", "message"),
    [
        (
            {"schedule": "step", "max_lr": 0.1, "step_size": 4, "decay": 0.5},
            10,
            3,
            "step_size of 4 epochs is longer than the run's 3 epochs",
        ),
        (
            {"schedule": "onecycle", "max_lr": 0.1, "base_lr": 0.004},
            2,
            3,
            "total_steps must be at least 7 for onecycle",
        ),
        ({"schedule": "constant", "max_lr": 0.1}, 0, 3, "steps_per_epoch must be a positive"),
        ({"schedule": "constant", "max_lr": 0.1}, 10, 0, "epochs must be a positive integer"),
    ],
)
def test_schedule_for_refuses_a_run_the_schedule_does_not_fit(
    done: Done, params: dict[str, Any], steps_per_epoch: int, epochs: int, message: str
) -> None:
    result = dataclasses.replace(done.result, best_params=params)
    with pytest.raises(InvalidParameterError, match=message):
        result.schedule_for(steps_per_epoch=steps_per_epoch, epochs=epochs)


def test_a_changed_config_is_refused_and_nothing_is_written(
    done: Done, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy.db"
    shutil.copy(done.path, copy)
    before = copy.read_bytes()
    _no_training(monkeypatch)
    with pytest.raises(LrsearchError, match=r"another config \(epochs: 2 -> 3\)"):
        run_study(tiny_task.config(epochs=3), storage=_url(copy))
    # Trials read at another fidelity would not rank with the stored ones: a budget (which
    # plans compressed trials) cannot join a study searched with full runs.
    with pytest.raises(LrsearchError, match=r"another config \(fidelity: 1.0 -> 0.3333"):
        run_study(tiny_task.config(budget=30), storage=_url(copy))
    assert copy.read_bytes() == before


# --- resume ---------------------------------------------------------------------------------


def test_resume_continues_to_the_budget_and_a_finished_study_does_no_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _url(tmp_path / "resume.db")
    run_study(tiny_task.config(n_trials=3), storage=url, skip_baselines=True)
    first = _trials(url)
    assert _finished(first) == 3
    stored_rt = _stored_range_test(url)

    with monkeypatch.context() as patch:
        patch.setattr(lrsearch.pipeline.range_test, "study_range_test", _boom)
        second = run_study(tiny_task.config(n_trials=6), storage=url)
    trials = _trials(url)
    assert _finished(trials) == 6 == len(trials)
    assert [(t.number, t.params, t.value) for t in trials[:3]] == [
        (t.number, t.params, t.value) for t in first
    ]
    assert _stored_range_test(url) == stored_rt
    assert second.comparison is not None
    assert load_result("tiny", storage=url).comparison == second.comparison

    # Finished: run it again and nothing is trained, nothing is added but the run's own record,
    # the same result.
    counts = {name: len(_trials(url, name)) for name in NAMES}
    _no_training(monkeypatch)
    third = run_study(tiny_task.config(n_trials=6), storage=url)
    assert third.comparison == second.comparison
    assert third.best_params == second.best_params
    assert third.constant_lr == second.constant_lr
    counts["tiny/runs"] += 1
    assert {name: len(_trials(url, name)) for name in NAMES} == counts
    # A smaller budget than what is done runs nothing either.
    fourth = run_study(tiny_task.config(n_trials=4), storage=url)
    assert fourth.comparison == second.comparison
    assert len(_trials(url)) == 6


def _sqlite_rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of ``query`` on the database another process is writing (read-only, never creates)."""
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(query).fetchall()
    except sqlite3.OperationalError:  # tables not made yet, or busy: ask again
        return []


def test_a_killed_worker_is_resumed_to_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "killed.db"
    url = _url(path)
    log = tmp_path / "worker.log"
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import tiny_task
        from lrsearch.study import run_study
        run_study(
            tiny_task.config(task="tiny_task:slow_task"),
            storage={url!r},
            skip_baselines=True,
            heartbeat_interval=1,
            grace_period=2,
        )
        """
    )
    mid_trial = (
        "SELECT DISTINCT t.number FROM trials t JOIN trial_intermediate_values v "
        "ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING'"
    )
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=err, stderr=err)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the worker ended before it was killed:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the worker finished no trials in 90 s:\n{log.read_text()}")
            states = [s for (s,) in _sqlite_rows(path, "SELECT state FROM trials")]
            # Kill it inside a trial (past its first epoch) after two trials are done.
            if sum(s in ("COMPLETE", "PRUNED") for s in states) >= 2 and _sqlite_rows(
                path, mid_trial
            ):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    orphans = {t.number: t for t in _trials(url) if t.state == TrialState.RUNNING}
    assert orphans, "the kill left no trial running"
    done_before = _finished(_trials(url))
    stored_rt = _stored_range_test(url)
    time.sleep(3)  # past the grace period: the orphan's heartbeat is stale from the start

    monkeypatch.setattr(lrsearch.pipeline.range_test, "study_range_test", _boom)
    run_study(
        tiny_task.config(task="tiny_task:slow_task"),
        storage=url,
        skip_baselines=True,
        heartbeat_interval=1,
        grace_period=2,
        task=tiny_task.task(),  # the same task, without the sleeps
    )
    trials = _trials(url)
    assert done_before < 6
    assert _finished(trials) == 6
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for number, orphan in orphans.items():
        assert trials[number].state == TrialState.FAIL
        (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert retry.state in FINISHED
        assert retry.params == orphan.params
    assert _stored_range_test(url) == stored_rt


# --- divergence -----------------------------------------------------------------------------


def test_a_diverging_trial_is_pruned_with_its_reason_and_the_study_goes_on(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path / "diverge.db")
    study = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    study.enqueue_trial({"schedule": "constant", "max_lr": 1e3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Optuna: 1e3 is outside the LR range
        result = run_study(tiny_task.config(n_trials=5), storage=url, skip_baselines=True)
    trials = _trials(url)
    bad = trials[0]
    assert bad.params == {"schedule": "constant", "max_lr": 1e3}
    assert bad.state == TrialState.PRUNED
    assert any(w in bad.user_attrs["pruned_reason"] for w in ("non-finite", "diverged"))
    assert _finished(trials) == 5
    assert sum(t.state == TrialState.COMPLETE for t in trials[1:]) >= 3
    assert result.trial_states.get("PRUNED", 0) >= 1
    assert math.isfinite(result.best_value) and result.best_params != bad.params


def test_a_search_where_every_trial_diverges_is_an_error(tmp_path: Path) -> None:
    url = _url(tmp_path / "all.db")
    cfg = tiny_task.config(n_trials=2, kinds=["constant"])
    with pytest.raises(LrsearchError, match="no search trial completed"):
        run_study(cfg, storage=url, skip_baselines=True, search_bounds=LRBounds(1e3, 1e5))
    trials = _trials(url)
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    for t in trials:
        assert 1e3 <= t.params["max_lr"] <= 1e5
        assert any(w in t.user_attrs["pruned_reason"] for w in ("non-finite", "diverged"))


def test_the_seeds_peak_where_seed_peak_reads_the_range_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tiny task's default peak reaches its high bound; at 0 decades the seeds peak at the
    # suggestion itself, below high: the study must pass the range test's reading through.
    monkeypatch.setattr(
        "lrsearch.pipeline.range_test.seed_peak", lambda s, h: seed_peak(s, h, decades=0.0)
    )
    url = _url(tmp_path / "peak.db")
    run_study(tiny_task.config(n_trials=3), storage=url, skip_baselines=True)
    rt = _stored_range_test(url)
    assert rt["suggestion"] < rt["high"]
    seeded = [t for t in _trials(url) if t.user_attrs.get("seeded")]
    assert [t.params["schedule"] for t in seeded] == ["triangular2", "onecycle", "sgdr"]
    assert [t.params["max_lr"] for t in seeded] == [
        pytest.approx(rt["high"]),
        pytest.approx(seed_top("onecycle", rt)),
        pytest.approx(rt["suggestion"]),
    ]
    assert seed_top("onecycle", rt) < rt["high"]  # the steepest fall, not Smith's high


def test_search_bounds_and_no_seeds_for_ablations(tmp_path: Path) -> None:
    url = _url(tmp_path / "ablation.db")
    run_study(
        tiny_task.config(n_trials=3),
        storage=url,
        skip_baselines=True,
        search_bounds=LRBounds(1e-3, 1e-2),
        enqueue_seeds=False,
    )
    trials = _trials(url)
    assert not [t for t in trials if t.user_attrs.get("seeded")]
    for t in trials:
        assert _max_lr_high(t) == pytest.approx(1e-2)
        assert 1e-3 <= t.params["max_lr"] <= 1e-2
    # The range test still runs and is stored, with its own bounds.
    rt = _stored_range_test(url)
    assert rt["high"] != pytest.approx(1e-2)


# --- split discipline -----------------------------------------------------------------------


def test_the_test_data_is_read_only_by_the_final_comparison(tmp_path: Path) -> None:
    url = _url(tmp_path / "split.db")
    cfg = tiny_task.config()
    reads: list[str] = []

    def load_test() -> Data:
        grid = optuna.load_study(study_name="tiny/constant-cv", storage=url).user_attrs["grid"]
        want = {"tiny": cfg.n_trials, "tiny/constant-cv": len(grid), "tiny/adam-3e-4": 1}
        for name, n in want.items():
            try:
                trials = _trials(url, name)
            except KeyError:
                raise RuntimeError(f"test data read before study {name} existed") from None
            if len(trials) != n or _finished(trials) != n:
                states = [t.state.name for t in trials]
                raise RuntimeError(f"test data read before study {name} finished: {states}")
        reads.append("read")
        return tiny_task.data(tiny_task.N_TEST, seed=1)

    result = run_study(cfg, storage=url, task=tiny_task.task(test=load_test))
    assert reads == ["read"]
    assert result.comparison is not None
    assert set(result.comparison) - {SNAPSHOT_ARM} == set(ARMS)


def test_a_search_without_baselines_never_reads_the_test_data(tmp_path: Path) -> None:
    url = _url(tmp_path / "search.db")

    def never() -> Data:
        raise AssertionError("the test data was read")

    result = run_study(
        tiny_task.config(n_trials=3),
        storage=url,
        skip_baselines=True,
        task=tiny_task.task(test=never),
    )
    assert result.comparison is None and result.constant_lr is None
    assert sorted(optuna.get_all_study_names(url)) == [
        "tiny",
        "tiny/bounds",
        "tiny/range-test",
        "tiny/runs",
    ]
    assert "test" not in optuna.load_study(study_name="tiny", storage=url).user_attrs["summary"]


# --- the study's record (timings and history accumulate, nothing is overwritten) ------------


def _snapshot(url: str) -> dict[str, Any]:
    """Every study's user and system attrs and every trial, as stored."""
    out: dict[str, Any] = {}
    storage = optuna.storages.get_storage(url)
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        out[name] = (
            study.user_attrs,
            storage.get_study_system_attrs(storage.get_study_id_from_name(name)),
            [(t.number, t.state, t.params, t.values, t.user_attrs) for t in study.get_trials()],
        )
    return out


def test_a_rerun_of_a_finished_study_adds_its_history_entry_and_nothing_else(
    done: Done, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy.db"
    shutil.copy(done.path, copy)
    url = _url(copy)
    before = _snapshot(url)
    first = load_result("tiny", storage=url)
    _no_training(monkeypatch)
    again = run_study(done.config, storage=url)
    after = _snapshot(url)
    runs = history(load_stored("tiny", storage=url))
    assert len(runs) == 2
    assert runs[0].status == runs[1].status == "finished"
    assert runs[1].units == {} and runs[0].n_units > 0
    # Only the new run's trial was added; the timings are the units', unchanged.
    assert after["tiny/runs"][2][:1] == before["tiny/runs"][2]
    assert [t[1] for t in after["tiny/runs"][2]] == [TrialState.COMPLETE] * 2
    assert {k: v for k, v in after.items() if k != "tiny/runs"} == {
        k: v for k, v in before.items() if k != "tiny/runs"
    }
    assert again.timings == first.timings == done.result.timings
    assert again.comparison == first.comparison


def test_timings_are_the_units_whoever_ran_them(done: Done) -> None:
    stored = load_stored("tiny", storage=done.url)
    spent = timings(stored)
    runs = history(stored)
    assert spent.units == sum(r.n_units for r in runs)
    for stage in ("range_test", "search", "constant_cv", "adam", "finalists", "final"):
        assert spent.stages[stage].units == runs[0].units.get(stage, 0) > 0
        assert spent.stages[stage].seconds > 0
    assert spent.stages["search"].units == done.config.n_trials
    assert 0 < spent.inside_training < spent.busy
    assert spent.wall >= max(s.seconds for s in spent.stages.values())
    assert done.result.timings == spent.to_dict()
    record = runs[0]
    assert record.host and record.pid > 0 and record.device == "cpu"
    assert set(record.versions) == {"lrsearch", "optuna", "torch", "python"}
    assert record.storage == done.url and record.ended is not None


def test_a_plateau_study_stores_the_lrs_it_trained_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _url(tmp_path / "plateau.db")
    cfg = tiny_task.config(kinds=["plateau"], n_trials=3, epochs=3)
    watched: dict[str, list[tuple[int, int, int]]] = {"search": [], "cv": [], "final": []}

    def spy(where: str, real: Any) -> Any:
        def train(task: Any, data: Any, **kwargs: Any) -> Any:
            if kwargs["schedule"].kind == "plateau":
                sizes = (len(data[0]), len(kwargs["plateau_data"][0]))
                watched[where].append((*sizes, len(kwargs["eval_data"][0])))
            return real(task, data, **kwargs)

        return train

    for where, module in [
        ("search", lrsearch.pipeline.search),
        ("cv", lrsearch.pipeline.arms),
        ("final", lrsearch.pipeline.comparison),
    ]:
        monkeypatch.setattr(module, "train_task", spy(where, module.train_task))
    result = run_study(cfg, storage=url)
    for t in _trials(url):
        lrs = t.user_attrs["epoch_lrs"]
        assert len(lrs) == t.user_attrs["epochs_run"] and lrs[0] == t.params["max_lr"]
        assert t.user_attrs["lr_peak"] == max(lrs)
        assert t.user_attrs["lr_mean"] == pytest.approx(float(np.mean(lrs)))
    assert result.comparison is not None
    assert result.comparison["tuned"]["schedule"].startswith("plateau")
    # Wherever a plateau schedule trains it watches a split of what it was given, never what
    # it is scored on: the search fits on 80% of search-train and watches the rest (scored on
    # validation); each finalist's CV fold likewise; the tuned arm's final runs fit on
    # search-train and watch validation (scored on test).
    n_val = tiny_task.N_TRAIN - int(tiny_task.N_TRAIN * (1 - cfg.validation_fraction))
    n_fit = tiny_task.N_TRAIN - n_val
    n_watch = round(cfg.validation_fraction * n_fit)
    assert set(watched["search"]) == {(n_fit - n_watch, n_watch, n_val)}
    assert len(watched["search"]) == cfg.n_trials
    fold = tiny_task.N_TRAIN // cfg.cv_folds
    assert watched["cv"] and all(
        fit + watch + score == tiny_task.N_TRAIN
        and watch == pytest.approx(cfg.validation_fraction * (fit + watch), abs=1)
        for fit, watch, score in watched["cv"]
    )
    assert all(abs(score - fold) <= 1 for _, _, score in watched["cv"])
    n_test = len(tiny_task.task().test[0])
    assert watched["final"] == [(n_fit, n_val, n_test)] * cfg.final_seeds


def test_data_too_coarsely_grouped_for_a_split_fails_before_anything_is_written(
    tmp_path: Path,
) -> None:
    # 5 groups: the validation split takes one, the CV folds (2) split the five, but a plateau
    # run's watched split of the four search-train groups needs five: a clear error up front,
    # not a failure in the search after trials were stored.
    grouped = dataclasses.replace(tiny_task.task(), groups=np.repeat(np.arange(5), 40))
    db = tmp_path / "grouped.db"
    with pytest.raises(InvalidParameterError, match="to watch a plateau schedule's metric"):
        run_study(tiny_task.config(kinds=["plateau", "cosine"]), storage=_url(db), task=grouped)
    assert not db.exists()
    # Without plateau the same data splits: the study runs.
    result = run_study(
        tiny_task.config(kinds=["cosine"], n_trials=2, arms=["tuned"], finalists=1),
        storage=_url(db),
        task=grouped,
    )
    assert result.comparison is not None and db.exists()


def _force_lowest_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tiny task's CV grid picks its top LR, where the literature's seeds peak too: choosing
    # the lowest tells the CV seed apart from them.
    for module in (lrsearch.pipeline.arms, lrsearch.pipeline.result):  # the run, the reader
        monkeypatch.setattr(module, "chosen_lr", lambda trials, grid, *, maximize: min(grid))


def test_the_cv_chosen_constant_seeds_the_search_after_the_literatures_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _force_lowest_constant(monkeypatch)
    url = _url(tmp_path / "cvseed.db")
    result = run_study(tiny_task.config(n_trials=7, cv_grid=3), storage=url)
    assert result.comparison is not None
    chosen = result.comparison["constant-cv"]["params"]["lr"]
    grid = optuna.load_study(study_name="tiny/constant-cv", storage=url).get_trials()
    assert chosen == min(t.params["lr"] for t in grid)
    trials = _trials(url)
    seeded = [t for t in trials if t.user_attrs.get("seeded")]
    assert [t.number for t in seeded] == list(range(6))
    assert [t.params["schedule"] for t in seeded[-1:]] == ["constant"]
    # At the grid's low end, which is the bounds' low: just inside max_lr's range.
    assert seeded[-1].params["max_lr"] == pytest.approx(chosen, rel=1e-12)
    assert chosen < result.range_test.bounds.high
    assert all(t.params["schedule"] != "constant" for t in seeded[:-1])
    # The CV grid ran first: the unit of the chosen LR finished before the first search trial
    # began (the grid grows after the search only where the search widened the bounds).
    (unit,) = [t for t in grid if t.params["lr"] == chosen]
    assert unit.datetime_complete is not None
    assert unit.datetime_complete <= min(
        t.datetime_start for t in trials if t.datetime_start is not None
    )


@pytest.mark.parametrize(
    ("changes", "skip"),
    [
        ({"kinds": ["cosine", "wsd", "onecycle", "exponential"]}, False),  # constant not searched
        ({"arms": ["tuned", "adam-3e-4"]}, False),  # no CV grid
        ({}, True),  # search only
    ],
)
def test_no_cv_seed_without_the_constant_kind_or_the_cv_arm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any], skip: bool
) -> None:
    _force_lowest_constant(monkeypatch)
    url = _url(tmp_path / "nocvseed.db")
    cfg = tiny_task.config(n_trials=7, cv_grid=3, **changes)
    run_study(cfg, storage=url, skip_baselines=skip)
    seeded = [t for t in _trials(url) if t.user_attrs.get("seeded")]
    assert seeded and not [t for t in seeded if t.params["schedule"] == "constant"]
    assert len(seeded) == len(
        seed_params(LRBounds(1e-3, 1.0), steps_per_epoch=10, epochs=2, kinds=cfg.kinds)
    )
