"""The services profile's offline store: Feast's PostgreSQL store over snapshot tables.

Needs the real PostgreSQL and Redis servers (skipped with a message when unreachable).
One simulated lake is materialized day by day in two homes: embedded (DuckDB over the
parquet snapshots, SQLite registry and online store) and services (the snapshots also
loaded into PostgreSQL tables that Feast's PostgreSQL offline store reads, PostgreSQL
registry, Redis online store). Both must serve the same features, offline and online.
"""

from __future__ import annotations

import secrets
import shutil

import numpy as np
import pandas as pd
import pytest

from features.historical import historical_ranker_features
from features.materialize import materialize
from features.online import OnlineFeatures
from features.ranker_columns import FEATURE_COLUMNS
from features.snapshots import offline_table, read_offline
from features.store import feature_store, repo_config, reset_feature_store
from features.tables import EVENT_TIMESTAMP, FEATURE_VIEWS, OFFLINE_SCHEMAS, snapshot_time
from graphrec import contract
from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate

pytestmark = pytest.mark.services

CFG = SimulationConfig(n_users=80, n_items=60, days=4, events_per_day=500, drift_day=None, seed=11)
DAYS = [CFG.day(i) for i in range(1, CFG.days + 1)]
FEAST_DB = 13  # Redis database of this module's online store (the stack test uses 14 and 15)


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """``(embedded, services)`` settings, every day materialized in both."""
    import redis

    from app.services import ServicesError, check_servers, drop_databases, ensure_databases

    root = tmp_path_factory.mktemp("features-postgres")
    embedded = Settings(home=root / "embedded")
    services = Settings(
        home=root / "services",
        profile="services",
        servers={"feast_redis_db": FEAST_DB, "database_prefix": f"graphrec_f{secrets.token_hex(3)}"},
    )
    try:
        check_servers(services)
    except ServicesError as exc:
        pytest.skip(
            f"{exc}. The services tests need PostgreSQL on 127.0.0.1:5432 (user postgres) and Redis "
            "on 127.0.0.1:6379, or GRAPHREC_SERVERS__POSTGRES_URL / GRAPHREC_SERVERS__REDIS_URL pointing at them."
        )
    online = redis.Redis.from_url(f"{services.servers.redis_url}/{FEAST_DB}")
    online.flushdb()
    ensure_databases(services)
    for part in simulate(CFG, root / "landing"):
        for settings in (embedded, services):
            shutil.copytree(part, settings.curated_dir / part.name)
    try:
        for day in DAYS:
            for settings in (embedded, services):
                materialize(settings, day.isoformat())
        yield embedded, services
    finally:
        reset_feature_store(services)
        drop_databases(services)
        online.flushdb()


def _table(settings: Settings, view: str) -> pd.DataFrame:
    import psycopg

    config = settings.feast_offline_store
    with psycopg.connect(
        host=config["host"],
        port=config["port"],
        dbname=config["database"],
        user=config["user"],
        password=config["password"],
    ) as conn:
        cur = conn.execute(f'SELECT * FROM "{offline_table(view)}"')
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def _plain(value):
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return None
    if isinstance(value, (list, np.ndarray)):
        return [v.item() if hasattr(v, "item") else v for v in value]
    return float(value) if isinstance(value, (int, float, np.integer, np.floating)) else value


def _online_user_features(settings: Settings, user_ids: list[int]) -> pd.DataFrame:
    """The online user features read by the one reader, one row per id in order."""
    reader = OnlineFeatures(settings)
    return pd.DataFrame([{contract.USER_ID: u} | reader.user_features(u) for u in user_ids])


def test_the_services_profile_reads_postgresql_tables(homes):
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

    embedded, services = homes
    assert repo_config(embedded).offline_store.type == "duckdb"
    assert repo_config(services).offline_store.type == "postgres"
    store = feature_store(services)
    for view in store.list_feature_views():
        assert isinstance(view.batch_source, PostgreSQLSource), view.batch_source
        assert view.batch_source.get_table_query_string() == offline_table(view.name)
    for projection in store.get_feature_service("ranker_features_v1").feature_view_projections:
        assert isinstance(projection.batch_source, PostgreSQLSource)


@pytest.mark.parametrize("view", FEATURE_VIEWS)
def test_postgresql_tables_hold_the_parquet_snapshots(homes, view):
    _, services = homes
    key = OFFLINE_SCHEMAS[view].names[0]
    parquet = read_offline(services, view).sort_values([key, EVENT_TIMESTAMP], ignore_index=True)
    table = _table(services, view).sort_values([key, EVENT_TIMESTAMP], ignore_index=True)
    assert list(table.columns) == OFFLINE_SCHEMAS[view].names
    assert len(table) == len(parquet) > 0
    for column in table.columns:
        if column == EVENT_TIMESTAMP:
            assert (pd.to_datetime(table[column], utc=True) == parquet[column]).all()
        else:
            assert [_plain(v) for v in table[column]] == [_plain(v) for v in parquet[column]], column


def test_rerunning_a_day_replaces_its_rows_in_postgresql(homes):
    _, services = homes
    before = {view: len(_table(services, view)) for view in FEATURE_VIEWS}
    result = materialize(services, DAYS[1])  # a backfill: the offline rows of that day are rewritten
    assert result.online == {view: "skipped" for view in FEATURE_VIEWS}
    assert {view: v.table for view, v in result.views.items()} == {v: offline_table(v) for v in FEATURE_VIEWS}
    for view in FEATURE_VIEWS:
        table = _table(services, view)
        assert len(table) == before[view]
        assert not table.duplicated([OFFLINE_SCHEMAS[view].names[0], EVENT_TIMESTAMP]).any()


def test_postgresql_and_duckdb_give_the_same_point_in_time_features(homes):
    embedded, services = homes
    events = pd.concat([pd.read_parquet(p) for p in sorted(embedded.curated_dir.glob("ds=*/interactions.parquet"))])
    picked = events.sample(60, random_state=5)
    rows = pd.DataFrame(
        {
            contract.USER_ID: [*picked[contract.USER_ID], 10_000, int(picked[contract.USER_ID].iloc[0])],
            contract.ITEM_ID: [*picked[contract.ITEM_ID], int(picked[contract.ITEM_ID].iloc[0]), 99_999],
            EVENT_TIMESTAMP: [*picked[contract.EVENT_TS], snapshot_time(DAYS[2]), snapshot_time(DAYS[2])],
        }
    )
    boundary = rows.head(10).assign(**{EVENT_TIMESTAMP: snapshot_time(DAYS[1])})
    rows = pd.concat(
        [
            rows,
            boundary,
            boundary.assign(**{EVENT_TIMESTAMP: snapshot_time(DAYS[1]) - pd.Timedelta(microseconds=1)}),
            rows.iloc[[3, 3]],
        ],
        ignore_index=True,
    )
    rows["label"] = np.arange(len(rows)) % 2
    ours, theirs = historical_ranker_features(embedded, rows), historical_ranker_features(services, rows)
    assert list(theirs.columns) == list(ours.columns)
    assert theirs["label"].tolist() == rows["label"].tolist()
    names = FEATURE_COLUMNS
    for name in names:
        assert [_plain(v) for v in theirs[name]] == [_plain(v) for v in ours[name]], name
    assert theirs[names].notna().any().all() and theirs[names].isna().any().any()  # values and gaps both checked


def test_materialize_reads_postgresql_into_the_same_online_values(homes):
    embedded, services = homes
    users = sorted(read_offline(embedded, "user_activity")[contract.USER_ID].unique().tolist())[:25] + [10_000]
    ours, theirs = _online_user_features(embedded, users), _online_user_features(services, users)
    for column in ours.columns:
        assert [_plain(v) for v in theirs[column]] == [_plain(v) for v in ours[column]], column
