"""``python -m graphrec``: the same as the ``graphrec`` command."""

from graphrec.cli import main

raise SystemExit(main())
