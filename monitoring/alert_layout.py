"""The form every alert email shares: one content, rendered as plain text and as HTML.

An email is a list of :data:`Block` (paragraph, heading, list, links, table, log
excerpt); :func:`compose` turns it into a ``multipart/alternative`` message whose plain
part and HTML part say the same thing. The HTML is one column at most 720 px wide with
wrapped text; tables scroll sideways inside it and log excerpts sit in a wrapped block
that scrolls past 420 px, so nothing widens the page. Absolute ``http(s)://`` URLs in
list items become links.

Pure and light (no Airflow, no pandas): the DAG file imports the task alert at parse time.
"""

from __future__ import annotations

import email.policy
import html
import re
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from graphrec.settings import Settings

#: A block of content: its plain-text lines and its HTML.
Block = tuple[list[str], str]

KIND_HEADER = "X-Graphrec-Kind"
SIGNATURE = "-- graphrec monitoring"

_esc = html.escape
_TEXT = "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:14px;line-height:1.45;color:#1f2328"
_CELL = "padding:3px 6px;border:1px solid #d0d7de;text-align:left;vertical-align:top"
_PRE = (
    "white-space:pre-wrap;overflow-wrap:anywhere;overflow:auto;max-height:420px;margin:0 0 12px;padding:8px;"
    "background:#f6f8fa;border:1px solid #d0d7de;border-radius:4px;font-size:12px;line-height:1.35"
)
_MAX_8BIT_LINE = 990  # SMTP allows 998 octets a line; longer ones need quoted-printable
# Headers fold only past SMTP's limit: folding a subject a little over 78 characters right
# after "Subject:" leaves readers that unfold by the letter with a leading space.
_POLICY = email.policy.default.clone(max_line_length=_MAX_8BIT_LINE)


def paragraph(lines: Sequence[str]) -> Block:
    """Lines kept together (one ``<p>`` with line breaks)."""
    breaks = "<br>\n".join(_esc(line) for line in lines)
    return [*lines, ""], f"<p style='margin:0 0 12px'>{breaks}</p>"


def heading(title: str) -> Block:
    return [f"{title}:"], f"<h3 style='margin:18px 0 6px;font-size:15px'>{_esc(title)}</h3>"


def items(lines: Sequence[str], *, ordered: bool = False) -> Block:
    """A bulleted (or numbered) list; URLs in the lines become links in the HTML."""
    marks = [f"{i}." for i in range(1, len(lines) + 1)] if ordered else ["-"] * len(lines)
    tag = "ol" if ordered else "ul"
    entries = "\n".join(f"<li style='margin:2px 0'>{_linkify(line)}</li>" for line in lines)
    plain = [f"  {mark} {line}" for mark, line in zip(marks, lines)] + [""]
    return plain, f"<{tag} style='margin:0 0 12px;padding-left:22px'>\n{entries}\n</{tag}>"


def links(pairs: Sequence[tuple[str, str | None]]) -> Block:
    """``label: URL`` lines; pairs without a URL (not known) are left out."""
    known = [(label, url) for label, url in pairs if url]
    if not known:
        return [], ""
    entries = "<br>\n".join(f"{_esc(label)}: <a href='{_esc(url)}'>{_esc(url)}</a>" for label, url in known)
    return [f"{label}: {url}" for label, url in known] + [""], f"<p style='margin:0 0 12px'>{entries}</p>"


def preformatted(text: str) -> Block:
    """A log excerpt or traceback: as is in plain text, wrapped and scrollable in HTML."""
    return [*text.splitlines(), ""], f'<pre style="{_PRE}">{_esc(text)}</pre>'


def table(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> Block:
    """Aligned columns in plain text; a table that scrolls sideways in HTML."""
    if not rows:
        return ["(none)", ""], "<p>(none)</p>"
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    plain = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    plain += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    head = "".join(f"<th style='{_CELL};background:#f6f8fa'>{_esc(c)}</th>" for c in columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td style='{_CELL}'>{_esc(r[c])}</td>" for c in columns) + "</tr>" for r in rows
    )
    page = (
        "<div style='overflow-x:auto;margin:0 0 12px'><table style='border-collapse:collapse;font-size:13px'>\n"
        f"<tr>{head}</tr>\n{body}\n</table></div>"
    )
    return [*plain, ""], page


def compose(
    subject: str, blocks: Sequence[Block], settings: Settings, *, kind: str, headers: Mapping[str, str] | None = None
) -> EmailMessage:
    """A ``multipart/alternative`` message from ``settings.alerts.sender`` to its recipients.

    Args:
        subject (str): the subject.
        blocks (Sequence[Block]): the content, in order.
        settings (Settings): sender and recipients.
        kind (str): the ``X-Graphrec-Kind`` header.
        headers (Mapping[str, str] | None): more headers (``X-Graphrec-Ds``...).
    """
    text = "\n".join([line for plain, _ in blocks for line in plain] + [SIGNATURE]) + "\n"
    body = "\n".join(part for _, part in blocks if part)
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'></head>\n"
        "<body style='margin:0;padding:0'>\n"
        f'<div style="max-width:720px;margin:0 auto;padding:16px;{_TEXT};overflow-wrap:anywhere">\n'
        f"{body}\n<p style='color:#59636e'>{_esc(SIGNATURE)}</p>\n</div>\n</body></html>\n"
    )
    message = EmailMessage(policy=_POLICY)
    message["Subject"] = subject
    message["From"] = settings.alerts.sender
    message["To"] = ", ".join(settings.alerts.recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.alerts.sender.rpartition("@")[2] or None)
    message[KIND_HEADER] = kind
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text, cte=_transfer_encoding(text))
    message.add_alternative(page, subtype="html", cte=_transfer_encoding(page))
    return message


def _transfer_encoding(text: str) -> str:
    """7bit/8bit keep a stored ``.eml`` readable (quoted-printable breaks long paths and
    URLs); quoted-printable only where a line is too long for SMTP."""
    if any(len(line.encode("utf-8")) > _MAX_8BIT_LINE for line in text.splitlines()):
        return "quoted-printable"
    return "7bit" if text.isascii() else "8bit"


def _linkify(line: str) -> str:
    """Escaped text whose absolute http(s) URLs are links."""
    parts = re.split(r"(https?://[^\s<>'\"]+)", line)
    return "".join(f"<a href='{_esc(p)}'>{_esc(p)}</a>" if i % 2 else _esc(p) for i, p in enumerate(parts))
