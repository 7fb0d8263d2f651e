"""A Feast store materialized day by day, shared by the historical and online readers' tests.

A simulated lake is materialized once per session (real registry, DuckDB offline store,
SQLite online store); the tests only read it, so the point-in-time join
(``test_features_historical.py``) and the online reader (``test_features_online.py``)
are checked against the same store.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from ranker_store import CFG, DAYS

from features.materialize import materialize
from graphrec import lake
from graphrec.settings import Settings
from ingest.simulator import simulate


@pytest.fixture(scope="session")
def store_settings(tmp_path_factory) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("ranker-features-home"))
    for part in simulate(CFG, settings.landing_dir):
        shutil.copytree(part, settings.curated_dir / part.name)
    for day in DAYS:
        materialize(settings, day.isoformat())
    return settings


@pytest.fixture(scope="session")
def curated(store_settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    curated_dir = store_settings.curated_dir
    return lake.read_curated(curated_dir, lake.list_partitions(curated_dir)), lake.read_catalog(curated_dir)
