"""Materialization: the day's offline snapshots, the registry and the online store, in one step.

:func:`materialize` is what the nightly DAG's ``features`` task runs: it builds day
``ds``'s snapshots (:func:`features.snapshots.build_features`), makes the registry match
``feature_repo/`` (:func:`features.store.apply_definitions`) and loads the snapshots into
the online store, choosing per view how (:func:`_load_online`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import TYPE_CHECKING, Literal

import pandas as pd

from features.snapshots import ViewSnapshot, build_features
from features.store import apply_definitions, feature_store
from graphrec.handoff import Handoff
from graphrec.settings import Settings

if TYPE_CHECKING:  # Feast is heavy; features.store imports it where it is used.
    from feast import FeatureStore

OnlineLoad = Literal["incremental", "initial", "reloaded", "skipped"]
"""How :func:`materialize` loaded a view into the online store."""


@dataclasses.dataclass(frozen=True)
class Materialized(Handoff):
    """What :func:`materialize` did for one day: references and small numbers, for XCom.

    Args:
        ds: the partition day.
        as_of: the snapshots' ``event_timestamp`` (ISO 8601, UTC): the end of ``ds``.
        views: each view's offline snapshot (file, rows; services: its table), by name.
        online: how each view was loaded online: ``"initial"``, ``"incremental"``,
            ``"reloaded"`` (a rerun of the newest day) or ``"skipped"`` (a backfill).
        applied: the Feast objects the registry had to (re)apply, sorted by name; empty
            when it already matched ``feature_repo/``.
        seconds: wall time of each step (``build``, ``open_store``, ``apply``,
            ``materialize``).
    """

    ds: dt.date
    as_of: str
    views: dict[str, ViewSnapshot]
    online: dict[str, OnlineLoad]
    applied: list[str]
    seconds: dict[str, float]


def materialize(settings: Settings, ds: dt.date | str) -> Materialized:
    """Build day ``ds``'s offline snapshots, register the definitions, load the online store.

    Each view is loaded with ``materialize_incremental`` up to the end of ``ds``, except:

    * never materialized yet: ``materialize`` over ``[as_of - ttl, as_of]`` (the incremental
      start would be *now* - ttl, which skips a replayed or backfilled history);
    * ``ds`` already loaded (a rerun): that day's snapshot is loaded again;
    * a later day already loaded (a backfill): the online store is left alone, since it
      must hold the newest values; only the offline snapshot is rewritten.

    Returns:
        Materialized: what :func:`features.snapshots.build_features` wrote, how each view
        was loaded online, what was applied and how long each step took.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    snapshots = build_features(settings, ds)
    timings["build"] = time.perf_counter() - started

    started = time.perf_counter()
    store = feature_store(settings)
    timings["open_store"] = time.perf_counter() - started

    started = time.perf_counter()
    applied = apply_definitions(settings, store)
    timings["apply"] = time.perf_counter() - started

    started = time.perf_counter()
    online = _load_online(store, pd.Timestamp(snapshots.as_of).to_pydatetime())
    timings["materialize"] = time.perf_counter() - started
    return Materialized(
        ds=snapshots.ds,
        as_of=snapshots.as_of,
        views=snapshots.views,
        online=online,
        applied=applied["applied"],
        seconds={k: round(v, 3) for k, v in timings.items()},
    )


def _load_online(store: FeatureStore, as_of: dt.datetime) -> dict[str, OnlineLoad]:
    """Load every view's snapshots up to ``as_of`` into the online store (see :func:`materialize`)."""
    modes: dict[str, OnlineLoad] = {}
    for view in store.list_feature_views():
        last = view.most_recent_end_time
        if last is not None and last > as_of:
            modes[view.name] = "skipped"
        elif last is not None and last < as_of:
            modes[view.name] = "incremental"
        else:
            modes[view.name] = "initial" if last is None else "reloaded"
            start = as_of - view.ttl if last is None and view.ttl else as_of
            store.materialize(start_date=start, end_date=as_of, feature_views=[view.name])
    incremental = [name for name, mode in modes.items() if mode == "incremental"]
    if incremental:
        store.materialize_incremental(end_date=as_of, feature_views=incremental)
    return dict(sorted(modes.items()))
