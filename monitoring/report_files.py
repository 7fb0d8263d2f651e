"""The files of a day's drift report: Evidently HTML and JSON, ``signals.json``, served lists.

The I/O edge of :mod:`monitoring.signals`: :func:`write_signal_report` writes a
:class:`~monitoring.signals.SignalReport` into the day's directory
(``reports/drift/ds=YYYY-MM-DD/``), :func:`read_signals` reads ``signals.json`` back.
"""

from __future__ import annotations

import json
from pathlib import Path

from graphrec import lake
from monitoring.signal_values import Signal
from monitoring.signals import SignalReport

SIGNALS_FILE = "signals.json"
SERVED_FILE = "served.parquet"  # today's served lists: tomorrow's quality proxy reads them
SNAPSHOT_NAMES = ("data", "users", "model", "quality")


def write_signal_report(report: SignalReport, out_dir: Path) -> dict[str, Path]:
    """Write the report's files atomically into ``out_dir``.

    Writes ``<snapshot>.html`` (Evidently's interactive report) and ``<snapshot>.json``
    (its metrics and tests) per snapshot, ``signals.json`` (``{name: Signal.to_dict()}``)
    and ``served.parquet`` when recommendations were served. Everything is rendered in
    memory before the first file is written, so a rendering failure leaves the directory
    as it was; files of an earlier run that this report does not produce are removed.

    Returns:
        dict[str, Path]: ``{file name: path}`` of the files written.
    """
    out_dir = Path(out_dir)
    payloads: dict[str, bytes] = {}
    for name, snapshot in report.snapshots.items():
        payloads[f"{name}.html"] = snapshot.get_html_str(as_iframe=False).encode("utf-8")
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
