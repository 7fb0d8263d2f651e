"""Versioned, atomic publication of a retriever's FAISS index (and rollback).

Publication never lets serving see a half-written version:

1. everything is written into a fresh ``indexes/.tmp-*`` directory, each file fsynced
   (the BST re-ranker's ``ranker.pt``/``ranker.json`` copied in too, when one is given);
2. the manifest records the sha256 of every file; the files are re-hashed and the
   bundle re-loaded and checked (index recall against exact search; the ranker loads
   and scores a few candidates) before going on;
3. under an exclusive lock the directory is renamed to the next ``vNNNN`` (one
   ``rename``: the version appears whole or not at all);
4. the ``CURRENT`` pointer is replaced atomically (temporary file + ``os.replace``),
   unless the version is published for a live canary (``activate=False``);
5. versions beyond ``settings.keep_index_versions`` are pruned, never the one ``CURRENT``
   names nor the live canary's (``CANARY``).

Any failure before the pointer switch removes the temporary directory (or the renamed,
never-served version) and leaves ``CURRENT`` and the existing versions untouched; a
failure while pruning is logged and the publication stands. A process killed at any
moment leaves ``CURRENT`` naming a complete version (at worst a ``.tmp-*`` directory,
swept after :data:`STALE_AFTER_S`).

Rollback (:func:`rollback`) and the live canary (:func:`start_canary`,
:func:`promote_canary`, :func:`stop_canary`) move the pointers and the MLflow
``champion`` aliases together, undoing the pointer if an alias cannot be moved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphrec import contract
from graphrec.lake import atomic_write_json, day_bounds, list_partitions, parse_ds, read_curated
from graphrec.settings import Settings
from serving import bundle as layout
from serving.history import popularity_order, seen_from_pairs, unique_in_order

log = logging.getLogger(__name__)

#: Number of users whose queries check the index against exact search.
RECALL_CHECK_QUERIES = 256
#: Leftover ``.tmp-*``/``.trash-*`` directories older than this are swept.
STALE_AFTER_S = 24 * 3600
TRASH_PREFIX = ".trash-"


# Public API ------------------------------------------------------------------
def publish_embeddings(
    settings: Settings,
    emb: Any,
    *,
    ds: str | dt.date,
    seen: pd.DataFrame,
    popularity: Sequence[int] | np.ndarray,
    ranker_dir: Path | None = None,
    ranker_version: int | None = None,
    activate: bool = True,
) -> dict[str, Any]:
    """Publish a model's embeddings (and optionally its re-ranker) as the next index version.

    Args:
        settings (Settings): installation settings (``indexes_dir``,
            ``keep_index_versions``, ``top_k`` for the recall check, ``seed``).
        emb (training.embeddings.ModelEmbeddings): user/item embeddings and their ids;
            ``emb.meta`` supplies ``model_version``, ``run_id``, ``data_window`` and
            ``metrics`` for the manifest.
        ds (str | datetime.date): the logical day this publication belongs to.
        seen (pd.DataFrame): ``user_id``/``item_id`` pairs users already interacted
            with (duplicates allowed); they are never recommended back.
        popularity (Sequence[int]): item ids, most popular first (cold-start fallback).
        ranker_dir (Path | None): a directory holding ``ranker.pt`` and ``ranker.json``
            (:func:`training.bst.save_ranker`) to serve with this index; ``None``
            (default) publishes a retrieval-only version.
        ranker_version (int | None): the registered ranker version of ``ranker_dir``,
            recorded in the manifest.
        activate (bool): point ``CURRENT`` at the new version (default). ``False``
            writes the version without serving it (a live canary, see
            :func:`start_canary`).

    Returns:
        dict: ``{"index_version": "vNNNN", "path": str, "manifest_path": str,
        "model_version": ..., "ranker_version": ..., "activated": bool}`` -- references
        only, suitable for XCom.

    Raises:
        ValueError: on inconsistent inputs (non-finite embeddings, duplicate ids, a
            ranker version without ranker files...).
        FileNotFoundError: if ``ranker_dir`` lacks one of the ranker files.
        serving.bundle.BundleError: if the written bundle fails verification or its
            ranker does not load or score.
    """
    if ranker_version is not None and ranker_dir is None:
        raise ValueError(f"ranker version {ranker_version} given without its files (ranker_dir)")
    from serving.index import choose_factory

    day = parse_ds(ds)
    root = settings.indexes_dir
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=layout.TMP_PREFIX, dir=root))
    try:
        factory = choose_factory(
            len(emb.item_ids),
            settings.index_factory,
            ann_factory=settings.index_ann_factory,
            exact_max_items=settings.index_exact_max_items,
        )
        manifest = _write_bundle(
            tmp,
            emb,
            day=day,
            seen=seen,
            popularity=popularity,
            ranker_dir=ranker_dir,
            ranker_version=ranker_version,
            factory=factory,
            search_params=settings.index_search_params,
        )
        _check_bundle(tmp, manifest, emb, settings)
        with _publish_lock(root):
            version = _next_version(root)
            manifest["index_version"] = version
            atomic_write_json(tmp / layout.MANIFEST_FILE, manifest)
            final = root / version
            os.rename(tmp, final)
            try:
                _fsync_dir(root)
                if activate:
                    layout.write_pointer(root, version)
            except BaseException:
                _discard_unserved(root, version)
                raise
            try:
                _prune(
                    root, keep=settings.keep_index_versions, current=version if activate else None, protect=(version,)
                )
            except Exception:  # housekeeping: the publication itself is complete
                log.warning("published %s but pruning old versions failed", version, exc_info=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "published index %s (model version %s, ranker version %s) at %s%s",
        version,
        manifest["model_version"],
        manifest["ranker_version"],
        final,
        "" if activate else " (not activated)",
    )
    return {
        "index_version": version,
        "path": str(final),
        "manifest_path": str(final / layout.MANIFEST_FILE),
        "model_version": manifest["model_version"],
        "ranker_version": manifest["ranker_version"],
        "activated": activate,
    }


def publish_model(
    settings: Settings,
    model_version: int | str,
    ds: str | dt.date,
    ranker_version: int | str | None = None,
    *,
    activate: bool = True,
) -> dict[str, Any]:
    """Publish a registered model version: MLflow embeddings + curated history up to ``ds``.

    Seen pairs come from every curated partition up to and including ``ds``; the
    popularity fallback counts interactions of the last ``settings.window_days`` days.

    Args:
        settings (Settings): installation settings.
        model_version (int | str): registered model version, or an alias such as
            ``"champion"``.
        ds (str | datetime.date): the logical day (partitions after it are ignored).
        ranker_version (int | str | None): a registered BST ranker version or alias
            (``settings.ranker_model_name``) to serve with the retriever; ``None``
            (default) publishes retrieval only.
        activate (bool): point ``CURRENT`` at the new version (default); ``False``
            for a live canary.

    Returns:
        dict: as :func:`publish_embeddings`; ``ranker_version`` is the resolved number.
    """
    from training.registry import load_model_embeddings

    day = parse_ds(ds)
    emb = load_model_embeddings(settings, model_version)
    if emb.meta.get("model_version") is None:
        emb = dataclasses.replace(emb, meta={**emb.meta, "model_version": model_version})
    ranker_dir, ranker_number = None, None
    if ranker_version is not None:
        from training import pyfunc_ranker

        ranker_number = pyfunc_ranker.resolve_version(settings, ranker_version)
        ranker_dir = pyfunc_ranker.download(settings, ranker_number)
    seen, popularity = read_history(settings, day)
    return publish_embeddings(
        settings,
        emb,
        ds=day,
        seen=seen,
        popularity=popularity,
        ranker_dir=ranker_dir,
        ranker_version=ranker_number,
        activate=activate,
    )


def read_history(settings: Settings, ds: str | dt.date) -> tuple[pd.DataFrame, np.ndarray]:
    """Seen pairs and popularity order from the curated lake, as of the end of ``ds``.

    Args:
        settings (Settings): installation settings (``curated_dir``, ``window_days``).
        ds (str | datetime.date): the last partition day to read.

    Returns:
        tuple[pd.DataFrame, np.ndarray]: ``user_id``/``item_id`` pairs from every
        curated partition up to ``ds``, and item ids ordered by interaction count over
        the last ``settings.window_days`` days (most popular first).
    """
    day = parse_ds(ds)
    days = [d for d in list_partitions(settings.curated_dir) if d <= day]
    interactions = read_curated(settings.curated_dir, days)
    if interactions.empty:
        return pd.DataFrame(
            {contract.USER_ID: pd.Series(dtype="int64"), contract.ITEM_ID: pd.Series(dtype="int64")}
        ), np.empty(0, np.int64)
    window_start, _ = day_bounds(day - dt.timedelta(days=max(settings.window_days, 1) - 1))
    recent = interactions[interactions[contract.EVENT_TS] >= window_start]
    return interactions[[contract.USER_ID, contract.ITEM_ID]], popularity_order(recent)


def current_version(settings: Settings) -> str | None:
    """Name of the version ``CURRENT`` points to (``"v0007"``), or ``None``."""
    return layout.read_pointer(settings.indexes_dir)


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Summaries of every published version (oldest first), marking the current one and the canary.

    Returns:
        list[dict]: manifest summaries (``index_version``, ``model_version``,
        ``ranker_version``, ``run_id``, ``data_window``, ``ds``, ``metrics``,
        ``created_at``, ``dim``, ``n_items``, ``n_users``, ``path``, ``current``) plus
        ``canary`` (named by ``CANARY``), ``index_type``, ``index_factory`` and the
        build-time check ``index_recall_at_k``/``index_recall_k``; a version whose
        manifest cannot be read appears with an ``error`` key instead.
    """
    root = settings.indexes_dir
    current = layout.read_pointer(root)
    canary = layout.read_canary(root)
    canary_version = canary.version if canary else None
    out = []
    for path in layout.version_dirs(root):
        try:
            out.append(_summary(path, layout.read_manifest(path), current=current, canary=canary_version))
        except layout.BundleError as exc:
            out.append(
                {
                    "index_version": path.name,
                    "path": str(path),
                    "current": path.name == current,
                    "canary": path.name == canary_version,
                    "error": str(exc),
                }
            )
    return out


def verify_version(path: Path) -> bool:
    """True when a version directory lists every file and all sha256 checksums match."""
    return not layout.checksum_problems(Path(path))


def activate_version(settings: Settings, version: str) -> dict[str, Any]:
    """Point ``CURRENT`` at an existing, verified version; the MLflow aliases stay where they are.

    :func:`rollback` moves the champion aliases with the pointer; this is the pointer alone.

    Raises:
        serving.bundle.BundleError: if the version does not exist or fails verification.
    """
    root = settings.indexes_dir
    path = root / version
    with _publish_lock(root):
        if layout.version_number(version) is None or not path.is_dir():
            raise layout.BundleError(f"no index version {version!r} under {root}")
        problems = layout.checksum_problems(path)
        if problems:
            raise layout.BundleError(f"refusing to activate {version}: " + "; ".join(problems))
        layout.write_pointer(root, version)
    log.info("CURRENT now points to %s", version)
    return layout.manifest_summary(path, layout.read_manifest(path), current=version)


def _canary_or_none(root: Path) -> layout.CanarySpec | None:
    """The live canary, or ``None`` when there is none or ``CANARY`` is unreadable."""
    try:
        return layout.read_canary(root)
    except layout.BundleError:
        return None


def _summary(path: Path, manifest: dict[str, Any], *, current: str | None, canary: str | None) -> dict[str, Any]:
    """:func:`serving.bundle.manifest_summary` plus the canary mark and the index's type and check."""
    check = manifest.get("index_check") or {}
    return {
        **layout.manifest_summary(path, manifest, current=current),
        "canary": path.name == canary,
        "index_type": manifest.get("index_type"),
        "index_factory": manifest.get("index_factory"),
        "index_recall_at_k": check.get("recall_at_k"),
        "index_recall_k": check.get("k"),
    }


# Writing ---------------------------------------------------------------------
def _write_bundle(
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
    """Write every data file (and the ranker's, if any) and the manifest into ``directory``."""
    from serving.index import as_float32_matrix, build_index, index_description, save_index

    item_ids = _unique_ids(emb.item_ids, "item")
    user_ids = _unique_ids(emb.user_ids, "user")
    user_emb = as_float32_matrix(emb.user_emb, name="user embeddings")
    seen_sets = seen_from_pairs(seen)
    popular = unique_in_order(popularity)

    _write(directory / layout.ITEM_IDS_FILE, lambda fh: np.save(fh, item_ids))
    _write(directory / layout.USER_IDS_FILE, lambda fh: np.save(fh, user_ids))
    _write(directory / layout.USER_EMB_FILE, lambda fh: np.save(fh, user_emb))
    _write(
        directory / layout.SEEN_FILE,
        lambda fh: np.savez(fh, user_ids=seen_sets.user_ids, indptr=seen_sets.indptr, item_ids=seen_sets.item_ids),
    )
    _write(directory / layout.POPULAR_FILE, lambda fh: np.save(fh, popular))
    index = build_index(emb.item_emb, factory, search_params)  # validates the embeddings (finite, non-empty)
    save_index(index, directory / layout.INDEX_FILE)
    _fsync_file(directory / layout.INDEX_FILE)
    names = layout.DATA_FILES
    if ranker_dir is not None:
        for name in layout.RANKER_FILES:
            source = Path(ranker_dir) / name
            if not source.is_file():
                raise FileNotFoundError(f"ranker directory {ranker_dir} has no {name}")
            _write(directory / name, lambda fh, source=source: fh.write(source.read_bytes()))
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
        "index_type": index_description(index),
        "index_factory": factory,
        "index_search_params": search_params,
        "metric": "inner_product",
        "model_meta": meta,
        "files": layout.checksums(directory, names),
    }
    atomic_write_json(directory / layout.MANIFEST_FILE, manifest)
    return manifest


def _check_bundle(directory: Path, manifest: dict[str, Any], emb: Any, settings: Settings) -> None:
    """Re-hash, re-load and recall-check a freshly written bundle; raise on any problem."""
    from serving.index import recall_against_exact

    problems = layout.checksum_problems(directory, manifest)
    if problems:
        raise layout.BundleError("freshly written bundle failed verification: " + "; ".join(problems))
    loaded = layout.load_bundle(directory, verify=False)
    n_users = len(loaded.user_ids)
    rng = np.random.default_rng(settings.seed)
    rows = rng.choice(n_users, size=min(n_users, RECALL_CHECK_QUERIES), replace=False) if n_users else np.empty(0, int)
    k = min(settings.index_recall_k, len(loaded.item_ids))
    recall = recall_against_exact(loaded.index, emb.item_emb, loaded.user_emb[rows], k)
    floor = settings.index_recall_floor
    manifest["index_check"] = {"recall_at_k": recall, "k": k, "n_queries": len(rows), "floor": floor}
    if recall < floor:
        raise layout.BundleError(
            f"index {manifest['index_factory']!r}: recall@{k} against exact search is {recall:.4f}, "
            f"below the floor {floor} (settings.index_recall_floor); not published"
        )
    if loaded.ranker is not None:
        _check_ranker(loaded)
        manifest["ranker_meta"] = loaded.ranker[2]


def _check_ranker(loaded: layout.Bundle, n: int = 8) -> None:
    """Score a few of the bundle's items with feature-less rows: the ranker must run.

    Catches a ranker that loads but cannot score this service's rows (a feature layout
    or sequence length it was not built for) before serving would find out per request.
    """
    from training import bst

    model, vocab, _ = loaded.ranker
    items = loaded.item_ids[:n]
    frame = pd.DataFrame({column: pd.Series([None] * len(items), dtype=object) for column in bst.FRAME_COLUMNS})
    frame[bst.USER_ID] = int(loaded.user_ids[0]) if len(loaded.user_ids) else 0
    frame[bst.ITEM_ID] = items
    frame[bst.EVENT_TIMESTAMP] = pd.Timestamp.now(tz="UTC")
    frame[bst.RETRIEVAL_SCORE] = 0.0
    try:
        probabilities = bst.predict(model, bst.encode(frame, vocab, model.seq_len))
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


def _write(path: Path, writer) -> None:
    """Write a file with ``writer(fh)`` and fsync it (the rename must not outrun the data)."""
    with open(path, "wb") as fh:
        writer(fh)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        _fsync_file(path)


# Versions, lock and pruning --------------------------------------------------
@contextlib.contextmanager
def _publish_lock(root: Path) -> Iterator[None]:
    """Exclusive advisory lock so concurrent publishers get distinct version numbers."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / layout.LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _next_version(root: Path) -> str:
    numbers = [layout.version_number(p.name) or 0 for p in layout.version_dirs(root)]
    return layout.version_name(max(numbers, default=0) + 1)


def _prune(root: Path, *, keep: int, current: str | None, protect: Iterable[str] = ()) -> list[str]:
    """Delete all but the newest ``keep`` versions; sweep stale temporary directories.

    Never deleted: ``current``, the version ``CURRENT`` names now, the live canary's
    version (``CANARY``) and any name in ``protect``. When ``CANARY`` cannot be read,
    no version is pruned (it might name any of them). A doomed version is first renamed
    to ``.trash-*`` so no reader can find it half deleted. Call under the publish lock.

    Returns:
        list[str]: the pruned version names.
    """
    versions = layout.version_dirs(root)
    try:
        canary = layout.read_canary(root)
    except layout.BundleError as exc:
        log.warning("not pruning: %s", exc)
        versions = []
        canary = None
    keep_names = {p.name for p in versions[-max(keep, 1) :]} | set(protect)
    keep_names |= {name for name in (current, _pointer_or_none(root), canary and canary.version) if name}
    pruned = []
    for path in versions:
        if path.name in keep_names:
            continue
        trash = root / f"{TRASH_PREFIX}{path.name}-{time.time_ns()}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        pruned.append(path.name)
    now = time.time()
    for leftover in root.iterdir():
        if leftover.is_dir() and leftover.name.startswith((layout.TMP_PREFIX, TRASH_PREFIX)):
            if now - leftover.stat().st_mtime > STALE_AFTER_S:
                shutil.rmtree(leftover, ignore_errors=True)
    if pruned:
        log.info("pruned index versions %s", pruned)
    return pruned


def _pointer_or_none(root: Path) -> str | None:
    """``CURRENT``'s version, or ``None`` when it is missing or unreadable."""
    try:
        return layout.read_pointer(root)
    except layout.BundleError:
        return None


def _discard_unserved(root: Path, version: str) -> None:
    """Remove a just-renamed version whose activation failed, unless it is serving after all.

    Called under the publish lock, so the version number is free again for the next
    publication. When ``CURRENT`` already names it (the pointer switch got through
    before the failure), the version is kept: it is serving.
    """
    if _pointer_or_none(root) == version:
        return
    trash = root / f"{TRASH_PREFIX}{version}-{time.time_ns()}"
    with contextlib.suppress(OSError):
        os.rename(root / version, trash)
        shutil.rmtree(trash, ignore_errors=True)
