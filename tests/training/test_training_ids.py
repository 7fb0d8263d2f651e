"""The one id -> row lookup (training.ids)."""

from __future__ import annotations

import numpy as np
import pytest

from training.ids import IdMap, RowLookup, positions


def test_positions_finds_known_ids_and_marks_the_rest():
    ids = np.array([3, 7, 10, 42], dtype=np.int64)
    assert positions(ids, [42, 3, 5, 100, -1, 10]).tolist() == [3, 0, -1, -1, -1, 2]
    assert positions(ids[:0], [1, 2]).tolist() == [-1, -1]
    assert positions(ids, np.array([[7, 8]])).shape == (1, 2)


def test_id_map_is_a_contiguous_index_of_distinct_sorted_ids():
    m = IdMap.from_values(np.array([9, 2, 9, 5]))
    assert m.ids.tolist() == [2, 5, 9] and len(m) == 3
    assert m.index([9, 2, 4]).tolist() == [2, 0, -1]
    assert m.find(5) == 1 and m.find(6) is None


@pytest.mark.parametrize("seed", range(5))
def test_row_lookup_agrees_with_a_dict_on_ids_in_any_order(seed):
    rng = np.random.default_rng(seed)
    ids = rng.choice(10_000, size=300, replace=False).astype(np.int64)
    lookup = RowLookup.of(ids)
    by_id = {int(v): row for row, v in enumerate(ids)}
    keys = rng.integers(0, 10_000, size=500)
    assert lookup.rows_of(keys).tolist() == [by_id.get(int(k), -1) for k in keys]
    assert all(lookup.row_of(int(k)) == by_id.get(int(k)) for k in keys[:50])
    assert RowLookup.of(np.array([], dtype=np.int64)).rows_of([1]).tolist() == [-1]
