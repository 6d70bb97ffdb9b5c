"""Tests for lrsearch/pipeline/comparison.py: statistics against scipy and hand values, the
runs of each arm, their summary, and the comparison as a stage of units."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import tiny_task
import torch
from scipy import stats

from lrsearch.choices import ARMS, SNAPSHOT_ARM
from lrsearch.pipeline.arms import ADAM_LR
from lrsearch.pipeline.comparison import (
    Arm,
    arm_key,
    compare,
    epochs_to_target,
    make_arms,
    paired_interval,
    run_arm,
    summarize,
)
from lrsearch.report import comparison_table
from lrsearch.schedules import Schedule
from lrsearch.store import FinalRun
from lrsearch.tasks import Data, Task, steps_per_epoch
from lrsearch.training import train_task

CPU = torch.device("cpu")


def _t_interval(d: list[float], level: float) -> tuple[float, float, float]:
    """The paired Student-t interval and two-sided p-value, from the textbook formula."""
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    p = 2 * float(stats.t.sf(abs(mean / se), n - 1))
    return mean - half, mean + half, p


def test_paired_interval_matches_the_textbook_t_interval() -> None:
    a, b = [0.9, 0.92, 0.91], [0.8, 0.83, 0.8]
    r = paired_interval(a, b)
    low, high, p = _t_interval([x - y for x, y in zip(a, b, strict=True)], 0.95)
    assert r["mean_diff"] == pytest.approx(0.1)
    assert r["ci_low"] == pytest.approx(low)
    assert r["ci_high"] == pytest.approx(high)
    assert r["ci_low"] == pytest.approx(0.1 - 4.302653 * 0.01 / math.sqrt(3), abs=1e-6)
    assert r["p_value"] == pytest.approx(p)
    assert r["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert r["significant"] is True
    assert r["level"] == 0.95
    assert r["n"] == 3


def test_paired_interval_including_zero_is_not_significant() -> None:
    a, b = [0.5, 0.7, 0.6, 0.8], [0.6, 0.6, 0.65, 0.7]
    r = paired_interval(a, b)
    low, high, p = _t_interval([x - y for x, y in zip(a, b, strict=True)], 0.95)
    assert r["mean_diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
    assert r["ci_low"] < 0 < r["ci_high"]
    assert r["p_value"] == pytest.approx(p)
    assert r["significant"] is False


def test_paired_interval_negative_difference_is_significant_too() -> None:
    r = paired_interval([0.1, 0.2, 0.15], [0.5, 0.62, 0.56])
    assert r["mean_diff"] < 0
    assert r["ci_high"] < 0
    assert r["significant"] is True


def test_paired_interval_wider_at_a_higher_level() -> None:
    a, b = [0.9, 0.95, 0.91, 0.97], [0.85, 0.9, 0.92, 0.9]
    r95, r99 = paired_interval(a, b), paired_interval(a, b, level=0.99)
    low, high, _ = _t_interval([x - y for x, y in zip(a, b, strict=True)], 0.99)
    assert (r99["ci_low"], r99["ci_high"]) == pytest.approx((low, high))
    assert r99["ci_low"] < r95["ci_low"] and r99["ci_high"] > r95["ci_high"]
    assert r99["level"] == 0.99


def test_identical_differences_collapse_the_interval() -> None:
    # Exactly representable values: every difference is exactly 0.5.
    r = paired_interval([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])
    assert r["mean_diff"] == r["ci_low"] == r["ci_high"] == 0.5
    assert r["significant"] is True
    assert r["p_value"] == 0.0
    same = paired_interval([0.25, 0.5, 0.75], [0.25, 0.5, 0.75])
    assert same["mean_diff"] == same["ci_low"] == same["ci_high"] == 0.0
    assert same["significant"] is False
    assert same["p_value"] == 1.0


def test_a_single_pair_collapses_the_interval() -> None:
    r = paired_interval([0.75], [0.5])
    assert (r["mean_diff"], r["ci_low"], r["ci_high"], r["n"]) == (0.25, 0.25, 0.25, 1)


@pytest.mark.parametrize(
    ("curve", "target", "maximize", "expected"),
    [
        ([0.5, 0.8, 0.9], 0.8, True, 2),
        ([0.5, 0.8, 0.9], 0.5, True, 1),
        ([0.5, 0.8, 0.9], 0.95, True, None),
        ([0.5, 0.9, 0.7], 0.85, True, 2),
        ([2.0, 1.0, 0.5], 1.0, False, 2),
        ([2.0, 1.0, 0.5], 0.4, False, None),
        ([2.0, 1.5, 0.5], 0.6, False, 3),
        ([0.3, 0.2], 0.9, False, 1),
        ([], 0.5, True, None),
    ],
)
def test_epochs_to_target(
    curve: list[float], target: float, maximize: bool, expected: int | None
) -> None:
    assert epochs_to_target(curve, target, maximize=maximize) == expected


def _arms(epochs: int = 3) -> list[Arm]:
    """Every arm: a 1cycle tuned schedule, constant 0.1 for CV's, and the recipes."""
    tuned = {"schedule": "onecycle", "max_lr": 0.3, "base_lr": 0.01}
    spe = steps_per_epoch(tiny_task.N_TRAIN, tiny_task.task().batch_size)
    return make_arms(tuned, 0.1, steps_per_epoch=spe, epochs=epochs)


def counted_test(epochs: int) -> tuple[Task, Data, list[int]]:
    """The tiny task with a test set that records each time it is loaded."""
    reads: list[int] = []
    test_data = tiny_task.data(tiny_task.N_TEST, seed=1)

    def load() -> Data:
        reads.append(1)
        return test_data

    return tiny_task.task(epochs=epochs, test=load), test_data, reads


def test_compare_reads_the_test_data_once_and_fills_every_arm() -> None:
    task, test_data, reads = counted_test(epochs=3)
    out = compare(task, _arms(), seeds=2, seed=5, device=CPU)
    assert reads == [1]
    assert list(out) == list(ARMS)
    target = out["constant-cv"]["test_metric_mean"]
    for name, arm in out.items():
        per_seed = arm["test_metric_per_seed"]
        assert len(per_seed) == 2
        assert arm["seeds"] == [1005, 1006]
        assert arm["test_metric_mean"] == pytest.approx(np.mean(per_seed))
        assert arm["test_metric_std"] == pytest.approx(np.std(per_seed, ddof=1))
        assert len(arm["test_curve_mean"]) == 3 == arm["epochs"]
        assert [c[-1] for c in arm["test_curve_per_seed"]] == per_seed
        assert arm["steps"] == 3 * 10  # 200 examples, batch 20
        assert arm["target"] == target
        assert arm["epochs_to_target"] == epochs_to_target(
            arm["test_curve_mean"], target, maximize=True
        )
        if name == "tuned":
            assert "tuned_minus_this" not in arm
        else:
            assert arm["tuned_minus_this"] == paired_interval(
                out["tuned"]["test_metric_per_seed"], per_seed
            )
    assert out["constant-cv"]["epochs_to_target"] is not None
    assert out["adam-3e-4"]["optimizer"] == "Adam"
    assert out["adam-3e-4"]["params"] == {"lr": ADAM_LR}
    assert out["prodigy"]["optimizer"] == "Prodigy"
    assert out["prodigy"]["schedule"].startswith("cosine from 1 down to 0")
    assert out["schedule-free-adamw"]["optimizer"] == "AdamWScheduleFree"
    free = out["schedule-free-adamw"]["schedule"]
    assert "warmup over the first 5% inside the optimizer" in free
    # The arm is trained on all of train from seed + 1000 + s and scored on the test data.
    again = train_task(
        task,
        task.train,
        schedule=Schedule("constant", max_lr=0.1),
        eval_data=test_data,
        seed=1005,
        device=CPU,
    )
    assert out["constant-cv"]["test_metric_per_seed"][0] == again.final
    assert out["constant-cv"]["test_curve_per_seed"][0] == again.values


def test_compare_treats_every_arm_alike() -> None:
    # Two arms with the same schedule get the same inits, data and evaluation: equal results.
    task = tiny_task.task(epochs=2)
    same = Schedule("constant", max_lr=0.05)
    out = compare(
        task,
        [Arm("tuned", same, {"lr": 0.05}), Arm("constant-cv", same, {"lr": 0.05})],
        seeds=3,
        seed=0,
        device=CPU,
    )
    assert out["tuned"]["test_metric_per_seed"] == out["constant-cv"]["test_metric_per_seed"]
    diff = out["constant-cv"]["tuned_minus_this"]
    assert (diff["mean_diff"], diff["ci_low"], diff["ci_high"]) == (0.0, 0.0, 0.0)
    assert diff["significant"] is False


def test_a_diverged_arm_keeps_its_curve_length_and_reason() -> None:
    task = tiny_task.task(epochs=3)
    out = compare(
        task,
        [
            Arm("tuned", Schedule("constant", max_lr=0.1), {"lr": 0.1}),
            Arm("constant-cv", Schedule("constant", max_lr=1e4), {"lr": 1e4}),
        ],
        seeds=2,
        seed=0,
        device=CPU,
    )
    broken = out["constant-cv"]
    assert all(reason for reason in broken["stop_reasons"])
    assert all(len(curve) == 3 for curve in broken["test_curve_per_seed"])
    assert out["tuned"]["stop_reasons"] == [None, None]


def test_a_plateau_arm_watches_a_slice_of_train_never_the_test_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lrsearch.pipeline.comparison as comparison
    from lrsearch.exceptions import InvalidParameterError
    from lrsearch.pipeline.comparison import run_arm
    from lrsearch.splits import holdout

    task = tiny_task.task(epochs=3)
    test = tiny_task.data(tiny_task.N_TEST, seed=1)
    plateau = Arm(
        "tuned",
        Schedule("plateau", max_lr=0.1, base_lr=0.001, decay=0.5, patience=0),
        {"schedule": "plateau"},
    )
    with pytest.raises(InvalidParameterError, match="holdout"):
        run_arm(plateau, 0, task, test, device=CPU)
    calls: list[dict[str, object]] = []

    def spy(*args: object, **kwargs: object) -> object:
        calls.append({"train": len(args[1][0]), **kwargs})  # type: ignore[index]
        return train_task(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(comparison, "train_task", spy)
    fit, val = holdout(task, 0.2, seed=0)
    run = run_arm(plateau, 0, task, test, device=CPU, holdout=(fit, val))
    (call,) = calls
    watched = call["plateau_data"]
    assert call["train"] == len(fit) and call["eval_data"] is test
    assert isinstance(watched, tuple) and len(watched[0]) == len(val) < len(test[0]) + 1
    assert watched[0] is not test[0]
    assert len(run.curve) == 3
    # Every other arm trains on all of train and watches nothing.
    calls.clear()
    run_arm(
        Arm("constant-cv", Schedule("constant", max_lr=0.1), {"lr": 0.1}),
        0,
        task,
        test,
        device=CPU,
        holdout=(fit, val),
    )
    assert calls[0]["train"] == task.n_train and calls[0]["plateau_data"] is None


# -- the table ------------------------------------------------------------------------------------


def _runs(curves: dict[str, list[list[float]]]) -> dict[str, list[FinalRun]]:
    """Final runs of each arm with these test curves (one per seed), as compare stores them."""
    return {
        arm: [
            FinalRun(arm, 1000 + s, {"lr": 0.1}, "task", "constant 0.1", c, len(c), 10 * len(c))
            for s, c in enumerate(arm_curves)
        ]
        for arm, arm_curves in curves.items()
    }


def test_the_table_names_the_target_it_counts_epochs_to() -> None:
    curves = {
        "tuned": [[0.6, 0.9, 0.95, 0.96], [0.6, 0.92, 0.95, 0.98]],  # mean reaches 0.9 in 2
        "constant-cv": [[0.5, 0.7, 0.85, 0.89], [0.5, 0.7, 0.85, 0.91]],  # target: mean 0.9
        "adam-3e-4": [[0.3, 0.4, 0.5, 0.6], [0.3, 0.4, 0.5, 0.6]],  # never
    }
    comparison = {k: v.to_dict() for k, v in summarize(_runs(curves), maximize=True).items()}
    table = comparison_table(comparison, "accuracy")
    column = "epochs to 0.9000 (constant-cv)"
    assert list(table.columns) == [
        "arm",
        "optimizer",
        "test accuracy",
        "tuned - arm [95% CI]",
        "significant",
        column,
        "schedule",
    ]
    assert dict(zip(table["arm"], table[column], strict=True)) == {
        "tuned": "2/4",
        "constant-cv": "4/4",
        "adam-3e-4": "not in 4",
    }


def test_without_a_constant_cv_arm_the_table_has_no_target_column() -> None:
    curves = {"tuned": [[0.6, 0.9], [0.6, 0.92]], "adam-3e-4": [[0.3, 0.4], [0.3, 0.5]]}
    comparison = {k: v.to_dict() for k, v in summarize(_runs(curves), maximize=True).items()}
    assert all("target" not in arm for arm in comparison.values())
    table = comparison_table(comparison, "accuracy")
    assert list(table["arm"]) == ["tuned", "adam-3e-4"]
    assert not [c for c in table.columns if c.startswith("epochs to")]
    assert list(table.columns)[-1] == "schedule"
    assert comparison_table(None, "accuracy").empty


# -- the snapshot ensemble arm --------------------------------------------------------------------


def test_the_snapshot_arm_follows_the_comparisons_contract() -> None:
    # A triangular tuned schedule of two 2-epoch cycles (10 steps an epoch): snapshots after
    # steps 20 and 40, the second being the final model.
    task, test_data, reads = counted_test(epochs=4)
    tuned = {"schedule": "triangular", "max_lr": 0.3, "base_lr": 0.01, "step_size": 1}
    spe = steps_per_epoch(tiny_task.N_TRAIN, task.batch_size)
    arms = make_arms(tuned, 0.1, steps_per_epoch=spe, epochs=4, arms=("tuned", "constant-cv"))
    assert arms[0].snapshot_steps == (20, 40) and arms[1].snapshot_steps == ()
    out = compare(task, arms, seeds=3, seed=5, device=CPU)
    assert reads == [1]  # the ensemble is scored in the tuned runs, on the one read of test
    assert list(out) == ["tuned", SNAPSHOT_ARM, "constant-cv"]
    single, ensemble = out["tuned"], out[SNAPSHOT_ARM]
    assert ensemble["seeds"] == single["seeds"] == [1005, 1006, 1007]
    assert (ensemble["epochs"], ensemble["steps"]) == (single["epochs"], single["steps"])
    again = train_task(
        task,
        task.train,
        schedule=arms[0].schedule,
        eval_data=test_data,
        seed=1006,
        device=CPU,
        snapshot_steps=[20, 40],
    )
    assert ensemble["test_metric_per_seed"][1] == again.ensemble_value
    assert ensemble["last_snapshot_per_seed"][1] == again.snapshot_value == again.final
    assert ensemble["test_curve_per_seed"][1] == [*again.values[:-1], again.ensemble_value]
    # The same paired interval as every other arm, and the ensemble's own gain.
    assert ensemble["tuned_minus_this"] == paired_interval(
        single["test_metric_per_seed"], ensemble["test_metric_per_seed"]
    )
    assert ensemble["ensemble_minus_last_snapshot"] == paired_interval(
        ensemble["test_metric_per_seed"], ensemble["last_snapshot_per_seed"]
    )
    assert "ensemble of the 2 snapshots" in ensemble["schedule"]
    assert ensemble["schedule"].endswith("(steps 20, 40)")
    assert ensemble["params"] == single["params"]
    assert "last_snapshot_per_seed" not in single


def test_a_final_run_stores_its_snapshot_scores_and_is_its_own_unit() -> None:
    tuned = {"schedule": "sgdr", "max_lr": 0.3, "base_lr": 0.0, "step_size": 1, "decay": 1.0}
    with_snapshots, _ = make_arms(tuned, 0.1, steps_per_epoch=10, epochs=3)[:2]
    assert with_snapshots.snapshot_steps == (10, 20, 30)
    plain = dataclasses.replace(with_snapshots, snapshot_steps=())
    assert arm_key(with_snapshots, 1000) != arm_key(plain, 1000)
    task = tiny_task.task(epochs=3)
    run = run_arm(with_snapshots, 1000, task, tiny_task.data(50, seed=1), device=CPU)
    assert run.snapshot_steps == [10, 20, 30]
    assert run.ensemble_final is not None and run.snapshot_final == run.final
    assert FinalRun.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    old = {k: v for k, v in run.to_dict().items() if "snapshot" not in k and "ensemble" not in k}
    assert FinalRun.from_dict(old).ensemble_final is None  # stored before snapshots


def test_no_snapshot_arm_for_a_schedule_of_fewer_than_two_cycles() -> None:
    one = {"schedule": "triangular", "max_lr": 0.3, "base_lr": 0.01, "step_size": 1}
    (tuned,) = make_arms(one, None, steps_per_epoch=10, epochs=3, arms=("tuned",))
    assert tuned.snapshot_steps == ()  # one whole cycle (20 steps) in a run of 30
    out = compare(tiny_task.task(epochs=3), [tuned], seeds=2, seed=0, device=CPU)
    assert list(out) == ["tuned"]
