"""Writing daily partitions into ``landing/`` in the contract's schema."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from graphrec import contract
from graphrec.lake import atomic_write_parquet, partition_name


def write_partition(
    landing_dir: Path,
    ds: dt.date,
    interactions: pd.DataFrame,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    *,
    enforce_schema: bool = True,
) -> Path:
    """Write one day's files under ``landing/ds=YYYY-MM-DD/`` and return the directory.

    With ``enforce_schema=False`` the interactions are written as given, which is how a
    malformed upstream batch looks when it arrives.
    """
    part = landing_dir / partition_name(ds)
    schema = contract.INTERACTIONS_SCHEMA if enforce_schema else None
    atomic_write_parquet(part / contract.INTERACTIONS_FILE, interactions, schema=schema)
    if items is not None:
        atomic_write_parquet(part / contract.ITEMS_FILE, items, schema=contract.ITEMS_SCHEMA)
    if users is not None:
        atomic_write_parquet(part / contract.USERS_FILE, users[[contract.USER_ID]], schema=contract.USERS_SCHEMA)
    return part


def split_by_day(interactions: pd.DataFrame) -> dict[dt.date, pd.DataFrame]:
    """Group interactions by the UTC day of ``event_ts`` (rows sorted by time, then ids)."""
    frame = interactions.sort_values(
        [contract.EVENT_TS, contract.USER_ID, contract.ITEM_ID], kind="stable", ignore_index=True
    )
    days = frame[contract.EVENT_TS].dt.tz_convert("UTC").dt.date
    return {ds: group.reset_index(drop=True) for ds, group in frame.groupby(days, sort=True)}
