"""The ranker task's own steps (training.ranker): negative sampling per candidate list."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.ranker_columns import EVENT_TIMESTAMP
from graphrec import contract
from training.ranker_candidates import LABEL


def test_negative_sampling_keeps_every_positive_and_at_most_n_negatives_per_list():
    from training.ranker import sample_negatives

    rng = np.random.default_rng(0)
    at = [pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-01-02", tz="UTC")]
    rows = pd.DataFrame(
        {
            contract.USER_ID: np.repeat([1, 1, 2], 50),
            EVENT_TIMESTAMP: np.repeat([at[0], at[1], at[0]], 50),
            LABEL: (rng.random(150) < 0.1).astype(np.int64),
        }
    )
    kept = sample_negatives(rows, 5, seed=3)
    picked = rows.iloc[kept]
    assert (rows[LABEL] == 1).sum() == (picked[LABEL] == 1).sum()
    negatives = picked[picked[LABEL] == 0].groupby([contract.USER_ID, EVENT_TIMESTAMP]).size()
    assert len(negatives) == 3 and (negatives == 5).all()
    assert (sample_negatives(rows, 5, seed=3) == kept).all()  # seeded
    assert len(sample_negatives(rows, 0, seed=3)) == 150
