"""FAISS index idioms: exact search equals numpy top-k, persistence, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from serving.index import build_index, exact_topk, load_index, recall_against_exact, save_index, search


def _numpy_topk(xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = xq.astype(np.float64) @ xb.astype(np.float64).T
    order = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize(
    ("n_items", "dim", "n_queries", "k"),
    [(50, 8, 5, 1), (50, 8, 5, 10), (500, 32, 20, 50), (500, 32, 3, 500), (2000, 64, 10, 100)],
)
def test_faiss_topk_equals_exact_numpy_topk(n_items, dim, n_queries, k):
    rng = np.random.default_rng(n_items + k)
    xb = rng.normal(size=(n_items, dim)).astype(np.float32)
    xq = rng.normal(size=(n_queries, dim)).astype(np.float32)
    index = build_index(xb)
    scores, positions = search(index, xq, k)
    ref_scores, ref_positions = _numpy_topk(xb, xq, k)
    assert scores.shape == positions.shape == (n_queries, k)
    np.testing.assert_array_equal(positions, ref_positions)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    # the helper used by the publication check agrees too
    np.testing.assert_array_equal(exact_topk(xb, xq, k)[1], ref_positions)


def test_k_is_clipped_to_index_size_and_1d_query_is_one_row():
    xb = np.eye(4, dtype=np.float32)
    index = build_index(xb)
    scores, positions = search(index, np.array([0, 0, 1, 0], dtype=np.float64), 10)
    assert positions.shape == (1, 4)
    assert positions[0, 0] == 2 and scores[0, 0] == pytest.approx(1.0)
    assert sorted(positions[0].tolist()) == [0, 1, 2, 3]


def test_save_and_load_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    xb = rng.normal(size=(300, 16)).astype(np.float32)
    xq = rng.normal(size=(7, 16)).astype(np.float32)
    index = build_index(xb)
    path = save_index(index, tmp_path / "index.faiss")
    loaded = load_index(path)
    assert loaded.ntotal == 300 and loaded.d == 16
    for a, b in zip(search(index, xq, 25), search(loaded, xq, 25)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "bad",
    [np.full((3, 4), np.nan, np.float32), np.array([[1.0, np.inf]]), np.zeros((0, 4)), np.zeros((2, 3, 4))],
    ids=["nan", "inf", "empty", "3d"],
)
def test_build_index_rejects_bad_embeddings(bad):
    with pytest.raises(ValueError):
        build_index(bad)


def test_search_rejects_wrong_dimension_and_k():
    index = build_index(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError):
        search(index, np.ones((1, 5), np.float32), 2)
    with pytest.raises(ValueError):
        search(index, np.ones((1, 4), np.float32), 0)


def test_recall_check_is_one_for_exact_index_and_detects_a_wrong_index():
    rng = np.random.default_rng(2)
    xb = rng.normal(size=(400, 16)).astype(np.float32)
    xq = rng.normal(size=(50, 16)).astype(np.float32)
    assert recall_against_exact(build_index(xb), xb, xq, 20) == pytest.approx(1.0)
    wrong = build_index(rng.normal(size=(400, 16)).astype(np.float32))  # unrelated vectors
    assert recall_against_exact(wrong, xb, xq, 20) < 0.5


def test_recall_check_tolerates_ties():
    xb = np.ones((30, 4), np.float32)  # every item scores the same
    xq = np.ones((5, 4), np.float32)
    assert recall_against_exact(build_index(xb), xb, xq, 10) == pytest.approx(1.0)
