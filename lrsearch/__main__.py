"""``python -m lrsearch``: the ``lrsearch`` command."""

from lrsearch.cli import main

main()
