"""Tests for lrsearch/splits.py: the hold-out split and the CV folds, both inside ``train``."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from lrsearch import InvalidParameterError
from lrsearch.splits import cv_folds, holdout, watch_split
from lrsearch.tasks import Task, load_task

# Imbalanced classes (30/20/10/7), in label order, so an unstratified split would drift.
COUNTS = (30, 20, 10, 7)
N = sum(COUNTS)


def labelled(counts: tuple[int, ...] = COUNTS) -> torch.Tensor:
    return torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])


def make_task(train: Any = None, **fields: Any) -> Task:
    if train is None:
        y = labelled()
        train = (torch.randn(len(y), 2), y)
    test = (torch.randn(3, 2), torch.arange(3) % 2)
    return Task(lambda: nn.Linear(2, 4), train, test, **fields)


class Targeted(Dataset[tuple[torch.Tensor, int]]):
    """A dataset with a ``targets`` attribute, like torchvision's."""

    def __init__(self, targets: list[int]) -> None:
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(2), self.targets[i]


def class_counts(idx: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.bincount(y[idx], minlength=len(COUNTS))


# -- holdout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.35, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_holdout_is_a_disjoint_cover_of_train(fraction: float, seed: int) -> None:
    train, val = holdout(make_task(), fraction, seed)
    assert train.dtype.kind == "i" and val.dtype.kind == "i"
    assert len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(N))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # sorted, no repeats
    assert len(val) == pytest.approx(fraction * N, abs=1)


@pytest.mark.parametrize("fraction", [0.2, 0.3])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_holdout_is_stratified(fraction: float, seed: int) -> None:
    task = make_task()
    y = labelled().numpy()
    _, val = holdout(task, fraction, seed)
    expected = fraction * np.array(COUNTS)
    assert np.abs(class_counts(val, y) - expected).max() <= 1.0


def test_holdout_of_digits_keeps_class_shares() -> None:
    task = load_task("digits")
    y = task.train[1].numpy()
    train, val = holdout(task, 0.2, seed=0)
    assert (len(train), len(val)) == (1077, 270)
    share = np.bincount(y[val], minlength=10) - 0.2 * np.bincount(y, minlength=10)
    assert np.abs(share).max() <= 1.0


def test_holdout_is_fixed_by_the_seed() -> None:
    task = make_task()
    a, b, c = holdout(task, 0.2, 0), holdout(task, 0.2, 0), holdout(task, 0.2, 1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_holdout_without_stratification_still_covers_train() -> None:
    # Regression-style labels (metric "loss" does not stratify): a plain shuffle split.
    x = torch.randn(40, 2)
    task = make_task((x, x.sum(dim=1)), metric="loss", loss=nn.MSELoss())
    assert task.stratify is False
    train, val = holdout(task, 0.25, seed=3)
    assert len(val) == 10 and len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(40))
    first, second = holdout(task, 0.25, seed=3), holdout(task, 0.25, seed=4)
    assert np.array_equal(first[1], val) and not np.array_equal(second[1], val)


def test_holdout_stratifies_a_dataset_by_its_targets() -> None:
    targets = labelled().tolist()
    task = make_task(Targeted(targets))
    _, val = holdout(task, 0.3, seed=0)
    expected = 0.3 * np.array(COUNTS)
    assert np.abs(class_counts(val, np.array(targets)) - expected).max() <= 1.0


def test_holdout_of_a_dataset_without_targets_is_unstratified() -> None:
    y = labelled()
    task = make_task(TensorDataset(torch.randn(N, 2), y))
    train, val = holdout(task, 0.2, seed=0)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(N))


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.2])
def test_holdout_rejects_impossible_fractions(fraction: float) -> None:
    with pytest.raises(InvalidParameterError, match="cannot split train"):
        holdout(make_task(), fraction, seed=0)


def test_holdout_rejects_a_class_of_one() -> None:
    y = labelled((10, 10, 1))
    with pytest.raises(InvalidParameterError, match="cannot split train") as info:
        holdout(make_task((torch.randn(len(y), 2), y)), 0.2, seed=0)
    assert isinstance(info.value, ValueError)


# -- watch_split (what a plateau run fits on and watches) -------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_watch_split_is_a_disjoint_stratified_cover_of_what_it_is_given(seed: int) -> None:
    task = make_task()
    y = labelled().numpy()
    given, scored = holdout(task, 0.25, seed)
    fit, watched = watch_split(task, given, 0.2, seed)
    assert len(np.intersect1d(fit, watched)) == 0
    assert np.array_equal(np.sort(np.concatenate([fit, watched])), given)
    assert not set(watched) & set(scored) and not set(fit) & set(scored)
    assert np.all(np.diff(fit) > 0) and np.all(np.diff(watched) > 0)
    assert len(watched) == pytest.approx(0.2 * len(given), abs=1)
    expected = 0.2 * class_counts(given, y)
    assert np.abs(class_counts(watched, y) - expected).max() <= 1.0


def test_watch_split_of_all_of_train_is_the_holdout() -> None:
    # The final comparison's plateau arm fits on search-train and watches validation: the same
    # rule applied to all of train, so search, CV and the final runs treat plateau alike.
    task = load_task("digits")
    whole = watch_split(task, np.arange(task.n_train), 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(whole, holdout(task, 0.2, 3), strict=True))


def test_watch_split_of_a_cv_fold_stays_inside_its_fit_part() -> None:
    task = make_task()
    for fit_part, score in cv_folds(task, 3, seed=0):
        fit, watched = watch_split(task, fit_part, 0.2, seed=0)
        assert set(fit) | set(watched) == set(fit_part)
        assert not (set(fit) | set(watched)) & set(score)


def test_watch_split_is_fixed_by_the_seed_and_given_order_does_not_matter() -> None:
    task = make_task()
    given, _ = holdout(task, 0.2, 0)
    a = watch_split(task, given, 0.2, 0)
    b = watch_split(task, given[::-1].copy(), 0.2, 0)
    c = watch_split(task, given, 0.2, 1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_watch_split_keeps_groups_whole() -> None:
    task = _grouped_task(stratify=False)
    groups = np.asarray(task.groups)
    given, scored = holdout(task, 0.2, seed=0)
    fit, watched = watch_split(task, given, 0.2, seed=0)
    assert not set(groups[fit]) & set(groups[watched])
    assert set(fit) | set(watched) == set(given) and not set(watched) & set(scored)


def test_watch_split_of_too_little_to_stratify_is_a_clear_error() -> None:
    y = labelled((10, 10, 3))
    task = make_task((torch.randn(len(y), 2), y))
    with pytest.raises(InvalidParameterError, match="to watch a plateau schedule's metric"):
        watch_split(task, np.array([0, 1, 2, 3, 10, 11, 12, 13, 20]), 0.2, seed=0)


# -- cv_folds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("stratified", [True, False])
def test_cv_folds_partition_train(k: int, stratified: bool) -> None:
    task = make_task(stratify=stratified)
    folds = cv_folds(task, k, seed=0)
    assert len(folds) == k
    scores = [score for _, score in folds]
    # The score parts are disjoint and cover 0..n-1 exactly once.
    assert np.array_equal(np.sort(np.concatenate(scores)), np.arange(N))
    for fit_idx, score_idx in folds:
        assert np.array_equal(fit_idx, np.setdiff1d(np.arange(N), score_idx))
        assert np.all(np.diff(fit_idx) > 0) and np.all(np.diff(score_idx) > 0)
        assert fit_idx.max() < task.n_train and score_idx.max() < task.n_train
        assert fit_idx.min() >= 0 and score_idx.min() >= 0
        assert abs(len(score_idx) - N / k) <= 1


@pytest.mark.parametrize("k", [3, 5])
def test_cv_folds_are_stratified(k: int) -> None:
    y = labelled().numpy()
    for _, score in cv_folds(make_task(), k, seed=2):
        assert np.abs(class_counts(score, y) - np.array(COUNTS) / k).max() <= 1.0


def test_cv_folds_are_fixed_by_the_seed() -> None:
    task = make_task()
    a, b, c = cv_folds(task, 4, 0), cv_folds(task, 4, 0), cv_folds(task, 4, 1)
    assert all(np.array_equal(p[1], q[1]) for p, q in zip(a, b, strict=True))
    assert any(not np.array_equal(p[1], q[1]) for p, q in zip(a, c, strict=True))


def test_cv_folds_ignore_the_test_data() -> None:
    y = labelled()
    x = torch.randn(len(y), 2)
    small = Task(lambda: nn.Linear(2, 4), (x, y), (torch.randn(3, 2), torch.arange(3)))
    big = Task(lambda: nn.Linear(2, 4), (x, y), (torch.randn(500, 2), torch.arange(500) % 4))
    for p, q in zip(cv_folds(small, 3, 0), cv_folds(big, 3, 0), strict=True):
        assert np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1])
        assert p[0].max() < N


def test_cv_folds_of_digits() -> None:
    folds = cv_folds(load_task("digits"), 5, seed=0)
    assert sum(len(s) for _, s in folds) == 1347
    assert all(len(f) + len(s) == 1347 for f, s in folds)


@pytest.mark.parametrize(("k", "stratified"), [(1, True), (1, False), (0, False), (31, True)])
def test_cv_folds_reject_impossible_k(k: int, stratified: bool) -> None:
    # k=31 is more folds than any class (at most 30) has members.
    with pytest.raises(InvalidParameterError, match=f"cannot make {k} CV folds"):
        cv_folds(make_task(stratify=stratified), k, seed=0)


def test_cv_folds_reject_more_folds_than_examples() -> None:
    x = torch.randn(6, 2)
    task = make_task((x, x.sum(dim=1)), metric="loss", loss=nn.MSELoss())
    with pytest.raises(InvalidParameterError, match="cannot make 7 CV folds"):
        cv_folds(task, 7, seed=0)


# --- groups ---------------------------------------------------------------------------------


def _grouped_task(stratify: bool) -> Task:
    import tiny_task

    base = tiny_task.task()
    # 20 groups of 10 consecutive examples, of unequal use: any split must keep them whole.
    groups = np.repeat(np.arange(20), 10)
    return dataclasses.replace(base, groups=groups, stratify=stratify)


@pytest.mark.parametrize("stratify", [False, True])
def test_holdout_and_folds_keep_every_group_on_one_side(stratify: bool) -> None:
    task = _grouped_task(stratify)
    groups = np.asarray(task.groups)
    for seed in range(3):
        fit, val = holdout(task, 0.2, seed)
        assert not set(groups[fit]) & set(groups[val])
        assert len(fit) + len(val) == task.n_train
        assert 0.1 <= len(val) / task.n_train <= 0.3  # about the fraction, in examples
    folds = cv_folds(task, 4, seed=0)
    seen = np.concatenate([score for _, score in folds])
    assert sorted(seen) == list(range(task.n_train))
    for fit, score in folds:
        assert not set(groups[fit]) & set(groups[score])


def test_groups_must_be_one_integer_per_example() -> None:
    import tiny_task

    with pytest.raises(InvalidParameterError, match="one integer per training example"):
        dataclasses.replace(tiny_task.task(), groups=np.zeros(3, dtype=int))
    with pytest.raises(InvalidParameterError, match="at least 2 groups"):
        dataclasses.replace(tiny_task.task(), groups=np.zeros(200, dtype=int))


def test_too_few_groups_for_the_folds_is_a_clear_error() -> None:
    import tiny_task

    task = dataclasses.replace(tiny_task.task(), groups=np.repeat([0, 1], 100))
    with pytest.raises(InvalidParameterError, match="CV folds"):
        cv_folds(task, 3, seed=0)
