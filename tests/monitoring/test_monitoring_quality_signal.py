"""The quality proxy (monitoring.quality_signal): recall of yesterday's lists on today's
new items, relative to the offline Recall@k, on hand-built frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from drift_frames import interactions

from graphrec import contract
from monitoring.offline_serving import FALLBACK, RANK, SCORE
from monitoring.quality_signal import RECALL, recall_proxy
from monitoring.signals import compute_signals

QUALITY_REFERENCE = interactions(
    [
        (1, 30, "2025-01-01 10:00", "view"),
        (2, 11, "2025-01-01 10:00", "view"),
        (3, 40, "2025-01-01 10:00", "view"),
        (4, 41, "2025-01-01 10:00", "view"),
        (5, 42, "2025-01-01 10:00", "view"),
    ]
)


QUALITY_CURRENT = interactions(
    [
        (1, 10, "2025-01-02 09:00", "view"),
        (1, 20, "2025-01-02 09:05", "click"),  # 1 hit of T = {10, 20}
        (1, 30, "2025-01-02 09:10", "view"),  # seen in the reference: not relevant
        (1, 10, "2025-01-02 09:15", "purchase"),  # a repeat counts once
        (2, 11, "2025-01-02 09:00", "view"),  # only a history item: user 2 has no relevant items
        (4, 10, "2025-01-02 09:00", "view"),  # not served yesterday
        *[(5, item, "2025-01-02 10:00", "view") for item in (16, 17, 18, 19)],  # 3 hits of 4, k = 3
    ]
)


SERVED_YESTERDAY = pd.DataFrame(
    {
        contract.USER_ID: np.repeat([1, 2, 3, 5], 3),
        RANK: np.tile([1, 2, 3], 4),
        contract.ITEM_ID: [10, 11, 12, 10, 11, 12, 13, 14, 15, 16, 17, 18],
        SCORE: 1.0,
        FALLBACK: False,
    }
)


def test_recall_proxy_counts_hits_on_todays_new_items():
    per_user = recall_proxy(QUALITY_CURRENT, SERVED_YESTERDAY, QUALITY_REFERENCE, k=3)
    assert per_user[contract.USER_ID].tolist() == [1, 5]
    assert per_user["n_relevant"].tolist() == [2, 4]
    assert per_user["hits"].tolist() == [1, 3]
    assert per_user[RECALL].tolist() == [0.5, 1.0]  # 1 / min(3, 2), 3 / min(3, 4)


@pytest.mark.parametrize("offline, value", [(0.25, 3.0), (None, None)])
def test_quality_proxy_is_the_ratio_to_the_offline_recall(offline, value):
    report = compute_signals(
        QUALITY_CURRENT,
        QUALITY_REFERENCE,
        pd.DataFrame(),
        served_yesterday=SERVED_YESTERDAY,
        offline_recall=offline,
        k=3,
    )
    signal = report.signals["quality_proxy"]
    assert signal.value == value
    assert (signal.before, signal.after, signal.n_current) == (offline, 0.75, 2)
    assert "quality" in report.snapshots


def test_yesterdays_shorter_lists_only_count_up_to_k():
    report = compute_signals(
        QUALITY_CURRENT, QUALITY_REFERENCE, pd.DataFrame(), served_yesterday=SERVED_YESTERDAY, offline_recall=0.5, k=1
    )
    # k = 1: user 1 keeps [10] (hit, T = 2 -> 1 / 1); user 5 keeps [16] (hit -> 1 / 1)
    assert report.signals["quality_proxy"].after == 1.0
