"""``python -m fleet``: the ``fleet`` command (what supervisord runs, independent of PATH)."""

from fleet.cli import main

main()
