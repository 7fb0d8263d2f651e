"""Tests of the BST ranker's encoder (training.bst_encoding): frames and request features to batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from bst_rows import (
    NOW,
    VOCAB,
    assert_same_batch,
    candidates,
    category,
    frame,
    row,
)

from features.ranker_columns import (
    EVENT_TIMESTAMP,
    FEATURE_COLUMNS,
    ITEM_COUNTERS,
    ITEM_ID,
    RECENT_CATEGORIES,
    RECENT_ITEMS,
    RECENT_TS,
    RETRIEVAL_SCORE,
    USER_COUNTERS,
    USER_ID,
)
from training.bst_encoding import RankerBatch, dense_features, encode, encode_candidates
from training.bst_vocab import AGE_BUCKETS, DENSE_FEATURES, N_DENSE


def test_encode_left_pads_in_order_and_maps_targets():
    batch = encode(frame(row(103, [101, 102, 107]), row(999, [], item_category=None)), VOCAB, seq_len=5)
    assert len(batch) == 2
    assert batch.seq_items.tolist() == [[0, 0, 3, 4, 9], [0] * 5]
    assert batch.seq_categories.tolist() == [[0, 0, 3, 4, 3], [0] * 5]  # c1, c2, c1 -> 2 + k
    assert batch.seq_age[0, :2].tolist() == [0, 0] and (batch.seq_age[0, 2:] > 0).all()
    assert batch.target_item.tolist() == [5, 1] and batch.target_category.tolist() == [5, 1]
    assert all(t.dtype == torch.int64 for t in (batch.seq_items, batch.seq_age, batch.target_item))
    assert batch.dense.dtype == torch.float32 and batch.dense.shape == (2, N_DENSE)


@pytest.mark.parametrize("seq_len", [1, 3, 7])
def test_encode_truncation_keeps_the_most_recent(seq_len):
    history = list(range(100, 108))  # oldest first
    batch = encode(frame(row(100, history)), VOCAB, seq_len)
    expected = [VOCAB.items(np.array([i]))[0] for i in history[-seq_len:]]
    assert batch.seq_items[0].tolist() == expected


@pytest.mark.parametrize(
    "age_h, bucket",
    [
        (1 / 3600, 1),
        (0.5, 1),
        (0.99, 1),
        (1.0, 2),
        (2.5, 2),
        (3.0, 3),
        (7.0, 4),
        (100.0, 7),
        (2**14 - 1, AGE_BUCKETS - 1),
        (10**6, AGE_BUCKETS - 1),
    ],
)
def test_encode_age_buckets(age_h, bucket):
    assert 1 + min(AGE_BUCKETS - 2, int(np.floor(np.log2(1 + age_h)))) == bucket  # the documented formula
    batch = encode(frame(row(100, [101], [age_h])), VOCAB, seq_len=2)
    assert batch.seq_age[0].tolist() == [0, bucket]


def test_encode_drops_events_at_or_after_the_row_time():
    history, ages = [101, 102, 103, 104], [2.0, 1.0, 0.0, -1.0]  # the last two at and after NOW
    batch = encode(frame(row(100, history, ages)), VOCAB, seq_len=4)
    assert batch.seq_items[0].tolist() == [0, 0, 3, 4]
    # the same history scored an hour later keeps all four
    later = row(100, history, ages)
    later[EVENT_TIMESTAMP] = NOW + pd.Timedelta(hours=1.5)
    assert encode(frame(later), VOCAB, seq_len=4).seq_items[0].tolist() == [3, 4, 5, 6]


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA])
def test_encode_missing_features_are_zeros_and_flags(missing):
    empty = row(999, None, counters=missing, item_category=missing, score=missing)
    user_only = {
        **row(100, [101], counters=missing, item_category=missing, score=np.nan),
        **dict.fromkeys(USER_COUNTERS, 7),
    }
    item_only = {**row(100, None, counters=missing), **dict.fromkeys(ITEM_COUNTERS, 7)}
    category_only = row(100, None, counters=missing)
    full = row(100, [101], counters=0, score=-2.0)
    data = frame(empty, user_only, item_only, category_only, full)
    for column in [*USER_COUNTERS, *ITEM_COUNTERS]:  # Feast's nullable integers
        data[column] = data[column].astype("Int64")
    batch = encode(data, VOCAB, seq_len=3)
    dense = batch.dense.numpy()
    has_user, has_item, score = (
        DENSE_FEATURES.index(n) for n in ("has_user_features", "has_item_features", RETRIEVAL_SCORE)
    )
    assert np.isfinite(dense).all()
    assert (dense[0, :-2] == 0).all() and (batch.seq_items[0] == 0).all() and batch.target_category[0] == 1
    assert dense[1, has_user] == 1 and dense[1, has_item] == 0 and dense[1, score] == 0
    np.testing.assert_allclose(dense[1, :4], np.log1p(7))
    np.testing.assert_allclose(dense[1, 4:7], 0)
    assert dense[2, has_user] == 0 and dense[2, has_item] == 1
    np.testing.assert_allclose(dense[2, 4:7], np.log1p(7))
    assert dense[3, has_item] == 1 and dense[3, has_user] == 0  # a category alone is a snapshot
    assert (dense[4, :7] == 0).all() and dense[4, has_user] == dense[4, has_item] == 1 and dense[4, score] == -2


def test_encode_shared_copied_and_array_sequences_agree():
    history = [101, 102, 103, 104]
    shared = row(100, history)
    rows = [dict(shared, **{ITEM_ID: 100 + k}) for k in range(6)]  # one list object per column
    copied = [{**r, **{c: list(r[c]) for c in (RECENT_ITEMS, RECENT_CATEGORIES, RECENT_TS)}} for r in rows]
    arrays = [{**r, **{c: np.asarray(r[c]) for c in (RECENT_ITEMS, RECENT_CATEGORIES, RECENT_TS)}} for r in rows]
    later = dict(shared, **{EVENT_TIMESTAMP: NOW + pd.Timedelta(days=3)})  # same objects, another time
    other = row(100, [105, 101])  # another user's history
    for extra in ([], [later], [other]):
        a, b, c = (encode(frame(*r, *extra), VOCAB, seq_len=5) for r in (rows, copied, arrays))
        for field in dataclasses.fields(RankerBatch):
            assert torch.equal(getattr(a, field.name), getattr(b, field.name))
            assert torch.equal(getattr(a, field.name), getattr(c, field.name))
        assert (a.seq_items[:6] == torch.tensor([0, 3, 4, 5, 6])).all()
    a = encode(frame(*rows, later, other), VOCAB, seq_len=5)
    assert torch.equal(a.seq_items[-2], a.seq_items[0]) and not torch.equal(a.seq_age[-2], a.seq_age[0])
    assert a.seq_items[-1].tolist() == [0, 0, 0, 7, 3]


def test_encode_refuses_bad_frames():
    with pytest.raises(ValueError, match="lacks columns"):
        encode(frame(row(100)).drop(columns=[RETRIEVAL_SCORE]), VOCAB, 3)
    bad = row(100, [101, 102])
    bad[RECENT_TS] = bad[RECENT_TS][:1]
    with pytest.raises(ValueError, match="equal lengths"):
        encode(frame(bad), VOCAB, 3)
    empty = encode(frame(row(100)).iloc[:0], VOCAB, 4)
    assert len(empty) == 0 and empty.seq_items.shape == (0, 4) and empty.dense.shape == (0, N_DENSE)


def test_batch_subset():
    batch = encode(frame(*(row(100 + k, [101 + k]) for k in range(5))), VOCAB, seq_len=2)
    part = batch.subset(np.array([4, 1]))
    assert len(part) == 2 and part.target_item.tolist() == [batch.target_item[4], batch.target_item[1]]
    assert torch.equal(part.dense, batch.dense[[4, 1]])


def test_dense_rank_and_gap_are_taken_within_each_list():
    """Rank by retrieval score (0 = best) and score minus the list's best, per (user, time)."""
    lists = pd.DataFrame(
        {
            USER_ID: [1, 1, 1, 2, 2, 1],
            EVENT_TIMESTAMP: pd.to_datetime([NOW] * 5 + [NOW + pd.Timedelta(days=1)], utc=True),
            RETRIEVAL_SCORE: [0.5, 2.0, 1.0, -1.0, 3.0, 9.0],
        }
    )
    for column in FEATURE_COLUMNS:
        lists[column] = None
    dense = dense_features(lists)
    rank, gap = DENSE_FEATURES.index("log1p_retrieval_rank"), DENSE_FEATURES.index("retrieval_gap")
    np.testing.assert_allclose(dense[:, rank], np.log1p([2, 0, 1, 1, 0, 0]))
    np.testing.assert_allclose(dense[:, gap], [-1.5, 0, -1, -4, 0, 0])
    # One request (the serving path) gives what the grouped path gives for the same list.
    single = dense_features(lists.iloc[:3])
    np.testing.assert_allclose(single[:, [rank, gap]], dense[:3, [rank, gap]])


# The serving path: CandidateFeatures -> encode_candidates -------------------------------------
@pytest.mark.parametrize(
    "case",
    [
        "history",
        "no history",
        "empty history",
        "missing values",
        "ties",
        "one",
        "none",
        "long history",
        "sub-microsecond time",
    ],
)
def test_encode_candidates_equals_encode_of_its_frame(case):
    """The service's pandas-free encoder gives exactly the batch ``encode`` gives for the
    same rows as a frame (the form training and offline evaluation use)."""
    rng = np.random.default_rng(3)
    items, history, kwargs = [100 + k for k in range(12)] + [999], [101, 104, 150], {}
    scores = rng.normal(size=len(items))
    if case == "no history":
        history = None
    elif case == "empty history":
        history = []
    elif case == "missing values":
        counters = rng.integers(0, 5, size=(len(items), 3)).astype(np.float64)
        counters[2] = np.nan
        counters[5, 1] = np.nan
        kwargs = {
            "user_counters": (np.nan,) * 4,
            "item_counters": counters,
            "categories": [None, "c1", "nope", *(category(i) for i in items[3:])],
        }
        scores[4] = np.nan
    elif case == "ties":
        scores = np.round(scores)
    elif case == "one":
        items, scores = items[:1], scores[:1]
    elif case == "none":
        items, scores = [], scores[:0]
    elif case == "long history":
        history = [100 + k % 60 for k in range(50)]
    elif case == "sub-microsecond time":
        kwargs = {"at": NOW + pd.Timedelta(nanoseconds=1_500)}
    features = candidates(items, history, **kwargs)
    expected = encode(features.to_frame().assign(**{RETRIEVAL_SCORE: scores}), VOCAB, seq_len=8)
    assert_same_batch(encode_candidates(features, scores, VOCAB, seq_len=8), expected)


def test_candidate_features_refuse_misshapen_arrays():
    good = candidates([100, 101], [102])
    with pytest.raises(ValueError, match="user_counters"):
        dataclasses.replace(good, user_counters=np.zeros(3))
    with pytest.raises(ValueError, match="one per candidate"):
        dataclasses.replace(good, item_counters=np.zeros((3, 3)))
