"""Tests for lrsearch/preflight.py: a task that cannot train fails before anything is written,
and an error raised by the task's code in a later unit is one line, the study resumable."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import tiny_task
import torch
from click.testing import CliRunner
from optuna.trial import TrialState
from torch import nn

from lrsearch.cli import cli
from lrsearch.preflight import Baseline, PreflightError, preflight
from lrsearch.tasks import Task

CPU = torch.device("cpu")


def _regression(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, x @ torch.ones(5)


def _mse_task(make_model: Callable[[], nn.Module], **changes: object) -> Task:
    fields: dict[str, object] = {
        "make_model": make_model,
        "train": _regression(120, 0),
        "test": _regression(40, 1),
        "loss": nn.MSELoss(),
        "metric": "loss",
        "epochs": 2,
        "batch_size": 20,
        "name": "broken",
    }
    fields.update(changes)
    return Task(**fields)  # type: ignore[arg-type]


class _Squeezed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x).squeeze(1)
        return out


def _no_grad_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out.detach().squeeze(1) - target).pow(2).mean()


def _nan_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out.squeeze(1) - target).pow(2).mean() * math.nan


def _regress_on_labels(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out.squeeze(1) - target.float()).pow(2).mean()


def _metric_raises(out: torch.Tensor, target: torch.Tensor) -> float:
    raise KeyError("no such column")


BROKEN: dict[str, tuple[Callable[[], Task], str]] = {
    "wrong input size": (
        lambda: _mse_task(lambda: nn.Linear(4, 1)),
        "the model fails on one batch of train (inputs of shape (20, 5))",
    ),
    "make_model raises": (
        lambda: _mse_task(lambda: nn.Linear(5, "one")),  # type: ignore[arg-type]
        "make_model() failed: TypeError",
    ),
    "shapes that only broadcast": (
        lambda: _mse_task(lambda: nn.Linear(5, 1)),
        "outputs of shape (20, 1) with targets of shape (20,), which only broadcast",
    ),
    "non-finite loss": (
        lambda: _mse_task(lambda: nn.Linear(5, 1), loss=_nan_loss),
        "the loss of the untrained model is nan",
    ),
    "loss without a gradient": (
        lambda: _mse_task(lambda: nn.Linear(5, 1), loss=_no_grad_loss),
        "does not depend on the model's parameters",
    ),
    "metric that cannot be computed": (
        lambda: _mse_task(_Squeezed, metric=_metric_raises, direction="minimize"),
        "the metric '_metric_raises' cannot be computed: KeyError",
    ),
    "accuracy of one output": (
        lambda: Task(
            lambda: nn.Linear(tiny_task.FEATURES, 1),
            tiny_task.data(60, seed=0),
            tiny_task.data(30, seed=1),
            loss=_regress_on_labels,
            name="broken",
        ),
        "metric 'accuracy' needs outputs of shape (batch, classes >= 2)",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_preflight_names_the_task_and_the_cause(case: str) -> None:
    make, words = BROKEN[case]
    task = make()
    with pytest.raises(PreflightError) as caught:
        preflight(task, CPU)
    message = str(caught.value)
    assert message.startswith(f"task {task.name!r}: ")
    assert words in message
    assert "\n" not in message


def test_preflight_measures_the_untrained_model_and_chance() -> None:
    task = tiny_task.task()
    x, _ = tiny_task.data(90, seed=5)
    y = (torch.arange(90) >= 60).long()  # two thirds class 0: what always guessing it scores
    baseline = preflight(task, CPU, validation=(x, y), seed=3)
    assert baseline.chance == pytest.approx(2 / 3)
    torch.manual_seed(3)
    model = task.make_model()
    with torch.no_grad():
        expected = float((model(x).argmax(1) == y).float().mean())
    assert baseline.untrained == pytest.approx(expected)
    assert Baseline.from_dict(baseline.to_dict()) == baseline


def test_preflight_leaves_the_rng_as_it_was() -> None:
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    preflight(tiny_task.task(), CPU, seed=0)
    assert torch.equal(torch.rand(3), expected)


# --- from the command line: exit code 2, nothing written --------------------------------------


def broken_task(case: str) -> Task:
    """``test_preflight:broken_task`` names a broken task for a config file (via a lambda)."""
    return BROKEN[case][0]()


@pytest.mark.parametrize("case", ["wrong input size", "shapes that only broadcast"])
def test_cli_refuses_a_broken_task_before_writing(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = case.replace(" ", "_")
    (tmp_path / "studies").mkdir()
    # A module of its own per case: an imported module stays in sys.modules.
    (tmp_path / "studies" / f"{name}.toml").write_text(f'task = "task_{name}:{name}"\n')
    (tmp_path / f"task_{name}.py").write_text(
        f"import test_preflight\n{name} = lambda: test_preflight.broken_task({case!r})\n"
    )
    result = CliRunner().invoke(cli, ["run", "--study", name])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("lrsearch: error: task 'broken': ")
    assert BROKEN[case][1] in line
    assert not (tmp_path / "studies" / "lrsearch.db").exists()


class _FailsLater(nn.Module):
    """The tiny task's MLP, raising once it has run ``after`` forward passes in its process."""

    calls = 0
    after = 10**9

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_task.make_model()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        if type(self).calls > type(self).after:
            raise RuntimeError("the data loader lost its file")
        out: torch.Tensor = self.net(x)
        return out


def fails_later() -> Task:
    """The tiny task whose model raises after ``_FailsLater.after`` forward passes."""
    return tiny_task.task(make_model=_FailsLater)


def test_an_error_in_a_later_unit_is_one_line_and_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "later.toml").write_text(
        'task = "test_preflight:fails_later"\nn_trials = 3\nepochs = 2\ncv_grid = 2\n'
        'cv_folds = 2\nfinal_seeds = 2\nfinalists = 2\nthreads = 1\ndevice = "cpu"\n'
        'arms = ["tuned", "constant-cv"]\n[range_test]\nnum_iter = 20\n'
    )
    monkeypatch.setattr(_FailsLater, "calls", 0)
    monkeypatch.setattr(_FailsLater, "after", 60)  # past the pre-flight, inside the units
    result = CliRunner().invoke(cli, ["run", "--study", "later"])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "failed: RuntimeError: the data loader lost its file" in line
    assert "running the study again resumes it" in line
    storage = "sqlite:///studies/lrsearch.db"
    failed = [
        t
        for name in optuna.get_all_study_names(storage)
        for t in optuna.load_study(study_name=name, storage=storage).trials
        if t.state == TrialState.FAIL and name != "later/runs"  # the run's record fails too
    ]
    assert len(failed) == 1
    # The task is mended: the same command resumes the study and finishes it.
    monkeypatch.setattr(_FailsLater, "after", 10**9)
    result = CliRunner().invoke(cli, ["run", "--study", "later"])
    assert result.exit_code == 0, result.output
    assert "final comparison on the held-out test set" in result.output


def test_preflight_error_is_a_value_error() -> None:
    assert issubclass(PreflightError, ValueError)
