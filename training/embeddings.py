"""The hand-off between training and serving: a model's learned embeddings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class ModelEmbeddings:
    """User and item embeddings of a dot-product retriever, with their external ids.

    Args:
        user_ids: external user ids (int64), row ``i`` of ``user_emb`` belongs to ``user_ids[i]``.
        item_ids: external item ids (int64), row ``j`` of ``item_emb`` belongs to ``item_ids[j]``.
        user_emb: float32 array ``[n_users, dim]``.
        item_emb: float32 array ``[n_items, dim]``.
        meta: JSON-able lineage (model version, run id, data window, metrics...).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_emb: np.ndarray
    item_emb: np.ndarray
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.user_emb.shape[0] != len(self.user_ids) or self.item_emb.shape[0] != len(self.item_ids):
            raise ValueError("embedding rows do not match the id arrays")
        if self.user_emb.shape[1] != self.item_emb.shape[1]:
            raise ValueError("user and item embeddings differ in dimension")

    @property
    def dim(self) -> int:
        return int(self.item_emb.shape[1])

    def save(self, directory: Path) -> Path:
        """Write ``embeddings.npz`` and ``meta.json`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / "embeddings.npz",
            user_ids=self.user_ids.astype(np.int64),
            item_ids=self.item_ids.astype(np.int64),
            user_emb=np.ascontiguousarray(self.user_emb, dtype=np.float32),
            item_emb=np.ascontiguousarray(self.item_emb, dtype=np.float32),
        )
        (directory / "meta.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelEmbeddings:
        with np.load(directory / "embeddings.npz") as data:
            arrays = {key: data[key] for key in data.files}
        meta_path = directory / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        return cls(meta=meta, **arrays)
