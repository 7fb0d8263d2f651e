"""``python -m graphrec``: the same as the ``graphrec`` command."""

from app.cli import main

raise SystemExit(main())
