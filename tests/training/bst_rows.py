"""Rows, batches and request features shared by the BST ranker's tests."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from features.ranker_columns import (
    EVENT_TIMESTAMP,
    FRAME_COLUMNS,
    ITEM_CATEGORY,
    ITEM_COUNTERS,
    ITEM_ID,
    RECENT_CATEGORIES,
    RECENT_ITEMS,
    RECENT_TS,
    RETRIEVAL_SCORE,
    USER_COUNTERS,
    USER_ID,
    CandidateFeatures,
)
from training.bst_encoding import RankerBatch
from training.bst_vocab import AGE_BUCKETS, N_DENSE, Vocabulary

NOW = pd.Timestamp("2024-03-01 12:00:00", tz="UTC")
T = int(NOW.timestamp())
HOUR = 3600
CATEGORIES = [f"c{k}" for k in range(6)]
AUTO = object()  # row(): the candidate's own category
VOCAB = Vocabulary.build(np.arange(100, 160), CATEGORIES)  # item 100 + k has category c{k % 6}


def category(item: int) -> str:
    return CATEGORIES[(item - 100) % len(CATEGORIES)]


def row(
    item: int = 100,
    history: list[int] | None = None,
    ages_h: list[float] | None = None,
    *,
    user: int = 1,
    at: pd.Timestamp = NOW,
    counters: float | None = 3,
    item_category: object = AUTO,
    score: float | None = 0.5,
) -> dict:
    """One frame row; ``history`` oldest first with its ages in hours (default: 1 h apart, newest 1 h old)."""
    out = {
        USER_ID: user,
        ITEM_ID: item,
        EVENT_TIMESTAMP: at,
        RETRIEVAL_SCORE: score,
        ITEM_CATEGORY: category(item) if item_category is AUTO else item_category,
    }
    out.update(dict.fromkeys([*USER_COUNTERS, *ITEM_COUNTERS], counters))
    if history is None:
        out.update(dict.fromkeys([RECENT_ITEMS, RECENT_CATEGORIES, RECENT_TS]))
    else:
        ages = ages_h if ages_h is not None else [len(history) - k for k in range(len(history))]
        at_s = int(at.timestamp())
        out[RECENT_ITEMS] = list(history)
        out[RECENT_CATEGORIES] = [category(i) for i in history]
        out[RECENT_TS] = [at_s - round(a * HOUR) for a in ages]
    return out


def frame(*rows: dict) -> pd.DataFrame:
    out = pd.DataFrame(list(rows), columns=FRAME_COLUMNS)
    out[EVENT_TIMESTAMP] = pd.to_datetime(out[EVENT_TIMESTAMP], utc=True)
    return out


def random_batch(
    n: int,
    seq_len: int,
    generator: torch.Generator,
    n_items: int = VOCAB.n_items,
    n_categories: int = VOCAB.n_categories,
) -> RankerBatch:
    """Rows with random histories of random lengths (0 to seq_len), left-padded."""
    lengths = torch.randint(0, seq_len + 1, (n,), generator=generator)
    real = torch.arange(seq_len)[None, :] >= (seq_len - lengths)[:, None]
    age = torch.randint(1, AGE_BUCKETS, (n, seq_len), generator=generator) * real
    return RankerBatch(
        seq_items=torch.randint(1, n_items, (n, seq_len), generator=generator) * real,
        seq_categories=torch.randint(1, n_categories, (n, seq_len), generator=generator) * real,
        seq_age=age,
        target_item=torch.randint(1, n_items, (n,), generator=generator),
        target_category=torch.randint(1, n_categories, (n,), generator=generator),
        dense=torch.randn(n, N_DENSE, generator=generator),
    )


def candidates(
    items: list[int],
    history: list[int] | None,
    *,
    at: pd.Timestamp = NOW,
    user_counters=(3, 0, 1, 2),
    item_counters: np.ndarray | None = None,
    categories: list | None = None,
) -> CandidateFeatures:
    n = len(items)
    counters = np.arange(n * 3, dtype=np.float64).reshape(n, 3) if item_counters is None else item_counters
    category_cells = np.empty(n, dtype=object)
    category_cells[:] = [category(i) for i in items] if categories is None else categories
    at_s = int(at.timestamp())
    return CandidateFeatures(
        user_id=7,
        time=at,
        item_ids=np.asarray(items, dtype=np.int64),
        user_counters=np.asarray(user_counters, dtype=np.float64),
        item_counters=counters,
        item_category=category_cells,
        recent_items=None if history is None else list(history),
        recent_categories=None if history is None else [category(i) for i in history],
        recent_ts=None if history is None else [at_s - (len(history) - k) * HOUR for k in range(len(history))],
    )


def assert_same_batch(a: RankerBatch, b: RankerBatch) -> None:
    for field in dataclasses.fields(RankerBatch):
        assert torch.equal(getattr(a, field.name), getattr(b, field.name)), field.name
