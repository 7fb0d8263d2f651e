"""Pure transforms: seen sets in CSR form and popularity order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.history import SeenSets, popularity_order, seen_from_pairs, unique_in_order


def test_seen_sets_group_sort_and_deduplicate():
    pairs = pd.DataFrame({"user_id": [5, 2, 5, 5, 2, 9], "item_id": [30, 7, 10, 30, 7, 1]})
    seen = seen_from_pairs(pairs)
    assert seen.user_ids.tolist() == [2, 5, 9]
    assert seen.items_for(5).tolist() == [10, 30]
    assert seen.items_for(2).tolist() == [7]
    assert seen.items_for(9).tolist() == [1]
    assert seen.items_for(3).size == 0 and seen.items_for(100).size == 0
    assert seen.n_pairs == 4


def test_seen_sets_match_a_python_groupby(interactions):
    seen = seen_from_pairs(interactions)
    expected = interactions.groupby("user_id")["item_id"].apply(lambda s: sorted(set(s)))
    assert seen.n_users == len(expected)
    for user_id, items in expected.items():
        assert seen.items_for(user_id).tolist() == items


def test_seen_sets_reject_missing_columns_and_nulls():
    with pytest.raises(ValueError):
        seen_from_pairs(pd.DataFrame({"user_id": [1]}))
    with pytest.raises(ValueError):
        seen_from_pairs(pd.DataFrame({"user_id": [1, None], "item_id": [1, 2]}))
    assert seen_from_pairs(pd.DataFrame({"user_id": [], "item_id": []})).n_users == 0


def test_seen_sets_validate_their_arrays():
    with pytest.raises(ValueError):
        SeenSets(np.array([2, 1]), np.array([0, 1, 2]), np.array([1, 2]))
    with pytest.raises(ValueError):
        SeenSets(np.array([1]), np.array([0, 3]), np.array([1, 2]))


def test_popularity_order_counts_with_deterministic_ties():
    frame = pd.DataFrame({"item_id": [3, 1, 3, 2, 2, 4, 3]})
    assert popularity_order(frame).tolist() == [3, 2, 1, 4]
    assert popularity_order(pd.DataFrame({"item_id": []})).size == 0


def test_unique_in_order_keeps_first_occurrence():
    assert unique_in_order([5, 3, 5, 1, 3]).tolist() == [5, 3, 1]
    assert unique_in_order([]).size == 0
