"""Validate one landed partition and move it, whole, to ``curated/`` or ``quarantine/``.

This is the adapter between the lake on disk and the contract:

1. read each file of ``landing/ds=YYYY-MM-DD/`` with the file-level checks
   (:mod:`validation.reading`): missing, empty, not Parquet, damaged, not UTF-8;
2. run the suites (:mod:`validation.suite`) in one Great Expectations run that writes Data
   Docs: interactions (file and row level), batch level against the trailing curated days
   (:mod:`validation.history`), the items and users files;
3. no blocking failure: ``os.replace`` the directory into ``curated/`` (warnings are kept
   in the outcome); any blocking failure: move it unchanged into ``quarantine/`` with a
   ``_reason.json`` (:mod:`validation.quarantine`);
4. write a JSON record of the run under ``reports/validation/ds=YYYY-MM-DD/``.

Re-running a day is safe. With nothing in ``landing/`` and the day already curated the
call is a no-op (``already_curated``). A re-landed day that passes replaces the curated
one: the old directory is renamed aside (to a name readers ignore, see
:func:`graphrec.lake.list_partitions`), the new one renamed in, then the old one deleted;
a reader sees the old partition or the new one, never a mix of files. A re-landed day that
fails is quarantined and the curated partition stays as it was. Quarantine records are
never deleted: a corrected partition accepted later leaves the earlier rejection as history.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from graphrec import contract
from graphrec.lake import atomic_write_json, list_partitions, parse_ds, partition_name, sha256_file
from graphrec.settings import Settings
from validation.checks import Profile, severity_of, validate_overrides
from validation.failures import failures_from_result, file_failure, reading_order
from validation.gx_run import run_suites
from validation.history import load_history
from validation.outcome import MissingPartition, QuarantinedPartition, ValidationOutcome
from validation.quarantine import latest_attempt, quarantine_partition, utc_stamp
from validation.reading import read_parquet_checked
from validation.report_page import update_report_page
from validation.suite import (
    batch_frame,
    build_batch_suite,
    build_interactions_suite,
    build_items_suite,
    build_users_suite,
    has_integer_ids,
)

log = logging.getLogger(__name__)

SUPERSEDED_MARK = ".superseded-"


def read_interactions(path: Path) -> pd.DataFrame:
    """Read an interactions file into pandas with dtypes that mirror its Parquet types.

    Raises:
        ValueError: the file fails a file-level check (the message says which).
    """
    frame, problem = read_parquet_checked(path)
    if problem is not None:
        raise ValueError(f"{problem.check}: {problem.message}")
    return frame


def partition_checksums(part_dir: Path) -> dict[str, str]:
    """sha256 of every file under a partition directory, keyed by relative path."""
    return {p.relative_to(part_dir).as_posix(): sha256_file(p) for p in sorted(part_dir.rglob("*")) if p.is_file()}


def listed_ids(catalog: pd.DataFrame, column: str) -> np.ndarray | None:
    """The int64 ids a users or items file lists, or ``None`` when its id column is unusable
    (missing, repeated or not integer: the file's own schema check reports that)."""
    if list(catalog.columns).count(column) != 1 or str(catalog[column].dtype) not in ("Int64", "int64"):
        return None
    return catalog[column].dropna().to_numpy(dtype="int64")


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


def check_files(
    settings: Settings,
    part_dir: Path,
    ds: dt.date,
    *,
    now: dt.datetime,
    profile: Profile = "live",
    run_name: str | None = None,
) -> tuple[int, list[dict[str, Any]], dict[str, str], dict[str, Any]]:
    """Run every contract check over the files of one partition directory.

    Returns:
        ``(rows, failures, data_docs, history)``: rows of the interactions file (0 if it
        could not be read), every failure record with its effective severity, the Data
        Docs page of each suite, and a summary of the trailing history used.
    """
    config = settings.validation
    validate_overrides(config.severity)
    failures: list[dict[str, Any]] = []
    batches: list[tuple[Any, pd.DataFrame]] = []
    rows = 0
    history = load_history(settings.curated_dir, ds, config.trailing_days)

    listed: dict[str, np.ndarray | None] = {contract.USER_ID: None, contract.ITEM_ID: None}
    for file, prefix, build, column in (
        (contract.ITEMS_FILE, "items_", build_items_suite, contract.ITEM_ID),
        (contract.USERS_FILE, "users_", build_users_suite, contract.USER_ID),
    ):
        path = part_dir / file
        if not path.exists():
            continue  # both files are optional: a day may bring no new items or users
        extra, problem = read_parquet_checked(path, prefix=prefix)
        if problem is not None:
            severity = severity_of(problem.check, config.severity, profile)
            if severity != "off":
                failures.append(file_failure(problem.check, problem.message, severity))
        else:
            batches.append((build(config, profile), extra))
            listed[column] = listed_ids(extra, column)

    frame, problem = read_parquet_checked(part_dir / contract.INTERACTIONS_FILE)
    if problem is not None:
        # An unreadable file cannot be accepted whatever the configuration says.
        failures.append(file_failure(problem.check, problem.message, "blocking"))
    else:
        rows = len(frame)
        batches.insert(0, (build_interactions_suite(ds, now, config, profile), frame))
        if rows and has_integer_ids(frame):  # 0 rows: empty_file says it; other types: wrong_types
            lists = (listed[contract.USER_ID] is not None, listed[contract.ITEM_ID] is not None)
            batches.insert(
                1,
                (
                    build_batch_suite(ds, history, rows, config, profile, listed=lists),
                    batch_frame(
                        frame, history, listed[contract.USER_ID], listed[contract.ITEM_ID], config.sentinel_ids
                    ),
                ),
            )
    docs_dir = settings.data_docs_dir if config.data_docs else None
    runs = run_suites(batches, run_name=run_name or partition_name(ds), run_time=now, docs_dir=docs_dir)
    for (_suite, checked), run in zip(batches, runs):
        failures.extend(failures_from_result(run.result, columns=checked.columns))
    failures.sort(key=reading_order)
    pages = {run.suite: str(run.page) for run in runs if run.page is not None}
    return rows, failures, pages, history.describe()


def write_record(
    settings: Settings, outcome: ValidationOutcome, failures: list[dict[str, Any]], history: dict[str, Any]
) -> Path:
    """Keep a JSON record of one validation run (status, every failure, Data Docs pages)."""
    checked = outcome.checked_at or dt.datetime.now(dt.UTC)
    day_dir = settings.validation_reports_dir / "runs" / partition_name(outcome.ds)
    path = day_dir / f"{checked.astimezone(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}.json"
    payload = {**outcome.to_dict(), "record_path": str(path), "failures": failures, "history": history}
    atomic_write_json(path, payload)
    return path


def validate_partition(
    settings: Settings,
    ds: dt.date | str,
    *,
    now: dt.datetime | None = None,
    profile: Profile = "live",
) -> ValidationOutcome:
    """Validate the landed partition of day ``ds`` and file it accordingly.

    Args:
        settings (graphrec.settings.Settings): locates the zones; ``settings.validation``
            holds severities and thresholds.
        ds (datetime.date | str): the partition day (``YYYY-MM-DD`` strings are accepted).
        now (datetime.datetime | None): the validation time (UTC; default: the clock).
            Events after it (plus the configured tolerance) are ``timestamp_in_future``.
        profile: ``live`` for the nightly feed, ``backfill`` for historical loads (batch
            checks can only warn; see :mod:`validation.checks`).

    Returns:
        ValidationOutcome: ``status`` is ``"curated"``, ``"quarantined"`` or
        ``"already_curated"``; ``warnings`` lists accepted problems. Call
        :meth:`ValidationOutcome.raise_for_status` to turn a rejection into an exception.

    Raises:
        MissingPartition: the day is neither in ``landing/`` nor in ``curated/``
            (:class:`~validation.outcome.QuarantinedPartition` when its latest delivery
            was quarantined: the message says when, why and how to re-land it).
        ValueError: a severity override names no check.
    """
    validate_overrides(settings.validation.severity)
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
                profile=profile,
            )
        attempt = latest_attempt(settings, ds)
        if attempt is not None:
            raise QuarantinedPartition(quarantined_message(settings, ds, attempt))
        raise MissingPartition(
            f"no partition {name}: neither {landing} nor {curated} exists "
            f"(has the day been landed? landed days: see {settings.landing_dir})"
        )

    checked_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    checksums = partition_checksums(landing)
    try:
        rows, failures, pages, history = check_files(
            settings, landing, ds, now=checked_at, profile=profile, run_name=f"{name}_{utc_stamp(checked_at)}"
        )
    except Exception as exc:  # the contract never crashes on data: the partition is quarantined, intact
        log.exception("%s: a check could not be evaluated; quarantining the partition unchanged", name)
        message = f"{type(exc).__name__}: {exc}"
        rows, failures, pages, history = _count_rows(landing / contract.INTERACTIONS_FILE), [], {}, {}
        failures.append(file_failure("check_error", message[:2000], "blocking"))
    blocking = [f for f in failures if f["severity"] == "blocking"]
    warnings = [f for f in failures if f["severity"] == "warning"]
    common = dict(
        ds=ds,
        rows=rows,
        checksums=checksums,
        checked_at=checked_at,
        warnings=warnings,
        data_docs=pages,
        profile=profile,
    )

    if blocking:
        target, reason_path = quarantine_partition(
            settings,
            ds,
            landing,
            failed=blocking,
            warnings=warnings,
            rows=rows,
            checksums=checksums,
            checked_at=checked_at,
            suites=sorted(pages) or ["interactions"],
            data_docs=pages,
            history=history,
        )
        outcome = ValidationOutcome(
            status="quarantined", failed=blocking, path=target, reason_path=reason_path, **common
        )
        log.warning("%s quarantined at %s: %s", name, target, sorted({f["check"] for f in blocking}))
    else:
        replaced = promote(landing, curated)
        outcome = ValidationOutcome(status="curated", failed=[], path=curated, replaced_previous=replaced, **common)
        log.info("%s curated (%d rows%s) at %s", name, rows, ", replaced previous" if replaced else "", curated)
        if warnings:
            log.warning(
                "%s accepted with %d warning(s): %s", name, len(warnings), sorted({f["check"] for f in warnings})
            )
    record = write_record(settings, outcome, failures, history)
    outcome = dataclasses.replace(outcome, record_path=record)
    for suite, page in pages.items():
        log.debug("Data Docs for %s (%s): file://%s", name, suite, page)  # outcome.message() lists them
    update_report_page(settings)
    return outcome


def quarantined_message(settings: Settings, ds: dt.date, attempt: dict[str, Any]) -> str:
    """What ``validate`` says about a day whose latest delivery is in quarantine."""
    name, day = partition_name(ds), ds.isoformat()
    checked = attempt.get("checked_at")
    try:
        when = dt.datetime.fromisoformat(checked).isoformat(timespec="seconds") if checked else "at an unknown time"
    except ValueError:
        when = str(checked)
    return (
        f"{name} was quarantined at {when} (reason: {attempt.get('reason')}); nothing for it is in landing/ or "
        f"curated/. Its files are in {attempt['path']} (`graphrec quarantine show {day}`). To re-land it, write the "
        f"corrected files to {settings.landing_dir / name}/ (or re-run the load that delivered it) and run "
        f"`graphrec validate {day}` again."
    )


def recent_validations(settings: Settings, days: int = 14) -> list[dict[str, Any]]:
    """The latest validation record of each of the last ``days`` validated days, oldest first.

    Each entry: ``ds``, ``status``, ``rows``, ``failed_checks``, ``warning_checks``,
    ``warnings`` (one line each), ``checked_at``, ``profile``, ``record_path`` and the
    Data Docs ``data_docs`` pages. Used by ``graphrec status`` and the run summary.
    """
    import json

    runs_dir = settings.validation_reports_dir / "runs"
    out = []
    for ds in list_partitions(runs_dir)[-days:]:
        records = sorted((runs_dir / partition_name(ds)).glob("*.json"))
        if not records:
            continue
        try:
            record = json.loads(records[-1].read_text())
        except (OSError, ValueError):
            continue
        out.append(
            {
                key: record.get(key)
                for key in (
                    "ds",
                    "status",
                    "rows",
                    "failed_checks",
                    "warning_checks",
                    "warnings",
                    "checked_at",
                    "profile",
                    "record_path",
                    "data_docs",
                )
            }
        )
    return out
