"""Tests for lrsearch/cli.py, driven in-process with click's CliRunner."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

import lrsearch
from lrsearch.cli import cli


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
