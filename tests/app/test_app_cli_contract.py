"""The data-contract commands of the CLI, run as a user runs them (``app.cli.main``)."""

from __future__ import annotations

import json

import pytest

from app import cli
from graphrec import settings as settings_module
from graphrec.lake import partition_name
from ingest.simulator import SimulationConfig, simulate

CFG = SimulationConfig(n_users=100, n_items=80, days=3, events_per_day=400, drift_day=None, corrupt_day=2)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GRAPHREC_VALIDATION__DATA_DOCS", "false")
    settings_module.get_settings.cache_clear()
    settings = settings_module.get_settings()
    yield settings
    settings_module.get_settings.cache_clear()


def test_validate_then_quarantine_list_and_show(home, capsys):
    simulate(CFG, home.landing_dir)
    assert cli.main(["validate", CFG.day(1).isoformat()]) == 0
    assert "curated" in capsys.readouterr().out
    assert cli.main(["validate", CFG.day(2).isoformat()]) == 4
    out = capsys.readouterr().out
    assert "quarantined" in out and "null_ids" in out

    assert cli.main(["quarantine", "list"]) == 0
    listed = capsys.readouterr().out
    assert partition_name(CFG.day(2)) in listed and "unknown_event_type" in listed

    assert cli.main(["quarantine", "show", CFG.day(2).isoformat(), "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["reason_file"]["rows"] > 0
    assert {"null_ids", "timestamp_outside_day", "unknown_event_type"} <= set(shown["checks"])

    assert cli.main(["quarantine", "show", CFG.day(1).isoformat()]) == 2
    assert "nothing quarantined" in capsys.readouterr().err


def test_contract_lists_checks_with_overrides(home, capsys, monkeypatch):
    monkeypatch.setenv("GRAPHREC_VALIDATION__SEVERITY", '{"duplicate_events": "warning"}')
    settings_module.get_settings.cache_clear()
    assert cli.main(["contract", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    by_name = {c["check"]: c for c in payload["checks"]}
    assert by_name["duplicate_events"]["severity"] == "warning" and by_name["duplicate_events"]["default"] == "blocking"
    assert by_name["new_items_high"]["severity"] == "warning"
    assert cli.main(["contract", "--profile", "backfill", "--json"]) == 0
    backfill = {c["check"]: c["severity"] for c in json.loads(capsys.readouterr().out)["checks"]}
    assert backfill["user_dominance"] == "warning" and backfill["null_ids"] == "blocking"


def test_load_source_reports_bad_lines_and_exit_code(home, tmp_path, capsys):
    csv = tmp_path / "events.csv"
    csv.write_text(
        "uid,sku,ts,action\n"
        "1,10,2025-03-01T10:00:00Z,click\n"
        "2,11,2025-03-01T11:00:00Z,view\n"
        "x,12,2025-03-01T12:00:00Z,view\n"
        "3,-4,2025-03-01T13:00:00Z,view\n"
    )
    config = tmp_path / "source.toml"
    config.write_text(
        '[source]\nname = "shop"\npath = "events.csv"\n'
        '[columns]\nuser_id = "uid"\nitem_id = "sku"\nevent_ts = "ts"\nevent_type = "action"\n'
    )
    assert cli.main(["load", "source", str(config)]) == 4
    err = capsys.readouterr().err
    assert "line(s) 4" in err and "line(s) 5" in err and "negative_ids" in err
    assert not home.landing_dir.exists()

    assert cli.main(["load", "source", str(config), "--on-bad-rows", "quarantine", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows_landed"] == 2 and report["bad_rows"] == 2 and report["curated"] == 1
