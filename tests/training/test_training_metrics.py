"""training.metrics against a brute-force, one-user-at-a-time implementation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from training_sim import TINY, curated_world

from graphrec import contract
from training.data import load_window, temporal_split
from training.embeddings import ModelEmbeddings
from training.metrics import build_ranking_task, evaluate_embeddings, popularity_model
from training.topk import top_k_indices


def _pairs(rows):
    return pd.DataFrame(
        {
            contract.USER_ID: np.array([r[0] for r in rows], np.int64),
            contract.ITEM_ID: np.array([r[1] for r in rows], np.int64),
        }
    )


def brute_force(model: ModelEmbeddings, history: pd.DataFrame, holdout: pd.DataFrame, k: int):
    """The protocol written out plainly: population, masking and metrics per user."""
    seen: dict[int, set[int]] = {}
    for u, i in history[[contract.USER_ID, contract.ITEM_ID]].itertuples(index=False):
        seen.setdefault(int(u), set()).add(int(i))
    test: dict[int, set[int]] = {}
    for u, i in holdout[[contract.USER_ID, contract.ITEM_ID]].itertuples(index=False):
        if int(u) in seen and int(i) not in seen[int(u)]:
            test.setdefault(int(u), set()).add(int(i))
    rows = {int(u): r for r, u in enumerate(model.user_ids)}
    recalls, ndcgs = [], []
    for user in sorted(test):
        if user not in rows:
            recalls.append(0.0)
            ndcgs.append(0.0)
            continue
        vec = model.user_emb[rows[user]]
        scored = [
            (float(np.float32(vec @ model.item_emb[j])), int(item))
            for j, item in enumerate(model.item_ids)
            if int(item) not in seen[user]
        ]
        ranked = [item for _, item in sorted(scored, key=lambda s: -s[0])[:k]]
        hits = [item in test[user] for item in ranked]
        recalls.append(sum(hits) / len(test[user]))
        dcg = sum(1 / math.log2(r + 2) for r, hit in enumerate(hits) if hit)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(test[user]))))
        ndcgs.append(dcg / idcg)
    return float(np.mean(recalls)), float(np.mean(ndcgs)), len(test)


def brute_force_coverage(model: ModelEmbeddings, history: pd.DataFrame, holdout: pd.DataFrame, k: int) -> set[int]:
    """The items in some evaluated, known user's top ``k`` of unseen items (external ids)."""
    seen = history.groupby(contract.USER_ID)[contract.ITEM_ID].agg(set).to_dict()
    task = build_ranking_task(history, holdout)
    rows = {int(u): r for r, u in enumerate(model.user_ids)}
    shown: set[int] = set()
    for user in task.user_ids.tolist():
        if user not in rows:
            continue
        scores = model.item_emb @ model.user_emb[rows[user]]
        unseen = [(float(s), int(i)) for s, i in zip(scores, model.item_ids) if int(i) not in seen[user]]
        shown |= {item for _, item in sorted(unseen, key=lambda s: -s[0])[:k]}
    return shown


def test_build_ranking_task_population_and_masks():
    history = _pairs([(1, 10), (1, 11), (2, 10), (3, 12)])
    holdout = _pairs([(1, 10), (1, 13), (1, 13), (2, 10), (4, 10), (3, 99)])
    task = build_ranking_task(history, holdout)
    # user 2 only repeats a history item, user 4 has no history: neither is evaluated.
    assert task.user_ids.tolist() == [1, 3]
    assert task.n_test.tolist() == [1, 1]
    assert task.test_items.tolist() == [13, 99]
    assert task.seen_items[task.seen_indptr[0] : task.seen_indptr[1]].tolist() == [10, 11]


def test_hand_computed_example():
    # One user, history {10}; test {11, 12}; item scores 10 > 11 > 13 > 12.
    model = ModelEmbeddings(
        np.array([1]),
        np.array([10, 11, 12, 13]),
        np.ones((1, 1), np.float32),
        np.array([[4.0], [3.0], [1.0], [2.0]], np.float32),
    )
    task = build_ranking_task(_pairs([(1, 10)]), _pairs([(1, 11), (1, 12)]))
    m = evaluate_embeddings(model, task, k=2)  # ranked (10 masked): 11, 13
    assert m.recall == pytest.approx(0.5)
    assert m.ndcg == pytest.approx(1.0 / (1.0 + 1.0 / math.log2(3)))
    m = evaluate_embeddings(model, task, k=3)  # 11, 13, 12
    assert m.recall == pytest.approx(1.0)
    assert m.ndcg == pytest.approx((1.0 + 1.0 / math.log2(4)) / (1.0 + 1.0 / math.log2(3)))


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    settings = curated_world(tmp_path_factory.mktemp("metrics"), TINY)
    window = load_window(settings, TINY.day(TINY.days), 14)
    return temporal_split(window.interactions, 1)


def _random_model(history, holdout, *, drop_users=0, drop_items=0, extra_items=0, seed=0, dim=8):
    """Random embeddings over a shuffled subset of the ids (plus unknown extra items)."""
    rng = np.random.default_rng(seed)
    users = rng.permutation(np.unique(history[contract.USER_ID]))[drop_users:]
    items = rng.permutation(np.unique(pd.concat([history, holdout])[contract.ITEM_ID]))[drop_items:]
    items = np.concatenate([items, np.arange(10_000, 10_000 + extra_items)])
    return ModelEmbeddings(
        users.astype(np.int64),
        items.astype(np.int64),
        rng.normal(size=(len(users), dim)).astype(np.float32),
        rng.normal(size=(len(items), dim)).astype(np.float32),
    )


@pytest.mark.parametrize("k", [1, 5, 20, 500])
@pytest.mark.parametrize("drop_users, drop_items, extra_items", [(0, 0, 0), (15, 10, 5)])
@pytest.mark.parametrize("batch_size", [7, 1024])
def test_matches_brute_force(tiny_split, k, drop_users, drop_items, extra_items, batch_size):
    history, holdout = tiny_split
    model = _random_model(history, holdout, drop_users=drop_users, drop_items=drop_items, extra_items=extra_items)
    task = build_ranking_task(history, holdout)
    got = evaluate_embeddings(model, task, k, batch_size=batch_size)
    recall, ndcg, n_users = brute_force(model, history, holdout, k)
    assert got.n_users == n_users > 0
    assert got.recall == pytest.approx(recall, abs=1e-12)
    assert got.ndcg == pytest.approx(ndcg, abs=1e-12)
    assert 0.0 <= got.recall <= 1.0 and 0.0 <= got.ndcg <= 1.0
    assert got.n_users_known == n_users - np.isin(task.user_ids, model.user_ids, invert=True).sum()
    shown = brute_force_coverage(model, history, holdout, k)
    assert got.n_items_recommended == len(shown) > 0
    assert got.coverage == pytest.approx(len(shown) / len(model.item_ids))


def test_coverage_counts_distinct_shown_items_and_skips_masked_positions():
    # User 1 saw 10 and 11; user 2 saw 10. Scores 10 > 11 > 12 > 13 for both.
    model = ModelEmbeddings(
        np.array([1, 2]),
        np.array([10, 11, 12, 13, 14]),
        np.ones((2, 1), np.float32),
        np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], np.float32),
    )
    task = build_ranking_task(_pairs([(1, 10), (1, 11), (2, 10)]), _pairs([(1, 12), (2, 13)]))
    m = evaluate_embeddings(model, task, k=2)  # user 1: 12, 13; user 2: 11, 12
    assert (m.n_items_recommended, m.coverage) == (3, 3 / 5)
    # Three items known to user 1 only; k larger than what is left: masked slots are not "shown".
    small = ModelEmbeddings(
        np.array([1]), np.array([10, 11, 12]), np.ones((1, 1), np.float32), np.array([[3.0], [2.0], [1.0]], np.float32)
    )
    m = evaluate_embeddings(small, build_ranking_task(_pairs([(1, 10), (1, 11)]), _pairs([(1, 12)])), k=3)
    assert (m.n_items_recommended, m.coverage) == (1, 1 / 3)
    assert m.as_dict()["coverage_at_3"] == pytest.approx(1 / 3) and m.as_dict()["n_items_recommended"] == 1


def test_coverage_is_zero_when_nothing_is_scored():
    model = ModelEmbeddings(np.array([99]), np.array([10]), np.ones((1, 1), np.float32), np.ones((1, 1), np.float32))
    m = evaluate_embeddings(model, build_ranking_task(_pairs([(1, 10)]), _pairs([(1, 11)])))
    assert (m.n_items_recommended, m.coverage, m.n_users_known) == (0, 0.0, 0)
    assert set(m.as_dict()) == {
        "recall_at_20",
        "ndcg_at_20",
        "n_eval_users",
        "n_eval_users_known",
        "coverage_at_20",
        "n_items_recommended",
    }


def test_unknown_users_score_zero_and_count(tiny_split):
    history, holdout = tiny_split
    task = build_ranking_task(history, holdout)
    full = _random_model(history, holdout)
    half = ModelEmbeddings(full.user_ids[::2], full.item_ids, full.user_emb[::2], full.item_emb)
    m_full, m_half = evaluate_embeddings(full, task), evaluate_embeddings(half, task)
    assert m_half.n_users == m_full.n_users
    unknown = ~np.isin(task.user_ids, half.user_ids)
    assert unknown.any() and (m_half.recall_per_user[unknown] == 0).all()
    np.testing.assert_allclose(m_half.recall_per_user[~unknown], m_full.recall_per_user[~unknown])


def test_popularity_ranks_by_training_count(tiny_split):
    history, holdout = tiny_split
    pop = popularity_model(history)
    counts = history.groupby(contract.ITEM_ID).size()
    order = pop.item_ids[np.argsort(-pop.item_emb[:, 0], kind="stable")]
    assert (np.diff(counts.loc[order].to_numpy()) <= 0).all()
    task = build_ranking_task(history, holdout)
    got = evaluate_embeddings(pop, task, 20)
    recall, ndcg, _ = brute_force(pop, history, holdout, 20)
    assert got.recall == pytest.approx(recall) and got.ndcg == pytest.approx(ndcg)


def test_top_k_indices_orders_best_first():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [3.0, 1.0, 2.0, 0.0]], np.float32)
    assert top_k_indices(scores, 3).tolist() == [[1, 3, 2], [0, 2, 1]]
    assert top_k_indices(scores, 10).shape == (2, 4)


def test_fast_top_k_equals_the_exact_selection_with_ties_and_masks():
    from training.topk import _top_k_exact, top_k_indices

    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.integers(0, 5, size=(7, 30)).astype(np.float32)  # many ties
        scores[rng.random(scores.shape) < 0.3] = -np.inf  # masked history items
        k = int(rng.integers(1, 31))
        np.testing.assert_array_equal(top_k_indices(scores, k), _top_k_exact(scores, k))
    wide = rng.standard_normal((64, 5000)).astype(np.float32)
    np.testing.assert_array_equal(top_k_indices(wide, 20), _top_k_exact(wide, 20))
