"""The Feast adapter: the store's configuration, the definitions and their registration.

Real Feast objects and registry (SQLite) under a temporary home; nothing is materialized.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa

from features.snapshots import offline_file
from features.store import RANKER_SERVICE, apply_definitions, feature_store, load_definitions, repo_config
from features.tables import FEATURE_VIEWS, OFFLINE_SCHEMAS
from graphrec.settings import Settings

DAY = dt.date(2025, 1, 1)


def test_store_lives_under_feast_dir(tmp_path, monkeypatch):
    # The environment points elsewhere: settings win, so tests and tasks never cross homes.
    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path / "elsewhere"))
    settings = Settings(home=tmp_path / "home")
    config = repo_config(settings)
    feast_dir = settings.feast_dir
    assert config.project == "graphrec"
    assert config.entity_key_serialization_version == 3
    assert config.repo_path == feast_dir
    assert config.registry.path == f"sqlite:///{feast_dir / 'registry.db'}"
    assert Path(config.online_store.path).parent == feast_dir
    assert config.offline_store.type == "duckdb"


def test_feast_cli_loader_reads_the_same_yaml(tmp_path, monkeypatch):
    """``feast`` itself expands ${GRAPHREC_HOME}: the yaml works for the CLI too."""
    from feast.repo_config import load_repo_config

    settings = Settings(home=tmp_path)
    monkeypatch.setenv("GRAPHREC_HOME", str(settings.root))
    ours = repo_config(settings)
    theirs = load_repo_config(settings.feature_repo, settings.feature_repo / "feature_store.yaml")
    assert theirs.registry.path == ours.registry.path
    assert theirs.online_store.path == ours.online_store.path


def test_definitions_mirror_the_offline_schemas(tmp_path):
    from feast import FeatureService, FeatureView
    from feast.types import Array, Int64, String

    arrow_of = {
        Int64: pa.int64(),
        String: pa.string(),
        Array(Int64): pa.list_(pa.int64()),
        Array(String): pa.list_(pa.string()),
    }
    settings = Settings(home=tmp_path)
    objects = load_definitions(settings)
    views = {o.name: o for o in objects if isinstance(o, FeatureView)}
    assert set(views) == set(FEATURE_VIEWS)
    for name, view in views.items():
        declared = {f.name: arrow_of[f.dtype] for f in view.features + view.entity_columns}
        declared[view.batch_source.timestamp_field] = pa.timestamp("us", tz="UTC")
        assert declared == dict(zip(OFFLINE_SCHEMAS[name].names, OFFLINE_SCHEMAS[name].types))
        assert view.ttl and view.ttl.total_seconds() > 0
        # The FileSource path is an absolute pattern of the files build_features writes
        # (DuckDB reads it as given, whatever the working directory).
        assert view.batch_source.path == str(offline_file(settings, name, DAY).parent / "*.parquet")
    services = [o.name for o in objects if isinstance(o, FeatureService)]
    assert services == [RANKER_SERVICE]


def test_apply_removes_what_the_repository_no_longer_defines(tmp_path):
    from feast import Entity, ValueType

    settings = Settings(home=tmp_path)
    store = feature_store(settings)
    assert RANKER_SERVICE in apply_definitions(settings, store)["applied"]
    store.apply([Entity(name="stray", join_keys=["stray_id"], value_type=ValueType.INT64)])
    assert apply_definitions(settings, store) == {"applied": [], "deleted": ["stray"]}
    assert sorted(e.name for e in store.list_entities()) == ["item", "user"]
