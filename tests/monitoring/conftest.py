"""Shared simulated lakes and signal reports for the monitoring tests (built once per session)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from alert_days import day
from alert_days import run as run_alert_days

from graphrec import contract, lake
from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate
from monitoring.offline_serving import ServingModel
from monitoring.policy_files import load_policy
from monitoring.policy_rules import DriftPolicy
from monitoring.signals import SignalReport, compute_signals
from serving.history import popularity_order, seen_from_pairs

# Small enough to be quick, large enough for stable distances: on day 5 a category's
# popularity triples and 40 new items appear; days 1..4 are ordinary.
SMALL_DRIFT = SimulationConfig(
    n_users=300, n_items=120, days=5, events_per_day=1500, drift_day=5, drift_new_items=40, seed=42
)


@dataclasses.dataclass(frozen=True)
class World:
    settings: Settings
    config: SimulationConfig


@pytest.fixture(scope="session")
def drift_world(tmp_path_factory) -> World:
    """Simulated partitions written straight into ``curated/`` (validation is not under test)."""
    settings = Settings(home=tmp_path_factory.mktemp("monitoring-home"))
    simulate(SMALL_DRIFT, settings.curated_dir)
    return World(settings, SMALL_DRIFT)


@pytest.fixture(scope="session")
def policy() -> DriftPolicy:
    """The packaged default drift policy."""
    return load_policy()


@pytest.fixture(scope="session")
def lake_days(drift_world) -> dict[str, pd.DataFrame]:
    """Days 1..3 are the reference, day 4 an ordinary day, day 5 the drift day."""
    cfg, curated = drift_world.config, drift_world.settings.curated_dir
    read = lambda days: lake.read_curated(curated, [cfg.day(d) for d in days])  # noqa: E731
    return {
        "reference": read([1, 2, 3]),
        "ordinary": read([4]),
        "drift": read([cfg.drift_day]),
        "catalog": lake.read_catalog(curated),
    }


@pytest.fixture(scope="session")
def model(lake_days) -> ServingModel:
    """A random model over the simulated ids, with the reference as its published history."""
    rng = np.random.default_rng(7)
    n_users = int(lake_days["reference"][contract.USER_ID].max()) + 1
    items = lake_days["catalog"][contract.ITEM_ID].to_numpy(np.int64)
    return ServingModel(
        user_ids=np.arange(n_users, dtype=np.int64),
        user_emb=rng.standard_normal((n_users, 8), dtype=np.float32),
        item_ids=items,
        item_emb=rng.standard_normal((len(items), 8), dtype=np.float32),
        seen=seen_from_pairs(lake_days["reference"]),
        popular=popularity_order(lake_days["reference"]),
    )


@pytest.fixture(scope="session")
def ordinary(lake_days, model) -> SignalReport:
    return compute_signals(lake_days["ordinary"], lake_days["reference"], lake_days["catalog"], model=model)


@pytest.fixture(scope="session")
def drifted(lake_days, model) -> SignalReport:
    return compute_signals(lake_days["drift"], lake_days["reference"], lake_days["catalog"], model=model)


@pytest.fixture(scope="session")
def warning_alert(policy):
    """Day 2 of a persistent item_popularity drift, category_mix on watch."""
    days = [day(item_popularity=0.3), day(item_popularity=0.3, category_mix=0.15)]
    return run_alert_days(policy, days)[-1], days[-1]


@pytest.fixture(scope="session")
def critical_alert(policy):
    signals = day(event_type_missing=0.12, item_popularity=0.3)
    return run_alert_days(policy, [signals])[-1], signals
