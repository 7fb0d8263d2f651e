"""Tests of the BST ranker: vocabulary, encoder, model behaviour, training and persistence."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from training import bst
from training.bst import (
    AGE_BUCKETS,
    BST,
    DENSE_FEATURES,
    FRAME_COLUMNS,
    ITEM_CATEGORY,
    ITEM_COUNTERS,
    N_DENSE,
    RECENT_CATEGORIES,
    RECENT_ITEMS,
    RECENT_TS,
    RETRIEVAL_SCORE,
    USER_COUNTERS,
    BSTTrainConfig,
    RankerBatch,
    Vocabulary,
    auc,
    build_bst,
    encode,
    fit_bst,
    load_ranker,
    predict,
    save_ranker,
)

NOW = pd.Timestamp("2024-03-01 12:00:00", tz="UTC")
T = int(NOW.timestamp())
HOUR = 3600
CATEGORIES = [f"c{k}" for k in range(6)]
AUTO = object()  # row(): the candidate's own category
VOCAB = Vocabulary.build(np.arange(100, 160), CATEGORIES)  # item 100 + k has category c{k % 6}


def category(item: int) -> str:
    return CATEGORIES[(item - 100) % len(CATEGORIES)]


def row(
    item: int = 100,
    history: list[int] | None = None,
    ages_h: list[float] | None = None,
    *,
    user: int = 1,
    at: pd.Timestamp = NOW,
    counters: float | None = 3,
    item_category: object = AUTO,
    score: float | None = 0.5,
) -> dict:
    """One frame row; ``history`` oldest first with its ages in hours (default: 1 h apart, newest 1 h old)."""
    out = {
        bst.USER_ID: user,
        bst.ITEM_ID: item,
        bst.EVENT_TIMESTAMP: at,
        RETRIEVAL_SCORE: score,
        ITEM_CATEGORY: category(item) if item_category is AUTO else item_category,
    }
    out.update(dict.fromkeys([*USER_COUNTERS, *ITEM_COUNTERS], counters))
    if history is None:
        out.update(dict.fromkeys([RECENT_ITEMS, RECENT_CATEGORIES, RECENT_TS]))
    else:
        ages = ages_h if ages_h is not None else [len(history) - k for k in range(len(history))]
        at_s = int(at.timestamp())
        out[RECENT_ITEMS] = list(history)
        out[RECENT_CATEGORIES] = [category(i) for i in history]
        out[RECENT_TS] = [at_s - round(a * HOUR) for a in ages]
    return out


def frame(*rows: dict) -> pd.DataFrame:
    out = pd.DataFrame(list(rows), columns=FRAME_COLUMNS)
    out[bst.EVENT_TIMESTAMP] = pd.to_datetime(out[bst.EVENT_TIMESTAMP], utc=True)
    return out


# Vocabulary ----------------------------------------------------------------------------------
def test_vocabulary_indices_unknowns_and_round_trip():
    vocab = Vocabulary.build([30, 10, 20, 10], ["b", "a", None, "b", float("nan")])
    assert (vocab.n_items, vocab.n_categories) == (3 + 2, 2 + 2)
    assert vocab.items(np.array([10, 20, 30, 99, -1])).tolist() == [2, 3, 4, 1, 1]
    assert vocab.items(np.array([[30], [5]])).tolist() == [[4], [1]]
    assert vocab.categories(["a", "b", "zz", None, np.nan, pd.NA]).tolist() == [2, 3, 1, 1, 1, 1]
    restored = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored == vocab and restored.to_dict() == vocab.to_dict()
    assert restored.items(np.array([20])).tolist() == [3]


def test_empty_vocabulary_maps_everything_to_unknown():
    vocab = Vocabulary.build([], [])
    assert (vocab.n_items, vocab.n_categories) == (2, 2)
    assert vocab.items(np.array([1, 2])).tolist() == [1, 1] and vocab.categories(["a"]).tolist() == [1]


@pytest.mark.parametrize("ids, names", [([2, 1], ["a"]), ([1, 1], ["a"]), ([1], ["b", "a"])])
def test_vocabulary_rejects_unsorted_or_duplicate_entries(ids, names):
    with pytest.raises(ValueError, match="sorted"):
        Vocabulary(np.array(ids), tuple(names))


# Encoder -------------------------------------------------------------------------------------
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
    later[bst.EVENT_TIMESTAMP] = NOW + pd.Timedelta(hours=1.5)
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
    rows = [dict(shared, **{bst.ITEM_ID: 100 + k}) for k in range(6)]  # one list object per column
    copied = [{**r, **{c: list(r[c]) for c in (RECENT_ITEMS, RECENT_CATEGORIES, RECENT_TS)}} for r in rows]
    arrays = [{**r, **{c: np.asarray(r[c]) for c in (RECENT_ITEMS, RECENT_CATEGORIES, RECENT_TS)}} for r in rows]
    later = dict(shared, **{bst.EVENT_TIMESTAMP: NOW + pd.Timedelta(days=3)})  # same objects, another time
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


# Model ---------------------------------------------------------------------------------------
def random_batch(
    n: int,
    seq_len: int,
    generator: torch.Generator,
    n_items: int = VOCAB.n_items,
    n_categories: int = VOCAB.n_categories,
) -> RankerBatch:
    """Rows with random histories of random lengths (0 to seq_len), left-padded."""
    lengths = torch.randint(0, seq_len + 1, (n,), generator=generator)
    real = torch.arange(seq_len)[None, :] >= (seq_len - lengths)[:, None]
    age = torch.randint(1, AGE_BUCKETS, (n, seq_len), generator=generator) * real
    return RankerBatch(
        seq_items=torch.randint(1, n_items, (n, seq_len), generator=generator) * real,
        seq_categories=torch.randint(1, n_categories, (n, seq_len), generator=generator) * real,
        seq_age=age,
        target_item=torch.randint(1, n_items, (n,), generator=generator),
        target_category=torch.randint(1, n_categories, (n,), generator=generator),
        dense=torch.randn(n, N_DENSE, generator=generator),
    )


@pytest.mark.parametrize("seq_len, dim, heads, hidden", [(1, 8, 1, ()), (5, 16, 2, (8,)), (20, 32, 4, (64, 32))])
def test_model_output_shape_and_config(seq_len, dim, heads, hidden):
    model = build_bst(VOCAB, seq_len=seq_len, dim=dim, heads=heads, hidden=hidden)
    logits = model(random_batch(7, seq_len, torch.Generator().manual_seed(0)))
    assert logits.shape == (7,) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    config = json.loads(json.dumps(model.config()))
    rebuilt = BST(**{**config, "hidden": tuple(config["hidden"])})
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]
    with pytest.raises(ValueError, match="the model wants"):
        model(random_batch(2, seq_len + 1, torch.Generator().manual_seed(0)))


def test_model_ignores_what_lies_in_padded_positions():
    model = build_bst(VOCAB, seq_len=6, dim=16).eval()
    generator = torch.Generator().manual_seed(1)
    batch = random_batch(64, 6, generator)
    padding = batch.seq_age == 0
    assert padding.any() and (~padding).any()
    noisy = dataclasses.replace(
        batch,
        seq_items=torch.where(
            padding, torch.randint(1, VOCAB.n_items, padding.shape, generator=generator), batch.seq_items
        ),
        seq_categories=torch.where(
            padding, torch.randint(1, VOCAB.n_categories, padding.shape, generator=generator), batch.seq_categories
        ),
    )
    with torch.no_grad():
        torch.testing.assert_close(model(noisy), model(batch), rtol=0, atol=1e-6)
        changed = dataclasses.replace(batch, seq_items=torch.where(padding, batch.seq_items, batch.seq_items % 7 + 1))
        assert not torch.allclose(model(changed), model(batch))  # real positions do count


def test_model_scores_an_empty_history_in_training_and_eval():
    model = build_bst(VOCAB, seq_len=4, dim=8)
    batch = encode(frame(row(100, None), row(101, [])), VOCAB, seq_len=4)
    assert (batch.seq_age == 0).all()
    logits = model.train()(batch)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(batch)).all()


def test_batch_of_one_equals_its_row_in_a_batch():
    model = build_bst(VOCAB, seq_len=5, dim=16)
    model.fit_dense_scaling(torch.randn(50, N_DENSE) * 3 + 1)
    batch = random_batch(33, 5, torch.Generator().manual_seed(2))
    together = predict(model, batch)
    alone = np.concatenate([predict(model, batch.subset([k])) for k in range(len(batch))])
    np.testing.assert_allclose(alone, together, rtol=0, atol=1e-6)
    np.testing.assert_allclose(predict(model, batch, batch_size=4), together, rtol=0, atol=1e-6)
    assert model.training  # predict restores the mode it found


def test_dense_scaling_standardises_and_keeps_constant_columns():
    model = build_bst(VOCAB, seq_len=2, dim=8)
    dense = torch.randn(500, N_DENSE, generator=torch.Generator().manual_seed(3)) * 5 + 2
    dense[:, 3] = 4.0
    model.fit_dense_scaling(dense)
    scaled = (dense - model.dense_mean) / model.dense_std
    torch.testing.assert_close(scaled.mean(0), torch.zeros(N_DENSE), atol=1e-5, rtol=0)
    assert model.dense_std[3] == 1 and (scaled[:, 3] == 0).all()


# Training ------------------------------------------------------------------------------------
def synthetic_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows labelled 1 iff the candidate's category is that of the user's most recent item.

    Histories of 0-6 random items, the newest under an hour old and the others 2-200 h; the
    candidate shares the newest item's category half of the time. Dense features are noise.
    """
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for k in range(n):
        length = int(rng.integers(0, 7))
        history = rng.integers(100, 160, length).tolist()
        ages = sorted(rng.uniform(2, 200, length - 1), reverse=True) + [rng.uniform(0.05, 0.9)] if length else []
        if length and rng.random() < 0.5:
            candidate = 100 + (history[-1] - 100) % 6 + 6 * int(rng.integers(0, 10))
        else:
            candidate = int(rng.integers(100, 160))
        label = bool(length) and category(candidate) == category(history[-1])
        rows.append(row(candidate, history, ages, user=k, counters=int(rng.integers(0, 50)), score=float(rng.normal())))
        labels.append(float(label))
    return frame(*rows), np.asarray(labels, dtype=np.float32)


@pytest.fixture(scope="module")
def synthetic() -> dict:
    train, train_labels = synthetic_frame(3000, seed=0)
    valid, valid_labels = synthetic_frame(1000, seed=1)
    return {"train": (encode(train, VOCAB, 6), train_labels), "valid": (encode(valid, VOCAB, 6), valid_labels)}


SMALL = {"seq_len": 6, "dim": 16, "heads": 2, "hidden": (32,), "dropout": 0.0}


def test_fit_learns_a_rule_that_needs_the_sequence(synthetic):
    batch, labels = synthetic["train"]
    model = build_bst(VOCAB, seed=0, **SMALL)
    config = BSTTrainConfig(epochs=25, batch_size=128, learning_rate=3e-3, seed=0, patience=5, num_threads=1)
    result = fit_bst(model, batch, labels, config, valid=synthetic["valid"])
    valid_auc = auc(synthetic["valid"][1], predict(model, synthetic["valid"][0]))
    assert valid_auc > 0.9, result
    assert result.losses[-1] < result.losses[0]
    assert valid_auc == pytest.approx(max(result.valid_auc))  # early stopping keeps the best epoch's weights
    assert result.best_epoch == 1 + int(np.argmax(result.valid_auc)) and not model.training


def test_without_the_sequence_the_rule_is_not_learnable(synthetic):
    def blind(batch: RankerBatch) -> RankerBatch:
        empty = torch.zeros_like(batch.seq_items)
        return dataclasses.replace(batch, seq_items=empty, seq_categories=empty, seq_age=empty)

    (batch, labels), (valid, valid_labels) = synthetic["train"], synthetic["valid"]
    model = build_bst(VOCAB, seed=0, **SMALL)
    fit_bst(model, blind(batch), labels, BSTTrainConfig(epochs=6, batch_size=128, learning_rate=3e-3, num_threads=1))
    assert auc(valid_labels, predict(model, blind(valid))) < 0.7


def test_fit_is_deterministic_and_leaves_global_state_alone(synthetic):
    batch, labels = synthetic["train"]
    sub = batch.subset(torch.arange(600)), labels[:600]
    config = BSTTrainConfig(epochs=2, batch_size=64, seed=7, num_threads=1)
    threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
    runs = []
    for seed in (7, 7, 8):
        model = build_bst(VOCAB, seed=3, **{**SMALL, "dropout": 0.1})
        result = fit_bst(model, *sub, dataclasses.replace(config, seed=seed))
        runs.append((model.state_dict(), predict(model, synthetic["valid"][0]), result.losses))
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng_state)
    assert all(torch.equal(runs[0][0][k], runs[1][0][k]) for k in runs[0][0])
    assert np.array_equal(runs[0][1], runs[1][1]) and runs[0][2] == runs[1][2]
    assert not np.array_equal(runs[0][1], runs[2][1])


def test_fit_refuses_bad_inputs(synthetic):
    batch, labels = synthetic["train"]
    model = build_bst(VOCAB, **SMALL)
    with pytest.raises(ValueError, match="labels for"):
        fit_bst(model, batch, labels[:-1])
    with pytest.raises(ValueError, match="0 or 1"):
        fit_bst(model, batch, labels * 2)
    with pytest.raises(ValueError, match="both classes"):
        fit_bst(model, batch, labels, valid=(synthetic["valid"][0], np.zeros(len(synthetic["valid"][1]))))


def test_auc():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.9])) == 1.0
    assert auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert np.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


# Persistence ---------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    model = build_bst(VOCAB, seq_len=5, dim=16)
    model.fit_dense_scaling(torch.randn(40, N_DENSE) + 3)
    batch = random_batch(20, 5, torch.Generator().manual_seed(4))
    directory = save_ranker(model, VOCAB, tmp_path / "ranker", extra={"valid_auc": 0.93, "run_id": "abc"})
    assert sorted(p.name for p in directory.iterdir()) == ["ranker.json", "ranker.pt"]
    assert set(torch.load(directory / "ranker.pt", weights_only=True)) == set(model.state_dict())
    loaded, vocab, extra = load_ranker(directory)
    assert vocab == VOCAB and extra == {"valid_auc": 0.93, "run_id": "abc"} and not loaded.training
    assert loaded.config() == model.config() and json.loads((directory / "ranker.json").read_text())["seq_len"] == 5
    assert np.array_equal(predict(loaded, batch), predict(model, batch))
    with pytest.raises(ValueError, match="does not match"):
        save_ranker(model, Vocabulary.build([1], []), tmp_path / "other")


def test_dense_rank_and_gap_are_taken_within_each_list():
    """Rank by retrieval score (0 = best) and score minus the list's best, per (user, time)."""
    lists = pd.DataFrame(
        {
            bst.USER_ID: [1, 1, 1, 2, 2, 1],
            bst.EVENT_TIMESTAMP: pd.to_datetime([NOW] * 5 + [NOW + pd.Timedelta(days=1)], utc=True),
            bst.RETRIEVAL_SCORE: [0.5, 2.0, 1.0, -1.0, 3.0, 9.0],
        }
    )
    for column in bst.FEATURE_COLUMNS:
        lists[column] = None
    dense = bst.dense_features(lists)
    rank, gap = DENSE_FEATURES.index("log1p_retrieval_rank"), DENSE_FEATURES.index("retrieval_gap")
    np.testing.assert_allclose(dense[:, rank], np.log1p([2, 0, 1, 1, 0, 0]))
    np.testing.assert_allclose(dense[:, gap], [-1.5, 0, -1, -4, 0, 0])
    # One request (the serving path) gives what the grouped path gives for the same list.
    single = bst.dense_features(lists.iloc[:3])
    np.testing.assert_allclose(single[:, [rank, gap]], dense[:3, [rank, gap]])


def test_candidate_output_equals_the_whole_block_at_the_last_position():
    torch.manual_seed(0)
    model = bst.build_bst(VOCAB, seed=3, seq_len=6).eval()
    tokens = torch.randn(9, 7, model.dim)
    padding = torch.zeros(9, 7, dtype=torch.bool)
    padding[:4, :3] = True  # left padding of some rows; the candidate (last) is never padded
    padding[5, :6] = True  # an empty history
    with torch.no_grad():
        whole = model.block(tokens, src_key_padding_mask=padding)[:, -1]
        alone = model.candidate_output(tokens, padding)
    torch.testing.assert_close(alone, whole, rtol=1e-5, atol=1e-5)


# The serving path: CandidateFeatures -> encode_candidates -> RequestScorer ---------------------
def candidates(
    items: list[int],
    history: list[int] | None,
    *,
    at: pd.Timestamp = NOW,
    user_counters=(3, 0, 1, 2),
    item_counters: np.ndarray | None = None,
    categories: list | None = None,
) -> bst.CandidateFeatures:
    n = len(items)
    counters = np.arange(n * 3, dtype=np.float64).reshape(n, 3) if item_counters is None else item_counters
    category_cells = np.empty(n, dtype=object)
    category_cells[:] = [category(i) for i in items] if categories is None else categories
    at_s = int(at.timestamp())
    return bst.CandidateFeatures(
        user_id=7,
        time=at,
        item_ids=np.asarray(items, dtype=np.int64),
        user_counters=np.asarray(user_counters, dtype=np.float64),
        item_counters=counters,
        item_category=category_cells,
        recent_items=None if history is None else list(history),
        recent_categories=None if history is None else [category(i) for i in history],
        recent_ts=None if history is None else [at_s - (len(history) - k) * HOUR for k in range(len(history))],
    )


def assert_same_batch(a: RankerBatch, b: RankerBatch) -> None:
    for field in dataclasses.fields(RankerBatch):
        assert torch.equal(getattr(a, field.name), getattr(b, field.name)), field.name


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
    assert_same_batch(bst.encode_candidates(features, scores, VOCAB, seq_len=8), expected)


def test_candidate_features_refuse_misshapen_arrays():
    good = candidates([100, 101], [102])
    with pytest.raises(ValueError, match="user_counters"):
        dataclasses.replace(good, user_counters=np.zeros(3))
    with pytest.raises(ValueError, match="one per candidate"):
        dataclasses.replace(good, item_counters=np.zeros((3, 3)))


def test_short_and_long_category_lookups_agree():
    values = ["c0", "c5", "zz", None, np.nan, "c3", 4] * 200  # 1400 values: the long path
    long = VOCAB.categories(values)
    short = np.concatenate([VOCAB.categories(values[k : k + 7]) for k in range(0, len(values), 7)])
    assert np.array_equal(long, short)
    assert long[:7].tolist() == [2, 7, 1, 1, 1, 5, 1]


@pytest.mark.parametrize("trace", [True, False])
def test_request_scorer_equals_predict_for_any_rows_and_needs_eval_mode(trace):
    """The shared-history path (traced or not) holds for other row counts and padding than
    it was traced on; ``__call__`` scores any batch."""
    model = build_bst(VOCAB, seed=5, seq_len=8, dim=16, heads=2, hidden=(8,))
    with torch.no_grad():  # a non-trivial dense scaling, as after training
        model.dense_mean.normal_(generator=torch.Generator().manual_seed(0))
        model.dense_std.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="eval mode"):
        bst.RequestScorer(model)  # a fresh model is in training mode: dropout
    model.eval()
    scorer = bst.RequestScorer(model, trace=trace)
    assert (scorer.traced is not None) == trace
    for n, history in [(30, [101, 107, 133]), (1, None), (7, []), (120, [100 + k % 60 for k in range(20)]), (0, [101])]:
        features = candidates([100 + k % 60 for k in range(n)], history)
        batch = bst.encode_candidates(features, np.linspace(2, -1, n), VOCAB, seq_len=8)
        expected = predict(model, batch)
        for got in (scorer.shared(batch), scorer(batch)):
            assert got.dtype == np.float32 and got.shape == (n,)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_shared_history_logits_equal_the_forward_of_the_repeated_history():
    model = build_bst(VOCAB, seed=2, seq_len=6, dim=16, heads=4, hidden=(8,)).eval()
    generator = torch.Generator().manual_seed(4)
    for length in (0, 1, 6):
        one = random_batch(1, 6, generator)
        lengths = torch.arange(6) >= 6 - length
        n = 9
        batch = RankerBatch(
            seq_items=(one.seq_items * lengths).expand(n, -1),
            seq_categories=(one.seq_categories * lengths).expand(n, -1),
            seq_age=(torch.randint(1, AGE_BUCKETS, (6,), generator=generator) * lengths).expand(n, -1),
            target_item=torch.randint(1, VOCAB.n_items, (n,), generator=generator),
            target_category=torch.randint(1, VOCAB.n_categories, (n,), generator=generator),
            dense=torch.randn(n, N_DENSE, generator=generator),
        )
        with torch.no_grad():
            shared = model.shared_history_logits(
                batch.seq_items[0],
                batch.seq_categories[0],
                batch.seq_age[0],
                batch.target_item,
                batch.target_category,
                batch.dense,
            )
            torch.testing.assert_close(shared, model(batch), rtol=0, atol=1e-5)
