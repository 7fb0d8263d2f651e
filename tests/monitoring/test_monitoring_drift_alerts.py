"""Drift emails sent (monitoring.drift_alerts) through Airflow's SMTP notifier to a real
SMTP server on loopback (monitoring.mailsink): one email per episode, the digest, the
configured connection, and a loud failure when no server listens."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from alert_days import DAY0, REPORT, day, run, settings_for, smtp_connection

from monitoring.alert_messages import DS_HEADER, EPISODE_HEADER
from monitoring.drift_alerts import send_digest, send_episode_alert
from monitoring.mailsink import MailSink, read_message
from monitoring.policy import decide
from monitoring.policy_state import MonitorState


def test_send_episode_alert_delivers_through_the_smtp_notifier(warning_alert, tmp_path, monkeypatch):
    decision, signals = warning_alert
    settings = settings_for(tmp_path)
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(sink.port))
        sent = send_episode_alert(decision, signals, settings, report_path=REPORT, dag_run_note="Run: test-run-1")
        [path] = sink.messages()

    assert sent.episode_id == "drift-2025-01-21" and sent.recipients == settings.alerts.recipients
    message = read_message(path)
    assert message["Subject"] == sent.subject == "[graphrec] WARNING drift: item_popularity since 2025-01-21"
    assert message["X-RcptTo"] == "mlops@example.org, oncall@example.org"  # the SMTP envelope
    assert message["X-MailFrom"] == "graphrec@example.org"
    assert message[DS_HEADER] == "2025-01-21" and message[EPISODE_HEADER] == "drift-2025-01-21"
    assert message["Message-ID"] == sent.message_id
    page = message.get_body(("html",)).get_content()
    for text in (
        "item_popularity",
        "0.82 → 1.37",
        "0.3 &gt;= 0.15",
        "category_mix",
        "Run: test-run-1",
        "file:///lake/reports/monitoring/ds=2025-01-21/report.html",
        "Retraining was triggered",
        "{{ ds }} {# odd #}",
    ):  # no Jinja rendering of the content
        assert text in page


def test_one_email_per_episode_over_a_sequence_of_days(policy, tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    hard, soft = day(event_type_missing=0.2), day(item_popularity=0.3)
    days = [day(), soft, soft, soft, soft, soft, day(), day(), day(), hard, hard]
    state, results = MonitorState(), []
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(sink.port))
        for offset, signals in enumerate(days):
            decision, state = decide(policy, DAY0 + dt.timedelta(days=offset), signals, state)
            results.append(send_episode_alert(decision, signals, settings, report_path=REPORT))
        paths = sink.messages()
    assert [r.episode_id for r in results if r] == ["drift-2025-01-22", "drift-2025-01-29"]
    assert [read_message(p)["Subject"] for p in paths] == [
        "[graphrec] WARNING drift: item_popularity since 2025-01-22",
        "[graphrec] CRITICAL drift: event_type_missing since 2025-01-29",
    ]


def test_the_digest_is_delivered_too(policy, tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    decision = run(policy, [day()])[-1]
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(sink.port))
        send_digest(decision, day(), settings, REPORT)
        [path] = sink.messages()
    assert read_message(path)["Subject"] == "[graphrec] drift digest 2025-01-20: ok"


def test_the_configured_connection_id_is_used(critical_alert, tmp_path, monkeypatch):
    decision, signals = critical_alert
    settings = settings_for(tmp_path, smtp_conn_id="graphrec_alerts")
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_GRAPHREC_ALERTS", smtp_connection(sink.port))
        send_episode_alert(decision, signals, settings, report_path=REPORT)
        assert len(sink.messages()) == 1


def test_sending_fails_loudly_when_no_server_listens(critical_alert, tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(port))
    with pytest.raises(OSError):
        send_episode_alert(*critical_alert, settings_for(tmp_path), report_path=REPORT)
