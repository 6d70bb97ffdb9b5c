"""The ``lrsearch`` command. Only this module talks to the terminal."""

from __future__ import annotations

import click

from lrsearch import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lrsearch")
def cli() -> None:
    """Find a learning rate and a schedule for a PyTorch model.

    The pipeline (`lrsearch run --study NAME`) arrives with its own commands; for now the
    Python API (`suggest_schedule`, `Schedule`) is the way in.
    """


def main() -> None:
    """Entry point of the ``lrsearch`` console script."""
    cli()
