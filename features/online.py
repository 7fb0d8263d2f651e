"""The one reader of the Feast online store: the ranker's features and users' recent items.

The recommendation service and the CLI both read online features through
:class:`OnlineFeatures`: its call is the recommender's ``ranker_features_fn`` (the BST
ranker's features of one user's candidates, as
:class:`features.ranker_columns.CandidateFeatures`) and its :meth:`~OnlineFeatures.recent_items`
the ``recent_items_fn`` (what a user has just seen, to exclude). The values are those
:func:`features.historical.historical_ranker_features` joins offline for the same store
state and time (a test checks there is no skew).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from features import ranker_columns as columns
from features.ranker_columns import CandidateFeatures
from features.store import RANKER_SERVICE, feature_store, reset_feature_store
from features.tables import OFFLINE_SCHEMAS, as_utc
from graphrec import contract
from graphrec.settings import Settings

Layout = list[tuple[str, str, list[str]]]
"""``[(view, entity key, [feature names])]``: the views of the ranker's feature service."""

#: Seconds a reader reuses the ranker service's resolved layout (Feast's registry TTL).
_LAYOUT_TTL_S = 60.0
_RECENT_ITEMS_REF = columns.RECENT_ITEMS.replace("__", ":", 1)
"""``user_recent_items:recent_items``: the feature :meth:`OnlineFeatures.recent_items` needs."""


def _read_online(store: Any, view: str, key: str, features: list[str], keys: list[int]) -> dict[str, np.ndarray]:
    """One online read of ``view`` for ``keys``: ``{<view>__<feature>: object array in key order}``."""
    response = store.get_online_features(
        features=[f"{view}:{f}" for f in features], entity_rows=[{key: k} for k in keys], full_feature_names=True
    ).to_dict()
    out = {}
    for feature in features:
        values = np.empty(len(keys), dtype=object)
        values[:] = response[f"{view}__{feature}"]
        out[f"{view}__{feature}"] = values
    return out


class OnlineFeatures:
    """Per-request reads of the online store: the ranker's features and recent items.

    Item-keyed views (``item_popularity``) only change when a materialization writes
    them, yet reading 100 candidates' rows is most of the online cost (~7 ms of ~8 ms on
    a Gowalla-sized SQLite store). The reader keeps every item row it has read and
    forgets them all when the view's newest materialized interval moves, which it checks
    through Feast's registry cache at most every ``check_every_s`` seconds: after a
    materialization, item values can lag by that plus the registry's ``cache_ttl_seconds``
    (60). The user's views are read on every call, in one online read (asking Feast for
    the whole service over (user, item) rows would decode the user's features once per
    candidate).

    :meth:`recent_items` reads the same user views: its read of a user is kept (per
    thread, for ``reuse_user_s`` seconds) for the same request's ranker call, so a
    re-ranked request reads the user once instead of twice.

    A failed read drops the process's cached store
    (:func:`features.store.reset_feature_store`), so the next call reconnects.

    Args:
        settings (Settings): the installation.
        check_every_s (float): how often to look for a newer materialization.
            (default: ``30.0``)
        reuse_user_s (float): how long a user's read by :meth:`recent_items` may be reused
            by the next call for that user in the same thread. ``0`` never reuses it.
            (default: ``1.0``)
    """

    def __init__(self, settings: Settings, check_every_s: float = 30.0, reuse_user_s: float = 1.0) -> None:
        self._settings = settings
        self._check_every_s = check_every_s
        self._reuse_user_s = reuse_user_s
        self._rows: dict[str, dict[int, tuple[Any, ...]]] = {}
        self._watermarks: dict[str, Any] = {}
        self._checked_at = -float("inf")
        self._store: Any = None
        self._layout: tuple[float, Layout] | None = None
        self._last_user = threading.local()

    def __call__(self, user_id: int, item_ids: list[int], now: pd.Timestamp | None = None) -> CandidateFeatures:
        """The ranker's features of ``user_id`` and each of ``item_ids`` (a ``ranker_features_fn``).

        Args:
            user_id (int): the user.
            item_ids (list[int]): the candidates; one row each, in this order.
            now (pd.Timestamp | None): the scoring time, stamped as the rows'
                ``event_timestamp``. (default: the current time)

        Returns:
            CandidateFeatures: the values; :meth:`~CandidateFeatures.to_frame` gives the
            columns of :func:`features.historical.historical_ranker_features`.

        Raises:
            ValueError: the ranker's feature service lacks one of the ranker's columns.
        """
        try:
            return self._read(user_id, item_ids, now)
        except Exception:
            self._drop_store()
            raise

    def prefetch(self, item_ids: Iterable[int], chunk: int = 4096) -> int:
        """Read and keep the item-keyed views' rows of ``item_ids`` ahead of requests.

        The service calls it at start-up with the served catalog, so its first requests do
        not read their candidates' rows one request at a time. Rows already kept are not
        read again; a later materialization still empties the cache (then rows are read
        as requests need them).

        Returns:
            int: how many item rows were read.
        """
        try:
            store = self._feast()
            layout = self._views()
            self._maybe_invalidate(store, layout)
            wanted = list(dict.fromkeys(int(i) for i in item_ids))
            return max(
                [
                    self._keep_items(store, view, key, features, wanted, chunk)
                    for view, key, features in layout
                    if key != contract.USER_ID
                ],
                default=0,
            )
        except Exception:
            self._drop_store()
            raise

    def recent_items(self, user_ids: list[int]) -> dict[int, list[int]]:
        """Each user's recent item ids, most recent last (a ``recent_items_fn``).

        Used to exclude items a user has just seen; unknown users map to ``[]``. The read
        of each user is kept for the same request's ranker call (see the class).
        """
        try:
            out = {}
            for user_id in user_ids:
                values = self._read_user(int(user_id))
                out[int(user_id)] = [int(i) for i in (values.get(columns.RECENT_ITEMS) or [])]
                self._last_user.read = (int(user_id), time.monotonic(), values)
            return out
        except Exception:
            self._drop_store()
            raise

    def user_features(self, user_id: int) -> dict[str, Any]:
        """The user-keyed features of ``user_id``, read now: ``{<view>__<feature>: value}``.

        The user-keyed views of the ranker's feature service (activity counters and the
        behaviour sequence), in one online read; an unknown user's values are ``None``.
        """
        try:
            return self._read_user(int(user_id))
        except Exception:
            self._drop_store()
            raise

    def _drop_store(self) -> None:
        self._store = None
        reset_feature_store(self._settings)  # reconnect on the next call (the store may come back)

    def _feast(self) -> Any:
        if self._store is None:
            self._store = feature_store(self._settings)
        return self._store

    def _views(self) -> Layout:
        """``[(view, entity key, [feature names])]`` of the ranker's feature service, cached.

        Resolving a feature service from Feast's registry rebuilds it from protobuf (~5 ms
        with its type checks); a request handler must not pay that per call. The layout is
        re-read after ``_LAYOUT_TTL_S`` seconds, so a newly applied service is picked up.
        """
        now = time.monotonic()
        if self._layout is None or now - self._layout[0] >= _LAYOUT_TTL_S:
            service = self._feast().get_feature_service(RANKER_SERVICE, allow_cache=True)
            layout = [
                (p.name, OFFLINE_SCHEMAS[p.name].names[0], [f.name for f in p.features])
                for p in service.feature_view_projections
            ]
            self._layout = (now, layout)
        return self._layout[1]

    def _read_user(self, user_id: int) -> dict[str, Any]:
        """``{<view>__<feature>: value}`` of the user-keyed views, in one online read."""
        features = [f"{view}:{f}" for view, key, names in self._views() if key == contract.USER_ID for f in names]
        if _RECENT_ITEMS_REF not in features:
            features.append(_RECENT_ITEMS_REF)
        response = (
            self._feast()
            .get_online_features(features=features, entity_rows=[{contract.USER_ID: user_id}], full_feature_names=True)
            .to_dict()
        )
        return {name: values[0] for name, values in response.items() if name != contract.USER_ID}

    def _user_values(self, user_id: int) -> dict[str, Any]:
        last = getattr(self._last_user, "read", None)
        self._last_user.read = None  # a read is reused by one call at most
        if last is not None and last[0] == user_id and time.monotonic() - last[1] <= self._reuse_user_s:
            return last[2]
        return self._read_user(user_id)

    def _read(self, user_id: int, item_ids: list[int], now: pd.Timestamp | None) -> CandidateFeatures:
        ids = np.asarray([int(i) for i in item_ids], dtype=np.int64)
        store = self._feast()
        stamp = as_utc(now if now is not None else pd.Timestamp.now(tz="UTC"))
        layout = self._views()
        self._maybe_invalidate(store, layout)
        user = self._user_values(int(user_id))
        items: dict[str, list[Any]] = {}
        unique = list(dict.fromkeys(ids.tolist()))
        for view, key, features in layout:
            if key == contract.USER_ID:
                continue
            self._keep_items(store, view, key, features, unique)
            rows = self._rows[view]
            table = [rows[k] for k in ids.tolist()]
            items.update({f"{view}__{f}": [row[c] for row in table] for c, f in enumerate(features)})
        absent = [
            c
            for c in (*columns.USER_COUNTERS, columns.RECENT_ITEMS, columns.RECENT_CATEGORIES, columns.RECENT_TS)
            if c not in user
        ] + [c for c in (*columns.ITEM_COUNTERS, columns.ITEM_CATEGORY) if c not in items]
        if absent and len(ids):
            raise ValueError(f"the ranker's feature service lacks {absent}")
        category = np.empty(len(ids), dtype=object)
        category[:] = items.get(columns.ITEM_CATEGORY, [None] * len(ids))
        counters = np.array([items.get(c, [None] * len(ids)) for c in columns.ITEM_COUNTERS], dtype=np.float64)
        return CandidateFeatures(
            user_id=int(user_id),
            time=stamp,
            item_ids=ids,
            user_counters=np.array([user.get(c) for c in columns.USER_COUNTERS], dtype=np.float64),
            item_counters=counters.T.reshape(len(ids), len(columns.ITEM_COUNTERS)),
            item_category=category,
            recent_items=user.get(columns.RECENT_ITEMS),
            recent_categories=user.get(columns.RECENT_CATEGORIES),
            recent_ts=user.get(columns.RECENT_TS),
        )

    def _keep_items(
        self, store: Any, view: str, key: str, features: list[str], keys: list[int], chunk: int = 4096
    ) -> int:
        """Read the rows of ``keys`` that ``view``'s cache lacks (``chunk`` per read); how many."""
        rows = self._rows.setdefault(view, {})
        missing = [k for k in keys if k not in rows]
        names = [f"{view}__{f}" for f in features]
        for start in range(0, len(missing), chunk):
            part = missing[start : start + chunk]
            fresh = _read_online(store, view, key, features, part)
            for j, k in enumerate(part):
                rows[k] = tuple(fresh[name][j] for name in names)
        return len(missing)

    def _maybe_invalidate(self, store: Any, layout: Layout) -> None:
        now = time.monotonic()
        if now - self._checked_at < self._check_every_s:
            return
        self._checked_at = now
        for view, key, _ in layout:
            if key == contract.USER_ID:
                continue
            intervals = store.get_feature_view(view, allow_registry_cache=True).materialization_intervals
            mark = (len(intervals), max((end for _, end in intervals), default=None))  # reruns add an interval
            if self._watermarks.get(view, mark) != mark:
                self._rows[view] = {}  # a new materialization: read every item again
            self._watermarks[view] = mark
