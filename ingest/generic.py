"""A CSV or Parquet export mapped onto the interactions contract by a TOML configuration.

The configuration (see ``examples/source.example.toml``) names the file, maps contract
columns to source columns and says how to read timestamps and event types::

    [source]
    name = "shop-events"          # used in paths: a-z, 0-9, '-' and '_'
    path = "events.csv"           # relative to the configuration file
    format = "csv"                # csv | parquet (default: from the suffix; .csv.gz is gzip)

    [columns]                     # contract column = source column
    user_id = "customer_id"
    item_id = "sku"
    event_ts = "ts"
    event_type = "action"         # or [defaults].event_type
    rating = "stars"              # optional

    [timestamps]
    unit = "s"                    # numeric epochs (s, ms, us, ns), or
    # format = "%Y-%m-%d %H:%M:%S"  strptime format; neither: ISO 8601 text
    timezone = "UTC"              # applied to timestamps without a UTC offset

    [event_types]                 # optional source value -> contract value
    add_to_cart = "click"

An optional ``[items]`` table reads an item catalog (``path``, ``item_id``, ``category``
and the same file options); without it every item's category is ``"unknown"``. Either
way an item's ``first_seen_ts`` is its first event, and only items with events are kept.

Line numbers (the index of the mapped interactions and the ``line`` of every bad-row
record) are 1-based physical line numbers of the CSV file as a text editor shows them
(the header is line 1, the first data row line 2; a record whose quoted field spans
several lines has the line where it starts); for Parquet they are 1-based row numbers.

Rows that cannot be parsed are returned as parse errors with their line number (checks
``unparseable_row``, ``wrong_field_count``, ``invalid_encoding``, ``missing_value``,
``not_an_integer``, ``not_a_number``, ``unparseable_timestamp``) and left out of the
interactions; rows that parse but break the contract (negative ids, event types the
contract does not know, ratings out of range, duplicates, future timestamps) are kept, so
that :func:`app.land.land_source` reports them by line. Blank lines are
not rows and are skipped.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import tomllib
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graphrec import contract
from ingest.bad_rows import bad_row
from ingest.loading import SourceLoad, catalog_from_events

CONTRACT_COLUMNS = contract.INTERACTION_COLUMNS
REQUIRED_COLUMNS = (contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS)
_INTEGER = r"[+-]?\d{1,18}"  # at most 18 digits: always fits int64
_LONG_INTEGER = r"[+-]?\d{19,}"
_ISO_OFFSET = r".*\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)"
_EPOCH_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}
_MAX_ABS_MICROS = 9.2e15  # the range of datetime64[ns] (years 1678-2261), in microseconds
_SUFFIX_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


class SourceConfigError(ValueError):
    """A source configuration that cannot be read or does not describe a loadable source."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileOptions(_Section):
    """Where a file is and how to read it (shared by ``[source]`` and ``[items]``)."""

    path: Path = Field(description="The file; relative paths are relative to the configuration file.")
    format: Literal["csv", "parquet"] | None = Field(None, description="Default: from the file suffix.")
    delimiter: str | None = Field(None, description="CSV field delimiter (default ',' or tab for .tsv).")
    quotechar: str = Field('"', description="CSV quote character.")
    encoding: str = Field("utf-8", description="CSV text encoding.")
    header: bool = Field(True, description="The first CSV line holds the column names.")
    names: list[str] | None = Field(None, description="Column names of a CSV file without a header line.")

    @field_validator("delimiter", "quotechar")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"must be a single character, got {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(f"unknown text encoding {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _resolve_format(self) -> FileOptions:
        suffixes = [s.lower() for s in self.path.suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes = suffixes[:-1]
        suffix = suffixes[-1] if suffixes else ""
        if self.format is None:
            if suffix not in _SUFFIX_FORMATS:
                raise ValueError(
                    f'cannot tell the format of {str(self.path)!r} from its suffix; set format = "csv" or "parquet"'
                )
            self.format = _SUFFIX_FORMATS[suffix]  # type: ignore[assignment]
        if self.delimiter is None:
            self.delimiter = "\t" if suffix == ".tsv" else ","
        if self.format == "csv" and not self.header and not self.names:
            raise ValueError("a CSV file without a header line (header = false) needs its column names: names = [...]")
        if self.header and self.names:
            raise ValueError("names is for CSV files without a header line: set header = false or drop names")
        return self


class SourceSection(FileOptions):
    """``[source]``: the interactions file."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Source name, used in paths.")


class ColumnsSection(_Section):
    """``[columns]``: contract column = source column."""

    user_id: str
    item_id: str
    event_ts: str
    event_type: str | None = None
    rating: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _contract_columns_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(CONTRACT_COLUMNS))
            if unknown:
                raise ValueError(
                    f"unknown contract column(s) {unknown}: [columns] maps contract columns "
                    f"({', '.join(CONTRACT_COLUMNS)}) to source columns"
                )
        return data

    @model_validator(mode="after")
    def _distinct_sources(self) -> ColumnsSection:
        used: dict[str, str] = {}
        for target, source in self.mapping().items():
            if source in used:
                raise ValueError(f"source column {source!r} is mapped to both {used[source]} and {target}")
            used[source] = target
        return self

    def mapping(self) -> dict[str, str]:
        """``{contract column: source column}`` for the mapped columns."""
        return {c: getattr(self, c) for c in CONTRACT_COLUMNS if getattr(self, c) is not None}


class TimestampsSection(_Section):
    """``[timestamps]``: how to read ``event_ts``."""

    unit: Literal["s", "ms", "us", "ns"] | None = Field(None, description="Unit of numeric epoch timestamps.")
    format: str | None = Field(None, description="strptime format of text timestamps (default: ISO 8601).")
    timezone: str = Field("UTC", description="IANA time zone of timestamps without a UTC offset.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'UTC' or 'Europe/Paris')") from exc
        return value

    @model_validator(mode="after")
    def _unit_or_format(self) -> TimestampsSection:
        if self.unit is not None and self.format is not None:
            raise ValueError("give either unit (numeric epochs) or format (text timestamps), not both")
        return self


class DefaultsSection(_Section):
    """``[defaults]``: values for contract columns the source does not have."""

    event_type: str | None = None

    @field_validator("event_type")
    @classmethod
    def _contract_event_type(cls, value: str | None) -> str | None:
        if value is not None and value not in contract.EVENT_TYPES:
            raise ValueError(f"{value!r} is not a contract event type {contract.EVENT_TYPES}")
        return value


class ItemsSection(FileOptions):
    """``[items]``: an optional item catalog file."""

    item_id: str = Field(description="Column of the item id.")
    category: str | None = Field(None, description=f"Column of the category (default {contract.UNKNOWN_CATEGORY!r}).")


class SourceConfig(_Section):
    """A generic source: the file, the column mapping and how to read values.

    Build it from a TOML file with :func:`read_config` (relative paths are then relative
    to that file) or directly (relative paths are relative to the working directory).
    """

    source: SourceSection
    columns: ColumnsSection
    timestamps: TimestampsSection = Field(default_factory=TimestampsSection)
    defaults: DefaultsSection = Field(default_factory=DefaultsSection)
    event_types: dict[str, str] = Field(default_factory=dict, description="Source event type -> contract event type.")
    items: ItemsSection | None = None

    @field_validator("event_types")
    @classmethod
    def _maps_to_contract(cls, value: dict[str, str]) -> dict[str, str]:
        wrong = {k: v for k, v in value.items() if v not in contract.EVENT_TYPES}
        if wrong:
            raise ValueError(f"mapped to values that are not contract event types {contract.EVENT_TYPES}: {wrong}")
        return value

    @model_validator(mode="after")
    def _event_type_source(self) -> SourceConfig:
        if self.columns.event_type is None and self.defaults.event_type is None:
            raise ValueError("no event type: map [columns].event_type to a source column or set [defaults].event_type")
        return self


def _describe(error: ValidationError) -> str:
    """One line per problem: ``[section] key: message``."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        where = f"[{loc[0]}]" + (f" {'.'.join(loc[1:])}" if len(loc) > 1 else "") if loc else "configuration"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def read_config(path: Path) -> SourceConfig:
    """Read and validate a TOML source configuration.

    Args:
        path: the ``.toml`` file; relative file paths in it are resolved against its directory.

    Returns:
        SourceConfig: the validated configuration, with absolute file paths.

    Raises:
        SourceConfigError: the file is missing, not TOML, or not a valid configuration;
            the message lists every problem by section and key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SourceConfigError(f"source configuration {path} does not exist") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SourceConfigError(f"source configuration {path} is not valid TOML: {exc}") from exc
    try:
        config = SourceConfig.model_validate(data)
    except ValidationError as exc:
        raise SourceConfigError(f"invalid source configuration {path}:\n{_describe(exc)}") from exc
    base = path.resolve().parent
    for section in (config.source, config.items):
        if section is not None and not section.path.is_absolute():
            section.path = base / section.path
    return config


# -- reading files ---------------------------------------------------------------------------


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
    frame = pd.DataFrame({c: _object_array([r[i] for r in rows]) for c, i in positions.items()}, index=index)
    return frame, errors


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _read_parquet(path: Path, wanted: list[str]) -> pd.DataFrame:
    """Read the ``wanted`` columns of a Parquet file, indexed by 1-based row number."""
    import pyarrow.parquet as pq

    available = pq.read_schema(path).names
    missing = [c for c in wanted if c not in available]
    if missing:
        raise SourceConfigError(f"{path}: column(s) {missing} of the configuration are not in the file: {available}")
    frame = pq.read_table(path, columns=wanted).to_pandas()
    frame.index = pd.Index(np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame


def _read(options: FileOptions, wanted: list[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    path = options.path
    if not path.is_file():
        raise FileNotFoundError(f"source file {path} does not exist")
    if options.format == "parquet":
        return _read_parquet(path, wanted), []
    return _read_csv(path, options, wanted)


# -- converting values -----------------------------------------------------------------------


def _text(values: pd.Series) -> np.ndarray:
    """Values as an object array of stripped ``str``; missing values become ``''``."""
    array = values.to_numpy(dtype=object)
    try:
        return _object_array([v.strip() for v in array])
    except AttributeError:  # not all str (a Parquet column with nulls or other types)
        return _object_array(["" if v is None or v is pd.NA or v != v else str(v).strip() for v in array])


def _with_nulls(text: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of ``text`` with ``None`` where ``mask`` is set."""
    out = text.copy()
    out[mask] = None
    return out


def _no_underscores(text: np.ndarray) -> bool:
    """``int()`` and ``float()`` accept ``1_000``; the contract's sources do not."""
    return "_" not in "".join(text)


def _parse_integers(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int64 values, missing mask, invalid mask) of a column of integers, text or numbers.

    Text must be an optional sign and decimal digits (surrounding spaces are ignored).
    """
    n = len(values)
    if pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        missing = values.isna().to_numpy()
        return values.fillna(0).to_numpy(dtype=np.int64), missing, np.zeros(n, dtype=bool)
    if pd.api.types.is_float_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(numbers)
        valid = ~missing & (np.mod(numbers, 1) == 0) & (np.abs(numbers) < 2.0**63)
        out = np.zeros(n, dtype=np.int64)
        out[valid] = numbers[valid].astype(np.int64)
        return out, missing, ~missing & ~valid
    text = _text(values)
    missing = text == ""
    if not missing.any() and _no_underscores(text):
        try:  # fast path: every value is an integer
            return text.astype(np.int64), missing, np.zeros(n, dtype=bool)
        except (ValueError, OverflowError):
            pass
    integer, long = re.compile(_INTEGER).fullmatch, re.compile(_LONG_INTEGER).fullmatch
    valid = np.fromiter((integer(v) is not None for v in text), dtype=bool, count=n)
    out = np.zeros(n, dtype=np.int64)
    if valid.any():
        out[valid] = text[valid].astype(np.int64)
    for position in np.flatnonzero(~valid & ~missing):  # 19+ digits: in int64 or not
        if long(text[position]) and -(2**63) <= int(text[position]) < 2**63:
            out[position], valid[position] = int(text[position]), True
    return out, missing, ~missing & ~valid


def _parse_floats(text: np.ndarray) -> np.ndarray:
    """Text to float64 (``''`` and anything that is not a number: NaN)."""
    filled = np.where(text == "", "nan", text)
    if _no_underscores(text):
        try:
            return filled.astype(np.float64)
        except ValueError:
            pass
    return pd.to_numeric(pd.Series(_with_nulls(text, text == "")), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def _epochs(numbers: np.ndarray, integers: np.ndarray, is_integer: np.ndarray, unit: str) -> np.ndarray:
    """Epoch values to int64 microseconds (``iNaT`` where out of range)."""
    nat = np.iinfo(np.int64).min
    factor = _EPOCH_MICROS[unit]
    micros = np.full(len(numbers), nat, dtype=np.int64)
    approx = numbers * factor / (1000 if unit == "ns" else 1)
    in_range = np.isfinite(approx) & (np.abs(approx) < _MAX_ABS_MICROS)
    exact = in_range & is_integer
    if unit == "ns":
        micros[exact] = integers[exact] // 1000
    else:
        micros[exact] = integers[exact] * factor
    inexact = in_range & ~is_integer
    micros[inexact] = np.floor(approx[inexact]).astype(np.int64)
    return micros


def _parse_timestamps(
    values: pd.Series, settings: TimestampsSection, source: str
) -> tuple[pd.Series, np.ndarray, np.ndarray, str]:
    """(UTC timestamps, missing mask, invalid mask, what was expected) of ``event_ts``."""
    index = values.index
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = values
        if stamps.dt.tz is None:
            stamps = stamps.dt.tz_localize(settings.timezone, ambiguous="NaT", nonexistent="NaT")
        stamps = stamps.dt.tz_convert("UTC")
        missing = values.isna().to_numpy()
        return stamps, missing, stamps.isna().to_numpy() & ~missing, f"a time in {settings.timezone}"
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        if settings.unit is None:
            raise SourceConfigError(
                f"column {source!r} mapped to event_ts holds numbers: set [timestamps].unit (s, ms, us or ns)"
            )
        integers, missing, invalid = _parse_integers(values)
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        is_integer = ~missing & ~invalid
    else:
        text = _text(values)
        missing = text == ""
        if settings.unit is None:
            fmt = settings.format or "ISO8601"
            stamps = pd.to_datetime(
                pd.Series(_with_nulls(text, missing), index=index), format=fmt, utc=True, errors="coerce"
            )
            expected = "ISO 8601" if settings.format is None else f"format {settings.format!r}"
            if settings.timezone != "UTC":
                if settings.format is None:
                    offset = re.compile(_ISO_OFFSET).fullmatch
                    naive = np.fromiter((offset(v) is None for v in text), dtype=bool, count=len(text))
                else:
                    naive = np.full(len(text), "%z" not in fmt and "%Z" not in fmt)
                naive &= stamps.notna().to_numpy()
                if naive.any():
                    local = (
                        stamps[naive]
                        .dt.tz_localize(None)
                        .dt.tz_localize(settings.timezone, ambiguous="NaT", nonexistent="NaT")
                        .dt.tz_convert("UTC")
                    )
                    stamps = stamps.copy()
                    stamps[naive] = local
                expected += f" (naive times in {settings.timezone}; ambiguous or skipped local times need an offset)"
            return stamps, missing, stamps.isna().to_numpy() & ~missing, expected
        integers, _, invalid = _parse_integers(pd.Series(text, index=index))
        is_integer = ~missing & ~invalid
        numbers = integers.astype(np.float64)
        numbers[~is_integer] = _parse_floats(text[~is_integer])
    micros = _epochs(numbers, integers, is_integer, settings.unit)
    stamps = pd.Series(pd.DatetimeIndex(micros.astype("datetime64[us]")).tz_localize("UTC"), index=index)
    return stamps, missing, stamps.isna().to_numpy() & ~missing, f"an epoch in {settings.unit}"


def _map_interactions(raw: pd.DataFrame, config: SourceConfig) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Convert the source columns to the contract's; rows that do not parse become errors."""

    mapping = config.columns.mapping()
    errors: list[dict[str, Any]] = []
    failed = np.zeros(len(raw), dtype=bool)

    def report(mask: np.ndarray, check: str, column: str, describe: Callable[[Any], str]) -> None:
        nonlocal failed
        if not mask.any():
            return
        failed |= mask
        source = raw[mapping[column]][mask]
        for line, value in zip(source.index, source):
            errors.append(bad_row(line, check, column, value, describe(value)))

    def missing_message(column: str) -> Callable[[Any], str]:
        return lambda _value: f"{column} (column {mapping[column]!r}) is empty"

    def not_integer_message(column: str) -> Callable[[Any], str]:
        return lambda value: f"{column} (column {mapping[column]!r}) = {value!r} is not an integer in the int64 range"

    columns: dict[str, Any] = {}
    for column in (contract.USER_ID, contract.ITEM_ID):
        values, missing, invalid = _parse_integers(raw[mapping[column]])
        report(missing, "missing_value", column, missing_message(column))
        report(invalid, "not_an_integer", column, not_integer_message(column))
        columns[column] = values

    stamps, missing, invalid, expected = _parse_timestamps(
        raw[mapping[contract.EVENT_TS]], config.timestamps, mapping[contract.EVENT_TS]
    )
    report(missing, "missing_value", contract.EVENT_TS, missing_message(contract.EVENT_TS))
    report(
        invalid,
        "unparseable_timestamp",
        contract.EVENT_TS,
        lambda v: f"event_ts (column {mapping[contract.EVENT_TS]!r}) = {v!r} is not {expected}",
    )
    columns[contract.EVENT_TS] = stamps.dt.tz_convert("UTC").astype("datetime64[us, UTC]").array

    default = config.defaults.event_type
    if contract.EVENT_TYPE in mapping:
        text = _text(raw[mapping[contract.EVENT_TYPE]])
        empty = text == ""
        if default is not None:
            text[empty] = default
        else:
            report(empty, "missing_value", contract.EVENT_TYPE, missing_message(contract.EVENT_TYPE))
        if config.event_types:  # values without a mapping stay as they are: the contract reports them
            lookup = config.event_types.get
            text = _object_array([lookup(v, v) for v in text])
        columns[contract.EVENT_TYPE] = text
    else:
        columns[contract.EVENT_TYPE] = np.full(len(raw), default, dtype=object)

    if contract.RATING in mapping:
        source = raw[mapping[contract.RATING]]
        if pd.api.types.is_numeric_dtype(source.dtype) and not pd.api.types.is_bool_dtype(source.dtype):
            ratings = source.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            text = _text(source)
            ratings = _parse_floats(text)
            not_number = (text != "") & np.isnan(ratings)
            if not_number.any():  # a literal NaN is a missing rating, not an error
                not_number &= np.fromiter((v.lower() != "nan" for v in text), dtype=bool, count=len(text))
            report(
                not_number,
                "not_a_number",
                contract.RATING,
                lambda v: f"rating (column {mapping[contract.RATING]!r}) = {v!r} is not a number",
            )
        columns[contract.RATING] = ratings
    else:
        columns[contract.RATING] = np.full(len(raw), np.nan)

    frame = pd.DataFrame(columns, index=raw.index)[list(CONTRACT_COLUMNS)].astype(
        {
            contract.USER_ID: "int64",
            contract.ITEM_ID: "int64",
            contract.EVENT_TS: "datetime64[us, UTC]",
            contract.RATING: "float64",
        }
    )
    return frame[~failed], errors


def _catalog(items: ItemsSection) -> pd.Series:
    """The item catalog: category by item id.

    Raises:
        SourceConfigError: a catalog row without an integer id (named by line), or an id
            listed twice with different categories.
    """
    wanted = [items.item_id] + ([items.category] if items.category else [])
    raw, errors = _read(items, wanted)
    ids, missing, invalid = _parse_integers(raw[items.item_id])
    lines = [e["line"] for e in errors] + raw.index[missing | invalid].tolist()
    if lines:
        shown = ", ".join(str(n) for n in sorted(lines)[:20])
        raise SourceConfigError(
            f"item catalog {items.path}: {len(lines)} row(s) without a readable item id at line(s) {shown}"
        )
    categories = _text(raw[items.category]) if items.category else np.full(len(raw), "", dtype=object)
    categories[categories == ""] = contract.UNKNOWN_CATEGORY
    catalog = pd.DataFrame({"item_id": ids, "category": categories}, index=raw.index)
    catalog = catalog.drop_duplicates()
    conflicting = catalog["item_id"][catalog["item_id"].duplicated(keep=False)]
    if len(conflicting):
        raise SourceConfigError(
            f"item catalog {items.path}: item id(s) {sorted(set(conflicting))[:20]} have more "
            f"than one category (lines {conflicting.index.tolist()[:20]})"
        )
    return pd.Series(catalog["category"].to_numpy(), index=catalog["item_id"].to_numpy())


def load_source(config: SourceConfig | Path) -> SourceLoad:
    """Map a CSV or Parquet source onto the contract as its configuration says.

    Args:
        config: a validated :class:`SourceConfig` or the path of its TOML file.

    Returns:
        SourceLoad: interactions indexed by source line (CSV) or row number (Parquet);
        unparseable rows as parse errors; items (category from the catalog or
        ``"unknown"``, first seen at their first event) and users of the parsed rows.

    Raises:
        SourceConfigError: the configuration is invalid or does not match the file (a
            mapped column is absent, numeric timestamps without a unit...).
        FileNotFoundError: the source or catalog file does not exist.
    """
    if not isinstance(config, SourceConfig):
        config = read_config(Path(config))
    source = config.source
    mapping = config.columns.mapping()
    raw, errors = _read(source, list(mapping.values()))
    interactions, value_errors = _map_interactions(raw, config)
    errors = sorted(errors + value_errors, key=lambda e: e["line"])
    items = catalog_from_events(interactions, contract.UNKNOWN_CATEGORY)
    if config.items is not None:
        categories = _catalog(config.items)
        items[contract.CATEGORY] = (
            items[contract.ITEM_ID].map(categories).fillna(contract.UNKNOWN_CATEGORY).astype(object)
        )
    users = pd.DataFrame({contract.USER_ID: np.unique(interactions[contract.USER_ID].to_numpy())}, dtype="int64")
    file = source.path.name if source.format == "csv" else f"{source.path.name} (1-based row numbers)"
    return SourceLoad(
        name=source.name,
        path=source.path,
        interactions=interactions,
        parse_errors=errors,
        items=items,
        users=users,
        file=file,
    )


__all__ = [
    "ColumnsSection",
    "DefaultsSection",
    "FileOptions",
    "ItemsSection",
    "SourceConfig",
    "SourceConfigError",
    "SourceSection",
    "TimestampsSection",
    "load_source",
    "read_config",
]
