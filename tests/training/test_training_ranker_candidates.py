"""The ranker's candidate lists (training.ranker_candidates): masked top-n retrieval, labels from the next interactions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.ranker_columns import EVENT_TIMESTAMP
from graphrec import contract
from training.embeddings import ModelEmbeddings
from training.metrics import build_ranking_task
from training.ranker_candidates import LABEL, candidate_rows, retrieve


def _events(rows):
    return pd.DataFrame(
        {
            contract.USER_ID: [r[0] for r in rows],
            contract.ITEM_ID: [r[1] for r in rows],
            contract.EVENT_TS: pd.to_datetime([r[2] for r in rows], utc=True),
        }
    )


@pytest.fixture
def model() -> ModelEmbeddings:
    # Item j scores j for user 1 and -j for user 2 (1-d embeddings).
    items = np.arange(6, dtype=np.int64) + 100
    return ModelEmbeddings(
        user_ids=np.array([1, 2], dtype=np.int64),
        item_ids=items,
        user_emb=np.array([[1.0], [-1.0]], dtype=np.float32),
        item_emb=np.arange(6, dtype=np.float32)[:, None],
    )


def test_retrieve_masks_seen_items_and_leaves_unknown_users_empty(model):
    seen = _events([(1, 105, "2025-01-01"), (1, 103, "2025-01-01"), (2, 100, "2025-01-01")])
    found = retrieve(model, np.array([1, 2, 3]), seen, 3)
    assert found.items.tolist() == [[104, 102, 101], [101, 102, 103], [-1, -1, -1]]
    assert found.scores[0].tolist() == [4.0, 2.0, 1.0]
    assert np.isinf(found.scores[2]).all()


def test_candidate_rows_are_labelled_by_the_next_interactions(model):
    history = _events([(1, 105, "2025-01-01T00:00"), (2, 100, "2025-01-01T00:00")])
    found = retrieve(model, np.array([1, 2]), history, 3)
    after = _events([(1, 104, "2025-01-05T10:00"), (1, 100, "2025-01-04T08:00"), (2, 102, "2025-01-06T00:00")])
    at = pd.Timestamp("2025-01-03", tz="UTC")
    rows = candidate_rows(found, build_ranking_task(history, after), at)
    assert (rows[EVENT_TIMESTAMP] == at).all()
    assert rows.loc[rows[LABEL] == 1, contract.ITEM_ID].tolist() == [104, 102]  # 100 is not a candidate of user 1
    assert rows[contract.ITEM_ID].tolist() == [104, 103, 102, 101, 102, 103]
    assert rows["rank"].tolist() == [0, 1, 2, 0, 1, 2]
    assert rows["retrieval_score"].tolist() == [4.0, 3.0, 2.0, -1.0, -2.0, -3.0]
