"""A study that searches the optimizer too (config key ``optimizers``): one range test per
optimizer, reused on resume; each trial's LRs inside its optimizer's bounds; the tuned arm
trains with the optimizer it won with, and the table says which. Also a study with only some
arms (config key ``arms``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import tiny_task
from optuna.trial import TrialState

import lrsearch.pipeline.range_test
from lrsearch.pipeline.range_test import REDO_SWEEPS, Reading, read, redo_key, unit_key
from lrsearch.space import LRBounds
from lrsearch.store import UNIT, UNIT_RANGE_TEST, load_stored
from lrsearch.study import load_result, run_study

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

OPTIMIZERS = ("sgd", "adamw")


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("ran a range test again")


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    url = _url(tmp_path_factory.mktemp("multi") / "lrsearch.db")
    cfg = tiny_task.config(optimizers=OPTIMIZERS, n_trials=8, arms=("tuned", "constant-cv"))
    return url, run_study(cfg, storage=url)


def _readings(url: str) -> dict[str, Reading]:
    units = optuna.load_study(study_name="tiny/range-test", storage=url).get_trials()
    cfg = load_stored("tiny", storage=url).attrs["config"]
    return read(units, OPTIMIZERS, cfg)


def test_one_range_test_per_optimizer_each_with_its_optimizer(multi: tuple[str, Any]) -> None:
    url, _ = multi
    units = optuna.load_study(study_name="tiny/range-test", storage=url).get_trials()
    readings = _readings(url)
    # One unit per optimizer, and the redo's sweeps of each whose first reading was doubtful.
    redone = [o for o in OPTIMIZERS if readings[o].redo is not None]
    expected = [unit_key(o) for o in OPTIMIZERS]
    expected += [redo_key(o, r) for o in redone for r in range(REDO_SWEEPS)]
    assert sorted(t.user_attrs[UNIT] for t in units) == sorted(expected)
    assert all(t.state == TrialState.COMPLETE for t in units)
    assert all(not readings[o].first.confident for o in redone)
    result = load_result("tiny", storage=url)
    by_unit = {t.user_attrs[UNIT]: t.user_attrs[UNIT_RANGE_TEST] for t in units}
    # The range test each optimizer's search read: the redo where there was one.
    stored = {o: rt.to_dict() for o, rt in result.range_tests.items()}
    assert stored == {o: readings[o].range_test.to_dict() for o in OPTIMIZERS}
    assert result.range_test.to_dict() == stored["sgd"]  # the first's
    # Different optimizers, different curves: the sweeps really used each one.
    assert by_unit["range-test/sgd"]["losses"] != by_unit["range-test/adamw"]["losses"]


def test_each_trial_draws_from_its_own_optimizers_bounds(multi: tuple[str, Any]) -> None:
    url, result = multi
    study = optuna.load_study(study_name="tiny", storage=url)
    readings = _readings(url)
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 8
    assert {t.params["optimizer"] for t in trials} == set(OPTIMIZERS)
    for t in trials:
        name = t.params["optimizer"]
        # Inside its optimizer's bounds: where they started, grown by any extensions.
        rows = [r for r in result.bounds_history if r["optimizer"] == name]
        assert LRBounds(rows[0]["low"], rows[0]["high"]) == readings[name].bounds
        low, high = min(r["low"] for r in rows), max(r["high"] for r in rows)
        assert low <= t.params[f"{name}:max_lr"] <= high * (1 + 1e-9)
        assert not any(k.startswith(f"{o}:") for o in OPTIMIZERS if o != name for k in t.params)
        assert t.user_attrs["optimizer"] == name
        assert t.user_attrs["schedule"].startswith(name)
        assert ("adamw:weight_decay" in t.params) == (name == "adamw")
    # The seeds go first and take turns between the optimizers.
    seeded = [t.params["optimizer"] for t in trials if t.user_attrs.get("seeded")]
    assert seeded[:2] == list(OPTIMIZERS)
    for t in trials:  # each optimizer's seeds peak where its own reading puts them
        if t.user_attrs.get("seeded"):
            name = t.params["optimizer"]
            kind, peak = t.params[f"{name}:schedule"], t.params[f"{name}:max_lr"]
            dist = t.distributions[f"{name}:max_lr"]
            reading = readings[name]
            if kind == "triangular2":  # Smith's CLR at the top of the bounds in force
                assert peak == pytest.approx(dist.high)
            elif kind == "onecycle":
                assert peak == pytest.approx(min(max(reading.onecycle_peak, dist.low), dist.high))
            else:
                assert peak == pytest.approx(min(max(reading.peak, dist.low), dist.high))


def test_the_tuned_arm_trains_with_the_optimizer_it_won_with(multi: tuple[str, Any]) -> None:
    _, result = multi
    assert result.optimizer in OPTIMIZERS
    assert result.optimizer == result.best_params["optimizer"]
    tuned = result.comparison["tuned"]
    assert tuned["optimizer"] == result.optimizer
    assert ("weight decay" in tuned["schedule"]) == (result.optimizer == "adamw")
    assert result.comparison["constant-cv"]["optimizer"] == "sgd"  # the first optimizer
    table = result.table()
    assert list(table["arm"]) == ["tuned", "constant-cv"]  # only the configured arms
    words = {"sgd": "SGD", "adamw": "AdamW"}
    assert list(table["optimizer"]) == [words[result.optimizer], "SGD"]


def test_a_resumed_study_reuses_each_optimizers_range_test(
    multi: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, first = multi
    path = Path(url.removeprefix("sqlite:///"))
    copy = tmp_path / "copy.db"
    copy.write_bytes(path.read_bytes())
    monkeypatch.setattr(lrsearch.pipeline.range_test, "study_range_test", _boom)
    cfg = tiny_task.config(optimizers=OPTIMIZERS, n_trials=10, arms=("tuned", "constant-cv"))
    again = run_study(cfg, storage=_url(copy))
    search = optuna.load_study(study_name="tiny", storage=_url(copy))
    assert len(search.get_trials()) == 10
    assert again.range_test.to_dict() == first.range_test.to_dict()


def test_another_optimizers_list_is_refused_on_resume(multi: tuple[str, Any]) -> None:
    url, _ = multi
    from lrsearch.exceptions import LrsearchError

    with pytest.raises(LrsearchError, match=r"optimizers: \['sgd', 'adamw'\] -> \['adamw'\]"):
        run_study(tiny_task.config(optimizers=("adamw",), n_trials=8), storage=url)


def test_the_cv_seed_uses_the_first_optimizers_names(tmp_path: Path) -> None:
    # With several optimizers the constant-cv arm runs the first one: so does its seed.
    url = _url(tmp_path / "cvseed.db")
    cfg = tiny_task.config(
        optimizers=OPTIMIZERS,
        kinds=["cosine", "constant"],
        n_trials=4,
        arms=("tuned", "constant-cv"),
    )
    result = run_study(cfg, storage=url)
    chosen = result.comparison["constant-cv"]["params"]["lr"]
    study = optuna.load_study(study_name="tiny", storage=url)
    seeded = [t for t in study.trials if t.user_attrs.get("seeded")]
    first = OPTIMIZERS[0]
    assert [t.params["optimizer"] for t in seeded] == [*OPTIMIZERS, first]
    assert seeded[-1].params == {
        "optimizer": first,
        f"{first}:schedule": "constant",
        f"{first}:max_lr": chosen,
    }
