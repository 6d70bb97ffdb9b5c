"""The docs site's examples run as written, its tables match the code, and the repository
documents itself.

Every ```python block of ``docs/*.md`` is a complete program and runs here, each in a scratch
folder, as ``tests/test_readme.py`` runs the README's (```py marks a fragment; a block that is
also in the README runs there). Blocks that are
files (``# mytask.py``) are written out and the study they define loads. The build itself
(``mkdocs build --strict``: dead links, stale API names) is ``make docs``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import snippets

import lrsearch
from lrsearch.config import KEYS

DOCS = snippets.ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

#: A block the README holds word for word runs in tests/test_readme.py, not twice.
_IN_README = set(snippets.python_blocks(snippets.ROOT / "README.md"))
RUNNABLE = [
    (page, i)
    for page in PAGES
    for i, block in enumerate(snippets.python_blocks(page))
    if block not in _IN_README
]


def test_the_docs_have_runnable_examples() -> None:
    pages = {page.name for page, _ in RUNNABLE}
    assert {"your-model.md", "schedules.md", "range-test.md"} <= pages


@pytest.mark.parametrize(
    ("page", "index"), RUNNABLE, ids=[f"{page.stem}-{i}" for page, i in RUNNABLE]
)
def test_docs_python_examples_run(
    page: Path, index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write study databases
    block = snippets.python_blocks(page)[index]
    namespace, printed = snippets.run_block(block, page)
    snippets.check_outcome(namespace, printed, tmp_path)


def test_docs_own_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = snippets.file_blocks(DOCS / "your-model.md")
    assert set(files) == {"mytask.py", "studies/mytask.toml"}
    snippets.load_study_files(files, "mytask", tmp_path, monkeypatch)


def test_docs_document_every_config_key() -> None:
    documented = snippets.key_rows(DOCS / "configuration.md")
    assert documented == KEYS


def test_the_api_reference_covers_the_public_api() -> None:
    text = (DOCS / "api.md").read_text()
    referenced = re.findall(r"^::: lrsearch\.(\w+)$", text, flags=re.M)
    assert sorted(referenced) == sorted(lrsearch.__all__)


def test_every_page_is_in_the_navigation() -> None:
    nav = (snippets.ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r":\s*([\w-]+\.md)\s*$", nav, flags=re.M))
    assert listed == {page.name for page in PAGES}


#: What the repository may not send a reader to: files outside it.
_OUTSIDE = re.compile(
    "|".join(
        re.escape(s)
        for s in ("DESIGN" + ".md", "DESIGN" + "'s", "STYLE" + ".md", "../" + "shared")
    )
)
#: Folders that are not the repository's own text: tools' caches, environments, build output.
_SKIP = {"build", "bench_out", "site", "node_modules", "__pycache__"}


def _repository_text_files() -> list[Path]:
    out = []
    for path in snippets.ROOT.rglob("*"):
        rel = path.relative_to(snippets.ROOT).parts
        if any(part.startswith(".") or part in _SKIP for part in rel[:-1]):
            continue
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 2_000_000:
            out.append(path)
    return out


def test_nothing_points_outside_the_repository() -> None:
    offenders = []
    for path in _repository_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images
        for number, line in enumerate(text.splitlines(), start=1):
            if _OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(snippets.ROOT)}:{number}: {line.strip()}")
    assert offenders == []
