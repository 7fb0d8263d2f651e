"""The check an index must pass before it serves: recall against exact search.

An approximate index (IVF, HNSW) can lose part of a user's true top ``k``. Publication
(:mod:`serving.bundle_writer`) and the canary gate (:mod:`serving.canary_evidence`) both
search the index with the embeddings of up to :data:`RECALL_CHECK_QUERIES` seeded users
(:func:`check_queries`) and compare with the exact inner-product top ``k``
(:func:`exact_topk`, which uses the one exact top-k, :func:`training.topk.top_k`); an
index below ``settings.index.recall_floor`` is refused.

Kept apart from :mod:`serving.index` because :mod:`training.topk` imports torch, which
the request path (search only) does not need.
"""

from __future__ import annotations

import faiss
import numpy as np

from serving.index import as_float32_matrix, search
from training.topk import top_k

#: Number of users whose queries check the index against exact search.
RECALL_CHECK_QUERIES = 256


def check_queries(n_users: int, seed: int) -> np.ndarray:
    """Rows of up to :data:`RECALL_CHECK_QUERIES` users, drawn without replacement with ``seed``.

    Publication and the canary draw the same rows for the same model and seed.
    """
    if not n_users:
        return np.empty(0, int)
    rng = np.random.default_rng(seed)
    return rng.choice(n_users, size=min(n_users, RECALL_CHECK_QUERIES), replace=False)


def exact_topk(item_emb: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``k`` inner products (the reference for tests and checks).

    Args:
        item_emb (np.ndarray): ``[n_items, dim]`` item embeddings.
        queries (np.ndarray): ``[n_queries, dim]`` (or one ``[dim]`` vector).
        k (int): cut-off; clipped to the number of items.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(scores, positions)`` like
        :func:`serving.index.search`, best first (ties by position).
    """
    xb = as_float32_matrix(item_emb, name="item embeddings")
    xq = as_float32_matrix(queries, name="queries")
    return top_k(xq @ xb.T, min(int(k), xb.shape[0]))


def recall_against_exact(index: faiss.Index, item_emb: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Share of the exact top-``k`` that the index returns, tie-aware.

    A retrieved item counts as correct when its exact score reaches the exact
    ``k``-th best score (minus a float32 tolerance), so equally good items in a
    different order are not penalised.

    Args:
        index (faiss.Index): the index to check.
        item_emb (np.ndarray): the matrix the index was built from.
        queries (np.ndarray): ``[n_queries, dim]`` sample of user embeddings.
        k (int): cut-off.

    Returns:
        float: recall in ``[0, 1]``; 1.0 for an exact index.
    """
    xb = as_float32_matrix(item_emb, name="item embeddings")
    xq = as_float32_matrix(queries, name="queries")
    if xq.shape[0] == 0:
        return 1.0
    exact_scores, _ = exact_topk(xb, xq, k)
    kth = exact_scores[:, -1:]
    _, positions = search(index, xq, k)
    valid = positions >= 0
    got = np.where(valid, np.einsum("qd,qkd->qk", xq, xb[np.where(valid, positions, 0)]), -np.inf)
    tol = 1e-4 * np.maximum(1.0, np.abs(kth))
    hits = (got >= kth - tol).sum()
    return float(hits / exact_scores.size)
