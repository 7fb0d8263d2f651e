"""One published version loaded into memory: the :class:`Bundle` the service answers from.

:func:`load_bundle` verifies a version directory (:mod:`serving.layout`: every file listed
in the manifest, every sha256 matching), reads its FAISS index, id arrays, user
embeddings, seen sets and popularity list, and, when the version carries one, its BST
re-ranker. The result is immutable: the service swaps whole bundles, so a request that
started with one bundle keeps using consistent arrays even if a newer version is loaded
meanwhile.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

from serving.history import SeenSets
from serving.index import apply_search_params, item_vectors, load_index
from serving.layout import (
    INDEX_FILE,
    ITEM_IDS_FILE,
    POPULAR_FILE,
    SEEN_FILE,
    USER_EMB_FILE,
    USER_IDS_FILE,
    BundleError,
    checksum_problems,
    has_ranker,
    read_manifest,
)
from training.ids import RowLookup, positions


@dataclasses.dataclass(frozen=True)
class Bundle:
    """One published version, fully in memory and immutable once built.

    Args:
        version: the version name, e.g. ``v0007``.
        path: its directory.
        manifest: its parsed ``manifest.json``.
        index: the FAISS index over item embeddings (row ``j`` = ``item_ids[j]``).
        item_ids: int64 external item ids.
        user_ids: int64 external user ids (row ``i`` of ``user_emb``).
        user_emb: float32 ``[n_users, dim]``.
        seen: the items each user already saw (never recommended back).
        popular: int64 item ids, most popular first (the cold-start fallback).
        user_lookup: rows of ``user_ids`` by id (:meth:`user_row`).
        ranker: :func:`training.bst_io.load_ranker`'s ``(model, vocab, meta)``, or ``None``
            for a retrieval-only version.
        item_emb: the index's vectors, row ``j`` = ``item_ids[j]`` (item-to-item search).
        item_lookup: rows of ``item_ids`` by id (:meth:`item_row`).
        ranker_scorer: the ranker's :class:`training.bst_scorer.RequestScorer` (traced once, at load).
    """

    version: str
    path: Path
    manifest: dict[str, Any]
    index: Any  # faiss.Index
    item_ids: np.ndarray
    user_ids: np.ndarray
    user_emb: np.ndarray
    seen: SeenSets
    popular: np.ndarray
    user_lookup: RowLookup
    ranker: tuple[Any, Any, dict[str, Any]] | None = None
    item_emb: np.ndarray | None = None
    item_lookup: RowLookup | None = None
    ranker_scorer: Any = None

    @property
    def model_version(self) -> Any:
        return self.manifest.get("model_version")

    @property
    def ranker_version(self) -> int | None:
        """Registered ranker version published with this index, ``None`` for retrieval only."""
        return self.manifest.get("ranker_version")

    def user_row(self, user_id: int) -> int | None:
        """Row of ``user_id`` in ``user_emb``, or ``None`` for a user the model never saw."""
        return self.user_lookup.row_of(user_id)

    def item_row(self, item_id: int) -> int | None:
        """Row of ``item_id`` in the index (and ``item_emb``), or ``None`` for an unknown item."""
        return None if self.item_lookup is None else self.item_lookup.row_of(item_id)

    @functools.cached_property
    def popularity_percentile(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted item ids, popularity percentile in [0, 1)): 0 for the most popular item.

        Items outside the popularity list count as 1.0 (see :meth:`popularity_of`).
        """
        n = max(len(self.popular), 1)
        order = np.argsort(self.popular, kind="stable")
        return self.popular[order], (order / n).astype(np.float64)

    def popularity_of(self, item_ids: np.ndarray | list[int]) -> np.ndarray:
        """Popularity percentile of each item (0: most popular; 1: not in the popular list)."""
        ids, pct = self.popularity_percentile
        if len(ids) == 0:
            return np.ones(len(np.asarray(item_ids)))
        pos = positions(ids, item_ids)
        return np.where(pos >= 0, pct[pos], 1.0)


def load_bundle(path: Path, *, verify: bool = True) -> Bundle:
    """Load a version directory into a :class:`Bundle`.

    Args:
        path (Path): the version directory (``.../indexes/vNNNN``).
        verify (bool): check every checksum first (default). Loading a bundle whose
            files do not match its manifest is refused.

    When the manifest lists the ranker files, the ranker is loaded too
    (:func:`training.bst_io.load_ranker`, which imports torch) into :attr:`Bundle.ranker`,
    and traced for serving into :attr:`Bundle.ranker_scorer`.

    Raises:
        BundleError: when the directory is missing, incomplete, tampered with or
            internally inconsistent, or its ranker cannot be loaded.
    """
    if not path.is_dir():
        raise BundleError(f"index version {path} does not exist")
    manifest = read_manifest(path)
    if verify:
        problems = checksum_problems(path, manifest)
        if problems:
            raise BundleError(f"index version {path.name} failed verification: " + "; ".join(problems))
    try:
        index = load_index(path / INDEX_FILE)
        apply_search_params(index, manifest.get("index_search_params") or "")
        item_emb = item_vectors(index)
        item_ids = np.load(path / ITEM_IDS_FILE, allow_pickle=False)
        user_ids = np.load(path / USER_IDS_FILE, allow_pickle=False)
        user_emb = np.load(path / USER_EMB_FILE, allow_pickle=False)
        popular = np.load(path / POPULAR_FILE, allow_pickle=False)
        with np.load(path / SEEN_FILE, allow_pickle=False) as npz:
            seen = SeenSets(npz["user_ids"], npz["indptr"], npz["item_ids"])
    except BundleError:
        raise
    except Exception as exc:  # FAISS and numpy raise assorted types on unreadable files
        raise BundleError(f"index version {path.name} could not be read: {exc}") from exc
    if index.ntotal != len(item_ids) or user_emb.shape != (len(user_ids), index.d):
        raise BundleError(f"index version {path.name} is inconsistent: index, ids and embeddings disagree")
    ranker = _load_ranker(path) if has_ranker(manifest) else None
    scorer = _ranker_scorer(path, ranker[0]) if ranker is not None else None
    item_ids = item_ids.astype(np.int64, copy=False)
    user_ids = user_ids.astype(np.int64, copy=False)
    return Bundle(
        version=path.name,
        path=path,
        manifest=manifest,
        index=index,
        item_ids=item_ids,
        user_ids=user_ids,
        user_emb=np.ascontiguousarray(user_emb, dtype=np.float32),
        seen=seen,
        popular=popular.astype(np.int64, copy=False),
        user_lookup=RowLookup.of(user_ids),
        ranker=ranker,
        item_emb=item_emb,
        item_lookup=RowLookup.of(item_ids),
        ranker_scorer=scorer,
    )


def _load_ranker(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """The version's BST re-ranker; torch is imported only for bundles that carry one."""
    try:
        from training.bst_io import load_ranker  # lazy: torch, only for bundles with a ranker

        return load_ranker(path)
    except Exception as exc:  # torch, json and a mismatched state dict raise assorted types
        raise BundleError(f"index version {path.name}: the ranker could not be loaded: {exc}") from exc


def _ranker_scorer(path: Path, model: Any) -> Any:
    """The loaded ranker's :class:`training.bst_scorer.RequestScorer` (its TorchScript trace, ~40 ms)."""
    from training.bst_scorer import RequestScorer  # lazy: torch, only for bundles with a ranker

    try:
        return RequestScorer(model)
    except Exception as exc:
        raise BundleError(f"index version {path.name}: the ranker could not be prepared for serving: {exc}") from exc
