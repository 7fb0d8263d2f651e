"""``python -m app``: the same as the ``graphrec`` command (the services launcher starts components this way)."""

from app.cli import main

raise SystemExit(main())
