"""What the service would answer, for many users at once: exact top-k retrieval in batch.

The model signals of :mod:`monitoring.model_signals` compare the recommendations the champion
serves today's users with those it would serve the reference window's users. Asking the
HTTP service for tens of thousands of users would be slow and would pollute its metrics,
so :func:`serve_batch` reproduces its retrieval answer in batch:

* a user the model knows gets the ``k`` items with the highest inner product
  ``<user_emb[u], item_emb[i]>`` among the items not in the user's seen set (the
  published history), best first;
* a user the model does not know gets the most popular unseen items, flagged as a
  fallback (score ``NaN``), as the service does.

Scores are computed in batches of users (one ``[batch, items]`` matrix product each),
seen items are masked with ``-inf`` and each list is the exact top-``k`` of
:func:`training.topk.top_k_indices`, the project's one top-k (equal scores ordered by
item row, so lists are deterministic).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from graphrec import contract
from serving.history import SeenSets, unique_in_order
from training.ids import RowLookup, positions
from training.topk import top_k_indices

if TYPE_CHECKING:  # pragma: no cover - typing only: serving.bundle loads FAISS
    from serving.bundle import Bundle

RANK = "rank"
SCORE = "score"
FALLBACK = "fallback"
SERVED_COLUMNS = (contract.USER_ID, RANK, contract.ITEM_ID, SCORE, FALLBACK)


@dataclasses.dataclass(frozen=True, eq=False)
class ServingModel:
    """The arrays a published version serves from, for batch scoring.

    Args:
        user_ids (np.ndarray): int64 user ids; row ``i`` of ``user_emb`` is ``user_ids[i]``.
        user_emb (np.ndarray): float32 ``[n_users, dim]``.
        item_ids (np.ndarray): int64 item ids; row ``j`` of ``item_emb`` is ``item_ids[j]``.
        item_emb (np.ndarray): float32 ``[n_items, dim]``.
        seen (SeenSets): items to exclude per user (the published history).
        popular (np.ndarray): int64 item ids, most popular first (the fallback).
    """

    user_ids: np.ndarray
    user_emb: np.ndarray
    item_ids: np.ndarray
    item_emb: np.ndarray
    seen: SeenSets
    popular: np.ndarray

    def __post_init__(self) -> None:
        if self.user_emb.ndim != 2 or self.user_emb.shape[0] != len(self.user_ids):
            raise ValueError(f"user_emb {self.user_emb.shape} does not match {len(self.user_ids)} user ids")
        if self.item_emb.ndim != 2 or self.item_emb.shape[0] != len(self.item_ids):
            raise ValueError(f"item_emb {self.item_emb.shape} does not match {len(self.item_ids)} item ids")
        if self.user_emb.shape[1] != self.item_emb.shape[1]:
            raise ValueError(
                f"user and item embeddings differ in dimension: {self.user_emb.shape[1]} vs {self.item_emb.shape[1]}"
            )

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ServingModel:
        """The serving arrays of a loaded :class:`serving.bundle.Bundle`.

        Item embeddings come from ``bundle.item_emb`` or, when it is ``None``, are
        reconstructed from the FAISS index (row ``j`` = ``item_ids[j]``).
        """
        item_emb = bundle.item_emb
        if item_emb is None:
            from serving.index import item_vectors  # faiss: only a bundle without item_emb needs it

            item_emb = item_vectors(bundle.index)
        return cls(
            user_ids=np.asarray(bundle.user_ids, dtype=np.int64),
            user_emb=np.ascontiguousarray(bundle.user_emb, dtype=np.float32),
            item_ids=np.asarray(bundle.item_ids, dtype=np.int64),
            item_emb=np.ascontiguousarray(item_emb, dtype=np.float32),
            seen=bundle.seen,
            popular=np.asarray(bundle.popular, dtype=np.int64),
        )

    @functools.cached_property
    def user_lookup(self) -> RowLookup:
        """Rows of ``user_emb`` by user id."""
        return RowLookup.of(self.user_ids)

    @functools.cached_property
    def item_lookup(self) -> RowLookup:
        """Rows of ``item_emb`` by item id."""
        return RowLookup.of(self.item_ids)


def serve_batch(
    model: ServingModel,
    user_ids: Sequence[int] | np.ndarray,
    k: int = 20,
    *,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """Top-``k`` recommendations for many users, as the service would answer them.

    Args:
        model (ServingModel): the serving arrays.
        user_ids (Sequence[int]): users to serve; duplicates are served once, in order of
            first appearance.
        k (int): list length. A known user with fewer than ``k`` unseen items gets them
            all. (default: ``20``)
        batch_size (int): users per matrix product (memory: ``batch_size × n_items``
            float32). (default: ``1024``)

    Returns:
        pd.DataFrame: ``user_id`` (int64), ``rank`` (1..k), ``item_id`` (int64), ``score``
        (float64 inner product; ``NaN`` for fallback rows) and ``fallback`` (bool: the
        user is unknown to the model and got the most popular unseen items), ordered by
        the input order of the users, then rank.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    users = unique_in_order(np.asarray(user_ids, dtype=np.int64).reshape(-1))
    rows = model.user_lookup.rows_of(users)
    known = np.flatnonzero(rows >= 0)
    unknown = np.flatnonzero(rows < 0)

    parts: list[tuple[np.ndarray, ...]] = []  # (position, rank, item, score, fallback) per batch
    item_emb = np.ascontiguousarray(model.item_emb, dtype=np.float32)
    for lo in range(0, len(known), batch_size):
        sel = known[lo : lo + batch_size]
        scores = np.ascontiguousarray(model.user_emb[rows[sel]], dtype=np.float32) @ item_emb.T
        seen_row, seen_col = _seen_positions(model, users[sel])
        scores[seen_row, seen_col] = -np.inf
        cols = top_k_indices(scores, k)  # best first
        top = np.take_along_axis(scores, cols, axis=1)
        ok = np.isfinite(top)  # a user with fewer than k unseen items gets them all
        ranks = np.broadcast_to(np.arange(1, cols.shape[1] + 1), cols.shape)
        parts.append(
            (
                np.broadcast_to(sel[:, None], cols.shape)[ok],
                ranks[ok],
                model.item_ids[cols[ok]],
                top[ok].astype(np.float64),
                np.zeros(int(ok.sum()), bool),
            )
        )
    if len(unknown):
        parts.append(_fallback(model, users, unknown, k))

    if not parts:
        return pd.DataFrame(
            {
                contract.USER_ID: np.empty(0, np.int64),
                RANK: np.empty(0, np.int64),
                contract.ITEM_ID: np.empty(0, np.int64),
                SCORE: np.empty(0, np.float64),
                FALLBACK: np.empty(0, bool),
            }
        )
    position, rank, item, score, fallback = (np.concatenate(column) for column in zip(*parts))
    order = np.lexsort((rank, position))
    return pd.DataFrame(
        {
            contract.USER_ID: users[position[order]],
            RANK: rank[order].astype(np.int64),
            contract.ITEM_ID: item[order].astype(np.int64),
            SCORE: score[order],
            FALLBACK: fallback[order],
        }
    )


def _seen_positions(model: ServingModel, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(batch row, item row) of every seen item of ``users`` that the model knows."""
    seen = model.seen
    pos = positions(seen.user_ids, users)  # -1: no history
    starts = seen.indptr[np.maximum(pos, 0)]
    lengths = np.where(pos >= 0, seen.indptr[pos + 1] - starts, 0)
    batch_row = np.repeat(np.arange(len(users)), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    item_rows = model.item_lookup.rows_of(seen.item_ids[np.repeat(starts, lengths) + offsets])
    keep = item_rows >= 0
    return batch_row[keep], item_rows[keep]


def _fallback(model: ServingModel, users: np.ndarray, unknown: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """The most popular unseen items for the users at positions ``unknown`` (not in the model)."""
    popular = np.asarray(model.popular, dtype=np.int64)
    lists = []
    for position in unknown:
        seen = model.seen.items_for(int(users[position]))
        head = popular[: k + len(seen)]  # enough to fill k after removing the seen ones
        items = head if len(seen) == 0 else head[~np.isin(head, seen)][:k]
        lists.append(items)
    lengths = np.array([len(items) for items in lists], dtype=np.int64)
    total = int(lengths.sum())
    rank = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1
    return (
        np.repeat(unknown, lengths),
        rank,
        np.concatenate(lists) if lists else np.empty(0, np.int64),
        np.full(total, np.nan),
        np.ones(total, bool),
    )
