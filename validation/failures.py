"""Turn a Great Expectations validation result into plain, JSON-safe failure records.

A failure record is the unit that the quarantine reason file, the rejection message and
the ``status`` command all show. It is a dict::

    {
        "expectation": "expect_column_values_to_not_be_null",
        "column": "user_id",               # None for table-level expectations
        "kwargs": {"column": "user_id"},   # the expectation's arguments
        "unexpected_count": 3,             # None when the expectation has no row count
        "unexpected_percent": 0.51,
        "unexpected_sample": [None, None, None],  # a few offending values
        "observed_value": None,            # e.g. the observed dtype or column list
        "details": None,                   # e.g. missing and unexpected columns
        "error": None,                     # set when GX could not evaluate it at all
    }

Everything here is a pure transform: no I/O, no GX import (results are read by attribute).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from graphrec import contract

SAMPLE_SIZE = 5
UNREADABLE = "readable_parquet"


def jsonable(value: Any) -> Any:
    """Convert a value from a GX result or kwargs into something ``json.dumps`` accepts.

    Nulls of every flavour (``None``, ``NaN``, ``pd.NA``, ``NaT``) become ``None``,
    timestamps become ISO strings, numpy scalars become Python scalars and containers
    are converted recursively. Anything else falls back to ``str``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.datetime64, np.timedelta64)):
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, int):
        return value
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, pd.Timedelta, dt.datetime, dt.date, dt.timedelta)):
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return str(value)


def _exception_messages(exception_info: Any) -> list[str]:
    """Messages of the exceptions GX caught while evaluating one expectation.

    GX reports either one ``{"raised_exception": ..., "exception_message": ...}`` dict or,
    when metrics failed to resolve, a dict of such dicts keyed by metric id.
    """
    if not isinstance(exception_info, Mapping):
        return []
    if "raised_exception" in exception_info:
        infos: Iterable[Any] = [exception_info]
    else:
        infos = exception_info.values()
    messages = []
    for info in infos:
        if isinstance(info, Mapping) and info.get("raised_exception"):
            message = str(info.get("exception_message") or "unknown error").strip()
            message = message.removeprefix("Error: ")
            if message not in messages:
                messages.append(message)
    return messages


def failure_record(expectation_result: Any) -> dict[str, Any]:
    """The failure record of one failed ``ExpectationValidationResult``."""
    config = expectation_result.expectation_config
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"}
    result = dict(expectation_result.result or {})
    errors = _exception_messages(expectation_result.exception_info)
    sample = result.get("partial_unexpected_list")
    return {
        "expectation": config.type,
        "column": kwargs.get("column"),
        "kwargs": jsonable(kwargs),
        "unexpected_count": jsonable(result.get("unexpected_count")),
        "unexpected_percent": jsonable(result.get("unexpected_percent")),
        "unexpected_sample": jsonable(list(sample)[:SAMPLE_SIZE]) if sample is not None else None,
        "observed_value": jsonable(result.get("observed_value")),
        "details": jsonable(result.get("details")),
        "error": "; ".join(errors) or None,
    }


def _reading_order(failure: Mapping[str, Any]) -> tuple[int, str]:
    column = failure.get("column")
    if column is None:
        return -1, failure["expectation"]
    if column in contract.INTERACTION_COLUMNS:
        return contract.INTERACTION_COLUMNS.index(column), failure["expectation"]
    return len(contract.INTERACTION_COLUMNS), f"{column} {failure['expectation']}"


def failures_from_result(suite_result: Any) -> list[dict[str, Any]]:
    """Failure records of every failed expectation in an ``ExpectationSuiteValidationResult``.

    Args:
        suite_result: what ``ValidationDefinition.run`` returned.

    Returns:
        list[dict]: one record per failed expectation, empty if all passed. GX returns
        results in its own evaluation order; records are sorted for reading: table-level
        expectations first, then by column in contract order.
    """
    records = [failure_record(r) for r in suite_result.results if not r.success]
    return sorted(records, key=_reading_order)


def unreadable_failure(error: BaseException | str) -> dict[str, Any]:
    """The failure record for a file that could not be read as Parquet at all."""
    return {
        "expectation": UNREADABLE,
        "column": None,
        "kwargs": {},
        "unexpected_count": None,
        "unexpected_percent": None,
        "unexpected_sample": None,
        "observed_value": None,
        "details": None,
        "error": f"unreadable: {error}",
    }


def describe_failure(failure: Mapping[str, Any]) -> str:
    """One line for a failure record, e.g. ``expect_column_values_to_not_be_null(user_id): 3 unexpected``."""
    target = failure.get("column") or "table"
    if failure.get("error"):
        what = f"error: {failure['error']}"
    elif failure.get("unexpected_count") is not None:
        what = f"{failure['unexpected_count']} unexpected"
        sample = failure.get("unexpected_sample")
        if sample:
            what += f", e.g. {sample[:3]}"
    elif failure.get("details"):
        what = f"details {failure['details']}"
    else:
        what = f"observed {failure.get('observed_value')!r}"
        expected = (failure.get("kwargs") or {}).get("type_")
        if expected is not None:
            what += f", expected {expected!r}"
    return f"{failure['expectation']}({target}): {what}"
