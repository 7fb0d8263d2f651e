"""Storage layout of the lake and small atomic-file helpers.

Layout under ``GRAPHREC_HOME``::

    landing/ds=YYYY-MM-DD/{interactions,items,users}.parquet    raw daily partitions
    curated/ds=YYYY-MM-DD/...                                    validated partitions
    quarantine/ds=YYYY-MM-DD/<received-at>/...  + _reason.json  rejected, byte-identical

A partition is a directory and moves between zones with one ``os.replace``, so a
reader sees either the whole partition or none of it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphrec import contract

PARTITION_PREFIX = "ds="


def partition_name(ds: dt.date) -> str:
    return f"{PARTITION_PREFIX}{ds.isoformat()}"


def parse_ds(value: str | dt.date | dt.datetime) -> dt.date:
    """Accept ``YYYY-MM-DD``, ``ds=YYYY-MM-DD``, a date or a datetime."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if text.startswith(PARTITION_PREFIX):
        text = text[len(PARTITION_PREFIX) :]
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError as exc:
        raise ValueError(f"not a partition day (expected YYYY-MM-DD): {value!r}") from exc


def day_bounds(ds: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of a partition day in UTC."""
    start = pd.Timestamp(ds.isoformat(), tz="UTC")
    return start, start + pd.Timedelta(days=1)


def list_partitions(zone_dir: Path) -> list[dt.date]:
    """Days that have a partition directory in a zone, oldest first."""
    if not zone_dir.is_dir():
        return []
    days = []
    for child in zone_dir.iterdir():
        if child.is_dir() and child.name.startswith(PARTITION_PREFIX) and "." not in child.name:
            try:
                days.append(parse_ds(child.name))
            except ValueError:
                continue
    return sorted(days)


def read_curated(curated_dir: Path, days: Iterable[dt.date], file: str = contract.INTERACTIONS_FILE) -> pd.DataFrame:
    """Concatenate one file of several curated partitions (missing days are skipped)."""
    frames = []
    for ds in days:
        path = curated_dir / partition_name(ds) / file
        if path.exists():
            frames.append(pd.read_parquet(path))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def read_catalog(curated_dir: Path, until: dt.date | None = None) -> pd.DataFrame:
    """All items seen in curated partitions up to ``until`` (latest row per item wins)."""
    days = [d for d in list_partitions(curated_dir) if until is None or d <= until]
    items = read_curated(curated_dir, days, contract.ITEMS_FILE)
    if items.empty:
        return items
    return items.drop_duplicates(contract.ITEM_ID, keep="last").sort_values(contract.ITEM_ID, ignore_index=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask_mode() -> int:
    """The mode a plainly created file would get (mkstemp always uses 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, _umask_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_write_parquet(path: Path, frame: pd.DataFrame, schema=None) -> None:
    """Write a parquet file atomically (temporary file in the same directory, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.fchmod(fd, _umask_mode())
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonable(value: Any) -> Any:
    """Convert a value from a GX result or kwargs into something ``json.dumps`` accepts.

    Nulls of every flavour (``None``, ``NaN``, ``pd.NA``, ``NaT``) become ``None``,
    timestamps become ISO strings, numpy scalars become Python scalars and containers
    are converted recursively. Anything else falls back to ``str``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.datetime64, np.timedelta64)):
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, int):
        return value
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, pd.Timedelta, dt.datetime, dt.date, dt.timedelta)):
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return str(value)
