"""The ranker's feature columns and one request's features as arrays.

The columns are Feast's ``full_feature_names=True`` names of the feature service
``ranker_features_v1`` (``feature_repo/definitions.py``); the training frames
(:func:`features.historical.historical_ranker_features`) and the online reader
(:class:`features.online.OnlineFeatures`) produce them, and the BST ranker's encoder
(:mod:`training.bst_encoding`) encodes them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TIMESTAMP = "event_timestamp"
USER_COUNTERS = (
    "user_activity__events_1d",
    "user_activity__events_7d",
    "user_activity__distinct_items_7d",
    "user_activity__days_since_last_event",
)
ITEM_COUNTERS = ("item_popularity__events_1d", "item_popularity__events_7d", "item_popularity__users_7d")
ITEM_CATEGORY = "item_popularity__category"
RECENT_ITEMS = "user_recent_items__recent_items"
RECENT_CATEGORIES = "user_recent_items__recent_categories"
RECENT_TS = "user_recent_items__recent_ts"
RETRIEVAL_SCORE = "retrieval_score"
FEATURE_COLUMNS = [*USER_COUNTERS, *ITEM_COUNTERS, ITEM_CATEGORY, RECENT_ITEMS, RECENT_CATEGORIES, RECENT_TS]
"""The Feast features the ranker reads (feature service ``ranker_features_v1``)."""
FRAME_COLUMNS = [USER_ID, ITEM_ID, EVENT_TIMESTAMP, *FEATURE_COLUMNS, RETRIEVAL_SCORE]
"""Every column :func:`encode` needs."""


@dataclasses.dataclass(frozen=True, eq=False)
class CandidateFeatures:
    """One request's ranker features as arrays: one user's values and each candidate's.

    The serving form of a frame of :data:`FRAME_COLUMNS` for one user at one time (what
    ``features.online.OnlineFeatures`` returns): no per-row Python objects, so
    :func:`encode_candidates` needs no pandas. It encodes exactly as :func:`encode`
    encodes :meth:`to_frame` (a test checks it); on one core that is ~0.2 ms instead of
    ~0.7 ms for 100 candidates, plus the frame's construction that it skips.

    Args:
        user_id: the user.
        time: the scoring time (UTC); sequence events at or after it are dropped.
        item_ids: ``[n]`` int64, the candidates.
        user_counters: ``[len(USER_COUNTERS)]`` float64, NaN where missing.
        item_counters: ``[n, len(ITEM_COUNTERS)]`` float64, NaN where missing.
        item_category: ``[n]`` object, the candidates' category strings (``None`` missing).
        recent_items: the user's :data:`RECENT_ITEMS` value (a list, or ``None``).
        recent_categories: the user's :data:`RECENT_CATEGORIES` value.
        recent_ts: the user's :data:`RECENT_TS` value (epoch seconds).
    """

    user_id: int
    time: pd.Timestamp
    item_ids: np.ndarray
    user_counters: np.ndarray
    item_counters: np.ndarray
    item_category: np.ndarray
    recent_items: Any = None
    recent_categories: Any = None
    recent_ts: Any = None

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if self.user_counters.shape != (len(USER_COUNTERS),):
            raise ValueError(f"user_counters must have shape ({len(USER_COUNTERS)},), got {self.user_counters.shape}")
        if self.item_counters.shape != (n, len(ITEM_COUNTERS)) or self.item_category.shape != (n,):
            raise ValueError(f"item features must have {n} rows, one per candidate")

    def __len__(self) -> int:
        return len(self.item_ids)

    def to_frame(self) -> pd.DataFrame:
        """The same rows as a frame of :data:`FRAME_COLUMNS` without ``retrieval_score``."""
        n = len(self)
        data: dict[str, Any] = {
            USER_ID: np.full(n, int(self.user_id), dtype=np.int64),
            ITEM_ID: np.asarray(self.item_ids, dtype=np.int64),
            EVENT_TIMESTAMP: pd.Series([self.time] * n, dtype="datetime64[us, UTC]"),
        }
        data.update({name: np.full(n, value) for name, value in zip(USER_COUNTERS, self.user_counters)})
        data.update({name: self.item_counters[:, j] for j, name in enumerate(ITEM_COUNTERS)})
        data[ITEM_CATEGORY] = self.item_category
        for name, value in (
            (RECENT_ITEMS, self.recent_items),
            (RECENT_CATEGORIES, self.recent_categories),
            (RECENT_TS, self.recent_ts),
        ):
            cells = np.empty(n, dtype=object)
            cells[:] = [value] * n  # one object broadcast to the rows, as Feast does
            data[name] = cells
        return pd.DataFrame(data)
