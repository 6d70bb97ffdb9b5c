"""The new user's case, end to end: a sweep lost in its noise is doubted, redone, and the search
starts from the optimizer's plausible span; the tuned arm learns (well above chance), and every
step of it is said as a ``warning:`` line, in the result, the CLI, the report and the note."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner, Result

from lrsearch.cli import cli
from lrsearch.optimizers import SGD_SPAN
from lrsearch.pipeline.range_test import REDO_FACTOR, REDO_SWEEPS, redo_key, unit_key
from lrsearch.report import report_html
from lrsearch.report.dashboard import note_markdown
from lrsearch.store import first_done, load_stored
from lrsearch.study import load_result

TOML = """\
task = "newuser_task:task"
n_trials = 8
cv_folds = 2
cv_grid = 4
finalists = 2
final_seeds = 2
arms = ["tuned", "constant-cv"]
threads = 1
device = "cpu"
"""

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> tuple[Result, str]:
    """``lrsearch run --study cnn`` with ``body`` as its config: the CLI's result, the URL."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "cnn.toml").write_text(body)
    url = f"sqlite:///{tmp_path / 'cnn.db'}"
    run = CliRunner().invoke(cli, ["run", "--study", "cnn", "--storage", url])
    assert run.exit_code == 0, run.output
    return run, url


def test_the_new_users_cnn_is_redone_searched_wide_and_learns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, url = _run(tmp_path, monkeypatch, TOML)
    result = load_result("cnn", storage=url)

    # The first sweep could not be read; the redo ran as units, and could not either.
    units = first_done(optuna.load_study(study_name="cnn/range-test", storage=url).trials)
    assert set(units) == {unit_key("task")} | {redo_key("task", r) for r in range(REDO_SWEEPS)}
    redo = units[redo_key("task", 0)].user_attrs["range_test"]
    assert redo["num_iter"] == 100 * REDO_FACTOR
    (first,) = [r for r in result.bounds_history if r["step"] == 0]
    assert first["cause"] == "wide"
    assert (first["low"], first["high"]) == (SGD_SPAN.low, SGD_SPAN.high)
    codes = [w.code for w in result.warnings]
    assert codes[:3] == ["range-test-redone", "range-test-unconfident", "runs-too-short"]

    # The tuned arm learned: well above chance (0.25 for four balanced classes).
    assert result.comparison is not None
    assert result.comparison["tuned"]["test_metric_mean"] > 0.33
    assert "tuned-at-chance" not in codes

    # Said where a user looks: the CLI's last lines, the report's box, the dashboard's note.
    printed = [line for line in run.stdout.splitlines() if line.startswith("warning: ")]
    assert printed == [w.line() for w in result.warnings]
    assert "searched LR range: 1e-05 .. 10 (from the optimizer's plausible span" in run.stdout
    stored = load_stored("cnn", storage=url)
    page = report_html(stored)
    box = page.index('<div class="warnings"')
    assert box < page.index("<h2>1. LR range test</h2>")
    assert "could not be read either" in page[box:]
    note = note_markdown(stored)
    assert all(f"- **{w.line()}**" in note for w in result.warnings)


def test_without_a_redo_a_doubtful_sweep_searches_the_span_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # range_test.redo = 0, as a small budget on short runs plans it: no redo units; the
    # search starts from the plausible span at once, and a warning says why and what to do.
    body = TOML.replace("n_trials = 8", "n_trials = 4") + "\n[range_test]\nredo = 0\n"
    run, url = _run(tmp_path, monkeypatch, body)
    result = load_result("cnn", storage=url)

    units = first_done(optuna.load_study(study_name="cnn/range-test", storage=url).trials)
    assert set(units) == {unit_key("task")}
    (first,) = [r for r in result.bounds_history if r["step"] == 0]
    assert first["cause"] == "wide"
    assert (first["low"], first["high"]) == (SGD_SPAN.low, SGD_SPAN.high)
    (warning,) = [w for w in result.warnings if w.code.startswith("range-test")]
    assert warning.code == "range-test-unconfident"
    assert "no redo planned (range_test.redo = 0" in warning.text
    assert "raise budget" in warning.text
    assert warning.line() in run.stdout.splitlines()
