"""File-level checks that come before Great Expectations: can the file be read at all?

:func:`read_parquet_checked` tells apart a missing file, an empty file, a file in another
format (CSV or JSON text, gzip...), a damaged Parquet file and text that is not valid
UTF-8, and otherwise returns the frame with dtypes that mirror the file's Parquet types.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_MAGIC = b"PAR1"


def nullable_ints(arrow_type: pa.DataType):
    """Arrow → pandas type mapping: ``int64`` becomes pandas' nullable ``Int64``.

    Plain pandas would turn an ``int64`` column with nulls into ``float64``, and the null
    ids would be reported as a type error; with ``Int64`` they are reported as nulls, and a
    column that really is float in the file still fails the type check.
    """
    return pd.Int64Dtype() if arrow_type == pa.int64() else None


@dataclasses.dataclass(frozen=True)
class FileProblem:
    """Why a file could not be read: a check name and a readable message."""

    check: str
    message: str


def _sniff(head: bytes) -> str:
    """A guess at what a non-Parquet file is, for the error message."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return "JSON text"
    if "," in text or "\t" in text or ";" in text:
        return "CSV/delimited text"
    return "text"


def _invalid_utf8(table: pa.Table) -> list[str]:
    """Columns whose text values are not valid UTF-8 (binary columns included)."""
    bad = []
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            try:
                column.cast(pa.string()).validate(full=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                bad.append(name)
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                bad.append(name)
    return bad


def read_parquet_checked(path: Path, prefix: str = "") -> tuple[pd.DataFrame | None, FileProblem | None]:
    """Read one Parquet file of a partition, or say which file-level check it fails.

    Args:
        path: the file.
        prefix: prepended to the check names (``"items_"`` maps every problem of the items
            file to ``items_unreadable``; the interactions file uses the plain names).

    Returns:
        ``(frame, None)`` or ``(None, problem)``. A file with zero rows is returned as a
        frame: the suites report it as ``empty_file``.
    """

    def problem(check: str, message: str) -> tuple[None, FileProblem]:
        return None, FileProblem(f"{prefix}unreadable" if prefix else check, f"{path.name}: {message}")

    if not path.is_file():
        return problem("missing_file", "file is missing")
    size = path.stat().st_size
    if size == 0:
        return problem("empty_file", "file is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(64)
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    if not head.startswith(PARQUET_MAGIC):
        return problem("wrong_format", f"not a Parquet file (no PAR1 header; looks like {_sniff(head)})")
    if tail != PARQUET_MAGIC:
        return problem("corrupt_file", f"truncated or damaged Parquet file ({size} bytes, no PAR1 footer)")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        return problem("corrupt_file", f"damaged Parquet file: {type(exc).__name__}: {exc}")
    try:
        bad_text = _invalid_utf8(table)
    except UnicodeDecodeError as exc:  # a column name (in the file's schema) that is not UTF-8
        return problem("wrong_encoding", f"column names are not valid UTF-8 ({exc.reason} at byte {exc.start})")
    if bad_text:
        return problem("wrong_encoding", f"column(s) {bad_text} hold text that is not valid UTF-8")
    try:
        # Pandas metadata stored in the file is ignored on purpose: it would let a writer's
        # in-memory dtype (say nullable Int64) mask what the file holds.
        return table.to_pandas(ignore_metadata=True, types_mapper=nullable_ints), None
    except (ValueError, pa.ArrowException) as exc:  # e.g. timestamps out of pandas' range
        return problem("corrupt_file", f"values cannot be converted: {type(exc).__name__}: {exc}")
