"""The BST ranker's inputs: dense feature names, age buckets and the item/category vocabulary.

Shared by the encoder (:mod:`training.bst_encoding`, frames to tensors) and the model
(:mod:`training.bst`, whose embedding tables and dense width these constants size), so
that neither imports the other. :class:`Vocabulary` maps external item ids and category
strings to embedding rows: ``0`` is padding, ``1`` unknown, known values start at ``2``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.ranker_columns import ITEM_COUNTERS, RETRIEVAL_SCORE, USER_COUNTERS
from training.ids import positions

DENSE_FEATURES = [
    *(f"log1p_{name}" for name in (*USER_COUNTERS, *ITEM_COUNTERS)),
    "has_user_features",
    "has_item_features",
    RETRIEVAL_SCORE,
    "log1p_retrieval_rank",
    "retrieval_gap",
]
"""The dense features of a row, in order (:func:`training.bst_encoding.dense_features`)."""
N_DENSE = len(DENSE_FEATURES)
AGE_BUCKETS = 16
"""Age buckets of sequence events: ``1..AGE_BUCKETS - 1`` (log2 of hours); ``0`` is padding."""
PAD, UNKNOWN = 0, 1
"""Reserved vocabulary indices; known items and categories start at ``2``."""
_RESERVED = 2
_SHORT = 1024  # inputs up to this length take the per-request (dict) category lookup


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
        # The category lookups, built here rather than as cached properties: those hold a
        # lock, and the logged pyfunc ranker pickles this class by value.
        object.__setattr__(self, "_category_index", pd.Index(names, dtype=object))
        object.__setattr__(self, "_category_lookup", {name: k + _RESERVED for k, name in enumerate(names)})

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
        pos = positions(self.item_ids, ids)
        return np.where(pos >= 0, pos + _RESERVED, UNKNOWN).astype(np.int64)

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
