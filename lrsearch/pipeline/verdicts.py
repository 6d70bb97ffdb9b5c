"""Verdicts: where a study's answer may be wrong, said as ``warning:`` lines with what to do.

A study never states a doubtful answer as a confident one. :func:`verdicts` reads what the
study stored (the range test's readings, the bounds' history, the search, the comparison and
what the untrained model scores) and returns a :class:`StudyWarning` for each doubt:

========================== ==================================================================
code                       when
========================== ==================================================================
``range-test-redone``      the first range test could not be read, and was redone longer
``range-test-unconfident`` the redo could not be read either (or, with ``range_test.redo =
                           0``, the first reading): the search started from the optimizer's
                           plausible span
``runs-too-short``         the redo's sweeps were longer than a whole run and still could not
                           see the loss fall
``bounds-extended``        the bounds were widened because a winner sat at an edge
``bounds-at-cap``          the tuned schedule (or the CV-chosen constant) still sits at an
                           edge of what was searched
``tuned-at-chance``        the tuned arm scores no better than chance or the untrained model
``tuned-worst``            the tuned arm is worse than every other arm of the comparison
``all-trials-failed``      no search trial beat the untrained model (all diverged or stuck)
========================== ==================================================================

``StudyResult.warnings`` holds them; the CLI prints them last, the report shows them at the
top, the dashboard's note and the export carry them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from optuna.trial import FrozenTrial, TrialState

from lrsearch.pipeline.bounds import CAP_DECADES, Extension, at_edge, current
from lrsearch.pipeline.range_test import REDO_FACTOR, Reading
from lrsearch.preflight import Baseline
from lrsearch.space import LRBounds
from lrsearch.store import ArmResult

__all__ = ["CHANCE_MARGIN", "StudyWarning", "verdicts"]

#: A classifier this close to chance (accuracy points) has learned nothing worth reporting.
CHANCE_MARGIN: Final = 0.02


@dataclasses.dataclass(frozen=True)
class StudyWarning:
    """One doubt about a study's answer: a code (for code to read) and its words.

    Attributes:
        code: What kind of doubt (see the module's table).
        text: What was seen and what to do, one sentence.
    """

    code: str
    text: str

    def line(self) -> str:
        """The line the CLI prints: ``warning: TEXT``."""
        return f"warning: {self.text}"

    def to_dict(self) -> dict[str, str]:
        """JSON-safe."""
        return {"code": self.code, "text": self.text}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyWarning:
        """The inverse of :meth:`to_dict`."""
        return cls(code=str(data["code"]), text=str(data["text"]))


def _range(bounds: LRBounds) -> str:
    return f"{bounds.low:.3g}..{bounds.high:.3g}"


def _who(optimizer: str, optimizers: Sequence[str]) -> str:
    return "" if len(optimizers) == 1 else f" of {optimizer}"


def _range_test(readings: Mapping[str, Reading], optimizers: Sequence[str]) -> list[StudyWarning]:
    out = []
    for name, reading in readings.items():
        who = _who(name, optimizers)
        doubts = "; ".join(d.text for d in reading.first.doubts)
        if reading.redo is None and reading.wide is not None:  # range_test.redo = 0
            out.append(
                StudyWarning(
                    "range-test-unconfident",
                    f"the range test{who} could not be read ({doubts}) and the study had no "
                    "redo planned (range_test.redo = 0, as a small budget plans it); the "
                    f"search started from the optimizer's plausible span {_range(reading.wide)}"
                    " instead: check that a constant LR in it trains the model, and raise "
                    "budget (or range_test.redo) for a redo that may read it",
                )
            )
            continue
        if reading.redo is None:
            continue
        out.append(
            StudyWarning(
                "range-test-redone",
                f"the range test{who} could not be read ({doubts}); it was redone with "
                f"{len(reading.redo.sweeps)} sweeps {REDO_FACTOR} times as long"
                + ("" if reading.wide else " and read from those")
                + ": nothing to do, but a longer range_test.num_iter saves the redo next time",
            )
        )
        if reading.wide is None:
            continue
        doubts = "; ".join(d.text for d in reading.redo.doubts)
        out.append(
            StudyWarning(
                "range-test-unconfident",
                f"the redone range test{who} could not be read either ({doubts}); the search "
                f"started from the optimizer's plausible span {_range(reading.wide)} instead: "
                "check that a constant LR in it trains the model at all, and raise n_trials, "
                "since the search has that whole span to cover",
            )
        )
        if reading.too_short:
            out.append(
                StudyWarning(
                    "runs-too-short",
                    f"runs of {reading.run_steps} optimizer steps are too short for the range "
                    f"test to resolve (its {reading.redo.num_iter}-step sweeps, longer than a "
                    "whole run, barely moved the loss): train for more epochs, or expect "
                    "the answer to be noisy",
                )
            )
    return out


def _bounds(
    start: Mapping[str, LRBounds],
    extensions: Mapping[str, Sequence[Extension]],
    optimizers: Sequence[str],
    winners: Mapping[str, Sequence[float]],
) -> list[StudyWarning]:
    """A widening that mattered: a winner (``winners``: each optimizer's tuned peak or CV
    constant) lies outside where the study started. One that did not is in the bounds'
    history, not a doubt."""
    out = []
    for name, history in extensions.items():
        outside = [
            lr for lr in winners.get(name, ()) if not start[name].low <= lr <= start[name].high
        ]
        if not history or not outside:
            continue
        causes = sorted(
            {
                "the CV-chosen constant" if e.cause == "cv-edge" else "the best trial so far"
                for e in history
            }
        )
        out.append(
            StudyWarning(
                "bounds-extended",
                f"the searched LR range{_who(name, optimizers)} was widened {len(history)} "
                f"time{'s' if len(history) > 1 else ''}, {_range(start[name])} to "
                f"{_range(history[-1].bounds)}, because {' and '.join(causes)} sat at its "
                f"edge, and the winner ({', '.join(f'{lr:.3g}' for lr in outside)}) lies "
                "outside where it started: the range test read too narrow a range for this "
                "model, and the study healed it; nothing to do (a range_test.end_lr or "
                "start_lr past it would save the detour)",
            )
        )
    return out


def _at_edge(what: str, lr: float | None, bounds: LRBounds, start: LRBounds) -> list[StudyWarning]:
    side = None if lr is None else at_edge(lr, bounds)
    if lr is None or side is None:
        return []
    capped = (
        math.log10(bounds.high / start.high) >= CAP_DECADES - 1e-9
        if side == "high"
        else math.log10(start.low / bounds.low) >= CAP_DECADES - 1e-9
    )
    why = (
        f", {CAP_DECADES:g} decades past where the study started (its cap)"
        if capped
        else " (the search ended before it could look further)"
    )
    return [
        StudyWarning(
            "bounds-at-cap",
            f"{what} {lr:.3g} sits at the {side} edge of the searched range {_range(bounds)}"
            f"{why}: the best LR may lie beyond it; run again with --fresh and "
            f"range_test.{'end_lr' if side == 'high' else 'start_lr'} moved past it, or more "
            "n_trials",
        )
    ]


def _outcome(
    *,
    tuned_value: float,
    arms: Mapping[str, ArmResult] | None,
    baseline: Baseline | None,
    search: Sequence[FrozenTrial],
    maximize: bool,
    metric: str,
) -> list[StudyWarning]:
    out = []
    sign = 1.0 if maximize else -1.0
    tuned = (arms or {}).get("tuned")
    if baseline is not None and math.isfinite(baseline.untrained):
        complete = [float(t.value) for t in search if t.state == TrialState.COMPLETE]  # type: ignore[arg-type]
        if complete and all(sign * (v - baseline.untrained) <= 0 for v in complete):
            out.append(
                StudyWarning(
                    "all-trials-failed",
                    f"no search trial beat the untrained model's validation {metric} "
                    f"({baseline.untrained:.4g}): every schedule diverged or left the model "
                    "where it started; check the model, the data and the loss, then run "
                    "with --fresh",
                )
            )
    if tuned is not None and baseline is not None:
        mean = tuned.test_metric_mean
        if baseline.chance is not None and mean <= baseline.chance + CHANCE_MARGIN:
            out.append(
                StudyWarning(
                    "tuned-at-chance",
                    f"the tuned arm's test {metric} ({mean:.4f}) is no better than chance "
                    f"({baseline.chance:.4f}, always guessing the commonest class): the study "
                    "found nothing that trains this model; check the model and data, and "
                    "whether any arm of the table learned",
                )
            )
        elif math.isfinite(baseline.untrained) and sign * (tuned_value - baseline.untrained) <= 0:
            out.append(
                StudyWarning(
                    "tuned-at-chance",
                    f"the tuned schedule's validation {metric} ({tuned_value:.4g}) is no "
                    f"better than the untrained model's ({baseline.untrained:.4g}): check the "
                    "model, the data and the loss",
                )
            )
    others = {
        name: arm.tuned_minus_this
        for name, arm in (arms or {}).items()
        if name != "tuned" and arm.tuned_minus_this
    }
    if tuned is not None and arms is not None and len(others) >= 2:
        worse = all(sign * d["mean_diff"] < 0 for d in others.values())
        if worse and any(d["significant"] for d in others.values()):
            best = max(others, key=lambda name: sign * arms[name].test_metric_mean)
            out.append(
                StudyWarning(
                    "tuned-worst",
                    f"the tuned arm is worse than every other arm of the comparison ({best} "
                    f"scores {arms[best].test_metric_mean:.4f} against "
                    f"{tuned.test_metric_mean:.4f}): the search's validation score "
                    f"did not carry over to the test set; use {best}, or raise n_trials and "
                    "final_seeds",
                )
            )
    return out


def verdicts(
    *,
    optimizers: Sequence[str],
    readings: Mapping[str, Reading],
    extensions: Mapping[str, Sequence[Extension]],
    tuned_optimizer: str,
    tuned_peak: float | None,
    tuned_value: float,
    constant_lr: float | None,
    arms: Mapping[str, ArmResult] | None,
    baseline: Baseline | None,
    search: Sequence[FrozenTrial],
    maximize: bool,
    metric: str,
) -> tuple[StudyWarning, ...]:
    """Every doubt about a study's answer, in the order a reader meets them.

    Args:
        optimizers: The searched optimizers, in the config's order.
        readings: Each one's range-test :class:`~lrsearch.pipeline.range_test.Reading`.
        extensions: Each one's bounds extensions, in order.
        tuned_optimizer: The tuned arm's optimizer; ``tuned_peak`` its peak LR.
        tuned_value: The tuned arm's validation metric.
        constant_lr: The CV-chosen constant LR (the first optimizer's), if any.
        arms: The final comparison ``{arm: ArmResult}``, if done.
        baseline: What the untrained model and chance score, if measured.
        search: The search trials.
        maximize: Whether the metric is to be maximised; ``metric`` its name.

    Returns:
        The warnings (empty: nothing doubtful was seen).
    """
    start = {name: reading.bounds for name, reading in readings.items()}
    now = {name: current(bounds, extensions.get(name, ())) for name, bounds in start.items()}
    winners: dict[str, list[float]] = {}
    if tuned_peak is not None:
        winners.setdefault(tuned_optimizer, []).append(tuned_peak)
    if constant_lr is not None:
        winners.setdefault(optimizers[0], []).append(constant_lr)
    out = _range_test(readings, optimizers)
    out += _bounds(start, extensions, optimizers, winners)
    if tuned_optimizer in now:
        out += _at_edge(
            "the tuned schedule's peak LR",
            tuned_peak,
            now[tuned_optimizer],
            start[tuned_optimizer],
        )
    first = optimizers[0]
    if constant_lr is not None and first in now:
        out += _at_edge("the CV-chosen constant LR", constant_lr, now[first], start[first])
    out += _outcome(
        tuned_value=tuned_value,
        arms=arms,
        baseline=baseline,
        search=search,
        maximize=maximize,
        metric=metric,
    )
    return tuple(out)
