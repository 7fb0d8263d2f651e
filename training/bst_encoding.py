"""The BST ranker's encoder: feature-joined rows to the model's tensors (:class:`RankerBatch`).

A row is one (user, candidate item) pair at one moment, with the columns of
:data:`features.ranker_columns.FRAME_COLUMNS`. :func:`encode` turns a frame of such rows
into a :class:`RankerBatch`; :func:`encode_candidates` does the same for one serving
request held as arrays (:class:`features.ranker_columns.CandidateFeatures`), without pandas.

Sequence: the user's last ``L`` events strictly before the row's time, most recent last,
left-padded with ``0``. Each event ``j`` gets the age bucket

.. math::
    a_j = 1 + \\min\\left(A - 2, \\left\\lfloor \\log_2 (1 + \\Delta t_j / 1\\,\\mathrm{h}) \\right\\rfloor\\right)

(``A =`` :data:`~training.bst_vocab.AGE_BUCKETS`; ``0`` is padding). Items and categories
are looked up in a :class:`~training.bst_vocab.Vocabulary` (unknown ones map to ``1``).

Dense features (:data:`~training.bst_vocab.DENSE_FEATURES`): ``log1p`` of the seven Feast
counters (missing is ``0``), a flag per feature view saying whether the row had a snapshot
at all, the retriever's score, and the row's rank and score gap within its candidate list
(the rows sharing ``user_id`` and ``event_timestamp``). The model standardises them
(:meth:`training.bst.BST.fit_dense_scaling`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

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
from training.bst_vocab import AGE_BUCKETS, N_DENSE, Vocabulary

_NS_PER_S = 1_000_000_000
_NS_PER_HOUR = 3600 * _NS_PER_S
_NS_PER_UNIT = {"s": _NS_PER_S, "ms": 1_000_000, "us": 1_000, "ns": 1}


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
        dense: ``[B, N_DENSE]`` float32, :data:`~training.bst_vocab.DENSE_FEATURES`.

    The fields are in the order of :meth:`training.bst.BST.forward`'s arguments:
    ``model(*batch.inputs())`` scores the batch.
    """

    seq_items: Tensor
    seq_categories: Tensor
    seq_age: Tensor
    target_item: Tensor
    target_category: Tensor
    dense: Tensor

    def __len__(self) -> int:
        return self.target_item.shape[0]

    def inputs(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The six tensors in :meth:`training.bst.BST.forward`'s order."""
        return (
            self.seq_items,
            self.seq_categories,
            self.seq_age,
            self.target_item,
            self.target_category,
            self.dense,
        )

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
