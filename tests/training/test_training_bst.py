"""Tests of the BST module (training.bst): shapes, padding, dense scaling, the candidate-only block."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from bst_rows import (
    VOCAB,
    frame,
    random_batch,
    row,
)

from training.bst import BST, build_bst
from training.bst_encoding import RankerBatch, encode
from training.bst_fit import predict
from training.bst_vocab import AGE_BUCKETS, N_DENSE


@pytest.mark.parametrize("seq_len, dim, heads, hidden", [(1, 8, 1, ()), (5, 16, 2, (8,)), (20, 32, 4, (64, 32))])
def test_model_output_shape_and_config(seq_len, dim, heads, hidden):
    model = build_bst(VOCAB, seq_len=seq_len, dim=dim, heads=heads, hidden=hidden)
    logits = model(*random_batch(7, seq_len, torch.Generator().manual_seed(0)).inputs())
    assert logits.shape == (7,) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    config = json.loads(json.dumps(model.config()))
    rebuilt = BST(**{**config, "hidden": tuple(config["hidden"])})
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]
    with pytest.raises(ValueError, match="the model wants"):
        model(*random_batch(2, seq_len + 1, torch.Generator().manual_seed(0)).inputs())


def test_model_ignores_what_lies_in_padded_positions():
    model = build_bst(VOCAB, seq_len=6, dim=16).eval()
    generator = torch.Generator().manual_seed(1)
    batch = random_batch(64, 6, generator)
    padding = batch.seq_age == 0
    assert padding.any() and (~padding).any()
    noisy = dataclasses.replace(
        batch,
        seq_items=torch.where(
            padding, torch.randint(1, VOCAB.n_items, padding.shape, generator=generator), batch.seq_items
        ),
        seq_categories=torch.where(
            padding, torch.randint(1, VOCAB.n_categories, padding.shape, generator=generator), batch.seq_categories
        ),
    )
    with torch.no_grad():
        torch.testing.assert_close(model(*noisy.inputs()), model(*batch.inputs()), rtol=0, atol=1e-6)
        changed = dataclasses.replace(batch, seq_items=torch.where(padding, batch.seq_items, batch.seq_items % 7 + 1))
        assert not torch.allclose(model(*changed.inputs()), model(*batch.inputs()))  # real positions do count


def test_model_scores_an_empty_history_in_training_and_eval():
    model = build_bst(VOCAB, seq_len=4, dim=8)
    batch = encode(frame(row(100, None), row(101, [])), VOCAB, seq_len=4)
    assert (batch.seq_age == 0).all()
    logits = model.train()(*batch.inputs())
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(*batch.inputs())).all()


def test_batch_of_one_equals_its_row_in_a_batch():
    model = build_bst(VOCAB, seq_len=5, dim=16)
    model.fit_dense_scaling(torch.randn(50, N_DENSE) * 3 + 1)
    batch = random_batch(33, 5, torch.Generator().manual_seed(2))
    together = predict(model, batch)
    alone = np.concatenate([predict(model, batch.subset([k])) for k in range(len(batch))])
    np.testing.assert_allclose(alone, together, rtol=0, atol=1e-6)
    np.testing.assert_allclose(predict(model, batch, batch_size=4), together, rtol=0, atol=1e-6)
    assert model.training  # predict restores the mode it found


def test_dense_scaling_standardises_and_keeps_constant_columns():
    model = build_bst(VOCAB, seq_len=2, dim=8)
    dense = torch.randn(500, N_DENSE, generator=torch.Generator().manual_seed(3)) * 5 + 2
    dense[:, 3] = 4.0
    model.fit_dense_scaling(dense)
    scaled = (dense - model.dense_mean) / model.dense_std
    torch.testing.assert_close(scaled.mean(0), torch.zeros(N_DENSE), atol=1e-5, rtol=0)
    assert model.dense_std[3] == 1 and (scaled[:, 3] == 0).all()


def test_candidate_output_equals_the_whole_block_at_the_last_position():
    torch.manual_seed(0)
    model = build_bst(VOCAB, seed=3, seq_len=6).eval()
    tokens = torch.randn(9, 7, model.dim)
    padding = torch.zeros(9, 7, dtype=torch.bool)
    padding[:4, :3] = True  # left padding of some rows; the candidate (last) is never padded
    padding[5, :6] = True  # an empty history
    with torch.no_grad():
        whole = model.block(tokens, src_key_padding_mask=padding)[:, -1]
        alone = model.candidate_output(tokens, padding)
    torch.testing.assert_close(alone, whole, rtol=1e-5, atol=1e-5)


def test_shared_history_logits_equal_the_forward_of_the_repeated_history():
    model = build_bst(VOCAB, seed=2, seq_len=6, dim=16, heads=4, hidden=(8,)).eval()
    generator = torch.Generator().manual_seed(4)
    for length in (0, 1, 6):
        one = random_batch(1, 6, generator)
        lengths = torch.arange(6) >= 6 - length
        n = 9
        batch = RankerBatch(
            seq_items=(one.seq_items * lengths).expand(n, -1),
            seq_categories=(one.seq_categories * lengths).expand(n, -1),
            seq_age=(torch.randint(1, AGE_BUCKETS, (6,), generator=generator) * lengths).expand(n, -1),
            target_item=torch.randint(1, VOCAB.n_items, (n,), generator=generator),
            target_category=torch.randint(1, VOCAB.n_categories, (n,), generator=generator),
            dense=torch.randn(n, N_DENSE, generator=generator),
        )
        with torch.no_grad():
            shared = model.shared_history_logits(
                batch.seq_items[0],
                batch.seq_categories[0],
                batch.seq_age[0],
                batch.target_item,
                batch.target_category,
                batch.dense,
            )
            torch.testing.assert_close(shared, model(*batch.inputs()), rtol=0, atol=1e-5)
