"""Point-in-time features through Feast: no leakage, rows back in their order.

Labelled rows are joined with ``get_historical_features`` over the session's store
(``conftest.py``: a simulated lake materialized day by day) and checked against values
recomputed from the raw events.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from ranker_store import DAYS, same

from features.historical import historical_ranker_features
from features.ranker_columns import FEATURE_COLUMNS
from features.tables import EVENT_TIMESTAMP, OFFLINE_SCHEMAS, compute_feature_tables, snapshot_time
from graphrec import contract

VIEWS = {"user_activity": contract.USER_ID, "item_popularity": contract.ITEM_ID, "user_recent_items": contract.USER_ID}


def _expected(events: pd.DataFrame, catalog: pd.DataFrame, row: pd.Series) -> dict[str, object]:
    """What the row may know, recomputed from the raw events strictly before its time.

    Counters: the snapshot of the last day boundary at or before the row. Sequence: the
    user's events before the row (within 30 days of the last of them, at most 50).
    """
    ts = pd.Timestamp(row[EVENT_TIMESTAMP])
    values: dict[str, object] = {}
    as_of = ts.floor("D")
    tables = compute_feature_tables(events, catalog, as_of) if as_of >= snapshot_time(DAYS[0]) else {}
    for view, key in VIEWS.items():
        if view == "user_recent_items":
            continue
        table = tables[view].set_index(key) if tables else None
        entity = row[key]
        for column in ("events_1d", "events_7d", "distinct_items_7d", "days_since_last_event", "users_7d", "category"):
            name = f"{view}__{column}"
            if table is not None and column in table.columns:
                values[name] = table.loc[entity, column] if entity in table.index else None
            elif table is None and column in OFFLINE_SCHEMAS[view].names:
                values[name] = None
    mine = events[(events[contract.USER_ID] == row[contract.USER_ID]) & (events[contract.EVENT_TS] < ts)]
    mine = mine.sort_values(contract.EVENT_TS, kind="stable")
    if mine.empty or mine[contract.EVENT_TS].iloc[-1] < ts - pd.Timedelta(days=30):  # nothing, or past the TTL
        values |= {f"user_recent_items__{c}": None for c in ("recent_items", "recent_categories", "recent_ts")}
        return values
    last = mine[contract.EVENT_TS].iloc[-1]
    seq = mine[mine[contract.EVENT_TS] > last - pd.Timedelta(days=30)].tail(50)
    category = catalog.drop_duplicates(contract.ITEM_ID, keep="last").set_index(contract.ITEM_ID)[contract.CATEGORY]
    values["user_recent_items__recent_items"] = seq[contract.ITEM_ID].tolist()
    values["user_recent_items__recent_categories"] = [category.get(i, "unknown") for i in seq[contract.ITEM_ID]]
    values["user_recent_items__recent_ts"] = [int(t.timestamp()) for t in seq[contract.EVENT_TS]]
    return values


def test_point_in_time_features_come_only_from_before_the_row(store_settings, curated):
    events, catalog = curated
    rng = np.random.default_rng(0)
    picked = events.iloc[rng.choice(len(events), size=40, replace=False)]
    # Rows at the event's own moment (the classic leak: the event itself must not be in
    # its features), exactly on a snapshot boundary, and just before one.
    boundary = snapshot_time(DAYS[1])
    rows = pd.concat(
        [
            picked[[contract.USER_ID, contract.ITEM_ID]].assign(**{EVENT_TIMESTAMP: picked[contract.EVENT_TS]}),
            picked[[contract.USER_ID, contract.ITEM_ID]].head(10).assign(**{EVENT_TIMESTAMP: boundary}),
            picked[[contract.USER_ID, contract.ITEM_ID]]
            .head(10)
            .assign(**{EVENT_TIMESTAMP: boundary - pd.Timedelta(microseconds=1)}),
        ],
        ignore_index=True,
    )
    rows["label"] = np.arange(len(rows)) % 2
    joined = historical_ranker_features(store_settings, rows)
    assert len(joined) == len(rows)
    assert joined["label"].tolist() == rows["label"].tolist()  # order and extra columns kept
    names = FEATURE_COLUMNS
    checked = 0
    for _, row in joined.iterrows():
        ts_s = pd.Timestamp(row[EVENT_TIMESTAMP]).value // 1_000
        recent_ts = row["user_recent_items__recent_ts"]
        if isinstance(recent_ts, (list, np.ndarray)):
            assert all(t * 1_000_000 < ts_s for t in recent_ts), "a sequence event at or after the row"
        expected = _expected(events, catalog, row)
        for name in names:
            assert same(row[name], expected[name]), (name, row[name], expected[name])
            checked += 1
    assert checked > 0


def test_historical_rows_keep_their_order_columns_and_duplicates(store_settings, curated):
    """One point-in-time join for all views: rows come back in their order (Feast's store
    does not keep it), every input column as it was, duplicates and unknown keys kept."""
    events, _ = curated
    picked = events.sample(30, random_state=3)
    rows = pd.DataFrame(
        {
            contract.USER_ID: [*picked[contract.USER_ID], 10_000, picked[contract.USER_ID].iloc[0]],
            contract.ITEM_ID: [*picked[contract.ITEM_ID], picked[contract.ITEM_ID].iloc[0], 99_999],
            EVENT_TIMESTAMP: [*picked[contract.EVENT_TS], snapshot_time(DAYS[-1]), snapshot_time(DAYS[-1])],
        }
    )
    rows = pd.concat([rows, rows.iloc[[4, 0, 4]]], ignore_index=True)  # exact duplicates
    rows["note"] = [f"row {i}" for i in range(len(rows))]
    rows.index = rows.index[::-1] + 100  # not a default index: it is reset
    joined = historical_ranker_features(store_settings, rows)
    names = FEATURE_COLUMNS
    assert list(joined.columns) == [*rows.columns, *names]
    assert joined["note"].tolist() == rows["note"].tolist()
    assert joined[contract.ITEM_ID].tolist() == rows[contract.ITEM_ID].tolist()

    def plain(value):
        return None if same(value, None) else (list(value) if isinstance(value, np.ndarray) else value)

    # Each row equals the same row joined alone; a duplicated row equals its original.
    for i in (0, 4, 30, 31, len(rows) - 1):
        alone = historical_ranker_features(store_settings, rows.iloc[[i]])
        assert all(same(joined[name].iloc[i], plain(alone[name].iloc[0])) for name in names), i
    assert all(same(joined[name].iloc[4], plain(joined[name].iloc[len(rows) - 1])) for name in names)
    unknown_user, unknown_item = joined.iloc[30], joined.iloc[31]
    assert all(same(unknown_user[n], None) for n in names if n.startswith("user_"))
    assert all(same(unknown_item[n], None) for n in names if n.startswith("item_"))
    assert not same(unknown_user["item_popularity__events_7d"], None)
    empty = historical_ranker_features(store_settings, rows.iloc[:0])
    assert list(empty.columns) == list(joined.columns) and len(empty) == 0
