"""Shared simulated lakes for the monitoring tests (built once per session)."""

from __future__ import annotations

import dataclasses

import pytest

from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate

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
