"""Turn a Great Expectations validation result into plain, JSON-safe failure records.

A failure record is the unit that the quarantine reason file, the rejection message and
the ``status`` command all show. It is a dict::

    {
        "check": "null_ids",               # the contract's name for the rule (validation.checks)
        "severity": "blocking",            # or "warning"
        "level": "row",                    # file, row, batch, items or users
        "expectation": "expect_column_values_to_not_be_null",
        "column": "user_id",               # None for table-level expectations
        "kwargs": {"column": "user_id"},   # the expectation's arguments
        "unexpected_count": 3,             # None when the expectation has no row count
        "unexpected_percent": 0.51,
        "unexpected_sample": [None, None, None],  # a few offending values
        "observed_value": None,            # e.g. the observed dtype or column list
        "details": None,                   # e.g. missing and unexpected columns
        "error": None,                     # set when GX could not evaluate it at all
        "hint": None,                      # how to fix the writer, where the contract knows
    }

Everything here is a pure transform: no I/O, no GX import (results are read by attribute).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphrec import contract
from graphrec.lake import jsonable
from validation.checks import CHECKS

SAMPLE_SIZE = 5
UNREADABLE = "readable_parquet"


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


_ARROW_TYPES = {
    "Int64": "int64",
    "int64": "int64",
    "float64": "double",
    "object": "string",
    "datetime64[us, UTC]": "timestamp[us, tz=UTC]",
}


def type_hint(column: str | None, observed: Any, expected: Any) -> str | None:
    """How to write ``column`` so that it matches the contract, for a wrong-type failure."""
    if column is None or expected is None:
        return None
    want = _ARROW_TYPES.get(str(expected), str(expected))
    observed_text = str(observed or "")
    if column in contract.ID_COLUMNS:
        return (
            f"write {column} as {want} integers, not text, floats or unsigned: map external keys such as 'u149' "
            "to integer ids upstream and write with schema=graphrec.contract.INTERACTIONS_SCHEMA"
        )
    if observed_text.startswith("datetime64") or want.startswith("timestamp"):
        return (
            f"write {column} as {want}: pyarrow.Table.from_pandas(frame, schema=graphrec.contract."
            "INTERACTIONS_SCHEMA), or DataFrame.to_parquet(..., coerce_timestamps='us') after "
            "frame[column].dt.tz_convert('UTC'); curated files must share one Parquet schema"
        )
    return f"write {column} as {want} (graphrec.contract.INTERACTIONS_SCHEMA; `graphrec contract` lists the types)"


def _base(check: str, severity: str | None = None) -> dict[str, Any]:
    spec = CHECKS[check]
    return {"check": check, "severity": severity or spec.severity, "level": spec.level}


def failure_record(expectation_result: Any) -> dict[str, Any]:
    """The failure record of one failed ``ExpectationValidationResult``."""
    config = expectation_result.expectation_config
    meta = dict(config.meta or {})
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"}
    result = dict(expectation_result.result or {})
    errors = _exception_messages(expectation_result.exception_info)
    sample = result.get("partial_unexpected_list")
    return {
        **_base(meta.get("check", "wrong_types"), meta.get("severity")),
        "expectation": config.type,
        "column": kwargs.get("column"),
        "kwargs": jsonable(kwargs),
        "unexpected_count": jsonable(result.get("unexpected_count")),
        "unexpected_percent": jsonable(result.get("unexpected_percent")),
        "unexpected_sample": jsonable(list(sample)[:SAMPLE_SIZE]) if sample is not None else None,
        "observed_value": jsonable(result.get("observed_value")),
        "details": jsonable(result.get("details")),
        "error": "; ".join(errors) or None,
        "hint": (
            type_hint(kwargs.get("column"), result.get("observed_value"), kwargs.get("type_"))
            if meta.get("check", "").endswith(("wrong_types", "_schema")) and kwargs.get("type_") is not None
            else None
        ),
    }


def _split_column_set(record: dict[str, Any]) -> list[dict[str, Any]]:
    """``expect_table_columns_to_match_set`` covers two checks: missing and extra columns."""
    mismatched = (record.get("details") or {}).get("mismatched") or {}
    missing, extra = mismatched.get("missing") or [], mismatched.get("unexpected") or []
    if record["check"] != "missing_columns" or not (missing or extra):
        return [record]
    out = []
    if missing:
        out.append({**record, "observed_value": sorted(missing)})
    if extra:
        out.append({**record, **_base("extra_columns", record["severity"]), "observed_value": sorted(extra)})
    return out


def reading_order(failure: Mapping[str, Any]) -> tuple[int, int, str]:
    """Sort key of failure records: file level first, then rows by contract column, then the rest."""
    levels = ("file", "row", "batch", "items", "users")
    level = levels.index(failure.get("level", "file")) if failure.get("level") in levels else 0
    column = failure.get("column")
    if column is None:
        return level, -1, failure["check"]
    if column in contract.INTERACTION_COLUMNS:
        return level, contract.INTERACTION_COLUMNS.index(column), failure["check"]
    return level, len(contract.INTERACTION_COLUMNS), f"{column} {failure['check']}"


def failures_from_result(suite_result: Any, columns: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Failure records of every failed expectation in an ``ExpectationSuiteValidationResult``.

    Args:
        suite_result: what a checkpoint or ``ValidationDefinition.run`` returned.
        columns: the frame's columns. GX reports an expectation on a missing column, or on
            a column of the wrong type, as an error; those errors are consequences of the
            ``missing_columns``/``wrong_types`` failure already reported and are dropped.

    Returns:
        list[dict]: one record per failed expectation (the column-set expectation may give
        a ``missing_columns`` and an ``extra_columns`` record), empty if all passed, sorted
        for reading: file level first, then by column in contract order.
    """
    records = []
    for r in suite_result.results:
        if not r.success:
            records.extend(_split_column_set(failure_record(r)))
    present = set(columns) if columns is not None else None
    mistyped = {f["column"] for f in records if f["check"].endswith(("wrong_types", "_schema")) and f["column"]}
    kept = []
    for f in records:
        col = f.get("column")
        consequence = (
            f["error"]
            and col is not None
            and (
                (present is not None and col not in present)
                or (col in mistyped and not f["check"].endswith(("wrong_types", "_schema")))
            )
        )
        if not consequence:
            kept.append(f)
    return sorted(kept, key=reading_order)


def file_failure(check: str, message: str, severity: str | None = None) -> dict[str, Any]:
    """The failure record of a file-level problem found before GX could run."""
    return {
        **_base(check, severity),
        "expectation": UNREADABLE,
        "column": None,
        "kwargs": {},
        "unexpected_count": None,
        "unexpected_percent": None,
        "unexpected_sample": None,
        "observed_value": None,
        "details": None,
        "error": message,
        "hint": None,
    }


def describe_failure(failure: Mapping[str, Any]) -> str:
    """One line for a failure record.

    For example ``null_ids [expect_column_values_to_not_be_null(user_id)]: 3 unexpected``
    or ``new_items_high [expect_column_mean_to_be_between(item_is_new)]: observed 0.374,
    expected <= 0.25``.
    """
    target = failure.get("column") or "table"
    check = failure.get("check")
    if failure.get("error"):
        what = f"error: {failure['error']}"
    elif failure.get("unexpected_count") is not None:
        what = f"{failure['unexpected_count']} unexpected"
        sample = failure.get("unexpected_sample")
        if sample:
            what += f", e.g. {sample[:3]}"
    elif failure.get("check") in ("missing_columns", "extra_columns"):
        what = f"{failure['check'].split('_')[0]} {failure.get('observed_value')}"
    else:
        observed = failure.get("observed_value")
        what = f"observed {round(observed, 4) if isinstance(observed, float) else observed!r}"
        kwargs = failure.get("kwargs") or {}
        if kwargs.get("type_") is not None:
            what += f", expected {kwargs['type_']!r}"
        bounds = [f">= {kwargs['min_value']}"] if kwargs.get("min_value") is not None else []
        bounds += [f"<= {kwargs['max_value']}"] if kwargs.get("max_value") is not None else []
        if bounds:
            what += f", expected {' and '.join(bounds)}"
    if failure.get("expectation") == UNREADABLE:
        return f"{check}: {failure.get('error')}"
    name = f"{check} [{failure['expectation']}({target})]" if check else f"{failure['expectation']}({target})"
    hint = f" (fix: {failure['hint']})" if failure.get("hint") else ""
    return f"{name}: {what}{hint}"
