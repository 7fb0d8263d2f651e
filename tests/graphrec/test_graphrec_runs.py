from __future__ import annotations

import datetime as dt

import pytest

from graphrec.runs import resolve_run_day

UTC = dt.UTC


def test_scheduled_run_processes_previous_day():
    out = resolve_run_day(
        params={"ds": None, "trigger_reason": ""},
        logical_date=dt.datetime(2025, 1, 8, 2, tzinfo=UTC),
        run_after=None,
        run_type="scheduled",
    )
    assert out == {"ds": "2025-01-07", "reason": "schedule", "tags": {"trigger": "schedule"}}


def test_ds_param_and_reason_win():
    out = resolve_run_day(
        params={"ds": "2025-01-03", "trigger_reason": "drift on 2025-01-03"},
        logical_date=None,
        run_after=dt.datetime(2026, 5, 1, tzinfo=UTC),
        run_type="manual",
    )
    assert out == {"ds": "2025-01-03", "reason": "drift on 2025-01-03", "tags": {"trigger": "other"}}


def test_drift_triggered_run_names_its_report():
    out = resolve_run_day(
        params={
            "ds": "2025-01-03",
            "trigger_reason": "drift on 2025-01-03: item_popularity",
            "drift_report": "/lake/reports/drift/ds=2025-01-03/data.html",
            "drift_episode": "drift-2025-01-03",
        },
        logical_date=None,
        run_after=None,
        run_type="manual",
    )
    assert out["tags"] == {
        "trigger": "drift",
        "drift_report": "/lake/reports/drift/ds=2025-01-03/data.html",
        "drift_episode": "drift-2025-01-03",
    }


def test_manual_run_without_logical_date_uses_run_after():
    out = resolve_run_day(
        params={}, logical_date=None, run_after=dt.datetime(2025, 2, 2, 9, tzinfo=UTC), run_type="DagRunType.MANUAL"
    )
    assert out == {"ds": "2025-02-01", "reason": "manual", "tags": {"trigger": "manual"}}


def test_bad_ds_is_a_clear_error():
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        resolve_run_day(params={"ds": "yesterday"}, logical_date=None, run_after=None, run_type="manual")


def test_dry_run_is_passed_on_and_tagged():
    day = resolve_run_day(
        params={"ds": "2025-01-05", "dry_run": True}, logical_date=None, run_after=None, run_type="manual"
    )
    assert day["dry_run"] is True and day["tags"] == {"trigger": "manual", "dry_run": "true"}
    assert "dry_run" not in resolve_run_day(
        params={"ds": "2025-01-05", "dry_run": False}, logical_date=None, run_after=None, run_type="manual"
    )
