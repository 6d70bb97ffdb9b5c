"""Reading back what a study stored, for the figures and tables (no training, no writing)."""

from __future__ import annotations

import math
from collections import Counter

import optuna
from optuna.trial import FrozenTrial, TrialState

from lrsearch.diagnostics import NON_FINITE, TOO_HIGH, TOO_LOW
from lrsearch.store import (
    ATTR_COMPARISON,
    ATTR_CONFIG,
    ATTR_METRIC,
    FLAGS,
    PRUNED_REASON,
    same_params,
)
from lrsearch.tasks import steps_per_epoch as _steps_per_epoch

__all__ = [
    "cause",
    "causes_in_words",
    "constant_lr",
    "diagnosed_trials",
    "epochs",
    "has_complete",
    "maximize",
    "metric_name",
    "search_steps_per_epoch",
    "tuned_trial",
]


def metric_name(study: optuna.Study) -> str:
    """The task's metric name as stored (``"metric"`` when unknown)."""
    return str(study.user_attrs.get(ATTR_METRIC) or "metric")


def maximize(study: optuna.Study) -> bool:
    """Whether a larger value is better in ``study``."""
    return study.direction == optuna.study.StudyDirection.MAXIMIZE


def search_steps_per_epoch(study: optuna.Study) -> int:
    """Optimizer steps per epoch of the search trials (stored by ``run_study``).

    A study stored before this was recorded gets it from the task size, the validation fraction
    and the batch size, which is what the split gives up to rounding.
    """
    stored = study.user_attrs.get("steps_per_epoch", {})
    if "search" in stored:
        return int(stored["search"])
    cfg = study.user_attrs.get("config", {})
    n_train = int(study.user_attrs.get("task", {}).get("n_train", 1))
    n_fit = n_train - math.ceil(n_train * float(cfg.get("validation_fraction", 0.2)))
    return _steps_per_epoch(max(1, n_fit), int(cfg.get("batch_size", 1)))


def epochs(study: optuna.Study) -> int:
    """Epochs of every training run of the study."""
    return int(study.user_attrs.get(ATTR_CONFIG, {}).get("epochs", 1))


def tuned_trial(study: optuna.Study) -> int | None:
    """Number of the search trial whose schedule is the tuned arm (``None`` if unknown)."""
    tuned = (study.user_attrs.get(ATTR_COMPARISON) or {}).get("tuned")
    if tuned is None:
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if same_params(trial.params, tuned.get("params", {})):
            return trial.number
    return None


def constant_lr(study: optuna.Study) -> float | None:
    """The constant-cv arm's LR in the stored comparison (``None`` without one)."""
    params = (study.user_attrs.get(ATTR_COMPARISON) or {}).get("constant-cv", {}).get("params", {})
    lr = params.get("lr")
    return None if lr is None else float(lr)


def has_complete(study: optuna.Study) -> bool:
    """Whether ``study`` has a completed trial."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def cause(reason: str) -> str:
    """What a stored stop reason says about the learning rate, in a few words: the diagnosis
    the training loop gave, ``"the pruner"`` for a plain pruning, else the reason itself.

    Example:
        >>> cause("diverged in epoch 2: mean loss 9 > 4 x the first loss: learning rate too high")
        'learning rate too high'
        >>> cause("pruner: stopped after epoch 3")
        'the pruner (behind the other trials)'
    """
    for words in (NON_FINITE, TOO_LOW, TOO_HIGH):  # NON_FINITE starts with TOO_HIGH's words
        if words in reason:
            return words
    if reason.startswith("pruner"):
        return "the pruner (behind the other trials)"
    return reason


def diagnosed_trials(study: optuna.Study) -> list[tuple[FrozenTrial, str | None, list[str]]]:
    """The finished search trials with something to say: ``(trial, its stop reason or None,
    its diagnostics' flags)``, in trial order."""
    out = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        reason = trial.user_attrs.get(PRUNED_REASON)
        flags = list(trial.user_attrs.get(FLAGS) or [])
        if reason or flags:
            out.append((trial, reason, flags))
    return out


def causes_in_words(study: optuna.Study) -> str:
    """The causes of the search trials' early stops, most frequent first, e.g.
    ``"3 x learning rate too high; 1 x the pruner (behind the other trials)"`` (``""``: none).
    """
    counts = Counter(cause(r) for _, r, _ in diagnosed_trials(study) if r)
    return "; ".join(f"{n} x {what}" for what, n in counts.most_common())
