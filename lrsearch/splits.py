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
from lrsearch.tasks import Task, labels

__all__ = ["cv_folds", "holdout", "watch_split"]


def _stratify_labels(task: Task) -> np.ndarray | None:
    return labels(task.train) if task.stratify else None


def _group_folds(k: int, stratify: bool, seed: int) -> Any:
    """k folds that keep groups whole and balance the folds' sizes in examples (GroupKFold's
    greedy assignment; StratifiedGroupKFold, shuffled by ``seed``, when stratifying)."""
    if stratify:
        return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return GroupKFold(n_splits=k)


def holdout(
    task: Task, fraction: float, seed: int, *, within: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (search-train, validation) into ``task.train``; validation is ``fraction`` of it
    (of its groups, when ``task.groups`` has them).

    ``within`` (indices into ``task.train``) splits only those examples the same way: a
    ``plateau`` schedule's watched split is carved from the data its run is given (see
    :func:`watch_split`).

    Example:
        >>> from lrsearch.tasks import load_task
        >>> tr, va = holdout(load_task("digits"), 0.2, seed=0)
        >>> len(tr), len(va), len(set(tr) & set(va))
        (1077, 270, 0)
    """
    idx = np.arange(task.n_train) if within is None else np.sort(np.asarray(within, dtype=int))
    y = _stratify_labels(task)
    y = None if y is None else y[idx]
    x = np.zeros(len(idx))
    groups = None if task.groups is None else np.asarray(task.groups)[idx]
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
        train_pos, val_pos = grouped[seed % k]
        return idx[np.sort(train_pos)], idx[np.sort(val_pos)]
    if y is not None:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    else:
        splitter = ShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    try:
        train_pos, val_pos = next(splitter.split(x, y, groups))
    except ValueError as exc:  # e.g. a class with a single example cannot be stratified
        raise InvalidParameterError(f"cannot split train for validation: {exc}") from exc
    return idx[np.sort(train_pos)], idx[np.sort(val_pos)]


def watch_split(
    task: Task, given: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A ``plateau`` run's (fit, watched) indices into ``task.train``, from ``given``.

    ``ReduceLROnPlateau`` decides when to lower the learning rate from a metric, which must
    not be the one the run is scored on: a run that watches its own score tunes its decays to
    that split's noise and looks better than it is, and the final comparison cannot let it
    watch the test set. So wherever lrsearch trains a ``plateau`` schedule on ``given`` (the
    search-train split, a CV fold's fit part, all of ``train`` in the final comparison) it fits
    on ``1 - fraction`` of it and watches the rest, split as :func:`holdout` splits ``train``:
    a search trial or a CV fold judges the schedule as the final comparison runs it.

    Example:
        >>> from lrsearch.tasks import load_task
        >>> task = load_task("digits")
        >>> tr, va = holdout(task, 0.2, seed=0)
        >>> fit, watched = watch_split(task, tr, 0.2, seed=0)
        >>> len(fit), len(watched), set(fit) | set(watched) == set(tr)
        (861, 216, True)

    Raises:
        InvalidParameterError: ``given`` is too small, or has too few groups, to split.
    """
    try:
        return holdout(task, fraction, seed, within=given)
    except InvalidParameterError as exc:
        cause = str(exc.__cause__ or exc).rstrip(".")
        raise InvalidParameterError(
            f"cannot split train to watch a plateau schedule's metric: {cause}; leave plateau "
            "out of kinds"
        ) from exc


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
