"""Logging levels that keep graphrec's task logs and commands readable.

Several libraries log routine chatter at INFO or above when they are imported or used:
Great Expectations one "Skipping registering function …" line per decorated function
(200 lines in a task log), FAISS its search for AVX-512/AVX2 builds (with a
``ModuleNotFoundError`` for each build it does not find), Alembic its migration steps.
:func:`quiet_libraries` raises those loggers' levels at the source, so a task log holds
graphrec's own lines and the libraries' warnings and errors, nothing less.
"""

from __future__ import annotations

import logging

#: Logger -> the lowest level still shown.
QUIET = {
    "great_expectations": logging.WARNING,
    "faiss.loader": logging.WARNING,
    "alembic.runtime.migration": logging.WARNING,
    "numexpr.utils": logging.WARNING,
    "httpx": logging.WARNING,
}


def quiet_libraries() -> None:
    """Raise the level of the noisy libraries' loggers (:data:`QUIET`); idempotent and cheap."""
    for name, level in QUIET.items():
        logging.getLogger(name).setLevel(level)
