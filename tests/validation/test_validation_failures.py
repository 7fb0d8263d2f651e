"""Unit tests of the pure failure-record helpers (no GX run)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from validation.failures import describe_failure, file_failure, jsonable
from validation.outcome import PartitionRejected, ValidationOutcome
from validation.quarantine import reason_text, utc_stamp


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (float("nan"), None),
        (pd.NA, None),
        (pd.NaT, None),
        (np.datetime64("NaT"), None),
        (np.int64(7), 7),
        (np.float32(1.5), 1.5),
        (pd.Timestamp("2025-01-01 02:00", tz="UTC"), "2025-01-01T02:00:00+00:00"),
        (np.datetime64("2025-01-01T00:00:00.000001"), "2025-01-01T00:00:00.000001"),
        (dt.date(2025, 1, 1), "2025-01-01"),
        ({"a": (1, np.int8(2))}, {"a": [1, 2]}),
        ("bogus", "bogus"),
    ],
)
def test_jsonable(value, expected):
    converted = jsonable(value)
    assert converted == expected
    json.dumps(converted)


def test_describe_failure_shows_check_counts_types_bounds_and_errors():
    counted = {
        "check": "null_ids",
        "expectation": "expect_column_values_to_not_be_null",
        "column": "user_id",
        "unexpected_count": 3,
        "unexpected_sample": [None],
    }
    typed = {
        "check": "wrong_types",
        "expectation": "expect_column_type_to_be",
        "column": "event_ts",
        "unexpected_count": None,
        "observed_value": "datetime64[ns, UTC]",
        "kwargs": {"type_": "datetime64[us, UTC]"},
    }
    bounded = {
        "check": "new_items_high",
        "expectation": "expect_column_mean_to_be_between",
        "column": "item_is_new",
        "observed_value": 0.374512,
        "kwargs": {"max_value": 0.25},
    }
    assert describe_failure(counted) == (
        "null_ids [expect_column_values_to_not_be_null(user_id)]: 3 unexpected, e.g. [None]"
    )
    assert describe_failure(typed) == (
        "wrong_types [expect_column_type_to_be(event_ts)]: observed 'datetime64[ns, UTC]', "
        "expected 'datetime64[us, UTC]'"
    )
    assert describe_failure(bounded) == (
        "new_items_high [expect_column_mean_to_be_between(item_is_new)]: observed 0.3745, expected <= 0.25"
    )
    assert describe_failure(file_failure("corrupt_file", "x.parquet: boom")) == "corrupt_file: x.parquet: boom"


def test_reason_text_and_stamp():
    assert reason_text([file_failure("wrong_format", "not parquet")]) == "wrong_format"
    assert reason_text([{"check": "null_ids"}, {"check": "duplicate_events"}, {"check": "null_ids"}]) == (
        "duplicate_events, null_ids"
    )
    moment = dt.datetime(2025, 1, 1, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert utc_stamp(moment) == "20250101T020000Z"


def test_outcome_raise_for_status(tmp_path):
    ok = ValidationOutcome(ds=dt.date(2025, 1, 1), status="curated", rows=5, failed=[], path=tmp_path)
    assert ok.raise_for_status() is ok
    failure = {
        "check": "unknown_event_type",
        "expectation": "expect_column_values_to_be_in_set",
        "column": "event_type",
        "unexpected_count": 2,
        "unexpected_sample": ["bogus"],
    }
    bad = ValidationOutcome(
        ds=dt.date(2025, 1, 1),
        status="quarantined",
        rows=5,
        failed=[failure],
        path=tmp_path / "q",
        reason_path=tmp_path / "q" / "_reason.json",
    )
    with pytest.raises(
        PartitionRejected, match=r"unknown_event_type \[expect_column_values_to_be_in_set\(event_type\)\]: 2 unexpected"
    ):
        bad.raise_for_status()
    assert json.loads(json.dumps(bad.to_dict()))["status"] == "quarantined"
