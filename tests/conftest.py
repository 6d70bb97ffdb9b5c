"""Shared fixtures: a headless Chromium for the browser tests, and fresh databases on the
PostgreSQL and MariaDB servers for the many-worker tests.

The browser is Debian's ``chromium`` (``make test`` installs it), driven by Playwright's Python
client; Playwright downloads no browser of its own here. ``LRSEARCH_CHROMIUM`` points at
another Chromium or Chrome binary. A missing browser fails the tests that need one, it never
skips them; so does a database server that does not answer.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

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


PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
MYSQL_SERVER = "mysql+pymysql://root@127.0.0.1:3306"


def _server_database(server: str, what: str) -> Iterator[str]:
    """A fresh database on ``server`` (its name), dropped afterwards; fails if unreachable."""
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as exc:
        pytest.fail(f"the {what} server at {server} does not answer; these tests need it: {exc}")
    name = f"lrsearch_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    try:
        yield name
    finally:
        drop = f"DROP DATABASE IF EXISTS {name}"
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(drop + (" WITH (FORCE)" if "postgres" in server else "")))
        admin.dispose()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server (trust auth), as a bare URL."""
    for name in _server_database(f"{PG_SERVER}/test", "PostgreSQL"):
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"


@pytest.fixture
def mysql_database() -> Iterator[str]:
    """A fresh MariaDB/MySQL database on the local server (root, no password), as a bare URL."""
    for name in _server_database(MYSQL_SERVER, "MariaDB"):
        yield f"mysql://root@127.0.0.1:3306/{name}"
