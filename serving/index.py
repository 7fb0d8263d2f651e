"""FAISS idioms for a dot-product retriever: build, save, load and search.

A LightGCN-style retriever scores an item for a user by the inner product of their
embeddings, so the index uses the inner-product metric. The index stores item rows
in the order of the ``item_ids`` array it was built from; a search returns row
positions, which the caller maps back to external item ids.

Which index is chosen by catalog size (:func:`choose_factory`): an exact ``IndexFlatIP``
for small catalogs (at tens of thousands of items it is about as fast as HNSW and needs
no tuning; see the ANN table in docs/performance.md), and a FAISS ``index_factory`` string (``HNSW32``, ``IVF1024,Flat``,
...) for larger ones, with search-time parameters (``efSearch``, ``nprobe``) applied
through :class:`faiss.ParameterSpace`. The check an index must pass before publication
(recall against exact search, ``settings.index.recall_floor``) is in :mod:`serving.index_check`.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np


def as_float32_matrix(x: np.ndarray, *, name: str = "embeddings") -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 2-D array, the only layout FAISS accepts.

    A 1-D vector becomes a single row.

    Args:
        x (np.ndarray): array-like of shape ``[n, dim]`` or ``[dim]``.
        name (str): what ``x`` is, for error messages.

    Raises:
        ValueError: if ``x`` is not 1-D/2-D or holds NaN or infinite values.
    """
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


#: The factory string of an exact inner-product index.
EXACT_FACTORY = "Flat"


def choose_factory(
    n_items: int, factory: str = "auto", *, ann_factory: str = "IVF256,Flat", exact_max_items: int = 50_000
) -> str:
    """The ``index_factory`` string for a catalog of ``n_items`` items.

    Args:
        n_items (int): catalog size.
        factory (str): an explicit factory string (returned as is), or ``"auto"``.
        ann_factory (str): what ``"auto"`` picks above ``exact_max_items``.
        exact_max_items (int): ``"auto"`` stays exact (``"Flat"``) up to this many items.
    """
    if factory != "auto":
        return factory
    return EXACT_FACTORY if n_items <= exact_max_items else ann_factory


def build_index(item_emb: np.ndarray, factory: str = EXACT_FACTORY, search_params: str = "") -> faiss.Index:
    """Build an inner-product index over item embeddings.

    Args:
        item_emb (np.ndarray): ``[n_items, dim]`` item embeddings; row ``j`` becomes
            index position ``j``.
        factory (str): a FAISS ``index_factory`` description (``"Flat"``: exact
            ``IndexFlatIP``; ``"HNSW32"``; ``"IVF256,Flat"``; ...). Indexes that need
            training (IVF, PQ) are trained on ``item_emb`` itself.
        search_params (str): ``"efSearch=256,nprobe=32"``-style search parameters, see
            :func:`apply_search_params`.

    Returns:
        faiss.Index: an index holding ``n_items`` vectors.

    Raises:
        ValueError: on an empty matrix, non-finite values, an unknown factory string or
            too few vectors to train the index.
    """
    xb = as_float32_matrix(item_emb, name="item embeddings")
    if xb.shape[0] == 0 or xb.shape[1] == 0:
        raise ValueError(f"cannot index an empty embedding matrix of shape {xb.shape}")
    if factory == EXACT_FACTORY:
        index = faiss.IndexFlatIP(xb.shape[1])
    else:
        try:
            index = faiss.index_factory(xb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ValueError(f"FAISS cannot build index {factory!r}: {exc}") from exc
        if not index.is_trained:
            try:
                index.train(xb)
            except RuntimeError as exc:
                raise ValueError(f"cannot train index {factory!r} on {xb.shape[0]} vectors: {exc}") from exc
    index.add(xb)
    apply_search_params(index, search_params)
    return index


def apply_search_params(index: faiss.Index, params: str) -> dict[str, float]:
    """Set search-time parameters (``"efSearch=256,nprobe=32"``) on an index.

    FAISS does not keep every search parameter in the index file, so the service applies
    them again after loading. Names the index type does not have (``nprobe`` on HNSW,
    anything on a flat index) are skipped.

    Returns:
        dict: the parameters that were set.

    Raises:
        ValueError: on a malformed ``name=value`` list.
    """
    applied: dict[str, float] = {}
    if not params or not params.strip():
        return applied
    space = faiss.ParameterSpace()
    for part in params.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name or number is None:
            raise ValueError(f"index search parameters must look like 'efSearch=256,nprobe=32', got {params!r}")
        try:
            space.set_index_parameter(index, name, number)
        except RuntimeError:  # this index type has no such parameter
            continue
        applied[name] = number
    return applied


def index_description(index: faiss.Index) -> str:
    """The class name of the innermost index, e.g. ``IndexHNSWFlat`` or ``IndexFlatIP``."""
    return type(faiss.downcast_index(index)).__name__


def item_vectors(index: faiss.Index) -> np.ndarray:
    """Every stored vector of ``index`` as a float32 ``[ntotal, d]`` array (row = position).

    Flat and HNSW indexes keep their vectors; an IVF index is given a direct map first.
    The service uses this for item-to-item search without publishing a second copy of
    the item embeddings.
    """
    n = int(index.ntotal)
    if n == 0:
        return np.empty((0, index.d), np.float32)
    try:
        return np.ascontiguousarray(index.reconstruct_n(0, n), dtype=np.float32)
    except RuntimeError:
        ivf = faiss.extract_index_ivf(index)  # raises for index types that cannot reconstruct
        ivf.make_direct_map()
        return np.ascontiguousarray(index.reconstruct_n(0, n), dtype=np.float32)


def save_index(index: faiss.Index, path: Path) -> Path:
    """Write ``index`` to ``path`` (FAISS's own binary format) and return the path."""
    faiss.write_index(index, str(path))
    return Path(path)


def load_index(path: Path) -> faiss.Index:
    """Read an index written by :func:`save_index` fully into memory."""
    return faiss.read_index(str(path))


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner-product search.

    Args:
        index (faiss.Index): an index from :func:`build_index` or :func:`load_index`.
        queries (np.ndarray): ``[n_queries, dim]`` (or one ``[dim]`` vector).
        k (int): number of neighbours; clipped to the number of indexed vectors.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(scores, positions)``, both ``[n_queries, k']``
        with ``k' = min(k, index.ntotal)``, best first. Positions are rows of the
        matrix the index was built from.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    xq = as_float32_matrix(queries, name="queries")
    if xq.shape[1] != index.d:
        raise ValueError(f"queries have dimension {xq.shape[1]}, the index has {index.d}")
    k = min(int(k), int(index.ntotal))
    if k == 0:
        return np.empty((xq.shape[0], 0), np.float32), np.empty((xq.shape[0], 0), np.int64)
    scores, positions = index.search(xq, k)
    return scores, positions


def set_search_threads(n: int = 1) -> None:
    """Set FAISS's OpenMP thread count for this process.

    A service answers one query per call; for that one thread was 15-35x faster than
    two on a 2-core machine, because OpenMP start-up dominates. Batch jobs
    that search many queries at once may want more.
    """
    faiss.omp_set_num_threads(int(n))
