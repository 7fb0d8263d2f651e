"""Data tests: the contract suite, run by real Great Expectations over real Parquet files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrec import contract
from ingest.landing import write_partition
from ingest.simulator import SimulationConfig, simulate
from validation.gx_run import validate_interactions
from validation.partition import read_interactions
from validation.suite import build_interactions_suite, expected_dtypes

CFG = SimulationConfig(n_users=120, n_items=80, days=1, events_per_day=600, drift_day=None)
DS = CFG.day(1)


@pytest.fixture(scope="module")
def day_frame(tmp_path_factory) -> pd.DataFrame:
    """One valid simulated day, as written by the simulator."""
    landing = tmp_path_factory.mktemp("sim")
    (part,) = simulate(CFG, landing)
    return pd.read_parquet(part / contract.INTERACTIONS_FILE)


def roundtrip(tmp_path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Write a frame as an upstream system would (no schema enforced) and read it back."""
    part = write_partition(tmp_path, DS, frame, enforce_schema=False)
    return read_interactions(part / contract.INTERACTIONS_FILE)


def failed_pairs(failures: list[dict]) -> set[tuple[str, str | None]]:
    return {(f["expectation"], f["column"]) for f in failures}


def test_expected_dtypes_follow_the_contract():
    assert expected_dtypes() == {
        "user_id": "Int64",
        "item_id": "Int64",
        "event_ts": "datetime64[us, UTC]",
        "event_type": "object",
        "rating": "float64",
    }


def test_suite_is_a_pure_function_of_the_day():
    a, b = build_interactions_suite(DS), build_interactions_suite(DS)
    other = build_interactions_suite(DS + dt.timedelta(days=1))
    assert a.name == "interactions" and a.meta["ds"] == "2025-01-01"
    assert a.expectation_configurations == b.expectation_configurations
    assert a.expectation_configurations != other.expectation_configurations
    (window,) = [
        e.kwargs
        for e in a.expectation_configurations
        if e.type == "expect_column_values_to_be_between" and e.kwargs["column"] == contract.EVENT_TS
    ]
    assert window["min_value"] == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert window["max_value"] == dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    assert window["strict_max"] is True


def test_valid_day_passes(tmp_path, day_frame):
    assert validate_interactions(roundtrip(tmp_path, day_frame), DS) == []


def test_valid_day_with_ratings_and_null_ratings_passes(tmp_path, day_frame):
    frame = day_frame.copy()
    frame[contract.RATING] = np.where(np.arange(len(frame)) % 2 == 0, 4.5, np.nan)
    frame.loc[frame.index[::2], contract.EVENT_TYPE] = "rating"
    assert validate_interactions(roundtrip(tmp_path, frame), DS) == []


def test_columns_in_any_order_pass(tmp_path, day_frame):
    frame = day_frame[list(reversed(contract.INTERACTION_COLUMNS))]
    assert validate_interactions(roundtrip(tmp_path, frame), DS) == []


def _null_user(f):
    f[contract.USER_ID] = f[contract.USER_ID].astype("Int64")
    f.loc[f.index[:3], contract.USER_ID] = pd.NA


def _before_day(f):
    f.loc[f.index[:4], contract.EVENT_TS] -= pd.Timedelta(days=3)


def _at_next_midnight(f):
    f.loc[f.index[:2], contract.EVENT_TS] = pd.Timestamp("2025-01-02", tz="UTC")


def _bogus_type(f):
    f.loc[f.index[:5], contract.EVENT_TYPE] = "bogus"


def _null_type(f):
    f.loc[f.index[:2], contract.EVENT_TYPE] = None


def _negative_item(f):
    f.loc[f.index[:1], contract.ITEM_ID] = -7


def _rating_out_of_range(f):
    f.loc[f.index[:3], contract.RATING] = 9.0


def _int32_ids(f):
    f[contract.ITEM_ID] = f[contract.ITEM_ID].astype("int32")


def _nanosecond_time(f):
    f[contract.EVENT_TS] = f[contract.EVENT_TS].dt.as_unit("ns")


def _naive_time(f):
    f[contract.EVENT_TS] = f[contract.EVENT_TS].dt.tz_localize(None)


def _numeric_event_type(f):
    f[contract.EVENT_TYPE] = 1


CHECK_OF = {
    ("expect_column_values_to_not_be_null", "user_id"): "null_ids",
    ("expect_column_type_to_be", "user_id"): "wrong_types",
    ("expect_column_values_to_be_between", "event_ts"): "timestamp_outside_day",
    ("expect_column_values_to_be_in_set", "event_type"): "unknown_event_type",
    ("expect_column_values_to_not_be_null", "event_type"): "null_values",
    ("expect_column_values_to_be_between", "item_id"): "negative_ids",
    ("expect_column_values_to_be_between", "rating"): "rating_out_of_range",
    ("expect_column_type_to_be", "item_id"): "wrong_types",
    ("expect_column_type_to_be", "event_ts"): "wrong_types",
    ("expect_column_values_to_be_of_type", "event_type"): "wrong_types",
}


@pytest.mark.parametrize(
    ("corrupt", "expected", "count"),
    [
        (_null_user, ("expect_column_values_to_not_be_null", "user_id"), 3),
        (_before_day, ("expect_column_values_to_be_between", "event_ts"), 4),
        (_at_next_midnight, ("expect_column_values_to_be_between", "event_ts"), 2),
        (_bogus_type, ("expect_column_values_to_be_in_set", "event_type"), 5),
        (_null_type, ("expect_column_values_to_not_be_null", "event_type"), 2),
        (_negative_item, ("expect_column_values_to_be_between", "item_id"), 1),
        (_rating_out_of_range, ("expect_column_values_to_be_between", "rating"), 3),
        (_int32_ids, ("expect_column_type_to_be", "item_id"), None),
        (_nanosecond_time, ("expect_column_type_to_be", "event_ts"), None),
        (_naive_time, ("expect_column_type_to_be", "event_ts"), None),
        (_numeric_event_type, ("expect_column_values_to_be_of_type", "event_type"), None),
    ],
)
def test_each_violation_is_named(tmp_path, day_frame, corrupt, expected, count):
    frame = day_frame.copy()
    corrupt(frame)
    failures = validate_interactions(roundtrip(tmp_path, frame), DS)
    assert expected in failed_pairs(failures)
    (failure,) = [f for f in failures if (f["expectation"], f["column"]) == expected]
    assert failure["check"] == CHECK_OF[expected] and failure["severity"] == "blocking"
    if count is not None:
        assert failure["unexpected_count"] == count
        assert failure["unexpected_sample"]
    else:
        assert failure["observed_value"] is not None or failure["error"]


@pytest.mark.parametrize(
    ("change", "missing", "unexpected"),
    [
        (lambda f: f.rename(columns={contract.ITEM_ID: "item"}), ["item_id"], ["item"]),
        (lambda f: f.drop(columns=[contract.RATING]), ["rating"], []),
        (lambda f: f.assign(extra=1), [], ["extra"]),
    ],
)
def test_column_set_mismatch_is_named(tmp_path, day_frame, change, missing, unexpected):
    failures = validate_interactions(roundtrip(tmp_path, change(day_frame.copy())), DS)
    by_check = {f["check"]: f for f in failures if f["expectation"] == "expect_table_columns_to_match_set"}
    assert sorted(by_check) == sorted(
        (["missing_columns"] if missing else []) + (["extra_columns"] if unexpected else [])
    )
    if missing:
        assert by_check["missing_columns"]["observed_value"] == missing
    if unexpected:
        assert by_check["extra_columns"]["observed_value"] == unexpected
    # Expectations on a missing column cannot run; those GX errors are consequences of
    # missing_columns and are not reported a second time.
    for column in missing:
        assert not [f for f in failures if f["column"] == column]


def test_empty_partition_fails_row_count(tmp_path, day_frame):
    failures = validate_interactions(roundtrip(tmp_path, day_frame.iloc[:0]), DS)
    assert ("expect_table_row_count_to_be_between", None) in failed_pairs(failures)
    assert {f["check"] for f in failures} == {"empty_file"}


def test_gx_progress_bars_are_silenced(tmp_path, day_frame, capfd):
    frame = day_frame.copy()
    _bogus_type(frame)
    frame = roundtrip(tmp_path, frame)
    capfd.readouterr()
    assert validate_interactions(frame, DS)
    captured = capfd.readouterr()
    assert "Calculating Metrics" not in captured.err
    assert "Calculating Metrics" not in captured.out
