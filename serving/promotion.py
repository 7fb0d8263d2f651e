"""Promotion and rollback of published versions: what serving and MLflow's ``champion`` agree on.

Publication (:mod:`serving.publish`) writes immutable versions; this module moves the
two things that must point at the same version together:

* :func:`rollback` re-points ``CURRENT`` to an earlier (or later) verified version and moves
  the retriever's and the ranker's ``champion`` aliases to the versions in its manifest, in
  one step: if an alias cannot be moved, the pointer and every alias are put back;
* the live canary: :func:`start_canary` publishes a registered pair without serving it and
  names it in the ``CANARY`` file (a share of users, or shadow mode; see
  :mod:`serving.recommender`), :func:`canary_status`, :func:`stop_canary`, and
  :func:`promote_canary`, which makes it ``CURRENT`` and champion like a rollback would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path
from typing import Any

from graphrec.lake import atomic_write_bytes, list_partitions
from graphrec.settings import Settings
from serving import layout
from serving.publish import publish_model
from serving.versions import canary_or_none, pointer_or_none, publish_lock, verify_version, version_summary
from training import registry

log = logging.getLogger(__name__)


class VersionNotFound(LookupError):
    """The named index version does not exist, or there is nothing to roll back to."""


class NoCanary(LookupError):
    """No live canary is running (nothing to promote), or no day to publish it for."""


class ChampionUpdateError(RuntimeError):
    """A champion alias could not be moved; the pointer and aliases were put back."""


def rollback(settings: Settings, version: str | None = None) -> dict[str, Any]:
    """Serve an earlier version again and move the MLflow ``champion`` aliases with it.

    The version's checksums are verified first; then ``CURRENT`` is switched and the
    retriever's (``settings.mlflow.retriever_model_name``) champion alias moved to the
    manifest's ``model_version`` and the ranker's (``settings.mlflow.ranker_model_name``) to
    its ``ranker_version``. A version published without a ranker leaves the ranker's
    alias where it is (``notes`` says so). If an alias cannot be moved, ``CURRENT``
    and the aliases are put back as they were.

    Args:
        settings (Settings): installation settings.
        version (str | None): the version to serve (``"v0003"``); ``None`` (default):
            the newest version older than ``CURRENT``.

    Returns:
        dict: ``index_version``, ``previous_version``, ``model_version``,
        ``ranker_version``, ``champions`` (``{model name: {"from": n, "to": n}}``),
        ``notes`` and ``canary`` (the live canary, which a rollback leaves running).

    Raises:
        VersionNotFound: no such version, or no version older than ``CURRENT``.
        serving.layout.BundleError: the version fails verification (nothing changed).
        ChampionUpdateError: an alias could not be moved (pointer and aliases restored).
    """
    root = settings.indexes_dir
    if version is None:
        current = layout.read_pointer(root)
        if current is None:
            raise VersionNotFound(f"nothing to roll back: nothing is published under {root}")
        number = layout.version_number(current) or 0
        older = [p.name for p in layout.version_dirs(root) if (layout.version_number(p.name) or 0) < number]
        if not older:
            raise VersionNotFound(f"nothing to roll back to: no version older than {current} under {root}")
        version = older[-1]
    return _serve_with_champions(settings, version)


def start_canary(
    settings: Settings,
    model_version: int | str,
    *,
    ranker_version: int | str | None = None,
    share: float | None = None,
    mode: str | None = None,
    ds: str | dt.date | None = None,
) -> dict[str, Any]:
    """Publish a registered model (and ranker) without serving it, and start it as the live canary.

    The version is published with ``activate=False`` (``CURRENT`` does not move) and
    named in the ``CANARY`` file, which the service reads per request. A running
    canary is replaced (its version stays on disk until pruned).

    Args:
        settings (Settings): installation settings.
        model_version (int | str): registered retriever version or alias.
        ranker_version (int | str | None): registered ranker version or alias to serve
            with it; ``None`` (default): retrieval only.
        share (float | None): share of users it serves in ``"split"`` mode (default:
            ``settings.serve.live_canary_share``).
        mode (str | None): ``"split"`` or ``"shadow"`` (default: ``settings.serve.live_canary_mode``).
        ds (str | datetime.date | None): the history day to publish with (default: the
            newest curated partition).

    Returns:
        dict: ``canary`` (the written :class:`~serving.layout.CanarySpec` as a dict),
        ``published`` (:func:`serving.publish.publish_model`'s result, as plain data:
        :meth:`~graphrec.handoff.Handoff.to_xcom`) and ``replaced`` (the previous
        canary's spec, or ``None``).

    Raises:
        ValueError: ``share`` or ``mode`` out of range (checked before publishing).
        NoCanary: ``ds`` not given and no curated partition exists.
    """
    spec = layout.CanarySpec(  # validated before anything is published; the version is filled in below
        version=layout.version_name(0),
        share=settings.serve.live_canary_share if share is None else float(share),
        mode=mode or settings.serve.live_canary_mode,
    )
    if ds is None:
        days = list_partitions(settings.curated_dir)
        if not days:
            raise NoCanary(f"no curated partition under {settings.curated_dir}: pass ds")
        ds = days[-1]
    published = publish_model(settings, model_version, ds, ranker_version, activate=False)
    spec = dataclasses.replace(
        spec, version=published.index_version, started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    root = settings.indexes_dir
    with publish_lock(root):
        replaced = canary_or_none(root)
        if not (root / spec.version).is_dir():  # pruned by a concurrent publisher before CANARY protected it
            raise VersionNotFound(f"canary version {spec.version} disappeared before it could start")
        layout.write_canary(root, spec)
    log.info("live canary %s (%s, share %.3f) started", spec.version, spec.mode, spec.share)
    return {
        "canary": dataclasses.asdict(spec),
        "published": published.to_xcom(),
        "replaced": dataclasses.asdict(replaced) if replaced else None,
    }


def canary_status(settings: Settings) -> dict[str, Any]:
    """The live canary's specification and a summary of its version and of ``CURRENT``'s.

    Returns:
        dict: ``canary`` (the spec as a dict, or ``None``), ``version`` and ``current``
        (version summaries as in :func:`serving.versions.list_versions`, with ``verified``; ``None``
        when absent).
    """
    root = settings.indexes_dir
    spec = layout.read_canary(root)
    current = layout.read_pointer(root)

    def describe(name: str | None) -> dict[str, Any] | None:
        if name is None or not (root / name).is_dir():
            return None
        try:
            summary = version_summary(
                root / name, layout.read_manifest(root / name), current=current, canary=spec.version if spec else None
            )
        except layout.BundleError as exc:
            return {"index_version": name, "error": str(exc), "verified": False}
        summary["verified"] = verify_version(root / name)
        return summary

    return {
        "canary": dataclasses.asdict(spec) if spec else None,
        "version": describe(spec.version if spec else None),
        "current": describe(current),
    }


def stop_canary(settings: Settings) -> dict[str, Any]:
    """Stop the live canary (remove ``CANARY``); its version stays on disk until pruned.

    Returns:
        dict: ``stopped`` (the spec that was running, or ``None``; ``None`` too for an
        unreadable ``CANARY`` file, which is removed all the same) and ``cleared``
        (whether a ``CANARY`` file was removed).
    """
    root = settings.indexes_dir
    with publish_lock(root):
        spec = canary_or_none(root)
        cleared = layout.clear_canary(root)
    if cleared:
        log.info("live canary %s stopped", spec.version if spec else "(unreadable)")
    return {"stopped": dataclasses.asdict(spec) if spec else None, "cleared": cleared}


def promote_canary(settings: Settings) -> dict[str, Any]:
    """Serve the live canary's version to everyone: ``CURRENT`` and champion aliases move, ``CANARY`` goes.

    Like :func:`rollback` to the canary's version; ``CANARY`` is removed only once the
    pointer and aliases have moved, so a failed promotion leaves the canary running.

    Returns:
        dict: as :func:`rollback`, plus ``promoted`` (the canary's spec).

    Raises:
        NoCanary: no live canary is running.
        serving.layout.BundleError: the canary's version fails verification.
        ChampionUpdateError: an alias could not be moved (pointer and aliases restored).
    """
    root = settings.indexes_dir
    spec = layout.read_canary(root)
    if spec is None:
        raise NoCanary(f"no live canary to promote (no {root / layout.CANARY_FILE})")
    result = _serve_with_champions(settings, spec.version)
    with publish_lock(root):
        running = canary_or_none(root)
        if running is not None and running.version == spec.version:
            layout.clear_canary(root)
    result["promoted"] = dataclasses.asdict(spec)
    result["canary"] = None
    log.info("live canary %s promoted", spec.version)
    return result


# Pointer and champion moves -------------------------------------------------
def _serve_with_champions(settings: Settings, version: str) -> dict[str, Any]:
    """Switch ``CURRENT`` to a verified ``version`` and move the champion aliases to its models.

    On a failing alias move, ``CURRENT`` gets its previous content back and every alias
    is set back to what it was before; :class:`ChampionUpdateError` says what happened.
    """
    root = settings.indexes_dir
    path = root / version
    if layout.version_number(version) is None or not path.is_dir():
        raise VersionNotFound(f"no index version {version!r} under {root}")
    problems = layout.checksum_problems(path)
    if problems:
        raise layout.BundleError(f"refusing to serve {version}: " + "; ".join(problems))
    manifest = layout.read_manifest(path)
    moves, notes = _champion_moves(settings, manifest, version)
    before = {model: registry.get_alias_version(settings, registry.CHAMPION, model=model) for model, _ in moves}
    pointer = root / layout.POINTER_FILE
    with publish_lock(root):
        if not path.is_dir():  # pruned meanwhile
            raise VersionNotFound(f"no index version {version!r} under {root}")
        previous_bytes = pointer.read_bytes() if pointer.exists() else None
        previous = pointer_or_none(root)
        layout.write_pointer(root, version)
    try:
        for model, target in moves:
            registry.set_alias(settings, registry.CHAMPION, target, model=model)
    except Exception as exc:
        failures = _restore(settings, root, previous_bytes, before)
        message = (
            f"could not move the {registry.CHAMPION!r} aliases to {version}'s models ({exc}); "
            f"CURRENT and the aliases were put back"
        )
        if failures:
            message += "; but restoring failed for: " + "; ".join(failures)
        raise ChampionUpdateError(message) from exc
    log.info("CURRENT now points to %s (was %s); champions %s", version, previous, dict(moves))
    return {
        "index_version": version,
        "previous_version": previous,
        "model_version": manifest.get("model_version"),
        "ranker_version": manifest.get("ranker_version"),
        "champions": {model: {"from": before[model], "to": target} for model, target in moves},
        "notes": notes,
        "canary": dataclasses.asdict(spec) if (spec := canary_or_none(root)) else None,
    }


def _champion_moves(
    settings: Settings, manifest: dict[str, Any], version: str
) -> tuple[list[tuple[str, int]], list[str]]:
    """``[(registered model name, version its champion alias should name)]`` and notes."""
    moves: list[tuple[str, int]] = []
    notes: list[str] = []
    pairs = (
        (settings.mlflow.retriever_model_name, "model_version"),
        (settings.mlflow.ranker_model_name, "ranker_version"),
    )
    for model, key in pairs:
        value = manifest.get(key)
        if value is not None:
            try:
                moves.append((model, int(value)))
            except (TypeError, ValueError):
                notes.append(
                    f"{version}'s {key} {value!r} is not a version number: the {model} champion alias is left as it is"
                )
            continue
        held = registry.get_alias_version(settings, registry.CHAMPION, model=model)
        if held is not None:
            notes.append(f"{version} was published without a {key}: the {model} champion alias stays at version {held}")
    return moves, notes


def _restore(settings: Settings, root: Path, pointer_bytes: bytes | None, aliases: dict[str, int | None]) -> list[str]:
    """Put ``CURRENT`` and the champion aliases back; returns what could not be restored."""
    failures = []
    try:
        with publish_lock(root):
            if pointer_bytes is None:
                (root / layout.POINTER_FILE).unlink(missing_ok=True)
            else:
                atomic_write_bytes(root / layout.POINTER_FILE, pointer_bytes)
    except Exception as exc:
        failures.append(f"CURRENT ({exc})")
    for model, version in aliases.items():
        try:
            if registry.get_alias_version(settings, registry.CHAMPION, model=model) == version:
                continue
            if version is None:
                registry.client_for(settings).delete_registered_model_alias(model, registry.CHAMPION)
            else:
                registry.set_alias(settings, registry.CHAMPION, version, model=model)
        except Exception as exc:
            failures.append(f"{model} champion alias ({exc})")
    return failures
