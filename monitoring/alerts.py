"""The drift alert email: what drifted, where the report is, what happens next.

:func:`build_drift_alert` turns the result of :func:`monitoring.drift.check_drift` into a
plain-text :class:`email.message.EmailMessage` (pure, no I/O). :func:`send_drift_alert`
delivers it through Airflow's SMTP provider, so the mail server, port, TLS/SSL and login
come from an Airflow connection (``settings.smtp_conn_id``), for example::

    AIRFLOW_CONN_SMTP_DEFAULT='{"conn_type": "smtp", "host": "127.0.0.1", "port": 8025,
                                "extra": {"disable_tls": true, "disable_ssl": true}}'

for the loopback sink of :mod:`monitoring.mailsink`, or a real relay with login,
password and STARTTLS in the services deployment.
"""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from graphrec.settings import Settings

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "[graphrec]"
DS_HEADER = "X-Graphrec-Ds"


def _subject(result: dict[str, Any]) -> str:
    total = len(result.get("column_scores") or {})
    n_drifted = len(result.get("drifted_columns") or [])
    ds = result["ds"]
    if result.get("share") is None:
        return f"{SUBJECT_PREFIX} Drift check skipped for {ds}"
    share, threshold = float(result["share"]), float(result["threshold"])
    if result.get("drifted"):
        return (
            f"{SUBJECT_PREFIX} Data drift detected for {ds}: {n_drifted}/{total} columns drifted "
            f"(share {share:.2f} ≥ {threshold:.2f})"
        )
    return (
        f"{SUBJECT_PREFIX} No data drift for {ds}: {n_drifted}/{total} columns drifted "
        f"(share {share:.2f} < {threshold:.2f})"
    )


def _column_lines(result: dict[str, Any], names: list[str]) -> list[str]:
    scores = result.get("column_scores") or {}
    methods = result.get("column_methods") or {}
    thresholds = result.get("column_thresholds") or {}
    width = max((len(n) for n in names), default=0)
    lines = []
    for name in names:
        method = methods.get(name) or "score"
        limit = thresholds.get(name)
        limit_text = f" (drift at >= {float(limit):.2f})" if limit is not None else ""
        lines.append(f"  - {name:<{width}}  {method} {float(scores[name]):.3f}{limit_text}")
    return lines


def _body(result: dict[str, Any], dag_run_note: str) -> str:
    ds = result["ds"]
    ref_days = result.get("reference_days") or []
    window = f"{ref_days[0]} .. {ref_days[-1]}, {len(ref_days)} day(s)" if ref_days else "none"
    if result.get("share") is None:
        return "\n".join(
            [
                f"graphrec could not check {ds} for data drift: {result.get('reason') or 'no report was made'}.",
                "",
                f"Reference window: {window}.",
                f"Summary: {result.get('summary')}",
                "",
            ]
        )

    drifted = list(result.get("drifted_columns") or [])
    others = sorted(set(result.get("column_scores") or {}) - set(drifted))
    verdict = "has drifted" if result.get("drifted") else "has not drifted as a whole"
    lines = [
        f"The interaction data of {ds} {verdict} compared with the curated days before it.",
        f"Reference: {window}.",
        f"Rows: {result.get('rows_current')} current, {result.get('rows_reference')} reference.",
        "",
        f"Share of drifted columns: {float(result['share']):.2f} "
        f"(alert threshold {float(result['threshold']):.2f}).",
        "",
        "Drifted columns (highest score first):",
        *(_column_lines(result, drifted) or ["  (none)"]),
        "",
        "Columns within their usual range:",
        *(_column_lines(result, others) or ["  (none)"]),
        "",
        "Reports:",
        f"  HTML (open in a browser): {result.get('html')}",
        f"  JSON (metrics and tests): {result.get('json')}",
        f"  Summary:                  {result.get('summary')}",
        "",
        "What happens next:",
    ]
    if result.get("drifted"):
        lines += [
            "  A retraining run was triggered so that the model learns from the new data.",
            "  The canary gate then compares the new model with the serving champion on a",
            "  fresh holdout: the champion is replaced only if the challenger is at least",
            "  as good; otherwise it keeps serving and the training run records why.",
        ]
    else:
        lines.append("  Nothing: no retraining is triggered by this check.")
    if dag_run_note:
        lines += ["", f"  {dag_run_note.strip()}"]
    lines += [
        "",
        "What you can do:",
        "  - Open the HTML report and compare the distributions of the drifted",
        "    columns between the reference and the current day.",
        "  - If the change is real (a campaign, new items, a seasonal shift), let",
        "    retraining and the canary gate run their course; watch the next reports.",
        "  - If it looks like an upstream data error, quarantine the partition and",
        "    fix the source before the next nightly run.",
        "",
        "-- graphrec monitoring",
        "",
    ]
    return "\n".join(lines)


def build_drift_alert(result: dict[str, Any], settings: Settings, *, dag_run_note: str = "") -> EmailMessage:
    """Compose the drift alert email for a drift check result.

    Args:
        result (dict): the dictionary returned by :func:`monitoring.drift.check_drift`.
        settings (Settings): provides ``alert_sender`` and ``alert_recipients``.
        dag_run_note (str): optional extra line for "What happens next", for example the
            id of the triggered retraining DAG run. Default: ``""``.

    Returns:
        email.message.EmailMessage: a ``text/plain`` UTF-8 message with ``From``, ``To``,
        ``Subject`` (e.g. ``[graphrec] Data drift detected for 2025-01-08: 3/6 columns
        drifted (share 0.50 ≥ 0.50)``), ``Date``, ``Message-ID`` and an ``X-Graphrec-Ds``
        header carrying the checked day.
    """
    message = EmailMessage()
    message["Subject"] = _subject(result)
    message["From"] = settings.alert_sender
    message["To"] = ", ".join(settings.alert_recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.alert_sender.rpartition("@")[2] or None)
    message[DS_HEADER] = str(result["ds"])
    body = _body(result, dag_run_note)
    # Plain 7/8-bit text keeps the stored .eml readable (long paths would otherwise make
    # the email package pick quoted-printable, which breaks lines and escapes "=").
    message.set_content(body, cte="7bit" if body.isascii() else "8bit")
    return message


def send_drift_alert(result: dict[str, Any], settings: Settings, *, dag_run_note: str = "") -> dict[str, Any]:
    """Send the drift alert through Airflow's SMTP hook.

    The hook (``apache-airflow-providers-smtp``) reads host, port, TLS/SSL switches and
    credentials from the Airflow connection ``settings.smtp_conn_id`` and opens the
    session. Its own ``send_email_smtp`` always wraps the content as HTML, so the plain-text
    message of :func:`build_drift_alert` is handed to the hook's open SMTP client with
    ``send_message`` instead; retries are left to the Airflow task.

    Args:
        result (dict): the dictionary returned by :func:`monitoring.drift.check_drift`.
        settings (Settings): provides the connection id, sender and recipients.
        dag_run_note (str): optional note about the triggered retraining run.

    Returns:
        dict: ``{"recipients": [...], "subject": str, "message_id": str, "refused": [...]}``
        (``refused``: recipients the server rejected while accepting others).

    Raises:
        airflow.exceptions.AirflowException: if the connection is unknown or the server
            cannot be reached; ``smtplib.SMTPException`` if it refuses the message.
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    message = build_drift_alert(result, settings, dag_run_note=dag_run_note)
    recipients = list(settings.alert_recipients)
    with SmtpHook(smtp_conn_id=settings.smtp_conn_id) as hook:
        client = hook._smtp_client  # the logged-in smtplib client of the synchronous hook
        if not isinstance(client, smtplib.SMTP):  # SMTP_SSL is a subclass
            raise RuntimeError(f"SmtpHook gave no synchronous SMTP client: {client!r}")
        refused = client.send_message(message, from_addr=settings.alert_sender, to_addrs=recipients)
    if refused:
        log.warning("drift alert for %s refused for %s", result["ds"], sorted(refused))
    log.info("sent drift alert for %s to %s: %s", result["ds"], recipients, message["Subject"])
    return {
        "recipients": recipients,
        "subject": str(message["Subject"]),
        "message_id": str(message["Message-ID"]),
        "refused": sorted(refused),
    }
