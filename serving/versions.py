"""The published versions under ``settings.indexes_dir``: list, verify, activate, number and prune.

Publication (:mod:`serving.publish`) and promotion (:mod:`serving.promotion`) change what
is published and served under one exclusive lock (:func:`publish_lock`), so concurrent
publishers get distinct version numbers (:func:`next_version`) and never prune a version
another one is about to serve. :func:`prune` keeps the newest
``settings.index.keep_versions`` versions, never the one ``CURRENT`` names nor the live
canary's (``CANARY``), and sweeps temporary directories left by killed publishers after
:data:`STALE_AFTER_S`.

The read side (:func:`current_version`, :func:`list_versions`, :func:`verify_version`) and
:func:`activate_version` (the pointer alone; :func:`serving.promotion.rollback` moves the
MLflow aliases with it) read manifests and pointers only: no FAISS, no torch, no MLflow.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from graphrec.settings import Settings
from serving import layout

log = logging.getLogger(__name__)

#: Leftover ``.tmp-*``/``.trash-*`` directories older than this are swept.
STALE_AFTER_S = 24 * 3600
TRASH_PREFIX = ".trash-"


# Reading ---------------------------------------------------------------------
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
            out.append(version_summary(path, layout.read_manifest(path), current=current, canary=canary_version))
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


def version_summary(path: Path, manifest: dict[str, Any], *, current: str | None, canary: str | None) -> dict[str, Any]:
    """:func:`serving.layout.manifest_summary` plus the canary mark and the index's type and check."""
    check = manifest.get("index_check") or {}
    return {
        **layout.manifest_summary(path, manifest, current=current),
        "canary": path.name == canary,
        "index_type": manifest.get("index_type"),
        "index_factory": manifest.get("index_factory"),
        "index_recall_at_k": check.get("recall_at_k"),
        "index_recall_k": check.get("k"),
    }


def pointer_or_none(root: Path) -> str | None:
    """``CURRENT``'s version, or ``None`` when it is missing or unreadable."""
    try:
        return layout.read_pointer(root)
    except layout.BundleError:
        return None


def canary_or_none(root: Path) -> layout.CanarySpec | None:
    """The live canary, or ``None`` when there is none or ``CANARY`` is unreadable."""
    try:
        return layout.read_canary(root)
    except layout.BundleError:
        return None


# Switching the pointer -------------------------------------------------------
def activate_version(settings: Settings, version: str) -> dict[str, Any]:
    """Point ``CURRENT`` at an existing, verified version; the MLflow aliases stay where they are.

    :func:`serving.promotion.rollback` moves the champion aliases with the pointer; this
    is the pointer alone.

    Raises:
        serving.layout.BundleError: if the version does not exist or fails verification.
    """
    root = settings.indexes_dir
    path = root / version
    with publish_lock(root):
        if layout.version_number(version) is None or not path.is_dir():
            raise layout.BundleError(f"no index version {version!r} under {root}")
        problems = layout.checksum_problems(path)
        if problems:
            raise layout.BundleError(f"refusing to activate {version}: " + "; ".join(problems))
        layout.write_pointer(root, version)
    log.info("CURRENT now points to %s", version)
    return layout.manifest_summary(path, layout.read_manifest(path), current=version)


# Lock, numbering and pruning -------------------------------------------------
@contextlib.contextmanager
def publish_lock(root: Path) -> Iterator[None]:
    """Exclusive advisory lock so concurrent publishers get distinct version numbers."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / layout.LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def next_version(root: Path) -> str:
    """The name after the highest published version (``v0001`` for the first). Call under the lock."""
    numbers = [layout.version_number(p.name) or 0 for p in layout.version_dirs(root)]
    return layout.version_name(max(numbers, default=0) + 1)


def prune(root: Path, *, keep: int, current: str | None, protect: Iterable[str] = ()) -> list[str]:
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
    keep_names |= {name for name in (current, pointer_or_none(root), canary and canary.version) if name}
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


def discard_unserved(root: Path, version: str) -> None:
    """Remove a just-renamed version whose activation failed, unless it is serving after all.

    Called under the publish lock, so the version number is free again for the next
    publication. When ``CURRENT`` already names it (the pointer switch got through
    before the failure), the version is kept: it is serving.
    """
    if pointer_or_none(root) == version:
        return
    trash = root / f"{TRASH_PREFIX}{version}-{time.time_ns()}"
    with contextlib.suppress(OSError):
        os.rename(root / version, trash)
        shutil.rmtree(trash, ignore_errors=True)
