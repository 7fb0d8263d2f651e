"""Drift emails sent (monitoring.drift_alerts) through the Airflow SMTP connection to a real
SMTP server on loopback (monitoring.mailsink): one email per episode, linking the report and
the Airflow runs; the digest; the retrain follow-up with its verdict; the configured
connection, and a loud failure when no server listens."""

from __future__ import annotations

import datetime as dt
import json
import socket
from types import SimpleNamespace

import pytest
from alert_days import (
    AIRFLOW_URL,
    DAY0,
    REPORT,
    REPORTS_URL,
    day,
    hrefs,
    linked_settings,
    parts,
    run,
    settings_for,
    signal,
    smtp_connection,
)

from monitoring.alert_messages import DS_HEADER, EPISODE_HEADER, KIND_HEADER
from monitoring.drift_alerts import canary_followup, send_digest, send_drift_followup, send_episode_alert
from monitoring.mailsink import MailSink, read_message
from monitoring.policy import decide
from monitoring.policy_state import MonitorState
from serving.canary_rules import Check


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
    plain, page = parts(message)  # the plain-text part travels too
    assert "Run: test-run-1" in plain
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


def _context(run_id: str) -> dict:
    return {"dag_run": SimpleNamespace(dag_id="graphrec_nightly", run_id=run_id)}


def test_the_episode_email_links_the_report_the_run_and_the_retrain(warning_alert, tmp_path, monkeypatch):
    decision, signals = warning_alert
    settings = linked_settings(tmp_path)
    report = settings.reports_dir / "drift" / "ds=2025-01-21" / "data.html"
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(sink.port))
        send_episode_alert(
            decision,
            signals,
            settings,
            report_path=report,
            context=_context("scheduled__2025-01-22T02:00:00+00:00"),
            retrain_run_id="drift__2025-01-21",
        )
        [path] = sink.messages()
    text, page = parts(read_message(path))
    runs = f"{AIRFLOW_URL}/dags/graphrec_nightly/runs"
    assert hrefs(page) == [
        f"{REPORTS_URL}/drift/ds=2025-01-21/data.html",
        f"{runs}/scheduled__2025-01-22T02%3A00%3A00%2B00%3A00",
        f"{runs}/drift__2025-01-21",
    ]
    assert f"Retraining run: {runs}/drift__2025-01-21" in text


def _canary(promoted: bool):
    checks = {
        "no_regression": Check(
            "no_regression",
            "pass" if promoted else "fail",
            "ΔRecall@20 -0.0123 [95% CI -0.0201, -0.0046] over 412 users, allowed -0.005",
        ),
        "beats_popularity": Check("beats_popularity", "pass", "Recall@20 0.181 vs popularity 0.045"),
    }
    head = "promoted v9" if promoted else "rejected v9: no_regression"
    return SimpleNamespace(
        checks=checks,
        ranker=None,
        forced=False,
        reason="gate",
        verdict=lambda: f"{head} (R@20 0.181 vs champion 0.190)",
    )


def test_the_retrain_followup_arrives_with_its_verdict_reasons_links_and_quality(tmp_path, monkeypatch):
    settings = linked_settings(tmp_path)
    for offset, value in enumerate([0.93, 0.9, 0.41]):  # the monitor's signals.json of three days
        day_dir = settings.reports_dir / "drift" / f"ds={DAY0 + dt.timedelta(days=offset)}"
        day_dir.mkdir(parents=True)
        quality = signal("quality_proxy", value).to_dict()
        (day_dir / "signals.json").write_text(json.dumps({"quality_proxy": quality}))
    verdict, reasons = canary_followup(_canary(promoted=False))
    assert reasons == ["no_regression: ΔRecall@20 -0.0123 [95% CI -0.0201, -0.0046] over 412 users, allowed -0.005"]
    assert canary_followup(_canary(promoted=True))[1][1] == "beats_popularity: Recall@20 0.181 vs popularity 0.045"

    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(sink.port))
        sent = send_drift_followup(
            settings,
            ds="2025-01-22",
            episode="drift-2025-01-21",
            verdict=verdict,
            reasons=reasons,
            run_url=None,
            report_path=settings.reports_dir / "drift" / "ds=2025-01-22" / "data.html",
            context=_context("manual__drift-2025-01-22"),
        )
        [path] = sink.messages()
    message = read_message(path)
    assert message["Subject"] == sent.subject
    assert sent.subject.startswith("[graphrec] drift retrain for 2025-01-22: rejected v9: no_regression")
    assert message[KIND_HEADER] == "drift-followup" and message[EPISODE_HEADER] == "drift-2025-01-21"
    assert sent.episode_id == "drift-2025-01-21"
    text, page = parts(message)
    assert "rejected v9: no_regression" in text and "allowed -0.005" in text and "keeps serving" in text
    assert hrefs(page) == [
        f"{AIRFLOW_URL}/dags/graphrec_nightly/runs/manual__drift-2025-01-22",
        f"{REPORTS_URL}/drift/ds=2025-01-22/data.html",
    ]
    assert "2025-01-20: 0.93" in text and "2025-01-22: 0.41" in text
