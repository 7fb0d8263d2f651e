"""Feature tables, their Feast store, materialization and online reads.

The Feast *definitions* live in ``feature_repo/`` (declarative, no code paths); this
module is everything that runs:

* :func:`compute_feature_tables` — a pure transform from interactions and the catalog
  to one snapshot row per entity, stamped with the snapshot time ``as_of``;
* :func:`build_features` — reads the curated lake up to a day and upserts that day's
  snapshot into the offline store (one parquet file per view and day, replaced
  atomically, so a rerun replaces rather than duplicates), which Feast reads with DuckDB;
  the services profile also replaces the day's rows in PostgreSQL tables, which Feast's
  PostgreSQL offline store reads there;
* :func:`feature_store`, :func:`apply_definitions`, :func:`materialize` — thin adapters
  over Feast: open the store under ``settings.feast_dir``, register the repository's
  objects, and load the snapshot into the online store;
* :func:`historical_ranker_features` — point-in-time rows for the ranker, in one join;
* :func:`online_features`, :func:`online_recent_items` — per-request reads for serving.

Snapshot semantics: the counters of day ``ds`` (``user_activity``, ``item_popularity``)
summarise every event before ``as_of = ds + 1 day`` (00:00 UTC), so point-in-time joins
never see the future. Windows are ``[as_of - 1 day, as_of)`` and
``[as_of - 7 days, as_of)``; users are included while they have an event in the last
:data:`HISTORY_DAYS` days (their counters drop to zero before they leave, so the online
store never keeps a stale non-zero count), items while they are in the catalog.

``user_recent_items`` is an event-level log instead: for every moment of the day at which
a user acted, one row with the user's sequence right after it, stamped one microsecond
later. A point-in-time join at ``t`` thus gets the sequence of exactly the events strictly
before ``t`` (the BST ranker's training rows are the moments of users' events, and a user
often acts many times a day), and the online store holds the sequence after the user's
latest event.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import string
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from graphrec import contract, lake
from graphrec.settings import Settings

if TYPE_CHECKING:  # Feast is heavy; import it only where it is used.
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from features.ranker_columns import CandidateFeatures

USER_ACTIVITY = "user_activity"
ITEM_POPULARITY = "item_popularity"
USER_RECENT_ITEMS = "user_recent_items"
FEATURE_VIEWS = (USER_ACTIVITY, ITEM_POPULARITY, USER_RECENT_ITEMS)
RANKER_SERVICE = "ranker_features_v1"

EVENT_TIMESTAMP = "event_timestamp"
WINDOW_DAYS = 7
HISTORY_DAYS = 30
RECENT_ITEMS = 50

_TS = pa.timestamp("us", tz="UTC")
OFFLINE_SCHEMAS: dict[str, pa.Schema] = {
    USER_ACTIVITY: pa.schema(
        [
            (contract.USER_ID, pa.int64()),
            ("events_1d", pa.int64()),
            ("events_7d", pa.int64()),
            ("distinct_items_7d", pa.int64()),
            ("days_since_last_event", pa.int64()),
            (EVENT_TIMESTAMP, _TS),
        ]
    ),
    ITEM_POPULARITY: pa.schema(
        [
            (contract.ITEM_ID, pa.int64()),
            ("events_1d", pa.int64()),
            ("events_7d", pa.int64()),
            ("users_7d", pa.int64()),
            (contract.CATEGORY, pa.string()),
            (EVENT_TIMESTAMP, _TS),
        ]
    ),
    USER_RECENT_ITEMS: pa.schema(
        [
            (contract.USER_ID, pa.int64()),
            ("recent_items", pa.list_(pa.int64())),
            ("recent_categories", pa.list_(pa.string())),
            ("recent_ts", pa.list_(pa.int64())),
            (EVENT_TIMESTAMP, _TS),
        ]
    ),
}
"""Columns of each offline snapshot file; the Feast schemas in ``feature_repo/`` mirror them."""

# User features the recommendation service reads per request (one entity key: user_id).
USER_FEATURE_REFS = (
    f"{USER_ACTIVITY}:events_1d",
    f"{USER_ACTIVITY}:events_7d",
    f"{USER_ACTIVITY}:distinct_items_7d",
    f"{USER_ACTIVITY}:days_since_last_event",
    f"{USER_RECENT_ITEMS}:recent_items",
    f"{USER_RECENT_ITEMS}:recent_categories",
    f"{USER_RECENT_ITEMS}:recent_ts",
)


# Pure transforms ---------------------------------------------------------------------------
def snapshot_time(ds: dt.date | str) -> pd.Timestamp:
    """The ``event_timestamp`` of day ``ds``'s snapshot: the end of that UTC day."""
    return lake.day_bounds(lake.parse_ds(ds))[1]


def compute_feature_tables(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    history_days: int = HISTORY_DAYS,
    max_recent: int = RECENT_ITEMS,
) -> dict[str, pd.DataFrame]:
    """Snapshot the three feature views as of one moment.

    Only events in ``[as_of - history_days, as_of)`` count, so passing more history than
    needed changes nothing. Ties in ``event_ts`` keep the input order.

    Args:
        interactions (pd.DataFrame): events with ``user_id``, ``item_id``, ``event_ts``.
        catalog (pd.DataFrame): items with ``item_id`` and ``category`` (``first_seen_ts``
            optional: items first seen at or after ``as_of`` are left out).
        as_of (pd.Timestamp): the snapshot time, stamped as ``event_timestamp``.
        history_days (int, optional): look-back of the user views. (default: ``30``)
        max_recent (int, optional): length of ``recent_items``. (default: ``50``)

    Returns:
        dict[str, pd.DataFrame]: ``{view name: frame}`` with the columns of
        :data:`OFFLINE_SCHEMAS`, one row per entity, sorted by entity id.
    """
    as_of = _utc(as_of)
    events = _events_in(interactions, as_of - pd.Timedelta(days=history_days), as_of)
    items = _catalog_until(catalog, as_of)
    category = items.set_index(contract.ITEM_ID)[contract.CATEGORY]
    tables = {
        USER_ACTIVITY: _user_activity(events, as_of),
        ITEM_POPULARITY: _item_popularity(events, items, as_of),
    }
    for name, frame in tables.items():
        frame[EVENT_TIMESTAMP] = pd.Series(as_of, index=frame.index, dtype="datetime64[us, UTC]")
        tables[name] = frame[OFFLINE_SCHEMAS[name].names].reset_index(drop=True)
    day_start = as_of - pd.Timedelta(days=1)
    sequences = _events_in(interactions, day_start - pd.Timedelta(days=history_days), as_of)
    recent = _user_recent_items(sequences, category, max_recent, day_start, history_days)
    tables[USER_RECENT_ITEMS] = recent[OFFLINE_SCHEMAS[USER_RECENT_ITEMS].names].reset_index(drop=True)
    return tables


def _utc(ts: pd.Timestamp | dt.datetime | str) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _events_in(interactions: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    cols = [contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS]
    if interactions.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(cols, ("int64", "int64", "datetime64[us, UTC]"))})
    events = interactions[cols]
    ts = events[contract.EVENT_TS]
    events = events[(ts >= start) & (ts < end)]
    return events.sort_values(contract.EVENT_TS, kind="stable", ignore_index=True)


def _catalog_until(catalog: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    if catalog.empty:
        return pd.DataFrame({contract.ITEM_ID: pd.Series(dtype="int64"), contract.CATEGORY: pd.Series(dtype=str)})
    if contract.FIRST_SEEN_TS in catalog:
        catalog = catalog[catalog[contract.FIRST_SEEN_TS] < as_of]
    return catalog.drop_duplicates(contract.ITEM_ID, keep="last")[[contract.ITEM_ID, contract.CATEGORY]]


def _window(events: pd.DataFrame, as_of: pd.Timestamp, days: int) -> pd.DataFrame:
    return events[events[contract.EVENT_TS] >= as_of - pd.Timedelta(days=days)]


def _counts(frame: pd.DataFrame, key: str, index: pd.Index, distinct: str | None = None) -> np.ndarray:
    grouped = frame.groupby(key)
    counts = grouped[distinct].nunique() if distinct else grouped.size()
    return counts.reindex(index, fill_value=0).to_numpy(dtype=np.int64)


def _user_activity(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    users = pd.Index(np.unique(events[contract.USER_ID].to_numpy(dtype=np.int64)), name=contract.USER_ID)
    last_day, last_week = _window(events, as_of, 1), _window(events, as_of, WINDOW_DAYS)
    last_ts = events.groupby(contract.USER_ID)[contract.EVENT_TS].max().reindex(users)
    return pd.DataFrame(
        {
            contract.USER_ID: users.to_numpy(),
            "events_1d": _counts(last_day, contract.USER_ID, users),
            "events_7d": _counts(last_week, contract.USER_ID, users),
            "distinct_items_7d": _counts(last_week, contract.USER_ID, users, distinct=contract.ITEM_ID),
            "days_since_last_event": ((as_of - last_ts) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64),
        }
    )


def _item_popularity(events: pd.DataFrame, items: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    # Catalog items with no events get zeros; items with events but no catalog row still count.
    ids = np.union1d(items[contract.ITEM_ID].to_numpy(np.int64), events[contract.ITEM_ID].to_numpy(np.int64))
    index = pd.Index(ids, name=contract.ITEM_ID)
    last_day, last_week = _window(events, as_of, 1), _window(events, as_of, WINDOW_DAYS)
    category = items.set_index(contract.ITEM_ID)[contract.CATEGORY].reindex(index).fillna(contract.UNKNOWN_CATEGORY)
    return pd.DataFrame(
        {
            contract.ITEM_ID: ids,
            "events_1d": _counts(last_day, contract.ITEM_ID, index),
            "events_7d": _counts(last_week, contract.ITEM_ID, index),
            "users_7d": _counts(last_week, contract.ITEM_ID, index, distinct=contract.USER_ID),
            contract.CATEGORY: category.astype(str).to_numpy(),
        }
    )


def _user_recent_items(
    events: pd.DataFrame, category: pd.Series, max_recent: int, day_start: pd.Timestamp, history_days: int
) -> pd.DataFrame:
    """The sequence log: one row per user and distinct event time in ``[day_start, as_of)``.

    Each row is the user's sequence *right after* that moment (their last ``max_recent``
    events within ``history_days``, most recent last, events at that very moment included),
    stamped one microsecond after it, so a point-in-time join at time ``t`` sees exactly
    the events strictly before ``t``. ``events`` is time-sorted (groupby keeps row order).
    """
    columns = {contract.USER_ID: [], "recent_items": [], "recent_categories": [], "recent_ts": [], EVENT_TIMESTAMP: []}
    lookup = category.to_dict()
    window = pd.Timedelta(days=history_days).value // 1_000
    today = events[events[contract.EVENT_TS] >= day_start]
    users = set(today[contract.USER_ID].unique().tolist())
    for user, group in events[events[contract.USER_ID].isin(users)].groupby(contract.USER_ID, sort=True):
        items = group[contract.ITEM_ID].to_numpy(np.int64)
        micros = group[contract.EVENT_TS].astype("datetime64[us, UTC]").astype("int64").to_numpy()
        # The last event of each distinct moment of the day closes that moment's sequence.
        last_of_moment = np.flatnonzero((np.append(micros[1:], -1) != micros) & (micros >= day_start.value // 1_000))
        for end in last_of_moment:
            first = max(int(np.searchsorted(micros, micros[end] - window, side="right")), end + 1 - max_recent)
            seq = items[first : end + 1].tolist()
            columns[contract.USER_ID].append(int(user))
            columns["recent_items"].append(seq)
            columns["recent_categories"].append([lookup.get(i, contract.UNKNOWN_CATEGORY) for i in seq])
            columns["recent_ts"].append((micros[first : end + 1] // 1_000_000).tolist())
            columns[EVENT_TIMESTAMP].append(int(micros[end]) + 1)
    frame = pd.DataFrame({k: v for k, v in columns.items() if k != EVENT_TIMESTAMP})
    frame[contract.USER_ID] = frame[contract.USER_ID].astype(np.int64)
    frame[EVENT_TIMESTAMP] = pd.to_datetime(np.asarray(columns[EVENT_TIMESTAMP], dtype=np.int64), unit="us", utc=True)
    return frame


# Offline store (parquet snapshots under settings.feast_dir; services: PostgreSQL tables) ---
def offline_file(settings: Settings, view: str, ds: dt.date | str) -> Path:
    """Where day ``ds``'s snapshot of ``view`` lives (matches the FileSource paths)."""
    return settings.feast_dir / "offline" / view / f"{lake.parse_ds(ds).isoformat()}.parquet"


def offline_table(view: str) -> str:
    """services: the PostgreSQL table (in the Feast database) holding every snapshot of ``view``."""
    return f"offline_{view}"


_PG_TYPES = {
    "int64": "BIGINT",
    "string": "TEXT",
    "list<item: int64>": "BIGINT[]",
    "list<item: string>": "TEXT[]",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
}
"""PostgreSQL column types of the :data:`OFFLINE_SCHEMAS` Arrow types."""


def build_features(settings: Settings, ds: dt.date | str) -> dict[str, Any]:
    """Compute day ``ds``'s snapshots from the curated lake and upsert them offline.

    Reads the last :data:`HISTORY_DAYS` curated partitions up to ``ds`` and the catalog up
    to ``ds``. Each view's snapshot replaces the file of that day atomically, so rerunning
    a day replaces its rows and never duplicates them. In the services profile the day's
    rows of every view also replace those in the PostgreSQL tables that Feast's offline
    store reads there, in one transaction (:func:`_write_postgres_snapshots`).

    Args:
        settings (Settings): the installation.
        ds (date | str): the partition day; it must be in ``curated/``.

    Returns:
        dict: ``{"ds", "as_of", "views": {name: {"path", "rows"}}}`` (JSON-able); services:
        each view also names its ``"table"``.

    Raises:
        FileNotFoundError: when ``curated/ds=<ds>`` does not exist.
    """
    day = lake.parse_ds(ds)
    if not (settings.curated_dir / lake.partition_name(day)).is_dir():
        raise FileNotFoundError(f"no curated partition {lake.partition_name(day)} in {settings.curated_dir}")
    first = day - dt.timedelta(days=HISTORY_DAYS)  # the sequence log looks 30 days back from each event
    days = [d for d in lake.list_partitions(settings.curated_dir) if first <= d <= day]
    interactions = lake.read_curated(settings.curated_dir, days)
    catalog = lake.read_catalog(settings.curated_dir, until=day)
    as_of = snapshot_time(day)
    tables = compute_feature_tables(interactions, catalog, as_of)
    views = {}
    for name, frame in tables.items():
        path = offline_file(settings, name, day)
        lake.atomic_write_parquet(path, frame, schema=OFFLINE_SCHEMAS[name])
        views[name] = {"path": str(path), "rows": len(frame)}
    if settings.services:
        _write_postgres_snapshots(settings, tables, as_of)
        for name in views:
            views[name]["table"] = offline_table(name)
    return {"ds": day.isoformat(), "as_of": as_of.isoformat(), "views": views}


def _write_postgres_snapshots(settings: Settings, tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> None:
    """Replace one day's rows of every view's PostgreSQL table, all in one transaction.

    A day's rows are those stamped in ``(as_of - 1 day, as_of]``: the counters at
    ``as_of``, the sequence log one microsecond after each event of the day. Readers see
    the day before or after the rerun, never a mix; an advisory lock serializes writers
    (two days built at once would otherwise race to create the tables).
    """
    import psycopg
    from psycopg import sql

    config = settings.feast_offline_store
    with (
        psycopg.connect(
            host=config["host"],
            port=config["port"],
            dbname=config["database"],
            user=config["user"],
            password=config["password"],
            sslmode=config["sslmode"],
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('graphrec offline snapshots'))")
        for view, frame in tables.items():
            schema = OFFLINE_SCHEMAS[view]
            table, key = sql.Identifier(offline_table(view)), sql.Identifier(schema.names[0])
            columns = [sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(_PG_TYPES[str(f.type)])) for f in schema]
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, sql.SQL(", ").join(columns)))
            cur.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, {})").format(
                    sql.Identifier(f"{offline_table(view)}_key_time"), table, key, sql.Identifier(EVENT_TIMESTAMP)
                )
            )
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {} > %s AND {} <= %s").format(
                    table, sql.Identifier(EVENT_TIMESTAMP), sql.Identifier(EVENT_TIMESTAMP)
                ),
                (as_of - pd.Timedelta(days=1), as_of),
            )
            names = sql.SQL(", ").join(sql.Identifier(n) for n in schema.names)
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, names)) as copy:
                for row in pa.Table.from_pandas(frame, schema=schema, preserve_index=False).to_pylist():
                    copy.write_row([row[n] for n in schema.names])


def read_offline(settings: Settings, view: str) -> pd.DataFrame:
    """All snapshots of one view in the offline store (empty frame when none)."""
    directory = settings.feast_dir / "offline" / view
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        return OFFLINE_SCHEMAS[view].empty_table().to_pandas()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


# Feast adapters ----------------------------------------------------------------------------
_STORES: dict[tuple[str, str], FeatureStore] = {}
_STORES_LOCK = threading.Lock()


def repo_config(settings: Settings) -> RepoConfig:
    """``feature_repo/feature_store.yaml`` resolved for ``settings`` as a Feast ``RepoConfig``.

    Feast's own loader expands environment variables; here ``${GRAPHREC_HOME}`` comes from
    ``settings`` first (other variables still from the environment), and ``repo_path`` is
    ``settings.feast_dir`` (the offline sources' paths are made absolute under it when
    the definitions are loaded: see :func:`load_definitions`).
    The registry path, the online and the offline store come from ``settings`` (the
    profile): the YAML file's values are the embedded ones, for the ``feast`` CLI.
    """
    import yaml
    from feast.repo_config import RepoConfig

    text = (settings.feature_repo / "feature_store.yaml").read_text()
    text = os.path.expandvars(string.Template(text).safe_substitute(GRAPHREC_HOME=str(settings.root)))
    raw = yaml.safe_load(text)
    # Where the registry and the stores live is the profile's business (settings): SQLite
    # and parquet files under home (embedded) or PostgreSQL and Redis (services).
    raw["registry"] = {**raw.get("registry", {}), "path": settings.feast_registry_path}
    raw["online_store"] = settings.feast_online_store
    raw["offline_store"] = settings.feast_offline_store
    config = RepoConfig(**raw)
    config.repo_path = settings.feast_dir
    return config


def feature_store(settings: Settings) -> FeatureStore:
    """The Feast store of this installation, created once per process and reused.

    Registry, online store and offline snapshots all live under ``settings.feast_dir``.
    The object is cached (per feast directory and repository) because opening it costs
    far more than a lookup: a request handler can call this on every request.
    """
    from feast import FeatureStore

    key = (str(settings.feast_dir), str(settings.feature_repo))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            settings.feast_dir.mkdir(parents=True, exist_ok=True)
            store = FeatureStore(repo_path=str(settings.feast_dir), config=repo_config(settings))
            _STORES[key] = store
        return store


def reset_feature_store(settings: Settings) -> None:
    """Forget this process's cached store, so the next :func:`feature_store` opens a new one.

    A store keeps its online-store connection for the life of the process; after the
    online store failed (a server restarted, a file replaced), reading through a fresh
    store reconnects instead of failing forever on the old connection.
    """
    with _STORES_LOCK:
        _STORES.pop((str(settings.feast_dir), str(settings.feature_repo)), None)


def load_definitions(settings: Settings) -> list[Any]:
    """Import the repository's definition files by path and collect their Feast objects.

    Files follow ``feast apply``'s rules (every ``*.py`` but ``__init__.py`` and what
    ``.feastignore`` lists); nothing is added to ``sys.modules`` or ``sys.path``.

    A ``FileSource`` path that is relative (the repository declares them relative to the
    Feast directory) is made absolute under ``settings.feast_dir``, so the registry holds
    absolute paths: the DuckDB offline store reads a path as it is, relative to the
    working directory of whichever process reads it (a training task, ``materialize``).
    In the services profile each feature view reads its PostgreSQL table instead
    (:func:`_postgres_sources`).
    """
    from feast import Entity, FeatureService, FeatureView, Project
    from feast.data_source import DataSource
    from feast.infra.offline_stores.file_source import FileSource
    from feast.repo_operations import get_repo_files

    kinds = (Project, Entity, DataSource, FeatureView, FeatureService)
    objects: list[Any] = []
    for path in get_repo_files(settings.feature_repo.resolve()):
        spec = importlib.util.spec_from_file_location(f"graphrec_feature_repo.{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import feature definitions from {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for value in vars(module).values():
            if isinstance(value, kinds) and not any(value is seen for seen in objects):
                objects.append(value)
    sources = [o for o in objects if isinstance(o, DataSource)]
    sources += [o.batch_source for o in objects if isinstance(o, FeatureView)]
    for source in sources:
        if isinstance(source, FileSource) and "://" not in source.path and not Path(source.path).is_absolute():
            source.file_options.uri = str(settings.feast_dir / source.path)
    return _postgres_sources(objects) if settings.services else objects


def _postgres_sources(objects: list[Any]) -> list[Any]:
    """The same objects with each feature view's source replaced by its PostgreSQL table.

    The tables (:func:`offline_table`) hold the same rows as the parquet snapshots
    (:func:`build_features` writes both); each new source keeps the file source's name,
    timestamp field and description. A view refers to its source from itself, its
    projection and every feature service's projection of it: all are replaced.
    """
    from feast import FeatureService, FeatureView
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

    replaced: dict[int, Any] = {}
    for view in (o for o in objects if isinstance(o, FeatureView)):
        old = view.batch_source
        new = PostgreSQLSource(
            name=old.name,
            table=offline_table(view.name),
            timestamp_field=old.timestamp_field,
            description=old.description,
            tags=old.tags,
            owner=old.owner,
        )
        replaced[id(old)] = new
        view.batch_source = view.data_source = view.projection.batch_source = new
    for service in (o for o in objects if isinstance(o, FeatureService)):
        for projection in service.feature_view_projections:
            projection.batch_source = replaced.get(id(projection.batch_source), projection.batch_source)
    return [replaced.get(id(o), o) for o in objects]


def apply_definitions(settings: Settings, store: FeatureStore | None = None) -> dict[str, list[str]]:
    """Make the registry match ``feature_repo/``, like ``feast apply``; a no-op when it does.

    Objects that changed or are new are applied; objects of the project that are no
    longer defined are deleted (with their online tables).

    Returns:
        dict: ``{"applied": [names], "deleted": [names]}``.
    """
    from feast import Entity, FeatureService, FeatureView, Project
    from feast.data_source import DataSource
    from feast.diff.property_diff import TransitionType
    from feast.diff.registry_diff import diff_between
    from feast.feature_view import DUMMY_ENTITY_NAME
    from feast.repo_contents import RepoContents

    store = store or feature_store(settings)
    objects = load_definitions(settings)

    def of(kind):
        return [o for o in objects if isinstance(o, kind)]

    repo = RepoContents(
        projects=of(Project), data_sources=of(DataSource), feature_views=of(FeatureView),
        on_demand_feature_views=[], stream_feature_views=[], label_views=[],
        entities=of(Entity), feature_services=of(FeatureService), permissions=[],
    )  # fmt: skip
    # Feast's own diff (what `feast plan` prints) decides; unchanged objects are not rewritten.
    diffs = diff_between(store.registry, store.project, repo).feast_object_diffs
    to_apply: list[Any] = [
        d.new_feast_object
        for d in diffs
        if d.transition_type == TransitionType.CREATE
        or (d.transition_type == TransitionType.UPDATE and not _only_source_timestamps(d))
    ]
    to_delete: list[Any] = [
        d.current_feast_object
        for d in diffs
        if d.transition_type == TransitionType.DELETE and d.name != DUMMY_ENTITY_NAME  # Feast's own placeholder
    ]
    if to_apply or to_delete:
        store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    return {"applied": sorted(o.name for o in to_apply), "deleted": sorted(o.name for o in to_delete)}


def _only_source_timestamps(diff) -> bool:
    """Whether an UPDATE differs only in the embedded data source's bookkeeping timestamps.

    A feature view's spec embeds its batch source *with* ``meta.created_timestamp``, which
    is set when the definitions are imported; Feast's diff therefore reports every view
    as updated on every apply. Such a diff is not a change of definition.
    """
    for prop in diff.feast_object_property_diffs:
        if prop.property_name not in ("batch_source", "stream_source"):
            return False
        existing, declared = type(prop.val_existing)(), type(prop.val_declared)()
        existing.CopyFrom(prop.val_existing)
        declared.CopyFrom(prop.val_declared)
        existing.ClearField("meta")
        declared.ClearField("meta")
        if existing != declared:
            return False
    return True


def materialize(settings: Settings, ds: dt.date | str) -> dict[str, Any]:
    """Build day ``ds``'s offline snapshots, register the definitions, load the online store.

    Each view is loaded with ``materialize_incremental`` up to the end of ``ds``, except:

    * never materialized yet: ``materialize`` over ``[as_of - ttl, as_of]`` (the incremental
      start would be *now* - ttl, which skips a replayed or backfilled history);
    * ``ds`` already loaded (a rerun): that day's snapshot is loaded again;
    * a later day already loaded (a backfill): the online store is left alone, since it
      must hold the newest values; only the offline snapshot is rewritten.

    Returns:
        dict: small and JSON-able for XCom: the ``build_features`` result plus
        ``"online": {view: "incremental" | "initial" | "reloaded" | "skipped"}``,
        ``"applied"`` and ``"seconds"`` timings.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    result = build_features(settings, ds)
    timings["build"] = time.perf_counter() - started

    started = time.perf_counter()
    store = feature_store(settings)
    timings["open_store"] = time.perf_counter() - started

    started = time.perf_counter()
    applied = apply_definitions(settings, store)
    timings["apply"] = time.perf_counter() - started

    started = time.perf_counter()
    online = _load_online(store, pd.Timestamp(result["as_of"]).to_pydatetime())
    timings["materialize"] = time.perf_counter() - started
    result.update(online=online, applied=applied["applied"], seconds={k: round(v, 3) for k, v in timings.items()})
    return result


def _load_online(store: FeatureStore, as_of: dt.datetime) -> dict[str, str]:
    """Load every view's snapshots up to ``as_of`` into the online store (see :func:`materialize`)."""
    modes: dict[str, str] = {}
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


# Online reads (per request) ----------------------------------------------------------------
def online_features(settings: Settings, user_ids: list[int]) -> pd.DataFrame:
    """The online user features, one row per requested id, in request order.

    Columns: ``user_id`` and the features of :data:`USER_FEATURE_REFS` (unqualified
    names). Counters are nullable ``Int64``; unknown users get ``<NA>`` and ``None``.
    """
    ids = [int(u) for u in user_ids]
    names = [ref.split(":", 1)[1] for ref in USER_FEATURE_REFS]
    if ids:
        response = feature_store(settings).get_online_features(
            features=list(USER_FEATURE_REFS), entity_rows=[{contract.USER_ID: u} for u in ids]
        )
        values = response.to_dict()
    else:
        values = {name: [] for name in [contract.USER_ID, *names]}
    frame = pd.DataFrame({contract.USER_ID: ids} | {name: values[name] for name in names})
    for view in (USER_ACTIVITY, USER_RECENT_ITEMS):
        for field in OFFLINE_SCHEMAS[view]:
            if field.name in names and pa.types.is_integer(field.type):
                frame[field.name] = frame[field.name].astype("Int64")
    return frame


def online_recent_items(settings: Settings, user_ids: list[int]) -> dict[int, list[int]]:
    """Each user's recent item ids from the online store, most recent last.

    Used to exclude items a user has just seen; unknown users map to ``[]``.
    """
    ids = [int(u) for u in user_ids]
    if not ids:
        return {}
    response = feature_store(settings).get_online_features(
        features=[f"{USER_RECENT_ITEMS}:recent_items"], entity_rows=[{contract.USER_ID: u} for u in ids]
    )
    values = response.to_dict()["recent_items"]
    return {u: [int(i) for i in (items or [])] for u, items in zip(ids, values)}


# Ranker features (offline point-in-time and online: the same columns) ----------------------
def ranker_feature_names(settings: Settings) -> list[str]:
    """The ranker's feature columns, ``<view>__<feature>``, in the feature service's order."""
    service = feature_store(settings).get_feature_service(RANKER_SERVICE, allow_cache=True)
    return [f"{p.name}__{f.name}" for p in service.feature_view_projections for f in p.features]


_ROW = "graphrec_row"
"""The row number :func:`historical_ranker_features` joins Feast's answer back on."""


def historical_ranker_features(settings: Settings, rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time features of ``ranker_features_v1`` for labelled or candidate rows.

    Each row gets, per view, the latest snapshot stamped at or before its
    ``event_timestamp`` (and within the view's TTL). A snapshot stamped ``t`` summarises
    events strictly before ``t``, so no value can come from the row's moment or later.

    Each view is joined once per distinct ``(entity key, event_timestamp)`` of the rows,
    not once per row: the ranker's rows are candidate lists, hundreds of items per user
    and moment, so a user's features would otherwise be looked up hundreds of times (at
    2M evaluation rows: 20k user lookups instead of 2M). Feast returns rows in no
    particular order, so each lookup is numbered before the join and put back in its
    place after it; only the entity columns go to Feast, the caller's other columns are
    kept as they are.

    Args:
        settings (Settings): the installation (its Feast store, definitions applied).
        rows (pd.DataFrame): ``user_id``, ``item_id``, ``event_timestamp`` (UTC) and any
            other columns, which are kept.

    Returns:
        pd.DataFrame: ``rows`` in their order with one column per feature
        (:func:`ranker_feature_names`); a view with no snapshot in reach (an unknown key,
        or every snapshot older than the TTL) leaves its columns missing.
    """
    frame = rows.reset_index(drop=True).copy()
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    store = feature_store(settings)
    service = store.get_feature_service(RANKER_SERVICE)
    names = [f"{p.name}__{f.name}" for p in service.feature_view_projections for f in p.features]
    if len(frame) == 0:
        return frame.assign(**{name: pd.Series(dtype=object) for name in names})
    for projection in service.feature_view_projections:
        key = OFFLINE_SCHEMAS[projection.name].names[0]
        columns = [f"{projection.name}__{f.name}" for f in projection.features]
        lookups, where = _distinct_lookups(frame, key)
        joined = store.get_historical_features(
            entity_df=lookups,
            features=[f"{projection.name}:{f.name}" for f in projection.features],
            full_feature_names=True,
        ).to_df()
        # Each lookup comes back once, in any order (a row number seen twice fails here); a
        # lookup that a store dropped would come back with missing values.
        joined = joined.set_index(_ROW).reindex(pd.RangeIndex(len(lookups)))
        for name in columns:
            frame[name] = joined[name].to_numpy()[where]
    return frame


def _distinct_lookups(frame: pd.DataFrame, key: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The distinct ``(key, event_timestamp)`` of ``frame``, numbered, and each row's lookup."""
    codes, uniques = pd.MultiIndex.from_frame(frame[[key, EVENT_TIMESTAMP]]).factorize()
    lookups = uniques.to_frame(index=False, name=[key, EVENT_TIMESTAMP])
    lookups[_ROW] = np.arange(len(lookups))
    return lookups, codes


_RECENT_ITEMS_NAME = f"{USER_RECENT_ITEMS}__recent_items"

#: Seconds the online reader reuses the ranker service's resolved layout (Feast's registry TTL).
_LAYOUT_TTL_S = 60.0
_LAYOUTS: dict[tuple[str, str], tuple[float, list[tuple[str, str, list[str]]]]] = {}


def _ranker_layout(settings: Settings) -> list[tuple[str, str, list[str]]]:
    """``[(view, entity key, [feature names])]`` of the ranker's feature service, cached.

    Resolving a feature service from Feast's registry rebuilds it from protobuf (~5 ms
    with its type checks); a request handler must not pay that per call. The layout is
    re-read after ``_LAYOUT_TTL_S`` seconds, so a newly applied service is picked up.
    """
    key = (str(settings.feast_dir), str(settings.feature_repo))
    now = time.monotonic()
    cached = _LAYOUTS.get(key)
    if cached is not None and now - cached[0] < _LAYOUT_TTL_S:
        return cached[1]
    service = feature_store(settings).get_feature_service(RANKER_SERVICE, allow_cache=True)
    layout = [
        (p.name, OFFLINE_SCHEMAS[p.name].names[0], [f.name for f in p.features])
        for p in service.feature_view_projections
    ]
    _LAYOUTS[key] = (now, layout)
    return layout


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


def _ranker_frame(user_id: int, ids: np.ndarray, stamp: pd.Timestamp, columns: dict[str, Any]) -> pd.DataFrame:
    data: dict[str, Any] = {
        contract.USER_ID: np.full(len(ids), int(user_id), dtype=np.int64),
        contract.ITEM_ID: ids,
        EVENT_TIMESTAMP: pd.Series([stamp] * len(ids), dtype="datetime64[us, UTC]"),
    }
    data.update(columns)
    return pd.DataFrame(data)


def online_ranker_features(
    settings: Settings, user_id: int, item_ids: list[int], now: pd.Timestamp | None = None
) -> pd.DataFrame:
    """The same columns as :func:`historical_ranker_features`, read from the online store.

    One row per candidate item, in ``item_ids`` order, stamped ``now`` (default: the
    current time) as ``event_timestamp``.

    Each view is read once for its distinct entity keys: the user's views for one row,
    the item views for the distinct candidates; the values are then spread over the rows.
    Asking Feast for the whole service over (user, item) rows decodes the user's features
    once per candidate, and resolving the service per call re-reads the registry: on a
    Gowalla-sized store that cost ~30 ms for 100 candidates. The service uses
    :class:`OnlineRankerFeatures`, which also keeps item rows between materializations.
    """
    ids = np.asarray([int(i) for i in item_ids], dtype=np.int64)
    store = feature_store(settings)
    stamp = _utc(now if now is not None else pd.Timestamp.now(tz="UTC"))
    unique, positions = np.unique(ids, return_inverse=True)
    columns: dict[str, Any] = {}
    for view, key, features in _ranker_layout(settings):
        if len(ids) == 0:
            columns.update({f"{view}__{f}": pd.Series(dtype=object) for f in features})
        elif key == contract.USER_ID:
            values = _read_online(store, view, key, features, [int(user_id)])
            columns.update({name: np.repeat(v, len(ids)) for name, v in values.items()})
        else:
            values = _read_online(store, view, key, features, unique.tolist())
            columns.update({name: v[positions] for name, v in values.items()})
    return _ranker_frame(user_id, ids, stamp, columns)


class OnlineRankerFeatures:
    """The service's reader of ranker features: item rows kept between materializations.

    Returns :class:`features.ranker_columns.CandidateFeatures` (arrays; what the service's ranker
    encodes without pandas) holding the values :func:`online_ranker_features` reads for
    the same store state: ``reader(u, items, now).to_frame()`` has that frame's values.

    Item-keyed views (``item_popularity``) only change when a materialization writes
    them, yet reading 100 candidates' rows is most of the online cost (~7 ms of ~8 ms on
    a Gowalla-sized SQLite store). This reader keeps every item row it has read and
    forgets them all when the view's newest materialized interval moves, which it checks
    through Feast's registry cache at most every ``check_every_s`` seconds: after a
    materialization, item values can lag by that plus the registry's ``cache_ttl_seconds``
    (60). The user's views are read on every call, in one online read.

    :meth:`recent_items` is a ``recent_items_fn`` for the service that reads the same user
    views: its read of a user is kept (per thread, for ``reuse_user_s`` seconds) for the
    same request's ranker call, so a re-ranked request reads the user once instead of twice.

    A failed read drops the process's cached store (:func:`reset_feature_store`), so the
    next call reconnects.

    Args:
        settings (Settings): the installation.
        check_every_s (float): how often to look for a newer materialization.
        reuse_user_s (float): how long a user's read by :meth:`recent_items` may be reused
            by the next call for that user in the same thread. ``0`` never reuses it.
    """

    def __init__(self, settings: Settings, check_every_s: float = 30.0, reuse_user_s: float = 1.0) -> None:
        self._settings = settings
        self._check_every_s = check_every_s
        self._reuse_user_s = reuse_user_s
        self._rows: dict[str, dict[int, tuple[Any, ...]]] = {}
        self._watermarks: dict[str, Any] = {}
        self._checked_at = -float("inf")
        self._store: Any = None
        self._layout: tuple[float, list[tuple[str, str, list[str]]]] | None = None
        self._last_user = threading.local()

    def __call__(self, user_id: int, item_ids: list[int], now: pd.Timestamp | None = None) -> CandidateFeatures:
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
        """Each user's recent item ids, most recent last (:func:`online_recent_items`)."""
        try:
            out = {}
            for user_id in user_ids:
                values = self._read_user(int(user_id))
                out[int(user_id)] = [int(i) for i in (values.get(_RECENT_ITEMS_NAME) or [])]
                self._last_user.read = (int(user_id), time.monotonic(), values)
            return out
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

    def _views(self) -> list[tuple[str, str, list[str]]]:
        """:func:`_ranker_layout`, re-resolved at most every ``_LAYOUT_TTL_S`` seconds."""
        now = time.monotonic()
        if self._layout is None or now - self._layout[0] >= _LAYOUT_TTL_S:
            self._layout = (now, _ranker_layout(self._settings))
        return self._layout[1]

    def _read_user(self, user_id: int) -> dict[str, Any]:
        """``{<view>__<feature>: value}`` of the user-keyed views, in one online read."""
        features = [f"{view}:{f}" for view, key, names in self._views() if key == contract.USER_ID for f in names]
        if _RECENT_ITEMS_NAME.replace("__", ":") not in features:
            features.append(_RECENT_ITEMS_NAME.replace("__", ":"))
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
        from features import ranker_columns as columns

        ids = np.asarray([int(i) for i in item_ids], dtype=np.int64)
        store = self._feast()
        stamp = _utc(now if now is not None else pd.Timestamp.now(tz="UTC"))
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
        return columns.CandidateFeatures(
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

    def _maybe_invalidate(self, store: Any, layout: list[tuple[str, str, list[str]]]) -> None:
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
