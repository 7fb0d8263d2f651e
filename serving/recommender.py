"""The in-process recommender: one request's answer from the current bundle, with hot swaps.

Per request the recommender

1. takes the bundle ``CURRENT`` names (and the live canary's) from
   :class:`serving.swap.LiveBundles`, which notices a newly published version with one
   ``stat`` and swaps to it without any request seeing a mix;
2. collects what the user already saw: the bundle's seen set plus, optionally, recent
   items from an injected ``recent_items_fn`` (the Feast online store); if that source
   fails the request continues without it and says so in ``degraded``;
3. for a user the model knows, searches the FAISS index for ``k + |seen|`` candidates
   (enough to fill ``k`` after exclusion) and keeps the best ``k`` unseen ones; for an
   unknown user, returns the most popular unseen items flagged as a fallback
   (:mod:`serving.candidates`);
4. when the bundle carries a BST ranker and a ``ranker_features_fn`` is given (the
   Feast online store), retrieval keeps ``rerank_candidates`` unseen items instead, the
   ranker scores them from their features plus the retrieval score, and the best ``k``
   by click probability are returned. If the features or the ranker fail, the request
   is answered in retrieval order and says so in ``degraded``.

**Live canary.** When the ``CANARY`` file names a published challenger version
(:class:`serving.layout.CanarySpec`), the recommender loads it next to ``CURRENT``. In
``split`` mode a stable share of users (by a hash of the user id salted with the canary's
version, :func:`in_canary`) is answered by the challenger pair and the response says
``variant: challenger``; in ``shadow`` mode every request is also answered by the
challenger, which is logged (logger ``graphrec.shadow``, one JSON line) and observed
(overlap with the served list) but never served. A canary that fails to load is
ignored: everybody gets the champion.

**Optional sources.** A failing optional source (recent items, ranker features, the
ranker) degrades the request that met the failure, never fails it. A failure of the
store itself opens the source's breaker: it is skipped for ``recent_items_retry_s``
seconds, so an unreachable store does not add its timeout to every request. A failure
caused by one request's input never opens it: before opening, the source is probed once
with a known-good input (another user the bundle knows and, for the ranker, a few popular
items); if the probe succeeds, only that request is degraded (:mod:`serving.sources`).

A version that fails verification is refused: the recommender keeps serving the
bundle it has; a recommender that has none yet serves the newest older version that
verifies; with none, it raises :class:`serving.swap.NoPublishedIndex` (HTTP 503).
:attr:`Recommender.state` says which version is refused and why.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from graphrec.settings import Settings
from serving.bundle import Bundle
from serving.candidates import (
    RankerFeaturesFn,
    popular_unseen,
    ranker_probabilities,
    retrieve_unseen,
    scored,
)
from serving.index import search, set_search_threads
from serving.schemas import Recommendation, ScoredItem, SimilarItems
from serving.sources import RecentItemsFn, SourceBreakers, ranker_probe, read_recent_items, recent_items_probe
from serving.swap import LiveBundles, LiveCanary, ServingState

log = logging.getLogger(__name__)
shadow_log = logging.getLogger("graphrec.shadow")


class ServiceObserver(Protocol):
    """What the recommender reports to a metrics sink (:class:`serving.metrics.ServiceMetrics`)."""

    def observe_served(self, variant: str, popularity: float, answer: Recommendation) -> None: ...

    def observe_shadow(self, overlap: float, popularity: float | None) -> None: ...


CHAMPION = "champion"
CHALLENGER = "challenger"
UNKNOWN_USER = "unknown_user"
RECENT_ITEMS = "recent_items"
RANKER_FEATURES = "ranker_features"


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


class Recommender:
    """Serve top-k recommendations from the currently published index version.

    Args:
        settings (Settings): installation settings (``indexes_dir``).
        recent_items_fn (RecentItemsFn | None): optional extra source of items to
            exclude (for example the Feast online store's recent items). Failures are
            logged and reported in ``Recommendation.degraded``, never raised.
        verify (bool): verify checksums when loading a version (default True).
        search_threads (int | None): FAISS OpenMP threads for this process; 1 suits
            one-query-per-request serving (:func:`serving.index.set_search_threads`).
            ``None`` leaves it unchanged.
        recent_items_retry_s (float): after the store behind an optional source
            (``recent_items_fn``, ``ranker_features_fn`` or the ranker itself) fails,
            skip the source (and report it as degraded) for this many seconds, so an
            unreachable store does not add its timeout to every request. A failure that
            a probe with a known-good input shows to be the request's own does not
            pause the source (:class:`serving.sources.SourceBreakers`).
        ranker_features_fn (RankerFeaturesFn | None): online features of (user,
            candidate) rows for the bundle's BST ranker, e.g.
            ``features.online.OnlineFeatures(settings)``.
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
        self._recent_items_fn = recent_items_fn
        self._ranker_features_fn = ranker_features_fn
        self._rerank_candidates = rerank_candidates
        self._ranker_threads = ranker_threads
        self._breakers = SourceBreakers(recent_items_retry_s)
        self._metrics = metrics
        self._live = LiveBundles(
            settings.indexes_dir, verify=verify, background_swap=background_swap, on_load=self._on_load
        )
        if search_threads is not None:
            set_search_threads(search_threads)

    # Bundles (serving.swap) --------------------------------------------------
    @property
    def bundle(self) -> Bundle | None:
        """The bundle in use right now (no refresh), or ``None`` before the first load."""
        return self._live.bundle

    def refresh(self) -> Bundle:
        """The bundle to use, loading a newly published version if ``CURRENT`` moved.

        Raises:
            NoPublishedIndex: nothing is published, or the current version is unusable
                and no earlier bundle is loaded (:meth:`serving.swap.LiveBundles.refresh`).
        """
        return self._live.refresh()

    @property
    def state(self) -> ServingState:
        """What ``CURRENT`` names next to what is served, and why they differ (:class:`ServingState`)."""
        return self._live.state

    @property
    def canary(self) -> LiveCanary | None:
        """The live canary being served (no refresh), or ``None``."""
        return self._live.canary

    @property
    def canary_error(self) -> str | None:
        """Why the named canary is not served (it failed to load), or ``None``."""
        return self._live.canary_error

    def refresh_canary(self) -> LiveCanary | None:
        """The live canary to use, (re)loaded when the ``CANARY`` file changed; never raises."""
        return self._live.refresh_canary()

    def _on_load(self, bundle: Bundle) -> None:
        """Set torch's thread count when the first bundle with a ranker arrives."""
        if bundle.ranker is not None and self._ranker_threads is not None:
            import torch  # lazy: torch is already imported by the ranker's loading; retrieval-only stays light

            torch.set_num_threads(self._ranker_threads)

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
            items, skipped = scored(*popular_unseen(bundle, exclude, k))
            fallback_reason: str | None = UNKNOWN_USER
        elif self._ranker_features_fn is None or bundle.ranker is None:
            items, skipped = scored(*retrieve_unseen(bundle, row, exclude, k))
            fallback_reason = None
        else:
            ids, scores, skipped = retrieve_unseen(bundle, row, exclude, max(k, self._rerank_candidates))
            reranked_items = self._rerank(bundle, user_id, ids, scores, k, degraded)
            reranked = reranked_items is not None
            if reranked_items is not None:
                items = reranked_items
            else:  # exactly the retrieval-only answer, ``excluded`` included
                items, skipped = scored(*retrieve_unseen(bundle, row, exclude, k))
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
        return ranker_probabilities(bundle, self._ranker_features_fn, user_id, list(item_ids), retrieval_scores)

    def _rerank(
        self, bundle: Bundle, user_id: int, ids: list[int], scores: list[float], k: int, degraded: list[str]
    ) -> list[ScoredItem] | None:
        """The best ``k`` candidates by ranker probability; ``None`` (degraded) on failure."""
        if not ids:
            return []
        if self._breakers.is_open(RANKER_FEATURES):
            degraded.append(RANKER_FEATURES)
            return None
        try:
            probabilities = ranker_probabilities(bundle, self._ranker_features_fn, user_id, ids, scores)
        except Exception as exc:  # optional stage: answer in retrieval order, never fail the request
            probe = ranker_probe(self._ranker_features_fn, bundle, user_id)
            self._breakers.failed(RANKER_FEATURES, exc, f"user {user_id}", probe)
            degraded.append(RANKER_FEATURES)
            return None
        order = np.argsort(-probabilities, kind="stable")[:k]  # ties keep retrieval order
        return [ScoredItem(item_id=ids[i], score=float(probabilities[i])) for i in order]

    def _exclusions(self, bundle: Bundle, user_id: int, degraded: list[str]) -> np.ndarray:
        """Item ids the user already interacted with (bundle history + optional recent)."""
        seen = bundle.seen.items_for(user_id)
        if self._recent_items_fn is None:
            return seen
        if self._breakers.is_open(RECENT_ITEMS):
            degraded.append(RECENT_ITEMS)
            return seen
        try:
            recent_arr = read_recent_items(self._recent_items_fn, user_id)
        except Exception as exc:  # optional source: degrade, never fail the request
            probe = recent_items_probe(self._recent_items_fn, bundle, user_id)
            self._breakers.failed(RECENT_ITEMS, exc, f"user {user_id}", probe)
            degraded.append(RECENT_ITEMS)
            return seen
        return np.union1d(seen, recent_arr) if recent_arr.size else seen
