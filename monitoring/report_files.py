"""The files of a day's drift report: Evidently HTML and JSON, ``signals.json``, served lists.

The I/O edge of :mod:`monitoring.signals`: :func:`write_signal_report` writes a
:class:`~monitoring.signals.SignalReport` into the day's directory
(``reports/drift/ds=YYYY-MM-DD/``), :func:`read_signals` reads ``signals.json`` back.

Each HTML report opens with a static header (:class:`ReportHeader`, placed right after
``<body>``, so it shows before Evidently's charts load): the day, the reference window,
the drift policy's decision and why, the policy file and windows applied, and one row per
signal with its value, the policy's threshold and the policy's verdict. The Evidently
charts below it carry no pass/fail marks (:mod:`monitoring.evidently_metrics`): the
header's verdicts are the only ones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import re
from pathlib import Path

from graphrec import lake
from monitoring.policy import Decision
from monitoring.policy_files import DEFAULT_POLICY_PATH
from monitoring.policy_rules import DriftPolicy
from monitoring.signal_values import Signal
from monitoring.signals import SignalReport
from monitoring.verdicts import Verdict, format_number

SIGNALS_FILE = "signals.json"
SERVED_FILE = "served.parquet"  # today's served lists: tomorrow's quality proxy reads them
SNAPSHOT_NAMES = ("data", "users", "model", "quality")
SNAPSHOT_TITLES = {
    "data": "data: the day's interactions against the reference window",
    "users": "users: activity per user-day against the reference window",
    "model": "model: what the serving champion recommends today's users against the reference window's users",
    "quality": "quality: yesterday's served lists against today's interactions",
}
HEADER_ID = "graphrec-drift-header"

# The body tag on a line of its own (Evidently's page template), else the first one.
_BODY_LINE = re.compile(r"^[ \t]*<body\b[^>]*>[ \t]*$", re.IGNORECASE | re.MULTILINE)
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_CELL = "padding:3px 8px;border:1px solid #d0d7de;text-align:left;vertical-align:top"


@dataclasses.dataclass(frozen=True)
class ReportHeader:
    """What heads each HTML report of a monitored day.

    Args:
        decision (Decision): the drift policy's decision of the day (its ``ds`` is the day).
        policy (DriftPolicy): the policy that decided.
        reference_days (list[date]): the curated days compared with.
        window (tuple[date, date] | None): the window they were taken from (the serving
            champion's training window, or the days before ``ds`` without a champion).
        policy_file (Path | None): the user's policy file applied over the packaged
            default (``settings.drift.policy``); ``None``: the packaged default alone.
    """

    decision: Decision
    policy: DriftPolicy
    reference_days: list[dt.date]
    window: tuple[dt.date, dt.date] | None = None
    policy_file: Path | None = None


def write_signal_report(report: SignalReport, out_dir: Path, header: ReportHeader | None = None) -> dict[str, Path]:
    """Write the report's files atomically into ``out_dir``.

    Writes ``<snapshot>.html`` (Evidently's interactive report, opened by ``header``
    when given) and ``<snapshot>.json`` (its metrics) per snapshot, ``signals.json``
    (``{name: Signal.to_dict()}``) and ``served.parquet`` when recommendations were
    served. Everything is rendered in memory before the first file is written, so a
    rendering failure leaves the directory as it was; files of an earlier run that this
    report does not produce are removed.

    Returns:
        dict[str, Path]: ``{file name: path}`` of the files written.
    """
    out_dir = Path(out_dir)
    payloads: dict[str, bytes] = {}
    for name, snapshot in report.snapshots.items():
        page = snapshot.get_html_str(as_iframe=False)
        if header is not None:
            page = with_header(page, render_header(header, name))
        payloads[f"{name}.html"] = page.encode("utf-8")
        payloads[f"{name}.json"] = snapshot.json().encode("utf-8")
    signals = {name: signal.to_dict() for name, signal in report.signals.items()}
    payloads[SIGNALS_FILE] = (json.dumps(signals, indent=2, allow_nan=False) + "\n").encode("utf-8")

    written: dict[str, Path] = {}
    for file, data in payloads.items():
        lake.atomic_write_bytes(out_dir / file, data)
        written[file] = out_dir / file
    if report.served is not None:
        lake.atomic_write_parquet(out_dir / SERVED_FILE, report.served)
        written[SERVED_FILE] = out_dir / SERVED_FILE
    stale = [f"{name}.{ext}" for name in SNAPSHOT_NAMES for ext in ("html", "json")] + [SERVED_FILE]
    for file in stale:
        if file not in written:
            (out_dir / file).unlink(missing_ok=True)
    return written


def read_signals(path: Path) -> dict[str, Signal]:
    """The signals of a ``signals.json`` written by :func:`write_signal_report`."""
    return {name: Signal.from_dict(d) for name, d in json.loads(Path(path).read_text()).items()}


def with_header(page: str, block: str) -> str:
    """``page`` with ``block`` inserted right after its ``<body>`` tag (at the start of a
    page without one)."""
    match = _BODY_LINE.search(page) or _BODY.search(page)
    at = match.end() if match else 0
    return page[:at] + "\n" + block + "\n" + page[at:]


def render_header(header: ReportHeader, snapshot: str = "") -> str:
    """The static HTML block that opens the report of ``snapshot`` (pure)."""
    esc = html.escape
    decision, policy = header.decision, header.policy
    title = SNAPSHOT_TITLES.get(snapshot, snapshot)
    lines = [
        f"<h1 style='font-size:20px;margin:0 0 8px'>graphrec drift report, {esc(str(decision.ds))}"
        + (f" <span style='font-weight:normal'>({esc(title)})</span>" if title else "")
        + "</h1>",
        _line("Day", str(decision.ds)),
        _line("Reference window", _window(header)),
        _line("Decision", f"{decision.status.upper()}: {decision.summary}"),
        "<div><b>Why:</b><ul style='margin:2px 0 6px;padding-left:22px'>"
        + "".join(f"<li>{esc(reason)}</li>" for reason in _why(decision))
        + "</ul></div>",
        _line("Policy", _policy_line(header)),
        _verdict_table(decision, policy),
        "<p style='margin:6px 0 0;color:#59636e'>Below: Evidently's measurements behind these signals. They "
        "carry no pass/fail marks: whether a signal counts is the drift policy's verdict above (kind, days in a "
        "row, sample sizes), not a single threshold.</p>",
    ]
    style = (
        "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:14px;line-height:1.45;"
        "color:#1f2328;background:#ffffff;padding:16px 24px;border-bottom:3px solid #d0d7de"
    )
    return f'<div id="{HEADER_ID}" style="{style}">\n' + "\n".join(lines) + "\n</div>"


def _line(label: str, text: str) -> str:
    return f"<div><b>{html.escape(label)}:</b> {html.escape(text)}</div>"


def _window(header: ReportHeader) -> str:
    days = sorted(header.reference_days)
    if not days:
        return "no reference days"
    text = f"{days[0]} to {days[-1]} ({len(days)} curated day{'s' * (len(days) != 1)})"
    if header.window is not None and tuple(header.window) != (days[0], days[-1]):
        text += f", within the window {header.window[0]} to {header.window[1]}"
    return text


def _why(decision: Decision) -> list[str]:
    """The reasons of the decision: what counted or is watched, the retrain and its cooldown."""
    drifted = [v for v in decision.verdicts if v.state in ("fired", "watch")]
    reasons = [v.line for v in sorted(drifted, key=lambda v: v.state != "fired")]
    if not drifted:
        reasons.append("No signal reached its threshold with enough samples.")
    if decision.trigger_retrain:
        reasons.append(f"Retraining triggered: {decision.retrain_reason}.")
    elif decision.cooldown_until is not None:
        reasons.append(f"No retraining before {decision.cooldown_until}: cooldown after the last triggered retrain.")
    shown = {v.line for v in decision.verdicts}
    reasons += [line for line in decision.explanation if line not in shown]  # re-run notes
    return reasons


def _policy_line(header: ReportHeader) -> str:
    policy = header.policy
    source = (
        f"{header.policy_file} over the packaged {DEFAULT_POLICY_PATH}"
        if header.policy_file
        else f"{DEFAULT_POLICY_PATH} (packaged default)"
    )
    return (
        f"{source}; persistence_days {policy.persistence_days}, cooldown_days {policy.cooldown_days}, "
        f"clear_days {policy.clear_days}; the thresholds applied are in the table"
    )


def _verdict_table(decision: Decision, policy: DriftPolicy) -> str:
    columns = ("signal", "group", "kind", "value", "policy threshold", "immediate at", "min samples", "verdict")
    rows = []
    for verdict in decision.verdicts:
        rule = policy.rule(verdict.name)
        min_samples = ""
        if rule is not None:
            min_samples = str(rule.min_samples)
            if rule.min_reference_samples is not None:
                min_samples += f" (reference {rule.min_reference_samples})"
        cells = (
            verdict.name,
            verdict.group or "",
            verdict.kind or "",
            format_number(verdict.value),
            _threshold(verdict),
            format_number(rule.immediate_at) if rule is not None and rule.immediate_at is not None else "",
            min_samples,
            _state(verdict, policy),
        )
        colour = {"fired": "#ffebe9", "watch": "#fff8c5"}.get(verdict.state, "")
        shade = f";background:{colour}" if colour else ""
        rows.append("<tr>" + "".join(f"<td style='{_CELL}{shade}'>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th style='{_CELL};background:#f6f8fa'>{html.escape(c)}</th>" for c in columns)
    return (
        "<table style='border-collapse:collapse;font-size:13px;margin:8px 0'>"
        f"<tr>{head}</tr>\n" + "\n".join(rows) + "</table>"
    )


def _threshold(verdict: Verdict) -> str:
    if verdict.threshold is None:
        return ""
    return f"{'>=' if verdict.direction == 'above' else '<='} {format_number(verdict.threshold)}"


def _state(verdict: Verdict, policy: DriftPolicy) -> str:
    if verdict.state == "fired":
        return "FIRED (counts)"
    if verdict.state == "watch":
        return f"watch ({verdict.streak} of {policy.persistence_days} days, not counted yet)"
    return verdict.state
