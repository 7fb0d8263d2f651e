"""Hand-built interactions and serving models for the drift signal tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from graphrec import contract
from monitoring.offline_serving import ServingModel
from serving.history import seen_from_pairs


def interactions(rows) -> pd.DataFrame:
    """An interactions frame from ``(user_id, item_id, event_ts, event_type)`` rows."""
    frame = pd.DataFrame(rows, columns=[contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS, contract.EVENT_TYPE])
    frame[contract.EVENT_TS] = pd.to_datetime(frame[contract.EVENT_TS], utc=True)
    frame[contract.RATING] = np.nan
    return frame


def toy_model(n_users=40, n_items=1000, dim=8, seen_per_user=30, seed=0) -> ServingModel:
    """A random model whose ids are not row numbers, with random seen sets."""
    rng = np.random.default_rng(seed)
    users = np.arange(n_users, dtype=np.int64) * 7 + 3  # ids are not row numbers
    items = rng.permutation(n_items).astype(np.int64) + 100
    pairs = pd.DataFrame(
        {
            contract.USER_ID: np.repeat(users, seen_per_user),
            contract.ITEM_ID: rng.choice(items, size=n_users * seen_per_user),
        }
    )
    return ServingModel(
        users,
        rng.standard_normal((n_users, dim), dtype=np.float32),
        items,
        rng.standard_normal((n_items, dim), dtype=np.float32),
        seen_from_pairs(pairs),
        rng.permutation(items),
    )
