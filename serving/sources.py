"""Circuit breakers of the recommender's optional sources (recent items, ranker features).

An optional source that fails leaves the request degraded, never failed. Whether the
*next* requests skip the source too depends on whose failure it was:

* the **store's** (it is unreachable, times out, its schema is wrong): every request
  would fail the same way, so the breaker opens and the source is skipped for
  ``retry_s`` seconds, sparing each request the store's timeout;
* the **request's own input** (an id the store cannot represent, a user whose stored
  row is malformed): the next user's request would succeed, so the breaker stays closed.

:meth:`SourceBreakers.failed` tells them apart with one probe: the same source asked
again with a known-good reference input (a user the served bundle knows, not the failing
one; :func:`reference_user`). If the probe succeeds, the failure was the request's: a
one-line warning, no pause. If the probe fails too, or there is no probe, the breaker
opens. Network errors (:class:`OSError`: connection refused, timeouts) are the store's by
nature and open it without a probe, so a down store costs one timeout, not two.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from serving.bundle import Bundle
from serving.candidates import RankerFeaturesFn, ranker_probabilities

log = logging.getLogger(__name__)

#: ``recent_items_fn(user_ids) -> {user_id: [item_id, ...]}``, e.g. the ``recent_items``
#: method of ``features.online.OnlineFeatures``.
RecentItemsFn = Callable[[list[int]], Mapping[int, Iterable[int]]]

#: ``probe() -> anything``: asks a source with a known-good input; raising means the source is down.
Probe = Callable[[], object]

#: Popular items the ranker probe scores.
PROBE_ITEMS = 5


def reference_user(bundle: Bundle, avoid: int) -> int | None:
    """A user the bundle's model knows, other than ``avoid``: the probes' known-good input.

    Returns:
        int | None: the first of ``bundle.user_ids`` that is not ``avoid``; ``None`` when
        the bundle knows no other user.
    """
    for user_id in bundle.user_ids[:2].tolist():
        if user_id != avoid:
            return int(user_id)
    return None


def read_recent_items(recent_items_fn: RecentItemsFn, user_id: int) -> np.ndarray:
    """``user_id``'s recent item ids from the source, as int64 (raises what the source raises)."""
    recent = recent_items_fn([int(user_id)]).get(int(user_id)) or []
    return np.fromiter((int(i) for i in recent), dtype=np.int64)


def recent_items_probe(recent_items_fn: RecentItemsFn, bundle: Bundle, user_id: int) -> Probe | None:
    """Recent items of a reference user: succeeds when the source works for users other than ``user_id``."""
    reference = reference_user(bundle, avoid=user_id)
    return None if reference is None else lambda: read_recent_items(recent_items_fn, reference)


def ranker_probe(features_fn: RankerFeaturesFn, bundle: Bundle, user_id: int) -> Probe | None:
    """The ranker's scores of a reference user's popular candidates: features read, encoded and scored."""
    reference = reference_user(bundle, avoid=user_id)
    if reference is None:
        return None
    ids, scores = reference_candidates(bundle, reference)
    if not ids:
        return None
    return lambda: ranker_probabilities(bundle, features_fn, reference, ids, scores)


def reference_candidates(bundle: Bundle, user_id: int, n: int = PROBE_ITEMS) -> tuple[list[int], list[float]]:
    """The ``n`` most popular items in the index and their retrieval scores for ``user_id``.

    The ranker probe's candidates: items the store has rows for, scored as a request's
    would be (the inner product of user and item embeddings; 0 without them).
    """
    ids = np.asarray(bundle.popular[:n], dtype=np.int64)
    rows = bundle.item_lookup.rows_of(ids) if bundle.item_lookup is not None else np.full(len(ids), -1)
    ids, rows = ids[rows >= 0], rows[rows >= 0]
    user_row = bundle.user_row(user_id)
    if bundle.item_emb is None or user_row is None:
        return ids.tolist(), [0.0] * len(ids)
    return ids.tolist(), (bundle.item_emb[rows] @ bundle.user_emb[user_row]).astype(float).tolist()


class SourceBreakers:
    """One breaker per optional source: open for ``retry_s`` seconds after a failure of the store.

    Args:
        retry_s (float): how long an open breaker skips its source.
    """

    def __init__(self, retry_s: float) -> None:
        self._retry_s = retry_s
        self._down_until: dict[str, float] = {}  # source -> monotonic time to retry it

    def is_open(self, source: str) -> bool:
        """Whether ``source`` is being skipped (its store failed less than ``retry_s`` ago)."""
        return time.monotonic() < self._down_until.get(source, 0.0)

    def failed(self, source: str, error: BaseException, subject: str, probe: Probe | None) -> None:
        """Record that ``source`` failed for one request; open its breaker if the store is at fault.

        Args:
            source (str): the source's name, e.g. ``recent_items``.
            error (BaseException): what the request got.
            subject (str): the request's input, for the log line, e.g. ``user 7``.
            probe (Probe | None): asks the source with a known-good input; ``None`` when
                there is none (the breaker then opens).
        """
        if probe is not None and not isinstance(error, OSError):
            try:
                probe()
            except Exception:
                log.debug("%s probe failed too", source, exc_info=True)
            else:
                log.warning("%s failed for %s only (the store answers others): %r", source, subject, error)
                return
        log.warning("%s unavailable (skipping it for %.0f s): %r", source, self._retry_s, error, exc_info=error)
        self._down_until[source] = time.monotonic() + self._retry_s
