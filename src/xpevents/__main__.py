"""``python -m xpevents`` is the ``xpevents`` command."""

from xpevents.cli import main

main()
