"""The hand-off between training and serving: a model's learned embeddings.

A registered retriever's ``embeddings/`` directory holds ``embeddings.npz`` (what is
served) and ``meta.json`` (lineage), and for the trained kinds also
``base_embeddings.npz``: the layer-0 parameters the served embeddings were propagated
from (:meth:`ModelEmbeddings.save` with ``base``). LightGCN serves the mean of its
propagation layers, which is not a parameter one can train on from; the next night's
warm start (:mod:`training.retriever`) starts from the layer-0 ones. Versions
registered before that file existed simply lack it (:meth:`ModelEmbeddings.load_base`
returns ``None``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

EMBEDDINGS_FILE = "embeddings.npz"
BASE_EMBEDDINGS_FILE = "base_embeddings.npz"


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

    def save(self, directory: Path, *, base: ModelEmbeddings | None = None) -> Path:
        """Write ``embeddings.npz`` and ``meta.json`` into ``directory``.

        Args:
            directory: created if missing.
            base: the model's layer-0 embeddings, written as ``base_embeddings.npz``
                (their own ids and arrays; its ``meta`` is not stored).
        """
        directory.mkdir(parents=True, exist_ok=True)
        self._write_arrays(directory / EMBEDDINGS_FILE)
        if base is not None:
            base._write_arrays(directory / BASE_EMBEDDINGS_FILE)
        (directory / "meta.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True, default=str))
        return directory

    def _write_arrays(self, path: Path) -> None:
        np.savez(
            path,
            user_ids=self.user_ids.astype(np.int64),
            item_ids=self.item_ids.astype(np.int64),
            user_emb=np.ascontiguousarray(self.user_emb, dtype=np.float32),
            item_emb=np.ascontiguousarray(self.item_emb, dtype=np.float32),
        )

    @staticmethod
    def _read_arrays(path: Path) -> dict[str, np.ndarray]:
        with np.load(path) as data:
            return {key: data[key] for key in ("user_ids", "item_ids", "user_emb", "item_emb")}

    @classmethod
    def load(cls, directory: Path) -> ModelEmbeddings:
        meta_path = directory / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        return cls(meta=meta, **cls._read_arrays(directory / EMBEDDINGS_FILE))

    @classmethod
    def load_base(cls, directory: Path) -> ModelEmbeddings | None:
        """The layer-0 embeddings saved with ``base``, or ``None`` when there are none."""
        path = directory / BASE_EMBEDDINGS_FILE
        return cls(**cls._read_arrays(path)) if path.exists() else None
