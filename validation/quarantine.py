"""Quarantine: where rejected partitions go, unchanged, with the reasons they failed.

Layout::

    quarantine/ds=YYYY-MM-DD/<received-at>/interactions.parquet   the files as they landed
                                           items.parquet ...
                                           _reason.json             why they were rejected

``<received-at>`` is a UTC stamp such as ``20250101T020000Z``: when the newest file of the
partition was written into ``landing/``. A day can be re-delivered and rejected again, so
each attempt gets its own directory and nothing is overwritten. The partition directory is
moved with one ``os.replace``: the data files are never rewritten, so their bytes (and
sha256) are exactly what arrived.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from graphrec.lake import atomic_write_json, list_partitions, parse_ds, partition_name
from graphrec.settings import Settings
from validation.failures import describe_failure

REASON_FILE = "_reason.json"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def utc_stamp(moment: dt.datetime) -> str:
    """Format an aware datetime as a compact UTC stamp, e.g. ``20250101T020000Z``."""
    return moment.astimezone(dt.UTC).strftime(STAMP_FORMAT)


def received_at(part_dir: Path) -> dt.datetime:
    """When a landing partition arrived: the newest modification time of its files (UTC)."""
    times = [p.stat().st_mtime for p in part_dir.iterdir() if p.is_file()]
    newest = max(times) if times else part_dir.stat().st_mtime
    return dt.datetime.fromtimestamp(newest, tz=dt.UTC)


def _free_attempt_dir(day_dir: Path, stamp: str) -> Path:
    candidate, n = day_dir / stamp, 0
    while candidate.exists():
        n += 1
        candidate = day_dir / f"{stamp}-{n}"
    return candidate


def reason_text(failed: list[dict[str, Any]]) -> str:
    """The one-line reason: the names of the blocking checks, e.g. ``duplicate_events, null_ids``."""
    checks = sorted({f.get("check") or f.get("expectation") for f in failed})
    return ", ".join(checks) if checks else "no reason recorded"


def quarantine_partition(
    settings: Settings,
    ds: dt.date,
    part_dir: Path,
    *,
    failed: list[dict[str, Any]],
    rows: int,
    checksums: dict[str, str],
    checked_at: dt.datetime,
    suites: list[str],
    warnings: list[dict[str, Any]] | None = None,
    data_docs: dict[str, str] | None = None,
    history: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Move a rejected partition directory, unchanged, into ``quarantine/`` with a reason file.

    Args:
        settings: locates ``quarantine/``.
        ds: the partition day.
        part_dir: the partition directory in ``landing/`` (it is moved, not copied).
        failed: records of the blocking failures.
        rows: rows in its interactions file (0 if unreadable).
        checksums: sha256 of each file, taken before the move.
        checked_at: when validation ran (UTC).
        suites: names of the expectation suites that were applied.
        warnings: records of the warning-level failures, kept for the record.
        data_docs: the run's Data Docs page per suite.
        history: the trailing-days summary the batch checks compared with.

    Returns:
        tuple[Path, Path]: the attempt directory now holding the files, and its ``_reason.json``.
    """
    arrived = received_at(part_dir)
    day_dir = settings.quarantine_dir / partition_name(ds)
    day_dir.mkdir(parents=True, exist_ok=True)
    target = _free_attempt_dir(day_dir, utc_stamp(arrived))
    os.replace(part_dir, target)
    reason_path = target / REASON_FILE
    atomic_write_json(
        reason_path,
        {
            "ds": ds.isoformat(),
            "rows": rows,
            "reason": reason_text(failed),
            "checks": sorted({f["check"] for f in failed}),
            "failed": failed,
            "warnings": warnings or [],
            "counts": {
                "blocking": len(failed),
                "warnings": len(warnings or []),
                "unexpected_rows": sum(int(f.get("unexpected_count") or 0) for f in failed),
            },
            "suites": suites,
            "data_docs": data_docs or {},
            "history": history or {},
            "files": checksums,
            "received_at": arrived.isoformat(),
            "checked_at": checked_at.isoformat(),
            "source": str(part_dir),
        },
    )
    return target, reason_path


def _entry(settings: Settings, ds: dt.date, attempt: Path) -> dict[str, Any]:
    curated = settings.curated_dir / partition_name(ds)
    entry: dict[str, Any] = {
        "ds": ds.isoformat(),
        "partition": partition_name(ds),
        "attempt": attempt.name,
        "path": str(attempt),
        "rows": None,
        "reason": "no reason file",
        "checks": [],
        "failed": [],
        "warnings": [],
        "checked_at": None,
        # History: a corrected partition may have been accepted since.
        "day_now_curated": curated.is_dir(),
    }
    try:
        payload = json.loads((attempt / REASON_FILE).read_text())
    except FileNotFoundError:
        return entry
    except (OSError, ValueError) as exc:
        entry["reason"] = f"unreadable reason file: {exc}"
        return entry
    entry.update(
        rows=payload.get("rows"),
        reason=payload.get("reason"),
        checks=payload.get("checks", []),
        failed=[describe_failure(f) for f in payload.get("failed", [])],
        warnings=[describe_failure(f) for f in payload.get("warnings", [])],
        checked_at=payload.get("checked_at"),
        data_docs=payload.get("data_docs", {}),
        files=payload.get("files", {}),
    )
    return entry


def latest_attempt(settings: Settings, ds: dt.date) -> dict[str, Any] | None:
    """The newest quarantined attempt of day ``ds`` (an entry as :func:`list_quarantined` gives), or ``None``."""
    day_dir = settings.quarantine_dir / partition_name(ds)
    if not day_dir.is_dir():
        return None
    attempts = sorted((p for p in day_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime_ns)
    return _entry(settings, ds, attempts[-1]) if attempts else None


def list_quarantined(settings: Settings) -> list[dict[str, Any]]:
    """Every quarantined attempt, oldest day first (``graphrec quarantine list``, ``status``).

    Returns:
        list[dict]: one dict per attempt with ``ds``, ``partition``, ``attempt`` (the
        stamp directory name), ``path``, ``rows``, ``reason`` (the blocking check names),
        ``checks``, ``failed`` and ``warnings`` (one line each), ``checked_at`` and
        ``day_now_curated`` (a corrected partition for that day was accepted since). An
        attempt whose reason file is missing or unreadable is still listed, with
        ``reason`` saying so.
    """
    entries = []
    for ds in list_partitions(settings.quarantine_dir):
        day_dir = settings.quarantine_dir / partition_name(ds)
        for attempt in sorted(p for p in day_dir.iterdir() if p.is_dir()):
            entries.append(_entry(settings, ds, attempt))
    return entries


def show_quarantined(settings: Settings, partition: str) -> list[dict[str, Any]]:
    """Every attempt of one day with its full reason file (``graphrec quarantine show``).

    Args:
        partition: ``YYYY-MM-DD``, ``ds=YYYY-MM-DD`` or ``ds=YYYY-MM-DD/<attempt>``.

    Raises:
        LookupError: nothing is quarantined for that day (or attempt).
    """
    day_part, _, attempt_name = partition.partition("/")
    ds = parse_ds(day_part)
    day_dir = settings.quarantine_dir / partition_name(ds)
    attempts = sorted(p for p in day_dir.iterdir() if p.is_dir()) if day_dir.is_dir() else []
    if attempt_name:
        attempts = [p for p in attempts if p.name == attempt_name]
    if not attempts:
        known = sorted({e["partition"] for e in list_quarantined(settings)})
        raise LookupError(f"nothing quarantined for {partition!r}; quarantined partitions: {known or 'none'}")
    shown = []
    for attempt in attempts:
        entry = _entry(settings, ds, attempt)
        try:
            entry["reason_file"] = json.loads((attempt / REASON_FILE).read_text())
        except (OSError, ValueError):
            entry["reason_file"] = None
        shown.append(entry)
    return shown
