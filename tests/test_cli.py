"""Tests for lrsearch/cli.py, driven in-process with click's CliRunner."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from click.testing import CliRunner, Result
from optuna.trial import TrialState

import lrsearch
from lrsearch import Schedule, StudyResult
from lrsearch.choices import ARMS
from lrsearch.cli import cli
from lrsearch.exceptions import InvalidParameterError, LrsearchError
from lrsearch.optimizers import search_optimizer
from lrsearch.store import load_stored
from lrsearch.study import load_result, run_study

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def test_help_and_version() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "learning rate" in result.output
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"lrsearch, version {lrsearch.__version__}"


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["nosuch"])
    assert result.exit_code == 2
    assert "No such command 'nosuch'" in result.output


def test_console_script_is_installed() -> None:
    # The entry point in pyproject.toml resolves: `python -m` through the installed metadata.
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "lrsearch"]
    assert script.value == "lrsearch.cli:main"
    done = subprocess.run(
        [sys.executable, "-c", "from lrsearch.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


# --- the pipeline from the command line ------------------------------------------------------

TINY_TOML = """\
task = "tiny_task:task"
n_trials = 4
epochs = 2
cv_folds = 2
cv_grid = 2
final_seeds = 2
finalists = 2
threads = 1
device = "cpu"

[range_test]
num_iter = 20
"""


def _studies_dir(tmp_path: Path, name: str = "tiny", text: str = TINY_TOML) -> Path:
    folder = tmp_path / "studies"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _contents(folder: Path) -> list[tuple[str, bytes]]:
    return sorted(
        (str(p.relative_to(folder)), p.read_bytes() if p.is_file() else b"")
        for p in folder.rglob("*")
    )


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the working directory, with studies/tiny.toml in it (its task is
    ``tiny_task:task``, from this folder)."""
    _studies_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    return tmp_path


def test_run_prints_the_comparison_and_studies_lists_it(cwd: Path) -> None:
    url = f"sqlite:///{cwd}/x.db"
    runner = CliRunner()
    result = runner.invoke(cli, ["run", "--study", "tiny", "--storage", url])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"study tiny in {url}\n")
    assert "range test: LR bounds " in out
    assert "constant LR chosen by CV: " in out
    assert "final comparison on the held-out test set (2 seeds per arm):" in out
    comparison = load_result("tiny", storage=url).comparison
    assert comparison is not None
    lines = out.splitlines()
    for arm in ARMS:
        (row,) = [line for line in lines if line.strip().startswith(arm + " ") and "±" in line]
        data = comparison[arm]
        assert f"{data['test_metric_mean']:.4f} ± {data['test_metric_std']:.4f}" in row
    (verdict,) = [line for line in lines if line.startswith("tuned ") and "constant-cv" in line]
    assert "constant-cv" in verdict and "adam-3e-4" in verdict
    assert re.search(r"(beats|ties|loses to) constant-cv \((not )?significantly", verdict)
    # Every warning of the result, one line each, after the verdict and before the hints.
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert warnings == [w.line() for w in lrsearch.load_result("tiny", storage=url).warnings]
    assert lines.index(verdict) < len(lines) - len(warnings) - 3
    # Then what it cost, tuning and verification, in full runs.
    cost = load_result("tiny", storage=url).cost
    assert cost is not None
    (spent,) = [line for line in lines if line.startswith("cost: ")]
    assert spent == f"cost: {cost.describe()}"
    assert lines.index(verdict) < lines.index(spent) < len(lines) - len(warnings) - 2
    assert re.match(r"cost: tuning [\d.]+ runs \(range test [\d.]+, search [\d.]+, ", spent)
    assert "; verification " in spent and "final comparison" in spent
    assert lines[-2] == f"look at it: lrsearch report --study tiny --storage {url}"
    assert lines[-1] == f"        or: lrsearch dashboard --storage {url}"
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 4

    listed = runner.invoke(cli, ["studies", "--storage", url])
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.splitlines()
    assert [row.split()[0] for row in rows] == ["tiny"]  # its stages' studies folded in
    assert header.split()[:3] == ["study", "direction", "search"]
    assert rows[0].split()[2] == "4/4"

    # Run again: the finished study prints the same summary (no new trials).
    again = runner.invoke(cli, ["run", "--study", "tiny", "--storage", url])
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-12:] == lines[-12:]
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 4


def test_run_flags_override_the_config(cwd: Path) -> None:
    url = f"sqlite:///{cwd}/x.db"
    result = CliRunner().invoke(
        cli,
        ["run", "--study", "tiny", "--storage", url, "--n-trials", "2", "--skip-baselines"],
    )
    assert result.exit_code == 0, result.output
    assert "final comparison" not in result.stdout
    assert re.search(
        r"^cost: tuning [\d.]+ runs \(range test [\d.]+, search [\d.]+\); "
        r"verification 0\.0 runs; a run is \d+ optimizer steps$",
        result.stdout,
        re.M,
    )
    assert sorted(optuna.get_all_study_names(url)) == [
        "tiny",
        "tiny/bounds",
        "tiny/range-test",
        "tiny/runs",
    ]
    study = optuna.load_study(study_name="tiny", storage=url)
    # The budget is 2 trials: of the literature's seeds only 2 are enqueued, none waits.
    assert len(study.trials) == 2
    assert not [t for t in study.trials if t.state == TrialState.WAITING]
    assert all(t.user_attrs.get("seeded") for t in study.trials)
    assert load_stored("tiny", storage=url).attrs["config"]["n_trials"] == 2


def test_range_test_prints_bounds_and_writes_a_plot(cwd: Path) -> None:
    result = CliRunner().invoke(cli, ["range-test", "--study", "tiny", "--plot", "out.html"])
    assert result.exit_code == 0, result.output
    match = re.search(r"^bounds: +(\S+) \.\. (\S+)$", result.stdout, re.MULTILINE)
    assert match is not None
    assert 0 < float(match.group(1)) < float(match.group(2))
    assert re.search(r"^suggestion: +\S+$", result.stdout, re.MULTILINE)
    assert "plot: out.html" in result.stdout
    html = (cwd / "out.html").read_text(encoding="utf-8")
    assert "<html>" in html and "plotly" in html.lower()
    # Nothing is stored.
    assert not (cwd / "studies" / "lrsearch.db").exists()


def test_range_test_says_when_its_reading_is_doubtful(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    _studies_dir(tmp_path, "cnn", 'task = "newuser_task:task"\nthreads = 1\n')
    result = CliRunner().invoke(cli, ["range-test", "--study", "cnn"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert warnings and "never clearly fell beyond its noise" in warnings[0]
    assert "redoes it longer" in warnings[0]


#: TOML text -> what the one-line error says (config errors also name the file).
BAD_CONFIGS = {
    "unknown key": (
        'task = "tiny_task:task"\nepochz = 3\n',
        "bad.toml: unknown key 'epochz' (did you mean 'epochs'?)",
    ),
    "unknown key, nothing close": (
        'task = "tiny_task:task"\ncolour = "red"\n',
        "bad.toml: unknown key 'colour' (valid keys: task, n_trials,",
    ),
    "wrong type": (
        'task = "tiny_task:task"\nn_trials = "ten"\n',
        "bad.toml: n_trials must be an integer >= 1; got 'ten'",
    ),
    "out of range": (
        'task = "tiny_task:task"\ncv_folds = 1\n',
        "bad.toml: cv_folds must be an integer >= 2; got 1",
    ),
    "nested out of range": (
        'task = "tiny_task:task"\n[range_test]\nnum_iter = 2\n',
        "bad.toml: range_test.num_iter must be an integer >= 5; got 2",
    ),
    "not TOML": ("task = \n", "bad.toml: not valid TOML"),
    "missing task": ("epochs = 2\n", "bad.toml: missing key 'task'"),
    "unimportable task": (
        'task = "no_such_module_lrsearch:task"\n',
        "task 'no_such_module_lrsearch:task': cannot import 'no_such_module_lrsearch'",
    ),
    "task not a Task": (
        'task = "tiny_task:N_TRAIN"\n',
        "task 'tiny_task:N_TRAIN' must give an lrsearch.tasks.Task; got int",
    ),
    "unknown built-in task": ('task = "cifar"\n', "unknown task 'cifar'"),
    "unknown arm": (
        'task = "tiny_task:task"\narms = ["tuned", "adam"]\n',
        "bad.toml: arms must be one of ['tuned', 'constant-cv', 'adam-3e-4', 'prodigy', "
        "'schedule-free-adamw']; got 'adam'",
    ),
    "arms without tuned": (
        'task = "tiny_task:task"\narms = ["prodigy"]\n',
        "bad.toml: arms must include 'tuned'",
    ),
    "unknown optimizer": (
        'task = "tiny_task:task"\noptimizers = ["sgd", "lion"]\n',
        "bad.toml: optimizers must be one of ['task', 'sgd', 'nesterov', 'adamw']; got 'lion'",
    ),
    "repeated optimizer": (
        'task = "tiny_task:task"\noptimizers = ["adamw", "adamw"]\n',
        "bad.toml: optimizers has a repeated name",
    ),
}


def _assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lrsearch: error: ")
    for needle in needles:
        assert needle in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_bad_config_is_one_line_and_writes_nothing(cwd: Path, case: str) -> None:
    text, message = BAD_CONFIGS[case]
    _studies_dir(cwd, "bad", text)
    before = _contents(cwd)
    result = CliRunner().invoke(
        cli, ["run", "--study", "bad", "--storage", f"sqlite:///{cwd}/x.db"]
    )
    _assert_one_line_error(result, message)
    assert not (cwd / "x.db").exists()
    assert _contents(cwd) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--study", "nosuch"], "no config for study 'nosuch'"),
        (["run", "--study", "../x"], "study name must be"),
        (["run", "--study", "a/b"], "study name must be"),
        (["run", "--study", "tiny", "--storage", "not a url"], "not a storage URL"),
        (["studies"], "no study database at sqlite:///"),
        (["range-test", "--study", "nosuch"], "no config for study 'nosuch'"),
        (["range-test", "--study", "tiny", "--plot", "no/dir/p.html"], "does not exist"),
    ],
)
def test_an_error_is_one_line_exit_2_and_writes_nothing(
    cwd: Path, args: list[str], message: str
) -> None:
    if "--storage" not in args and args[0] != "range-test":
        args = [*args, "--storage", f"sqlite:///{cwd}/x.db"]
    before = _contents(cwd)
    result = CliRunner().invoke(cli, args)
    _assert_one_line_error(result, message)
    assert not (cwd / "x.db").exists()
    assert _contents(cwd) == before


def test_studies_without_a_storage_flag_does_not_create_the_default_database(cwd: Path) -> None:
    before = _contents(cwd)
    result = CliRunner().invoke(cli, ["studies"])
    _assert_one_line_error(result, "no study database at sqlite:///studies/lrsearch.db")
    assert _contents(cwd) == before


def test_a_storage_password_is_never_shown(cwd: Path) -> None:
    url = "postgresql://someone:hunter2secret@127.0.0.1:9/optuna"
    before = _contents(cwd)
    result = CliRunner().invoke(cli, ["run", "--study", "tiny", "--storage", url])
    _assert_one_line_error(result, "cannot open storage postgresql://someone:***@127.0.0.1:9")
    assert "hunter2secret" not in result.output
    assert _contents(cwd) == before


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_bad_flag_is_a_usage_error(cwd: Path, value: str) -> None:
    before = _contents(cwd)
    result = CliRunner().invoke(
        cli, ["run", "--study", "tiny", "--storage", f"sqlite:///{cwd}/x.db", "--n-trials", value]
    )
    assert result.exit_code == 2
    assert "Invalid value for '--n-trials'" in result.stderr
    assert not (cwd / "x.db").exists()
    assert _contents(cwd) == before


def test_debug_raises_instead(cwd: Path) -> None:
    before = _contents(cwd)
    result = CliRunner().invoke(
        cli, ["--debug", "run", "--study", "nosuch", "--storage", f"sqlite:///{cwd}/x.db"]
    )
    assert isinstance(result.exception, LrsearchError)
    assert isinstance(result.exception, InvalidParameterError)
    assert "no config for study 'nosuch'" in str(result.exception)
    assert result.exit_code == 1
    assert "lrsearch: error:" not in result.output
    assert _contents(cwd) == before


# --- lrsearch best: train with the winner ---------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, StudyResult]:
    """A finished tiny study (every stage, 4 search trials) and its result."""
    import tiny_task

    url = f"sqlite:///{tmp_path_factory.mktemp('best') / 'x.db'}"
    return url, run_study(tiny_task.config(n_trials=4), storage=url)


def _exec_best(code: str, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Run what `lrsearch best` printed, for a small ``model`` (and a task's own optimizer)."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    namespace: dict[str, Any] = {"model": model}
    if optimizer is not None:
        namespace["optimizer"] = optimizer
    exec(compile(code, "<lrsearch best>", "exec"), namespace)
    return namespace


def test_best_prints_python_that_builds_the_tuned_schedule(
    finished: tuple[str, StudyResult],
) -> None:
    url, result = finished
    args = ["best", "--study", "tiny", "--storage", url, "--steps-per-epoch", "7"]
    out = CliRunner().invoke(cli, [*args, "--epochs", "3"])
    assert out.exit_code == 0, out.output
    expected = result.schedule_for(steps_per_epoch=7, epochs=3)
    lines = out.stdout.splitlines()
    assert lines[0] == (
        f"# study tiny, trial #{result.tuned_trial}: validation accuracy {result.best_value:.4f}"
    )
    assert lines[1] == f"# {expected.describe(7)}"
    assert lines[2] == "# for 7 optimizer steps per epoch and 3 epochs (21 steps)"
    # The task's own optimizer (the study searched `task`): the code builds the scheduler on it.
    mine = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0, momentum=0.9)
    namespace = _exec_best(out.stdout, mine)
    assert namespace["schedule"] == expected
    assert namespace["scheduler"].optimizer is mine
    assert mine.param_groups[0]["lr"] == pytest.approx(expected.lrs(21)[0])


def test_best_json_holds_the_schedules_fields(finished: tuple[str, StudyResult]) -> None:
    url, result = finished
    args = ["best", "--study", "tiny", "--storage", url, "--steps-per-epoch", "7"]
    out = CliRunner().invoke(cli, [*args, "--epochs", "3", "--format", "json"])
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout)
    assert Schedule.from_dict(record["schedule"]) == result.schedule_for(
        steps_per_epoch=7, epochs=3
    )
    assert {k: v for k, v in record.items() if k != "schedule"} == {
        "study": "tiny",
        "trial": result.tuned_trial,
        "metric": "accuracy",
        "value": result.best_value,
        "steps_per_epoch": 7,
        "epochs": 3,
        "total_steps": 21,
        "optimizer": "task",
        "weight_decay": None,
    }


def _journal_mode(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        mode: str = conn.execute("PRAGMA journal_mode").fetchone()[0]
        return mode


@pytest.fixture
def rollback_journal(finished: tuple[str, StudyResult], tmp_path: Path) -> Path:
    """A copy of the finished study's SQLite file, in the rollback-journal mode ``delete``."""
    source = Path(finished[0].removeprefix("sqlite:///"))
    copy = tmp_path / "delete.db"
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(copy)) as dst,
    ):
        src.backup(dst)
        assert dst.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    assert _journal_mode(copy) == "delete"
    return copy


def test_readers_leave_a_sqlite_files_journal_mode_as_they_found_it(
    rollback_journal: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna_dashboard

    from lrsearch.pipeline import load_result
    from lrsearch.report import export_frame
    from lrsearch.store import list_studies, load_stored

    path = rollback_journal
    url = f"sqlite:///{path}"
    runner = CliRunner()
    study = ["--study", "tiny", "--storage", url]
    commands = {
        "report": ["report", *study, "--out", str(tmp_path / "r.html")],
        "export": ["export", *study, "--out", str(tmp_path / "r.csv")],
        "studies": ["studies", "--storage", url],
        "best": ["best", *study, "--steps-per-epoch", "7", "--epochs", "3"],
    }
    for what, args in commands.items():
        out = runner.invoke(cli, args)
        assert out.exit_code == 0, (what, out.output)
        assert _journal_mode(path) == "delete", what
        if what == "studies":
            assert out.stdout.splitlines()[1].split()[0] == "tiny"  # it read the file
    assert "tiny" in (tmp_path / "r.html").read_text() and (tmp_path / "r.csv").stat().st_size

    # In Python: the readers behind those commands.
    assert load_result("tiny", storage=url).name == "tiny"
    stored = load_stored("tiny", storage=url)
    assert stored.attrs["config"]  # read through the open storage
    assert not export_frame("tiny", storage=url).empty
    assert list(list_studies(url)["study"]) == ["tiny"]
    assert _journal_mode(path) == "delete"

    # `lrsearch dashboard`: the storage it hands optuna-dashboard, used as the server would.
    served: list[int] = []

    def run_server(store: Any, *, host: str, port: int) -> None:
        served.append(len(optuna.get_all_study_summaries(store)))
        store.engine.dispose()

    monkeypatch.setattr(optuna_dashboard, "run_server", run_server)
    out = runner.invoke(cli, ["dashboard", "--storage", url, "--port", str(_free_port())])
    assert out.exit_code == 0, out.output
    assert served and served[0] >= 1
    assert _journal_mode(path) == "delete"

    # A writer may still switch it: `lrsearch run` keeps its write-ahead log.
    from lrsearch.store import open_storage

    writer = open_storage(url)
    optuna.load_study(study_name="tiny", storage=writer).set_user_attr("written", True)
    writer.engine.dispose()
    assert _journal_mode(path) == "wal"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: Winners of studies that searched lrsearch's optimizers: params as a trial stores them.
WINNERS = {
    "adamw": {
        "optimizer": "adamw",
        "adamw:schedule": "cosine",
        "adamw:max_lr": 0.01,
        "adamw:base_lr": 0.001,
        "adamw:warmup": 1,
        "adamw:weight_decay": 0.05,
    },
    "nesterov": {
        "optimizer": "nesterov",
        "nesterov:schedule": "onecycle",
        "nesterov:max_lr": 0.3,
        "nesterov:base_lr": 0.012,
    },
    "sgd": {
        "optimizer": "sgd",
        "sgd:schedule": "plateau",
        "sgd:max_lr": 0.2,
        "sgd:base_lr": 0.0,
        "sgd:decay": 0.5,
        "sgd:patience": 1,
    },
}


@pytest.mark.parametrize("name", sorted(WINNERS))
def test_best_prints_the_searched_optimizer_as_the_search_made_it(
    finished: tuple[str, StudyResult], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    import lrsearch.pipeline

    _, result = finished
    winner = dataclasses.replace(
        result, best_params=WINNERS[name], optimizers=("sgd", "nesterov", "adamw")
    )
    monkeypatch.setattr(lrsearch.pipeline, "load_result", lambda *a, **k: winner)
    out = CliRunner().invoke(
        cli, ["best", "--study", "tiny", "--steps-per-epoch", "5", "--epochs", "4"]
    )
    assert out.exit_code == 0, out.output
    namespace = _exec_best(out.stdout)
    setup = winner.setup_for(steps_per_epoch=5, epochs=4)
    assert namespace["schedule"] == setup.schedule
    made = namespace["optimizer"]
    factory = search_optimizer(name, None, weight_decay=setup.weight_decay)
    reference = factory(namespace["model"].parameters(), setup.schedule.max_lr)
    assert type(made) is type(reference)
    # Every setting the search's optimizer has (momentum, Nesterov, betas, each group's decay),
    # but the LR, which the schedule sets.
    assert len(made.param_groups) == len(reference.param_groups)
    for mine, theirs in zip(made.param_groups, reference.param_groups, strict=True):
        assert len(mine["params"]) == len(theirs["params"])
        assert {k: mine[k] for k in theirs if k not in ("params", "lr")} == {
            k: v for k, v in theirs.items() if k not in ("params", "lr")
        }
    if name == "sgd":  # plateau: stepped per epoch with the study's metric, in its direction
        assert "maximize=True" in out.stdout
        assert "# once per epoch: scheduler.step(validation accuracy)" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--study", "nosuch"], "no study 'nosuch'"),
        (["--epochs", "1", "--steps-per-epoch", "2"], "total_steps must be at least"),
    ],
)
def test_best_errors_are_one_line_exit_2(
    finished: tuple[str, StudyResult],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    url, result = finished
    if "total_steps" in message:  # a 1cycle winner does not fit a 2-step run
        import lrsearch.pipeline

        onecycle = {"schedule": "onecycle", "max_lr": 0.1, "base_lr": 0.004}
        winner = dataclasses.replace(result, best_params=onecycle)
        monkeypatch.setattr(lrsearch.pipeline, "load_result", lambda *a, **k: winner)
    base = {"--study": "tiny", "--storage": url, "--steps-per-epoch": "7", "--epochs": "3"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    out = CliRunner().invoke(cli, ["best", *(x for kv in base.items() for x in kv)])
    _assert_one_line_error(out, message)


@pytest.mark.parametrize("args", [["--steps-per-epoch", "0"], ["--epochs", "-1"], []])
def test_best_bad_counts_are_usage_errors(
    finished: tuple[str, StudyResult], args: list[str]
) -> None:
    url, _ = finished
    base = ["best", "--study", "tiny", "--storage", url]
    out = CliRunner().invoke(cli, [*base, *args])
    assert out.exit_code == 2
    assert "Invalid value for" in out.stderr or "Missing option" in out.stderr
