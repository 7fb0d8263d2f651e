"""BST ranker: Behavior Sequence Transformer over Feast features, its encoder and training loop.

BST (`Chen et al., 2019 <https://arxiv.org/abs/1905.06874>`_) scores a (user, candidate
item) pair from the user's recent behaviour sequence ``v_1..v_L`` (most recent last) and
the candidate ``v_t``. Each of the ``L + 1`` items becomes one token

.. math::
    \\mathbf{e}_j = E_{item}[v_j] + E_{cat}[c_j] + P[a_j], \\qquad
    a_j = 1 + \\min\\left(A - 2, \\left\\lfloor \\log_2 (1 + \\Delta t_j / 1\\,\\mathrm{h}) \\right\\rfloor\\right)

where ``P`` is the paper's time-based "positional" embedding indexed by the age bucket
``a_j`` of the event (``A = AGE_BUCKETS``; bucket ``0`` is padding and the candidate has the
dedicated bucket ``A``). The embeddings are summed rather than concatenated (the paper
concatenates): one width ``d`` for all, no projection. One transformer block
(:class:`torch.nn.TransformerEncoderLayer`: multi-head self-attention and a feed-forward
net with LeakyReLU, post-norm as in the paper) mixes the tokens; padding positions are
masked as keys and the candidate token is never masked, so an empty history still scores.
The feed-forward net is ``2 d`` wide, not the usual ``4 d``. The candidate token's output
(instead of the paper's flattening of every position, which would tie the MLP to ``L``
and to where the padding falls) is concatenated with the standardised dense features and
fed to an MLP with LeakyReLU that outputs one logit.

Only the candidate position's output is used, so the block computes only that position
(:meth:`BST.candidate_output`): its query attends to the keys and values of every token,
then the residual, norm and feed-forward steps run on that one position. This is the same
function as running the whole block and keeping its last position (a test checks it), at
a fraction of the cost: on one core, 200 candidates with ``L = 20`` went from ~4.6 ms to
~1 ms per request (``benchmarks/bench_ranker_cost.py``).

Dense features (:data:`DENSE_FEATURES`): ``log1p`` of the seven Feast counters (missing
is ``0``), a flag per feature view saying whether the row had a snapshot at all, and the
retriever's score. They are standardised with the training set's mean and standard
deviation, kept as buffers of the model (:meth:`BST.fit_dense_scaling`): unlike batch
normalisation this is the same transform in training and in serving, for a batch of one.

The module holds the pure parts: :class:`Vocabulary`, :func:`encode` (frame to
:class:`RankerBatch`), the :class:`BST` module, :func:`fit_bst`, :func:`predict` and
:func:`auc`, and the serving path's :class:`CandidateFeatures`,
:func:`encode_candidates` and :class:`RequestScorer`; :func:`save_ranker` / :func:`load_ranker` are its only file I/O.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

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

# Frame columns (Feast ``full_feature_names=True``): features.ranker_columns ------------------

DENSE_FEATURES = [
    *(f"log1p_{name}" for name in (*USER_COUNTERS, *ITEM_COUNTERS)),
    "has_user_features",
    "has_item_features",
    RETRIEVAL_SCORE,
    "log1p_retrieval_rank",
    "retrieval_gap",
]
N_DENSE = len(DENSE_FEATURES)
AGE_BUCKETS = 16
"""Age buckets of sequence events: ``1..AGE_BUCKETS - 1`` (log2 of hours); ``0`` is padding."""
PAD, UNKNOWN = 0, 1
"""Reserved vocabulary indices; known items and categories start at ``2``."""
_RESERVED = 2
_SHORT = 1024  # inputs up to this length take the per-request (dict) category lookup
_NS_PER_S = 1_000_000_000
_NS_PER_HOUR = 3600 * _NS_PER_S
_NS_PER_UNIT = {"s": _NS_PER_S, "ms": 1_000_000, "us": 1_000, "ns": 1}


# Vocabulary ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Vocabulary:
    """Item ids and category strings to embedding indices (``0`` padding, ``1`` unknown).

    Args:
        item_ids: the known external item ids, sorted and distinct; id ``item_ids[k]``
            has index ``k + 2``.
        category_names: the known categories, sorted and distinct; same numbering.
    """

    item_ids: np.ndarray
    category_names: tuple[str, ...]

    def __post_init__(self) -> None:
        ids = np.asarray(self.item_ids, dtype=np.int64)
        if ids.ndim != 1 or (len(ids) > 1 and not (np.diff(ids) > 0).all()):
            raise ValueError("item_ids must be a sorted 1-d array of distinct ids")
        names = tuple(self.category_names)
        if list(names) != sorted(set(names)):
            raise ValueError("category_names must be sorted and distinct")
        object.__setattr__(self, "item_ids", ids)
        object.__setattr__(self, "category_names", names)

    @classmethod
    def build(cls, item_ids: Iterable[int] | np.ndarray, categories: Iterable[str]) -> Vocabulary:
        """The vocabulary of ``item_ids`` and ``categories`` (duplicates and missing values dropped)."""
        ids = np.unique(np.asarray(item_ids if isinstance(item_ids, np.ndarray) else list(item_ids), dtype=np.int64))
        names = sorted({c for c in categories if isinstance(c, str)})
        return cls(ids, tuple(names))

    @property
    def n_items(self) -> int:
        """Rows of the item embedding table (the two reserved ones included)."""
        return len(self.item_ids) + _RESERVED

    @property
    def n_categories(self) -> int:
        """Rows of the category embedding table (the two reserved ones included)."""
        return len(self.category_names) + _RESERVED

    def items(self, ids: np.ndarray) -> np.ndarray:
        """Indices of external item ``ids`` (int64, any shape); unknown ids map to ``1``."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self.item_ids) == 0:
            return np.full(ids.shape, UNKNOWN, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.item_ids, ids), len(self.item_ids) - 1)
        return np.where(self.item_ids[pos] == ids, pos + _RESERVED, UNKNOWN).astype(np.int64)

    def categories(self, values: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """Indices of category strings (1-d); unknown and missing ones map to ``1``.

        Short inputs (one request's candidates) are looked up in a dict: building the
        pandas index lookup costs ~0.1 ms per call, more than the lookups themselves.
        """
        if len(values) <= _SHORT:
            lookup = self._category_lookup
            return np.fromiter(
                (lookup.get(v, UNKNOWN) if isinstance(v, str) else UNKNOWN for v in values),
                dtype=np.int64,
                count=len(values),
            )
        found = self._category_index.get_indexer(np.asarray(values, dtype=object))
        return np.where(found >= 0, found + _RESERVED, UNKNOWN).astype(np.int64)

    @functools.cached_property
    def _category_index(self) -> pd.Index:
        return pd.Index(self.category_names, dtype=object)

    @functools.cached_property
    def _category_lookup(self) -> dict[str, int]:
        return {name: k + _RESERVED for k, name in enumerate(self.category_names)}

    def to_dict(self) -> dict[str, list]:
        """A JSON-able form; :meth:`from_dict` restores it exactly."""
        return {"item_ids": self.item_ids.tolist(), "categories": list(self.category_names)}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> Vocabulary:
        """The vocabulary written by :meth:`to_dict`."""
        return cls(np.asarray(data["item_ids"], dtype=np.int64), tuple(data["categories"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self.category_names == other.category_names and np.array_equal(self.item_ids, other.item_ids)

    __hash__ = None  # type: ignore[assignment]


# Encoded batch -------------------------------------------------------------------------------
@dataclasses.dataclass
class RankerBatch:
    """The model's input for ``B`` rows (sequence length ``L``).

    Args:
        seq_items: ``[B, L]`` long, item indices of the history, most recent last,
            left-padded with ``0``.
        seq_categories: ``[B, L]`` long, their category indices.
        seq_age: ``[B, L]`` long, age bucket of each event (``0`` marks padding).
        target_item: ``[B]`` long, the candidate's item index.
        target_category: ``[B]`` long, the candidate's category index.
        dense: ``[B, N_DENSE]`` float32, :data:`DENSE_FEATURES`.
    """

    seq_items: Tensor
    seq_categories: Tensor
    seq_age: Tensor
    target_item: Tensor
    target_category: Tensor
    dense: Tensor

    def __len__(self) -> int:
        return self.target_item.shape[0]

    def subset(self, index: Tensor | np.ndarray | Sequence[int]) -> RankerBatch:
        """The rows at ``index`` (positions, or a boolean mask)."""
        index = torch.as_tensor(index)
        return RankerBatch(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


# Encoder -------------------------------------------------------------------------------------
def _epoch_ns(values: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (UTC; naive times are taken as UTC)."""
    if values.dtype.kind != "M":  # neither datetime64 nor datetime64 with a time zone
        values = pd.to_datetime(values, utc=True)
    times = values.array  # reading the int64 behind it is ~50x faster than pd.to_datetime
    raw = np.asarray(times.asi8)
    if (raw == np.iinfo(np.int64).min).any():
        raise ValueError(f"{EVENT_TIMESTAMP} must not be missing")
    return raw * _NS_PER_UNIT[times.unit]


def _floats(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``[rows, len(columns)]`` float64 with NaN for every kind of missing value."""
    out = np.empty((len(frame), len(columns)))
    for k, name in enumerate(columns):
        column = frame[name]
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iufb":  # no NA besides NaN: fast
            out[:, k] = column.to_numpy()
        else:  # nullable extension dtypes, objects holding None / pd.NA
            out[:, k] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def dense_features(frame: pd.DataFrame) -> np.ndarray:
    """``[rows, N_DENSE]`` float32 :data:`DENSE_FEATURES` of a frame of :data:`FRAME_COLUMNS`.

    A row "has user (item) features" when any counter of the view (or the item's
    category) is present: Feast leaves all of them missing when it found no snapshot.
    """
    values = _floats(frame, [*USER_COUNTERS, *ITEM_COUNTERS, RETRIEVAL_SCORE])
    has_category = ~pd.isna(frame[ITEM_CATEGORY].to_numpy(dtype=object))
    score = np.where(np.isfinite(values[:, -1]), values[:, -1], 0.0)
    return _dense(values, has_category, score, *_within_list(frame, score))


def _dense(
    values: np.ndarray, has_category: np.ndarray, score: np.ndarray, rank: np.ndarray, gap: np.ndarray
) -> np.ndarray:
    """:data:`DENSE_FEATURES` from the counters and score ``values`` (NaN: missing), each row's
    category presence, its finite retrieval score, and its rank and gap within its list."""
    missing = np.isnan(values)
    n_user, n_counters = len(USER_COUNTERS), len(USER_COUNTERS) + len(ITEM_COUNTERS)
    out = np.empty((len(values), N_DENSE), dtype=np.float32)
    out[:, :n_counters] = np.log1p(np.clip(np.where(missing[:, :n_counters], 0.0, values[:, :n_counters]), 0.0, None))
    out[:, n_counters] = ~missing[:, :n_user].all(axis=1)
    out[:, n_counters + 1] = ~missing[:, n_user:n_counters].all(axis=1) | has_category
    out[:, n_counters + 2] = score
    out[:, n_counters + 3] = np.log1p(rank)
    out[:, n_counters + 4] = gap
    return out


def _rank_one_list(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank (0 = best, ties in row order) and gap to the best of one list's scores."""
    order = np.argsort(-score, kind="stable")
    rank = np.empty(len(score))
    rank[order] = np.arange(len(score))
    return rank, score - score.max()


def _within_list(frame: pd.DataFrame, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's rank (0 = best) by retrieval score among the rows of the same list, and
    its score minus the list's best: scale-free views of the first stage's opinion.

    A list is the rows sharing ``user_id`` and ``event_timestamp`` (one request in serving,
    one user's candidates at one moment in training and evaluation); ties keep row order.
    """
    if len(frame) == 0:
        return np.zeros(0), np.zeros(0)
    users = frame[USER_ID].to_numpy(np.int64)
    times = _epoch_ns(frame[EVENT_TIMESTAMP])
    if (users == users[0]).all() and (times == times[0]).all():  # one request: the serving path
        return _rank_one_list(score)
    keys = pd.DataFrame({"u": users, "t": times, "s": -score})
    rank = keys.groupby(["u", "t"], sort=False)["s"].rank(method="first").to_numpy() - 1
    best = keys.groupby(["u", "t"], sort=False)["s"].transform("min").to_numpy()
    return rank, score + best


def _as_list(value: Any) -> Sequence[Any]:
    """A sequence feature value as a sequence; ``None``/NaN/NA (no snapshot) is empty."""
    if value is None or isinstance(value, (float, str)) or value is pd.NA:
        return ()
    return value


def _same_history(cells: np.ndarray) -> bool:
    """Whether every cell equals the first (lists compare in C; arrays element-wise)."""
    first = cells[0]
    if isinstance(first, list):
        return all(cell is first or (type(cell) is list and cell == first) for cell in cells)
    if isinstance(first, np.ndarray):
        return all(cell is first or (isinstance(cell, np.ndarray) and np.array_equal(cell, first)) for cell in cells)
    return all(cell is first for cell in cells)


def _distinct_sequences(columns: Sequence[np.ndarray], t_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: one representative row per distinct (history, time) key.

    Rows with the same history at the same time encode to the same sequence, so it is
    encoded once. Serving scores ~200 candidates of one user at one time: when all rows
    hold the same objects (features broadcast to the rows) or equal lists (a feature-store
    client that copies them per row), one history is encoded. Otherwise rows are grouped
    by the identity of their cells, and equal but distinct objects are encoded again
    (correct, a little slower).

    Args:
        columns: the rows' cells of :data:`RECENT_ITEMS`, :data:`RECENT_CATEGORIES`, :data:`RECENT_TS`.
        t_ns: the rows' scoring times.
    """
    n = len(t_ns)
    one = np.zeros(1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    if (t_ns == t_ns[0]).all() and all(_same_history(col) for col in columns):
        return one
    keys = np.column_stack([np.fromiter(map(id, col), dtype=np.int64, count=n) for col in columns] + [t_ns])
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def encode_sequences(
    items: Sequence[Any],
    categories: Sequence[Any],
    ts: Sequence[Any],
    t_ns: np.ndarray,
    vocab: Vocabulary,
    seq_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(seq_items, seq_categories, seq_age)``, each ``[n, seq_len]`` int64, of ``n`` histories.

    Events at or after the row's time ``t_ns`` are dropped, then the last ``seq_len`` kept
    events fill the right end of the row (left padding with ``0``). Vectorised over the
    flattened events: one Python pass only to measure and chain the lists.

    Args:
        items: per history, a list of item ids (most recent last), or a missing value.
        categories: per history, the events' category strings.
        ts: per history, the events' epoch seconds (UTC).
        t_ns: ``[n]`` the time each history is scored at, nanoseconds since the epoch.
        vocab: item and category indices.
        seq_len: ``L``.
    """
    n = len(t_ns)
    items, categories, ts = ([_as_list(v) for v in col] for col in (items, categories, ts))
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=n)
    if not (
        np.array_equal(lengths, np.fromiter(map(len, categories), dtype=np.int64, count=n))
        and np.array_equal(lengths, np.fromiter(map(len, ts), dtype=np.int64, count=n))
    ):
        raise ValueError(f"{RECENT_ITEMS}, {RECENT_CATEGORIES} and {RECENT_TS} must have equal lengths per row")
    total = int(lengths.sum())
    flat_ts = np.fromiter(itertools.chain.from_iterable(ts), dtype=np.int64, count=total) * _NS_PER_S
    row = np.repeat(np.arange(n), lengths)
    kept = np.flatnonzero(flat_ts < t_ns[row])  # strictly before the scoring time
    row = row[kept]
    counts = np.bincount(row, minlength=n)
    within = np.arange(len(kept)) - (np.cumsum(counts) - counts)[row]
    from_end = counts[row] - 1 - within  # 0 = most recent kept event
    last = from_end < seq_len
    row, event, col = row[last], kept[last], seq_len - 1 - from_end[last]

    out = [np.zeros((n, seq_len), dtype=np.int64) for _ in range(3)]
    flat_items = np.fromiter(itertools.chain.from_iterable(items), dtype=np.int64, count=total)
    out[0][row, col] = vocab.items(flat_items[event])
    flat_categories = np.fromiter(itertools.chain.from_iterable(categories), dtype=object, count=total)
    out[1][row, col] = vocab.categories(flat_categories[event])
    hours = (t_ns[row] - flat_ts[event]) / _NS_PER_HOUR
    out[2][row, col] = 1 + np.minimum(AGE_BUCKETS - 2, np.floor(np.log2(1.0 + hours))).astype(np.int64)
    return out[0], out[1], out[2]


def encode(frame: pd.DataFrame, vocab: Vocabulary, seq_len: int) -> RankerBatch:
    """The :class:`RankerBatch` of a frame of :data:`FRAME_COLUMNS`, one row per candidate.

    Sequence: the last ``seq_len`` events of ``recent_items`` strictly before the row's
    ``event_timestamp`` (defensive: the feature store already guarantees it), most recent
    last, left-padded with ``0``; age buckets as in the module docstring. Target category:
    ``item_popularity__category`` (missing is unknown). Dense: :func:`dense_features`.
    Histories shared by several rows are encoded once (:func:`_distinct_sequences`).

    Args:
        frame: the rows; any feature may be missing (NaN, None, ``pd.NA``).
        vocab: item and category indices.
        seq_len: ``L``, the model's sequence length.

    Returns:
        The batch, rows in the frame's order.
    """
    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    n = len(frame)
    t_ns = _epoch_ns(frame[EVENT_TIMESTAMP])
    if n:
        columns = [frame[c].to_numpy(dtype=object) for c in (RECENT_ITEMS, RECENT_CATEGORIES, RECENT_TS)]
        first, inverse = _distinct_sequences(columns, t_ns)
        items, categories, ts = (col[first] for col in columns)
        distinct = encode_sequences(items, categories, ts, t_ns[first], vocab, seq_len)
        sequences = [a[inverse] for a in distinct]
    else:
        sequences = [np.zeros((0, seq_len), dtype=np.int64)] * 3
    return RankerBatch(
        seq_items=torch.from_numpy(sequences[0]),
        seq_categories=torch.from_numpy(sequences[1]),
        seq_age=torch.from_numpy(sequences[2]),
        target_item=torch.from_numpy(vocab.items(frame[ITEM_ID].to_numpy(dtype=np.int64))),
        target_category=torch.from_numpy(vocab.categories(frame[ITEM_CATEGORY].to_numpy(dtype=object))),
        dense=torch.from_numpy(dense_features(frame)),
    )


def encode_candidates(
    features: CandidateFeatures, retrieval_scores: np.ndarray, vocab: Vocabulary, seq_len: int
) -> RankerBatch:
    """The :class:`RankerBatch` of one request: ``encode(features.to_frame() + retrieval_score)``.

    The user's history is encoded once and repeated for every candidate.

    Args:
        features: the request's features.
        retrieval_scores: ``[n]`` the retriever's score of each candidate.
        vocab: item and category indices.
        seq_len: ``L``, the model's sequence length.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    n = len(features)
    values = np.empty((n, len(USER_COUNTERS) + len(ITEM_COUNTERS) + 1))
    values[:, : len(USER_COUNTERS)] = features.user_counters
    values[:, len(USER_COUNTERS) : -1] = features.item_counters
    values[:, -1] = np.asarray(retrieval_scores, dtype=np.float64).reshape(-1)
    if n == 0:
        empty = np.zeros((0, seq_len), dtype=np.int64)
        sequences = [empty] * 3
        dense = np.zeros((0, N_DENSE), dtype=np.float32)
    else:
        # ns since the epoch, at the frame's microsecond resolution
        t_ns = np.array([pd.Timestamp(features.time).value // 1_000 * 1_000], dtype=np.int64)
        one = encode_sequences(
            [features.recent_items], [features.recent_categories], [features.recent_ts], t_ns, vocab, seq_len
        )
        sequences = [np.repeat(a, n, axis=0) for a in one]
        score = np.where(np.isfinite(values[:, -1]), values[:, -1], 0.0)
        has_category = ~pd.isna(features.item_category)
        dense = _dense(values, has_category, score, *_rank_one_list(score))
    return RankerBatch(
        seq_items=torch.from_numpy(sequences[0]),
        seq_categories=torch.from_numpy(sequences[1]),
        seq_age=torch.from_numpy(sequences[2]),
        target_item=torch.from_numpy(vocab.items(features.item_ids)),
        target_category=torch.from_numpy(vocab.categories(features.item_category)),
        dense=torch.from_numpy(dense),
    )


# Model ---------------------------------------------------------------------------------------
class BST(nn.Module):
    """Behavior Sequence Transformer ranker (module docstring): one logit per row.

    Args:
        n_items: item embedding rows, :attr:`Vocabulary.n_items`.
        n_categories: category embedding rows, :attr:`Vocabulary.n_categories`.
        seq_len: ``L``, the history length the batches must have. (default: ``20``)
        dim: token width ``d``. (default: ``32``)
        heads: attention heads (must divide ``dim``). (default: ``2``)
        age_buckets: ``A``; the age table has ``A + 1`` rows, the last for the candidate.
            (default: :data:`AGE_BUCKETS`)
        n_dense: dense features per row. (default: :data:`N_DENSE`)
        hidden: widths of the MLP's hidden layers. (default: ``(64, 32)``)
        dropout: dropout in the transformer block and the MLP. (default: ``0.1``)
    """

    dense_mean: Tensor  # buffers, set by fit_dense_scaling
    dense_std: Tensor

    def __init__(
        self,
        n_items: int,
        n_categories: int,
        *,
        seq_len: int = 20,
        dim: int = 32,
        heads: int = 2,
        age_buckets: int = AGE_BUCKETS,
        n_dense: int = N_DENSE,
        hidden: tuple[int, ...] = (64, 32),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim})")
        self.n_items, self.n_categories, self.seq_len, self.dim, self.heads = n_items, n_categories, seq_len, dim, heads
        self.age_buckets, self.n_dense, self.hidden, self.dropout = age_buckets, n_dense, tuple(hidden), dropout
        self.item_embedding = nn.Embedding(n_items, dim, padding_idx=PAD)
        self.category_embedding = nn.Embedding(n_categories, dim, padding_idx=PAD)
        self.age_embedding = nn.Embedding(age_buckets + 1, dim, padding_idx=0)
        with torch.no_grad():  # three summed tables: each token starts at about unit norm
            for table in (self.item_embedding, self.category_embedding, self.age_embedding):
                nn.init.normal_(table.weight, std=dim**-0.5)
                table.weight[0] = 0.0
        # A custom activation keeps torch's fused "fast path" off: train and eval (and a
        # batch of one and of many) run the same kernels.
        self.block = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, activation=nn.LeakyReLU(), batch_first=True
        )
        self.register_buffer("dense_mean", torch.zeros(n_dense))
        self.register_buffer("dense_std", torch.ones(n_dense))
        layers: list[nn.Module] = []
        width = dim + n_dense
        for size in self.hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def config(self) -> dict[str, Any]:
        """The constructor's arguments, JSON-able: ``BST(**model.config())`` rebuilds it."""
        return {
            "n_items": self.n_items,
            "n_categories": self.n_categories,
            "seq_len": self.seq_len,
            "dim": self.dim,
            "heads": self.heads,
            "age_buckets": self.age_buckets,
            "n_dense": self.n_dense,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
        }

    @torch.no_grad()
    def fit_dense_scaling(self, dense: Tensor) -> None:
        """Standardise dense features with the mean and standard deviation of ``dense`` ``[N, n_dense]``.

        Constant columns (std below ``1e-6``) are only centred.
        """
        std = dense.double().std(dim=0, unbiased=False)
        self.dense_mean.copy_(dense.double().mean(dim=0))
        self.dense_std.copy_(torch.where(std < 1e-6, torch.ones_like(std), std))

    def forward(self, batch: RankerBatch) -> Tensor:
        """Logits ``[B]`` of the batch's rows."""
        if batch.seq_items.shape[1:] != (self.seq_len,) or batch.dense.shape[1:] != (self.n_dense,):
            raise ValueError(
                f"batch has sequences of {tuple(batch.seq_items.shape[1:])} and dense of "
                f"{tuple(batch.dense.shape[1:])}, the model wants ({self.seq_len},) and ({self.n_dense},)"
            )
        candidate_age = torch.full_like(batch.target_item, self.age_buckets)
        items = torch.cat([batch.seq_items, batch.target_item[:, None]], dim=1)
        categories = torch.cat([batch.seq_categories, batch.target_category[:, None]], dim=1)
        ages = torch.cat([batch.seq_age, candidate_age[:, None]], dim=1)
        tokens = self.item_embedding(items) + self.category_embedding(categories) + self.age_embedding(ages)
        padding = ages == 0  # never true for the candidate (last) token
        dense = (batch.dense - self.dense_mean) / self.dense_std
        return self.mlp(torch.cat([self.candidate_output(tokens, padding), dense], dim=1)).squeeze(-1)

    def candidate_output(self, tokens: Tensor, padding: Tensor) -> Tensor:
        """``self.block(tokens, src_key_padding_mask=padding)[:, -1]``, computing only that position.

        In a single post-norm encoder layer, position ``j``'s output depends on the layer's
        *inputs* at every position (as keys and values) but on no other position's output,
        so the last position can be computed alone: attention with one query, then
        ``norm1``, the feed-forward net and ``norm2`` on ``[B, 1, d]``.
        """
        block = self.block
        query = tokens[:, -1:]
        attended = block.self_attn(query, tokens, tokens, key_padding_mask=padding, need_weights=False)[0]
        hidden = block.norm1(query + block.dropout1(attended))
        feed = block.linear2(block.dropout(block.activation(block.linear1(hidden))))
        return block.norm2(hidden + block.dropout2(feed))[:, 0]

    def shared_history_logits(
        self,
        seq_items: Tensor,
        seq_categories: Tensor,
        seq_age: Tensor,
        target_item: Tensor,
        target_category: Tensor,
        dense: Tensor,
    ) -> Tensor:
        """Logits ``[B]`` of ``B`` candidates that share one history (one request), in eval mode.

        The same function as :meth:`forward` on a batch repeating the history ``[L]`` for
        every row, computed once where it is shared: the history's tokens and their keys
        and values are projected once instead of ``B`` times, and each candidate's query
        attends to them and to its own key and value. For 100 candidates and ``L = 20``
        that is ~20x fewer projections (a test checks it against :meth:`forward`). No
        dropout: serving only.

        Args:
            seq_items, seq_categories, seq_age: ``[L]`` the history (padding: age ``0``).
            target_item, target_category: ``[B]`` the candidates.
            dense: ``[B, n_dense]`` their dense features.
        """
        attention = self.block.self_attn
        d, heads = self.dim, self.heads
        width = d // heads
        history = self.item_embedding(seq_items) + self.category_embedding(seq_categories) + self.age_embedding(seq_age)
        candidate_age = torch.full_like(target_item, self.age_buckets)
        candidates = (
            self.item_embedding(target_item)
            + self.category_embedding(target_category)
            + self.age_embedding(candidate_age)
        )
        w_q, w_kv = attention.in_proj_weight[:d], attention.in_proj_weight[d:]
        b_q, b_kv = attention.in_proj_bias[:d], attention.in_proj_bias[d:]
        query = F.linear(candidates, w_q, b_q).view(-1, heads, width) * width**-0.5  # [B, H, w]
        k_history, v_history = F.linear(history, w_kv, b_kv).view(-1, 2, heads, width).unbind(1)  # [L, H, w]
        k_own, v_own = F.linear(candidates, w_kv, b_kv).view(-1, 2, heads, width).unbind(1)  # [B, H, w]
        on_history = torch.einsum("bhw,lhw->bhl", query, k_history)
        on_history = on_history.masked_fill((seq_age == 0)[None, None, :], float("-inf"))
        on_own = (query * k_own).sum(-1, keepdim=True)
        weights = torch.softmax(torch.cat([on_history, on_own], dim=-1), dim=-1)  # [B, H, L + 1]
        mixed = torch.einsum("bhl,lhw->bhw", weights[..., :-1], v_history) + weights[..., -1:] * v_own
        attended = attention.out_proj(mixed.reshape(-1, d))
        block = self.block
        hidden = block.norm1(candidates + attended)
        output = block.norm2(hidden + block.linear2(block.activation(block.linear1(hidden))))
        dense = (dense - self.dense_mean) / self.dense_std
        return self.mlp(torch.cat([output, dense], dim=1)).squeeze(-1)


def build_bst(vocab: Vocabulary, seed: int = 42, **kwargs: Any) -> BST:
    """A :class:`BST` sized for ``vocab``, initialised from ``seed`` (global RNG untouched).

    Args:
        vocab: gives ``n_items`` and ``n_categories``.
        seed: the initial weights' seed.
        **kwargs: further :class:`BST` arguments.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BST(vocab.n_items, vocab.n_categories, **kwargs)


# Training ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BSTTrainConfig:
    """Hyper-parameters of one ranker training run.

    Args:
        epochs: passes over the training rows. (default: ``10``)
        batch_size: rows per Adam step. (default: ``1024``)
        learning_rate: Adam's step size. (default: ``1e-3``)
        weight_decay: Adam's L2 term. (default: ``1e-6``)
        seed: seeds the shuffling and dropout. (default: ``42``)
        patience: with a validation set, stop after this many epochs in a row without a
            higher validation AUC and restore the best epoch's weights; ``0`` never stops
            early and keeps the last epoch's. (default: ``0``)
        num_threads: torch intra-op threads while training, restored afterwards; ``None``
            keeps the current setting. (default: ``None``)
        scale_dense: fit the model's dense standardisation on the training rows first
            (:meth:`BST.fit_dense_scaling`). (default: ``True``)
    """

    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    seed: int = 42
    patience: int = 0
    num_threads: int | None = None
    scale_dense: bool = True


@dataclasses.dataclass
class FitResult:
    """What :func:`fit_bst` did to the model it trained in place.

    Args:
        losses: mean training BCE per epoch (``losses[e - 1]`` is epoch ``e``).
        valid_auc: validation AUC after each epoch (empty without a validation set).
        best_epoch: with early stopping, the epoch whose weights the model holds.
        stopped_early: whether training stopped before ``epochs``.
        seconds: wall time.
    """

    losses: list[float]
    valid_auc: list[float]
    best_epoch: int | None
    stopped_early: bool
    seconds: float


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (``None``: leave them); restored on exit.

    Same as :func:`training.train.torch_threads`, kept here so that serving, which imports
    this module, does not import torch_geometric.
    """
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(max(1, num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_labels(batch: RankerBatch, labels: np.ndarray, what: str) -> Tensor:
    labels = np.asarray(labels, dtype=np.float32).reshape(-1)
    if len(labels) != len(batch):
        raise ValueError(f"{what}: {len(labels)} labels for {len(batch)} rows")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError(f"{what}: labels must be 0 or 1")
    return torch.from_numpy(labels)


def fit_bst(
    model: BST,
    batch: RankerBatch,
    labels: np.ndarray,
    config: BSTTrainConfig = BSTTrainConfig(),
    valid: tuple[RankerBatch, np.ndarray] | None = None,
) -> FitResult:
    """Train ``model`` in place with binary cross-entropy on logits and Adam.

    Deterministic: the same initial model, data and ``config.seed`` give bit-identical
    weights (shuffling from a seeded :class:`torch.Generator`, dropout from the global RNG
    seeded inside :func:`torch.random.fork_rng`, so the caller's RNG state is untouched).
    The model is left in eval mode.

    Args:
        model: the ranker, e.g. from :func:`build_bst`.
        batch: the training rows (:func:`encode`).
        labels: ``[N]`` 0/1 (clicked or not).
        config: hyper-parameters.
        valid: optional ``(batch, labels)`` scored after each epoch (AUC), needed for
            early stopping; it must hold both classes.

    Returns:
        Per-epoch losses and validation AUCs.
    """
    started = time.perf_counter()
    target = _check_labels(batch, labels, "train")
    if len(batch) == 0:
        raise ValueError("cannot train on an empty batch")
    if valid is not None:
        valid_labels = _check_labels(valid[0], valid[1], "valid").numpy()
        if len(np.unique(valid_labels)) < 2:
            raise ValueError("valid labels must hold both classes")
    if config.patience < 0 or config.epochs < 1 or config.batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1 and patience >= 0")
    losses: list[float] = []
    aucs: list[float] = []
    best: tuple[float, int, dict[str, Tensor]] | None = None
    stopped_early = False
    with torch_threads(config.num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        if config.scale_dense:
            model.fit_dense_scaling(batch.dense)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(len(batch), generator=generator)
            total = 0.0
            for start in range(0, len(batch), config.batch_size):
                rows = order[start : start + config.batch_size]
                loss = F.binary_cross_entropy_with_logits(model(batch.subset(rows)), target[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(rows)
            losses.append(total / len(batch))
            if valid is None:
                continue
            aucs.append(auc(valid_labels, predict(model, valid[0])))
            if config.patience == 0:
                continue
            if best is None or aucs[-1] > best[0]:
                best = (aucs[-1], epoch, copy.deepcopy(model.state_dict()))
            elif epoch - best[1] >= config.patience:
                stopped_early = epoch < config.epochs
                break
    if best is not None:
        model.load_state_dict(best[2])
    model.eval()
    return FitResult(losses, aucs, best[1] if best else None, stopped_early, time.perf_counter() - started)


def predict(model: BST, batch: RankerBatch, batch_size: int = 8192) -> np.ndarray:
    """Click probabilities ``[B]`` (float32), in eval mode without gradients.

    The model's training mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            chunks = [
                torch.sigmoid(model(batch.subset(torch.arange(start, min(start + batch_size, len(batch))))))
                for start in range(0, len(batch), batch_size)
            ]
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy() if chunks else np.zeros(0, dtype=np.float32)


class _SharedHistory(nn.Module):
    """``sigmoid`` of :meth:`BST.shared_history_logits` (TorchScript traces a module's forward)."""

    def __init__(self, model: BST) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        seq_items: Tensor,
        seq_categories: Tensor,
        seq_age: Tensor,
        target_item: Tensor,
        target_category: Tensor,
        dense: Tensor,
    ) -> Tensor:
        return torch.sigmoid(
            self.model.shared_history_logits(seq_items, seq_categories, seq_age, target_item, target_category, dense)
        )


class RequestScorer:
    """Click probabilities of one request's rows: the serving path's :func:`predict`.

    :meth:`shared` scores a batch whose rows share one history, as
    :func:`encode_candidates` builds them, with :meth:`BST.shared_history_logits` traced by
    TorchScript (on a small batch, then frozen). For 100 candidates the eager module
    spends most of its time in Python (module calls, the attention's argument checks;
    :func:`predict` also walks every submodule twice to switch training mode), and it
    projects the shared history once per row. On one core: :func:`predict` ~1.5 ms, the
    eager forward ~0.7 ms, the shared history eagerly ~0.37 ms, traced less again (see
    ``benchmarks/bench_ranker_cost.py``). The trace has no data-dependent branches
    (padding is a mask), so it holds for any number of rows and any padding; a test
    checks it against :func:`predict`. If tracing fails, the eager function is used.
    ``__call__`` scores any batch with the eager module.

    Args:
        model: the ranker, in eval mode.
        trace: trace it (default); ``False`` scores with the eager module.

    Raises:
        ValueError: the model is in training mode (dropout would make scores random).
    """

    def __init__(self, model: BST, trace: bool = True) -> None:
        if model.training:
            raise ValueError("RequestScorer needs a model in eval mode (load_ranker returns one)")
        self.model = model
        self.traced: torch.jit.ScriptModule | None = None
        if trace:
            try:
                self.traced = _trace(model)
            except Exception:  # an exotic module: the eager path is correct, only slower
                logging.getLogger(__name__).warning("tracing the ranker failed; scoring eagerly", exc_info=True)

    def __call__(self, batch: RankerBatch) -> np.ndarray:
        """``[B]`` float32 probabilities of any batch: :func:`predict`'s."""
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            return torch.sigmoid(self.model(batch)).numpy()

    def shared(self, batch: RankerBatch) -> np.ndarray:
        """``[B]`` float32 probabilities of a batch whose rows all hold row 0's history.

        Equal to :func:`predict`'s up to float rounding. Only row 0's history is read.
        """
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        args = (
            batch.seq_items[0],
            batch.seq_categories[0],
            batch.seq_age[0],
            batch.target_item,
            batch.target_category,
            batch.dense,
        )
        with torch.inference_mode():
            if self.traced is None:
                return torch.sigmoid(self.model.shared_history_logits(*args)).numpy()
            return self.traced(*args).numpy()


def _trace(model: BST) -> torch.jit.ScriptModule:
    """The frozen TorchScript trace of :class:`_SharedHistory`, run in before it is served.

    TorchScript's profiling executor optimizes a graph on its first calls (~30 ms, then
    ~7 ms on a 2-core machine) and again for new input shapes: the warm-up pays that here,
    at load, for a request's usual 100 candidates and for other counts, not in a request.
    """

    def example(n: int) -> tuple[Tensor, ...]:  # a one-event history
        seq = torch.zeros(model.seq_len, dtype=torch.long)
        seq[-1] = 2
        item = torch.full((n,), 2, dtype=torch.long)
        return seq, seq.clone(), (seq > 0).long(), item, item.clone(), torch.zeros(n, model.n_dense)

    with torch.inference_mode():
        traced = torch.jit.freeze(torch.jit.trace(_SharedHistory(model).eval(), example(2), check_trace=False))
        for n in (2, 2, 100, 100, 37, 5, 100):  # new shapes: the fallback graph is built too
            traced(*example(n))
    return traced


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` against 0/1 ``labels``; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).reshape(-1)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores).reshape(-1)))


# Persistence ---------------------------------------------------------------------------------
WEIGHTS_FILE = "ranker.pt"
META_FILE = "ranker.json"


def save_ranker(model: BST, vocab: Vocabulary, directory: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``ranker.pt`` (the state dict) and ``ranker.json`` (config, vocabulary, ``extra``).

    Args:
        model: the trained ranker.
        vocab: the vocabulary its embeddings are indexed by.
        directory: created if missing.
        extra: JSON-able metadata (metrics, run ids) handed back by :func:`load_ranker`.

    Returns:
        ``directory``.
    """
    if (model.n_items, model.n_categories) != (vocab.n_items, vocab.n_categories):
        raise ValueError("the vocabulary does not match the model's embedding tables")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    meta = {"model": model.config(), "vocab": vocab.to_dict(), "seq_len": model.seq_len, "extra": extra or {}}
    (directory / META_FILE).write_text(json.dumps(meta))
    return directory


def load_ranker(directory: Path) -> tuple[BST, Vocabulary, dict[str, Any]]:
    """``(model in eval mode, vocabulary, extra)`` written by :func:`save_ranker`."""
    directory = Path(directory)
    meta = json.loads((directory / META_FILE).read_text())
    config = {**meta["model"], "hidden": tuple(meta["model"]["hidden"])}
    model = BST(**config)
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, weights_only=True))
    model.eval()
    vocab = Vocabulary.from_dict(meta["vocab"])
    if (model.n_items, model.n_categories) != (vocab.n_items, vocab.n_categories):
        raise ValueError(f"{directory}: the vocabulary does not match the model's embedding tables")
    return model, vocab, meta["extra"]
