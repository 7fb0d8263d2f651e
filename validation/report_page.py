"""The validation overview page, ``reports/validation/index.html``, readable without internet.

Great Expectations' Data Docs index draws its table with JavaScript and CSS from CDNs, so
on an offline host it is blank. This page is plain static HTML with inline CSS (no
JavaScript, no external URL): one row per validated day, newest first, with its status
(curated, accepted with warnings, quarantined), its row count, every failed and warning
check with its severity and a one-line description, and relative links to the day's
Data Docs pages, its JSON record and, for a quarantined day, its ``_reason.json``.

The run records under ``reports/validation/runs/ds=YYYY-MM-DD/`` (written by
:func:`validation.partition.write_record`) are the source of truth: the page shows the
latest record of each day and is rewritten whole after every validation run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from graphrec.lake import atomic_write_bytes, list_partitions, partition_name
from graphrec.settings import Settings
from validation.checks import CHECKS
from validation.failures import describe_failure

log = logging.getLogger(__name__)

INDEX_FILE = "index.html"

#: Status key -> (label, text colour, background colour). Colours pass WCAG AA on their background.
STATUSES: dict[str, tuple[str, str, str]] = {
    "curated": ("curated", "#116329", "#dafbe1"),
    "warnings": ("accepted with warnings", "#7d4e00", "#fff8c5"),
    "quarantined": ("quarantined", "#a40e26", "#ffebe9"),
    "unknown": ("unknown", "#424a53", "#eaeef2"),
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem; color: #1f2328; }
h1 { font-size: 1.4rem; margin-bottom: .25rem; }
p.meta { color: #59636e; margin-top: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .45rem .6rem; border-bottom: 1px solid #d1d9e0; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.day, td.when { white-space: nowrap; }
.status { display: inline-block; padding: .1rem .5rem; border-radius: 1rem; font-weight: 600; white-space: nowrap; }
.sev { display: inline-block; min-width: 4.5rem; font-size: .8rem; font-weight: 600; text-transform: uppercase; }
.sev-blocking { color: #a40e26; }
.sev-warning { color: #7d4e00; }
ul.checks { margin: 0; padding-left: 0; list-style: none; }
ul.checks li { margin-bottom: .35rem; }
.what { color: #59636e; font-size: .9rem; }
.detail { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .8rem; overflow-wrap: anywhere; }
ul.links { margin: 0; padding-left: 1rem; }
.none { color: #59636e; }
"""


@dataclasses.dataclass(frozen=True)
class DayEntry:
    """The latest validation record of one day.

    Attributes:
        ds: the partition day.
        record_path: the latest JSON record of the day.
        record: its content, ``None`` when it could not be read.
        runs: how many validation runs the day has had.
    """

    ds: dt.date
    record_path: Path
    record: dict[str, Any] | None
    runs: int


def latest_records(runs_dir: Path) -> list[DayEntry]:
    """The latest validation record of every day under ``runs_dir``, newest day first."""
    entries = []
    for ds in reversed(list_partitions(runs_dir)):
        day_dir = runs_dir / partition_name(ds)
        records = [day_dir / name for name in sorted(os.listdir(day_dir)) if name.endswith(".json")]
        if not records:
            continue
        try:
            record = json.loads(records[-1].read_text())
        except (OSError, ValueError):
            record = None
        entries.append(DayEntry(ds=ds, record_path=records[-1], record=record, runs=len(records)))
    return entries


def status_of(record: Mapping[str, Any] | None) -> str:
    """The page's status key of a record: ``curated``, ``warnings``, ``quarantined`` or ``unknown``."""
    status = (record or {}).get("status")
    if status == "quarantined":
        return "quarantined"
    if status in ("curated", "already_curated"):
        return "warnings" if record.get("warning_checks") or record.get("warnings") else "curated"
    return "unknown"


def problems(record: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(severity, check, one-line description)`` of each failure of a record, blocking first.

    Records carry every failure in ``failures``; for a record without that list the
    one-line ``failed`` and ``warnings`` summaries are used.
    """
    failures = record.get("failures")
    if isinstance(failures, list):
        rows = [
            (str(f.get("severity")), str(f.get("check") or f.get("expectation")), describe_failure(f))
            for f in failures
            if isinstance(f, Mapping)
        ]
    else:
        rows = [("blocking", line.split(" ", 1)[0].rstrip(":"), line) for line in record.get("failed") or []]
        rows += [("warning", line.split(" ", 1)[0].rstrip(":"), line) for line in record.get("warnings") or []]
    return sorted(rows, key=lambda row: row[0] != "blocking")


def _href(target: str | Path, base: Path) -> str:
    """A link to a local file, relative to the page's directory (the page can be moved with its tree)."""
    target, prefix = str(target), f"{base}{os.sep}"
    # A plain prefix cut for the usual case: os.path.relpath costs two getcwd calls per link.
    relative = target[len(prefix) :] if target.startswith(prefix) else os.path.relpath(target, base)
    return escape(quote(relative, safe="/=-_.~"))


def _checked_at(value: Any) -> str:
    try:
        return dt.datetime.fromisoformat(str(value)).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(value or "")


def _problems_cell(record: Mapping[str, Any]) -> str:
    items = []
    for severity, check, line in problems(record):
        spec = CHECKS.get(check)
        what = f' <span class="what">{escape(spec.description)}</span>' if spec else ""
        items.append(
            f'<li><span class="sev sev-{escape(severity)}">{escape(severity)}</span> <strong>{escape(check)}</strong>'
            f'{what}<br><span class="detail">{escape(line)}</span></li>'
        )
    return f'<ul class="checks">{"".join(items)}</ul>' if items else '<span class="none">none</span>'


def _links_cell(entry: DayEntry, base: Path) -> str:
    record = entry.record or {}
    links = [
        f'<li><a href="{_href(page, base)}">Data Docs: {escape(str(suite))}</a></li>'
        for suite, page in sorted((record.get("data_docs") or {}).items())
    ]
    runs = f" (latest of {entry.runs} runs)" if entry.runs > 1 else ""
    links.append(f'<li><a href="{_href(entry.record_path, base)}">JSON record</a>{escape(runs)}</li>')
    if record.get("reason_path"):
        links.append(f'<li><a href="{_href(record["reason_path"], base)}">_reason.json</a></li>')
    return f'<ul class="links">{"".join(links)}</ul>'


def _row(entry: DayEntry, base: Path) -> str:
    record = entry.record or {}
    label, colour, background = STATUSES[status_of(entry.record)]
    if entry.record is None:
        label = "record unreadable"
    return (
        f'<tr id="{escape(partition_name(entry.ds))}">'
        f'<td class="day" style="border-left:.3rem solid {colour}">{escape(entry.ds.isoformat())}</td>'
        f'<td><span class="status" style="color:{colour};background:{background}">{escape(label)}</span></td>'
        f'<td class="num">{escape(str(record.get("rows", "")))}</td>'
        f'<td class="when">{escape(_checked_at(record.get("checked_at")))}<br>'
        f'<span class="what">{escape(str(record.get("profile") or ""))}</span></td>'
        f"<td>{_problems_cell(record)}</td><td>{_links_cell(entry, base)}</td></tr>"
    )


def render_page(
    entries: Iterable[DayEntry], *, base: Path, data_docs_index: Path | None, generated_at: dt.datetime
) -> str:
    """The page's HTML: pure, every value escaped, links relative to ``base``.

    Args:
        entries: one per day, in the order shown (:func:`latest_records`: newest first).
        base: the directory the page is written to.
        data_docs_index: the Great Expectations Data Docs index to link, if it exists.
        generated_at: shown in the header.
    """
    entries = list(entries)
    counts = {key: sum(status_of(e.record) == key for e in entries) for key in STATUSES}
    summary = ", ".join(f"{counts[key]} {STATUSES[key][0]}" for key in STATUSES if counts[key]) or "none yet"
    docs = (
        f' Great Expectations Data Docs: <a href="{_href(data_docs_index, base)}">index</a> '
        "(its styling and scripts load from the internet; each day's pages, linked below, read without)."
        if data_docs_index is not None
        else ""
    )
    rows = "\n".join(_row(e, base) for e in entries)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>graphrec data validation</title>
<style>{_CSS}</style>
</head>
<body>
<h1>graphrec data validation</h1>
<p class="meta">{len(entries)} validated days: {escape(summary)}. Latest run of each day, newest first.
Generated {escape(generated_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))}.{docs}</p>
<table>
<thead><tr><th>day</th><th>status</th><th>rows</th><th>checked</th><th>failed and warning checks</th>\
<th>links</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def write_report_page(settings: Settings, now: dt.datetime | None = None) -> Path:
    """Rewrite ``reports/validation/index.html`` from the run records (atomically).

    Returns:
        Path: the page.
    """
    base = settings.validation_reports_dir
    entries = latest_records(base / "runs")
    docs_index = settings.data_docs_dir / "index.html"
    html = render_page(
        entries,
        base=base,
        data_docs_index=docs_index if docs_index.is_file() else None,
        generated_at=now or dt.datetime.now(dt.UTC),
    )
    path = base / INDEX_FILE
    atomic_write_bytes(path, html.encode())
    return path


def update_report_page(settings: Settings) -> Path | None:
    """:func:`write_report_page` after a validation run; a failure is logged, never raised.

    The page is a view of the records: the day has been filed and recorded whatever
    happens here, and the next run rewrites the page whole.
    """
    try:
        return write_report_page(settings)
    except Exception:
        log.warning("could not update the validation overview page", exc_info=True)
        return None
