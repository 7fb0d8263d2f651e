"""The ranker task's own steps (training.ranker): negative sampling per candidate list, what its
MLflow run and version hold, and the task end to end with its Feast-backed steps stubbed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.ranker_columns import EVENT_TIMESTAMP
from graphrec import contract
from training.ranker_candidates import LABEL


def test_negative_sampling_keeps_every_positive_and_at_most_n_negatives_per_list():
    from training.ranker import sample_negatives

    rng = np.random.default_rng(0)
    at = [pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-01-02", tz="UTC")]
    rows = pd.DataFrame(
        {
            contract.USER_ID: np.repeat([1, 1, 2], 50),
            EVENT_TIMESTAMP: np.repeat([at[0], at[1], at[0]], 50),
            LABEL: (rng.random(150) < 0.1).astype(np.int64),
        }
    )
    kept = sample_negatives(rows, 5, seed=3)
    picked = rows.iloc[kept]
    assert (rows[LABEL] == 1).sum() == (picked[LABEL] == 1).sum()
    negatives = picked[picked[LABEL] == 0].groupby([contract.USER_ID, EVENT_TIMESTAMP]).size()
    assert len(negatives) == 3 and (negatives == 5).all()
    assert (sample_negatives(rows, 5, seed=3) == kept).all()  # seeded
    assert len(sample_negatives(rows, 0, seed=3)) == 150


#: evaluate_pair's numbers for one pair (k = 10).
EVALUATION = {
    "n_eval_users": 5,
    "candidates": 100,
    "retrieval_hr_at_10": 0.5,
    "retrieval_ndcg_at_10": 0.3,
    "popularity_hr_at_10": 0.2,
    "popularity_ndcg_at_10": 0.1,
    "ranker_hr_at_10": 0.6,
    "ranker_ndcg_at_10": 0.35,
    "ranker_auc": 0.7,
}


def test_the_ranker_run_charts_quality_and_curves_and_keeps_counts_as_params(tmp_path):
    import datetime as dt
    import json

    from bst_rows import VOCAB

    from graphrec.settings import Settings
    from training import registry, runs
    from training.bst import build_bst
    from training.data import Window
    from training.ranker import _log_inputs, _log_results, version_tags

    settings = Settings(home=tmp_path)
    ds = dt.date(2025, 1, 14)
    window = Window(dt.date(2025, 1, 1), ds, (ds,), pd.DataFrame(), "f" * 64)
    cut = "2025-01-12T00:00:00+00:00"
    info = {
        "n_rows": 1000,
        "n_positives": 30,
        "n_users": 10,
        "cuts": [cut],
        "proxies": [{"cut": cut, "mode": "fit", "data_until": cut}],
        "proxy_model": "lightgcn",
        "proxy_seconds": 1.2,
        "proxy_fits": 1,
        "feature_join_seconds": 0.5,
    }
    fit_info = {
        "losses": [0.5, 0.4, 0.3],
        "val_auc": [0.6, 0.65, 0.7],
        "best_epoch": 3,
        "fit_seconds": 2.0,
        "n_fit_rows": 800,
    }
    with runs.training_run(settings, "ranker-bst-test") as run:
        _log_inputs(settings, window, 3, reason="schedule", tags={"trigger": "drift"})
        _log_results(build_bst(VOCAB, seed=0, seq_len=6), fit_info, EVALUATION, info)
    client = registry.client_for(settings)
    logged = client.get_run(run.run_id).data
    quality = {name for name in EVALUATION if name not in ("n_eval_users", "candidates")}
    assert set(logged.metrics) == quality | {"train_loss", "val_auc"}
    assert [m.step for m in client.get_metric_history(run.run_id, "val_auc")] == [1, 2, 3]
    for name in ("n_eval_users", "n_rows", "n_positives", "n_users", "proxy_fits", "fit_seconds", "n_fit_rows"):
        assert name in logged.params, name
    assert logged.params["cuts"] == str(settings.ranker.cuts) and json.loads(logged.params["cut_times"]) == [cut]
    assert logged.params["bst.seq_len"] == "6" and logged.tags["trigger"] == "drift"

    tags = version_tags(settings, 3, ds, "schedule", window, {**EVALUATION, "ranker_auc": None}, {"trigger": "drift"})
    assert tags["retriever_version"] == 3 and tags["ds"] == "2025-01-14" and tags["trigger"] == "drift"
    assert {"ranker_ndcg_at_10", "retrieval_ndcg_at_10"} <= set(tags) and "ranker_auc" not in tags
    assert len(tags) <= 15


def test_train_ranker_runs_from_loading_the_data_to_a_tagged_version(tmp_path, monkeypatch, caplog):
    """train_ranker end to end on a tiny world, with the Feast-backed rows and evaluation stubbed."""
    import datetime as dt
    import logging
    import time

    from bst_rows import frame, row
    from mlflow.entities import ViewType
    from training_sim import TINY, curated_world

    import training.ranker as ranker_module
    from training import registry
    from training.data import InsufficientDataError
    from training.embeddings import ModelEmbeddings

    settings = curated_world(tmp_path, TINY, ranker={"epochs": 2})
    ds = TINY.day(TINY.days)
    rng = np.random.default_rng(0)
    embeddings = ModelEmbeddings(
        np.arange(TINY.n_users, dtype=np.int64),
        np.arange(TINY.n_items, dtype=np.int64),
        rng.normal(size=(TINY.n_users, 4)).astype(np.float32),
        rng.normal(size=(TINY.n_items, 4)).astype(np.float32),
        {"model": "mf"},
    )
    retriever_version = registry.register_model(settings, embeddings)
    rows = frame(*[row(100 + k % 60, [100 + (k + 1) % 60], user=k // 4, score=float(k % 7)) for k in range(400)])
    rows[LABEL] = np.arange(400) % 2
    moments = {}
    load = ranker_module.load_window

    def load_spy(*args, **kwargs):
        moments.setdefault("load", time.time())
        return load(*args, **kwargs)

    def rows_stub(settings, train, retriever, at):
        moments["rows"] = time.time()
        info = {"cuts": [], "proxies": [], "proxy_model": "mf", "proxy_seconds": 0.0, "proxy_fits": 0}
        return rows, {"n_rows": len(rows), "n_positives": 200, "n_users": 100, **info, "feature_join_seconds": 0.0}

    monkeypatch.setattr(ranker_module, "load_window", load_spy)
    monkeypatch.setattr(ranker_module, "build_training_rows", rows_stub)
    monkeypatch.setattr(ranker_module, "evaluate_pair", lambda *args: dict(EVALUATION))
    with caplog.at_level(logging.INFO, logger="training"):
        result = ranker_module.train_ranker(settings, ds, retriever_version, tags={"trigger": "drift"})
    returned = time.time()

    client = registry.client_for(settings)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == f"ranker-bst-{ds.isoformat()}-schedule"
    assert run.info.start_time <= moments["load"] * 1000 <= moments["rows"] * 1000 < run.info.end_time
    assert run.info.end_time <= returned * 1000
    assert set(run.data.metrics) == {name for name in EVALUATION if name not in ("n_eval_users", "candidates")} | {
        "train_loss",
        "val_auc",
    }
    assert run.data.params["n_rows"] == "400" and run.data.params["best_epoch"] == str(result.best_epoch)
    tags = registry.get_version_tags(settings, result.model_version, model=settings.mlflow.ranker_model_name)
    assert tags["retriever_version"] == str(retriever_version) and tags["trigger"] == "drift"
    assert tags["ranker_ndcg_at_10"] == "0.35" and len(tags) <= 15
    alias = registry.get_alias_version(settings, registry.CHALLENGER, model=settings.mlflow.ranker_model_name)
    assert alias == result.model_version
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("ranker epoch 2/2: train logloss ") for m in messages)
    assert any(
        m.startswith(f"ranker v{result.model_version} (paired with retriever v{retriever_version}) on the holdout")
        and "NDCG@10 ranker 0.3500, retrieval order 0.3000, popularity 0.1000" in m
        for m in messages
    )

    # A day without data: the task is skipped and leaves no run behind.
    experiment = client.get_experiment_by_name(settings.mlflow.experiment).experiment_id
    before = client.search_runs([experiment], run_view_type=ViewType.ACTIVE_ONLY)
    with pytest.raises(InsufficientDataError):
        ranker_module.train_ranker(settings, dt.date(2030, 1, 1), retriever_version)
    assert len(client.search_runs([experiment], run_view_type=ViewType.ACTIVE_ONLY)) == len(before)
