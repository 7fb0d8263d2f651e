"""Tests of the BST training loop (training.bst_fit): it learns, deterministically, and refuses bad inputs."""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import pandas as pd
import pytest
import torch
from bst_rows import (
    VOCAB,
    category,
    frame,
    row,
)

from training.bst import build_bst
from training.bst_encoding import RankerBatch, encode
from training.bst_fit import BSTTrainConfig, auc, fit_bst, predict


def synthetic_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows labelled 1 iff the candidate's category is that of the user's most recent item.

    Histories of 0-6 random items, the newest under an hour old and the others 2-200 h; the
    candidate shares the newest item's category half of the time. Dense features are noise.
    """
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for k in range(n):
        length = int(rng.integers(0, 7))
        history = rng.integers(100, 160, length).tolist()
        ages = sorted(rng.uniform(2, 200, length - 1), reverse=True) + [rng.uniform(0.05, 0.9)] if length else []
        if length and rng.random() < 0.5:
            candidate = 100 + (history[-1] - 100) % 6 + 6 * int(rng.integers(0, 10))
        else:
            candidate = int(rng.integers(100, 160))
        label = bool(length) and category(candidate) == category(history[-1])
        rows.append(row(candidate, history, ages, user=k, counters=int(rng.integers(0, 50)), score=float(rng.normal())))
        labels.append(float(label))
    return frame(*rows), np.asarray(labels, dtype=np.float32)


@pytest.fixture(scope="module")
def synthetic() -> dict:
    train, train_labels = synthetic_frame(3000, seed=0)
    valid, valid_labels = synthetic_frame(1000, seed=1)
    return {"train": (encode(train, VOCAB, 6), train_labels), "valid": (encode(valid, VOCAB, 6), valid_labels)}


SMALL = {"seq_len": 6, "dim": 16, "heads": 2, "hidden": (32,), "dropout": 0.0}


def test_fit_learns_a_rule_that_needs_the_sequence(synthetic):
    batch, labels = synthetic["train"]
    model = build_bst(VOCAB, seed=0, **SMALL)
    config = BSTTrainConfig(epochs=25, batch_size=128, learning_rate=3e-3, seed=0, patience=5, num_threads=1)
    result = fit_bst(model, batch, labels, config, valid=synthetic["valid"])
    valid_auc = auc(synthetic["valid"][1], predict(model, synthetic["valid"][0]))
    assert valid_auc > 0.9, result
    assert result.losses[-1] < result.losses[0]
    assert valid_auc == pytest.approx(max(result.valid_auc))  # early stopping keeps the best epoch's weights
    assert result.best_epoch == 1 + int(np.argmax(result.valid_auc)) and not model.training


def test_without_the_sequence_the_rule_is_not_learnable(synthetic):
    def blind(batch: RankerBatch) -> RankerBatch:
        empty = torch.zeros_like(batch.seq_items)
        return dataclasses.replace(batch, seq_items=empty, seq_categories=empty, seq_age=empty)

    (batch, labels), (valid, valid_labels) = synthetic["train"], synthetic["valid"]
    model = build_bst(VOCAB, seed=0, **SMALL)
    fit_bst(model, blind(batch), labels, BSTTrainConfig(epochs=6, batch_size=128, learning_rate=3e-3, num_threads=1))
    assert auc(valid_labels, predict(model, blind(valid))) < 0.7


def test_fit_is_deterministic_and_leaves_global_state_alone(synthetic):
    batch, labels = synthetic["train"]
    sub = batch.subset(torch.arange(600)), labels[:600]
    config = BSTTrainConfig(epochs=2, batch_size=64, seed=7, num_threads=1)
    threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
    runs = []
    for seed in (7, 7, 8):
        model = build_bst(VOCAB, seed=3, **{**SMALL, "dropout": 0.1})
        result = fit_bst(model, *sub, dataclasses.replace(config, seed=seed))
        runs.append((model.state_dict(), predict(model, synthetic["valid"][0]), result.losses))
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng_state)
    assert all(torch.equal(runs[0][0][k], runs[1][0][k]) for k in runs[0][0])
    assert np.array_equal(runs[0][1], runs[1][1]) and runs[0][2] == runs[1][2]
    assert not np.array_equal(runs[0][1], runs[2][1])


def test_fit_refuses_bad_inputs(synthetic):
    batch, labels = synthetic["train"]
    model = build_bst(VOCAB, **SMALL)
    with pytest.raises(ValueError, match="labels for"):
        fit_bst(model, batch, labels[:-1])
    with pytest.raises(ValueError, match="0 or 1"):
        fit_bst(model, batch, labels * 2)
    with pytest.raises(ValueError, match="both classes"):
        fit_bst(model, batch, labels, valid=(synthetic["valid"][0], np.zeros(len(synthetic["valid"][1]))))


def test_auc():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.9])) == 1.0
    assert auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert np.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


@pytest.mark.parametrize("validated", [True, False])
def test_each_epoch_is_one_labelled_log_line(synthetic, caplog, validated):
    batch, labels = synthetic["train"]
    config = BSTTrainConfig(epochs=2, batch_size=512, seed=0, num_threads=1)
    with caplog.at_level(logging.INFO, logger="training.bst_fit"):
        fit_bst(
            build_bst(VOCAB, seed=0, **SMALL), batch, labels, config, valid=synthetic["valid"] if validated else None
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "training.bst_fit"]
    auc_part = r", val AUC 0\.\d{4}" if validated else ""
    assert len(lines) == 2
    for epoch, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"ranker epoch {epoch}/2: train logloss \d\.\d{{4}}{auc_part}, \d+\.\d s", line), line
