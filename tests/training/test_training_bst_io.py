"""Tests of the BST ranker's files (training.bst_io)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bst_rows import (
    VOCAB,
    random_batch,
)

from training.bst import build_bst
from training.bst_fit import predict
from training.bst_io import load_ranker, save_ranker
from training.bst_vocab import N_DENSE, Vocabulary


def test_save_load_round_trip(tmp_path):
    model = build_bst(VOCAB, seq_len=5, dim=16)
    model.fit_dense_scaling(torch.randn(40, N_DENSE) + 3)
    batch = random_batch(20, 5, torch.Generator().manual_seed(4))
    directory = save_ranker(model, VOCAB, tmp_path / "ranker", extra={"valid_auc": 0.93, "run_id": "abc"})
    assert sorted(p.name for p in directory.iterdir()) == ["ranker.json", "ranker.pt"]
    assert set(torch.load(directory / "ranker.pt", weights_only=True)) == set(model.state_dict())
    loaded, vocab, extra = load_ranker(directory)
    assert vocab == VOCAB and extra == {"valid_auc": 0.93, "run_id": "abc"} and not loaded.training
    assert loaded.config() == model.config() and json.loads((directory / "ranker.json").read_text())["seq_len"] == 5
    assert np.array_equal(predict(loaded, batch), predict(model, batch))
    with pytest.raises(ValueError, match="does not match"):
        save_ranker(model, Vocabulary.build([1], []), tmp_path / "other")
