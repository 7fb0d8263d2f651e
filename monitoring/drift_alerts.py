"""The drift emails, sent: one per drift episode, the optional daily digest, retrain follow-ups.

:func:`send_episode_alert` is what the DAG's alert task calls every monitored day: it
sends only when the day's :class:`~monitoring.policy.Decision` opens an episode
(``send_email``), so an episode gets exactly one email. :func:`send_digest` sends the
daily summary when the policy's ``digest`` is on. :func:`send_drift_followup` is called
by a drift-triggered retraining run once its canary has decided: it tells the same
recipients whether the retrained model was promoted or rejected, and why
(:func:`canary_followup` reads both from the canary's result). The messages are composed
by :mod:`monitoring.alert_messages`, their links built by :mod:`monitoring.alert_links`
(the Airflow run comes from the task context), and delivered by
:func:`monitoring.alerts.deliver`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphrec.handoff import Handoff
from graphrec.settings import Settings
from monitoring.alert_links import context_run, dag_run_url
from monitoring.alert_messages import build_digest, build_drift_followup, build_episode_alert
from monitoring.alerts import deliver
from monitoring.policy import Decision
from monitoring.signal_values import Signal

if TYPE_CHECKING:  # typing only: the canary's result pulls the training metrics
    from serving.canary_result import CanaryResult

log = logging.getLogger(__name__)

QUALITY_SIGNAL = "quality_proxy"


@dataclasses.dataclass(frozen=True)
class SentMail(Handoff):
    """One email handed to the SMTP server.

    Args:
        recipients (list[str]): the envelope recipients (``settings.alerts.recipients``).
        subject (str): its subject.
        message_id (str): its ``Message-ID``.
        episode_id (str | None): the drift episode it is about (episode and follow-up emails).
    """

    recipients: list[str]
    subject: str
    message_id: str
    episode_id: str | None = None


def send_episode_alert(
    decision: Decision,
    signals: Iterable[Signal],
    settings: Settings,
    *,
    report_path: str | Path,
    dag_run_note: str = "",
    context: Mapping[str, Any] | None = None,
    retrain_run_id: str | None = None,
) -> SentMail | None:
    """Send the episode email if the decision asks for it (``send_email``), else nothing.

    A task may call it every day: only the day an episode opens sends, once.

    Args:
        decision, signals, settings, report_path, dag_run_note: as for
            :func:`~monitoring.alert_messages.build_episode_alert`.
        context (dict | None): the Airflow task context; its DAG run is linked.
        retrain_run_id (str | None): the run id of the retraining run the decision
            triggers (the DAG fixes it: ``TriggerDagRunOperator(trigger_run_id=...)``);
            linked as a run of the context's DAG.

    Returns:
        SentMail | None: what was sent, with the episode's id, or ``None`` when the
        decision sends no email.

    Raises:
        airflow.exceptions.AirflowException: unknown connection; ``OSError`` when no
            server answers; ``smtplib.SMTPException`` when it refuses the message.
    """
    if not decision.send_email:
        log.info("no drift email for %s (status %s)", decision.ds, decision.status)
        return None
    run = context_run(context)
    retrain_url = dag_run_url(settings, run[0], retrain_run_id) if run and retrain_run_id else None
    message = build_episode_alert(
        decision,
        signals,
        settings,
        report_path=report_path,
        dag_run_note=dag_run_note,
        run_url=dag_run_url(settings, *run) if run else None,
        retrain_url=retrain_url,
    )
    return dataclasses.replace(_send(message, settings), episode_id=decision.episode_id)


def send_digest(
    decision: Decision,
    signals: Iterable[Signal],
    settings: Settings,
    report_path: str | Path,
    *,
    context: Mapping[str, Any] | None = None,
) -> SentMail:
    """Send the daily digest (the caller checks ``policy.digest``); raises as :func:`send_episode_alert`."""
    run = context_run(context)
    run_url = dag_run_url(settings, *run) if run else None
    return _send(build_digest(decision, signals, settings, report_path, run_url=run_url), settings)


def send_drift_followup(
    settings: Settings,
    *,
    ds: str | dt.date,
    episode: str | None,
    verdict: str,
    reasons: list[str],
    run_url: str | None = None,
    report_path: str | Path | None = None,
    context: Mapping[str, Any] | None = None,
    quality_days: int = 7,
) -> SentMail:
    """Tell the drift email's recipients what came of the retrain it announced.

    Subject: ``[graphrec] drift retrain for 2025-01-08: rejected v7: no_regression (…)``
    or ``… promoted v9 (…)``, marked ``X-Graphrec-Kind: drift-followup``.

    Args:
        settings (Settings): recipients, SMTP connection, the links' base URLs.
        ds (str | date): the drift day (the retraining run's ``ds``).
        episode (str | None): the episode that triggered the retrain (``drift_episode``).
        verdict (str): the canary's one-line verdict (:func:`canary_followup`).
        reasons (list[str]): why (:func:`canary_followup`).
        run_url (str | None): the retraining run's Airflow page; default: the DAG run
            of ``context``.
        report_path (str | Path | None): the drift report that caused the retrain
            (``drift_report``).
        context (dict | None): the Airflow task context.
        quality_days (int): show the served-quality proxy of this many last monitored
            days up to ``ds`` (0: none). Default: ``7``.

    Returns:
        SentMail: what was sent, with the episode's id.

    Raises:
        as :func:`send_episode_alert`.
    """
    day = ds if isinstance(ds, dt.date) else dt.date.fromisoformat(str(ds).removeprefix("ds=")[:10])
    if run_url is None and (run := context_run(context)):
        run_url = dag_run_url(settings, *run)
    message = build_drift_followup(
        settings,
        ds=day,
        episode=episode or None,
        verdict=verdict,
        reasons=reasons,
        run_url=run_url,
        report_path=report_path,
        quality=served_quality(settings, day, quality_days) if quality_days > 0 else [],
    )
    return dataclasses.replace(_send(message, settings), episode_id=episode or None)


def canary_followup(result: CanaryResult) -> tuple[str, list[str]]:
    """``(verdict, reasons)`` of a canary result for :func:`send_drift_followup`.

    The reasons are the failed checks (and the ranker pair's failures) with their numbers;
    when nothing failed, the passed checks, which carry the deltas behind a promotion.
    """
    failed = [f"{c.name}: {c.detail}" for c in result.checks.values() if c.failed]
    if result.ranker is not None and not result.ranker.passed:
        failed += [f"ranker pair: {failure}" for failure in result.ranker.failures]
    if result.forced:
        failed.append("promoted by force_publish although the gate failed")
    passed = [f"{c.name}: {c.detail}" for c in result.checks.values() if c.status == "pass"]
    return result.verdict(), failed or passed or [result.reason]


def served_quality(settings: Settings, ds: dt.date, days: int = 7) -> list[tuple[dt.date, float | None]]:
    """The ``quality_proxy`` of the last ``days`` monitored days up to ``ds``, oldest first."""
    from graphrec.lake import list_partitions  # the monitor's files: only the follow-up reads them
    from monitoring.monitor import day_dir, drift_dir
    from monitoring.report_files import SIGNALS_FILE, read_signals

    trend = []
    for day in [d for d in list_partitions(drift_dir(settings)) if d <= ds][-days:]:
        try:
            signal = read_signals(day_dir(settings, day) / SIGNALS_FILE).get(QUALITY_SIGNAL)
        except (OSError, ValueError, TypeError, KeyError):  # a day without readable signals: not shown
            continue
        trend.append((day, None if signal is None else signal.value))
    return trend


def _send(message: EmailMessage, settings: Settings) -> SentMail:
    deliver(message, settings)
    return SentMail(
        recipients=list(settings.alerts.recipients),
        subject=str(message["Subject"]),
        message_id=str(message["Message-ID"]),
    )
