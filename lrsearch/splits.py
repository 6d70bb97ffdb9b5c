"""How lrsearch splits a task's training data: one hold-out split, and k CV folds.

Both live inside ``train`` (the test data is for the final comparison only), use scikit-learn's
splitters, stratify by label for classification, and are fixed by the study's seed.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit

from lrsearch.exceptions import InvalidParameterError
from lrsearch.tasks import Task
from lrsearch.training import labels

__all__ = ["cv_folds", "holdout"]


def _stratify_labels(task: Task) -> np.ndarray | None:
    return labels(task.train) if task.stratify else None


def holdout(task: Task, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (search-train, validation) into ``task.train``; validation is ``fraction`` of it.

    Example:
        >>> from lrsearch.tasks import load_task
        >>> tr, va = holdout(load_task("digits"), 0.2, seed=0)
        >>> len(tr), len(va), len(set(tr) & set(va))
        (1077, 270, 0)
    """
    n = task.n_train
    y = _stratify_labels(task)
    x = np.zeros(n)
    splitter = (
        StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        if y is not None
        else ShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    )
    try:
        train_idx, val_idx = next(splitter.split(x, y))
    except ValueError as exc:  # e.g. a class with a single example cannot be stratified
        raise InvalidParameterError(f"cannot split train for validation: {exc}") from exc
    return np.sort(train_idx), np.sort(val_idx)


def cv_folds(task: Task, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (fit, score) index pairs into ``task.train`` (stratified k-fold, shuffled by seed).

    Example:
        >>> from lrsearch.tasks import load_task
        >>> folds = cv_folds(load_task("digits"), 5, seed=0)
        >>> len(folds), sum(len(s) for _, s in folds)
        (5, 1347)
    """
    n = task.n_train
    y = _stratify_labels(task)
    x = np.zeros(n)
    try:  # the constructors check k themselves (k < 2 raises there, not in split)
        splitter = (
            StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            if y is not None
            else KFold(n_splits=k, shuffle=True, random_state=seed)
        )
        return [(np.sort(a), np.sort(b)) for a, b in splitter.split(x, y)]
    except ValueError as exc:
        raise InvalidParameterError(f"cannot make {k} CV folds of train: {exc}") from exc
