"""What validating one partition produced, and the errors it can raise."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, Literal

from validation.failures import describe_failure

Status = Literal["curated", "quarantined", "already_curated"]


class MissingPartition(LookupError):
    """Neither ``landing/`` nor ``curated/`` holds a partition for the requested day."""


class QuarantinedPartition(MissingPartition):
    """Nothing is in ``landing/`` or ``curated/`` for the day because it was quarantined.

    The message says when, why, where the files are and how to re-land them.
    """


class PartitionRejected(Exception):
    """A partition failed validation and was quarantined.

    The message names every failed expectation with its column and count, and the
    quarantine directory, so that a failed Airflow task says why in its log.
    """


@dataclasses.dataclass(frozen=True)
class ValidationOutcome:
    """The result of :func:`validation.partition.validate_partition` for one day.

    Attributes:
        ds: the partition day.
        status: ``"curated"`` (valid, now in ``curated/``), ``"quarantined"`` (invalid,
            moved unchanged to ``quarantine/``) or ``"already_curated"`` (nothing new in
            ``landing/``; the curated partition was left as it was).
        rows: rows in the interactions file (0 if it could not be read; for
            ``already_curated`` the rows of the curated file).
        failed: blocking failure records (see :mod:`validation.failures`); empty unless
            quarantined.
        warnings: warning-level failure records: the partition was accepted (or, if
            something else blocked it, quarantined) with these problems recorded.
        path: where the partition directory is now.
        reason_path: the ``_reason.json`` written for a quarantined partition, else ``None``.
        checksums: sha256 of each file in the partition, by file name (lineage: these are
            the exact bytes that were validated).
        replaced_previous: a re-landed partition replaced an older curated one.
        checked_at: when the check ran (UTC), ``None`` for ``already_curated``.
        data_docs: the Great Expectations Data Docs pages (HTML) of this run, by suite.
        record_path: the JSON record of this validation run under
            ``reports/validation/ds=.../``.
        profile: ``live`` (nightly feed) or ``backfill`` (historical load).
    """

    ds: dt.date
    status: Status
    rows: int
    failed: list[dict[str, Any]]
    path: Path
    reason_path: Path | None = None
    checksums: dict[str, str] = dataclasses.field(default_factory=dict)
    replaced_previous: bool = False
    checked_at: dt.datetime | None = None
    warnings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    data_docs: dict[str, str] = dataclasses.field(default_factory=dict)
    record_path: Path | None = None
    profile: str = "live"

    @property
    def ok(self) -> bool:
        """True when the day's data is in ``curated/``."""
        return self.status != "quarantined"

    def message(self) -> str:
        """A human-readable summary naming each failed expectation."""
        head = f"partition ds={self.ds.isoformat()} {self.status} ({self.rows} rows) at {self.path}"
        lines = [head]
        if self.failed:
            lines[0] += f": {len(self.failed)} blocking failure(s):"
            lines += [f"  - {describe_failure(f)}" for f in self.failed]
        if self.warnings:
            lines.append(f"  {len(self.warnings)} warning(s):")
            lines += [f"  - {describe_failure(f)}" for f in self.warnings]
        if self.reason_path is not None:
            lines.append(f"  reason file: {self.reason_path}")
        for suite, page in self.data_docs.items():
            lines.append(f"  Data Docs ({suite}): file://{page}")
        return "\n".join(lines)

    def raise_for_status(self) -> ValidationOutcome:
        """Raise :class:`PartitionRejected` if the partition was quarantined.

        Returns:
            ValidationOutcome: ``self``, so that calls can be chained.
        """
        if self.status == "quarantined":
            raise PartitionRejected(self.message())
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary, small enough for an Airflow XCom."""
        return {
            "ds": self.ds.isoformat(),
            "status": self.status,
            "rows": self.rows,
            "failed": [describe_failure(f) for f in self.failed],
            "failed_checks": sorted({f["check"] for f in self.failed}),
            "warnings": [describe_failure(f) for f in self.warnings],
            "warning_checks": sorted({f["check"] for f in self.warnings}),
            "data_docs": dict(self.data_docs),
            "record_path": str(self.record_path) if self.record_path else None,
            "profile": self.profile,
            "path": str(self.path),
            "reason_path": str(self.reason_path) if self.reason_path else None,
            "checksums": dict(self.checksums),
            "replaced_previous": self.replaced_previous,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
        }
