"""``python -m rxtts.cli``: the ``rxtts`` command."""

from rxtts.cli import main

raise SystemExit(main())
