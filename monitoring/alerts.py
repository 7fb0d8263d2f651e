"""Alert emails, sent: the SMTP edge (:func:`deliver`) and the task failure/retry callbacks.

The messages are composed by :mod:`monitoring.alert_messages` (pure); the drift emails
are sent by :mod:`monitoring.drift_alerts`. Every DAG file imports this module at parse
time (:func:`task_failure_notifier`), so it stays light: no pandas, no Airflow provider
until a message is sent.

Delivery goes through Airflow's SMTP notifier
(``airflow.providers.smtp.notifications.smtp.SmtpNotifier``), so the mail server, port,
TLS/SSL and login come from the Airflow connection ``settings.alerts.smtp_conn_id``, for example::

    AIRFLOW_CONN_SMTP_DEFAULT='{"conn_type": "smtp", "host": "127.0.0.1", "port": 8025,
                                "extra": {"disable_tls": true, "disable_ssl": true}}'

for the loopback sink of :mod:`monitoring.mailsink`, or a real relay with login,
password and STARTTLS in the services deployment. Two things about the notifier (provider
3.2.0, measured): calling it (``notifier(context)``) renders every field as a Jinja
template first, which would mangle report text containing ``{{`` or ``{#``, so
:func:`deliver` calls ``notifier.notify(context)``, which sends the given subject and body
as they are and needs no Airflow context (the task passes its context; tests pass none);
and the hook it uses sends one ``text/html`` part (``multipart/mixed``), so recipients get
the HTML version of the message, whose table carries the same content as the plain text.

:func:`task_failure_notifier` makes the ``on_failure_callback`` / ``on_retry_callback``
every task of the DAGs carries: an email naming the DAG, task, run, try and error, with
the link to the task's log in the Airflow UI.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from graphrec.settings import Settings
from monitoring.alert_messages import DS_HEADER, EPISODE_HEADER, KIND_HEADER, build_task_alert

log = logging.getLogger(__name__)


def deliver(message: EmailMessage, settings: Settings, *, context: Mapping[str, Any] | None = None) -> None:
    """Send a built message through Airflow's ``SmtpNotifier`` (its HTML part, headers kept)
    to ``settings.alerts.recipients``.

    See the module docstring for why ``notify`` is called rather than the notifier itself.

    Raises:
        airflow.exceptions.AirflowException: unknown connection; ``OSError`` when no
            server answers; ``smtplib.SMTPException`` when it refuses the message.
    """
    # Airflow's SMTP provider is imported here: the DAG file imports this module at parse
    # time (task_failure_notifier), and only sending needs the provider.
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    body = message.get_body(("html", "plain"))
    if body is None:
        raise ValueError(f"message {message['Subject']!r} has no text or HTML body")
    content = body.get_content()
    if body.get_content_type() == "text/plain":
        content = f"<pre>{html.escape(content)}</pre>"
    headers = {
        name: str(message[name]) for name in (DS_HEADER, EPISODE_HEADER, KIND_HEADER, "Message-ID") if message[name]
    }
    recipients = list(settings.alerts.recipients)
    notifier = SmtpNotifier(
        to=recipients,
        from_email=settings.alerts.sender,
        subject=str(message["Subject"]),
        html_content=content,
        smtp_conn_id=settings.alerts.smtp_conn_id,
        custom_headers=headers,
    )
    notifier.notify(context if context is not None else {})  # type: ignore[arg-type]  # any mapping does
    log.info("sent %s to %s", message["Subject"], recipients)


def task_failure_notifier(settings: Settings, event: str = "failed"):
    """An Airflow task callback that emails :func:`build_task_alert` for ``event``.

    A failure to send is logged, never raised: the task's own outcome stays what it was.
    """
    if event not in ("failed", "up_for_retry"):
        raise ValueError(f"event must be 'failed' or 'up_for_retry', not {event!r}")

    def notify(context: Mapping[str, Any]) -> None:
        try:
            deliver(build_task_alert(context, event, settings), settings, context=context)
        except Exception:  # noqa: BLE001 - an alert must not change the task's outcome
            log.exception("could not send the task %s email", event)

    notify.__name__ = f"email_on_{event}"
    return notify
