"""The MLflow adapter against a real SQLite tracking store and file artifacts."""

from __future__ import annotations

import contextlib

import mlflow
import numpy as np
import pandas as pd
import pytest

from graphrec.settings import Settings
from training import registry, runs
from training.data import InsufficientDataError
from training.embeddings import ModelEmbeddings


def _random_embeddings(seed: int, meta=None) -> ModelEmbeddings:
    rng = np.random.default_rng(seed)
    return ModelEmbeddings(
        np.arange(100, 130, dtype=np.int64),
        rng.permutation(np.arange(5000, 5050)).astype(np.int64),
        rng.normal(size=(30, 8)).astype(np.float32),
        rng.normal(size=(50, 8)).astype(np.float32),
        meta or {"data_window": ["2025-01-01", "2025-01-14"], "metrics": {"recall_at_20": 0.1}},
    )


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return Settings(home=tmp_path_factory.mktemp("registry"))


def test_configure_keeps_everything_under_home(settings, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    experiment_id = registry.configure(settings)
    assert registry.configure(settings) == experiment_id  # idempotent
    experiment = registry.client_for(settings).get_experiment(experiment_id)
    assert experiment.name == settings.mlflow.experiment
    assert experiment.artifact_location == settings.artifacts_dir.as_uri()
    assert mlflow.get_tracking_uri() == settings.tracking_uri
    assert (settings.mlflow_dir / "mlflow.db").exists()
    registry.register_model(settings, _random_embeddings(0))
    assert not (tmp_path / "mlruns").exists()
    assert any(settings.artifacts_dir.rglob("embeddings.npz"))


def test_round_trip_by_version_and_alias(settings):
    original = _random_embeddings(1)
    version = registry.register_model(settings, original, tags={"ds": "2025-01-14"}, alias=registry.CHALLENGER)
    assert registry.get_alias_version(settings, registry.CHALLENGER) == version
    by_alias = registry.load_model_embeddings(settings, registry.CHALLENGER)
    by_version = registry.load_model_embeddings(settings, version)
    for loaded in (by_alias, by_version):
        np.testing.assert_array_equal(loaded.user_ids, original.user_ids)
        np.testing.assert_array_equal(loaded.item_ids, original.item_ids)
        np.testing.assert_array_equal(loaded.user_emb, original.user_emb)
        np.testing.assert_array_equal(loaded.item_emb, original.item_emb)
        assert loaded.meta["model_version"] == version
        assert loaded.meta["data_window"] == ["2025-01-01", "2025-01-14"]
        assert loaded.meta["metrics"] == {"recall_at_20": 0.1}
        assert loaded.meta["run_id"]
    assert registry.get_version_tags(settings, version)["ds"] == "2025-01-14"


def test_aliases_move_and_missing_alias_is_none(settings):
    assert registry.get_alias_version(settings, "no-such-alias") is None
    first = registry.register_model(settings, _random_embeddings(2))
    second = registry.register_model(settings, _random_embeddings(3))
    assert second == first + 1
    registry.set_alias(settings, registry.CHAMPION, first)
    assert registry.get_alias_version(settings, registry.CHAMPION) == first
    registry.set_alias(settings, registry.CHAMPION, second)
    assert registry.get_alias_version(settings, registry.CHAMPION) == second
    with pytest.raises(LookupError):
        registry.load_model_embeddings(settings, "no-such-alias")


def test_empty_registry_has_no_alias(tmp_path):
    assert registry.get_alias_version(Settings(home=tmp_path), registry.CHAMPION) is None


@pytest.mark.parametrize("k", [1, 5, 50])
def test_pyfunc_predicts_top_k_by_inner_product(settings, k):
    original = _random_embeddings(4)
    version = registry.register_model(settings, original)
    model = mlflow.pyfunc.load_model(f"models:/{settings.mlflow.retriever_model_name}/{version}")
    users = [101, 129, 999_999]  # the last one is unknown to the model
    out = model.predict(pd.DataFrame({"user_id": users}), params={"k": k})
    assert list(out.columns) == ["user_id", "rank", "item_id", "score"]
    assert sorted(set(out["user_id"])) == [101, 129]
    for user in (101, 129):
        rows = out[out["user_id"] == user]
        scores = original.item_emb @ original.user_emb[user - 100]
        expected = original.item_ids[np.argsort(-scores)[:k]]
        assert rows["item_id"].tolist() == expected.tolist()
        assert rows["rank"].tolist() == list(range(1, k + 1))


def test_list_model_versions(settings, tmp_path):
    assert registry.list_model_versions(Settings(home=tmp_path)) == []
    version = registry.register_model(settings, _random_embeddings(5), tags={"ds": "2025-01-02", "recall_at_20": 0.25})
    registry.set_alias(settings, "listed", version)
    rows = registry.list_model_versions(settings)
    assert [row["version"] for row in rows] == list(range(1, version + 1))
    last = rows[-1]
    assert last["aliases"] == ["listed"] and last["ds"] == "2025-01-02" and last["recall_at_20"] == 0.25
    assert last["run_id"] and last["canary_decision"] is None


def test_load_in_a_fresh_process_without_configure(settings, tmp_path):
    """Airflow runs each task in a new process: loading must not rely on earlier global MLflow state."""
    import os
    import subprocess
    import sys

    version = registry.register_model(settings, _random_embeddings(7), alias=registry.CHALLENGER)
    code = (
        "from graphrec.settings import Settings\n"
        "from training.registry import load_model_embeddings\n"
        f"emb = load_model_embeddings(Settings(home={str(settings.home)!r}), {version})\n"
        "print(emb.meta['model_version'])\n"
    )
    # Whatever the process-wide MLflow default is (here: another, empty store), the
    # installation's own store must be used.
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'elsewhere.db'}"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(version)


def test_a_registered_model_is_created_once_and_registering_prints_nothing(settings, capfd):
    capfd.readouterr()
    first = registry.register_model(settings, _random_embeddings(8), tags={"ds": "2025-01-03", "reason": "manual"})
    second = registry.register_model(settings, _random_embeddings(9))
    err = capfd.readouterr().err
    # mlflow.register_model prints these to stderr, which Airflow's task log shows as errors.
    for message in ("already exists", "Successfully registered", "Created version"):
        assert message not in err
    assert second == first + 1
    assert registry.get_version_tags(settings, first) == {"ds": "2025-01-03", "reason": "manual"}
    model = registry.client_for(settings).get_registered_model(settings.mlflow.retriever_model_name)
    assert model.description == registry.RETRIEVER_DESCRIPTION


def test_the_experiment_gets_a_description_and_its_kind(settings):
    experiment = registry.client_for(settings).get_experiment(registry.configure(settings))
    assert experiment.tags[registry.NOTE_TAG] == registry.experiment_description(settings)
    assert experiment.tags[registry.EXPERIMENT_KIND_TAG] == "custom_model_development"


@pytest.mark.parametrize("outcome", ["kept", "discarded", "insufficient", "failed"])
def test_a_training_run_is_deleted_when_it_trained_nothing(settings, outcome):
    def work(run):
        mlflow.log_param("n_rows", 3)
        if outcome == "discarded":
            run.discard()
        elif outcome == "insufficient":
            raise InsufficientDataError("no rows")
        elif outcome == "failed":
            raise RuntimeError("broken")

    with contextlib.suppress(InsufficientDataError, RuntimeError), runs.training_run(settings, "r") as run:
        work(run)
    assert mlflow.active_run() is None
    stored = registry.client_for(settings).get_run(run.run_id)
    deleted = outcome in ("discarded", "insufficient")
    assert (stored.info.lifecycle_stage == "deleted") == deleted
    assert stored.info.status == {"kept": "FINISHED", "failed": "FAILED"}.get(outcome, "KILLED")
