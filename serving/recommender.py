"""The in-process recommender: retrieval from the current bundle, with hot swaps.

Per request the recommender

1. checks the ``CURRENT`` pointer with one ``stat``; when it changed, it loads the named version
   (verifying every checksum) into a new :class:`~serving.bundle.Bundle` and then
   replaces its single bundle reference -- requests already running keep the old
   bundle, new ones get the new one, and nobody sees a mix;
2. collects what the user already saw: the bundle's seen set plus, optionally, recent
   items from an injected ``recent_items_fn`` (the Feast online store); if that source
   fails the request continues without it and says so in ``degraded``;
3. for a user the model knows, searches the FAISS index for ``k + |seen|`` candidates
   (enough to fill ``k`` after exclusion) and keeps the best ``k`` unseen ones; for an
   unknown user, returns the most popular unseen items flagged as a fallback;
4. when the bundle carries a BST ranker and a ``ranker_features_fn`` is given (the
   Feast online store), retrieval keeps ``rerank_candidates`` unseen items instead, the
   ranker scores them from their features plus the retrieval score, and the best ``k``
   by click probability are returned. If the features or the ranker fail, the request
   is answered in retrieval order and says so in ``degraded``.

**Live canary.** When the ``CANARY`` file names a published challenger version
(:class:`serving.bundle.CanarySpec`), the recommender loads it next to ``CURRENT``. In
``split`` mode a stable share of users (by a hash of the user id salted with the canary's
version, :func:`in_canary`) is answered by the challenger pair and the response says
``variant: challenger``; in ``shadow`` mode every request is also answered by the
challenger, which is logged (logger ``graphrec.shadow``, one JSON line) and observed
(overlap with the served list) but never served. A canary that fails to load is
ignored: everybody gets the champion.

A failing optional source (recent items, ranker features) is skipped for
``recent_items_retry_s`` seconds, so an unreachable store does not add its timeout to
every request.

A version that fails verification is refused: the recommender keeps serving the
bundle it has, or raises :class:`NoPublishedIndex` (HTTP 503) if it has none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

import numpy as np

from graphrec.settings import Settings
from serving import bundle as layout
from serving.bundle import Bundle, BundleError
from serving.schemas import Recommendation, ScoredItem, SimilarItems

if TYPE_CHECKING:
    import pandas as pd

    from training.bst import CandidateFeatures

log = logging.getLogger(__name__)
shadow_log = logging.getLogger("graphrec.shadow")

#: ``recent_items_fn(user_ids) -> {user_id: [item_id, ...]}``, e.g. a partial of
#: ``features.store.online_recent_items``.
RecentItemsFn = Callable[[list[int]], Mapping[int, Iterable[int]]]
#: ``ranker_features_fn(user_id, item_ids) -> features`` of one row per item, in order:
#: either a frame with the columns of ``features.store.online_ranker_features`` (its
#: partial over settings), or the same values as ``training.bst.CandidateFeatures``
#: (``features.store.OnlineRankerFeatures``, the service's reader), which is encoded
#: without pandas.
RankerFeaturesFn: TypeAlias = "Callable[[int, list[int]], pd.DataFrame | CandidateFeatures]"


class ServiceObserver(Protocol):
    """What the recommender reports to a metrics sink (:class:`serving.metrics.ServiceMetrics`)."""

    def observe_served(self, variant: str, popularity: float, answer: Recommendation) -> None: ...

    def observe_shadow(self, overlap: float, popularity: float | None) -> None: ...


CHAMPION = "champion"
CHALLENGER = "challenger"
UNKNOWN_USER = "unknown_user"
RECENT_ITEMS = "recent_items"
RANKER_FEATURES = "ranker_features"


class NoPublishedIndex(RuntimeError):
    """No usable published index: nothing published yet, or the current one fails verification.

    The HTTP service answers 503 with the message; the CLI prints it.
    """


class UnknownItem(LookupError):
    """The item is not in the served index (HTTP 404)."""


def in_canary(user_id: int, share: float, salt: str) -> bool:
    """Whether ``user_id`` belongs to the canary share: stable for a given ``salt``.

    A 64-bit BLAKE2b hash of ``"{salt}:{user_id}"`` below ``share * 2**64``: the same
    user always gets the same variant during one canary, a new canary (another salt,
    its version name) draws a fresh sample, and the share is exact in expectation.
    """
    if share <= 0.0:
        return False
    if share >= 1.0:
        return True
    digest = hashlib.blake2b(f"{salt}:{int(user_id)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2.0**64


@dataclasses.dataclass(frozen=True)
class LiveCanary:
    """The loaded live canary: its specification and its bundle."""

    spec: layout.CanarySpec
    bundle: Bundle


class Recommender:
    """Serve top-k recommendations from the currently published index version.

    Args:
        settings (Settings): installation settings (``indexes_dir``).
        recent_items_fn (RecentItemsFn | None): optional extra source of items to
            exclude (for example the Feast online store's recent items). Failures are
            logged and reported in ``Recommendation.degraded``, never raised.
        verify (bool): verify checksums when loading a version (default True).
        search_threads (int | None): FAISS OpenMP threads for this process; 1 suits
            one-query-per-request serving (NOTES.md). ``None`` leaves it unchanged.
        recent_items_retry_s (float): after an optional source (``recent_items_fn``,
            ``ranker_features_fn`` or the ranker itself) fails, skip it (and report it
            as degraded) for this many seconds, so an unreachable store does not add
            its timeout to every request.
        ranker_features_fn (RankerFeaturesFn | None): online features of (user,
            candidate) rows for the bundle's BST ranker, e.g.
            ``functools.partial(features.store.online_ranker_features, settings)``.
            Without it, or for a bundle without a ranker, answers are retrieval only.
        rerank_candidates (int): unseen retrieved candidates the ranker re-orders per
            request (at least ``k``). (default: ``100``)
        ranker_threads (int | None): torch intra-op threads for this process, set when
            the first bundle with a ranker is loaded. Like FAISS, one thread suits
            scoring one user's candidates per request: on a busy 2-core machine two
            threads took ~350 ms for 100 candidates, one ~6 ms. ``None`` leaves it.
            (default: ``1``)
        metrics (ServiceObserver | None): told the served items' popularity per variant and
            the shadow overlap (:class:`serving.metrics.ServiceMetrics`); ``None``: nothing.
        background_swap (bool): load a newly published version (and a new live canary)
            in a background thread and keep answering from the old one until it is ready
            (the service does this: no request waits for a load); ``False`` (default)
            loads it in the request that first notices, which then answers from the new
            version.
    """

    def __init__(
        self,
        settings: Settings,
        recent_items_fn: RecentItemsFn | None = None,
        *,
        verify: bool = True,
        search_threads: int | None = 1,
        recent_items_retry_s: float = 30.0,
        ranker_features_fn: RankerFeaturesFn | None = None,
        rerank_candidates: int = 100,
        ranker_threads: int | None = 1,
        metrics: ServiceObserver | None = None,
        background_swap: bool = False,
    ) -> None:
        if rerank_candidates < 1:
            raise ValueError(f"rerank_candidates must be >= 1, got {rerank_candidates}")
        self._root = settings.indexes_dir
        self._recent_items_fn = recent_items_fn
        self._ranker_features_fn = ranker_features_fn
        self._rerank_candidates = rerank_candidates
        self._ranker_threads = ranker_threads
        self._retry_s = recent_items_retry_s
        self._down_until: dict[str, float] = {}  # optional source -> monotonic time to retry it
        self._verify = verify
        self._bundle: Bundle | None = None
        self._signature: tuple[int, int, int] | None = None
        self._last_error: str | None = None
        self._load_lock = threading.Lock()
        self._metrics = metrics
        self._background_swap = background_swap
        self._canary: LiveCanary | None = None
        self._canary_signature: tuple[int, int, int] | None = None
        self._canary_error: str | None = None
        self._canary_lock = threading.Lock()
        if search_threads is not None:
            from serving.index import set_search_threads

            set_search_threads(search_threads)

    # Bundle management -----------------------------------------------------
    @property
    def bundle(self) -> Bundle | None:
        """The bundle in use right now (no refresh), or ``None`` before the first load."""
        return self._bundle

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
            raise NoPublishedIndex(self._last_error or "no usable index version")
        try:
            version = layout.read_pointer(self._root)
            if version is None:
                raise BundleError("the CURRENT pointer disappeared")
            if current is not None and current.version == version:
                new = current
            else:
                new = layout.load_bundle(self._root / version, verify=self._verify)
                log.info(
                    "serving index %s (model version %s, ranker version %s)",
                    new.version,
                    new.model_version,
                    new.ranker_version,
                )
                if new.ranker is not None and self._ranker_threads is not None:
                    import torch  # already imported by the ranker's loading

                    torch.set_num_threads(self._ranker_threads)
        except BundleError as exc:
            self._last_error = str(exc)
            self._signature = signature  # do not retry until the pointer moves again
            if current is not None:
                log.error("keeping index %s: %s", current.version, exc)
                return current
            log.error("no usable index: %s", exc)
            raise NoPublishedIndex(str(exc)) from exc
        self._bundle = new  # one reference assignment: the swap
        self._signature = signature
        self._last_error = None
        return new

    # Live canary -----------------------------------------------------------
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
                bundle = layout.load_bundle(self._root / spec.version, verify=self._verify)
            log.info("live canary %s (%s, share %.3f)", spec.version, spec.mode, spec.share)
            self._canary_error = None
            return LiveCanary(spec, bundle)
        except Exception as exc:  # a broken canary must never break serving
            self._canary_error = str(exc)
            log.error("ignoring the live canary: %s", exc)
            return None

    # Recommendation --------------------------------------------------------
    def recommend(self, user_id: int, k: int) -> Recommendation:
        """Top-``k`` unseen items for ``user_id``.

        Args:
            user_id (int): external user id.
            k (int): number of items wanted (at least 1). Fewer come back only when
                the user has seen nearly the whole catalog.

        Returns:
            Recommendation: items best first, the index, model and ranker versions
            used, the variant (champion, or the live canary's challenger), and flags
            for re-ranking, the popularity fallback and degraded sources.

        Raises:
            NoPublishedIndex: no usable index is published.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        bundle = self.refresh()
        canary = self.refresh_canary()
        spec = canary.spec if canary is not None else None
        if spec is not None and spec.mode == "split" and in_canary(user_id, spec.share, spec.version):
            answer = self._answer(canary.bundle, user_id, k, CHALLENGER)
            self._observe(canary.bundle, answer)
            return answer
        answer = self._answer(bundle, user_id, k, CHAMPION)
        self._observe(bundle, answer)
        if spec is not None and spec.mode == "shadow":
            self._shadow(canary.bundle, answer, user_id, k)
        return answer

    def similar(self, item_id: int, k: int) -> SimilarItems:
        """The ``k`` items whose embeddings have the largest inner product with ``item_id``'s.

        Raises:
            UnknownItem: the served index does not contain ``item_id``.
            NoPublishedIndex: no usable index is published.
        """
        from serving.index import search

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        bundle = self.refresh()
        row = bundle.item_row(item_id)
        if row is None or bundle.item_emb is None:
            raise UnknownItem(f"item {item_id} is not in index {bundle.version}")
        scores, positions = search(bundle.index, bundle.item_emb[row], min(k + 1, int(bundle.index.ntotal)))
        items = [
            ScoredItem(item_id=int(bundle.item_ids[p]), score=float(sc))
            for sc, p in zip(scores[0], positions[0])
            if p >= 0 and p != row
        ][:k]
        return SimilarItems(
            item_id=int(item_id), items=items, index_version=bundle.version, model_version=bundle.model_version
        )

    def _observe(self, bundle: Bundle, answer: Recommendation) -> None:
        if self._metrics is not None and answer.items:
            popularity = bundle.popularity_of([item.item_id for item in answer.items])
            self._metrics.observe_served(answer.variant, float(popularity.mean()), answer)

    def _shadow(self, bundle: Bundle, served: Recommendation, user_id: int, k: int) -> None:
        """Answer the request with the shadow challenger too; log and observe, never serve it."""
        try:
            shadow = self._answer(bundle, user_id, k, CHALLENGER)
        except Exception:  # the shadow must never fail the served request
            log.warning("shadow canary %s failed for user %s", bundle.version, user_id, exc_info=True)
            return
        mine = [item.item_id for item in shadow.items]
        theirs = [item.item_id for item in served.items]
        overlap = len(set(mine) & set(theirs)) / max(len(theirs), 1)
        if self._metrics is not None:
            self._metrics.observe_shadow(overlap, float(bundle.popularity_of(mine).mean()) if mine else None)
        shadow_log.info(
            json.dumps(
                {
                    "user_id": int(user_id),
                    "k": k,
                    "overlap": round(overlap, 4),
                    "champion": {"index_version": served.index_version, "items": theirs, "reranked": served.reranked},
                    "challenger": {"index_version": shadow.index_version, "items": mine, "reranked": shadow.reranked},
                }
            )
        )

    def _answer(self, bundle: Bundle, user_id: int, k: int, variant: str) -> Recommendation:
        """One bundle's answer (retriever, then its ranker when it has one) for one user."""
        degraded: list[str] = []
        exclude = self._exclusions(bundle, user_id, degraded)
        row = bundle.user_row(user_id)
        reranked = False
        if row is None:
            items, skipped = _scored(*_popular_unseen(bundle, exclude, k))
            fallback_reason: str | None = UNKNOWN_USER
        elif self._ranker_features_fn is None or bundle.ranker is None:
            items, skipped = _scored(*_retrieve_unseen(bundle, row, exclude, k))
            fallback_reason = None
        else:
            ids, scores, skipped = _retrieve_unseen(bundle, row, exclude, max(k, self._rerank_candidates))
            reranked_items = self._rerank(bundle, user_id, ids, scores, k, degraded)
            reranked = reranked_items is not None
            if reranked_items is not None:
                items = reranked_items
            else:  # exactly the retrieval-only answer, ``excluded`` included
                items, skipped = _scored(*_retrieve_unseen(bundle, row, exclude, k))
            fallback_reason = None
        return Recommendation(
            user_id=user_id,
            items=items,
            index_version=bundle.version,
            model_version=bundle.model_version,
            ranker_version=bundle.ranker_version,
            variant=variant,
            reranked=reranked,
            fallback=fallback_reason is not None,
            fallback_reason=fallback_reason,
            excluded=skipped,
            degraded=degraded,
        )

    def rerank_scores(
        self, user_id: int, item_ids: Sequence[int], retrieval_scores: Sequence[float] | np.ndarray
    ) -> np.ndarray:
        """The current bundle's ranker probabilities for ``user_id`` and ``item_ids``.

        Exactly what :meth:`recommend` sorts by: the online features of the rows from
        ``ranker_features_fn`` plus ``retrieval_score``, encoded and scored by the ranker.
        Unlike :meth:`recommend`, failures are raised.

        Args:
            user_id (int): external user id.
            item_ids (Sequence[int]): candidate item ids.
            retrieval_scores (Sequence[float]): the retriever's inner product of the user
                with each candidate, in the same order.

        Returns:
            np.ndarray: float32 click probabilities, one per item, in input order.

        Raises:
            NoPublishedIndex: no usable index is published.
            RuntimeError: the bundle has no ranker or no features function is set.
        """
        bundle = self.refresh()
        if bundle.ranker is None or self._ranker_features_fn is None:
            raise RuntimeError(f"index {bundle.version} has no ranker, or no ranker_features_fn was given")
        return _ranker_probabilities(bundle, self._ranker_features_fn, user_id, list(item_ids), retrieval_scores)

    def _rerank(
        self, bundle: Bundle, user_id: int, ids: list[int], scores: list[float], k: int, degraded: list[str]
    ) -> list[ScoredItem] | None:
        """The best ``k`` candidates by ranker probability; ``None`` (degraded) on failure."""
        if not ids:
            return []
        if self._is_down(RANKER_FEATURES):
            degraded.append(RANKER_FEATURES)
            return None
        try:
            probabilities = _ranker_probabilities(bundle, self._ranker_features_fn, user_id, ids, scores)
        except Exception:  # optional stage: answer in retrieval order, never fail the request
            self._mark_down(RANKER_FEATURES)
            degraded.append(RANKER_FEATURES)
            return None
        order = np.argsort(-probabilities, kind="stable")[:k]  # ties keep retrieval order
        return [ScoredItem(item_id=ids[i], score=float(probabilities[i])) for i in order]

    def _exclusions(self, bundle: Bundle, user_id: int, degraded: list[str]) -> np.ndarray:
        """Item ids the user already interacted with (bundle history + optional recent)."""
        seen = bundle.seen.items_for(user_id)
        if self._recent_items_fn is None:
            return seen
        if self._is_down(RECENT_ITEMS):
            degraded.append(RECENT_ITEMS)
            return seen
        try:
            recent = self._recent_items_fn([int(user_id)]).get(int(user_id)) or []
            recent_arr = np.fromiter((int(i) for i in recent), dtype=np.int64)
        except Exception:  # optional source: degrade, never fail the request
            self._mark_down(RECENT_ITEMS)
            degraded.append(RECENT_ITEMS)
            return seen
        return np.union1d(seen, recent_arr) if recent_arr.size else seen

    # Optional sources ------------------------------------------------------
    def _is_down(self, source: str) -> bool:
        """Whether ``source`` failed less than ``recent_items_retry_s`` seconds ago."""
        return time.monotonic() < self._down_until.get(source, 0.0)

    def _mark_down(self, source: str) -> None:
        """Log the current exception and skip ``source`` for the retry period."""
        log.warning("%s unavailable (skipping it for %.0f s)", source, self._retry_s, exc_info=True)
        self._down_until[source] = time.monotonic() + self._retry_s


def _ranker_probabilities(
    bundle: Bundle,
    features_fn: RankerFeaturesFn,
    user_id: int,
    item_ids: list[int],
    retrieval_scores: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Ranker probabilities of (user, item) rows: online features + retrieval score -> BST.

    Raises:
        ValueError: if the features do not come back one row per item, in order, or
            the ranker returns non-finite probabilities (or is in training mode).
    """
    from training import bst

    model, vocab, _ = bundle.ranker
    item_ids = [int(i) for i in item_ids]
    scores = np.asarray(retrieval_scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(item_ids):
        raise ValueError(f"{len(scores)} retrieval scores for {len(item_ids)} items")
    features = features_fn(int(user_id), item_ids)
    scorer = bundle.ranker_scorer if bundle.ranker_scorer is not None else bst.RequestScorer(model, trace=False)
    if isinstance(features, bst.CandidateFeatures):  # one history for all rows: the fast path
        if features.user_id != int(user_id) or features.item_ids.tolist() != item_ids:
            raise ValueError("ranker features must come back for the user's candidates, in candidate order")
        probabilities = scorer.shared(bst.encode_candidates(features, scores, vocab, model.seq_len))
    else:
        if len(features) != len(item_ids) or features[bst.ITEM_ID].astype(np.int64).tolist() != item_ids:
            raise ValueError("ranker features must come back one row per candidate, in candidate order")
        probabilities = scorer(bst.encode(features.assign(**{bst.RETRIEVAL_SCORE: scores}), vocab, model.seq_len))
    if probabilities.shape != (len(item_ids),) or not np.isfinite(probabilities).all():
        raise ValueError("the ranker returned non-finite or misshapen probabilities")
    return probabilities


def _retrieve_unseen(bundle: Bundle, row: int, exclude: np.ndarray, k: int) -> tuple[list[int], list[float], int]:
    """FAISS top candidates for a known user, minus excluded items, best ``k`` kept (:func:`_take_unseen`)."""
    from serving.index import search

    fetch = min(k + len(exclude), int(bundle.index.ntotal))
    scores, positions = search(bundle.index, bundle.user_emb[row], fetch)
    valid = positions[0] >= 0
    ids = bundle.item_ids[positions[0][valid]]
    return _take_unseen(ids.tolist(), scores[0][valid].tolist(), exclude, k)


def _popular_unseen(bundle: Bundle, exclude: np.ndarray, k: int) -> tuple[list[int], list[float], int]:
    """The most popular items the user has not seen (cold-start fallback, :func:`_take_unseen`)."""
    n = len(bundle.popular)
    head = min(n, k + len(exclude))  # the best k unseen lie within the first k + |exclude|
    scores = (1.0 - np.arange(head) / max(n, 1)).tolist()
    return _take_unseen(bundle.popular[:head].tolist(), scores, exclude, k)


def _take_unseen(
    ids: list[int], scores: list[float], exclude: np.ndarray, k: int
) -> tuple[list[int], list[float], int]:
    """Walk ranked candidates, skipping excluded and repeated ids, until ``k`` are kept.

    Returns:
        tuple[list[int], list[float], int]: the kept ids and their scores, and how many
        candidates were skipped because they were excluded.
    """
    banned = set(exclude.tolist())
    kept: list[int] = []
    kept_scores: list[float] = []
    taken: set[int] = set()
    skipped = 0
    for item_id, score in zip(ids, scores):
        if len(kept) == k:
            break
        if item_id in banned:
            skipped += 1
        elif item_id not in taken:
            taken.add(item_id)
            kept.append(item_id)
            kept_scores.append(float(score))
    return kept, kept_scores, skipped


def _scored(ids: list[int], scores: list[float], skipped: int) -> tuple[list[ScoredItem], int]:
    """The response items of :func:`_take_unseen`'s answer, and its skipped count."""
    return [ScoredItem(item_id=i, score=s) for i, s in zip(ids, scores)], skipped
