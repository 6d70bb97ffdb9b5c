"""How lrsearch splits a task's training data: one hold-out split, and k CV folds.

Both live inside ``train`` (the test data is for the final comparison only), use scikit-learn's
splitters, stratify by label for classification, keep a task's ``groups`` together (a group is
on one side of every split: ``GroupShuffleSplit``, ``GroupKFold``, ``StratifiedGroupKFold``),
and are fixed by the study's seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    ShuffleSplit,
    StratifiedGroupKFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

from lrsearch.exceptions import InvalidParameterError
from lrsearch.tasks import Task
from lrsearch.training import labels

__all__ = ["cv_folds", "holdout"]


def _stratify_labels(task: Task) -> np.ndarray | None:
    return labels(task.train) if task.stratify else None


def _group_folds(k: int, stratify: bool, seed: int) -> Any:
    """k folds that keep groups whole and balance the folds' sizes in examples (GroupKFold's
    greedy assignment; StratifiedGroupKFold, shuffled by ``seed``, when stratifying)."""
    if stratify:
        return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return GroupKFold(n_splits=k)


def holdout(task: Task, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (search-train, validation) into ``task.train``; validation is ``fraction`` of it
    (of its groups, when ``task.groups`` has them).

    Example:
        >>> from lrsearch.tasks import load_task
        >>> tr, va = holdout(load_task("digits"), 0.2, seed=0)
        >>> len(tr), len(va), len(set(tr) & set(va))
        (1077, 270, 0)
    """
    n = task.n_train
    y = _stratify_labels(task)
    x = np.zeros(n)
    groups = task.groups
    splitter: Any
    if groups is not None:
        # Groups differ in size, so a share of the groups is not a share of the examples:
        # validation is one of k = 1 / fraction folds that GroupKFold balances by examples
        # (the seed picks which; StratifiedGroupKFold when stratifying).
        k = max(2, round(1 / fraction))
        try:
            grouped = list(_group_folds(k, y is not None, seed).split(x, y, groups))
        except ValueError as exc:  # fewer groups than folds
            raise InvalidParameterError(f"cannot split train for validation: {exc}") from exc
        train_idx, val_idx = grouped[seed % k]
        return np.sort(train_idx), np.sort(val_idx)
    if y is not None:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    else:
        splitter = ShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    try:
        train_idx, val_idx = next(splitter.split(x, y, groups))
    except ValueError as exc:  # e.g. a class with a single example cannot be stratified
        raise InvalidParameterError(f"cannot split train for validation: {exc}") from exc
    return np.sort(train_idx), np.sort(val_idx)


def cv_folds(task: Task, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (fit, score) index pairs into ``task.train`` (stratified k-fold, shuffled by seed;
    grouped by ``task.groups`` when it has them).

    Example:
        >>> from lrsearch.tasks import load_task
        >>> folds = cv_folds(load_task("digits"), 5, seed=0)
        >>> len(folds), sum(len(s) for _, s in folds)
        (5, 1347)
    """
    n = task.n_train
    y = _stratify_labels(task)
    x = np.zeros(n)
    groups = task.groups
    try:  # the constructors check k themselves (k < 2 raises there, not in split)
        splitter: Any
        if groups is not None:
            splitter = _group_folds(k, y is not None, seed)
        elif y is not None:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        else:
            splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
        return [(np.sort(a), np.sort(b)) for a, b in splitter.split(x, y, groups)]
    except ValueError as exc:
        raise InvalidParameterError(f"cannot make {k} CV folds of train: {exc}") from exc
