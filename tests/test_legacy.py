"""A study stored by an earlier release opens unchanged.

``tests/fixtures/legacy-0.1.0.db`` is the tiny study ``legacy`` (8 search trials, every stage
and arm) as lrsearch 0.1.0 stored it, with every record as that release kept it (the
comparison, the range test and the config among the study's user attrs); next to it, the report
that release made of it (``legacy_report.text``) and its figures' traces. Reading the old
database must give the same report, the same result and the same export, and change nothing in
the file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import legacy_report
import pytest
from click.testing import CliRunner

from lrsearch import export_frame, load_result
from lrsearch.cli import cli

FIXTURES = Path(__file__).parent / "fixtures"
DB = FIXTURES / "legacy-0.1.0.db"


@pytest.fixture
def url(tmp_path: Path) -> str:
    shutil.copy(DB, tmp_path / "legacy.db")
    return f"sqlite:///{tmp_path / 'legacy.db'}"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_report_of_a_study_stored_by_0_1_0_is_unchanged(url: str, tmp_path: Path) -> None:
    before = _digest(tmp_path / "legacy.db")
    out = tmp_path / "report.html"
    args = ["report", "--study", "legacy", "--storage", url, "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    expected = (FIXTURES / "legacy-0.1.0-report.html").read_text()
    assert legacy_report.text(html) == expected
    figures = json.loads((FIXTURES / "legacy-0.1.0-figures.json").read_text())
    assert legacy_report.figures(html) == figures
    assert _digest(tmp_path / "legacy.db") == before  # reading wrote nothing


def test_result_and_export_of_a_study_stored_by_0_1_0(url: str) -> None:
    result = load_result("legacy", storage=url)
    assert result.tuned_trial is not None
    assert set(result.comparison) >= {"tuned", "constant-cv", "adam-3e-4", "prodigy"}
    assert result.arms["tuned"].test_metric_per_seed
    frame = export_frame("legacy", storage=url)
    assert set(frame["source"]) >= {"search", "final"}
    assert frame.attrs["warnings"] == []
