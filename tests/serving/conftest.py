"""Shared fixtures for the serving tests: tiny simulated history and embeddings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrec import lake
from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate
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


# A real MLflow registry (SQLite) for rollback and live-canary tests ------------------------------
#: Registered versions in :func:`model_registry`: retriever and ranker versions 1 and 2.
REGISTERED_VERSIONS = (1, 2)


def seeded_embeddings(interactions: pd.DataFrame, seed: int, dim: int = 16) -> ModelEmbeddings:
    """Seeded random embeddings over the simulated items and the first :data:`N_EMBEDDED` users."""
    rng = np.random.default_rng(seed)
    item_ids = np.sort(interactions["item_id"].unique()).astype(np.int64)
    user_ids = np.arange(N_EMBEDDED, dtype=np.int64)
    return ModelEmbeddings(
        user_ids=user_ids,
        item_ids=item_ids,
        user_emb=rng.normal(size=(len(user_ids), dim)).astype(np.float32),
        item_emb=rng.normal(size=(len(item_ids), dim)).astype(np.float32),
        meta={
            "data_window": ["2025-01-01", "2025-01-04"],
            "metrics": {"recall_at_20": 0.1 + seed / 100, "ndcg_at_20": 0.05 + seed / 100},
        },
    )


@pytest.fixture(scope="module")
def model_registry(tmp_path_factory, interactions, sim_curated) -> str:
    """A SQLite MLflow registry with retriever and ranker versions 1 and 2, no aliases; its tracking URI.

    Built once per module (registering costs seconds); tests share it through
    :func:`registry_settings`, which clears the aliases they move.
    """
    import mlflow

    from training import bst_io, pyfunc_ranker, registry
    from training.bst import build_bst
    from training.bst_vocab import Vocabulary

    home = tmp_path_factory.mktemp("registry")
    settings = Settings(home=home)
    catalog = lake.read_catalog(sim_curated)
    for version in REGISTERED_VERSIONS:
        emb = seeded_embeddings(interactions, seed=version)
        assert registry.register_model(settings, emb) == version
        vocab = Vocabulary.build(emb.item_ids, catalog["category"])
        model = build_bst(vocab, seed=version, seq_len=6, dim=16, heads=2, hidden=(16,))
        directory = bst_io.save_ranker(model, vocab, home / f"ranker-{version}", extra={"seq_len": 6, "seed": version})
        registry.configure(settings)
        with mlflow.start_run() as run:
            assert pyfunc_ranker.log_and_register(settings, directory, run.info.run_id) == version
    return settings.tracking_uri


@pytest.fixture
def registry_settings(tmp_path, model_registry, sim_curated) -> Settings:
    """Settings with a fresh home (curated history copied in) on the shared registry, champion aliases cleared."""
    import shutil

    from mlflow.exceptions import MlflowException

    from training import registry

    settings = Settings(home=tmp_path / "home", mlflow={"tracking_uri": model_registry})
    shutil.copytree(sim_curated, settings.curated_dir)
    client = registry.client_for(settings)
    for model in (settings.mlflow.retriever_model_name, settings.mlflow.ranker_model_name):
        try:
            client.delete_registered_model_alias(model, registry.CHAMPION)
        except MlflowException:
            pass
    return settings


@pytest.fixture
def cli_settings(registry_settings, monkeypatch) -> Settings:
    """:func:`registry_settings`, also what the ``graphrec`` publication commands read."""
    from app.commands import publication

    monkeypatch.setattr(publication, "get_settings", lambda: registry_settings)
    return registry_settings


@pytest.fixture
def ranker_registry_down(monkeypatch):
    """The MLflow registry refuses to move the ranker's aliases (the retriever's still move)."""
    from training import registry

    set_alias = registry.set_alias

    def refuse_ranker(settings, alias, version, *, model=None):
        if model == settings.mlflow.ranker_model_name:
            raise ConnectionError("registry unreachable")
        return set_alias(settings, alias, version, model=model)

    monkeypatch.setattr(registry, "set_alias", refuse_ranker)
