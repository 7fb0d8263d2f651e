"""Mapping a generic source's columns onto the interactions contract, value by value.

:func:`map_interactions` parses the text (or Parquet) columns that
:mod:`ingest.generic_files` read: ids as int64, timestamps to UTC as the configuration
says (epochs in a unit, a strptime format or ISO 8601, naive times in a time zone), event
types through the configured mapping (or the default), ratings as floats. A value that
does not parse makes its row a parse error with its line number (``missing_value``,
``not_an_integer``, ``not_a_number``, ``unparseable_timestamp``) and leaves it out; rows
that parse but break the contract (negative ids, event types the contract does not know,
ratings out of range, duplicates, future timestamps) are kept, so that
:func:`app.land.land_source` reports them by line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from graphrec import contract
from ingest.bad_rows import bad_row
from ingest.generic_config import SourceConfig, SourceConfigError, TimestampsSection
from ingest.generic_files import object_array

_INTEGER = r"[+-]?\d{1,18}"  # at most 18 digits: always fits int64
_LONG_INTEGER = r"[+-]?\d{19,}"
_ISO_OFFSET = r".*\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)"
_EPOCH_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}
_MAX_ABS_MICROS = 9.2e15  # the range of datetime64[ns] (years 1678-2261), in microseconds


def text_values(values: pd.Series) -> np.ndarray:
    """Values as an object array of stripped ``str``; missing values become ``''``."""
    array = values.to_numpy(dtype=object)
    try:
        return object_array([v.strip() for v in array])
    except AttributeError:  # not all str (a Parquet column with nulls or other types)
        return object_array(["" if v is None or v is pd.NA or v != v else str(v).strip() for v in array])


def _with_nulls(text: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of ``text`` with ``None`` where ``mask`` is set."""
    out = text.copy()
    out[mask] = None
    return out


def _no_underscores(text: np.ndarray) -> bool:
    """``int()`` and ``float()`` accept ``1_000``; the contract's sources do not."""
    return "_" not in "".join(text)


def parse_integers(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    text = text_values(values)
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
        integers, missing, invalid = parse_integers(values)
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        is_integer = ~missing & ~invalid
    else:
        text = text_values(values)
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
        integers, _, invalid = parse_integers(pd.Series(text, index=index))
        is_integer = ~missing & ~invalid
        numbers = integers.astype(np.float64)
        numbers[~is_integer] = _parse_floats(text[~is_integer])
    micros = _epochs(numbers, integers, is_integer, settings.unit)
    stamps = pd.Series(pd.DatetimeIndex(micros.astype("datetime64[us]")).tz_localize("UTC"), index=index)
    return stamps, missing, stamps.isna().to_numpy() & ~missing, f"an epoch in {settings.unit}"


def map_interactions(raw: pd.DataFrame, config: SourceConfig) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Convert the source columns to the contract's; rows that do not parse become errors.

    Args:
        raw (pd.DataFrame): the mapped source columns as :func:`ingest.generic_files.read_file`
            read them, indexed by line (or row) number.
        config (SourceConfig): the column mapping and how to read values.

    Returns:
        tuple: (interactions in the contract's columns and dtypes, indexed as ``raw``,
        without the rows that did not parse; a bad-row record per value that did not
        parse: ``missing_value``, ``not_an_integer``, ``not_a_number``,
        ``unparseable_timestamp``).

    Raises:
        SourceConfigError: numeric timestamps without ``[timestamps].unit``.
    """

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
        values, missing, invalid = parse_integers(raw[mapping[column]])
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
        text = text_values(raw[mapping[contract.EVENT_TYPE]])
        empty = text == ""
        if default is not None:
            text[empty] = default
        else:
            report(empty, "missing_value", contract.EVENT_TYPE, missing_message(contract.EVENT_TYPE))
        if config.event_types:  # values without a mapping stay as they are: the contract reports them
            lookup = config.event_types.get
            text = object_array([lookup(v, v) for v in text])
        columns[contract.EVENT_TYPE] = text
    else:
        columns[contract.EVENT_TYPE] = np.full(len(raw), default, dtype=object)

    if contract.RATING in mapping:
        source = raw[mapping[contract.RATING]]
        if pd.api.types.is_numeric_dtype(source.dtype) and not pd.api.types.is_bool_dtype(source.dtype):
            ratings = source.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            text = text_values(source)
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

    frame = pd.DataFrame(columns, index=raw.index)[list(contract.INTERACTION_COLUMNS)].astype(
        {
            contract.USER_ID: "int64",
            contract.ITEM_ID: "int64",
            contract.EVENT_TS: "datetime64[us, UTC]",
            contract.RATING: "float64",
        }
    )
    return frame[~failed], errors
