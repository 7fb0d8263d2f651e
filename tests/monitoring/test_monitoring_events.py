"""The event tables the signals read (monitoring.events): user-days, top users, one-day
users and items, and seeded samples."""

from __future__ import annotations

import numpy as np
from drift_frames import interactions

from monitoring.events import event_table, sample_rows


def test_an_event_table_counts_user_days_top_users_and_one_day_ids():
    table = event_table(
        interactions(
            [
                (1, 10, "2025-01-01 10:00", "view"),
                (1, 11, "2025-01-01 11:00", "view"),
                (2, 10, "2025-01-01 12:00", "click"),
                (2, 10, "2025-01-02 09:00", "view"),
                (3, 12, "2025-01-02 10:00", "view"),
            ]
        )
    )
    assert table.n == 5 and table.n_days == 2
    assert sorted(table.ud_count.tolist()) == [1, 1, 1, 2]  # user-days: (1, d1) has two events
    # Each day's single top user (at least one per day): user 1 on day 1, user 2 (smaller id) on day 2.
    assert table.ud_top[table.event_ud].tolist() == [True, True, False, True, False]
    assert table.user_once.tolist() == [True, True, False, False, True]  # user 2 is active on both days
    assert dict(zip(table.item_ids.tolist(), table.item_once.tolist())) == {10: False, 11: True, 12: True}
    assert dict(zip(table.item_ids.tolist(), table.item_count.tolist())) == {10: 3, 11: 1, 12: 1}


def test_samples_are_sorted_seeded_and_only_taken_when_needed():
    assert sample_rows(5, 10, seed=0, stream=1).tolist() == [0, 1, 2, 3, 4]
    sample = sample_rows(1000, 50, seed=3, stream=1)
    assert len(sample) == 50 == len(np.unique(sample)) and (np.diff(sample) > 0).all()
    assert (sample == sample_rows(1000, 50, seed=3, stream=1)).all()
    assert not (sample == sample_rows(1000, 50, seed=3, stream=2)).all()  # each stream draws its own
