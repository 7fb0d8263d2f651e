"""Unit tests of the pure feature transform (no Feast, no files)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.tables import (
    EVENT_TIMESTAMP,
    ITEM_POPULARITY,
    OFFLINE_SCHEMAS,
    USER_ACTIVITY,
    USER_RECENT_ITEMS,
    compute_feature_tables,
    snapshot_time,
)
from graphrec import contract

AS_OF = pd.Timestamp("2025-01-10", tz="UTC")


def _events(rows: list[tuple[int, int, str]]) -> pd.DataFrame:
    """(user, item, timestamp) triples as a contract-shaped interactions frame."""
    return pd.DataFrame(
        {
            contract.USER_ID: np.array([r[0] for r in rows], dtype=np.int64),
            contract.ITEM_ID: np.array([r[1] for r in rows], dtype=np.int64),
            contract.EVENT_TS: pd.to_datetime([r[2] for r in rows], utc=True).astype("datetime64[us, UTC]"),
            contract.EVENT_TYPE: "view",
            contract.RATING: np.nan,
        }
    )


def _catalog(categories: dict[int, str], first_seen: str = "2025-01-01") -> pd.DataFrame:
    return pd.DataFrame(
        {
            contract.ITEM_ID: np.array(list(categories), dtype=np.int64),
            contract.CATEGORY: list(categories.values()),
            contract.FIRST_SEEN_TS: pd.Timestamp(first_seen, tz="UTC"),
        }
    )


def _random_events(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = (AS_OF - pd.Timedelta(days=40)).value // 1000
    ts = rng.integers(start, AS_OF.value // 1000 + 86_400_000_000, size=n)  # a day past as_of too
    frame = _events([(int(u), int(i), "2025-01-01") for u, i in zip(rng.integers(0, 30, n), rng.integers(0, 20, n))])
    frame[contract.EVENT_TS] = pd.to_datetime(ts, unit="us", utc=True)
    return frame


def test_snapshot_time_is_the_end_of_the_day():
    assert snapshot_time("2025-01-09") == AS_OF
    assert snapshot_time("ds=2025-01-09") == AS_OF


def test_tables_follow_the_offline_schemas():
    tables = compute_feature_tables(_random_events(500, 0), _catalog({i: "books" for i in range(20)}), AS_OF)
    assert set(tables) == set(OFFLINE_SCHEMAS)
    for name, frame in tables.items():
        assert list(frame.columns) == OFFLINE_SCHEMAS[name].names
        key = contract.ITEM_ID if name == ITEM_POPULARITY else contract.USER_ID
        if name == USER_RECENT_ITEMS:  # the event-level log: within the day, one row per user and moment
            stamps = frame["event_timestamp"]
            assert ((stamps > AS_OF - pd.Timedelta(days=1)) & (stamps <= AS_OF)).all()
            assert not frame.duplicated([key, "event_timestamp"]).any()
            continue
        assert frame[key].is_unique and frame[key].is_monotonic_increasing
        assert (frame["event_timestamp"] == AS_OF).all()


def test_windows_count_events_in_half_open_intervals():
    events = _events(
        [
            (1, 10, "2025-01-09T00:00:00"),  # exactly as_of - 1 day: in the 1-day window
            (1, 11, "2025-01-09T23:59:59"),
            (1, 11, "2025-01-10T00:00:00"),  # at as_of: the future, ignored
            (1, 12, "2025-01-08T23:59:59"),  # 7-day window only
            (1, 13, "2025-01-03T00:00:00"),  # exactly as_of - 7 days: in the 7-day window
            (1, 14, "2025-01-02T23:59:59"),  # history only
            (2, 10, "2024-12-20T00:00:00"),  # history only: user kept, counters at zero
            (3, 10, "2024-12-10T23:59:59"),  # older than 30 days: user left out
        ]
    )
    tables = compute_feature_tables(events, _catalog({10: "books", 11: "music"}), AS_OF)
    users = tables[USER_ACTIVITY].set_index(contract.USER_ID)
    assert users.index.tolist() == [1, 2]
    assert users.loc[1, ["events_1d", "events_7d", "distinct_items_7d"]].tolist() == [2, 4, 4]
    assert users.loc[2, ["events_1d", "events_7d", "distinct_items_7d"]].tolist() == [0, 0, 0]
    assert users["days_since_last_event"].tolist() == [0, 21]

    items = tables[ITEM_POPULARITY].set_index(contract.ITEM_ID)
    # Catalog items and interacted items; unknown items get a placeholder category.
    assert items.index.tolist() == [10, 11, 12, 13, 14]
    assert items.loc[10, ["events_1d", "events_7d", "users_7d"]].tolist() == [1, 1, 1]
    assert items.loc[11, ["events_1d", "events_7d", "users_7d"]].tolist() == [1, 1, 1]
    assert items.loc[14, ["events_1d", "events_7d", "users_7d"]].tolist() == [0, 0, 0]
    assert items.loc[10, "category"] == "books" and items.loc[12, "category"] == contract.UNKNOWN_CATEGORY


def test_items_first_seen_after_the_snapshot_are_left_out():
    catalog = pd.concat([_catalog({1: "books"}), _catalog({2: "music"}, first_seen="2025-01-10")])
    tables = compute_feature_tables(_events([]), catalog, AS_OF)
    assert tables[ITEM_POPULARITY][contract.ITEM_ID].tolist() == [1]
    assert tables[USER_ACTIVITY].empty and tables[USER_RECENT_ITEMS].empty


@pytest.mark.parametrize("max_recent", [1, 3, 50])
def test_recent_items_log_has_the_sequence_after_each_moment_of_the_day(max_recent):
    events = _events(
        [
            (7, 3, "2025-01-09T10:00"),
            (7, 1, "2025-01-05T10:00"),
            (7, 2, "2025-01-08T10:00"),
            (7, 9, "2025-01-10T10:00"),  # after as_of
            (7, 2, "2025-01-09T10:00"),  # repeats are kept: it is a behaviour sequence
            (7, 4, "2025-01-09T18:30"),
            (7, 8, "2024-12-09T09:00"),  # more than 30 days before every event of the day
            (8, 5, "2025-01-01T00:00"),  # no event on the day: no row
        ]
    )
    catalog = _catalog({1: "a", 2: "b", 3: "c", 4: "d", 5: "e"})
    recent = compute_feature_tables(events, catalog, AS_OF, max_recent=max_recent)[USER_RECENT_ITEMS]
    # One row per distinct moment of the day, stamped 1 microsecond after it.
    assert recent[contract.USER_ID].tolist() == [7, 7]
    assert recent[EVENT_TIMESTAMP].tolist() == [
        pd.Timestamp("2025-01-09T10:00", tz="UTC") + pd.Timedelta(microseconds=1),
        pd.Timestamp("2025-01-09T18:30", tz="UTC") + pd.Timedelta(microseconds=1),
    ]
    # Both events at 10:00 are in the 10:00 row (the tie keeps the input order).
    assert recent.loc[0, "recent_items"] == [1, 2, 3, 2][-max_recent:]
    assert recent.loc[1, "recent_items"] == [1, 2, 3, 2, 4][-max_recent:]
    assert recent.loc[1, "recent_categories"] == ["a", "b", "c", "b", "d"][-max_recent:]
    times = pd.to_datetime(
        ["2025-01-05T10:00", "2025-01-08T10:00", "2025-01-09T10:00", "2025-01-09T10:00", "2025-01-09T18:30"], utc=True
    )
    assert recent.loc[1, "recent_ts"] == [int(t.timestamp()) for t in times][-max_recent:]


@pytest.mark.parametrize("seed", [0, 1])
def test_extra_history_changes_nothing(seed):
    """Passing the whole history or only the needed window gives the same snapshot."""
    events = _random_events(2000, seed)
    catalog = _catalog({i: f"c{i % 3}" for i in range(20)})
    needed = events[
        events[contract.EVENT_TS] >= AS_OF - pd.Timedelta(days=31)
    ]  # the log looks 30 days back from each event
    shuffled = events.sample(frac=1.0, random_state=seed).sort_values(contract.EVENT_TS)
    full = compute_feature_tables(shuffled, catalog, AS_OF)
    window = compute_feature_tables(needed, catalog, AS_OF)
    for name in full:
        pd.testing.assert_frame_equal(full[name], window[name])
    # And the counters agree with a direct count.
    week = needed[(needed[contract.EVENT_TS] >= AS_OF - pd.Timedelta(days=7)) & (needed[contract.EVENT_TS] < AS_OF)]
    users = full[USER_ACTIVITY].set_index(contract.USER_ID)
    expected = week.groupby(contract.USER_ID).size().reindex(users.index, fill_value=0)
    assert users["events_7d"].tolist() == expected.tolist()
