"""Row-level contract checks over a whole source file, reported by source line number.

Loaders map a source (MovieLens ``u.data``, Gowalla ``train.txt``, a CSV export...) onto
the interactions contract with the frame's index set to each row's line number in the
source file. :func:`find_bad_rows` runs the contract's day-independent row rules
(:func:`validation.suite.build_source_rows_suite`) with Great Expectations' ``COMPLETE``
result format, which lists the index of every unexpected row, and turns that into one
bad-row record per (line, check). Rows that could not even be parsed are found by the
loaders themselves and reported in the same shape (:func:`bad_row`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from graphrec import contract
from graphrec.lake import jsonable
from graphrec.settings import ValidationSettings
from ingest.bad_rows import BAD_ROW_COLUMNS, bad_row
from validation.gx_run import COMPLETE, run_suites
from validation.suite import DUPLICATE_KEY, build_source_rows_suite


def _duplicate_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Every repeat of an earlier event, naming the line of the first occurrence."""
    key = frame[DUPLICATE_KEY]
    repeats = key.duplicated(keep="first")
    if not repeats.any():
        return []
    first_line = pd.Series(frame.index, index=frame.index).groupby([key[c] for c in DUPLICATE_KEY]).transform("first")
    return [
        bad_row(line, "duplicate_events", None, None, f"duplicate of line {first}")
        for line, first in zip(frame.index[repeats], first_line[repeats])
    ]


def find_bad_rows(
    frame: pd.DataFrame,
    *,
    now: dt.datetime | None = None,
    config: ValidationSettings | None = None,
) -> pd.DataFrame:
    """Bad rows of a source mapped onto the contract, by line number.

    Args:
        frame: the mapped interactions; ``frame.index`` holds source line numbers.
        now: validation time for ``timestamp_in_future`` (default: the clock).
        config: severities; checks set to ``off`` are skipped, warnings are not bad rows.

    Returns:
        pandas.DataFrame: columns :data:`BAD_ROW_COLUMNS`, one row per (line, check), sorted
        by line; empty when every row keeps the contract.
    """
    now = now or dt.datetime.now(dt.UTC)
    suite = build_source_rows_suite(now, config)
    # The contract reads int64 ids as pandas' nullable Int64 (validation.reading.nullable_ints).
    frame = frame.astype({c: "Int64" for c in (contract.USER_ID, contract.ITEM_ID) if c in frame.columns})
    # GX reports the index of a named index as {name: value}: keep it a plain line number.
    frame = frame.rename_axis(None)
    (run,) = run_suites([(suite, frame)], run_name="source", run_time=now, result_format=COMPLETE)
    records: list[dict[str, Any]] = []
    for result in run.result.results:
        meta = result.expectation_config.meta or {}
        if result.success or meta.get("severity") != "blocking":
            continue
        check = meta["check"]
        column = result.expectation_config.kwargs.get("column")
        if check == "duplicate_events":
            records.extend(_duplicate_rows(frame))
            continue
        details = result.result or {}
        lines = details.get("unexpected_index_list")
        if lines is None:  # a table-level failure (columns, types): the mapping is wrong
            raise ValueError(
                f"source does not map onto the contract: {check} failed on {column or 'the table'}: "
                f"{details.get('observed_value') or details.get('details')}"
            )
        values = details.get("unexpected_list") or [None] * len(lines)
        for line, value in zip(lines, values):
            records.append(bad_row(line, check, column, value, f"{column}={jsonable(value)!r} breaks {check}"))
    bad = pd.DataFrame.from_records(records, columns=BAD_ROW_COLUMNS)
    return bad.sort_values(["line", "check"], kind="stable", ignore_index=True)


def summarize_bad_rows(bad: pd.DataFrame, limit: int = 10) -> str:
    """A readable summary: count per check and the first line numbers of each."""
    if bad.empty:
        return "no bad rows"
    parts = []
    for check, group in bad.groupby("check", sort=True):
        lines = group["line"].tolist()
        shown = ", ".join(str(n) for n in lines[:limit]) + (", ..." if len(lines) > limit else "")
        parts.append(f"{check}: {len(group)} row(s) at line(s) {shown} (e.g. {group['message'].iloc[0]})")
    return f"{bad['line'].nunique()} bad row(s): " + "; ".join(parts)


__all__ = ["find_bad_rows", "summarize_bad_rows"]
