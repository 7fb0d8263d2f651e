"""The offline validation overview page and the graphrec notes on Data Docs."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from graphrec.lake import partition_name
from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate
from validation.gx_run import OFFLINE_STYLES
from validation.partition import validate_partition
from validation.report_page import (
    INDEX_FILE,
    DayEntry,
    latest_records,
    render_page,
    status_of,
    update_report_page,
)
from validation.suite import build_interactions_suite

CFG = SimulationConfig(n_users=60, n_items=40, days=3, events_per_day=200, drift_day=None, corrupt_day=3)
GOOD, CORRUPT = CFG.day(1), CFG.day(3)
NOW = dt.datetime(2025, 3, 1, 2, tzinfo=dt.UTC)
LINK = re.compile(r'<a href="([^"]+)"')


def failure(check: str, severity: str, **extra) -> dict:
    return {"check": check, "severity": severity, "expectation": "expect_column_values_to_not_be_null", **extra}


def entry(tmp_path: Path, ds: dt.date, record: dict | None, runs: int = 1) -> DayEntry:
    return DayEntry(ds=ds, record_path=tmp_path / "runs" / partition_name(ds) / "r.json", record=record, runs=runs)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"status": "curated", "warning_checks": []}, "curated"),
        ({"status": "curated", "warning_checks": ["row_count_unusual"]}, "warnings"),
        ({"status": "quarantined", "warning_checks": ["row_count_unusual"]}, "quarantined"),
        ({"status": "already_curated"}, "curated"),
        ({"status": "something new"}, "unknown"),
        (None, "unknown"),
    ],
)
def test_status_of(record, expected):
    assert status_of(record) == expected


def test_page_shows_each_status_with_its_checks_escaped_and_offline(tmp_path):
    day = dt.date(2025, 1, 1)
    entries = [
        entry(
            tmp_path,
            day + dt.timedelta(days=2),
            {
                "status": "quarantined",
                "rows": 7,
                "failures": [
                    failure("row_count_unusual", "warning", observed_value=7, kwargs={"min_value": 100}),
                    failure("null_ids", "blocking", column="user_id", unexpected_count=3, unexpected_sample=["<b>"]),
                ],
                "reason_path": str(tmp_path.parent / "quarantine" / "ds=2025-01-03" / "x" / "_reason.json"),
                "data_docs": {"interactions": str(tmp_path / "data_docs" / "validations" / "p.html")},
                "checked_at": "2025-01-04T02:00:00+00:00",
            },
            runs=2,
        ),
        entry(
            tmp_path,
            day + dt.timedelta(days=1),
            {"status": "curated", "rows": 5, "warning_checks": ["new_items_high"], "warnings": ["new_items_high x"]},
        ),
        entry(tmp_path, day, {"status": "curated", "rows": 4, "failures": []}),
        entry(tmp_path, day - dt.timedelta(days=1), None),
    ]
    html = render_page(entries, base=tmp_path, data_docs_index=None, generated_at=NOW)

    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    days = re.findall(r'<tr id="ds=([\d-]+)"', html)
    assert days == ["2025-01-03", "2025-01-02", "2025-01-01", "2024-12-31"]
    rows = dict(zip(days, html.split('<tr id="')[1:]))
    assert "quarantined" in rows["2025-01-03"] and "accepted with warnings" in rows["2025-01-02"]
    assert ">curated<" in rows["2025-01-01"] and "record unreadable" in rows["2024-12-31"]
    quarantined = rows["2025-01-03"]
    # Blocking first, each with its severity, the catalog's description and describe_failure's line.
    assert quarantined.index("null_ids") < quarantined.index("row_count_unusual")
    assert "sev-blocking" in quarantined and "sev-warning" in quarantined
    assert "user_id or item_id is null" in quarantined  # the catalog's description of null_ids
    assert "null_ids [expect_column_values_to_not_be_null(user_id)]: 3 unexpected" in quarantined
    assert "new_items_high x" in rows["2025-01-02"] and "sev-warning" in rows["2025-01-02"]
    links = LINK.findall(quarantined)
    assert links == [
        "data_docs/validations/p.html",
        "runs/ds=2025-01-03/r.json",
        "../quarantine/ds=2025-01-03/x/_reason.json",
    ]
    assert "latest of 2 runs" in quarantined
    assert "1 curated, 1 accepted with warnings, 1 quarantined, 1 unknown" in html


def test_update_report_page_logs_instead_of_raising(tmp_path, caplog):
    settings = Settings(home=tmp_path / "home")
    settings.validation_reports_dir.parent.mkdir(parents=True)
    settings.validation_reports_dir.write_text("not a directory")
    assert update_report_page(settings) is None
    assert "could not update the validation overview page" in caplog.text


def test_every_expectation_notes_its_graphrec_check_and_severity():
    suite = build_interactions_suite(GOOD, NOW)
    for expectation in suite.expectations:
        (note,) = expectation.notes
        assert note.startswith(f"graphrec check `{expectation.meta['check']}` ({expectation.meta['severity']}): ")


@pytest.fixture(scope="module")
def validated(tmp_path_factory) -> Settings:
    """A tiny lake with one curated and one quarantined day, validated with Data Docs."""
    settings = Settings(home=tmp_path_factory.mktemp("lake") / "home")
    simulate(CFG, settings.landing_dir)
    assert settings.validation.data_docs
    assert validate_partition(settings, GOOD, now=NOW).status == "curated"
    assert validate_partition(settings, CORRUPT, now=NOW).status == "quarantined"
    return settings


@pytest.mark.slow
def test_validation_run_writes_the_offline_page(validated):
    page = validated.validation_reports_dir / INDEX_FILE
    html = page.read_text()
    assert "http://" not in html and "https://" not in html
    assert [e.ds for e in latest_records(validated.validation_reports_dir / "runs")] == [CORRUPT, GOOD]
    quarantined, curated = html.split('<tr id="')[1:]
    assert quarantined.startswith(partition_name(CORRUPT)) and curated.startswith(partition_name(GOOD))
    assert "quarantined" in quarantined and ">curated<" in curated
    for check in ("null_ids", "unknown_event_type", "timestamp_outside_day"):
        assert f"<strong>{check}</strong>" in quarantined
    assert "sev-blocking" in quarantined and "sev-blocking" not in curated
    for row in (quarantined, curated):
        links = LINK.findall(row)
        assert any(link.endswith(".json") for link in links)
        assert any("data_docs/validations/interactions/" in link for link in links)
        for link in links:
            assert (page.parent / link.replace("%3A", ":")).resolve().is_file(), link
    assert any(link.endswith("/_reason.json") for link in LINK.findall(quarantined))


@pytest.mark.slow
def test_data_docs_show_the_graphrec_check_of_each_expectation(validated):
    page = (validated.data_docs_dir / "expectations" / "interactions.html").read_text()
    for check, severity in (
        ("null_ids", "blocking"),
        ("duplicate_events", "blocking"),
        ("missing_columns", "blocking"),
    ):
        assert f"graphrec check <code>{check}</code> ({severity}):" in page


@pytest.mark.slow
def test_data_docs_pages_say_passed_or_failed_without_the_cdn_stylesheets(validated):
    (path,) = (validated.data_docs_dir / "validations" / "interactions").glob(f"{partition_name(CORRUPT)}_*/*/*.html")
    page = path.read_text()
    assert OFFLINE_STYLES.strip() in page
    assert 'class="fas fa-times text-danger"' in page and 'class="fas fa-check-circle text-success"' in page
