"""The ranker's features through Feast: no leakage offline, no skew between offline and online.

A simulated lake is materialized day by day (real registry, DuckDB offline store, SQLite
online store), then labelled rows are joined point-in-time with
``get_historical_features`` and candidate rows are read from the online store.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from features.store import (
    EVENT_TIMESTAMP,
    OFFLINE_SCHEMAS,
    compute_feature_tables,
    historical_ranker_features,
    materialize,
    online_ranker_features,
    ranker_feature_names,
    snapshot_time,
)
from graphrec import contract, lake
from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate

CFG = SimulationConfig(n_users=60, n_items=50, days=4, events_per_day=400, drift_day=None)
DAYS = [CFG.day(i) for i in range(1, CFG.days + 1)]
VIEWS = {"user_activity": contract.USER_ID, "item_popularity": contract.ITEM_ID, "user_recent_items": contract.USER_ID}


@pytest.fixture(scope="module")
def store_settings(tmp_path_factory) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("ranker-features-home"))
    for part in simulate(CFG, settings.landing_dir):
        shutil.copytree(part, settings.curated_dir / part.name)
    for day in DAYS:
        materialize(settings, day.isoformat())
    return settings


@pytest.fixture(scope="module")
def curated(store_settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    curated_dir = store_settings.curated_dir
    return lake.read_curated(curated_dir, lake.list_partitions(curated_dir)), lake.read_catalog(curated_dir)


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


def _same(actual, expected) -> bool:
    if expected is None:
        return actual is None or (np.isscalar(actual) and pd.isna(actual))
    if isinstance(expected, list):
        return list(actual) == expected
    return actual == expected


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
    names = ranker_feature_names(store_settings)
    checked = 0
    for _, row in joined.iterrows():
        ts_s = pd.Timestamp(row[EVENT_TIMESTAMP]).value // 1_000
        recent_ts = row["user_recent_items__recent_ts"]
        if isinstance(recent_ts, (list, np.ndarray)):
            assert all(t * 1_000_000 < ts_s for t in recent_ts), "a sequence event at or after the row"
        expected = _expected(events, catalog, row)
        for name in names:
            assert _same(row[name], expected[name]), (name, row[name], expected[name])
            checked += 1
    assert checked > 0


def test_online_vector_equals_offline_vector_at_the_same_time(store_settings, curated):
    events, _ = curated
    now = snapshot_time(DAYS[-1]) + pd.Timedelta(hours=3)
    users = events[contract.USER_ID].drop_duplicates().head(3).tolist() + [10_000]  # one unknown user
    items = events[contract.ITEM_ID].drop_duplicates().head(7).tolist() + [99_999]  # one unknown item
    names = ranker_feature_names(store_settings)
    for user in users:
        online = online_ranker_features(store_settings, user, items, now=now)
        rows = pd.DataFrame({contract.USER_ID: user, contract.ITEM_ID: items, EVENT_TIMESTAMP: now})
        offline = historical_ranker_features(store_settings, rows)
        assert online[contract.ITEM_ID].tolist() == items
        assert (online[EVENT_TIMESTAMP] == now).all()
        for name in names:
            for a, b in zip(online[name], offline[name]):
                assert _same(
                    a,
                    None
                    if b is None or (np.isscalar(b) and pd.isna(b))
                    else (list(b) if isinstance(b, (list, np.ndarray)) else b),
                ), (user, name, a, b)


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
    names = ranker_feature_names(store_settings)
    assert list(joined.columns) == [*rows.columns, *names]
    assert joined["note"].tolist() == rows["note"].tolist()
    assert joined[contract.ITEM_ID].tolist() == rows[contract.ITEM_ID].tolist()

    def plain(value):
        return None if _same(value, None) else (list(value) if isinstance(value, np.ndarray) else value)

    # Each row equals the same row joined alone; a duplicated row equals its original.
    for i in (0, 4, 30, 31, len(rows) - 1):
        alone = historical_ranker_features(store_settings, rows.iloc[[i]])
        assert all(_same(joined[name].iloc[i], plain(alone[name].iloc[0])) for name in names), i
    assert all(_same(joined[name].iloc[4], plain(joined[name].iloc[len(rows) - 1])) for name in names)
    unknown_user, unknown_item = joined.iloc[30], joined.iloc[31]
    assert all(_same(unknown_user[n], None) for n in names if n.startswith("user_"))
    assert all(_same(unknown_item[n], None) for n in names if n.startswith("item_"))
    assert not _same(unknown_user["item_popularity__events_7d"], None)
    empty = historical_ranker_features(store_settings, rows.iloc[:0])
    assert list(empty.columns) == list(joined.columns) and len(empty) == 0


def test_the_service_reader_equals_the_plain_reader_and_forgets_items_after_a_materialization(tmp_path):
    """OnlineRankerFeatures keeps item rows between calls, yet gives exactly what
    online_ranker_features gives (as arrays the ranker encodes to the same batch), also
    after a new day is materialized."""
    from features.store import OnlineRankerFeatures, feature_store, online_recent_items
    from training import bst

    settings = Settings(home=tmp_path / "home")
    for part in simulate(CFG, settings.landing_dir):
        shutil.copytree(part, settings.curated_dir / part.name)
    for day in DAYS[:3]:
        materialize(settings, day.isoformat())
    reader = OnlineRankerFeatures(settings, check_every_s=0.0)
    now = pd.Timestamp("2025-01-04 12:00", tz="UTC")
    items = list(range(0, 50, 3)) + [99_999]
    names = ranker_feature_names(settings)
    scores = np.linspace(1.0, -1.0, len(items))

    def check(user: int) -> pd.DataFrame:
        expected = online_ranker_features(settings, user, items, now=now)
        got = reader(user, items, now=now)
        assert isinstance(got, bst.CandidateFeatures)
        frame = got.to_frame()
        key = [contract.USER_ID, contract.ITEM_ID, EVENT_TIMESTAMP]
        pd.testing.assert_frame_equal(frame[key], expected[key])
        for name in names:
            for a, b in zip(frame[name], expected[name]):
                assert _same(a, b), (user, name, a, b)
        vocab = bst.Vocabulary.build(range(0, 40), expected[bst.ITEM_CATEGORY].dropna().iloc[::2])  # some unknown
        ours = bst.encode_candidates(got, scores, vocab, seq_len=5)
        theirs = bst.encode(expected.assign(retrieval_score=scores), vocab, seq_len=5)
        for field in ("seq_items", "seq_categories", "seq_age", "target_item", "target_category", "dense"):
            assert torch.equal(getattr(ours, field), getattr(theirs, field)), field
        return frame

    assert reader.prefetch(items[:5] + items[:2]) == 5  # read once each, then kept
    assert reader.prefetch(items) == len(items) - 5
    assert reader.prefetch(items) == 0
    before = [check(user) for user in (1, 2, 1)]  # every item row comes from the cache
    # The service's recent-items read: the plain reader's answer, and its user read serves
    # the next call for that user only.
    assert reader.recent_items([1, 2]) == online_recent_items(settings, [1, 2])
    check(1)  # the last read was user 2's: user 1 is read again
    reader.recent_items([2])
    check(2)
    materialize(settings, DAYS[3].isoformat())
    feature_store(settings).refresh_registry()  # in a service: within the registry's cache TTL
    after = check(1)
    changed = after["item_popularity__events_1d"].tolist() != before[0]["item_popularity__events_1d"].tolist()
    assert changed, "day 4 should change some item's one-day counter"
    # The online store goes away and comes back: reads fail meanwhile, then recover.
    db = settings.feast_dir / "online_store.db"
    saved = db.read_bytes()
    db.write_bytes(b"")  # emptied in place: the open connection sees no tables
    with pytest.raises(Exception, match="no such table"):
        reader(1, items, now=now)
    db.write_bytes(saved)
    check(1)
