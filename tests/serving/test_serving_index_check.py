"""The publication check of an index: exact top-k, seeded query users, recall against exact search."""

from __future__ import annotations

import numpy as np
import pytest

from serving.index import build_index
from serving.index_check import RECALL_CHECK_QUERIES, check_queries, exact_topk, recall_against_exact


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


@pytest.mark.parametrize("n_users", [0, 1, 100, RECALL_CHECK_QUERIES, 5000])
def test_check_queries_are_distinct_seeded_rows(n_users):
    rows = check_queries(n_users, seed=42)
    assert len(rows) == min(n_users, RECALL_CHECK_QUERIES) and len(set(rows.tolist())) == len(rows)
    assert ((rows >= 0) & (rows < max(n_users, 1))).all()
    np.testing.assert_array_equal(rows, check_queries(n_users, seed=42))


@pytest.mark.parametrize("k", [1, 5, 30, 100])
def test_exact_topk_is_best_first_with_ties_by_position(k):
    rng = np.random.default_rng(k)
    xb = np.repeat(rng.normal(size=(10, 8)).astype(np.float32), 3, axis=0)  # every item three times
    xq = rng.normal(size=(4, 8)).astype(np.float32)
    scores, positions = exact_topk(xb, xq, k)
    assert scores.shape == positions.shape == (4, min(k, 30))
    assert (np.diff(scores, axis=1) <= 0).all()
    full = xq @ xb.T
    np.testing.assert_allclose(scores, np.take_along_axis(full, positions, axis=1))
    tied = np.diff(scores, axis=1) == 0
    assert (np.diff(positions, axis=1)[tied] > 0).all()  # equal scores: lower positions first
