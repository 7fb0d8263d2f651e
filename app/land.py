"""Land a whole source (a published dataset or an export) through the data contract.

Every loader (:mod:`ingest.movielens`, :mod:`ingest.gowalla`,
:mod:`ingest.generic`) returns a :class:`ingest.loading.SourceLoad`: interactions in the
contract's schema indexed by source line number, the rows it could not parse (as bad-row
records with line numbers), and items and users. :func:`land_source` then

1. checks every row against the contract's row rules (:func:`validation.source_rows.find_bad_rows`);
2. handles bad rows by policy: ``fail`` (default: nothing is landed; the error and a
   report list them by line) or ``quarantine`` (the good rows are landed, the bad ones
   are kept with line numbers and reasons). Either way the report is written to
   ``quarantine/sources/<name>/<stamp>/bad_rows.csv`` with a ``_reason.json``; the source
   file itself is never modified, so nothing is lost;
3. writes one partition per UTC day into ``landing/`` and, unless told not to, validates
   each one (profile ``backfill``: batch-level checks warn, see :mod:`validation.checks`).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from graphrec import contract
from graphrec.lake import atomic_write_bytes, atomic_write_json
from graphrec.settings import Settings
from ingest.bad_rows import BAD_ROW_COLUMNS
from ingest.landing import split_by_day, write_partition
from ingest.loading import SourceLoad
from validation.partition import validate_partition
from validation.quarantine import utc_stamp
from validation.source_rows import find_bad_rows, summarize_bad_rows

log = logging.getLogger(__name__)

BadRowPolicy = Literal["fail", "quarantine"]


class BadSourceRows(ValueError):
    """A source has rows that break the contract and the policy is ``fail``."""


@dataclasses.dataclass
class LandReport:
    """What :func:`land_source` did."""

    source: str
    rows_read: int
    bad_rows: int
    bad_rows_by_check: dict[str, int]
    bad_rows_report: Path | None
    rows_landed: int
    partitions: int
    curated: int = 0
    quarantined: int = 0
    rows_curated: int = 0
    warnings_by_check: dict[str, int] = dataclasses.field(default_factory=dict)
    quarantined_days: list[str] = dataclasses.field(default_factory=list)
    users: int = 0
    items: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["bad_rows_report"] = str(self.bad_rows_report) if self.bad_rows_report else None
        return out

    def summary(self) -> str:
        lines = [
            f"{self.source}: {self.rows_read} rows read, {self.bad_rows} bad, {self.rows_landed} landed "
            f"in {self.partitions} daily partition(s); {self.users} users, {self.items} items",
        ]
        if self.bad_rows_report:
            lines.append(f"  bad rows: {self.bad_rows_by_check} -> {self.bad_rows_report}")
        if self.curated or self.quarantined:
            lines.append(
                f"  validated: {self.curated} curated ({self.rows_curated} rows), "
                f"{self.quarantined} quarantined {self.quarantined_days or ''}".rstrip()
            )
        if self.warnings_by_check:
            lines.append(f"  warnings (accepted): {self.warnings_by_check}")
        return "\n".join(lines)


def _write_bad_rows(settings: Settings, load: SourceLoad, bad: pd.DataFrame, policy: str) -> Path:
    stamp = utc_stamp(dt.datetime.now(dt.UTC))
    target = settings.quarantine_dir / "sources" / load.name / stamp
    report = target / "bad_rows.csv"
    atomic_write_bytes(report, bad.to_csv(index=False).encode())
    atomic_write_json(
        target / "_reason.json",
        {
            "source": load.name,
            "path": str(load.path),
            "file": load.file,
            "policy": policy,
            "bad_rows": int(bad["line"].nunique()),
            "by_check": dict(Counter(bad["check"])),
            "first_lines": bad["line"].head(50).tolist(),
            "report": str(report),
        },
    )
    return report


def _catalog_days(items: pd.DataFrame, days: list[dt.date]) -> pd.Series:
    """The landed day whose partition carries each item: its first-seen day, or the next
    landed day when no interactions fell on that day (the last day for later items), so
    that the whole catalog lands."""
    if not len(items) or not days:
        return pd.Series([None] * len(items), index=items.index, dtype=object)
    first = items[contract.FIRST_SEEN_TS].dt.tz_convert("UTC").dt.date.to_numpy()
    ordered = sorted(days)
    pos = [min(i, len(ordered) - 1) for i in (bisect.bisect_left(ordered, d) for d in first)]
    return pd.Series([ordered[i] for i in pos], index=items.index, dtype=object)


def land_source(
    settings: Settings,
    load: SourceLoad,
    *,
    on_bad_rows: BadRowPolicy = "fail",
    validate: bool = True,
    now: dt.datetime | None = None,
) -> LandReport:
    """Check, land and (by default) validate a mapped source; see the module docstring.

    Raises:
        BadSourceRows: bad rows and ``on_bad_rows="fail"``; the message names the checks
            and the first line numbers, and the full report is on disk.
    """
    frame = load.interactions
    found = (
        find_bad_rows(frame, now=now, config=settings.validation)
        if len(frame)
        else pd.DataFrame(columns=BAD_ROW_COLUMNS)
    )
    parts = [f for f in (pd.DataFrame.from_records(load.parse_errors, columns=BAD_ROW_COLUMNS), found) if len(f)]
    bad = (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=BAD_ROW_COLUMNS)).sort_values(
        ["line", "check"], kind="stable", ignore_index=True
    )
    rows_read = len(frame) + len({e["line"] for e in load.parse_errors})
    report = None
    if not bad.empty:
        report = _write_bad_rows(settings, load, bad, on_bad_rows)
        message = f"{load.name} ({load.file or load.path}): {summarize_bad_rows(bad)}; full report: {report}"
        if on_bad_rows == "fail":
            raise BadSourceRows(message + " (nothing was landed; fix the source or use on_bad_rows='quarantine')")
        log.warning("%s; those rows are kept in the report and not landed", message)
        frame = frame[~frame.index.isin(set(found["line"]))]

    days = split_by_day(frame.reset_index(drop=True))
    item_day = _catalog_days(load.items, list(days))
    landed_users: set[int] = set()
    for ds, day in days.items():
        day_items = load.items[item_day == ds].reset_index(drop=True) if len(load.items) else None
        day_users = pd.DataFrame({contract.USER_ID: sorted(day[contract.USER_ID].unique())}, dtype="int64")
        landed_users.update(day_users[contract.USER_ID].tolist())
        write_partition(settings.landing_dir, ds, day, day_items, day_users)
    out = LandReport(
        source=load.name,
        rows_read=rows_read,
        bad_rows=int(bad["line"].nunique()) if not bad.empty else 0,
        bad_rows_by_check=dict(Counter(bad["check"])) if not bad.empty else {},
        bad_rows_report=report,
        rows_landed=len(frame),
        partitions=len(days),
        users=len(landed_users),
        items=int(frame[contract.ITEM_ID].nunique()) if len(frame) else 0,
    )
    if validate:
        warnings: Counter[str] = Counter()
        for ds in days:
            outcome = validate_partition(settings, ds, now=now, profile="backfill")
            if outcome.status == "quarantined":
                out.quarantined += 1
                out.quarantined_days.append(ds.isoformat())
            else:
                out.curated += 1
                out.rows_curated += outcome.rows
            warnings.update(f["check"] for f in outcome.warnings)
        out.warnings_by_check = dict(sorted(warnings.items()))
    return out
