"""Reading a generic source's file: CSV records with their line numbers, or Parquet rows.

Line numbers (the index of what :func:`read_file` returns and the ``line`` of every
bad-row record) are 1-based physical line numbers of the CSV file as a text editor shows
them (the header is line 1, the first data row line 2; a record whose quoted field spans
several lines has the line where it starts); for Parquet they are 1-based row numbers.

CSV records that cannot be read are returned as parse errors by line: a line that is not
valid in the file's encoding (``invalid_encoding``; the other lines still load), a record
with the wrong number of fields (``wrong_field_count``), malformed quoting
(``unparseable_row``). Blank lines are not records and are skipped. Values stay text:
:mod:`ingest.generic_mapping` parses them.

The CSV reader is the standard library's ``csv`` module in strict mode over text decoded
line by line, not ``pandas.read_csv`` or ``pyarrow.csv``: neither reports the line a
record starts on (pandas' ``on_bad_lines`` callback gets the fields only; pyarrow's
``invalid_row_handler`` gets no line number once values may hold newlines), pandas pads a
short record with missing values instead of reporting it and, tried here, lost a record
with text after a closing quote without a word, and both fail the whole file on one line
that is not valid in its encoding.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ingest.bad_rows import bad_row
from ingest.generic_config import FileOptions, SourceConfigError


def _ascii_compatible(encoding: str) -> bool:
    probe = "\r\n\t ,;|\"'0123456789azAZ"
    try:
        return probe.encode(encoding) == probe.encode("ascii")
    except UnicodeError:
        return False


def _decode(data: bytes, encoding: str, path: Path) -> tuple[str, set[int]]:
    """Decode a file, line by line where it is not valid: (text, numbers of invalid lines).

    An invalid line is replaced by its bare line ending, so the text keeps its line numbers.
    """
    if codecs.lookup(encoding).name == "utf-8" and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode(encoding), set()
    except UnicodeDecodeError as exc:
        if not _ascii_compatible(encoding):
            raise SourceConfigError(
                f"{path} is not valid {encoding} (byte {exc.start}: {exc.reason}); lines can "
                f"only be checked one by one in ASCII-compatible encodings"
            ) from exc
    parts: list[str] = []
    invalid: set[int] = set()
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        try:
            parts.append(line.decode(encoding))
        except UnicodeDecodeError:
            invalid.add(number)
            # keep the line ending (a last line without one gets one, so it still reads as a record)
            parts.append(line[len(line.rstrip(b"\r\n")) :].decode("ascii") or "\n")
    return "".join(parts), invalid


class _RawLines:
    """Lines of the raw file, split on first use, shown with undecodable bytes escaped."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._lines: list[bytes] | None = None

    def __call__(self, number: int) -> str:
        if self._lines is None:
            self._lines = self._data.splitlines()
        if not 1 <= number <= len(self._lines):
            return ""
        return self._lines[number - 1].decode("ascii", errors="backslashreplace")[:200]


def _read_csv(path: Path, options: FileOptions, wanted: list[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Read the ``wanted`` columns of a CSV file as text, indexed by the line each record starts on.

    Returns:
        tuple: (frame of ``str`` columns named as in the file, parse errors of the records
        that could not be read: ``invalid_encoding``, ``unparseable_row``, ``wrong_field_count``).
    """

    data = path.read_bytes()
    if path.suffix.lower() == ".gz":
        data = gzip.decompress(data)
    text, invalid = _decode(data, options.encoding, path)
    raw_line = _RawLines(data)
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=options.delimiter or ",", quotechar=options.quotechar, strict=True
    )
    del text
    delimiter = options.delimiter or ","
    errors: list[dict[str, Any]] = []
    rows: list[list[str]] = []
    lines: list[int] = []
    header: list[str] | None = None if options.header else list(options.names or [])
    header_line = 0
    previous = 0  # the last physical line read: a record starts on the line after it
    while True:
        try:
            if header is None:  # the first non-blank record is the header
                for record in reader:
                    start, previous = previous + 1, reader.line_num
                    if invalid and not invalid.isdisjoint(range(start, previous + 1)):
                        raise SourceConfigError(f"{path}: the header line is not valid {options.encoding}")
                    if record:
                        header, header_line = [name.strip() for name in record], start
                        break
                if header is None:
                    raise SourceConfigError(f"{path} is empty: no header line")
            width = len(header)
            add_row, add_line = rows.append, lines.append
            for record in reader:  # the hot loop: keep it lean
                start, previous = previous + 1, reader.line_num
                if invalid and not invalid.isdisjoint(range(start, previous + 1)):
                    bad = min(invalid.intersection(range(start, previous + 1)))
                    errors.append(
                        bad_row(
                            start,
                            "invalid_encoding",
                            None,
                            raw_line(bad),
                            f"line {bad} is not valid {options.encoding}",
                        )
                    )
                elif len(record) == width:
                    add_row(record)
                    add_line(start)
                elif record:  # an empty record is a blank line, not a row
                    errors.append(
                        bad_row(
                            start,
                            "wrong_field_count",
                            None,
                            delimiter.join(record)[:200],
                            f"expected {width} fields, found {len(record)}",
                        )
                    )
            break
        except csv.Error as exc:
            start, previous = previous + 1, reader.line_num
            if header is None:
                raise SourceConfigError(f"{path}: the header (line {start}) is not valid CSV: {exc}") from exc
            errors.append(bad_row(start, "unparseable_row", None, raw_line(start), f"malformed CSV: {exc}"))
    assert header is not None
    where = f"the header (line {header_line})" if options.header else "names"
    missing = [c for c in wanted if c not in header]
    if missing:
        raise SourceConfigError(f"{path}: column(s) {missing} of the configuration are not in {where}: {header}")
    repeated = [c for c in wanted if header.count(c) > 1]
    if repeated:
        raise SourceConfigError(f"{path}: column(s) {repeated} appear more than once in {where}")
    positions = {c: header.index(c) for c in wanted}
    index = pd.Index(np.asarray(lines, dtype=np.int64))
    frame = pd.DataFrame({c: object_array([r[i] for r in rows]) for c, i in positions.items()}, index=index)
    return frame, errors


def object_array(values: list[Any]) -> np.ndarray:
    """``values`` as a 1-d object array (``np.array`` would nest lists or pick another dtype)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _read_parquet(path: Path, wanted: list[str]) -> pd.DataFrame:
    """Read the ``wanted`` columns of a Parquet file, indexed by 1-based row number."""
    available = pq.read_schema(path).names
    missing = [c for c in wanted if c not in available]
    if missing:
        raise SourceConfigError(f"{path}: column(s) {missing} of the configuration are not in the file: {available}")
    frame = pq.read_table(path, columns=wanted).to_pandas()
    frame.index = pd.Index(np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame


def read_file(options: FileOptions, wanted: list[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Read the ``wanted`` columns of a source or catalog file as its options say.

    Returns:
        tuple: (frame indexed by line number (CSV: ``str`` columns) or 1-based row number
        (Parquet), parse errors of the CSV records that could not be read).

    Raises:
        FileNotFoundError: the file does not exist.
        SourceConfigError: a wanted column is not in the file, or a CSV header is unreadable.
    """
    path = options.path
    if not path.is_file():
        raise FileNotFoundError(f"source file {path} does not exist")
    if options.format == "parquet":
        return _read_parquet(path, wanted), []
    return _read_csv(path, options, wanted)
