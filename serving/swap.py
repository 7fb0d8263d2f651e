"""The bundles the service answers from right now, swapped when their files change.

:class:`LiveBundles` holds the bundle ``CURRENT`` names and, when the ``CANARY`` file
names one, the live canary's. Each request checks both files with one ``stat``
(:func:`serving.layout.pointer_signature`); when one changed, the named version is
loaded (verifying every checksum) into a new :class:`~serving.bundle.Bundle` and then
the single reference to it is replaced: requests already running keep the old bundle,
new ones get the new one, and nobody sees a mix. With ``background_swap`` the load runs
in a background thread and requests keep being answered from the old bundle meanwhile.

A version that fails verification is refused: the old bundle keeps serving, and
:attr:`LiveBundles.state` names the refused version and why until a good version loads.
A process that starts while ``CURRENT`` names a version that cannot be loaded serves the
newest *older* version that verifies instead (a **fallback**; never a newer one: after a
rollback those are the versions rolled back from, and a challenger is published above
``CURRENT``). ``CURRENT`` itself is left alone (the publisher owns it): when it moves to a
good version, the service swaps to it as usual. With no older version that verifies,
:class:`NoPublishedIndex` (HTTP 503) is raised. A canary that fails to load is ignored
(everybody gets the champion) until the ``CANARY`` file changes.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from serving import layout
from serving.bundle import Bundle, load_bundle
from serving.layout import BundleError, CanarySpec

log = logging.getLogger(__name__)


class NoPublishedIndex(RuntimeError):
    """No usable published index: nothing published yet, or the current one fails verification.

    The HTTP service answers 503 with the message; the CLI prints it.
    """


@dataclasses.dataclass(frozen=True)
class ServingState:
    """What ``CURRENT`` names next to what is served: they differ while a version is refused.

    Args:
        pointer_version: the version ``CURRENT`` names (``None``: nothing published, or
            the pointer cannot be read).
        refused_version: the version ``CURRENT`` names that the service refused (it fails
            verification or cannot be read), or ``None`` when it serves what ``CURRENT``
            names (or the pointer itself cannot be read: ``detail`` says so).
        fallback: the bundle served was picked at start-up because ``CURRENT``'s failed:
            the newest older version that verifies.
        detail: why ``CURRENT``'s version is not served, in words; ``None`` when it is.
    """

    pointer_version: str | None = None
    refused_version: str | None = None
    fallback: bool = False
    detail: str | None = None


@dataclasses.dataclass(frozen=True)
class LiveCanary:
    """The loaded live canary: its specification and its bundle."""

    spec: CanarySpec
    bundle: Bundle


class LiveBundles:
    """``CURRENT``'s bundle and the live canary's, reloaded when their files change.

    Args:
        root (Path): ``settings.indexes_dir``.
        verify (bool): verify checksums when loading a version.
        background_swap (bool): load a newly published version (and a new live canary)
            in a background thread and keep answering from the old one until it is
            ready; ``False`` loads it in the request that first notices.
        on_load (Callable[[Bundle], None] | None): called with each newly loaded
            ``CURRENT`` bundle, before it serves (e.g. to set torch's thread count).
    """

    def __init__(
        self,
        root: Path,
        *,
        verify: bool = True,
        background_swap: bool = False,
        on_load: Callable[[Bundle], None] | None = None,
    ) -> None:
        self._root = root
        self._verify = verify
        self._background_swap = background_swap
        self._on_load = on_load
        self._bundle: Bundle | None = None
        self._signature: tuple[int, int, int] | None = None
        self._state = ServingState()
        self._load_lock = threading.Lock()
        self._canary: LiveCanary | None = None
        self._canary_signature: tuple[int, int, int] | None = None
        self._canary_error: str | None = None
        self._canary_lock = threading.Lock()

    # CURRENT -----------------------------------------------------------------
    @property
    def bundle(self) -> Bundle | None:
        """The bundle in use right now (no refresh), or ``None`` before the first load."""
        return self._bundle

    @property
    def state(self) -> ServingState:
        """What ``CURRENT`` names, whether it is refused and whether a fallback serves (no refresh)."""
        return self._state

    def refresh(self) -> Bundle:
        """Return the bundle to use, loading a newly published version if ``CURRENT`` moved.

        The check is one ``stat`` of the pointer file when nothing changed. While one
        thread loads a new version, other threads keep answering from the old bundle.

        Raises:
            NoPublishedIndex: nothing is published, or the current version is unusable
                and no earlier bundle is loaded.
        """
        signature = layout.pointer_signature(self._root)
        current = self._bundle
        if current is not None and signature == self._signature:
            return current
        if signature is None:
            if current is not None:  # pointer removed by hand: keep what works
                return current
            raise NoPublishedIndex(f"no index has been published yet (no {self._root / layout.POINTER_FILE})")
        if current is None:
            self._load_lock.acquire()
        elif not self._load_lock.acquire(blocking=False):
            return current  # another request is loading the new version
        if current is not None and self._background_swap:
            threading.Thread(target=self._load_in_background, args=(signature,), daemon=True).start()
            return current  # answered by the old bundle while the new one loads
        try:
            return self._load_locked(signature)
        finally:
            self._load_lock.release()

    def _load_in_background(self, signature: tuple[int, int, int]) -> None:
        """Load the new version off the request path (the caller holds the load lock)."""
        try:
            self._load_locked(signature)
        except Exception:  # _load_locked keeps the old bundle; nothing to raise to
            log.exception("loading the new index version failed")
        finally:
            self._load_lock.release()

    def _load_locked(self, signature: tuple[int, int, int]) -> Bundle:
        current = self._bundle
        if signature == self._signature:  # another thread finished while we waited
            if current is not None:
                return current
            raise NoPublishedIndex(self._state.detail or "no usable index version")
        version: str | None = None
        try:
            version = layout.read_pointer(self._root)
            if version is None:
                raise BundleError("the CURRENT pointer disappeared")
            new = current if current is not None and current.version == version else self._load(version)
        except BundleError as exc:
            self._signature = signature  # do not retry until the pointer moves again
            return self._refuse(version, exc)
        self._bundle = new  # one reference assignment: the swap
        self._signature = signature
        self._state = ServingState(pointer_version=version)
        return new

    def _load(self, version: str) -> Bundle:
        """Load (and verify) one published version; log it and call ``on_load``."""
        new = load_bundle(self._root / version, verify=self._verify)
        log.info(
            "serving index %s (model version %s, ranker version %s)", new.version, new.model_version, new.ranker_version
        )
        if self._on_load is not None:
            self._on_load(new)
        return new

    def _refuse(self, version: str | None, error: BundleError) -> Bundle:
        """Refuse what ``CURRENT`` names: keep the bundle served (at start-up: fall back) and say why.

        Raises:
            NoPublishedIndex: there is no bundle to keep and no older version verifies.
        """
        current, fallback, skipped = self._bundle, self._state.fallback, ""
        if current is None:
            current, problems = self._fall_back(version)
            fallback = current is not None
            skipped = f" (skipped: {'; '.join(problems)})" if problems else ""
        if current is None:
            detail = f"{error}; no older version verifies{skipped}"
            log.error("no usable index: %s", detail)
            self._state = ServingState(version, version, detail=detail)
            raise NoPublishedIndex(detail) from error
        refused = f"CURRENT names {version}, which is refused: {error}" if version else str(error)
        served = ", the newest older version that verifies" if fallback else ""
        detail = f"{refused}; serving {current.version}{served}{skipped}"
        log.error("%s", detail)
        self._bundle = current  # the fallback's first serve; otherwise unchanged
        self._state = ServingState(version, version, fallback, detail)
        return current

    def _fall_back(self, pointer: str | None) -> tuple[Bundle | None, list[str]]:
        """The newest version older than ``pointer`` that verifies, and why newer ones were skipped.

        Candidates are the version directories numbered below ``pointer``, newest first
        (a newer one is a challenger or was rolled back from), the live canary's left out.
        ``CURRENT`` itself is never touched. ``None`` when ``pointer`` is not a version name.
        """
        number = layout.version_number(pointer) if pointer is not None else None
        if number is None:
            return None, []
        try:
            canary = layout.read_canary(self._root)
        except BundleError:
            canary = None
        problems: list[str] = []
        for path in reversed(layout.version_dirs(self._root)):
            if layout.version_number(path.name) >= number or (canary is not None and path.name == canary.version):
                continue
            try:
                return self._load(path.name), problems
            except BundleError as exc:
                problems.append(str(exc))
        return None, problems

    # CANARY ------------------------------------------------------------------
    @property
    def canary(self) -> LiveCanary | None:
        """The live canary being served (no refresh), or ``None``."""
        return self._canary

    @property
    def canary_error(self) -> str | None:
        """Why the named canary is not served (it failed to load), or ``None``."""
        return self._canary_error

    def refresh_canary(self) -> LiveCanary | None:
        """The live canary to use, (re)loading it when the ``CANARY`` file changed.

        One ``stat`` when nothing changed. Never raises: a canary that cannot be read or
        loaded is logged and ignored (everyone gets the champion) until the file changes.
        With ``background_swap`` the new canary is loaded in a background thread and the
        old state (usually: no canary) is served until it is ready.
        """
        signature = layout.canary_signature(self._root)
        if signature == self._canary_signature:
            return self._canary
        if not self._canary_lock.acquire(blocking=False):
            return self._canary  # another request is loading it
        if self._background_swap:  # keep answering with the old state while it loads
            threading.Thread(target=self._refresh_canary_locked, args=(signature,), daemon=True).start()
            return self._canary
        return self._refresh_canary_locked(signature)

    def _refresh_canary_locked(self, signature: tuple[int, int, int] | None) -> LiveCanary | None:
        """Load the canary the ``CANARY`` file names (the caller holds the canary lock)."""
        try:
            if signature != self._canary_signature:
                self._canary = self._load_canary(self._canary)
                self._canary_signature = signature
            return self._canary
        finally:
            self._canary_lock.release()

    def _load_canary(self, old: LiveCanary | None) -> LiveCanary | None:
        try:
            spec = layout.read_canary(self._root)
            if spec is None:
                if old is not None:
                    log.info("live canary %s stopped", old.spec.version)
                self._canary_error = None
                return None
            if old is not None and old.bundle.version == spec.version:
                bundle = old.bundle  # only the share or mode changed
            else:
                bundle = load_bundle(self._root / spec.version, verify=self._verify)
            log.info("live canary %s (%s, share %.3f)", spec.version, spec.mode, spec.share)
            self._canary_error = None
            return LiveCanary(spec, bundle)
        except Exception as exc:  # a broken canary must never break serving
            self._canary_error = str(exc)
            log.error("ignoring the live canary: %s", exc)
            return None
