"""Tests for lrsearch/pipeline/budget.py: a budget plans the tuning stages, never past it."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from pathlib import Path
from typing import Any

import pytest
import tiny_task
from click.testing import CliRunner

from lrsearch.cli import cli
from lrsearch.config import StudyConfig, load_config
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.pipeline import budget as _budget
from lrsearch.pipeline.budget import BudgetPlan, Sizes, plan, stored_plan
from lrsearch.pipeline.context import prepare
from lrsearch.store import load_stored
from lrsearch.study import run_study

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

DIGITS = Sizes(n_train=1347, batch_size=32, epochs=20)
TINY = Sizes(n_train=tiny_task.N_TRAIN, batch_size=20, epochs=2)

TINY_TOML = """\
task = "tiny_task:task"
epochs = 2
final_seeds = 2
threads = 1
device = "cpu"

[range_test]
num_iter = 20
"""


def _cfg(**keys: Any) -> StudyConfig:
    return StudyConfig(name="b", task="digits", **keys)


def _affordable(sizes: Sizes, cfg: StudyConfig) -> float:
    """The least budget: the range test without a redo and one trial at the fidelity the plan
    trains."""
    if "fidelity" not in (cfg.given or ()):
        cfg = cfg.replace(fidelity=_budget.FIDELITY)
    cfg = dataclasses.replace(cfg, range_redo=0)
    return _budget.range_test_runs(cfg, sizes) + _budget.trial_runs(cfg, sizes)


def _given(keys: dict[str, Any], budget: float) -> StudyConfig:
    """A config that set exactly ``keys`` (and the budget), as a TOML file would."""
    return StudyConfig(name="b", task="digits", budget=budget, **keys, given=frozenset(keys))


SIZES = [DIGITS, TINY, Sizes(60_000, 128, 10), Sizes(500, 64, 3), Sizes(97, 7, 1)]
CONFIGS: list[dict[str, Any]] = [
    {},
    {"validation_fraction": 0.5},
    {"optimizers": ("task", "adamw"), "range_repeats": 3},
    {"arms": ("tuned", "adam-3e-4")},
    {"range_num_iter": 20},
]
BUDGETS = [0.5, 1, 2, 2.5, 3, 5, 7.5, 10, 20, 35, 50, 100, 300, 1000]


@pytest.mark.parametrize(("sizes", "keys"), list(itertools.product(SIZES, CONFIGS)))
def test_the_plan_never_exceeds_the_budget(sizes: Sizes, keys: dict[str, Any]) -> None:
    for budget in BUDGETS:
        cfg = _cfg(budget=budget, **keys)
        if budget < _affordable(sizes, cfg):
            with pytest.raises(InvalidParameterError, match="budget must hold the range test"):
                plan(cfg, sizes)
            continue
        chosen = plan(cfg, sizes)
        assert chosen.total <= budget * (1 + 1e-9)
        assert chosen.n_trials >= 1 and chosen.finalists >= 1 and chosen.cv_folds >= 2
        # the redo keeps the most sweeps that leave the range test at most its share
        redo = chosen.range_redo
        assert redo == 0 or chosen.range_test <= _budget.RANGE_SHARE * budget * (1 + 1e-9)
        if redo < 3:
            more = _budget.range_test_runs(dataclasses.replace(cfg, range_redo=redo + 1), sizes)
            assert more > _budget.RANGE_SHARE * budget
        assert chosen == plan(cfg, sizes)  # pure: the same config plans the same
        assert plan(chosen.apply(cfg), sizes) == chosen  # a planned config replans the same
        assert "\n" not in chosen.describe()


SET_KEYS: list[dict[str, Any]] = [
    {"n_trials": 12},
    {"cv_folds": 3},
    {"cv_grid": 5, "finalists": 3},
    {"arms": ("tuned", "constant-cv")},
    {"n_trials": 4, "cv_folds": 2, "cv_grid": 2, "finalists": 2},
]


@pytest.mark.parametrize(("sizes", "keys"), list(itertools.product(SIZES, SET_KEYS)))
def test_keys_set_are_kept_or_named_in_the_error(sizes: Sizes, keys: dict[str, Any]) -> None:
    for budget in BUDGETS:
        cfg = _given(keys, budget)
        try:
            chosen = plan(cfg, sizes)
        except InvalidParameterError as error:
            words = str(error)
            assert "budget must hold" in words or all(key in words for key in keys)
            continue
        assert chosen.total <= budget * (1 + 1e-9)
        assert all(getattr(chosen, key) == value for key, value in keys.items())


def test_more_budget_never_plans_fewer_trials_or_a_poorer_cv() -> None:
    plans = [plan(_cfg(budget=b), DIGITS) for b in BUDGETS if b >= _affordable(DIGITS, _cfg())]
    for smaller, larger in itertools.pairwise(plans):
        assert larger.total >= smaller.total
        assert (larger.cv_folds, larger.cv_grid) >= (smaller.cv_folds, smaller.cv_grid) or (
            "constant-cv" not in smaller.arms
        )


def test_the_planner_uses_no_clock_and_no_random_numbers() -> None:
    source = inspect.getsource(_budget)
    for word in ("random", "time", "datetime", "torch.", "np.", "optuna"):
        assert f"import {word}" not in source and f"{word}(" not in source


def test_the_bounds_count_the_redo_and_the_healing_points() -> None:
    cfg = _cfg()
    # 100 steps, then 3 redo sweeps of 400; a digits run is 20 epochs of 43 steps.
    assert _budget.range_test_runs(cfg, DIGITS) == pytest.approx(1300 / 860)
    assert _budget.EXTRA_POINTS == 6
    chosen = plan(_cfg(budget=200), DIGITS)
    point = _budget.cv_point_runs(chosen.cv_folds, DIGITS)
    assert chosen.constant_cv == pytest.approx((chosen.cv_grid + 6) * point)
    assert point * 860 == 5 * 20 * 34  # five folds, each 20 epochs over 1347 - 269 examples


def test_a_small_budget_plans_fewer_redo_sweeps_and_says_so() -> None:
    # digits: a 100-step sweep and 3 x 400 redo steps are 1.51 runs; half of 2 holds 1 sweep
    small, fits = plan(_cfg(budget=2), DIGITS), plan(_cfg(budget=5), DIGITS)
    assert (small.range_redo, fits.range_redo) == (1, 3)
    assert small.range_test == pytest.approx(500 / 860)
    assert "a 1-sweep range-test redo" in small.describe()
    assert "redo" not in fits.describe()
    assert small.apply(_cfg(budget=2)).range_redo == 1
    none = plan(_cfg(budget=0.5), DIGITS)
    assert none.range_redo == 0 and "no range-test redo" in none.describe()
    # set: kept, even where the plan would take fewer
    assert plan(_given({"range_redo": 2}, 3), DIGITS).range_redo == 2


def test_small_budgets_shrink_the_cv_and_the_finalists_first() -> None:
    small, large = plan(_cfg(budget=5), DIGITS), plan(_cfg(budget=300), DIGITS)
    assert small.finalists == 1 and "constant-cv" not in small.arms
    assert small.n_trials >= 1 and small.describe().startswith("budget 5 runs: ")
    assert (large.cv_folds, large.cv_grid, large.finalists) == (5, 8, 5)
    assert "constant-cv" in large.arms and large.n_trials > 40


def test_keys_set_are_kept_and_the_rest_planned_around_them() -> None:
    chosen = plan(_given({"n_trials": 7, "cv_folds": 3}, 40), DIGITS)
    assert chosen.n_trials == 7 and chosen.cv_folds == 3
    assert chosen.total <= 40
    # constant-cv asked for: kept (its cheapest grid) where a budget alone would drop it
    arms = ("tuned", "constant-cv")
    assert "constant-cv" not in plan(_cfg(budget=12), DIGITS).arms
    assert "constant-cv" in plan(_given({"arms": arms}, 12), DIGITS).arms


def test_a_budget_flag_replans_the_files_keys_but_not_flags_beside_it() -> None:
    # a --budget flag replans whatever the file sets (digits.toml: its own budget of 20)
    flagged = load_config("digits", overrides={"budget": 10})
    assert flagged.given == {"budget"}
    cfg, *_ = prepare(flagged)
    assert cfg.n_trials == plan(flagged, DIGITS).n_trials < 60
    both = load_config("digits", overrides={"budget": 10, "n_trials": 3})
    assert plan(both, DIGITS).n_trials == 3


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (_given({"n_trials": 50}, 10), "budget 10 runs cannot hold the keys set: n_trials=50"),
        (_given({"finalists": 5, "cv_folds": 5}, 6), "cannot hold the keys set: cv_folds=5"),
        (_cfg(budget=0.3), "budget must hold the range test (at most 0.12 runs) and one search"),
        (
            _given({"range_redo": 3}, 1.7),
            "budget must hold the range test (at most 1.51 runs) and one search",
        ),
    ],
)
def test_an_impossible_budget_is_a_one_line_error(cfg: StudyConfig, message: str) -> None:
    with pytest.raises(InvalidParameterError) as error:
        plan(cfg, DIGITS)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("budget", [0, -1.5, float("nan")])
def test_a_budget_must_be_positive(budget: float) -> None:
    with pytest.raises(InvalidParameterError, match="budget must be"):
        _cfg(budget=budget)


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "tiny.toml").write_text(TINY_TOML, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "0"], "budget must be a positive finite number; got 0.0"),
        (["--budget", "-2"], "budget must be a positive finite number; got -2.0"),
        (["--budget", "1.2"], "budget must hold the range test (at most 1.00 runs)"),
        (["--budget", "20", "--n-trials", "30"], "cannot hold the keys set: n_trials=30"),
    ],
)
def test_a_bad_budget_exits_2_and_writes_nothing(cwd: Path, args: list[str], message: str) -> None:
    url = f"sqlite:///{cwd}/x.db"
    result = CliRunner().invoke(cli, ["run", "--study", "tiny", "--storage", url, *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("lrsearch: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (cwd / "x.db").exists()


def test_a_study_with_a_budget_spends_at_most_it(cwd: Path) -> None:
    url = f"sqlite:///{cwd}/x.db"
    result = CliRunner().invoke(
        cli, ["run", "--study", "tiny", "--storage", url, "--budget", "30"]
    )
    assert result.exit_code == 0, result.output
    stored = load_stored("tiny", storage=url)
    chosen = stored_plan(stored.attrs)
    assert isinstance(chosen, BudgetPlan)
    expected = plan(load_config("tiny", overrides={"budget": 30}), TINY)
    assert chosen == expected
    assert result.stdout.startswith(expected.describe() + "\n")
    config = stored.attrs["config"]
    assert config["budget"] == 30 and config["n_trials"] == expected.n_trials
    assert (config["cv_grid"], config["cv_folds"]) == (expected.cv_grid, expected.cv_folds)
    spent = load_result_cost(url)
    assert 0 < spent <= 30
    # Run again (a resumed study, or another worker): the same plan, nothing more to do.
    again = CliRunner().invoke(cli, ["run", "--study", "tiny", "--storage", url, "--budget", "30"])
    assert again.exit_code == 0, again.output
    assert stored_plan(load_stored("tiny", storage=url).attrs) == expected
    assert load_result_cost(url) == spent
    # Going on with a budget too small for the range-test redo this study was planned with:
    # refused, saying why, and nothing changed.
    small = CliRunner().invoke(cli, ["run", "--study", "tiny", "--storage", url, "--budget", "2"])
    assert small.exit_code == 2, small.output
    assert "keeps the range-test redo it was planned with, range_test.redo = 3" in small.stderr
    assert len(small.stderr.strip().splitlines()) == 1
    assert load_result_cost(url) == spent


def test_a_larger_budget_goes_on_with_the_redo_the_study_was_planned_with(cwd: Path) -> None:
    url = f"sqlite:///{cwd}/x.db"
    run = ["run", "--study", "tiny", "--storage", url, "--budget"]
    small = plan(load_config("tiny", overrides={"budget": 2}), TINY)
    assert small.range_redo == 0  # a run of 20 steps: no redo fits in half of 2 runs
    first = CliRunner().invoke(cli, [*run, "2"])
    assert first.exit_code == 0, first.output
    # Raised to 30 (which alone plans the full 3-sweep redo): the study goes on with no redo,
    # and the rest of the 30 runs planned around it.
    assert plan(load_config("tiny", overrides={"budget": 30}), TINY).range_redo == 3
    more = CliRunner().invoke(cli, [*run, "30"])
    assert more.exit_code == 0, more.output
    kept = load_config("tiny", overrides={"budget": 30, "range_test.redo": 0})
    expected = plan(kept, TINY)
    result = load_stored("tiny", storage=url)
    done = [t for t in result.search.trials if t.state.is_finished()]
    assert len(done) == expected.n_trials > small.n_trials
    assert 0 < load_result_cost(url) <= 30
    # A redo set to another count than the stored one is a conflict that names the key.
    with pytest.raises(LrsearchError, match=r"range_test.redo: 0 -> 1 \(set it to 0, or leave"):
        run_study("tiny", storage=url, overrides={"budget": 30, "range_test.redo": 1})


def load_result_cost(url: str) -> float:
    from lrsearch.pipeline.cost import cost_of

    return cost_of(load_stored("tiny", storage=url)).tuning
