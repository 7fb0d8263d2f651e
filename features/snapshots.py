"""The offline store: each day's feature snapshots, written where Feast reads them.

:func:`build_features` computes day ``ds``'s tables (:mod:`features.tables`) from the
curated lake and upserts them: one parquet file per view and day under
``settings.feast_dir / "offline"``, replaced atomically, so a rerun replaces rather than
duplicates (Feast's DuckDB offline store reads the files). The services profile also
replaces the day's rows in one PostgreSQL table per view, which Feast's PostgreSQL
offline store reads there. Registering the sources is :mod:`features.store`'s job.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import sql

from features.tables import EVENT_TIMESTAMP, HISTORY_DAYS, OFFLINE_SCHEMAS, compute_feature_tables, snapshot_time
from graphrec import lake
from graphrec.handoff import Handoff
from graphrec.settings import Settings


@dataclasses.dataclass(frozen=True)
class ViewSnapshot(Handoff):
    """One view's snapshot of a day in the offline store.

    Args:
        path: the parquet file (:func:`offline_file`).
        rows: its row count.
        table: services profile: the PostgreSQL table that holds the same rows
            (:func:`offline_table`); ``None`` in the embedded profile.
    """

    path: Path
    rows: int
    table: str | None = None


@dataclasses.dataclass(frozen=True)
class DaySnapshots(Handoff):
    """What :func:`build_features` wrote for one day.

    Args:
        ds: the partition day.
        as_of: the snapshots' ``event_timestamp`` (ISO 8601, UTC): the end of ``ds``
            (:func:`features.tables.snapshot_time`).
        views: each view's snapshot, by view name.
    """

    ds: dt.date
    as_of: str
    views: dict[str, ViewSnapshot]


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


def build_features(settings: Settings, ds: dt.date | str) -> DaySnapshots:
    """Compute day ``ds``'s snapshots from the curated lake and upsert them offline.

    Reads the last :data:`~features.tables.HISTORY_DAYS` curated partitions up to ``ds``
    and the catalog up to ``ds``. Each view's snapshot replaces the file of that day atomically, so rerunning
    a day replaces its rows and never duplicates them. In the services profile the day's
    rows of every view also replace those in the PostgreSQL tables that Feast's offline
    store reads there, in one transaction (:func:`_write_postgres_snapshots`).

    Args:
        settings (Settings): the installation.
        ds (date | str): the partition day; it must be in ``curated/``.

    Returns:
        DaySnapshots: the day, its snapshot time and, per view, the file written and its
        row count (services: and the PostgreSQL table).

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
    for name, frame in tables.items():
        lake.atomic_write_parquet(offline_file(settings, name, day), frame, schema=OFFLINE_SCHEMAS[name])
    if settings.services:
        _write_postgres_snapshots(settings, tables, as_of)
    views = {
        name: ViewSnapshot(
            path=offline_file(settings, name, day),
            rows=len(frame),
            table=offline_table(name) if settings.services else None,
        )
        for name, frame in tables.items()
    }
    return DaySnapshots(ds=day, as_of=as_of.isoformat(), views=views)


def _write_postgres_snapshots(settings: Settings, tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> None:
    """Replace one day's rows of every view's PostgreSQL table, all in one transaction.

    A day's rows are those stamped in ``(as_of - 1 day, as_of]``: the counters at
    ``as_of``, the sequence log one microsecond after each event of the day. Readers see
    the day before or after the rerun, never a mix; an advisory lock serializes writers
    (two days built at once would otherwise race to create the tables).
    """
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
