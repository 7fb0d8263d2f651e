"""The on-disk layout of a published index version and the ``CURRENT`` pointer.

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
    ranker.pt          optional: the BST re-ranker's weights (:func:`training.bst.save_ranker`)
    ranker.json        optional: its configuration and vocabulary; both or neither
    manifest.json      lineage, sizes and the sha256 of every file above

A version is complete when its manifest lists every file and every checksum matches;
:func:`load_bundle` refuses anything else. A version without the two ranker files is a
retrieval-only version; with them, the ranker is verified and loaded like the index, so
a half-written or tampered ranker makes the whole version unusable.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from graphrec.lake import atomic_write_bytes, sha256_file
from serving.history import SeenSets

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

RANKER_WEIGHTS_FILE = "ranker.pt"  # training.bst.WEIGHTS_FILE (not imported: it needs torch)
RANKER_META_FILE = "ranker.json"  # training.bst.META_FILE

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


# Loading ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Bundle:
    """One published version, fully in memory and immutable once built.

    The service swaps whole bundles, so a request that started with one bundle keeps
    using consistent arrays even if a newer version is loaded meanwhile.
    """

    version: str
    path: Path
    manifest: dict[str, Any]
    index: Any  # faiss.Index (kept untyped so importing this module does not need faiss)
    item_ids: np.ndarray
    user_ids: np.ndarray
    user_emb: np.ndarray
    seen: SeenSets
    popular: np.ndarray
    user_lookup: tuple[np.ndarray, np.ndarray]  # (sorted user ids, their rows in user_emb)
    ranker: tuple[Any, Any, dict[str, Any]] | None = None  # training.bst.load_ranker's (model, vocab, meta)
    item_emb: np.ndarray | None = None  # the index's vectors, row j = item_ids[j] (item-to-item search)
    item_lookup: tuple[np.ndarray, np.ndarray] | None = None  # (sorted item ids, their rows)
    ranker_scorer: Any = None  # training.bst.RequestScorer of the ranker (traced once, at load)

    @property
    def model_version(self) -> Any:
        return self.manifest.get("model_version")

    @property
    def ranker_version(self) -> int | None:
        """Registered ranker version published with this index, ``None`` for retrieval only."""
        return self.manifest.get("ranker_version")

    def user_row(self, user_id: int) -> int | None:
        """Row of ``user_id`` in ``user_emb``, or ``None`` for a user the model never saw."""
        return _find(self.user_lookup, user_id)

    def item_row(self, item_id: int) -> int | None:
        """Row of ``item_id`` in the index (and ``item_emb``), or ``None`` for an unknown item."""
        return None if self.item_lookup is None else _find(self.item_lookup, item_id)

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
        items = np.asarray(item_ids, dtype=np.int64)
        if len(ids) == 0:
            return np.ones(len(items))
        pos = np.minimum(np.searchsorted(ids, items), len(ids) - 1)
        return np.where(ids[pos] == items, pct[pos], 1.0)


def load_bundle(path: Path, *, verify: bool = True) -> Bundle:
    """Load a version directory into a :class:`Bundle`.

    Args:
        path (Path): the version directory (``.../indexes/vNNNN``).
        verify (bool): check every checksum first (default). Loading a bundle whose
            files do not match its manifest is refused.

    When the manifest lists the ranker files, the ranker is loaded too
    (:func:`training.bst.load_ranker`, which imports torch) into :attr:`Bundle.ranker`,
    and traced for serving into :attr:`Bundle.ranker_scorer`.

    Raises:
        BundleError: when the directory is missing, incomplete, tampered with or
            internally inconsistent, or its ranker cannot be loaded.
    """
    from serving.index import apply_search_params, item_vectors, load_index

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
    return Bundle(
        version=path.name,
        path=path,
        manifest=manifest,
        index=index,
        item_ids=item_ids.astype(np.int64, copy=False),
        user_ids=user_ids.astype(np.int64, copy=False),
        user_emb=np.ascontiguousarray(user_emb, dtype=np.float32),
        seen=seen,
        popular=popular.astype(np.int64, copy=False),
        user_lookup=_lookup(user_ids.astype(np.int64, copy=False)),
        ranker=ranker,
        item_emb=item_emb,
        item_lookup=_lookup(item_ids.astype(np.int64, copy=False)),
        ranker_scorer=scorer,
    )


def _load_ranker(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """The version's BST re-ranker; torch is imported only for bundles that carry one."""
    try:
        from training import bst

        return bst.load_ranker(path)
    except Exception as exc:  # torch, json and a mismatched state dict raise assorted types
        raise BundleError(f"index version {path.name}: the ranker could not be loaded: {exc}") from exc


def _ranker_scorer(path: Path, model: Any) -> Any:
    """The loaded ranker's :class:`training.bst.RequestScorer` (its TorchScript trace, ~40 ms)."""
    from training import bst

    try:
        return bst.RequestScorer(model)
    except Exception as exc:
        raise BundleError(f"index version {path.name}: the ranker could not be prepared for serving: {exc}") from exc


def _find(lookup: tuple[np.ndarray, np.ndarray], key: int) -> int | None:
    sorted_ids, rows = lookup
    i = int(np.searchsorted(sorted_ids, key))
    if i < len(sorted_ids) and int(sorted_ids[i]) == int(key):
        return int(rows[i])
    return None


def _lookup(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ids and their original positions, for ``searchsorted`` lookups."""
    order = np.argsort(ids, kind="stable")
    return ids[order], order
