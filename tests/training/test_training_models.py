"""Every retriever kind through the product path: train_retriever → MLflow → canary → publish → serve.

One SQLite MLflow store is shared by the module; tests run in file order and build on
each other's registry state where noted.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from pydantic import ValidationError
from training_sim import SMALL, curated_world

from graphrec.settings import RETRIEVER_MODELS, Settings
from serving.canary import run_canary
from training import registry
from training.data import load_window, temporal_split
from training.metrics import build_ranking_task, evaluate_embeddings
from training.retriever import train_retriever
from training.retriever_mlflow import FINAL_METRICS_TABLE

DS = SMALL.day(SMALL.days)
EPOCHS = 3  # lightgcn and mf: enough to check the plumbing, not the quality


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return curated_world(tmp_path_factory.mktemp("models"), SMALL, training={"epochs": EPOCHS, "batch_size": 1024})


@pytest.fixture(scope="module")
def trained(settings):
    """One registered version per kind, trained in the order of RETRIEVER_MODELS."""
    return {kind: train_retriever(settings, DS, model=kind) for kind in RETRIEVER_MODELS}


@pytest.fixture(scope="module")
def task(settings):
    window = load_window(settings, DS, settings.training.window_days)
    history, holdout = temporal_split(window.interactions, settings.training.holdout_days, end=window.end)
    return build_ranking_task(history, holdout)


def test_settings_choose_the_model_from_the_environment(monkeypatch):
    assert Settings().training.model == "lightgcn"
    assert (Settings().training.gfcf_k, Settings().training.gfcf_alpha) == (256, 0.3)
    monkeypatch.setenv("GRAPHREC_TRAINING__MODEL", "gfcf")
    assert Settings().training.model == "gfcf"
    monkeypatch.setenv("GRAPHREC_TRAINING__MODEL", "svd")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("kind", RETRIEVER_MODELS)
def test_each_kind_registers_a_version_scored_by_the_shared_evaluation(settings, trained, task, kind):
    summary = trained[kind]
    assert summary.model == kind and not summary.reused
    loaded = registry.load_model_embeddings(settings, summary.model_version)
    assert loaded.meta["model"] == kind
    metrics = evaluate_embeddings(loaded, task)
    assert summary.recall_at_20 == pytest.approx(metrics.recall, abs=1e-6)
    assert summary.ndcg_at_20 == pytest.approx(metrics.ndcg, abs=1e-6)
    assert loaded.meta["metrics"]["recall_at_20"] == pytest.approx(metrics.recall, abs=1e-6)
    client = registry.client_for(settings)
    run = client.get_run(summary.run_id)
    assert run.data.tags["model"] == run.data.params["model"] == kind
    assert registry.get_version_tags(settings, summary.model_version)["model"] == kind
    expected_dim = {
        "lightgcn": 64,
        "mf": 64,
        "popularity": 1,
        "gfcf": 2 * min(settings.training.gfcf_k, summary.n_users - 1, summary.n_items - 1),
    }[kind]
    assert loaded.dim == expected_dim
    assert run.data.params["embedding_dim"] == str(expected_dim) and "embedding_dim" not in run.data.metrics
    table = mlflow.load_table(FINAL_METRICS_TABLE, run_ids=[summary.run_id])
    assert table["model"].tolist() == [kind, "popularity"]
    expected = [metrics.recall, summary.popularity_recall_at_20]
    assert table["recall_at_20"].tolist() == pytest.approx(expected, abs=1e-6)
    validated = kind in ("lightgcn", "mf")  # the trained kinds; gfcf and popularity fit the whole window
    assert table["val_recall_at_20"].notna().tolist() == [validated, False]
    assert (summary.n_validation > 0) == validated
    assert bool(client.get_metric_history(summary.run_id, "train_loss")) == validated


def test_params_are_logged_per_kind(settings, trained):
    params = {kind: registry.client_for(settings).get_run(trained[kind].run_id).data.params for kind in trained}
    assert params["lightgcn"]["train.num_layers"] == "3" and params["lightgcn"]["train.epochs"] == str(EPOCHS)
    assert params["mf"]["train.num_layers"] == "0"
    assert (params["gfcf"]["gfcf.k"], params["gfcf"]["gfcf.alpha"]) == ("256", "0.3")
    assert not any(name.startswith(("train.", "gfcf.")) for name in params["popularity"])
    gfcf = registry.load_model_embeddings(settings, trained["gfcf"].model_version)
    assert gfcf.meta["params"] == {"k": 256, "alpha": 0.3, "seed": 42}
    assert gfcf.meta["fit_details"]["gfcf_k_used"] == gfcf.dim // 2


def test_gfcf_beats_popularity_and_popularity_is_the_baseline(trained):
    gfcf, popularity = trained["gfcf"], trained["popularity"]
    assert gfcf.recall_at_20 > gfcf.popularity_recall_at_20 + 0.02
    assert gfcf.ndcg_at_20 > gfcf.popularity_ndcg_at_20
    assert popularity.recall_at_20 == pytest.approx(popularity.popularity_recall_at_20, abs=1e-6)


def test_training_key_includes_the_kind_and_its_params(settings, trained):
    again = train_retriever(settings, DS, model="gfcf")
    assert again.reused and again.model_version == trained["gfcf"].model_version
    other = train_retriever(settings.updated({"training.gfcf_k": 8}), DS, model="gfcf")
    assert not other.reused and other.model_version > max(s.model_version for s in trained.values())
    assert registry.load_model_embeddings(settings, other.model_version).dim == 16
    # The setting is the default kind; the argument overrides it.
    by_setting = train_retriever(settings.updated({"training.model": "mf"}), DS)
    assert by_setting.reused and by_setting.model_version == trained["mf"].model_version


def test_unknown_kind_is_refused(settings):
    with pytest.raises(ValueError, match="unknown retriever model"):
        train_retriever(settings, DS, model="svd")


def test_canary_compares_kinds_of_different_dimensions(settings, trained):
    """A lightgcn champion (dim 64) against a gfcf challenger (dim 2k): each scored on its own."""
    registry.set_alias(settings, registry.CHAMPION, trained["lightgcn"].model_version)
    result = run_canary(settings, DS, trained["gfcf"].model_version)
    assert result.champion_version_before == trained["lightgcn"].model_version
    assert result.challenger.recall == pytest.approx(trained["gfcf"].recall_at_20, abs=1e-6)
    assert result.champion.recall == pytest.approx(trained["lightgcn"].recall_at_20, abs=1e-6)
    # The gate's rule, on numbers scored on each model's own embeddings: the paired interval
    # of the per-user deltas and the popularity floor decide.
    delta = result.delta.recall
    assert delta.mean == pytest.approx(result.challenger.recall - result.champion.recall, abs=3e-6)
    assert result.checks["no_regression"].status == ("pass" if delta.ci_low >= -settings.canary.tolerance else "fail")
    assert result.promoted == (not result.failed_checks)
    baseline = run_canary(settings, DS, trained["popularity"].model_version)
    assert not baseline.promoted and "popularity" in baseline.reason


def test_gfcf_publishes_and_serves(settings, trained):
    from serving.publish import publish_model, read_history
    from serving.recommender import Recommender

    version = trained["gfcf"].model_version
    published = publish_model(settings, version, DS)
    assert published.model_version == version
    emb = registry.load_model_embeddings(settings, version)
    recommender = Recommender(settings)
    assert recommender.refresh().index.d == emb.dim
    seen, _ = read_history(settings, DS)
    for row in (0, len(emb.user_ids) // 2):
        user = int(emb.user_ids[row])
        got = recommender.recommend(user, 10)
        assert not got.fallback and got.model_version == version and len(got.items) == 10
        mine = seen.loc[seen["user_id"] == user, "item_id"].to_numpy()
        ids = [item.item_id for item in got.items]
        assert not set(ids) & set(mine.tolist())
        # FAISS returns the exact top 10 unseen items (compared by score: ties may swap).
        scores = emb.item_emb @ emb.user_emb[row]
        best = np.sort(scores[~np.isin(emb.item_ids, mine)])[::-1][:10]
        np.testing.assert_allclose([item.score for item in got.items], best, rtol=1e-4, atol=1e-5)
