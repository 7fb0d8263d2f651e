"""Alert emails, composed: drift episodes, the daily digest, retrain follow-ups, task failures.

:func:`build_episode_alert` turns a :class:`monitoring.policy.Decision` (the day an
episode opens) into an email: subject with severity, main signal and first day, a table
of the fired and watched signals (before → after, effect vs threshold), links to the
day's report and the Airflow run (and the retrain it triggered, when known), what happens
next and the decision's explanation. :func:`build_digest` is the short daily summary,
sent only when the policy's ``digest`` is on. :func:`build_drift_followup` tells the same
recipients what came of a drift-triggered retrain (promoted or rejected, and why).
:func:`build_task_alert` is the email of a failed or retried Airflow task, with the
advice that fits the failure. Emails are marked ``X-Graphrec-Kind``: ``drift``,
``drift-followup``, ``task-failed`` or ``task-retry``.

Every message is ``multipart/alternative``: a plain-text part and an HTML part with the
same content, the HTML in a column at most 720 px wide with wrapped text, logs in a
scrollable block (:mod:`monitoring.alert_layout`), and absolute links
(:mod:`monitoring.alert_links`).

Everything here is pure: no SMTP, no Airflow. Sending is :mod:`monitoring.alerts` (the
SMTP edge and the task callbacks) and :mod:`monitoring.drift_alerts` (the drift emails).
"""

from __future__ import annotations

import datetime as dt
import re
import traceback
from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphrec.settings import Settings
from monitoring.alert_layout import KIND_HEADER as KIND_HEADER  # re-exported: app.status reads it here
from monitoring.alert_layout import Block, compose, heading, items, links, paragraph, preformatted, table
from monitoring.alert_links import dag_run_url, report_url, task_url
from monitoring.signal_values import Signal
from monitoring.verdicts import Verdict

if TYPE_CHECKING:  # typing only: monitoring.policy pulls pandas, and the DAG imports this module at parse time
    from monitoring.policy import Decision

SUBJECT_PREFIX = "[graphrec]"
DS_HEADER = "X-Graphrec-Ds"
EPISODE_HEADER = "X-Graphrec-Episode"

_COLUMNS = ("signal", "group", "kind", "metric", "before → after", "effect vs threshold", "status", "samples")
_TRACEBACK_LINES = 60  # the end of a traceback is where the cause is
_SUBJECT_VERDICT_CHARS = 90


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
    run_url: str | None = None,
    retrain_url: str | None = None,
) -> EmailMessage:
    """Compose the one email of a drift episode (pure, no I/O).

    Args:
        decision (Decision): the decision of the day the episode opened.
        signals (Iterable[Signal]): the day's signals; their ``detail`` and sample sizes
            are shown.
        settings (Settings): sender, recipients and the links' base URLs.
        report_path (str | Path): the day's HTML report (linked through
            :func:`~monitoring.alert_links.report_url`).
        dag_run_note (str): optional extra line for "What happens next". Default: ``""``.
        run_url (str | None): the Airflow page of the run that monitored the day.
        retrain_url (str | None): the Airflow page of the retraining run it triggered.

    Returns:
        email.message.EmailMessage: ``multipart/alternative`` (plain text, HTML) with
        ``From``, ``To``, ``Subject`` (see :func:`episode_subject`), ``Date``,
        ``Message-ID``, ``X-Graphrec-Kind: drift``, ``X-Graphrec-Ds`` and ``X-Graphrec-Episode``.
    """
    rows = _rows(decision, signals)
    opening = [
        f"graphrec detected drift on {decision.ds}: episode {decision.episode_id} "
        f"({decision.severity or 'warning'}) since {decision.episode_since or decision.ds}.",
        f"Main signal: {_main_line(decision)}.",
    ]
    next_steps = _next_steps(decision, dag_run_note) + [
        f"This is the only email for {decision.episode_id}: the episode stays open while signals keep "
        "drifting and closes after a few quiet days; follow it in the daily reports and the run log.",
    ]
    pairs = [
        ("Report", report_url(settings, report_path)),
        ("Airflow run", run_url),
        ("Retraining run", retrain_url),
    ]
    blocks = [
        paragraph(opening),
        *_signal_table(rows),
        links(pairs),
        heading("What happens next"),
        items(next_steps),
        heading("How the policy read each signal"),
        items(decision.explanation),
    ]
    return compose(episode_subject(decision), blocks, settings, kind="drift", headers=_drift_headers(decision))


def build_digest(
    decision: Decision,
    signals: Iterable[Signal],
    settings: Settings,
    report_path: str | Path,
    *,
    run_url: str | None = None,
) -> EmailMessage:
    """Compose the daily drift digest (only sent when the policy's ``digest`` is true).

    Subject: ``[graphrec] drift digest 2025-01-23: ongoing (drift-2025-01-22)``. The body
    has the decision's summary, the fired and watched signals, the signals skipped for
    sample size, the links (report, Airflow run) and the explanation.
    """
    episode = f" ({decision.episode_id})" if decision.episode_id else ""
    subject = f"{SUBJECT_PREFIX} drift digest {decision.ds}: {decision.status}{episode}"
    skipped = ", ".join(decision.insufficient) or "none"
    blocks = [
        paragraph([decision.summary, f"Skipped for too few samples: {skipped}."]),
        *_signal_table(_rows(decision, signals)),
        links([("Report", report_url(settings, report_path)), ("Airflow run", run_url)]),
        heading("How the policy read each signal"),
        items(decision.explanation),
    ]
    return compose(subject, blocks, settings, kind="drift", headers=_drift_headers(decision))


def build_drift_followup(
    settings: Settings,
    *,
    ds: dt.date,
    episode: str | None,
    verdict: str,
    reasons: Sequence[str],
    run_url: str | None = None,
    report_path: str | Path | None = None,
    quality: Sequence[tuple[dt.date, float | None]] = (),
) -> EmailMessage:
    """Compose the follow-up of a drift-triggered retrain: what the canary decided and why.

    Subject: ``[graphrec] drift retrain for 2025-01-08: rejected v7: no_regression (…)``.

    Args:
        settings (Settings): sender, recipients and the links' base URLs.
        ds (date): the drift day whose retrain this was.
        episode (str | None): the drift episode that triggered it (``drift-2025-01-08``).
        verdict (str): the canary's verdict in one line (``promoted v9 (…)`` or
            ``rejected v7: no_regression (…)``, :meth:`serving.canary_result.CanaryResult.verdict`).
        reasons (Sequence[str]): why: the failed checks, or the deltas behind a promotion.
        run_url (str | None): the Airflow page of the retraining run.
        report_path (str | Path | None): the drift report that caused it.
        quality (Sequence[tuple[date, float | None]]): the served-quality proxy of the
            last monitored days, oldest first (empty: not shown).

    Returns:
        email.message.EmailMessage: ``multipart/alternative`` marked
        ``X-Graphrec-Kind: drift-followup``, with ``X-Graphrec-Ds`` and ``X-Graphrec-Episode``.
    """
    outcome = verdict.strip().lower()
    promoted = outcome.startswith(("promoted", "forced: promoted"))
    short = verdict if len(verdict) <= _SUBJECT_VERDICT_CHARS else verdict[: _SUBJECT_VERDICT_CHARS - 1] + "…"
    subject = f"{SUBJECT_PREFIX} drift retrain for {ds}: {short}"
    cause = f"drift episode {episode}" if episode else "drift"
    if promoted:
        meaning = "The retrained model passed the canary gate and is the champion now; the next nightly runs serve it."
    elif outcome.startswith("rejected"):
        meaning = (
            "The canary gate rejected the retrained model: the champion keeps serving. This episode triggers "
            "another retrain only if a new signal fires in it; to retrain now, trigger the DAG by hand."
        )
    else:
        meaning = "Nothing was promoted."
    blocks = [
        paragraph([f"The retraining run triggered by {cause} on {ds} finished: {verdict}.", meaning]),
        heading("Why"),
        items(list(reasons) or ["(the canary gave no detail)"]),
        links(
            [("Retraining run", run_url), ("Drift report", report_url(settings, report_path) if report_path else None)]
        ),
    ]
    if quality:
        blocks += [
            heading("Served quality (quality_proxy: recall proxy / offline Recall@20), last monitored days"),
            items([f"{day}: {_show(value)}" for day, value in quality]),
        ]
    headers = {DS_HEADER: ds.isoformat(), **({EPISODE_HEADER: episode} if episode else {})}
    return compose(subject, blocks, settings, kind="drift-followup", headers=headers)


def build_task_alert(context: Mapping[str, Any], event: str, settings: Settings) -> EmailMessage:
    """The email of a failed (``event="failed"``) or retried (``"up_for_retry"``) task (pure).

    It names the DAG, task, run, try and error, links the task instance (its log) and the
    DAG run in the Airflow UI, and says what to do: a retry needs nothing; a day that
    validation quarantined (the error says ``quarantined``) must be fixed and re-landed
    into ``landing/ds=YYYY-MM-DD/`` before the task is cleared, since clearing alone
    reprocesses nothing; any other failure: read the log, fix, then clear. The end of the
    traceback comes last, in a scrollable block.
    """
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None) or "?"
    task_id = getattr(ti, "task_id", None) or "?"
    run_id = getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None) or "?"
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(getattr(ti, "task", None), "retries", None)
    error = context.get("exception")
    retry = event == "up_for_retry"
    what = "will be retried" if retry else "failed"
    subject = f"{SUBJECT_PREFIX} task {what}: {dag_id}.{task_id} ({run_id})"
    tries = f"try {try_number}" + (f" of {max_tries + 1}" if isinstance(max_tries, int) else "")
    error_line = f"{type(error).__name__}: {str(error)[:2000]}" if error is not None else "unknown"
    log_link = task_url(
        settings,
        dag_id,
        run_id,
        task_id,
        map_index=getattr(ti, "map_index", None),
        try_number=try_number if isinstance(try_number, int) else None,
    )
    run_link = dag_run_url(settings, dag_id, run_id)
    blocks = [
        paragraph([f"Task {task_id} of DAG {dag_id} {what} ({tries}).", f"Run: {run_id}"]),
        paragraph([f"Error: {error_line}"]),
        links([("Task log", log_link), ("DAG run", run_link)]),
        heading("What to do"),
        items(_task_advice(error, context, settings, task_id, log_link, retry), ordered=not retry),
    ]
    if isinstance(error, BaseException):
        lines = "".join(traceback.format_exception(error)).rstrip().splitlines()
        blocks += [heading("Traceback (last lines)"), preformatted("\n".join(lines[-_TRACEBACK_LINES:]))]
    return compose(subject, blocks, settings, kind="task-retry" if retry else "task-failed")


def _task_advice(
    error: BaseException | None,
    context: Mapping[str, Any],
    settings: Settings,
    task_id: str,
    log_link: str,
    retry: bool,
) -> list[str]:
    if retry:
        return ["Airflow retries it after the retry delay; no action needed unless the retries fail too."]
    message = str(error or "")
    if "quarantined" in message.lower():
        found = re.search(r"ds=(\d{4}-\d{2}-\d{2})", message)
        params = context.get("params") or {}
        day = found.group(1) if found else (params.get("ds") or context.get("ds") or "YYYY-MM-DD")
        landing = settings.landing_dir / f"ds={day}"  # graphrec.lake's partition layout (no pandas here)
        return [
            f"Validation quarantined the delivery of {day}: nothing of that day is in landing/ or curated/, "
            "so clearing the task alone reprocesses nothing.",
            f"See why and where the files are: `graphrec quarantine show {day}`.",
            f"Fix the files and re-land them into {landing}/ (or re-run the load that delivered them).",
            f"Then clear the task {task_id} with its downstream tasks in the Airflow UI: {log_link}",
        ]
    return [
        f"Read the task log: {log_link}",
        "Fix the cause.",
        f"Clear the task {task_id} with its downstream tasks in the Airflow UI to run it again.",
    ]


def _drift_headers(decision: Decision) -> dict[str, str]:
    headers = {DS_HEADER: decision.ds.isoformat()}
    if decision.episode_id:
        headers[EPISODE_HEADER] = decision.episode_id
    return headers


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
            "The canary gate then compares the new model with the serving champion on a fresh holdout: "
            "the champion is replaced only if the challenger is at least as good. A follow-up email says which.",
        ]
    elif decision.cooldown_until is not None:
        lines = [
            "Retraining is held back by the cooldown after the last triggered retrain until "
            f"{decision.cooldown_until}; if signals of this episode still fire from that day, retraining is "
            "triggered then.",
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


def _signal_table(rows: list[dict[str, str]]) -> list[Block]:
    """The fired then watched signals, then each one's detail line."""
    blocks = [heading("Signals that count (fired), then those on watch"), table(_COLUMNS, rows)]
    details = [f"{r['signal']}: {r['detail']}" for r in rows if r["detail"]]
    return blocks + ([items(details)] if details else [])
