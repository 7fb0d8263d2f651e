"""Tests of the serving path's BST scorer (training.bst_scorer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bst_rows import (
    VOCAB,
    candidates,
)

from training.bst import build_bst
from training.bst_encoding import encode_candidates
from training.bst_fit import predict
from training.bst_scorer import RequestScorer


@pytest.mark.parametrize("trace", [True, False])
def test_request_scorer_equals_predict_for_any_rows_and_needs_eval_mode(trace):
    """The shared-history path (traced or not) holds for other row counts and padding than
    it was traced on; ``__call__`` scores any batch."""
    model = build_bst(VOCAB, seed=5, seq_len=8, dim=16, heads=2, hidden=(8,))
    with torch.no_grad():  # a non-trivial dense scaling, as after training
        model.dense_mean.normal_(generator=torch.Generator().manual_seed(0))
        model.dense_std.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="eval mode"):
        RequestScorer(model)  # a fresh model is in training mode: dropout
    model.eval()
    scorer = RequestScorer(model, trace=trace)
    assert (scorer.traced is not None) == trace
    for n, history in [(30, [101, 107, 133]), (1, None), (7, []), (120, [100 + k % 60 for k in range(20)]), (0, [101])]:
        features = candidates([100 + k % 60 for k in range(n)], history)
        batch = encode_candidates(features, np.linspace(2, -1, n), VOCAB, seq_len=8)
        expected = predict(model, batch)
        for got in (scorer.shared(batch), scorer(batch)):
            assert got.dtype == np.float32 and got.shape == (n,)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
