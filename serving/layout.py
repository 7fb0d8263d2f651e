"""The on-disk layout of published index versions: file names, ``CURRENT``, ``CANARY`` and checksums.

Layout under ``settings.indexes_dir``::

    CURRENT            one line: the name of the version serving uses, e.g. ``v0007``
    CANARY             optional JSON: a challenger version served live to a share of
                       users (``{"version", "share", "mode"}``, see :class:`CanarySpec`)
    v0006/ v0007/ ...  complete, immutable versions
    .tmp-*/            a publication in progress (never read by serving)
    .publish.lock      serialises publishers

One version directory holds::

    index.faiss        FAISS index over item embeddings (row j = item_ids[j])
    item_ids.npy       int64 external item ids
    user_ids.npy       int64 external user ids (row i of user_emb)
    user_emb.npy       float32 [n_users, dim]
    seen.npz           CSR of already-seen items: user_ids, indptr, item_ids
    popular.npy        int64 item ids, most popular first (the cold-start fallback)
    ranker.pt          optional: the BST re-ranker's weights (:func:`training.bst_io.save_ranker`)
    ranker.json        optional: its configuration and vocabulary; both or neither
    manifest.json      lineage, sizes and the sha256 of every file above

A version is complete when its manifest lists every file and every checksum matches
(:func:`checksum_problems`); :func:`serving.bundle.load_bundle` refuses anything else. A
version without the two ranker files is a retrieval-only version; with them, the ranker
is verified like the index, so a half-written or tampered ranker makes the whole version
unusable.

This module reads and writes names, pointers and manifests only: it needs neither FAISS
nor torch, so status commands can use it cheaply.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from graphrec.lake import atomic_write_bytes, sha256_file

INDEX_FILE = "index.faiss"
ITEM_IDS_FILE = "item_ids.npy"
USER_IDS_FILE = "user_ids.npy"
USER_EMB_FILE = "user_emb.npy"
SEEN_FILE = "seen.npz"
POPULAR_FILE = "popular.npy"
MANIFEST_FILE = "manifest.json"
POINTER_FILE = "CURRENT"
CANARY_FILE = "CANARY"
CANARY_MODES = ("split", "shadow")
LOCK_FILE = ".publish.lock"
TMP_PREFIX = ".tmp-"

RANKER_WEIGHTS_FILE = "ranker.pt"  # training.bst_io.WEIGHTS_FILE (not imported: it needs torch)
RANKER_META_FILE = "ranker.json"  # training.bst_io.META_FILE

DATA_FILES = (INDEX_FILE, ITEM_IDS_FILE, USER_IDS_FILE, USER_EMB_FILE, SEEN_FILE, POPULAR_FILE)
RANKER_FILES = (RANKER_WEIGHTS_FILE, RANKER_META_FILE)

_VERSION_RE = re.compile(r"^v(\d{4,})$")


class BundleError(RuntimeError):
    """A version directory is missing, incomplete or fails its checksums."""


# Version names ---------------------------------------------------------------
def version_name(number: int) -> str:
    """``7 -> "v0007"`` (zero-padded to four digits, wider when needed)."""
    return f"v{number:04d}"


def version_number(name: str) -> int | None:
    """``"v0007" -> 7``; ``None`` for anything that is not a version name."""
    match = _VERSION_RE.match(name)
    return int(match.group(1)) if match else None


def version_dirs(indexes_dir: Path) -> list[Path]:
    """Version directories, oldest (smallest number) first."""
    if not indexes_dir.is_dir():
        return []
    found = [(version_number(p.name), p) for p in indexes_dir.iterdir() if p.is_dir()]
    return [p for n, p in sorted((n, p) for n, p in found if n is not None)]


# Pointer ---------------------------------------------------------------------
def read_pointer(indexes_dir: Path) -> str | None:
    """The version name in ``CURRENT``, or ``None`` when nothing was published."""
    try:
        text = (indexes_dir / POINTER_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    if version_number(text) is None:
        raise BundleError(f"{indexes_dir / POINTER_FILE} does not name a version: {text!r}")
    return text


def write_pointer(indexes_dir: Path, version: str) -> None:
    """Switch ``CURRENT`` to ``version`` atomically (temporary file + ``os.replace``)."""
    if version_number(version) is None:
        raise ValueError(f"not a version name: {version!r}")
    atomic_write_bytes(indexes_dir / POINTER_FILE, f"{version}\n".encode())


def pointer_signature(indexes_dir: Path) -> tuple[int, int, int] | None:
    """A cheap fingerprint of ``CURRENT`` (inode, mtime, size) from one ``stat``.

    Every switch replaces the file, so the inode changes; comparing fingerprints lets
    the service notice a new version without reading the file on every request.
    """
    return _signature(indexes_dir / POINTER_FILE)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# Live canary -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CanarySpec:
    """A challenger version served live next to ``CURRENT`` (the ``CANARY`` file).

    Args:
        version: the published version name of the challenger pair, e.g. ``v0008``.
        share: share of users (stable by user-id hash) it serves in ``"split"`` mode.
        mode: ``"split"`` serves ``share`` of the users with the canary; ``"shadow"``
            scores every request with it too but always serves ``CURRENT``.
        started_at: ISO time the canary started (informational).
    """

    version: str
    share: float
    mode: str = "split"
    started_at: str | None = None

    def __post_init__(self) -> None:
        if version_number(self.version) is None:
            raise ValueError(f"not a version name: {self.version!r}")
        if not 0.0 <= float(self.share) <= 1.0:
            raise ValueError(f"canary share must be in [0, 1], got {self.share}")
        if self.mode not in CANARY_MODES:
            raise ValueError(f"canary mode must be one of {CANARY_MODES}, got {self.mode!r}")


def read_canary(indexes_dir: Path) -> CanarySpec | None:
    """The live canary, or ``None`` when there is none.

    Raises:
        BundleError: the ``CANARY`` file exists but is not a valid specification.
    """
    try:
        payload = json.loads((indexes_dir / CANARY_FILE).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{indexes_dir / CANARY_FILE} is not valid JSON: {exc}") from exc
    try:
        return CanarySpec(
            version=str(payload["version"]),
            share=float(payload["share"]),
            mode=str(payload.get("mode", "split")),
            started_at=payload.get("started_at"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{indexes_dir / CANARY_FILE} is not a canary specification: {exc}") from exc


def write_canary(indexes_dir: Path, spec: CanarySpec) -> None:
    """Start (or change) the live canary atomically; the service picks it up per request."""
    payload = dataclasses.asdict(spec)
    atomic_write_bytes(indexes_dir / CANARY_FILE, (json.dumps(payload, sort_keys=True) + "\n").encode())


def clear_canary(indexes_dir: Path) -> bool:
    """Stop the live canary; returns whether one was running."""
    try:
        (indexes_dir / CANARY_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def canary_signature(indexes_dir: Path) -> tuple[int, int, int] | None:
    """Like :func:`pointer_signature`, for the ``CANARY`` file."""
    return _signature(indexes_dir / CANARY_FILE)


# Manifest and checksums -----------------------------------------------------
def read_manifest(path: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a version directory."""
    try:
        return json.loads((path / MANIFEST_FILE).read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"{path} has no {MANIFEST_FILE}") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path / MANIFEST_FILE} is not valid JSON: {exc}") from exc


def checksum_problems(path: Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Everything wrong with a version directory's files, as readable messages.

    Args:
        path (Path): the version directory.
        manifest (dict | None): its manifest, read from disk when ``None``.

    Returns:
        list[str]: empty when every required file is listed and matches its sha256.
    """
    try:
        manifest = read_manifest(path) if manifest is None else manifest
    except BundleError as exc:
        return [str(exc)]
    files = manifest.get("files") or {}
    problems = [f"{name}: not listed in the manifest" for name in DATA_FILES if name not in files]
    if has_ranker(manifest) or manifest.get("ranker_version") is not None:
        # a ranker comes whole: both files, each checked below
        problems += [f"{name}: not listed in the manifest (ranker)" for name in RANKER_FILES if name not in files]
    for name, expected in sorted(files.items()):
        file = path / name
        if Path(name).name != name:
            problems.append(f"{name}: not a plain file name")
        elif not file.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(file) != expected:
            problems.append(f"{name}: sha256 mismatch")
    return problems


def has_ranker(manifest: dict[str, Any]) -> bool:
    """Whether a manifest lists ranker files (a version without them is retrieval-only)."""
    files = manifest.get("files") or {}
    return any(name in files for name in RANKER_FILES)


def checksums(path: Path, names: tuple[str, ...] = DATA_FILES) -> dict[str, str]:
    """``{name: sha256}`` of files in ``path``."""
    return {name: sha256_file(path / name) for name in names}


def manifest_summary(path: Path, manifest: dict[str, Any], *, current: str | None = None) -> dict[str, Any]:
    """The part of a manifest people and the API want to see (no checksums)."""
    keys = (
        "index_version",
        "model_version",
        "ranker_version",
        "run_id",
        "data_window",
        "ds",
        "metrics",
        "created_at",
        "dim",
        "n_items",
        "n_users",
    )
    summary = {key: manifest.get(key) for key in keys}
    summary["index_version"] = summary["index_version"] or path.name
    summary["path"] = str(path)
    summary["current"] = path.name == current
    return summary
