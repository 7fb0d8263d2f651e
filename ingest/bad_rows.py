"""Bad-row records: a row of a source that could not be landed, with its line and reason.

Loaders report rows they cannot parse in this shape; :func:`validation.source_rows.find_bad_rows`
reports rows that break the contract's row rules in the same shape.
"""

from __future__ import annotations

from typing import Any

from graphrec.lake import jsonable

BAD_ROW_COLUMNS = ["line", "check", "column", "value", "message"]


def bad_row(line: int, check: str, column: str | None, value: Any, message: str) -> dict[str, Any]:
    """One bad-row record (the shape of :data:`BAD_ROW_COLUMNS`)."""
    return {"line": int(line), "check": check, "column": column, "value": jsonable(value), "message": message}
