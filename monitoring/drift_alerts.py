"""The drift emails, sent: one per drift episode, and the optional daily digest.

:func:`send_episode_alert` is what the DAG's alert task calls every monitored day: it
sends only when the day's :class:`~monitoring.policy.Decision` opens an episode
(``send_email``), so an episode gets exactly one email. :func:`send_digest` sends the
daily summary when the policy's ``digest`` is on. The messages are composed by
:mod:`monitoring.alert_messages` and delivered through Airflow's SMTP notifier by
:func:`monitoring.alerts.deliver`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from graphrec.handoff import Handoff
from graphrec.settings import Settings
from monitoring.alert_messages import build_digest, build_episode_alert
from monitoring.alerts import deliver
from monitoring.policy import Decision
from monitoring.signal_values import Signal

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SentMail(Handoff):
    """One email handed to the SMTP server.

    Args:
        recipients (list[str]): the envelope recipients (``settings.alerts.recipients``).
        subject (str): its subject.
        message_id (str): its ``Message-ID``.
        episode_id (str | None): the drift episode it announces (episode emails only).
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
) -> SentMail | None:
    """Send the episode email if the decision asks for it (``send_email``), else nothing.

    A task may call it every day: only the day an episode opens sends, once.

    Args:
        decision, signals, settings, report_path, dag_run_note: as for
            :func:`~monitoring.alert_messages.build_episode_alert`.
        context (dict | None): the Airflow task context, handed to the notifier.

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
    message = build_episode_alert(decision, signals, settings, report_path=report_path, dag_run_note=dag_run_note)
    return dataclasses.replace(_send(message, settings, context), episode_id=decision.episode_id)


def send_digest(
    decision: Decision,
    signals: Iterable[Signal],
    settings: Settings,
    report_path: str | Path,
    *,
    context: Mapping[str, Any] | None = None,
) -> SentMail:
    """Send the daily digest (the caller checks ``policy.digest``); raises as :func:`send_episode_alert`."""
    return _send(build_digest(decision, signals, settings, report_path), settings, context)


def _send(message: EmailMessage, settings: Settings, context: Mapping[str, Any] | None) -> SentMail:
    deliver(message, settings, context=context)
    return SentMail(
        recipients=list(settings.alerts.recipients),
        subject=str(message["Subject"]),
        message_id=str(message["Message-ID"]),
    )
