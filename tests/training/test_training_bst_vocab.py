"""Tests of the BST ranker's input vocabulary (training.bst_vocab)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from bst_rows import (
    VOCAB,
)

from training.bst_vocab import Vocabulary


def test_vocabulary_indices_unknowns_and_round_trip():
    vocab = Vocabulary.build([30, 10, 20, 10], ["b", "a", None, "b", float("nan")])
    assert (vocab.n_items, vocab.n_categories) == (3 + 2, 2 + 2)
    assert vocab.items(np.array([10, 20, 30, 99, -1])).tolist() == [2, 3, 4, 1, 1]
    assert vocab.items(np.array([[30], [5]])).tolist() == [[4], [1]]
    assert vocab.categories(["a", "b", "zz", None, np.nan, pd.NA]).tolist() == [2, 3, 1, 1, 1, 1]
    restored = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored == vocab and restored.to_dict() == vocab.to_dict()
    assert restored.items(np.array([20])).tolist() == [3]


def test_empty_vocabulary_maps_everything_to_unknown():
    vocab = Vocabulary.build([], [])
    assert (vocab.n_items, vocab.n_categories) == (2, 2)
    assert vocab.items(np.array([1, 2])).tolist() == [1, 1] and vocab.categories(["a"]).tolist() == [1]


@pytest.mark.parametrize("ids, names", [([2, 1], ["a"]), ([1, 1], ["a"]), ([1], ["b", "a"])])
def test_vocabulary_rejects_unsorted_or_duplicate_entries(ids, names):
    with pytest.raises(ValueError, match="sorted"):
        Vocabulary(np.array(ids), tuple(names))


def test_short_and_long_category_lookups_agree():
    values = ["c0", "c5", "zz", None, np.nan, "c3", 4] * 200  # 1400 values: the long path
    long = VOCAB.categories(values)
    short = np.concatenate([VOCAB.categories(values[k : k + 7]) for k in range(0, len(values), 7)])
    assert np.array_equal(long, short)
    assert long[:7].tolist() == [2, 7, 1, 1, 1, 5, 1]
