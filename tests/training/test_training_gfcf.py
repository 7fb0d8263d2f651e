"""GF-CF against its formula computed densely, and through the shared evaluation code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.embeddings import ModelEmbeddings
from training.gfcf import fit_gfcf
from training.metrics import build_ranking_task, evaluate_embeddings, evaluate_scorer, popularity_model

R = np.array(
    [
        [1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [1, 0, 1, 1, 0],
        [0, 0, 0, 1, 1],
    ],
    dtype=np.float64,
)


def dense_gfcf(r: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """s = R R̃ᵀR̃ + alpha R D_I^{-1/2} V_k V_kᵀ D_I^{1/2}, written out densely."""
    d_u = np.diag(r.sum(1) ** -0.5)
    d_i = np.diag(r.sum(0) ** -0.5)
    r_norm = d_u @ r @ d_i
    linear = r @ r_norm.T @ r_norm
    if k == 0:
        return linear
    _, _, vt = np.linalg.svd(r_norm)
    v = vt[:k].T  # top-k right singular vectors (numpy sorts singular values descending)
    return linear + alpha * r @ d_i @ v @ v.T @ np.linalg.inv(d_i)


def fitted(k: int, alpha: float = 0.3):
    users, items = np.nonzero(R)
    return fit_gfcf(users, items, R.shape[0], R.shape[1], k=k, alpha=alpha)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_scores_match_the_dense_formula(k):
    model = fitted(k)
    scores = model.score(np.arange(R.shape[0]))
    np.testing.assert_allclose(scores, dense_gfcf(R, k, 0.3), rtol=1e-4, atol=1e-5)


def test_duplicate_interactions_count_once():
    users, items = np.nonzero(R)
    twice = fit_gfcf(np.r_[users, users], np.r_[items, items], *R.shape, k=1)
    np.testing.assert_allclose(twice.score(np.arange(4)), fitted(1).score(np.arange(4)), rtol=1e-5)


def test_evaluate_scorer_equals_evaluate_embeddings_for_dot_products():
    rng = np.random.default_rng(0)
    history = pd.DataFrame({"user_id": rng.integers(0, 30, 300), "item_id": rng.integers(0, 40, 300)})
    holdout = pd.DataFrame({"user_id": rng.integers(0, 30, 90), "item_id": rng.integers(0, 40, 90)})
    task = build_ranking_task(history, holdout)
    user_ids = np.arange(30)[::-1].copy()  # rows deliberately not sorted by id
    item_ids = np.arange(40)
    model = ModelEmbeddings(
        user_ids, item_ids, rng.normal(size=(30, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32), {}
    )
    a = evaluate_embeddings(model, task, k=5)
    b = evaluate_scorer(
        lambda rows: model.user_emb[rows] @ model.item_emb.T, user_ids, item_ids, task, k=5, batch_size=7
    )
    assert a.recall == pytest.approx(b.recall) and a.ndcg == pytest.approx(b.ndcg)
    np.testing.assert_allclose(a.recall_per_user, b.recall_per_user)


def test_gfcf_beats_popularity_on_structured_data():
    # Two communities with disjoint tastes: popularity cannot separate them, the filter can.
    rng = np.random.default_rng(1)
    rows = []
    for user in range(60):
        group = user % 2
        pool = np.arange(group * 20, group * 20 + 20)
        for item in rng.choice(pool, size=8, replace=False):
            rows.append((user, int(item)))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    holdout = frame.groupby("user_id").tail(2)
    history = frame.drop(holdout.index)
    task = build_ranking_task(history, holdout)
    users = np.sort(history["user_id"].unique())
    items = np.sort(history["item_id"].unique())
    model = fit_gfcf(
        np.searchsorted(users, history["user_id"]),
        np.searchsorted(items, history["item_id"]),
        len(users),
        len(items),
        k=4,
        user_ids=users,
        item_ids=items,
    )
    gfcf = evaluate_scorer(model.score, model.user_ids, model.item_ids, task, k=5)
    popularity = evaluate_embeddings(popularity_model(history), task, k=5)
    assert gfcf.recall > popularity.recall + 0.1


def random_history(seed: int, n_users: int = 12, n_items: int = 20, duplicate_user: bool = False) -> np.ndarray:
    """A random binary matrix where every user and item has at least one interaction."""
    rng = np.random.default_rng(seed)
    r = (rng.random((n_users, n_items)) < 0.3).astype(np.float64)
    r[np.arange(n_items) % n_users, np.arange(n_items)] = 1.0
    if duplicate_user:  # rank(R̃) <= n_users - 1: the largest k svds allows spans it
        r[1] = r[0]
    return r


def dense_truncated(r: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """r (V_k Σ_k² V_kᵀ) + alpha r D_I^{-1/2} V_k V_kᵀ D_I^{1/2}: the export's target, densely."""
    d_u = np.diag(r.sum(1) ** -0.5)
    d_i = np.diag(r.sum(0) ** -0.5)
    _, sigma, vt = np.linalg.svd(d_u @ r @ d_i)
    v, s2 = vt[:k].T, np.diag(sigma[:k] ** 2)
    return r @ v @ s2 @ v.T + alpha * r @ d_i @ v @ v.T @ np.linalg.inv(d_i)


def fit_dense(r: np.ndarray, k: int, alpha: float = 0.3):
    users, items = np.nonzero(r)
    return fit_gfcf(users, items, r.shape[0], r.shape[1], k=k, alpha=alpha)


@pytest.mark.parametrize("seed", [0, 1])
def test_embeddings_score_like_the_model_at_full_rank(seed):
    r = random_history(seed, duplicate_user=True)
    model = fit_dense(r, k=r.shape[0] - 1)
    emb = model.embeddings()
    assert emb.dim == 2 * (r.shape[0] - 1) and emb.meta["model"] == "gfcf"
    np.testing.assert_allclose(emb.user_emb @ emb.item_emb.T, model.score(np.arange(r.shape[0])), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k, alpha", [(1, 0.3), (3, 0.3), (6, 1.0), (6, 0.0)])
def test_embeddings_equal_the_truncated_formula(k, alpha):
    r = random_history(2)
    model = fit_dense(r, k=k, alpha=alpha)
    emb = model.embeddings()
    assert emb.user_emb.shape == (r.shape[0], 2 * k) and emb.item_emb.shape == (r.shape[1], 2 * k)
    assert emb.user_emb.dtype == emb.item_emb.dtype == np.float32
    np.testing.assert_allclose(emb.user_emb @ emb.item_emb.T, dense_truncated(r, k, alpha), rtol=1e-4, atol=1e-5)
    if k < np.linalg.matrix_rank(r):  # below full rank the linear term is an approximation
        assert not np.allclose(emb.user_emb @ emb.item_emb.T, model.score(np.arange(r.shape[0])), atol=1e-5)


def test_items_without_interactions_get_a_zero_ideal_part():
    r = random_history(3)
    users, items = np.nonzero(r[:, :-1])
    model = fit_gfcf(users, items, r.shape[0], r.shape[1], k=4)
    emb = model.embeddings(meta={"model": "gfcf", "note": "x"})
    assert emb.meta == {"model": "gfcf", "note": "x"}
    assert np.isfinite(emb.item_emb).all() and not emb.item_emb[-1, 4:].any()


def test_embeddings_need_k_of_at_least_one():
    with pytest.raises(ValueError, match="k=0"):
        fit_dense(random_history(0), k=0).embeddings()
