"""Shared fixtures for the serving tests: tiny simulated history and embeddings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrec import lake
from graphrec.settings import Settings
from graphrec.sources.simulator import SimulationConfig, simulate
from training.embeddings import ModelEmbeddings

SIM = SimulationConfig(n_users=120, n_items=80, days=4, events_per_day=600, drift_day=None)
#: Users 0..N_EMBEDDED-1 get embeddings; the rest have history but are unknown to the model.
N_EMBEDDED = 100


@pytest.fixture(scope="session")
def sim_curated(tmp_path_factory) -> Path:
    """A curated zone with four simulated daily partitions (read-only for tests)."""
    curated = tmp_path_factory.mktemp("sim") / "curated"
    simulate(SIM, curated)
    return curated


@pytest.fixture(scope="session")
def interactions(sim_curated) -> pd.DataFrame:
    return lake.read_curated(sim_curated, lake.list_partitions(sim_curated))


@pytest.fixture(scope="session")
def popularity(interactions) -> np.ndarray:
    counts = interactions["item_id"].value_counts()
    return np.array(sorted(counts.index, key=lambda i: (-counts[i], i)), dtype=np.int64)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def make_embeddings(interactions) -> Callable[..., ModelEmbeddings]:
    """Factory of random-but-seeded embeddings over the simulated users and items."""

    def make(
        seed: int = 0, model_version: int = 1, dim: int = 16, n_users: int = N_EMBEDDED, shuffled: bool = False
    ) -> ModelEmbeddings:
        rng = np.random.default_rng(seed)
        item_ids = np.sort(interactions["item_id"].unique()).astype(np.int64)
        user_ids = np.arange(n_users, dtype=np.int64)
        if shuffled:  # ids in no particular order, as a real id map may be
            item_ids, user_ids = rng.permutation(item_ids), rng.permutation(user_ids)
        return ModelEmbeddings(
            user_ids=user_ids,
            item_ids=item_ids,
            user_emb=rng.normal(size=(len(user_ids), dim)).astype(np.float32),
            item_emb=rng.normal(size=(len(item_ids), dim)).astype(np.float32),
            meta={
                "model_version": model_version,
                "run_id": f"run-{model_version}",
                "data_window": ["2025-01-01", "2025-01-04"],
                "metrics": {"recall_at_20": 0.1 * model_version},
            },
        )

    return make
