"""Drift emails composed (monitoring.alert_messages): subjects, the episode alert's table,
report link and next steps, the held-back retrain, and the digest. Pure: no SMTP."""

from __future__ import annotations

import json
import re

from alert_days import REPORT, day, run, settings_for

from monitoring.alert_messages import (
    DS_HEADER,
    EPISODE_HEADER,
    build_digest,
    build_episode_alert,
    episode_subject,
    report_url,
)
from monitoring.policy import Decision


def test_subjects_name_severity_main_signal_and_first_day(warning_alert, critical_alert):
    assert episode_subject(critical_alert[0]) == "[graphrec] CRITICAL drift: event_type_missing since 2025-01-20"
    assert episode_subject(warning_alert[0]) == "[graphrec] WARNING drift: item_popularity since 2025-01-21"


def test_the_episode_email_tells_what_drifted_where_the_report_is_and_what_happens_next(warning_alert, tmp_path):
    decision, signals = warning_alert
    message = build_episode_alert(
        decision,
        signals,
        settings_for(tmp_path),
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
        build_episode_alert(reopened, hard, settings_for(tmp_path), report_path=REPORT)
        .get_body(("plain",))
        .get_content()
    )
    assert "Retraining is held back by the cooldown after the last triggered retrain until 2025-01-23" in text
    assert "Retraining was triggered" not in text


def test_a_decision_from_an_xcom_dict_builds_the_same_email(critical_alert, tmp_path):
    decision, signals = critical_alert
    settings = settings_for(tmp_path)
    direct = build_episode_alert(decision, signals, settings, report_path=REPORT)
    via_dict = build_episode_alert(
        Decision.from_xcom(json.loads(json.dumps(decision.to_xcom()))), signals, settings, report_path=REPORT
    )
    assert via_dict["Subject"] == direct["Subject"]
    assert via_dict.get_body(("plain",)).get_content() == direct.get_body(("plain",)).get_content()


def test_report_url_makes_local_paths_file_urls(tmp_path):
    assert report_url(tmp_path / "r.html") == (tmp_path / "r.html").as_uri()
    assert report_url("/lake/ds=2025-01-21/my report.html") == "file:///lake/ds=2025-01-21/my%20report.html"
    assert report_url("http://airflow.local/report.html") == "http://airflow.local/report.html"


def test_the_digest_summarises_the_day(policy, tmp_path):
    decisions = run(policy, [day(item_popularity=0.3)] * 3)
    message = build_digest(decisions[-1], day(item_popularity=0.3), settings_for(tmp_path), REPORT)
    assert message["Subject"] == "[graphrec] drift digest 2025-01-22: ongoing (drift-2025-01-21)"
    text = message.get_body(("plain",)).get_content()
    assert decisions[-1].summary in text and "0.82 → 1.37" in text and "file:///lake/reports" in text
    quiet = build_digest(run(policy, [day()])[-1], day(), settings_for(tmp_path), REPORT)
    assert quiet["Subject"] == "[graphrec] drift digest 2025-01-20: ok" and quiet[EPISODE_HEADER] is None
    assert "(none)" in quiet.get_body(("plain",)).get_content()
