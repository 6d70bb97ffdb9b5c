"""The README's examples run as written: a README that lies is a bug.

Blocks fenced as ```python are complete programs and run here; ```py marks a fragment. The
"bring your own model" files are written to a scratch folder and the study they define loads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import snippets

from lrsearch.config import KEYS

README = snippets.ROOT / "README.md"


def test_readme_has_the_suggest_schedule_example() -> None:
    blocks = snippets.python_blocks(README)
    assert blocks, "README.md lost its Python example"
    assert any("suggest_schedule(" in b and "study.optimize(" in b for b in blocks)


def test_readme_documents_every_config_key() -> None:
    documented = {k: v for k, v in snippets.key_rows(README).items() if k in KEYS}
    assert documented == KEYS


def test_readme_is_a_front_door() -> None:
    assert len(README.read_bytes()) <= 15 * 1024, "README.md: move details to docs/"


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write study databases
    for block in snippets.python_blocks(README):
        namespace, printed = snippets.run_block(block, README)
        snippets.check_outcome(namespace, printed, tmp_path)


def test_readme_own_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = snippets.file_blocks(README)
    assert set(files) == {"mytask.py", "studies/mytask.toml"}
    snippets.load_study_files(files, "mytask", tmp_path, monkeypatch)
