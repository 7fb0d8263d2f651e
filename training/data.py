"""Training data: a window of curated days, its temporal split, id maps and the graph.

The retriever learns from a *window* of curated daily partitions ending at the run's
day ``ds``. The last ``holdout_days`` days of the window are held out for evaluation;
everything before them is the training part, from which the model's id maps and its
user-item bipartite graph are built::

    window  = [ds - window_days + 1, ds]                        curated partitions
    train   = events before  ds - holdout_days + 1  (00:00 UTC)  -> id maps, graph
    holdout = events from    ds - holdout_days + 1  on           -> evaluation

:func:`load_window` is the only function here that reads files; the rest are pure
transforms of data frames and arrays.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import numpy as np
import pandas as pd

from graphrec import contract, lake
from graphrec.settings import Settings
from training.ids import IdMap

_PARTITION_FILES = (contract.INTERACTIONS_FILE, contract.ITEMS_FILE, contract.USERS_FILE)


class InsufficientDataError(ValueError):
    """The window has too little data to train or evaluate (no history or no holdout users)."""


@dataclasses.dataclass(frozen=True)
class Window:
    """The interactions of a window of curated days, with their lineage.

    Args:
        start: first day of the window (inclusive).
        end: last day of the window (inclusive); the run's ``ds``.
        days: the days in ``[start, end]`` that have a curated partition.
        interactions: their interactions in the contract's columns.
        fingerprint: sha256 over the sorted ``"<partition>/<file>:<sha256>"`` lines of
            every curated file in the window; equal fingerprints mean equal input bytes.
    """

    start: dt.date
    end: dt.date
    days: tuple[dt.date, ...]
    interactions: pd.DataFrame
    fingerprint: str

    @property
    def data_window(self) -> list[str]:
        """``[start, end]`` as ISO days (JSON-able, for lineage)."""
        return [self.start.isoformat(), self.end.isoformat()]


def window_days_range(ds: dt.date, window_days: int) -> list[dt.date]:
    """The calendar days ``[ds - window_days + 1, ds]``, oldest first."""
    if window_days < 1:
        raise ValueError(f"window_days must be >= 1, got {window_days}")
    return [ds - dt.timedelta(days=offset) for offset in range(window_days - 1, -1, -1)]


def dataset_fingerprint(settings: Settings, days: list[dt.date]) -> str:
    """sha256 over the sorted checksums of the curated files of ``days``.

    Args:
        settings: the installation's settings (for ``curated_dir``).
        days: partition days to include (days without a partition are skipped).

    Returns:
        A hex digest that changes whenever any byte of any file in the window changes.
    """
    lines = []
    for ds in days:
        part = settings.curated_dir / lake.partition_name(ds)
        for name in _PARTITION_FILES:
            path = part / name
            if path.exists():
                lines.append(f"{part.name}/{name}:{lake.sha256_file(path)}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def load_window(settings: Settings, ds: dt.date, window_days: int) -> Window:
    """Read the curated interactions of the ``window_days`` days ending at ``ds``.

    Args:
        settings: the installation's settings.
        ds: the last day of the window (inclusive).
        window_days: the window's length in days.

    Returns:
        The :class:`Window`; its frame is empty (with the contract's columns) when no
        partition falls into the window.
    """
    calendar = window_days_range(ds, window_days)
    present = set(lake.list_partitions(settings.curated_dir))
    days = tuple(day for day in calendar if day in present)
    frame = lake.read_curated(settings.curated_dir, days)
    if frame.empty:
        frame = contract.INTERACTIONS_SCHEMA.empty_table().to_pandas()
    frame = frame[list(contract.INTERACTION_COLUMNS)]
    return Window(calendar[0], calendar[-1], days, frame, dataset_fingerprint(settings, list(days)))


def holdout_start(end: dt.date, holdout_days: int) -> pd.Timestamp:
    """The first instant (00:00 UTC) of the last ``holdout_days`` days ending at ``end``."""
    if holdout_days < 1:
        raise ValueError(f"holdout_days must be >= 1, got {holdout_days}")
    first, _ = lake.day_bounds(end - dt.timedelta(days=holdout_days - 1))
    return first


def temporal_split(
    frame: pd.DataFrame, holdout_days: int, *, end: dt.date | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split interactions in time: the last ``holdout_days`` days are the holdout.

    Args:
        frame: interactions with an ``event_ts`` column (UTC).
        holdout_days: number of trailing days to hold out.
        end: the last day of the data; defaults to the UTC day of the latest event.
            Pass the window's end so an empty last day is not silently skipped.

    Returns:
        ``(train, holdout)``: events strictly before the holdout's first midnight, and
        the events from it on. Both keep the input's columns and a fresh index.
    """
    if frame.empty:
        return frame.copy(), frame.copy()
    ts = frame[contract.EVENT_TS]
    if end is None:
        end = ts.max().tz_convert("UTC").date()
    cutoff = holdout_start(end, holdout_days)
    before = (ts < cutoff).to_numpy()
    return frame[before].reset_index(drop=True), frame[~before].reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class BipartiteGraph:
    """The user-item interaction graph of the training part.

    Args:
        users: id map of the users (rows ``0..n_users-1``).
        items: id map of the items (rows ``0..n_items-1``).
        edge_index: int64 array ``[2, n_edges]`` of distinct ``(user, item)`` index
            pairs, sorted by user then item.
    """

    users: IdMap
    items: IdMap
    edge_index: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])


def build_graph(train: pd.DataFrame) -> BipartiteGraph:
    """Id maps and the deduplicated user-item edges of the training interactions.

    Repeated interactions of a user with an item become one edge: LightGCN propagates
    over the binary adjacency matrix.
    """
    users = IdMap.from_values(train[contract.USER_ID])
    items = IdMap.from_values(train[contract.ITEM_ID])
    u = users.index(train[contract.USER_ID])
    i = items.index(train[contract.ITEM_ID])
    keys = np.unique(u * max(len(items), 1) + i)
    edge_index = np.stack([keys // max(len(items), 1), keys % max(len(items), 1)]).astype(np.int64)
    return BipartiteGraph(users, items, edge_index)


def validation_split(train: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each user's latest training interactions as a validation set.

    Early stopping needs a score that the holdout never influences, so it is taken from
    the training part only (the holdout is not an argument). For every user with ``n >= 2``
    interactions, the latest ``k = min(ceil(fraction * n), n - 1)`` of them by
    ``event_ts`` are validation candidates; the rest, and every interaction of users with
    a single one, are the fit part. Every user of ``train`` thus keeps at least one fit
    interaction (and an embedding). Identical ``(user, item, event_ts)`` events are
    never split between the parts: such a group goes to validation only when all of it
    falls among the user's latest ``k``.

    Ties in ``event_ts`` are broken by a seeded hash of ``(user, item, event_ts)``, so the
    result depends only on the rows and ``seed``, not on their order in the frame.

    Args:
        train: the training interactions (:func:`temporal_split`), with ``user_id``,
            ``item_id`` and ``event_ts`` columns.
        fraction: share of each user's interactions to validate on, in ``[0, 1)``;
            ``0`` returns all of ``train`` as the fit part.
        seed: seeds the tie-breaking among events with equal timestamps.

    Returns:
        ``(fit, validation)``: each keeps the input's columns and row order, with a
        fresh index; together they are exactly the rows of ``train``.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if train.empty or fraction == 0:
        return train.reset_index(drop=True), train.iloc[:0].reset_index(drop=True)
    keys = pd.DataFrame(
        {
            "user": train[contract.USER_ID].to_numpy(np.int64),
            "item": train[contract.ITEM_ID].to_numpy(np.int64),
            "ts": train[contract.EVENT_TS].to_numpy("datetime64[ns]").view(np.int64),
        }
    )
    keys["tie"] = pd.util.hash_pandas_object(keys.assign(seed=np.int64(seed)), index=False).to_numpy()
    keys["row"] = np.arange(len(keys))
    ordered = keys.sort_values(["user", "ts", "tie", "item"], kind="mergesort")
    n = ordered.groupby("user", sort=False)["user"].transform("size").to_numpy()
    from_end = n - 1 - ordered.groupby("user", sort=False).cumcount().to_numpy()  # 0 = the latest
    k = np.minimum(np.ceil(fraction * n), n - 1)
    # A group of identical events is validation only when its oldest copy is among the latest k.
    oldest = pd.Series(from_end, index=ordered.index).groupby([ordered["user"], ordered["item"], ordered["ts"]])
    candidate = (oldest.transform("max").to_numpy() < k) & (n >= 2)
    is_validation = np.zeros(len(keys), dtype=bool)
    is_validation[ordered["row"].to_numpy()] = candidate
    return train[~is_validation].reset_index(drop=True), train[is_validation].reset_index(drop=True)
