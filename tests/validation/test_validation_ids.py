"""Ids are compared exactly, whatever their size: no float64 on the way."""

from __future__ import annotations

import numpy as np
import pandas as pd

from graphrec import contract
from validation.history import BatchHistory
from validation.suite import batch_frame

BIG = 2**53  # float64 cannot tell BIG from BIG + 1


def test_batch_frame_tells_ids_above_2_53_apart():
    frame = pd.DataFrame(
        {
            contract.USER_ID: pd.array([BIG, BIG + 1, BIG + 1, 5], dtype="Int64"),
            contract.ITEM_ID: pd.array([BIG + 1, BIG, 7, 7], dtype="Int64"),
        }
    )
    history = BatchHistory(3, (4, 4, 4), np.array([5, BIG], dtype=np.int64), np.array([7, BIG], dtype=np.int64))

    out = batch_frame(frame, history)

    assert out["user_share"].tolist() == [0.25, 0.5, 0.5, 0.25]
    assert out["item_share"].tolist() == [0.25, 0.25, 0.5, 0.5]
    assert out["user_is_new"].tolist() == [0, 1, 1, 0]
    assert out["item_is_new"].tolist() == [1, 0, 0, 0]


def test_batch_frame_counts_null_ids_as_neither_new_nor_dominant():
    frame = pd.DataFrame(
        {
            contract.USER_ID: pd.array([None, None, 1, 2], dtype="Int64"),
            contract.ITEM_ID: pd.array([3, 3, 3, 3], dtype="Int64"),
        }
    )
    out = batch_frame(frame, BatchHistory(0, (), np.array([1], dtype=np.int64), np.array([3], dtype=np.int64)))
    assert out["user_is_new"].tolist() == [0, 0, 0, 1]
    assert out["user_share"].max() == 0.25  # the nulls (null_ids reports them) are not one "user"


def _sentinel_rows(users: list[int], known: list[int]) -> list:
    frame = pd.DataFrame(
        {contract.USER_ID: pd.array(users, dtype="Int64"), contract.ITEM_ID: pd.array([1] * len(users), dtype="Int64")}
    )
    history = BatchHistory(0, (), np.array(sorted(known), dtype=np.int64), np.array([1], dtype=np.int64))
    out = batch_frame(frame, history, sentinels=[2**15 - 1, 2**31 - 1])
    return [None if pd.isna(v) else int(v) for v in out["sentinel_user_id"]]


def test_a_placeholder_id_standing_apart_is_a_sentinel():
    assert _sentinel_rows([3, 2**31 - 1, 7, 2**31 - 1], known=list(range(100))) == [None, 2**31 - 1, None, 2**31 - 1]
    assert _sentinel_rows([3, 2**15 - 1], known=list(range(1000))) == [None, 2**15 - 1]


def test_a_placeholder_value_among_ids_of_its_size_is_just_an_id():
    # Gowalla has 40,981 items: item 32767 is one of them.
    assert _sentinel_rows([32_766, 2**15 - 1, 32_768], known=list(range(0, 40_981, 7))) == [None, None, None]
    # Hashed ids spread over the int64 range: 2**31 - 1 is as likely as any other.
    assert _sentinel_rows([2**31 - 1, 2**40, 5], known=[2**45]) == [None, None, None]
