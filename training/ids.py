"""External ids to rows: the one lookup every layer above uses.

Users and items carry external int64 ids; models, indexes and bundles keep them in arrays.
:class:`IdMap` is a contiguous index over sorted distinct ids (position ``i`` is the row of
``ids[i]``); :class:`RowLookup` finds rows of ids kept in any order (a bundle's item ids,
a model's user ids). Both answer with ``-1`` (arrays) or ``None`` (one id) for unknown ids.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd


def positions(sorted_ids: np.ndarray, keys: np.ndarray | pd.Series | list[int]) -> np.ndarray:
    """Position of each key in the sorted distinct ``sorted_ids``; ``-1`` where absent."""
    keys = np.asarray(keys, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.full(keys.shape, -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_ids, keys), len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == keys, pos, -1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class IdMap:
    """A contiguous index for a set of external ids.

    Args:
        ids: sorted unique external ids (int64); position ``i`` is the index of ``ids[i]``.
    """

    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_values(cls, values: np.ndarray | pd.Series) -> IdMap:
        return cls(np.unique(np.asarray(values, dtype=np.int64)))

    def index(self, values: np.ndarray | pd.Series | list[int]) -> np.ndarray:
        """Positions of ``values`` in the map; ``-1`` for ids the map does not know."""
        return positions(self.ids, values)

    def find(self, value: int) -> int | None:
        """Position of one id, or ``None`` when the map does not know it."""
        pos = int(positions(self.ids, np.array([value]))[0])
        return None if pos < 0 else pos


@dataclasses.dataclass(frozen=True)
class RowLookup:
    """Rows of ids stored in their own order: a sorted copy and each one's original row.

    Args:
        sorted_ids: the ids, sorted.
        rows: ``rows[i]`` is the original row of ``sorted_ids[i]``.
    """

    sorted_ids: np.ndarray
    rows: np.ndarray

    @classmethod
    def of(cls, ids: np.ndarray) -> RowLookup:
        """The lookup of ``ids`` (distinct, any order) by their positions in ``ids``."""
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        return cls(ids[order], order.astype(np.int64))

    def __len__(self) -> int:
        return len(self.sorted_ids)

    def rows_of(self, keys: np.ndarray | pd.Series | list[int]) -> np.ndarray:
        """Row of each key; ``-1`` where absent."""
        pos = positions(self.sorted_ids, keys)
        return np.where(pos >= 0, self.rows[np.maximum(pos, 0)] if len(self.rows) else -1, -1).astype(np.int64)

    def row_of(self, key: int) -> int | None:
        """Row of one key, or ``None`` when absent."""
        row = int(self.rows_of(np.array([key]))[0])
        return None if row < 0 else row
