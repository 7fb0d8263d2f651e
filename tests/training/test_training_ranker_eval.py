"""The ranker's two-stage metrics (training.ranker_eval): HR/NDCG of lists, re-ranking by probability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphrec import contract
from training.metrics import build_ranking_task
from training.ranker_candidates import Candidates
from training.ranker_eval import list_metrics, rerank


def _events(rows):
    return pd.DataFrame(
        {
            contract.USER_ID: [r[0] for r in rows],
            contract.ITEM_ID: [r[1] for r in rows],
            contract.EVENT_TS: pd.to_datetime([r[2] for r in rows], utc=True),
        }
    )


def test_list_metrics_match_hand_computed_values():
    history = _events([(1, 1, "2025-01-01"), (2, 1, "2025-01-01"), (3, 1, "2025-01-01")])
    holdout = _events([(1, 7, "2025-01-02"), (1, 8, "2025-01-02"), (2, 9, "2025-01-02"), (3, 5, "2025-01-02")])
    task = build_ranking_task(history, holdout)
    lists = np.array([[7, 3, 8], [3, 4, 9], [-1, -1, -1]])
    metrics = list_metrics(task, np.array([1, 2, 3]), lists, 3)
    d = 1 / np.log2(np.arange(2, 5))
    user1 = (d[0] + d[2]) / (d[0] + d[1])
    user2 = d[2] / d[0]
    assert metrics.hr == pytest.approx(2 / 3)
    assert metrics.ndcg == pytest.approx((user1 + user2 + 0) / 3)
    # Cut-off 1: only user 1's first item counts.
    assert list_metrics(task, np.array([1, 2, 3]), lists, 1).ndcg == pytest.approx(1 / 3)


def test_rerank_sorts_by_probability_and_keeps_retrieval_order_on_ties():
    found = Candidates(np.array([1, 2]), np.array([[10, 11, 12], [20, 21, -1]]), np.zeros((2, 3), np.float32))
    ranked = rerank(found, np.array([0.1, 0.9, 0.1, 0.5, 0.5]))
    assert ranked.tolist() == [[11, 10, 12], [20, 21, -1]]
