"""Progress notes of the slow ``graphrec`` commands, on stderr.

A command's result goes to stdout (with ``--json``, one clean JSON document); what it is
doing while the operator waits goes to stderr, one line when a step starts and one with its
duration when it ends::

    loading index v0007 and its ranker…
    … done in 2.1 s

Like ``git``'s progress, the notes are written only when stderr is a terminal: a script,
an Airflow task or a test that captures stderr gets the command's warnings and errors only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def enabled() -> bool:
    """Whether progress notes are written: stderr is a terminal."""
    return sys.stderr.isatty()


@contextmanager
def step(message: str) -> Iterator[None]:
    """Say on stderr what the block is doing, then how long it took.

    Args:
        message (str): what the block does, e.g. ``"reading online features"``; printed
            followed by ``…``.

    Example::

        with step(f"validating {ds}"):
            outcome = validate_partition(settings, ds)
    """
    if not enabled():
        yield
        return
    print(f"{message}…", file=sys.stderr, flush=True)
    start = time.perf_counter()
    outcome = "failed after"
    try:
        yield
        outcome = "done in"
    finally:
        print(f"… {outcome} {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
