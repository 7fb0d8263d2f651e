"""Alert emails, composed: one per drift episode, an optional daily digest, task failures.

:func:`build_episode_alert` turns a :class:`monitoring.policy.Decision` (the day an
episode opens) into an email: subject with severity, main signal and first day, a table
of the fired and watched signals (before → after, effect vs threshold), the decision's
explanation, the HTML report's ``file://`` URL and what happens next (retraining and its
reason, or the cooldown). :func:`build_digest` is the short daily summary, sent only when
the policy's ``digest`` is on. Both return a ``multipart/alternative`` message (plain
text and HTML with the same content). :func:`build_task_alert` is the email of a failed
or retried Airflow task, marked ``X-Graphrec-Kind: task-failed`` or ``task-retry``
(drift emails are ``drift``).

Everything here is pure: no SMTP, no Airflow. Sending is :mod:`monitoring.alerts` (the
SMTP edge and the task callbacks) and :mod:`monitoring.drift_alerts` (the drift emails).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from graphrec.settings import Settings
from monitoring.signal_values import Signal
from monitoring.verdicts import Verdict

if TYPE_CHECKING:  # typing only: monitoring.policy pulls pandas, and the DAG imports this module at parse time
    from monitoring.policy import Decision

SUBJECT_PREFIX = "[graphrec]"
DS_HEADER = "X-Graphrec-Ds"
EPISODE_HEADER = "X-Graphrec-Episode"
KIND_HEADER = "X-Graphrec-Kind"

_COLUMNS = ("signal", "group", "kind", "metric", "before → after", "effect vs threshold", "status", "samples")


def report_url(report_path: str | Path) -> str:
    """A ``file://`` URL for a local report path (URLs are returned unchanged).

    Unlike ``Path.as_uri`` it keeps ``=`` readable (``ds=2025-01-22``, not ``ds%3D...``).
    """
    text = str(report_path)
    if "://" in text:
        return text
    return "file://" + quote(Path(text).expanduser().resolve().as_posix(), safe="/=:@-._~+,")


def episode_subject(decision: Decision) -> str:
    """``[graphrec] CRITICAL drift: event_type_missing since 2025-01-22``."""
    since = decision.episode_since or decision.ds
    severity = (decision.severity or "warning").upper()
    return f"{SUBJECT_PREFIX} {severity} drift: {decision.main_signal or 'no fired signal'} since {since}"


def build_episode_alert(
    decision: Decision,
    signals: Iterable[Signal],
    settings: Settings,
    *,
    report_path: str | Path,
    dag_run_note: str = "",
) -> EmailMessage:
    """Compose the one email of a drift episode (pure, no I/O).

    Args:
        decision (Decision): the decision of the day the episode opened.
        signals (Iterable[Signal]): the day's signals; their ``detail`` and sample sizes
            are shown.
        settings (Settings): provides ``alert_sender`` and ``alert_recipients``.
        report_path (str | Path): the day's HTML report (shown as a ``file://`` URL).
        dag_run_note (str): optional extra line for "What happens next", e.g. the id of
            the triggered retraining run. Default: ``""``.

    Returns:
        email.message.EmailMessage: ``multipart/alternative`` (plain text, HTML) with
        ``From``, ``To``, ``Subject`` (see :func:`episode_subject`), ``Date``,
        ``Message-ID``, ``X-Graphrec-Ds`` and ``X-Graphrec-Episode``.
    """
    rows = _rows(decision, signals)
    url = report_url(report_path)
    opening = [
        f"graphrec detected drift on {decision.ds}: episode {decision.episode_id} "
        f"({decision.severity or 'warning'}) since {decision.episode_since or decision.ds}.",
        f"Main signal: {_main_line(decision)}.",
    ]
    next_steps = _next_steps(decision, dag_run_note) + [
        f"This is the only email for {decision.episode_id}: the episode stays open while signals keep",
        "drifting and closes after a few quiet days; follow it in the daily reports and the run log.",
    ]
    sections = [("What happens next", next_steps), ("How the policy read each signal", decision.explanation)]
    return _message(episode_subject(decision), opening, rows, url, sections, decision, settings)


def build_digest(
    decision: Decision,
    signals: Iterable[Signal],
    settings: Settings,
    report_path: str | Path,
) -> EmailMessage:
    """Compose the daily drift digest (only sent when the policy's ``digest`` is true).

    Subject: ``[graphrec] drift digest 2025-01-23: ongoing (drift-2025-01-22)``. The body
    has the decision's summary, the fired and watched signals, the signals skipped for
    sample size, the report URL and the explanation.
    """
    episode = f" ({decision.episode_id})" if decision.episode_id else ""
    subject = f"{SUBJECT_PREFIX} drift digest {decision.ds}: {decision.status}{episode}"
    skipped = ", ".join(decision.insufficient) or "none"
    opening = [decision.summary, f"Skipped for too few samples: {skipped}."]
    sections = [("How the policy read each signal", decision.explanation)]
    return _message(subject, opening, _rows(decision, signals), report_url(report_path), sections, decision, settings)


def build_task_alert(context: Mapping[str, Any], event: str, settings: Settings) -> EmailMessage:
    """The email of a failed (``event="failed"``) or retried (``"up_for_retry"``) task (pure)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", None) or getattr(context.get("dag_run"), "run_id", "?")
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(getattr(ti, "task", None), "retries", None)
    error = context.get("exception")
    log_url = getattr(ti, "log_url", None)
    retry = event == "up_for_retry"
    what = "will be retried" if retry else "failed"
    subject = f"{SUBJECT_PREFIX} task {what}: {dag_id}.{task_id} ({run_id})"
    tries = f"try {try_number}" + (f" of {max_tries + 1}" if isinstance(max_tries, int) else "")
    lines = [
        f"Task {task_id} of DAG {dag_id} {what} ({tries}).",
        f"Run: {run_id}",
        f"Error: {type(error).__name__}: {str(error)[:2000]}" if error is not None else "Error: unknown",
        "",
        f"Log: {log_url}" if log_url else "Log: in the Airflow UI, on the task instance's Logs tab",
        "Next: "
        + (
            "Airflow retries it after the retry delay; no action needed unless the retries fail too."
            if retry
            else "fix the cause, then clear the task in the Airflow UI to run it again."
        ),
    ]
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.alerts.sender
    message["To"] = ", ".join(settings.alerts.recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="graphrec")
    message[KIND_HEADER] = "task-retry" if retry else "task-failed"
    message.set_content("\n".join(lines))
    return message


def _main_line(decision: Decision) -> str:
    verdict = decision.verdict(decision.main_signal) if decision.main_signal else None
    if verdict is None:
        return "none"
    times = f", {verdict.ratio:.1f}x the threshold" if verdict.ratio not in (None, float("inf")) else ""
    return f"{verdict.name} ({_effect(verdict)}{times}, {verdict.kind})"


def _next_steps(decision: Decision, dag_run_note: str) -> list[str]:
    if decision.trigger_retrain:
        lines = [
            f"Retraining was triggered: {decision.retrain_reason}.",
            "The canary gate then compares the new model with the serving champion on a fresh",
            "holdout: the champion is replaced only if the challenger is at least as good.",
        ]
    elif decision.cooldown_until is not None:
        lines = [
            f"Retraining is held back by the cooldown after the last triggered retrain until "
            f"{decision.cooldown_until};",
            "if signals of this episode still fire from that day, retraining is triggered then.",
        ]
    else:
        lines = ["No retraining is triggered by this decision."]
    if dag_run_note:
        lines.append(dag_run_note.strip())
    return lines


def _rows(decision: Decision, signals: Iterable[Signal]) -> list[dict[str, str]]:
    by_name = {str(s.name): s for s in signals}
    rows = []
    for name in [*decision.fired, *decision.watch]:
        verdict = decision.verdict(name)
        if verdict is None:
            continue
        signal = by_name.get(name)
        status = "fired" if verdict.state == "fired" else f"watch ({verdict.streak} day{'s' * (verdict.streak != 1)})"
        samples = f"{signal.n_current} / {signal.n_reference}" if signal else ""
        rows.append(
            {
                "signal": name,
                "group": verdict.group or "",
                "kind": verdict.kind or "",
                "metric": verdict.metric or (signal.metric if signal else "") or "",
                "before → after": f"{_show(verdict.before)} → {_show(verdict.after)}",
                "effect vs threshold": _effect(verdict),
                "status": status,
                "samples": samples,
                "detail": str(signal.detail or "") if signal else "",
            }
        )
    return rows


def _effect(verdict: Verdict) -> str:
    op = ">=" if verdict.direction == "above" else "<="
    return f"{_show(verdict.value)} {op} {_show(verdict.threshold)}"


def _show(value: Any, limit: int = 60) -> str:
    """Compact text for a signal's before/after (numbers, shares, small dicts or lists)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)) or hasattr(value, "__float__") and not isinstance(value, str):
        number = float(value)
        if number.is_integer() and abs(number) < 1e6:
            return str(int(number))
        return f"{number:.3g}" if abs(number) >= 1e-3 else f"{number:.2e}"
    if isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain_table(rows: list[dict[str, str]]) -> list[str]:
    if not rows:
        return ["(none)"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in _COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in _COLUMNS).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in _COLUMNS).rstrip() for r in rows]
    lines += [f"{r['signal']}: {r['detail']}" for r in rows if r["detail"]]
    return lines


def _html_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(c)}</th>" for c in _COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px'>{html.escape(r[c])}</td>" for c in _COLUMNS) + "</tr>"
        for r in rows
    )
    details = "".join(f"<li>{html.escape(r['signal'])}: {html.escape(r['detail'])}</li>" for r in rows if r["detail"])
    return f"<table border='1' style='border-collapse:collapse'><tr>{head}</tr>{body}</table>" + (
        f"<ul>{details}</ul>" if details else ""
    )


def _message(
    subject: str,
    opening: list[str],
    rows: list[dict[str, str]],
    url: str,
    sections: list[tuple[str, list[str]]],
    decision: Decision,
    settings: Settings,
) -> EmailMessage:
    """Plain and HTML renderings of the same content: opening, signal table, report, sections."""
    esc = html.escape
    table_title = "Signals that count (fired), then those on watch"
    plain = [*opening, "", f"{table_title}:", "", *_plain_table(rows), "", f"Report: {url}", ""]
    parts = [
        f"<p>{'<br>'.join(esc(line) for line in opening)}</p>",
        f"<h3>{esc(table_title)}</h3>",
        _html_table(rows),
        f"<p>Report: <a href='{esc(url)}'>{esc(url)}</a></p>",
    ]
    for title, lines in sections:
        plain += [f"{title}:", *(f"  {line}" for line in lines), ""]
        parts.append(f"<h3>{esc(title)}</h3><ul>{''.join(f'<li>{esc(line)}</li>' for line in lines)}</ul>")
    plain.append("-- graphrec monitoring")
    parts.append("<p>-- graphrec monitoring</p>")

    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.alerts.sender
    message["To"] = ", ".join(settings.alerts.recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.alerts.sender.rpartition("@")[2] or None)
    message[DS_HEADER] = decision.ds.isoformat()
    message[KIND_HEADER] = "drift"
    if decision.episode_id:
        message[EPISODE_HEADER] = decision.episode_id
    text = "\n".join(plain) + "\n"
    # 8bit keeps the stored .eml readable (quoted-printable would break long paths).
    message.set_content(text, cte="7bit" if text.isascii() else "8bit")
    message.add_alternative(f"<html><body>{''.join(parts)}</body></html>", subtype="html")
    return message
