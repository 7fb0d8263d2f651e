"""Writing one version directory and checking it before it may be published.

:func:`write_bundle` writes every data file (each fsynced, so the rename that publishes
the directory cannot outrun its data), copies the BST re-ranker's files in when one is
given, and writes a manifest with the sha256 of every file (:mod:`serving.layout`).
:func:`check_bundle` then re-hashes the files, re-loads the directory as the service
would (:func:`serving.bundle.load_bundle`), measures the index's recall against exact
search (:mod:`serving.index_check`, refused below ``settings.index.recall_floor``) and
makes the ranker score a few candidates. Only a directory that passes is renamed into
a version by :func:`serving.publish.publish_embeddings`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from features.ranker_columns import EVENT_TIMESTAMP, FRAME_COLUMNS, ITEM_ID, RETRIEVAL_SCORE, USER_ID
from graphrec.lake import atomic_write_json
from graphrec.settings import Settings
from serving import bundle, index_check, layout
from serving import index as faiss_index
from serving.history import seen_from_pairs, unique_in_order


def write_bundle(
    directory: Path,
    emb: Any,
    *,
    day: dt.date,
    seen: pd.DataFrame,
    popularity: Sequence[int] | np.ndarray,
    ranker_dir: Path | None = None,
    ranker_version: int | None = None,
    factory: str = "Flat",
    search_params: str = "",
) -> dict[str, Any]:
    """Write every data file (and the ranker's, if any) and the manifest into ``directory``.

    Args:
        directory (Path): an empty directory (a publication's ``.tmp-*``).
        emb (training.embeddings.ModelEmbeddings): the model; ``emb.meta`` supplies the
            manifest's lineage (``model_version``, ``run_id``, ``data_window``, ``metrics``).
        day (datetime.date): the logical day of the publication.
        seen (pd.DataFrame): ``user_id``/``item_id`` pairs never recommended back.
        popularity (Sequence[int]): item ids, most popular first.
        ranker_dir (Path | None): a directory with ``ranker.pt`` and ``ranker.json``.
        ranker_version (int | None): the registered version of that ranker.
        factory (str): the FAISS ``index_factory`` string. (default: ``"Flat"``)
        search_params (str): search-time parameters stored with the index.

    Returns:
        dict: the manifest (``index_version`` still ``None``: it is assigned under the
        publish lock).

    Raises:
        ValueError: duplicate or non-1-D ids, non-finite or empty embeddings.
        FileNotFoundError: ``ranker_dir`` lacks one of the ranker files.
    """
    item_ids = _unique_ids(emb.item_ids, "item")
    user_ids = _unique_ids(emb.user_ids, "user")
    user_emb = faiss_index.as_float32_matrix(emb.user_emb, name="user embeddings")
    seen_sets = seen_from_pairs(seen)
    popular = unique_in_order(popularity)

    write_file(directory / layout.ITEM_IDS_FILE, lambda fh: np.save(fh, item_ids))
    write_file(directory / layout.USER_IDS_FILE, lambda fh: np.save(fh, user_ids))
    write_file(directory / layout.USER_EMB_FILE, lambda fh: np.save(fh, user_emb))
    write_file(
        directory / layout.SEEN_FILE,
        lambda fh: np.savez(fh, user_ids=seen_sets.user_ids, indptr=seen_sets.indptr, item_ids=seen_sets.item_ids),
    )
    write_file(directory / layout.POPULAR_FILE, lambda fh: np.save(fh, popular))
    index = faiss_index.build_index(emb.item_emb, factory, search_params)  # validates the embeddings
    faiss_index.save_index(index, directory / layout.INDEX_FILE)
    fsync_file(directory / layout.INDEX_FILE)
    names = layout.DATA_FILES
    if ranker_dir is not None:
        for name in layout.RANKER_FILES:
            source = Path(ranker_dir) / name
            if not source.is_file():
                raise FileNotFoundError(f"ranker directory {ranker_dir} has no {name}")
            write_file(directory / name, lambda fh, source=source: fh.write(source.read_bytes()))
        names = (*names, *layout.RANKER_FILES)

    meta = dict(emb.meta)
    manifest = {
        "index_version": None,  # assigned under the publish lock
        "model_version": meta.get("model_version"),
        "ranker_version": None if ranker_version is None else int(ranker_version),
        "run_id": meta.get("run_id"),
        "data_window": meta.get("data_window"),
        "ds": day.isoformat(),
        "metrics": meta.get("metrics") or {},
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "dim": int(index.d),
        "n_items": int(index.ntotal),
        "n_users": len(user_ids),
        "n_seen_pairs": seen_sets.n_pairs,
        "n_popular": len(popular),
        "index_type": faiss_index.index_description(index),
        "index_factory": factory,
        "index_search_params": search_params,
        "metric": "inner_product",
        "model_meta": meta,
        "files": layout.checksums(directory, names),
    }
    atomic_write_json(directory / layout.MANIFEST_FILE, manifest)
    return manifest


def check_bundle(directory: Path, manifest: dict[str, Any], emb: Any, settings: Settings) -> None:
    """Re-hash, re-load and recall-check a freshly written bundle; raise on any problem.

    Adds ``index_check`` (``{recall_at_k, k, n_queries, floor}``) and, with a ranker,
    ``ranker_meta`` to ``manifest``.

    Raises:
        serving.layout.BundleError: a checksum mismatch, recall below
            ``settings.index.recall_floor``, or a ranker that cannot score.
    """
    problems = layout.checksum_problems(directory, manifest)
    if problems:
        raise layout.BundleError("freshly written bundle failed verification: " + "; ".join(problems))
    loaded = bundle.load_bundle(directory, verify=False)
    rows = index_check.check_queries(len(loaded.user_ids), settings.seed)
    k = min(settings.index.recall_k, len(loaded.item_ids))
    recall = index_check.recall_against_exact(loaded.index, emb.item_emb, loaded.user_emb[rows], k)
    floor = settings.index.recall_floor
    manifest["index_check"] = {"recall_at_k": recall, "k": k, "n_queries": len(rows), "floor": floor}
    if recall < floor:
        raise layout.BundleError(
            f"index {manifest['index_factory']!r}: recall@{k} against exact search is {recall:.4f}, "
            f"below the floor {floor} (settings.index.recall_floor); not published"
        )
    if loaded.ranker is not None:
        check_ranker(loaded)
        manifest["ranker_meta"] = loaded.ranker[2]


def check_ranker(loaded: bundle.Bundle, n: int = 8) -> None:
    """Score a few of the bundle's items with feature-less rows: the ranker must run.

    Catches a ranker that loads but cannot score this service's rows (a feature layout
    or sequence length it was not built for) before serving would find out per request.
    """
    # lazy: torch, only for bundles with a ranker (retrieval-only publication stays light)
    from training.bst_encoding import encode
    from training.bst_fit import predict

    model, vocab, _ = loaded.ranker
    items = loaded.item_ids[:n]
    frame = pd.DataFrame({column: pd.Series([None] * len(items), dtype=object) for column in FRAME_COLUMNS})
    frame[USER_ID] = int(loaded.user_ids[0]) if len(loaded.user_ids) else 0
    frame[ITEM_ID] = items
    frame[EVENT_TIMESTAMP] = pd.Timestamp.now(tz="UTC")
    frame[RETRIEVAL_SCORE] = 0.0
    try:
        probabilities = predict(model, encode(frame, vocab, model.seq_len))
    except Exception as exc:
        raise layout.BundleError(f"the ranker cannot score candidates: {exc}") from exc
    if probabilities.shape != (len(items),) or not np.isfinite(probabilities).all():
        raise layout.BundleError("the ranker returned non-finite or misshapen probabilities")


def _unique_ids(ids: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{what} ids must be one-dimensional")
    arr = arr.astype(np.int64)
    if len(np.unique(arr)) != len(arr):
        raise ValueError(f"{what} ids contain duplicates")
    return arr


# Durable writes --------------------------------------------------------------
def write_file(path: Path, writer: Callable[[IO[bytes]], Any]) -> None:
    """Write a file with ``writer(fh)`` and fsync it (the rename must not outrun the data)."""
    with open(path, "wb") as fh:
        writer(fh)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fsync_file(path)
