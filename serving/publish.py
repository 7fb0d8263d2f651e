"""Versioned, atomic publication of a retriever's FAISS index (with its BST re-ranker).

Publication never lets serving see a half-written version:

1. everything is written into a fresh ``indexes/.tmp-*`` directory, each file fsynced
   (the BST re-ranker's ``ranker.pt``/``ranker.json`` copied in too, when one is given;
   :func:`serving.bundle_writer.write_bundle`);
2. the manifest records the sha256 of every file; the files are re-hashed and the
   bundle re-loaded and checked (index recall against exact search; the ranker loads
   and scores a few candidates; :func:`serving.bundle_writer.check_bundle`) before going on;
3. under an exclusive lock (:func:`serving.versions.publish_lock`) the directory is
   renamed to the next ``vNNNN`` (one ``rename``: the version appears whole or not at all);
4. the ``CURRENT`` pointer is replaced atomically (temporary file + ``os.replace``),
   unless the version is published for a live canary (``activate=False``);
5. versions beyond ``settings.index.keep_versions`` are pruned, never the one ``CURRENT``
   names nor the live canary's (``CANARY``; :func:`serving.versions.prune`).

Any failure before the pointer switch removes the temporary directory (or the renamed,
never-served version) and leaves ``CURRENT`` and the existing versions untouched; a
failure while pruning is logged and the publication stands. A process killed at any
moment leaves ``CURRENT`` naming a complete version (at worst a ``.tmp-*`` directory,
swept after :data:`serving.versions.STALE_AFTER_S`).

Listing, verifying and activating versions is :mod:`serving.versions`; rollback and the
live canary (which move the MLflow ``champion`` aliases with the pointers) are
:mod:`serving.promotion`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphrec import contract
from graphrec.handoff import Handoff
from graphrec.lake import atomic_write_json, day_bounds, list_partitions, parse_ds, read_curated
from graphrec.settings import Settings
from serving import bundle_writer, layout, versions
from serving.history import popularity_order
from serving.index import choose_factory
from training import pyfunc_ranker, registry

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PublishResult(Handoff):
    """What a publication wrote: references only, for XCom.

    Args:
        index_version: the new version's name, e.g. ``v0007``.
        path: its directory.
        manifest_path: its ``manifest.json``.
        model_version: the retriever's registered version (from the embeddings' meta).
        ranker_version: the registered ranker version served with it, ``None`` for
            retrieval only.
        activated: whether ``CURRENT`` now names it (``False`` for a live canary).
    """

    index_version: str
    path: Path
    manifest_path: Path
    model_version: int | str | None
    ranker_version: int | None
    activated: bool


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
) -> PublishResult:
    """Publish a model's embeddings (and optionally its re-ranker) as the next index version.

    Args:
        settings (Settings): installation settings (``indexes_dir``,
            ``keep_index_versions``, the ``index_*`` settings for the index and its
            recall check, ``seed``).
        emb (training.embeddings.ModelEmbeddings): user/item embeddings and their ids;
            ``emb.meta`` supplies ``model_version``, ``run_id``, ``data_window`` and
            ``metrics`` for the manifest.
        ds (str | datetime.date): the logical day this publication belongs to.
        seen (pd.DataFrame): ``user_id``/``item_id`` pairs users already interacted
            with (duplicates allowed); they are never recommended back.
        popularity (Sequence[int]): item ids, most popular first (cold-start fallback).
        ranker_dir (Path | None): a directory holding ``ranker.pt`` and ``ranker.json``
            (:func:`training.bst_io.save_ranker`) to serve with this index; ``None``
            (default) publishes a retrieval-only version.
        ranker_version (int | None): the registered ranker version of ``ranker_dir``,
            recorded in the manifest.
        activate (bool): point ``CURRENT`` at the new version (default). ``False``
            writes the version without serving it (a live canary, see
            :func:`serving.promotion.start_canary`).

    Returns:
        PublishResult: the new version's name and paths, its model and ranker versions.

    Raises:
        ValueError: on inconsistent inputs (non-finite embeddings, duplicate ids, a
            ranker version without ranker files...).
        FileNotFoundError: if ``ranker_dir`` lacks one of the ranker files.
        serving.layout.BundleError: if the written bundle fails verification or its
            ranker does not load or score.
    """
    if ranker_version is not None and ranker_dir is None:
        raise ValueError(f"ranker version {ranker_version} given without its files (ranker_dir)")
    day = parse_ds(ds)
    root = settings.indexes_dir
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=layout.TMP_PREFIX, dir=root))
    try:
        factory = choose_factory(
            len(emb.item_ids),
            settings.index.factory,
            ann_factory=settings.index.ann_factory,
            exact_max_items=settings.index.exact_max_items,
        )
        manifest = bundle_writer.write_bundle(
            tmp,
            emb,
            day=day,
            seen=seen,
            popularity=popularity,
            ranker_dir=ranker_dir,
            ranker_version=ranker_version,
            factory=factory,
            search_params=settings.index.search_params,
        )
        bundle_writer.check_bundle(tmp, manifest, emb, settings)
        with versions.publish_lock(root):
            version = versions.next_version(root)
            manifest["index_version"] = version
            atomic_write_json(tmp / layout.MANIFEST_FILE, manifest)
            final = root / version
            os.rename(tmp, final)
            try:
                bundle_writer.fsync_dir(root)
                if activate:
                    layout.write_pointer(root, version)
            except BaseException:
                versions.discard_unserved(root, version)
                raise
            try:
                versions.prune(
                    root, keep=settings.index.keep_versions, current=version if activate else None, protect=(version,)
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
    return PublishResult(
        index_version=version,
        path=final,
        manifest_path=final / layout.MANIFEST_FILE,
        model_version=manifest["model_version"],
        ranker_version=manifest["ranker_version"],
        activated=activate,
    )


def publish_model(
    settings: Settings,
    model_version: int | str,
    ds: str | dt.date,
    ranker_version: int | str | None = None,
    *,
    activate: bool = True,
) -> PublishResult:
    """Publish a registered model version: MLflow embeddings + curated history up to ``ds``.

    Seen pairs come from every curated partition up to and including ``ds``; the
    popularity fallback counts interactions of the last ``settings.training.window_days`` days
    (:func:`read_history`).

    Args:
        settings (Settings): installation settings.
        model_version (int | str): registered model version, or an alias such as
            ``"champion"``.
        ds (str | datetime.date): the logical day (partitions after it are ignored).
        ranker_version (int | str | None): a registered BST ranker version or alias
            (``settings.mlflow.ranker_model_name``) to serve with the retriever; ``None``
            (default) publishes retrieval only.
        activate (bool): point ``CURRENT`` at the new version (default); ``False``
            for a live canary.

    Returns:
        PublishResult: as :func:`publish_embeddings`; ``ranker_version`` is the resolved number.
    """
    day = parse_ds(ds)
    emb = registry.load_model_embeddings(settings, model_version)
    if emb.meta.get("model_version") is None:
        emb = dataclasses.replace(emb, meta={**emb.meta, "model_version": model_version})
    ranker_dir, ranker_number = None, None
    if ranker_version is not None:
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
        the last ``settings.training.window_days`` days (most popular first).
    """
    day = parse_ds(ds)
    days = [d for d in list_partitions(settings.curated_dir) if d <= day]
    interactions = read_curated(settings.curated_dir, days)
    if interactions.empty:
        return pd.DataFrame(
            {contract.USER_ID: pd.Series(dtype="int64"), contract.ITEM_ID: pd.Series(dtype="int64")}
        ), np.empty(0, np.int64)
    window_start, _ = day_bounds(day - dt.timedelta(days=max(settings.training.window_days, 1) - 1))
    recent = interactions[interactions[contract.EVENT_TS] >= window_start]
    return interactions[[contract.USER_ID, contract.ITEM_ID]], popularity_order(recent)
