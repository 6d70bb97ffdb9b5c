"""Shared fixtures: a headless Chromium for the browser tests.

The browser is Debian's ``chromium`` (``make test`` installs it), driven by Playwright's Python
client; Playwright downloads no browser of its own here. ``LRSEARCH_CHROMIUM`` points at
another Chromium or Chrome binary. A missing browser fails the tests that need one, it never
skips them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ENV = "LRSEARCH_CHROMIUM"


def chromium_path() -> str | None:
    """The Chromium binary the tests use: ``$LRSEARCH_CHROMIUM``, else ``chromium`` on PATH."""
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``) for the whole test session."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        pytest.fail(
            "the browser tests need Chromium: `make test` installs Debian's chromium package; "
            f"elsewhere set {CHROMIUM_ENV}=/path/to/chromium"
        )
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = pw.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()
