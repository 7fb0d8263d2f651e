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

from graphrec.lake import atomic_write_json, list_partitions, partition_name
from graphrec.settings import Settings
from validation.failures import describe_failure

REASON_FILE = "_reason.json"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def utc_stamp(moment: dt.datetime) -> str:
    """Format an aware datetime as a compact UTC stamp, e.g. ``20250101T020000Z``."""
    return moment.astimezone(dt.timezone.utc).strftime(STAMP_FORMAT)


def received_at(part_dir: Path) -> dt.datetime:
    """When a landing partition arrived: the newest modification time of its files (UTC)."""
    times = [p.stat().st_mtime for p in part_dir.iterdir() if p.is_file()]
    newest = max(times) if times else part_dir.stat().st_mtime
    return dt.datetime.fromtimestamp(newest, tz=dt.timezone.utc)


def _free_attempt_dir(day_dir: Path, stamp: str) -> Path:
    candidate, n = day_dir / stamp, 0
    while candidate.exists():
        n += 1
        candidate = day_dir / f"{stamp}-{n}"
    return candidate


def reason_text(failed: list[dict[str, Any]]) -> str:
    """The one-line reason: ``unreadable: <error>`` or ``N failed expectation(s)``."""
    if len(failed) == 1 and str(failed[0].get("error") or "").startswith("unreadable: "):
        return failed[0]["error"]
    return f"{len(failed)} failed expectation(s)"


def quarantine_partition(
    settings: Settings,
    ds: dt.date,
    part_dir: Path,
    *,
    failed: list[dict[str, Any]],
    rows: int,
    checksums: dict[str, str],
    checked_at: dt.datetime,
    suite: str,
) -> tuple[Path, Path]:
    """Move a rejected partition directory, unchanged, into ``quarantine/`` with a reason file.

    Args:
        settings: locates ``quarantine/``.
        ds: the partition day.
        part_dir: the partition directory in ``landing/`` (it is moved, not copied).
        failed: failure records of the expectations it failed.
        rows: rows in its interactions file (0 if unreadable).
        checksums: sha256 of each file, taken before the move.
        checked_at: when validation ran (UTC).
        suite: name of the expectation suite that was applied.

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
            "failed": failed,
            "suite": suite,
            "files": checksums,
            "received_at": arrived.isoformat(),
            "checked_at": checked_at.isoformat(),
            "source": str(part_dir),
        },
    )
    return target, reason_path


def list_quarantined(settings: Settings) -> list[dict[str, Any]]:
    """Every quarantined attempt, oldest day first, for the ``status`` command.

    Returns:
        list[dict]: one dict per attempt with ``ds`` (ISO date), ``attempt`` (the stamp
        directory name), ``path``, ``rows``, ``reason``, ``failed`` (one line per failed
        expectation) and ``checked_at``. An attempt whose reason file is missing or
        unreadable is still listed, with ``reason`` saying so.
    """
    entries = []
    for ds in list_partitions(settings.quarantine_dir):
        day_dir = settings.quarantine_dir / partition_name(ds)
        for attempt in sorted(p for p in day_dir.iterdir() if p.is_dir()):
            entry: dict[str, Any] = {
                "ds": ds.isoformat(),
                "attempt": attempt.name,
                "path": str(attempt),
                "rows": None,
                "reason": "no reason file",
                "failed": [],
                "checked_at": None,
            }
            try:
                payload = json.loads((attempt / REASON_FILE).read_text())
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                entry["reason"] = f"unreadable reason file: {exc}"
            else:
                entry.update(
                    rows=payload.get("rows"),
                    reason=payload.get("reason"),
                    failed=[describe_failure(f) for f in payload.get("failed", [])],
                    checked_at=payload.get("checked_at"),
                )
            entries.append(entry)
    return entries
