"""The code blocks of the README and the docs, read the way their tests run them.

A block fenced ```python is a complete program: the tests run it as written. A block fenced
```py is a fragment and is not run. A block (Python or TOML) whose first line is a comment
naming a file (``# mytask.py``, ``# studies/mytask.toml``) is also that file's content: the
tests write it there and load the study it defines.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import optuna
import pytest

from lrsearch import StudyResult, Task, load_config, load_task
from lrsearch.choices import ARMS, SNAPSHOT_ARM

ROOT = Path(__file__).resolve().parent.parent

_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", flags=re.S | re.M)
_FILE = re.compile(r"\A# ([\w-]+(?:/[\w-]+)*\.(?:py|toml))\n")
_KEY_ROW = re.compile(r"^\| `([a-z_.]+)` \| (.*?) \| (.*?) \|$", flags=re.M)


def fenced(path: Path, language: str) -> list[str]:
    """The blocks of ``path`` fenced as ``language``, in order."""
    return [body for lang, body in _FENCE.findall(path.read_text()) if lang == language]


def python_blocks(path: Path) -> list[str]:
    """The runnable Python blocks of ``path``."""
    return fenced(path, "python")


def file_blocks(path: Path) -> dict[str, str]:
    """Blocks that are files: their path (relative to the folder they run in) and content."""
    out = {}
    for lang in ("python", "toml"):
        for body in fenced(path, lang):
            match = _FILE.match(body)
            if match:
                out[match.group(1)] = body
    return out


def key_rows(path: Path) -> dict[str, tuple[str, str]]:
    """Rows of the form ``| `key` | meaning | default |`` in ``path``."""
    rows = _KEY_ROW.findall(path.read_text())
    return {key: (meaning, default) for key, meaning, default in rows}


def run_block(block: str, path: Path) -> tuple[dict[str, object], str]:
    """Run one block as a program (in the working directory); its namespace and stdout."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    namespace: dict[str, object] = {"__name__": "__snippet__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(path), "exec"), namespace)
    return namespace, out.getvalue()


def check_outcome(namespace: dict[str, object], printed: str, folder: Path) -> None:
    """What the README's and the docs' big examples must have done, beyond not raising."""
    study = namespace.get("study")
    if isinstance(study, optuna.Study):
        # The suggest_schedule example: the enqueued literature seeds ran first, and the search
        # found a schedule that learns the task (digits: 10 classes, chance is 0.1).
        first = [t.params["schedule"] for t in study.trials[:3]]
        assert first == ["triangular2", "onecycle", "sgdr"]
        assert study.best_value > 0.9
        assert printed.startswith("validation accuracy ")
    result = namespace.get("result")
    if isinstance(result, StudyResult):
        # The run_study example: every arm was compared on the test data (and the tuned runs'
        # snapshot ensemble too when the winner had two cycles or more).
        assert set(result.comparison or {}) - {SNAPSHOT_ARM} == set(ARMS)
        assert (folder / "blobs.db").is_file()
        assert "tuned" in printed


def load_study_files(
    files: dict[str, str], name: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Task:
    """Write an example's files into ``folder`` and load study ``name``'s config and task from
    there, as ``lrsearch run --study NAME`` would."""
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(content)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_task may add the working directory
    for module in [m.removesuffix(".py") for m in files if m.endswith(".py")]:
        monkeypatch.delitem(sys.modules, module, raising=False)
    config = load_config(name)
    task = load_task(config.task)
    assert isinstance(task, Task)
    assert task.n_train > 0 and task.load_test() is not None
    return task
