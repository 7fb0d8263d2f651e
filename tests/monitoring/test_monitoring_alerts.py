"""The drift alert email (unit) and its delivery through Airflow's SMTP hook to a real server."""

from __future__ import annotations

import json
import re
import socket

import pytest

from graphrec.settings import Settings
from monitoring.alerts import DS_HEADER, build_drift_alert, send_drift_alert
from monitoring.mailsink import MailSink, read_message

# The shape check_drift returns (see test_monitoring_drift for the real thing).
DRIFTED = {
    "ds": "2025-01-08",
    "drifted": True,
    "share": 4 / 6,
    "threshold": 0.5,
    "drifted_columns": ["item_popularity", "is_new_item", "category", "user_daily_events"],
    "column_scores": {
        "item_popularity": 1.07,
        "is_new_item": 0.39,
        "category": 0.30,
        "user_daily_events": 0.11,
        "hour": 0.016,
        "event_type": 0.003,
    },
    "column_methods": dict.fromkeys(["item_popularity", "user_daily_events", "hour"], "wasserstein")
    | dict.fromkeys(["is_new_item", "category", "event_type"], "jensenshannon"),
    "column_thresholds": dict.fromkeys(
        ["item_popularity", "is_new_item", "category", "user_daily_events", "hour", "event_type"], 0.1
    ),
    "html": "/lake/reports/drift/ds=2025-01-08/report.html",
    "json": "/lake/reports/drift/ds=2025-01-08/report.json",
    "summary": "/lake/reports/drift/ds=2025-01-08/summary.json",
    "reference_days": [f"2025-01-0{d}" for d in range(1, 8)],
    "rows_current": 4012,
    "rows_reference": 27950,
    "reason": None,
}


def test_subject_states_the_day_the_count_and_the_share():
    message = build_drift_alert(DRIFTED, Settings(home="unused"))
    assert message["Subject"] == (
        "[graphrec] Data drift detected for 2025-01-08: 4/6 columns drifted (share 0.67 ≥ 0.50)"
    )
    assert message[DS_HEADER] == "2025-01-08"


def test_body_tells_what_drifted_where_the_report_is_and_what_happens_next():
    settings = Settings(home="unused", alert_recipients=["a@example.org", "b@example.org"], alert_sender="g@example.org")
    message = build_drift_alert(DRIFTED, settings, dag_run_note="Retraining run: graphrec_train/drift__2025-01-08")
    body = message.get_content()
    assert message.get_content_type() == "text/plain"
    assert message["From"] == "g@example.org"
    assert message["To"] == "a@example.org, b@example.org"
    drifted_part, rest = body.split("Columns within their usual range:")
    for column in DRIFTED["drifted_columns"]:
        assert column in drifted_part
    assert re.search(r"item_popularity +wasserstein 1\.070 \(drift at >= 0\.10\)", drifted_part)
    assert "hour" in rest and "hour" not in drifted_part
    assert DRIFTED["html"] in body
    assert "A retraining run was triggered" in body
    assert "graphrec_train/drift__2025-01-08" in body
    assert "2025-01-01 .. 2025-01-07, 7 day(s)" in body


@pytest.mark.parametrize(
    "overrides, subject_start, body_text",
    [
        (
            {"drifted": False, "share": 1 / 6, "drifted_columns": ["category"]},
            "[graphrec] No data drift for 2025-01-08: 1/6",
            "no retraining is triggered",
        ),
        (
            {"drifted": False, "share": None, "drifted_columns": [], "column_scores": {}, "reason": "no reference"},
            "[graphrec] Drift check skipped for 2025-01-08",
            "no reference",
        ),
    ],
)
def test_messages_for_results_without_drift_say_so(overrides, subject_start, body_text):
    message = build_drift_alert(DRIFTED | overrides, Settings(home="unused"))
    assert message["Subject"].startswith(subject_start)
    assert body_text in message.get_content()
    assert "retraining run was triggered" not in message.get_content()


def _smtp_connection(port: int) -> str:
    return json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {"disable_tls": True, "disable_ssl": True}}
    )


def test_send_drift_alert_delivers_through_airflow_smtp_to_a_real_server(drift_result, tmp_path, monkeypatch):
    settings = Settings(
        home=tmp_path, alert_recipients=["mlops@example.org", "oncall@example.org"], alert_sender="graphrec@example.org"
    )
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", _smtp_connection(sink.port))
        sent = send_drift_alert(drift_result, settings, dag_run_note="Retraining run: test-run-1")
        [path] = sink.messages()

    assert sent["recipients"] == ["mlops@example.org", "oncall@example.org"] and sent["refused"] == []
    message = read_message(path)
    assert message["Subject"] == sent["subject"]
    assert sent["subject"].startswith(f"[graphrec] Data drift detected for {drift_result['ds']}: ")
    assert message["To"] == "mlops@example.org, oncall@example.org"
    assert message["X-RcptTo"] == "mlops@example.org, oncall@example.org"  # the SMTP envelope
    assert message["X-MailFrom"] == "graphrec@example.org"
    body = message.get_content()
    for column in drift_result["drifted_columns"]:
        assert column in body
    assert drift_result["html"] in body
    assert "test-run-1" in body


def test_send_drift_alert_uses_the_configured_connection_id(drift_result, tmp_path, monkeypatch):
    settings = Settings(home=tmp_path, smtp_conn_id="graphrec_alerts")
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_GRAPHREC_ALERTS", _smtp_connection(sink.port))
        send_drift_alert(drift_result, settings)
        assert len(sink.messages()) == 1


def test_send_drift_alert_fails_loudly_when_no_server_listens(drift_result, tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", _smtp_connection(port))
    with pytest.raises(OSError):
        send_drift_alert(drift_result, Settings(home=tmp_path))
