"""The one online reader: no skew against the offline join, item rows cached correctly.

The session's store (``conftest.py``) is read online and joined point-in-time at the same
moment; the cache test materializes its own store day by day.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from ranker_store import CFG, DAYS, same

from features.historical import historical_ranker_features
from features.materialize import materialize
from features.online import OnlineFeatures
from features.ranker_columns import FEATURE_COLUMNS, ITEM_CATEGORY, CandidateFeatures
from features.store import feature_store
from features.tables import EVENT_TIMESTAMP, snapshot_time
from graphrec import contract, lake
from graphrec.settings import Settings
from ingest.simulator import simulate
from training.bst_encoding import encode, encode_candidates
from training.bst_vocab import Vocabulary

UNKNOWN_USER = 10_000


def test_online_vector_equals_offline_vector_at_the_same_time(store_settings, curated):
    events, _ = curated
    now = snapshot_time(DAYS[-1]) + pd.Timedelta(hours=3)
    users = events[contract.USER_ID].drop_duplicates().head(3).tolist() + [10_000]  # one unknown user
    items = events[contract.ITEM_ID].drop_duplicates().head(7).tolist() + [99_999]  # one unknown item
    names = FEATURE_COLUMNS
    reader = OnlineFeatures(store_settings)
    for user in users:
        online = reader(user, items, now=now).to_frame()
        rows = pd.DataFrame({contract.USER_ID: user, contract.ITEM_ID: items, EVENT_TIMESTAMP: now})
        offline = historical_ranker_features(store_settings, rows)
        assert online[contract.ITEM_ID].tolist() == items
        assert (online[EVENT_TIMESTAMP] == now).all()
        for name in names:
            for a, b in zip(online[name], offline[name]):
                assert same(
                    a,
                    None
                    if b is None or (np.isscalar(b) and pd.isna(b))
                    else (list(b) if isinstance(b, (list, np.ndarray)) else b),
                ), (user, name, a, b)


def test_recent_items_are_the_last_interactions_in_order(store_settings):
    reader = OnlineFeatures(store_settings)
    curated = store_settings.curated_dir
    events = lake.read_curated(curated, lake.list_partitions(curated)).sort_values(contract.EVENT_TS, kind="stable")
    users = events[contract.USER_ID].drop_duplicates().head(25).tolist()
    served = reader.recent_items([*users, UNKNOWN_USER])
    for user in users:
        history = events.loc[events[contract.USER_ID] == user, contract.ITEM_ID].tolist()
        assert served[user] == history[-50:]
    assert served[UNKNOWN_USER] == []
    assert reader.recent_items([]) == {}


def test_the_reader_keeps_item_rows_yet_equals_a_fresh_reader_and_forgets_items_after_a_materialization(tmp_path):
    """A reader keeps item rows between calls, yet gives exactly what a fresh reader (which
    reads every row from the store) gives, as arrays the ranker encodes to the same batch
    as their frame, also after a new day is materialized."""
    settings = Settings(home=tmp_path / "home")
    for part in simulate(CFG, settings.landing_dir):
        shutil.copytree(part, settings.curated_dir / part.name)
    for day in DAYS[:3]:
        materialize(settings, day.isoformat())
    reader = OnlineFeatures(settings, check_every_s=0.0)
    now = pd.Timestamp("2025-01-04 12:00", tz="UTC")
    items = list(range(0, 50, 3)) + [99_999]
    names = FEATURE_COLUMNS
    scores = np.linspace(1.0, -1.0, len(items))

    def check(user: int) -> pd.DataFrame:
        expected = OnlineFeatures(settings)(user, items, now=now).to_frame()
        got = reader(user, items, now=now)
        assert isinstance(got, CandidateFeatures)
        frame = got.to_frame()
        key = [contract.USER_ID, contract.ITEM_ID, EVENT_TIMESTAMP]
        pd.testing.assert_frame_equal(frame[key], expected[key])
        for name in names:
            for a, b in zip(frame[name], expected[name]):
                assert same(a, b), (user, name, a, b)
        vocab = Vocabulary.build(range(0, 40), expected[ITEM_CATEGORY].dropna().iloc[::2])  # some unknown
        ours = encode_candidates(got, scores, vocab, seq_len=5)
        theirs = encode(expected.assign(retrieval_score=scores), vocab, seq_len=5)
        for field in ("seq_items", "seq_categories", "seq_age", "target_item", "target_category", "dense"):
            assert torch.equal(getattr(ours, field), getattr(theirs, field)), field
        return frame

    assert reader.prefetch(items[:5] + items[:2]) == 5  # read once each, then kept
    assert reader.prefetch(items) == len(items) - 5
    assert reader.prefetch(items) == 0
    before = [check(user) for user in (1, 2, 1)]  # every item row comes from the cache
    # The recent-items read: a fresh reader's answer, and its user read serves the next
    # call for that user only.
    assert reader.recent_items([1, 2]) == OnlineFeatures(settings).recent_items([1, 2])
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
