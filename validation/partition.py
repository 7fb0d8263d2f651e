"""Validate one landed partition and move it, whole, to ``curated/`` or ``quarantine/``.

This is the adapter between the lake on disk and the pure checks:

1. read ``landing/ds=YYYY-MM-DD/interactions.parquet`` (a file that cannot be read as
   Parquet fails with reason ``unreadable: <error>``, without running GX);
2. run the contract suite (:func:`validation.gx_run.validate_interactions`);
3. valid: ``os.replace`` the directory into ``curated/``; invalid: move it unchanged into
   ``quarantine/`` with a ``_reason.json`` (:mod:`validation.quarantine`).

Re-running a day is safe. With nothing in ``landing/`` and the day already curated the
call is a no-op (``already_curated``). A re-landed day that passes replaces the curated
one: the old directory is renamed aside (to a name readers ignore, see
:func:`graphrec.lake.list_partitions`), the new one renamed in, then the old one deleted;
a reader sees the old partition or the new one, never a mix of files. A re-landed day that
fails is quarantined and the curated partition stays as it was.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from graphrec import contract
from graphrec.lake import parse_ds, partition_name, sha256_file
from graphrec.settings import Settings
from validation.failures import unreadable_failure
from validation.gx_run import validate_interactions
from validation.outcome import MissingPartition, ValidationOutcome
from validation.quarantine import quarantine_partition
from validation.suite import suite_name

log = logging.getLogger(__name__)

SUPERSEDED_MARK = ".superseded-"


def read_interactions(path: Path) -> pd.DataFrame:
    """Read an interactions file into pandas with dtypes that mirror its Parquet types.

    Pandas metadata stored in the file is ignored on purpose: it would let a writer's
    in-memory dtype (say nullable ``Int64``) mask what the file holds. Here an ``int64``
    column without nulls reads as ``int64``, with nulls as ``float64``, and
    ``timestamp[us, tz=UTC]`` as ``datetime64[us, UTC]``.

    Raises:
        OSError, ValueError, pyarrow.ArrowException: the file is missing or not Parquet.
    """
    return pq.read_table(path).to_pandas(ignore_metadata=True)


def partition_checksums(part_dir: Path) -> dict[str, str]:
    """sha256 of every file under a partition directory, keyed by relative path."""
    return {
        p.relative_to(part_dir).as_posix(): sha256_file(p) for p in sorted(part_dir.rglob("*")) if p.is_file()
    }


def _count_rows(path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError, pa.ArrowException):
        return 0


def promote(landing: Path, curated: Path) -> bool:
    """Move a validated partition directory into ``curated/``.

    Args:
        landing: the partition directory in ``landing/``.
        curated: its destination in ``curated/``.

    Returns:
        bool: True if an older curated partition was replaced.
    """
    curated.parent.mkdir(parents=True, exist_ok=True)
    replaced = curated.exists()
    if not replaced:
        os.replace(landing, curated)
    else:
        # Rename directories only: each rename is atomic, so a reader finds the old
        # partition, no partition for an instant, or the new one, never half of each.
        aside = curated.with_name(f"{curated.name}{SUPERSEDED_MARK}{uuid.uuid4().hex[:12]}")
        os.replace(curated, aside)
        try:
            os.replace(landing, curated)
        except BaseException:
            os.replace(aside, curated)
            raise
    # Also clears leftovers of a swap that was interrupted before its clean-up.
    for stale in curated.parent.glob(f"{curated.name}{SUPERSEDED_MARK}*"):
        shutil.rmtree(stale, ignore_errors=True)
    return replaced


def validate_partition(settings: Settings, ds: dt.date | str) -> ValidationOutcome:
    """Validate the landed interactions of day ``ds`` and file the partition accordingly.

    Args:
        settings (graphrec.settings.Settings): locates ``landing/``, ``curated/`` and
            ``quarantine/``.
        ds (datetime.date | str): the partition day (``YYYY-MM-DD`` strings are accepted).

    Returns:
        ValidationOutcome: ``status`` is ``"curated"``, ``"quarantined"`` or
        ``"already_curated"``; call :meth:`ValidationOutcome.raise_for_status` to turn a
        rejection into an exception.

    Raises:
        MissingPartition: the day is neither in ``landing/`` nor in ``curated/``.
    """
    ds = parse_ds(ds)
    name = partition_name(ds)
    landing = settings.landing_dir / name
    curated = settings.curated_dir / name

    if not landing.is_dir():
        if curated.is_dir():
            log.info("%s is already curated and nothing new has landed", name)
            return ValidationOutcome(
                ds=ds,
                status="already_curated",
                rows=_count_rows(curated / contract.INTERACTIONS_FILE),
                failed=[],
                path=curated,
                checksums=partition_checksums(curated),
            )
        raise MissingPartition(
            f"no partition {name}: neither {landing} nor {curated} exists "
            f"(has the day been landed? landed days: see {settings.landing_dir})"
        )

    checked_at = dt.datetime.now(dt.timezone.utc)
    checksums = partition_checksums(landing)
    interactions_path = landing / contract.INTERACTIONS_FILE
    if not interactions_path.is_file():
        rows, failed = 0, [unreadable_failure(f"{contract.INTERACTIONS_FILE} is missing")]
    else:
        try:
            frame = read_interactions(interactions_path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            rows, failed = 0, [unreadable_failure(f"{type(exc).__name__}: {exc}")]
        else:
            rows, failed = len(frame), validate_interactions(frame, ds)

    if failed:
        target, reason_path = quarantine_partition(
            settings,
            ds,
            landing,
            failed=failed,
            rows=rows,
            checksums=checksums,
            checked_at=checked_at,
            suite=suite_name(ds),
        )
        log.warning("%s quarantined at %s: %d failed expectation(s)", name, target, len(failed))
        return ValidationOutcome(
            ds=ds,
            status="quarantined",
            rows=rows,
            failed=failed,
            path=target,
            reason_path=reason_path,
            checksums=checksums,
            checked_at=checked_at,
        )

    replaced = promote(landing, curated)
    log.info("%s curated (%d rows%s) at %s", name, rows, ", replaced previous" if replaced else "", curated)
    return ValidationOutcome(
        ds=ds,
        status="curated",
        rows=rows,
        failed=[],
        path=curated,
        checksums=checksums,
        replaced_previous=replaced,
        checked_at=checked_at,
    )

