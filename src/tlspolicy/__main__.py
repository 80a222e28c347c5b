"""``python -m tlspolicy``: the command line."""

from .cli import main

raise SystemExit(main())
