"""The SMTP edge and the task callbacks (monitoring.alerts): a failed task's email reaches a
real SMTP server on loopback whole (plain and HTML parts, absolute links to the configured
Airflow UI, the advice that fits the failure), and a callback that cannot send never raises."""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace

import pytest
from alert_days import AIRFLOW_URL, hrefs, linked_settings, parts, settings_for, smtp_connection

from monitoring.alert_messages import KIND_HEADER
from monitoring.alerts import task_failure_notifier
from monitoring.mailsink import MailSink, read_message


def _context(error: Exception) -> dict:
    task = SimpleNamespace(retries=2)
    ti = SimpleNamespace(
        dag_id="graphrec_nightly",
        task_id="train",
        run_id="scheduled__2025-01-21",
        try_number=3,
        map_index=-1,
        task=task,
        log_url="http://127.0.0.1:38123/dags/graphrec_nightly/runs/scheduled__2025-01-21/tasks/train",
    )
    return {"ti": ti, "exception": error}


def test_a_failed_task_emails_its_dag_task_run_try_error_and_log(tmp_path, monkeypatch):
    settings = linked_settings(tmp_path)
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(sink.port))
        task_failure_notifier(settings, "failed")(_context(ValueError("boom")))
        [path] = sink.messages()
    message = read_message(path)
    assert message["Subject"] == "[graphrec] task failed: graphrec_nightly.train (scheduled__2025-01-21)"
    assert message[KIND_HEADER] == "task-failed"
    assert message["X-RcptTo"] == "mlops@example.org, oncall@example.org"
    text, page = parts(message)  # multipart/alternative arrived whole: plain text and HTML
    run = f"{AIRFLOW_URL}/dags/graphrec_nightly/runs/scheduled__2025-01-21"
    for part in ("(try 3 of 3)", "ValueError: boom", f"{run}/tasks/train?try_number=3", "Clear the task train"):
        assert part in text and part in page
    assert "max-width:720px" in page
    assert hrefs(page) and all(link.startswith(f"{run}") for link in hrefs(page))
    assert "127.0.0.1:38123" not in text + page  # not the task instance's own log_url


def test_a_quarantined_day_emails_to_re_land_it_before_clearing(tmp_path, monkeypatch):
    settings = linked_settings(tmp_path)
    error = RuntimeError(
        "ds=2025-01-08 was quarantined at 2025-01-09T02:00:05 (reason: 1 blocking failure(s)); nothing for it is "
        "in landing/ or curated/."
    )
    with MailSink(settings.mail_dir) as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(sink.port))
        task_failure_notifier(settings, "failed")(_context(error))
        [path] = sink.messages()
    text, _ = parts(read_message(path))
    advice = text.split("What to do:", 1)[1]
    assert f"re-land them into {settings.landing_dir / 'ds=2025-01-08'}/" in advice
    assert advice.index("re-land") < advice.index("clear the task train")


def test_a_callback_that_cannot_send_logs_and_does_not_raise(tmp_path, monkeypatch, caplog):
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(port))
    notify = task_failure_notifier(settings_for(tmp_path), "up_for_retry")
    with caplog.at_level(logging.ERROR, logger="monitoring.alerts"):
        notify(_context(RuntimeError("flaky")))
    assert notify.__name__ == "email_on_up_for_retry"
    assert "could not send the task up_for_retry email" in caplog.text


def test_only_failures_and_retries_have_a_callback(tmp_path):
    with pytest.raises(ValueError, match="'failed' or 'up_for_retry'"):
        task_failure_notifier(settings_for(tmp_path), "success")
