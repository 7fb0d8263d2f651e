"""Alert emails, sent: the SMTP edge (:func:`deliver`) and the task failure/retry callbacks.

The messages are composed by :mod:`monitoring.alert_messages` (pure); the drift emails
are sent by :mod:`monitoring.drift_alerts`. Every DAG file imports this module at parse
time (:func:`task_failure_notifier`), so it stays light: no pandas, no Airflow provider
until a message is sent.

Delivery goes through Airflow's SMTP hook
(``airflow.providers.smtp.hooks.smtp.SmtpHook``), so the mail server, port, TLS/SSL and
login come from the Airflow connection ``settings.alerts.smtp_conn_id``, for example::

    AIRFLOW_CONN_SMTP_DEFAULT='{"conn_type": "smtp", "host": "127.0.0.1", "port": 8025,
                                "extra": {"disable_tls": true, "disable_ssl": true}}'

for the loopback sink of :mod:`monitoring.mailsink`, or a real relay with login,
password and STARTTLS in the services deployment. The hook opens and authenticates the
session; the message is then sent whole, as composed: ``multipart/alternative`` with its
plain-text and HTML parts and its ``X-Graphrec-*`` headers. (Airflow's ``SmtpNotifier``
and ``SmtpHook.send_email_smtp`` would rebuild it as a single ``text/html`` part, and
the notifier renders every field as a Jinja template, which mangles report text
containing ``{{`` or ``{#``.)

:func:`task_failure_notifier` makes the ``on_failure_callback`` / ``on_retry_callback``
every task of the DAGs carries: an email naming the DAG, task, run, try and error, with
absolute links to the task's log and the DAG run in the Airflow UI and the advice that
fits the failure (:func:`~monitoring.alert_messages.build_task_alert`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from graphrec.settings import Settings
from monitoring.alert_messages import build_task_alert

log = logging.getLogger(__name__)


def deliver(message: EmailMessage, settings: Settings) -> None:
    """Send a composed message, as it is, to ``settings.alerts.recipients`` through the SMTP
    server of the Airflow connection ``settings.alerts.smtp_conn_id``.

    Raises:
        airflow.exceptions.AirflowException: unknown connection; ``OSError`` when no
            server answers; ``smtplib.SMTPException`` when it refuses the message.
    """
    # Airflow's SMTP provider is imported here: the DAG file imports this module at parse
    # time (task_failure_notifier), and only sending needs the provider.
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    recipients = list(settings.alerts.recipients)
    with SmtpHook(smtp_conn_id=settings.alerts.smtp_conn_id) as hook:
        # The hook connects, starts TLS and logs in from the connection; its client is the
        # open smtplib session (the hook has no public accessor for it).
        client = hook._smtp_client
        if client is None:
            raise RuntimeError(f"SMTP connection {settings.alerts.smtp_conn_id!r} did not open a session")
        client.ehlo_or_helo_if_needed()
        options = ["BODY=8BITMIME"] if client.has_extn("8bitmime") else []
        client.send_message(message, from_addr=settings.alerts.sender, to_addrs=recipients, mail_options=options)
    log.info("sent %s to %s", message["Subject"], recipients)


def task_failure_notifier(settings: Settings, event: str = "failed"):
    """An Airflow task callback that emails :func:`build_task_alert` for ``event``.

    A failure to send is logged, never raised: the task's own outcome stays what it was.
    """
    if event not in ("failed", "up_for_retry"):
        raise ValueError(f"event must be 'failed' or 'up_for_retry', not {event!r}")

    def notify(context: Mapping[str, Any]) -> None:
        try:
            deliver(build_task_alert(context, event, settings), settings)
        except Exception:  # noqa: BLE001 - an alert must not change the task's outcome
            log.exception("could not send the task %s email", event)

    notify.__name__ = f"email_on_{event}"
    return notify
