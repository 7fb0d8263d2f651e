"""The training task and the canary gate end to end: curated parquet → MLflow registry.

One SQLite MLflow store is shared by the module (its schema migration costs seconds);
tests run in file order and build on each other's registry state where noted.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from training_sim import SMALL, curated_world

from serving.canary import run_canary
from serving.canary_result import CanaryResult
from training import registry
from training.data import InsufficientDataError
from training.embeddings import ModelEmbeddings
from training.results import RetrieverResult
from training.retriever import train_retriever

DS = SMALL.day(SMALL.days)
SUMMARY_KEYS = {
    "run_id",
    "model_version",
    "recall_at_20",
    "ndcg_at_20",
    "popularity_recall_at_20",
    "popularity_ndcg_at_20",
    "data_window",
    "n_users",
    "n_items",
    "n_train",
    "n_holdout",
    "seconds",
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return curated_world(tmp_path_factory.mktemp("retriever"), SMALL, training={"epochs": 20, "batch_size": 1024})


@pytest.fixture(scope="module")
def trained(settings):
    return train_retriever(settings, DS)


def test_summary_is_small_json_and_beats_popularity(trained):
    assert SUMMARY_KEYS <= trained.to_xcom().keys()
    assert RetrieverResult.from_xcom(json.loads(json.dumps(trained.to_xcom()))) == trained
    assert trained.model_version == 1 and not trained.reused
    assert trained.data_window == [(DS - dt.timedelta(days=13)).isoformat(), DS.isoformat()]
    assert trained.recall_at_20 > trained.popularity_recall_at_20
    assert trained.ndcg_at_20 > trained.popularity_ndcg_at_20
    assert trained.n_train > 0 and trained.n_holdout > 0
    assert trained.n_users <= SMALL.n_users and trained.n_items <= SMALL.n_items


def test_run_has_params_epoch_metrics_and_a_challenger_version(settings, trained):
    client = registry.client_for(settings)
    run = client.get_run(trained.run_id)
    assert run.data.params["dataset_fingerprint"] == trained.dataset_fingerprint
    assert run.data.params["reason"] == "schedule" and run.data.params["train.epochs"] == "20"
    assert run.data.params["code_version"].startswith("0.")
    assert run.data.metrics["recall_at_20"] == pytest.approx(trained.recall_at_20, abs=1e-6)
    epochs_run = trained.epochs_run  # 20 unless the validation split stopped it early
    losses = client.get_metric_history(trained.run_id, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, epochs_run + 1))
    evaluated = [e for e in range(1, epochs_run + 1) if e % settings.training.eval_every == 0 or e == epochs_run]
    assert [m.step for m in client.get_metric_history(trained.run_id, "val_recall_at_20")] == evaluated
    assert registry.get_alias_version(settings, registry.CHALLENGER) == trained.model_version
    tags = registry.get_version_tags(settings, trained.model_version)
    assert tags["ds"] == DS.isoformat() and tags["reason"] == "schedule" and "recall_at_20" in tags
    loaded = registry.load_model_embeddings(settings, registry.CHALLENGER)
    assert loaded.meta["data_window"] == trained.data_window
    assert loaded.meta["metrics"]["recall_at_20"] == pytest.approx(trained.recall_at_20, abs=1e-6)
    assert loaded.meta["run_id"] == trained.run_id and loaded.meta["model_version"] == 1


def test_rerun_reuses_the_version_and_fresh_run_reproduces_it(settings, trained):
    again = train_retriever(settings, DS)
    assert again.reused and again.model_version == trained.model_version
    assert again.recall_at_20 == trained.recall_at_20
    fresh = train_retriever(settings, DS, reuse=False, reason="manual")
    assert fresh.model_version == trained.model_version + 1
    assert fresh.recall_at_20 == trained.recall_at_20 and fresh.ndcg_at_20 == trained.ndcg_at_20
    assert registry.get_alias_version(settings, registry.CHALLENGER) == fresh.model_version


@pytest.mark.parametrize("ds", [DS + dt.timedelta(days=1), SMALL.start, dt.date(2030, 1, 1)])
def test_too_little_data_is_a_clear_error(settings, ds):
    with pytest.raises(InsufficientDataError):
        train_retriever(settings, ds)


def test_canary_promotes_the_first_challenger(settings, trained):
    result = run_canary(settings, DS, trained.model_version)
    assert CanaryResult.from_xcom(json.loads(json.dumps(result.to_xcom()))) == result
    assert result.promoted and not result.forced
    assert result.champion_version_before is None
    assert result.champion_version_after == trained.model_version
    assert result.champion is None
    assert result.challenger.recall == pytest.approx(trained.recall_at_20, abs=1e-6)
    assert result.popularity.recall == pytest.approx(trained.popularity_recall_at_20, abs=1e-6)
    assert registry.get_alias_version(settings, registry.CHAMPION) == trained.model_version
    tags = registry.get_version_tags(settings, trained.model_version)
    assert tags["canary.decision"] == "promoted" and tags["canary.ds"] == DS.isoformat()
    # No champion: nothing to compare with, the sanity floors decide.
    assert result.delta is None and result.checks["no_regression"].status == "skip"
    assert result.failed_checks == () and tags["canary.check.beats_popularity"] == "pass"
    assert tags["canary.check.no_regression"] == tags["canary.check.coverage"] == "skip"
    again = run_canary(settings, DS, trained.model_version)
    assert again.promoted and "already the champion" in again.reason


def _bad_challenger(settings) -> int:
    """Random embeddings over the champion's ids, registered like any model."""
    champion = registry.load_model_embeddings(settings, registry.CHAMPION)
    rng = np.random.default_rng(0)
    bad = ModelEmbeddings(
        champion.user_ids,
        champion.item_ids,
        rng.normal(size=champion.user_emb.shape).astype(np.float32),
        rng.normal(size=champion.item_emb.shape).astype(np.float32),
        {"model": "random", "data_window": champion.meta["data_window"]},
    )
    return registry.register_model(settings, bad, alias=registry.CHALLENGER)


def test_canary_rejects_a_bad_challenger_then_force_promotes_it(settings, trained):
    champion = registry.get_alias_version(settings, registry.CHAMPION)
    bad = _bad_challenger(settings)
    result = run_canary(settings, DS, bad)
    assert not result.promoted and result.reason.startswith("rejected")
    assert {"no_regression", "beats_popularity"} <= set(result.failed_checks)
    assert result.champion_version_before == result.champion_version_after == champion
    assert result.challenger.recall < result.champion.recall
    assert registry.get_alias_version(settings, registry.CHAMPION) == champion
    assert registry.get_version_tags(settings, bad)["canary.decision"] == "rejected"
    champion_tags = registry.get_version_tags(settings, champion)
    assert champion_tags["canary.decision"] == "retained" and champion_tags["canary.challenger_version"] == str(bad)

    forced = run_canary(settings, DS, bad, force=True)
    assert forced.promoted and forced.forced and forced.reason.startswith("forced")
    assert forced.champion_version_after == bad
    assert registry.get_alias_version(settings, registry.CHAMPION) == bad
    assert registry.get_version_tags(settings, bad)["canary.decision"] == "forced"
    assert registry.get_version_tags(settings, champion)["canary.decision"] == "replaced"


def test_canary_scores_models_with_different_id_maps(settings):
    """A model trained on an older, shorter window is compared through external ids."""
    older = train_retriever(settings, DS - dt.timedelta(days=1), window_days=3)
    current_champion = registry.get_alias_version(settings, registry.CHAMPION)
    strict = settings.updated({"canary.coverage_floor": 0.9})
    result = run_canary(strict, DS, older.model_version)
    assert result.champion_version_before == current_champion
    # The older LightGCN beats the random champion (with certainty) and popularity on today's holdout...
    assert result.checks["no_regression"].status == "pass" and result.delta.recall.ci_low > 0.1
    assert result.challenger.recall > result.popularity.recall
    # ...but random embeddings show every item to someone (coverage 1.0): a learned model's
    # coverage (about 0.5-0.75 here) is below 0.9 of that, so with a coverage floor of 0.9
    # only force replaces such a champion.
    assert result.failed_checks == ("coverage",), result.reason
    assert result.champion.coverage == 1.0 and not result.promoted
    forced = run_canary(strict, DS, older.model_version, force=True)
    assert forced.forced and forced.champion_version_after == older.model_version
    assert "coverage: coverage@20" in forced.reason
