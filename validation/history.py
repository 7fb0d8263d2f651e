"""What the batch-level rules compare a partition with: the curated days before it.

Only partitions strictly before the day count, so that re-validating an old day gives the
same answer whatever was curated after it. Row counts come from Parquet metadata; the
known ids from the (small) users and items files of every earlier curated partition,
falling back to the interactions' id columns when a partition has no such file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from graphrec import contract
from graphrec.lake import list_partitions, partition_name


@dataclasses.dataclass(frozen=True)
class BatchHistory:
    """The reference for one day's batch checks.

    Attributes:
        days: number of trailing curated days used for ``row_counts``.
        row_counts: rows of each of those days, oldest first.
        known_users: sorted ids of every user in an earlier curated partition.
        known_items: sorted ids of every item in an earlier curated partition.
    """

    days: int
    row_counts: tuple[int, ...]
    known_users: np.ndarray
    known_items: np.ndarray

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for suite metadata and reason files."""
        return {
            "trailing_days": self.days,
            "row_counts": list(self.row_counts),
            "known_users": int(len(self.known_users)),
            "known_items": int(len(self.known_items)),
        }


EMPTY = BatchHistory(0, (), np.array([], dtype=np.int64), np.array([], dtype=np.int64))


# Curated files never change in place (a re-landed day is a new directory renamed in), so
# ids read once are kept, keyed by path, inode, size and modification time: validating day
# after day of a long backfill then reads each earlier partition's files once, not daily.
_ID_CACHE: dict[tuple[str, int, int, int], np.ndarray] = {}
_ID_CACHE_MAX = 4096


def _ids(part: Path, file: str, column: str) -> np.ndarray:
    path = part / file
    if not path.is_file():
        path = part / contract.INTERACTIONS_FILE
    stat = path.stat()
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = _ID_CACHE.get(key)
    if cached is None:
        cached = np.unique(pq.read_table(path, columns=[column]).column(column).to_numpy(zero_copy_only=False))
        if len(_ID_CACHE) >= _ID_CACHE_MAX:
            _ID_CACHE.clear()
        _ID_CACHE[key] = cached
    return cached


def load_history(curated_dir: Path, ds: dt.date, trailing_days: int) -> BatchHistory:
    """Build the :class:`BatchHistory` of day ``ds`` from ``curated_dir``.

    Args:
        curated_dir: the curated zone.
        ds: the day being validated (excluded, as is everything after it).
        trailing_days: how many of the latest earlier days give the row-count range.
    """
    earlier = [d for d in list_partitions(curated_dir) if d < ds]
    if not earlier:
        return EMPTY
    parts = [curated_dir / partition_name(d) for d in earlier]
    counts = tuple(pq.ParquetFile(p / contract.INTERACTIONS_FILE).metadata.num_rows for p in parts[-trailing_days:])
    users = np.unique(np.concatenate([_ids(p, contract.USERS_FILE, contract.USER_ID) for p in parts]))
    items = np.unique(np.concatenate([_ids(p, contract.ITEMS_FILE, contract.ITEM_ID) for p in parts]))
    return BatchHistory(len(counts), counts, users.astype(np.int64), items.astype(np.int64))
