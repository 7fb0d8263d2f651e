"""The feature tables: one snapshot row per entity, computed from events (pure pandas).

:func:`compute_feature_tables` turns interactions and the catalog into the three feature
views' snapshots as of one moment, with the columns of :data:`OFFLINE_SCHEMAS`. Nothing
here touches Feast or a file: :mod:`features.snapshots` writes the tables to the offline
store, the Feast definitions in ``feature_repo/`` declare the same columns.

Snapshot semantics: the counters of day ``ds`` (``user_activity``, ``item_popularity``)
summarise every event before ``as_of = ds + 1 day`` (00:00 UTC), so point-in-time joins
never see the future. Windows are ``[as_of - 1 day, as_of)`` and
``[as_of - 7 days, as_of)``; users are included while they have an event in the last
:data:`HISTORY_DAYS` days (their counters drop to zero before they leave, so the online
store never keeps a stale non-zero count), items while they are in the catalog.

``user_recent_items`` is an event-level log instead: for every moment of the day at which
a user acted, one row with the user's sequence right after it, stamped one microsecond
later. A point-in-time join at ``t`` thus gets the sequence of exactly the events strictly
before ``t`` (the BST ranker's training rows are the moments of users' events, and a user
often acts many times a day), and the online store holds the sequence after the user's
latest event.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa

from graphrec import contract, lake

USER_ACTIVITY = "user_activity"
ITEM_POPULARITY = "item_popularity"
USER_RECENT_ITEMS = "user_recent_items"
FEATURE_VIEWS = (USER_ACTIVITY, ITEM_POPULARITY, USER_RECENT_ITEMS)

EVENT_TIMESTAMP = "event_timestamp"
WINDOW_DAYS = 7
HISTORY_DAYS = 30
RECENT_ITEMS = 50

_TS = pa.timestamp("us", tz="UTC")
OFFLINE_SCHEMAS: dict[str, pa.Schema] = {
    USER_ACTIVITY: pa.schema(
        [
            (contract.USER_ID, pa.int64()),
            ("events_1d", pa.int64()),
            ("events_7d", pa.int64()),
            ("distinct_items_7d", pa.int64()),
            ("days_since_last_event", pa.int64()),
            (EVENT_TIMESTAMP, _TS),
        ]
    ),
    ITEM_POPULARITY: pa.schema(
        [
            (contract.ITEM_ID, pa.int64()),
            ("events_1d", pa.int64()),
            ("events_7d", pa.int64()),
            ("users_7d", pa.int64()),
            (contract.CATEGORY, pa.string()),
            (EVENT_TIMESTAMP, _TS),
        ]
    ),
    USER_RECENT_ITEMS: pa.schema(
        [
            (contract.USER_ID, pa.int64()),
            ("recent_items", pa.list_(pa.int64())),
            ("recent_categories", pa.list_(pa.string())),
            ("recent_ts", pa.list_(pa.int64())),
            (EVENT_TIMESTAMP, _TS),
        ]
    ),
}
"""Columns of each offline snapshot file; the Feast schemas in ``feature_repo/`` mirror them."""


def snapshot_time(ds: dt.date | str) -> pd.Timestamp:
    """The ``event_timestamp`` of day ``ds``'s snapshot: the end of that UTC day."""
    return lake.day_bounds(lake.parse_ds(ds))[1]


def compute_feature_tables(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    history_days: int = HISTORY_DAYS,
    max_recent: int = RECENT_ITEMS,
) -> dict[str, pd.DataFrame]:
    """Snapshot the three feature views as of one moment.

    Only events in ``[as_of - history_days, as_of)`` count, so passing more history than
    needed changes nothing. Ties in ``event_ts`` keep the input order.

    Args:
        interactions (pd.DataFrame): events with ``user_id``, ``item_id``, ``event_ts``.
        catalog (pd.DataFrame): items with ``item_id`` and ``category`` (``first_seen_ts``
            optional: items first seen at or after ``as_of`` are left out).
        as_of (pd.Timestamp): the snapshot time, stamped as ``event_timestamp``.
        history_days (int, optional): look-back of the user views. (default: ``30``)
        max_recent (int, optional): length of ``recent_items``. (default: ``50``)

    Returns:
        dict[str, pd.DataFrame]: ``{view name: frame}`` with the columns of
        :data:`OFFLINE_SCHEMAS`, one row per entity, sorted by entity id.
    """
    as_of = as_utc(as_of)
    events = _events_in(interactions, as_of - pd.Timedelta(days=history_days), as_of)
    items = _catalog_until(catalog, as_of)
    category = items.set_index(contract.ITEM_ID)[contract.CATEGORY]
    tables = {
        USER_ACTIVITY: _user_activity(events, as_of),
        ITEM_POPULARITY: _item_popularity(events, items, as_of),
    }
    for name, frame in tables.items():
        frame[EVENT_TIMESTAMP] = pd.Series(as_of, index=frame.index, dtype="datetime64[us, UTC]")
        tables[name] = frame[OFFLINE_SCHEMAS[name].names].reset_index(drop=True)
    day_start = as_of - pd.Timedelta(days=1)
    sequences = _events_in(interactions, day_start - pd.Timedelta(days=history_days), as_of)
    recent = _user_recent_items(sequences, category, max_recent, day_start, history_days)
    tables[USER_RECENT_ITEMS] = recent[OFFLINE_SCHEMAS[USER_RECENT_ITEMS].names].reset_index(drop=True)
    return tables


def as_utc(ts: pd.Timestamp | dt.datetime | str) -> pd.Timestamp:
    """``ts`` as a UTC timestamp: a naive time is taken as UTC, an aware one converted."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _events_in(interactions: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    cols = [contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS]
    if interactions.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(cols, ("int64", "int64", "datetime64[us, UTC]"))})
    events = interactions[cols]
    ts = events[contract.EVENT_TS]
    events = events[(ts >= start) & (ts < end)]
    return events.sort_values(contract.EVENT_TS, kind="stable", ignore_index=True)


def _catalog_until(catalog: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    if catalog.empty:
        return pd.DataFrame({contract.ITEM_ID: pd.Series(dtype="int64"), contract.CATEGORY: pd.Series(dtype=str)})
    if contract.FIRST_SEEN_TS in catalog:
        catalog = catalog[catalog[contract.FIRST_SEEN_TS] < as_of]
    return catalog.drop_duplicates(contract.ITEM_ID, keep="last")[[contract.ITEM_ID, contract.CATEGORY]]


def _window(events: pd.DataFrame, as_of: pd.Timestamp, days: int) -> pd.DataFrame:
    return events[events[contract.EVENT_TS] >= as_of - pd.Timedelta(days=days)]


def _counts(frame: pd.DataFrame, key: str, index: pd.Index, distinct: str | None = None) -> np.ndarray:
    grouped = frame.groupby(key)
    counts = grouped[distinct].nunique() if distinct else grouped.size()
    return counts.reindex(index, fill_value=0).to_numpy(dtype=np.int64)


def _user_activity(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    users = pd.Index(np.unique(events[contract.USER_ID].to_numpy(dtype=np.int64)), name=contract.USER_ID)
    last_day, last_week = _window(events, as_of, 1), _window(events, as_of, WINDOW_DAYS)
    last_ts = events.groupby(contract.USER_ID)[contract.EVENT_TS].max().reindex(users)
    return pd.DataFrame(
        {
            contract.USER_ID: users.to_numpy(),
            "events_1d": _counts(last_day, contract.USER_ID, users),
            "events_7d": _counts(last_week, contract.USER_ID, users),
            "distinct_items_7d": _counts(last_week, contract.USER_ID, users, distinct=contract.ITEM_ID),
            "days_since_last_event": ((as_of - last_ts) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64),
        }
    )


def _item_popularity(events: pd.DataFrame, items: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    # Catalog items with no events get zeros; items with events but no catalog row still count.
    ids = np.union1d(items[contract.ITEM_ID].to_numpy(np.int64), events[contract.ITEM_ID].to_numpy(np.int64))
    index = pd.Index(ids, name=contract.ITEM_ID)
    last_day, last_week = _window(events, as_of, 1), _window(events, as_of, WINDOW_DAYS)
    category = items.set_index(contract.ITEM_ID)[contract.CATEGORY].reindex(index).fillna(contract.UNKNOWN_CATEGORY)
    return pd.DataFrame(
        {
            contract.ITEM_ID: ids,
            "events_1d": _counts(last_day, contract.ITEM_ID, index),
            "events_7d": _counts(last_week, contract.ITEM_ID, index),
            "users_7d": _counts(last_week, contract.ITEM_ID, index, distinct=contract.USER_ID),
            contract.CATEGORY: category.astype(str).to_numpy(),
        }
    )


def _user_recent_items(
    events: pd.DataFrame, category: pd.Series, max_recent: int, day_start: pd.Timestamp, history_days: int
) -> pd.DataFrame:
    """The sequence log: one row per user and distinct event time in ``[day_start, as_of)``.

    Each row is the user's sequence *right after* that moment (their last ``max_recent``
    events within ``history_days``, most recent last, events at that very moment included),
    stamped one microsecond after it, so a point-in-time join at time ``t`` sees exactly
    the events strictly before ``t``. ``events`` is time-sorted (groupby keeps row order).
    """
    columns = {contract.USER_ID: [], "recent_items": [], "recent_categories": [], "recent_ts": [], EVENT_TIMESTAMP: []}
    lookup = category.to_dict()
    window = pd.Timedelta(days=history_days).value // 1_000
    today = events[events[contract.EVENT_TS] >= day_start]
    users = set(today[contract.USER_ID].unique().tolist())
    for user, group in events[events[contract.USER_ID].isin(users)].groupby(contract.USER_ID, sort=True):
        items = group[contract.ITEM_ID].to_numpy(np.int64)
        micros = group[contract.EVENT_TS].astype("datetime64[us, UTC]").astype("int64").to_numpy()
        # The last event of each distinct moment of the day closes that moment's sequence.
        last_of_moment = np.flatnonzero((np.append(micros[1:], -1) != micros) & (micros >= day_start.value // 1_000))
        for end in last_of_moment:
            first = max(int(np.searchsorted(micros, micros[end] - window, side="right")), end + 1 - max_recent)
            seq = items[first : end + 1].tolist()
            columns[contract.USER_ID].append(int(user))
            columns["recent_items"].append(seq)
            columns["recent_categories"].append([lookup.get(i, contract.UNKNOWN_CATEGORY) for i in seq])
            columns["recent_ts"].append((micros[first : end + 1] // 1_000_000).tolist())
            columns[EVENT_TIMESTAMP].append(int(micros[end]) + 1)
    frame = pd.DataFrame({k: v for k, v in columns.items() if k != EVENT_TIMESTAMP})
    frame[contract.USER_ID] = frame[contract.USER_ID].astype(np.int64)
    frame[EVENT_TIMESTAMP] = pd.to_datetime(np.asarray(columns[EVENT_TIMESTAMP], dtype=np.int64), unit="us", utc=True)
    return frame
