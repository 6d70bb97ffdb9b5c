"""The README's Python examples run as written: a README that lies is a bug.

Blocks fenced as ```python are complete programs and run here; ```py marks a fragment.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import optuna
import pytest

from lrsearch import StudyResult
from lrsearch.choices import ARMS, SNAPSHOT_ARM
from lrsearch.config import KEYS

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_has_the_suggest_schedule_example() -> None:
    blocks = _python_blocks()
    assert blocks, "README.md lost its Python example"
    assert any("suggest_schedule(" in b and "study.optimize(" in b for b in blocks)


def test_readme_documents_every_config_key() -> None:
    rows = re.findall(r"^\| `([a-z_.]+)` \| (.*?) \| (.*?) \|$", README.read_text(), flags=re.M)
    documented = {key: (meaning, default) for key, meaning, default in rows if key in KEYS}
    assert documented == KEYS


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write study databases
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for block in _python_blocks():
        namespace: dict[str, object] = {"__name__": "__readme__"}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), namespace)
        study = namespace.get("study")
        if isinstance(study, optuna.Study):
            # The enqueued literature seeds ran first, and the search found a schedule that
            # learns the task (digits: 10 classes, chance is 0.1).
            first = [t.params["schedule"] for t in study.trials[:3]]
            assert first == ["triangular2", "onecycle", "sgdr"]
            assert study.best_value > 0.9
            assert out.getvalue().startswith("validation accuracy ")
        result = namespace.get("result")
        if isinstance(result, StudyResult):
            # The run_study example: every arm was compared on the test data (and the tuned
            # runs' snapshot ensemble too when the winner had two cycles or more).
            assert set(result.comparison or {}) - {SNAPSHOT_ARM} == set(ARMS)
            assert (tmp_path / "blobs.db").is_file()
            assert "tuned" in out.getvalue()
