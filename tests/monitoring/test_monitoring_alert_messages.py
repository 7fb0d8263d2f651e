"""Alert emails composed (monitoring.alert_messages): subjects, the episode alert's table,
links and next steps, the held-back retrain, the digest, the retrain follow-up and the task
alert's advice; every email readable (plain part, 720 px column, absolute links). Pure: no SMTP."""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace

import pytest
from alert_days import AIRFLOW_URL, REPORT, REPORTS_URL, day, hrefs, linked_settings, parts, run, settings_for

from monitoring.alert_links import file_url
from monitoring.alert_messages import (
    DS_HEADER,
    EPISODE_HEADER,
    KIND_HEADER,
    build_digest,
    build_drift_followup,
    build_episode_alert,
    build_task_alert,
    episode_subject,
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
    assert "<table" in page and re.search(r"<td style='[^']*'>item_popularity</td>", page)
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


def test_file_url_makes_local_paths_file_urls(tmp_path):
    assert file_url(tmp_path / "r.html") == (tmp_path / "r.html").as_uri()
    assert file_url("/lake/ds=2025-01-21/my report.html") == "file:///lake/ds=2025-01-21/my%20report.html"
    assert file_url("http://airflow.local/report.html") == "http://airflow.local/report.html"


def test_the_digest_summarises_the_day(policy, tmp_path):
    decisions = run(policy, [day(item_popularity=0.3)] * 3)
    message = build_digest(decisions[-1], day(item_popularity=0.3), settings_for(tmp_path), REPORT)
    assert message["Subject"] == "[graphrec] drift digest 2025-01-22: ongoing (drift-2025-01-21)"
    text = message.get_body(("plain",)).get_content()
    assert decisions[-1].summary in text and "0.82 → 1.37" in text and "file:///lake/reports" in text
    quiet = build_digest(run(policy, [day()])[-1], day(), settings_for(tmp_path), REPORT)
    assert quiet["Subject"] == "[graphrec] drift digest 2025-01-20: ok" and quiet[EPISODE_HEADER] is None
    assert "(none)" in quiet.get_body(("plain",)).get_content()


def _context(error: BaseException | None, task_id: str = "train") -> dict:
    ti = SimpleNamespace(
        dag_id="graphrec_nightly",
        task_id=task_id,
        run_id="scheduled__2025-01-21T02:00:00+00:00",
        try_number=3,
        map_index=-1,
        task=SimpleNamespace(retries=2),
        log_url="http://localhost:38123/dags/graphrec_nightly/runs/x/tasks/train",  # the demo's port: not used
    )
    return {"ti": ti, "exception": error}


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:  # noqa: BLE001 - a real traceback for the email
        return caught


QUARANTINED = (
    "partition ds=2025-01-08 quarantined (1500 rows) at /lake/quarantine/ds=2025-01-08: 1 blocking failure(s):"
)


def _every_email(tmp_path, warning_alert, policy):
    settings = linked_settings(tmp_path)
    decision, signals = warning_alert
    report = settings.reports_dir / "drift" / "ds=2025-01-21" / "data.html"
    run_url = f"{AIRFLOW_URL}/dags/graphrec_nightly/runs/scheduled__2025-01-21"
    return settings, {
        "episode": build_episode_alert(decision, signals, settings, report_path=report, run_url=run_url),
        "digest": build_digest(decision, signals, settings, report, run_url=run_url),
        "followup": build_drift_followup(
            settings,
            ds=dt.date(2025, 1, 21),
            episode="drift-2025-01-21",
            verdict="promoted v9 (R@20 0.197 vs champion 0.190)",
            reasons=["no_regression: ΔRecall@20 +0.0070"],
            run_url=f"{AIRFLOW_URL}/dags/graphrec_nightly/runs/manual__drift",
            report_path=report,
        ),
        "task": build_task_alert(_context(_raised(ValueError("x" * 3000))), "failed", settings),
    }


def test_every_email_has_a_plain_part_a_narrow_page_and_absolute_configured_links(tmp_path, warning_alert, policy):
    settings, emails = _every_email(tmp_path, warning_alert, policy)
    for name, message in emails.items():
        text, page = parts(message)
        assert "max-width:720px" in page and "overflow-wrap:anywhere" in page, name
        links = hrefs(page)
        assert links, name
        for link in links:
            assert link.startswith((AIRFLOW_URL + "/dags/", REPORTS_URL + "/")), (name, link)
            assert link in text, (name, link)  # the plain part carries the same links
    assert f"{REPORTS_URL}/drift/ds=2025-01-21/data.html" in hrefs(parts(emails["episode"])[1])
    task_page = parts(emails["task"])[1]
    assert re.search(r"<pre style=\"[^\"]*white-space:pre-wrap[^\"]*overflow:auto", task_page)  # the traceback


def test_without_base_urls_links_default_to_the_airflow_host_and_file_paths(tmp_path, warning_alert):
    settings = settings_for(tmp_path)  # no airflow_url, no reports_url
    message = build_task_alert(_context(ValueError("boom")), "failed", settings)
    base = f"http://{settings.airflow.host}:{settings.airflow.port}/dags/graphrec_nightly/runs/"
    assert all(link.startswith(base) for link in hrefs(parts(message)[1]))
    decision, signals = warning_alert
    report = settings.reports_dir / "drift" / "ds=2025-01-21" / "data.html"
    page = parts(build_episode_alert(decision, signals, settings, report_path=report))[1]
    assert hrefs(page) == [file_url(report)]


def test_the_task_alert_links_the_airflow_3_task_page_with_the_run_id_quoted(tmp_path):
    message = build_task_alert(_context(ValueError("boom")), "failed", linked_settings(tmp_path))
    text, page = parts(message)
    run = f"{AIRFLOW_URL}/dags/graphrec_nightly/runs/scheduled__2025-01-21T02%3A00%3A00%2B00%3A00"
    assert f"Task log: {run}/tasks/train?try_number=3" in text and f"DAG run: {run}\n" in text
    assert "localhost:38123" not in text + page
    assert message[KIND_HEADER] == "task-failed"
    assert message["Subject"] == "[graphrec] task failed: graphrec_nightly.train (scheduled__2025-01-21T02:00:00+00:00)"


@pytest.mark.parametrize(
    ("error", "event", "says", "never"),
    [
        (QUARANTINED, "failed", ["re-land them into", "landing/ds=2025-01-08/", "quarantine show 2025-01-08"], []),
        ("CUDA out of memory", "failed", ["Read the task log", "Fix the cause", "Clear the task train"], ["re-land"]),
        ("flaky", "up_for_retry", ["Airflow retries it"], ["Clear the task", "re-land"]),
    ],
)
def test_the_task_alert_advice_fits_the_failure(tmp_path, error, event, says, never):
    settings = linked_settings(tmp_path)
    text, _ = parts(build_task_alert(_context(RuntimeError(error), task_id="train"), event, settings))
    advice = text.split("What to do:", 1)[1].split("Traceback", 1)[0]
    for part in says:
        assert part in advice, advice
    for part in never:
        assert part not in advice, advice
    if "quarantined" in error:  # fix and re-land first, clear last: clearing alone reprocesses nothing
        assert str(settings.landing_dir / "ds=2025-01-08") in advice
        assert advice.index("re-land") < advice.index("clear the task")


@pytest.mark.parametrize(
    ("verdict", "subject", "meaning"),
    [
        (
            "rejected v7: no_regression (R@20 0.181 vs champion 0.190, ΔR@20 -0.0123 CI [-0.0201, -0.0046])",
            "[graphrec] drift retrain for 2025-01-08: rejected v7: no_regression (R@20 0.181",
            "the champion keeps serving",
        ),
        (
            "promoted v9 (R@20 0.197 vs champion 0.190)",
            "[graphrec] drift retrain for 2025-01-08: promoted v9",
            "is the champion now",
        ),
    ],
)
def test_the_followup_names_the_verdict_why_and_the_quality_trend(tmp_path, verdict, subject, meaning):
    message = build_drift_followup(
        linked_settings(tmp_path),
        ds=dt.date(2025, 1, 8),
        episode="drift-2025-01-08",
        verdict=verdict,
        reasons=["no_regression: ΔRecall@20 -0.0123 [95% CI -0.0201, -0.0046], allowed -0.005"],
        quality=[(dt.date(2025, 1, 7), 0.91), (dt.date(2025, 1, 8), 0.42)],
    )
    assert message["Subject"].startswith(subject) and len(message["Subject"]) < 160
    assert message[KIND_HEADER] == "drift-followup" and message[EPISODE_HEADER] == "drift-2025-01-08"
    text, page = parts(message)
    assert verdict in text and meaning in text and "allowed -0.005" in text
    assert "2025-01-07: 0.91" in text and "2025-01-08: 0.42" in text
    assert "ΔRecall@20" in page
