"""Materialization through Feast: real registry (SQLite), DuckDB offline store, SQLite online store.

One simulated lake is materialized day by day once for the module (Feast's import and
first apply dominate the cost); the tests then read it back and rerun days against it.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from features.materialize import Materialized, materialize
from features.online import OnlineFeatures
from features.snapshots import read_offline
from features.store import RANKER_SERVICE, apply_definitions, feature_store
from features.tables import FEATURE_VIEWS, USER_ACTIVITY, USER_RECENT_ITEMS, compute_feature_tables, snapshot_time
from graphrec import contract, lake
from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate

CFG = SimulationConfig(n_users=120, n_items=80, days=4, events_per_day=600, drift_day=None)
DAYS = [CFG.day(i) for i in range(1, CFG.days + 1)]
UNKNOWN_USER = 10_000


@pytest.fixture(scope="module")
def lake_settings(tmp_path_factory) -> Settings:
    """A home whose curated zone holds the simulated days (validation is not under test)."""
    settings = Settings(home=tmp_path_factory.mktemp("features-home"))
    for part in simulate(CFG, settings.landing_dir):
        shutil.copytree(part, settings.curated_dir / part.name)
    return settings


@pytest.fixture(scope="module")
def materialized(lake_settings) -> list[Materialized]:
    """Materialize every day in order, the way the nightly DAG does (``ds`` as a string)."""
    return [materialize(lake_settings, day.isoformat()) for day in DAYS]


@pytest.fixture(scope="module")
def last_day_tables(lake_settings) -> dict[str, pd.DataFrame]:
    """What the pure transform says the last day's snapshot is, from all curated data."""
    curated = lake_settings.curated_dir
    interactions = lake.read_curated(curated, lake.list_partitions(curated))
    return compute_feature_tables(interactions, lake.read_catalog(curated), snapshot_time(DAYS[-1]))


def _online_user_features(settings: Settings, user_ids: list[int]) -> pd.DataFrame:
    """The online user features read by the one reader: ``user_id`` and unqualified names."""
    reader = OnlineFeatures(settings)
    rows = [
        {contract.USER_ID: u} | {k.split("__", 1)[1]: v for k, v in reader.user_features(u).items()} for u in user_ids
    ]
    return pd.DataFrame(rows)


def test_first_day_is_loaded_even_though_it_is_in_the_past(materialized):
    first, *rest = materialized
    assert first.online == {name: "initial" for name in FEATURE_VIEWS}
    assert set(first.applied) >= {*FEATURE_VIEWS, RANKER_SERVICE, "user", "item"}
    for result in rest:
        assert result.online == {name: "incremental" for name in FEATURE_VIEWS}
        assert result.applied == []  # the registry already matches the repository
    for result in materialized:
        assert pd.Timestamp(result.as_of) == snapshot_time(result.ds)
        assert all(v.path.exists() and v.rows > 0 for v in result.views.values())


def test_the_result_crosses_xcom_as_plain_json(materialized):
    xcom = materialized[0].to_xcom()
    assert set(xcom) == {"ds", "as_of", "views", "online", "applied", "seconds"}
    assert set(xcom["views"][USER_ACTIVITY]) == {"path", "rows", "table"}  # table: services only
    assert Materialized.from_xcom(json.loads(json.dumps(xcom))) == materialized[0]


def test_the_online_store_holds_the_last_snapshot(lake_settings, materialized, last_day_tables):
    activity = last_day_tables[USER_ACTIVITY].set_index(contract.USER_ID)
    # The sequence log's latest row per user (whatever day it was written) is what is online.
    log = read_offline(lake_settings, USER_RECENT_ITEMS).sort_values("event_timestamp", kind="stable")
    recent = log.groupby(contract.USER_ID).last()
    users = activity.index.tolist()
    # Users idle on the last day must be served zeros, not their last active day's counts.
    assert (activity["events_1d"] == 0).any()

    online = _online_user_features(lake_settings, [*users, UNKNOWN_USER]).set_index(contract.USER_ID)
    assert online.index.tolist() == [*users, UNKNOWN_USER]
    for column in ("events_1d", "events_7d", "distinct_items_7d", "days_since_last_event"):
        assert online.loc[users, column].astype("int64").tolist() == activity[column].tolist(), column
    for column in ("recent_items", "recent_categories", "recent_ts"):
        assert [list(v) for v in online.loc[users, column]] == [list(v) for v in recent.loc[users, column]], column
    assert online.loc[UNKNOWN_USER].drop(["recent_items", "recent_categories", "recent_ts"]).isna().all()
    assert online.loc[UNKNOWN_USER, "recent_items"] is None


def test_rerunning_a_day_replaces_its_rows(lake_settings, materialized):
    before = {name: read_offline(lake_settings, name) for name in FEATURE_VIEWS}
    again = materialize(lake_settings, DAYS[-1])
    assert again.online == {name: "reloaded" for name in FEATURE_VIEWS}
    assert again.applied == []
    for name in FEATURE_VIEWS:
        after = read_offline(lake_settings, name)
        pd.testing.assert_frame_equal(after, before[name])
        key = contract.ITEM_ID if name == "item_popularity" else contract.USER_ID
        assert not after.duplicated([key, "event_timestamp"]).any()
        if name == USER_RECENT_ITEMS:  # the event-level log: its rows fall within the days
            written = (after["event_timestamp"] - pd.Timedelta(microseconds=1)).dt.date
            assert set(written) == set(DAYS)
        else:
            assert after["event_timestamp"].nunique() == len(DAYS)


def test_backfilling_an_older_day_leaves_the_online_store_alone(lake_settings, materialized, last_day_tables):
    result = materialize(lake_settings, DAYS[1])
    assert result.online == {name: "skipped" for name in FEATURE_VIEWS}
    store = feature_store(lake_settings)
    for name in FEATURE_VIEWS:
        assert store.get_feature_view(name).most_recent_end_time == snapshot_time(DAYS[-1])
    users = last_day_tables[USER_ACTIVITY][contract.USER_ID].tolist()[:10]
    expected = last_day_tables[USER_ACTIVITY].set_index(contract.USER_ID).loc[users, "events_7d"].tolist()
    reader = OnlineFeatures(lake_settings)
    assert [reader.user_features(u)["user_activity__events_7d"] for u in users] == expected


def test_apply_is_idempotent(lake_settings, materialized):
    store = feature_store(lake_settings)
    assert apply_definitions(lake_settings, store) == {"applied": [], "deleted": []}
    assert [len(store.list_feature_view_versions(name)) for name in FEATURE_VIEWS] == [1, 1, 1]


def test_historical_features_join_the_snapshots(lake_settings, materialized, last_day_tables):
    """The offline files serve point-in-time training data through the feature service."""
    store = feature_store(lake_settings)
    users = last_day_tables[USER_ACTIVITY][contract.USER_ID].head(5).tolist()
    items = last_day_tables["item_popularity"][contract.ITEM_ID].head(5).tolist()
    when = snapshot_time(DAYS[-1]) + pd.Timedelta(hours=1)
    entity_df = pd.DataFrame({contract.USER_ID: users, contract.ITEM_ID: items, "event_timestamp": when})
    # Both user and item views have events_1d/events_7d: the service needs full names.
    frame = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(RANKER_SERVICE), full_feature_names=True
    ).to_df()
    frame = frame.set_index(contract.USER_ID).loc[users]
    expected = last_day_tables[USER_ACTIVITY].set_index(contract.USER_ID).loc[users, "events_7d"]
    assert frame["user_activity__events_7d"].tolist() == expected.tolist()
