"""Drift emails: the episode alert and digest (unit), and their delivery through Airflow's
SMTP notifier to a real SMTP server on loopback."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket

import pytest

from graphrec.settings import Settings
from monitoring.alerts import (
    DS_HEADER,
    EPISODE_HEADER,
    build_digest,
    build_episode_alert,
    episode_subject,
    report_url,
    send_digest,
    send_episode_alert,
)
from monitoring.mailsink import MailSink, read_message
from monitoring.policy import SIGNAL_GROUPS, DriftPolicy, MonitorState, decide

DAY0 = dt.date(2025, 1, 20)
REPORT = "/lake/reports/monitoring/ds=2025-01-21/report.html"


def signal(name: str, value: float | None, before=0.1, after=0.4, detail: str = "") -> dict:
    return {
        "name": name,
        "group": SIGNAL_GROUPS[name],
        "metric": {"event_type_missing": "share difference", "quality_proxy": "proxy/offline ratio"}.get(
            name, "normed Wasserstein"
        ),
        "value": value,
        "before": before,
        "after": after,
        "n_current": 4012,
        "n_reference": 27950,
        "detail": detail,
    }


def day(item_popularity=0.02, event_type_missing=0.0, category_mix=0.01) -> list[dict]:
    return [
        signal("item_popularity", item_popularity, before=0.82, after=1.37, detail="popularity of {{ ds }} {# odd #}"),
        signal("event_type_missing", event_type_missing, before=0.0, after=event_type_missing),
        signal("category_mix", category_mix, before={"books": 0.5, "toys": 0.5}, after={"books": 0.2, "toys": 0.8}),
    ]


@pytest.fixture(scope="module")
def policy() -> DriftPolicy:
    return DriftPolicy.load()


def run(policy, days, start=DAY0):
    state, decisions = MonitorState(), []
    for offset, signals in enumerate(days):
        decision, state = decide(policy, start + dt.timedelta(days=offset), signals, state)
        decisions.append(decision)
    return decisions


@pytest.fixture(scope="module")
def warning_alert(policy):
    """Day 2 of a persistent item_popularity drift, category_mix on watch."""
    days = [day(item_popularity=0.3), day(item_popularity=0.3, category_mix=0.15)]
    return run(policy, days)[-1], days[-1]


@pytest.fixture(scope="module")
def critical_alert(policy):
    signals = day(event_type_missing=0.12, item_popularity=0.3)
    return run(policy, [signals])[-1], signals


def _settings(tmp_path, **overrides) -> Settings:
    values = dict(alert_recipients=["mlops@example.org", "oncall@example.org"], alert_sender="graphrec@example.org")
    return Settings(home=tmp_path, **(values | overrides))


def _smtp_connection(port: int) -> str:
    return json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {"disable_tls": True, "disable_ssl": True}}
    )


# --- composition ---------------------------------------------------------------------


def test_subjects_name_severity_main_signal_and_first_day(warning_alert, critical_alert):
    assert episode_subject(critical_alert[0]) == "[graphrec] CRITICAL drift: event_type_missing since 2025-01-20"
    assert episode_subject(warning_alert[0]) == "[graphrec] WARNING drift: item_popularity since 2025-01-21"


def test_the_episode_email_tells_what_drifted_where_the_report_is_and_what_happens_next(warning_alert, tmp_path):
    decision, signals = warning_alert
    message = build_episode_alert(
        decision,
        signals,
        _settings(tmp_path),
        report_path=REPORT,
        dag_run_note="Retraining run: graphrec_nightly/drift__2025-01-21",
    )
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "[graphrec] WARNING drift: item_popularity since 2025-01-21"
    assert message[DS_HEADER] == "2025-01-21" and message[EPISODE_HEADER] == "drift-2025-01-21"
    assert message["From"] == "graphrec@example.org" and message["To"] == "mlops@example.org, oncall@example.org"
    text = message.get_body(("plain",)).get_content()
    table, rest = text.split("Report:")
    fired_row, watch_row = (
        line for line in table.splitlines() if line.startswith(("item_popularity ", "category_mix "))
    )
    assert fired_row.startswith("item_popularity") and watch_row.startswith("category_mix")  # fired first
    assert re.search(r"0\.82 → 1\.37 +0\.3 >= 0\.15 +fired +4012 / 27950", fired_row)
    assert "{books: 0.5, toys: 0.5} → {books: 0.2, toys: 0.8}" in watch_row and "watch (1 day)" in watch_row
    assert not any(line.startswith("event_type_missing") for line in table.splitlines())  # quiet: not listed
    assert "file:///lake/reports/monitoring/ds=2025-01-21/report.html" in rest
    assert "Retraining was triggered: drift on 2025-01-21, warning: item_popularity 0.3 >= 0.15" in rest
    assert "graphrec_nightly/drift__2025-01-21" in rest
    assert "only email for drift-2025-01-21" in rest
    assert "item_popularity (data, soft): 0.3 >= threshold 0.15, drifted 2 monitored days in a row" in rest
    page = message.get_body(("html",)).get_content()
    assert "<table" in page and "<td style='padding:2px 8px'>item_popularity</td>" in page
    assert "href='file:///lake/reports/monitoring/ds=2025-01-21/report.html'" in page
    assert "{{ ds }} {# odd #}" in text and "{{ ds }} {# odd #}" in page  # details kept verbatim


def test_an_alert_held_back_by_the_cooldown_says_until_when(policy, tmp_path):
    custom = policy.model_copy(update={"clear_days": 1})
    hard = day(event_type_missing=0.2)
    reopened = run(custom, [hard, day(), hard])[-1]
    assert reopened.send_email and not reopened.trigger_retrain
    text = (
        build_episode_alert(reopened, hard, _settings(tmp_path), report_path=REPORT).get_body(("plain",)).get_content()
    )
    assert "Retraining is held back by the cooldown after the last triggered retrain until 2025-01-23" in text
    assert "Retraining was triggered" not in text


def test_a_decision_from_an_xcom_dict_builds_the_same_email(critical_alert, tmp_path):
    decision, signals = critical_alert
    settings = _settings(tmp_path)
    direct = build_episode_alert(decision, signals, settings, report_path=REPORT)
    via_dict = build_episode_alert(json.loads(json.dumps(decision.to_dict())), signals, settings, report_path=REPORT)
    assert via_dict["Subject"] == direct["Subject"]
    assert via_dict.get_body(("plain",)).get_content() == direct.get_body(("plain",)).get_content()


def test_report_url_makes_local_paths_file_urls(tmp_path):
    assert report_url(tmp_path / "r.html") == (tmp_path / "r.html").as_uri()
    assert report_url("/lake/ds=2025-01-21/my report.html") == "file:///lake/ds=2025-01-21/my%20report.html"
    assert report_url("http://airflow.local/report.html") == "http://airflow.local/report.html"


def test_the_digest_summarises_the_day(policy, tmp_path):
    decisions = run(policy, [day(item_popularity=0.3)] * 3)
    message = build_digest(decisions[-1], day(item_popularity=0.3), _settings(tmp_path), REPORT)
    assert message["Subject"] == "[graphrec] drift digest 2025-01-22: ongoing (drift-2025-01-21)"
    text = message.get_body(("plain",)).get_content()
    assert decisions[-1].summary in text and "0.82 → 1.37" in text and "file:///lake/reports" in text
    quiet = build_digest(run(policy, [day()])[-1], day(), _settings(tmp_path), REPORT)
    assert quiet["Subject"] == "[graphrec] drift digest 2025-01-20: ok" and quiet[EPISODE_HEADER] is None
    assert "(none)" in quiet.get_body(("plain",)).get_content()


# --- delivery through Airflow's SmtpNotifier to a real server -------------------------


def test_send_episode_alert_delivers_through_the_smtp_notifier(warning_alert, tmp_path, monkeypatch):
    decision, signals = warning_alert
    settings = _settings(tmp_path)
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", _smtp_connection(sink.port))
        sent = send_episode_alert(decision, signals, settings, report_path=REPORT, dag_run_note="Run: test-run-1")
        [path] = sink.messages()

    assert sent["episode_id"] == "drift-2025-01-21" and sent["recipients"] == settings.alert_recipients
    message = read_message(path)
    assert message["Subject"] == sent["subject"] == "[graphrec] WARNING drift: item_popularity since 2025-01-21"
    assert message["X-RcptTo"] == "mlops@example.org, oncall@example.org"  # the SMTP envelope
    assert message["X-MailFrom"] == "graphrec@example.org"
    assert message[DS_HEADER] == "2025-01-21" and message[EPISODE_HEADER] == "drift-2025-01-21"
    assert message["Message-ID"] == sent["message_id"]
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
    settings = _settings(tmp_path)
    hard, soft = day(event_type_missing=0.2), day(item_popularity=0.3)
    days = [day(), soft, soft, soft, soft, soft, day(), day(), day(), hard, hard]
    state, results = MonitorState(), []
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", _smtp_connection(sink.port))
        for offset, signals in enumerate(days):
            decision, state = decide(policy, DAY0 + dt.timedelta(days=offset), signals, state)
            results.append(send_episode_alert(decision, signals, settings, report_path=REPORT))
        paths = sink.messages()
    assert [r["episode_id"] for r in results if r] == ["drift-2025-01-22", "drift-2025-01-29"]
    assert [read_message(p)["Subject"] for p in paths] == [
        "[graphrec] WARNING drift: item_popularity since 2025-01-22",
        "[graphrec] CRITICAL drift: event_type_missing since 2025-01-29",
    ]


def test_the_digest_is_delivered_too(policy, tmp_path, monkeypatch):
    settings = _settings(tmp_path)
    decision = run(policy, [day()])[-1]
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", _smtp_connection(sink.port))
        send_digest(decision, day(), settings, REPORT)
        [path] = sink.messages()
    assert read_message(path)["Subject"] == "[graphrec] drift digest 2025-01-20: ok"


def test_the_configured_connection_id_is_used(critical_alert, tmp_path, monkeypatch):
    decision, signals = critical_alert
    settings = _settings(tmp_path, smtp_conn_id="graphrec_alerts")
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_GRAPHREC_ALERTS", _smtp_connection(sink.port))
        send_episode_alert(decision, signals, settings, report_path=REPORT)
        assert len(sink.messages()) == 1


def test_sending_fails_loudly_when_no_server_listens(critical_alert, tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", _smtp_connection(port))
    with pytest.raises(OSError):
        send_episode_alert(*critical_alert, _settings(tmp_path), report_path=REPORT)
