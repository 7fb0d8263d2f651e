"""What users have already seen and what is popular: pure transforms, no I/O.

A recommender should not suggest what a user already interacted with. The published
bundle stores, for every user with history, the sorted set of item ids they have seen
as a CSR structure (``indptr`` + ``item_ids``, keyed by a sorted ``user_ids`` array),
which is compact, loads with one ``np.load`` and answers a lookup with one binary
search (:func:`training.ids.positions`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import pandas as pd

from graphrec import contract
from training.ids import positions


@dataclasses.dataclass(frozen=True)
class SeenSets:
    """Per-user sets of seen item ids in CSR form.

    Args:
        user_ids (np.ndarray): sorted, unique int64 user ids.
        indptr (np.ndarray): int64 offsets of length ``len(user_ids) + 1``; the items of
            ``user_ids[i]`` are ``item_ids[indptr[i]:indptr[i + 1]]``.
        item_ids (np.ndarray): int64 item ids, sorted and unique within each user.
    """

    user_ids: np.ndarray
    indptr: np.ndarray
    item_ids: np.ndarray

    def __post_init__(self) -> None:
        if len(self.indptr) != len(self.user_ids) + 1:
            raise ValueError("indptr must have one more entry than user_ids")
        if len(self.indptr) and int(self.indptr[-1]) != len(self.item_ids):
            raise ValueError("indptr[-1] must equal the number of item ids")
        if len(self.user_ids) > 1 and not (np.diff(self.user_ids) > 0).all():
            raise ValueError("user_ids must be sorted and unique")

    @classmethod
    def empty(cls) -> SeenSets:
        return cls(np.empty(0, np.int64), np.zeros(1, np.int64), np.empty(0, np.int64))

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_pairs(self) -> int:
        return len(self.item_ids)

    def items_for(self, user_id: int) -> np.ndarray:
        """Sorted item ids seen by ``user_id`` (empty for a user without history)."""
        i = int(positions(self.user_ids, [user_id])[0])
        if i < 0:
            return self.item_ids[:0]
        return self.item_ids[self.indptr[i] : self.indptr[i + 1]]


def seen_from_pairs(pairs: pd.DataFrame) -> SeenSets:
    """Group (user_id, item_id) pairs into :class:`SeenSets`.

    Args:
        pairs (pd.DataFrame): at least the ``user_id`` and ``item_id`` columns; duplicate
            pairs are fine (an interactions frame can be passed as is).

    Returns:
        SeenSets: one sorted, de-duplicated item set per user.

    Raises:
        ValueError: if a column is missing or holds nulls.
    """
    missing = {contract.USER_ID, contract.ITEM_ID} - set(pairs.columns)
    if missing:
        raise ValueError(f"seen pairs lack columns {sorted(missing)}")
    if pairs.empty:
        return SeenSets.empty()
    frame = pairs[[contract.USER_ID, contract.ITEM_ID]]
    if frame.isna().any().any():
        raise ValueError("seen pairs contain null ids")
    users = frame[contract.USER_ID].to_numpy(np.int64)
    items = frame[contract.ITEM_ID].to_numpy(np.int64)
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    keep = np.ones(len(users), bool)
    keep[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    users, items = users[keep], items[keep]
    user_ids, starts = np.unique(users, return_index=True)
    indptr = np.append(starts, len(users)).astype(np.int64)
    return SeenSets(user_ids.astype(np.int64), indptr, items)


def popularity_order(interactions: pd.DataFrame) -> np.ndarray:
    """Item ids ordered by number of interactions, most popular first.

    Ties are broken by the smaller item id so the order is deterministic.

    Args:
        interactions (pd.DataFrame): frame with an ``item_id`` column.

    Returns:
        np.ndarray: int64 item ids.
    """
    if interactions.empty:
        return np.empty(0, np.int64)
    counts = interactions[contract.ITEM_ID].astype(np.int64).value_counts()
    ranked = counts.rename("n").reset_index().sort_values(["n", contract.ITEM_ID], ascending=[False, True])
    return ranked[contract.ITEM_ID].to_numpy(np.int64)


def unique_in_order(ids: Iterable[int]) -> np.ndarray:
    """De-duplicate ids keeping the first occurrence (and therefore the order)."""
    arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
    if arr.size == 0:
        return arr.reshape(0)
    _, first = np.unique(arr, return_index=True)
    return arr[np.sort(first)]
