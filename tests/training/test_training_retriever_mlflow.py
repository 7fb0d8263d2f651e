"""What train_retriever logs: validation split, curves, final metrics table, early-stopping fields,
counts as params, the experiment's description, few version tags, and runs that span the work."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import ViewType
from training_sim import SMALL, curated_world

import training.retriever as retriever_module
import training.retriever_fit as retriever_fit
from graphrec import contract
from training import registry
from training.data import InsufficientDataError, build_graph, load_window, temporal_split
from training.embeddings import ModelEmbeddings
from training.metrics import RankingMetrics
from training.models import FittedRetriever
from training.retriever import train_config, train_retriever
from training.retriever_mlflow import (
    FINAL_METRICS_TABLE,
    SUMMARY_TAG,
    TRAINING_KEY_TAG,
    chosen_evaluation,
    final_metrics_table,
    tag_value,
)
from training.train import train_lightgcn

DS = SMALL.day(SMALL.days)
EPOCHS = 4
KEY = [contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return curated_world(
        tmp_path_factory.mktemp("retriever-mlflow"), SMALL, training={"epochs": EPOCHS, "batch_size": 1024}
    )


@pytest.fixture(scope="module")
def trained(settings):
    """A lightgcn run, recording what went into and came out of the validation split."""
    calls = []
    split = retriever_fit.validation_split

    def spy(train, fraction, seed):
        fit, validation = split(train, fraction, seed)
        calls.append((train, fit, validation))
        return fit, validation

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(retriever_fit, "validation_split", spy)
        summary = train_retriever(settings, DS, model="lightgcn")
    return summary, calls


@pytest.fixture(scope="module")
def timed(settings, trained):
    """When a run (the next day's model, reuse off) loaded its data and began its fit."""
    moments = {}
    load, fit = retriever_module.load_window, retriever_fit.fit_model

    def load_spy(*args, **kwargs):
        moments.setdefault("load", time.time())
        return load(*args, **kwargs)

    def fit_spy(*args, **kwargs):
        moments.setdefault("fit", time.time())
        return fit(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(retriever_module, "load_window", load_spy)
        patch.setattr(retriever_fit, "fit_model", fit_spy)
        summary = train_retriever(settings, DS, model="mf", reuse=False)
    moments["returned"] = time.time()
    return summary, moments


def test_validation_comes_from_the_training_part_only(settings, trained):
    summary, calls = trained
    assert len(calls) == 1
    given, fit, validation = calls[0]
    window = load_window(settings, DS, settings.training.window_days)
    train, holdout = temporal_split(window.interactions, settings.training.holdout_days, end=window.end)
    holdout_keys = pd.MultiIndex.from_frame(holdout[KEY])
    for part in (given, fit, validation):
        assert not pd.MultiIndex.from_frame(part[KEY]).isin(holdout_keys).any()
    assert len(given) == len(train) == summary.n_train == summary.n_fit + summary.n_validation
    assert 0 < summary.n_validation < summary.n_fit
    # Early stopping chose the epochs on the fit part; the model is then refit on the whole
    # training part for that many epochs: the same embeddings as a direct run.
    assert summary.refit_epochs == summary.best_epoch > 0
    model = registry.load_model_embeddings(settings, summary.model_version)
    graph = build_graph(train)
    config = dataclasses.replace(train_config(settings), epochs=summary.best_epoch, patience=0)
    direct = train_lightgcn(graph, config, progress=False).embeddings
    np.testing.assert_array_equal(model.user_ids, graph.users.ids)
    np.testing.assert_array_equal(model.item_ids, graph.items.ids)
    np.testing.assert_allclose(model.item_emb, direct.item_emb, rtol=0, atol=1e-6)
    assert not (settings.home / "checkpoints").exists() or not any((settings.home / "checkpoints").iterdir())


def test_curves_have_one_point_per_epoch_and_evaluation(settings, trained):
    summary, _ = trained
    client = registry.client_for(settings)
    epochs_run = summary.epochs_run
    assert 1 <= epochs_run <= EPOCHS
    losses = client.get_metric_history(summary.run_id, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, epochs_run + 1))
    evaluated = [e for e in range(1, epochs_run + 1) if e % settings.training.eval_every == 0 or e == epochs_run]
    for name in ("val_recall_at_20", "val_ndcg_at_20"):
        history = client.get_metric_history(summary.run_id, name)
        assert sorted(m.step for m in history) == evaluated
        assert all(0 <= m.value <= 1 for m in history)
    run = client.get_run(summary.run_id)
    assert run.data.params["epochs_run"] == str(epochs_run)
    assert run.data.params["stopped_early"] == tag_value(summary.stopped_early)
    assert run.data.params["validation_fraction"] == str(settings.training.validation_fraction)
    assert run.data.params["train.seed"] == str(settings.seed)
    assert run.data.params["dataset_fingerprint"] == summary.dataset_fingerprint
    assert "code_version" in run.data.params
    if summary.best_epoch is not None:  # reported by the early-stopping trainer
        assert run.data.params["best_epoch"] == str(summary.best_epoch)


#: The run's metrics: holdout quality and the per-epoch curves, nothing else.
QUALITY = {"recall_at_20", "ndcg_at_20", "popularity_recall_at_20", "popularity_ndcg_at_20"}
CURVES = {"train_loss", "val_recall_at_20", "val_ndcg_at_20"}
COUNTS = (
    "n_users",
    "n_items",
    "n_edges",
    "n_fit",
    "n_validation",
    "n_val_users",
    "n_eval_users",
    "embedding_dim",
    "train_seconds",
    "epochs_run",
    "refit_epochs",
)


def test_counts_and_sizes_are_params_and_only_quality_and_curves_are_metrics(settings, trained):
    summary, _ = trained
    client = registry.client_for(settings)
    run = client.get_run(summary.run_id)
    assert set(run.data.metrics) == QUALITY | CURVES
    for name in COUNTS:
        assert name in run.data.params and name not in run.data.metrics, name
    assert run.data.params["n_users"] == str(summary.n_users) and run.data.params["embedding_dim"] == "64"
    for name in CURVES:  # a curve: one point per epoch, not a single bar
        assert len(client.get_metric_history(summary.run_id, name)) > 1, name


def test_the_experiment_says_what_it_holds(settings, trained):
    summary, _ = trained
    client = registry.client_for(settings)
    experiment = client.get_experiment(client.get_run(summary.run_id).info.experiment_id)
    note = experiment.tags[registry.NOTE_TAG]
    for name in ("recall_at_20", "popularity_recall_at_20", "ranker_ndcg_at_10", "retrieval_ndcg_at_10", "val_auc"):
        assert f"`{name}`" in note
    assert settings.mlflow.retriever_model_name in note and settings.mlflow.ranker_model_name in note
    assert experiment.tags[registry.EXPERIMENT_KIND_TAG] == registry.CUSTOM_MODEL_DEVELOPMENT
    # A description edited in the UI is kept.
    client.set_experiment_tag(experiment.experiment_id, registry.NOTE_TAG, "edited")
    registry.configure(settings)
    assert client.get_experiment(experiment.experiment_id).tags[registry.NOTE_TAG] == "edited"
    client.set_experiment_tag(experiment.experiment_id, registry.NOTE_TAG, note)


#: Version tags something reads: training.retriever_init.choose_init (the next warm start),
#: training.retriever_mlflow.find_version (reruns), training.registry.list_model_versions
#: (graphrec status, training.ranker_rows.registered_proxy) and the serving tests.
READ_TAGS = {
    "ds",
    "reason",
    "model",
    "recall_at_20",
    "ndcg_at_20",
    "warm_start",
    "warm_start_from",
    "full_retrain_ds",
    "full_retrain_epochs",
    TRAINING_KEY_TAG,
    SUMMARY_TAG,
}


def test_a_version_has_a_few_tags_and_every_tag_that_is_read(settings, trained):
    summary, _ = trained
    tags = registry.get_version_tags(settings, summary.model_version)
    assert READ_TAGS <= set(tags), READ_TAGS - set(tags)
    assert len(tags) <= 15, sorted(tags)
    assert json.loads(tags["data_window"]) == summary.data_window
    stored = json.loads(tags[SUMMARY_TAG])  # what was dropped from the tags is folded in here
    assert stored["popularity_recall_at_20"] == summary.popularity_recall_at_20
    assert stored["dataset_fingerprint"] == summary.dataset_fingerprint and stored["init_reason"]


def test_the_run_covers_the_work_from_loading_the_data_to_registering(settings, timed):
    summary, moments = timed
    run = registry.client_for(settings).get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.start_time <= moments["load"] * 1000 < moments["fit"] * 1000
    assert moments["fit"] * 1000 < run.info.end_time <= moments["returned"] * 1000
    version = registry.client_for(settings).get_model_version(
        settings.mlflow.retriever_model_name, str(summary.model_version)
    )
    assert run.info.start_time <= version.creation_timestamp <= run.info.end_time


def _runs(settings) -> list[str]:
    client = registry.client_for(settings)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    return [r.info.run_id for r in client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)]


def test_runs_that_train_nothing_are_deleted(settings, trained):
    summary, _ = trained
    before = _runs(settings)
    again = train_retriever(settings, DS, model="lightgcn")
    assert again.reused and again.model_version == summary.model_version
    with pytest.raises(InsufficientDataError):
        train_retriever(settings, dt.date(2030, 1, 1))
    assert _runs(settings) == before
    assert registry.client_for(settings).get_run(summary.run_id).info.lifecycle_stage == "active"


def test_the_summary_line_says_which_holdout_its_numbers_are_from(settings, caplog):
    with caplog.at_level(logging.INFO, logger="training.retriever"):
        summary = train_retriever(settings, DS, model="gfcf", reuse=False)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("gfcf on the training holdout")]
    window = settings.training.window_days
    assert f"({DS.isoformat()}: the last 1 day of the {window}-day window" in line
    assert f"recall@20 {summary.recall_at_20:.4f}" in line
    assert f"popularity on the same holdout: recall@20 {summary.popularity_recall_at_20:.4f}" in line
    assert "the canary scores it again on the same holdout" in line and "over a" not in line


def test_final_metrics_table_matches_the_run_metrics(settings, trained):
    summary, _ = trained
    run = registry.client_for(settings).get_run(summary.run_id)
    assert FINAL_METRICS_TABLE in [a.path for a in registry.client_for(settings).list_artifacts(summary.run_id)]
    table = mlflow.load_table(FINAL_METRICS_TABLE, run_ids=[summary.run_id]).set_index("model")
    assert list(table.index) == ["lightgcn", "popularity"]
    assert list(table["role"]) == ["candidate", "baseline"]
    metrics = run.data.metrics
    for column, name in (("recall_at_20", "recall_at_20"), ("ndcg_at_20", "ndcg_at_20")):
        assert table.loc["lightgcn", column] == pytest.approx(metrics[name], abs=1e-9)
        assert table.loc["popularity", column] == pytest.approx(metrics[f"popularity_{name}"], abs=1e-9)
    assert (table["n_eval_users"] == summary.n_eval_users).all()
    assert table.loc["lightgcn", "val_recall_at_20"] == pytest.approx(summary.val_recall_at_20, abs=1e-6)
    assert table.loc["lightgcn", "val_epoch"] == (
        summary.best_epoch if summary.best_epoch is not None else summary.epochs_run
    )
    assert table.loc["popularity", ["val_recall_at_20", "val_ndcg_at_20", "val_epoch"]].isna().all()


def _metrics(recall: float, ndcg: float, n: int = 5) -> RankingMetrics:
    return RankingMetrics(20, recall, ndcg, n, n, np.zeros(n), np.zeros(n))


def test_final_metrics_table_without_validation():
    table = final_metrics_table("gfcf", _metrics(0.3, 0.2), _metrics(0.1, 0.05))
    assert table["model"].tolist() == ["gfcf", "popularity"]
    assert table["recall_at_20"].tolist() == [0.3, 0.1]
    assert table[["val_recall_at_20", "val_ndcg_at_20", "val_epoch"]].isna().all().all()


def _fitted(**fields) -> FittedRetriever:
    emb = ModelEmbeddings(np.arange(2), np.arange(2), np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32))
    evaluations = [(2, {"recall_at_20": 0.1}), (4, {"recall_at_20": 0.3}), (6, {"recall_at_20": 0.2})]
    return FittedRetriever(emb, 0.0, [1.0] * 6, evaluations, **fields)


@pytest.mark.parametrize(
    "fields, expected",
    [({}, 6), ({"best_epoch": 4, "stopped_early": True}, 4), ({"best_epoch": 99}, 6)],
)
def test_chosen_evaluation_is_that_of_the_kept_embeddings(fields, expected):
    assert chosen_evaluation(_fitted(**fields))[0] == expected
    assert chosen_evaluation(dataclasses.replace(_fitted(**fields), evaluations=[])) is None


def test_early_stopping_is_off_without_a_validation_split(settings):
    on, off = train_config(settings), train_config(settings.updated({"training.validation_fraction": 0.0}))
    assert on.eval_every == off.eval_every == settings.training.eval_every
    if hasattr(on, "patience"):  # the early-stopping trainer's field
        assert (on.patience, off.patience) == (settings.training.patience, 0)
