"""The training stages' results cross XCom as JSON and come back equal (training.results)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from training.results import RankerResult, RetrieverResult

DAY = dt.date(2025, 1, 14)
RETRIEVER = RetrieverResult(
    run_id="r1",
    model_version=3,
    model="lightgcn",
    recall_at_20=0.2,
    ndcg_at_20=0.1,
    popularity_recall_at_20=0.1,
    popularity_ndcg_at_20=0.05,
    data_window=["2025-01-01", "2025-01-14"],
    n_users=40,
    n_items=30,
    n_train=900,
    n_fit=800,
    n_validation=100,
    n_holdout=90,
    n_eval_users=20,
    ds=DAY,
    reason="schedule",
    dataset_fingerprint="abc",
    reused=False,
    warm_start=True,
    warm_start_from=2,
    init_reason="warm start from champion v2",
    full_retrain_ds=DAY - dt.timedelta(days=3),
    seconds=12.5,
    epochs_run=4,
    stopped_early=True,
    best_epoch=2,
    refit_epochs=2,
    val_recall_at_20=0.3,
    val_ndcg_at_20=0.2,
)
RANKER = RankerResult(
    run_id="r2",
    model_version=5,
    retriever_version=3,
    ds=DAY,
    reason="schedule",
    evaluation={"ranker_ndcg_at_10": 0.3, "retrieval_ndcg_at_10": 0.25, "ranker_auc": None, "n_eval_users": 20},
    evaluation_key={"dataset_fingerprint": "abc", "window_days": 14, "holdout_days": 1, "candidates": 100, "k": 10},
    n_rows=1000,
    n_positives=40,
    n_users=20,
    cuts=["2025-01-12T00:00:00+00:00"],
    proxies=[{"cut": "2025-01-12T00:00:00+00:00", "mode": "fit", "data_until": "2025-01-12T00:00:00+00:00"}],
    proxy_model="lightgcn",
    proxy_seconds=1.5,
    proxy_fits=1,
    feature_join_seconds=0.4,
    best_epoch=None,
    fit_seconds=3.0,
    n_fit_rows=800,
    seconds=9.0,
)


@pytest.mark.parametrize("result", [RETRIEVER, RANKER, dataclasses.replace(RETRIEVER, best_epoch=None)])
def test_round_trip_through_json(result):
    plain = json.loads(json.dumps(result.to_xcom()))
    assert plain["ds"] == "2025-01-14" and plain["model_version"] == result.model_version
    assert type(result).from_xcom(plain) == result


def test_the_stored_summary_restores_with_changes():
    summary = {k: v for k, v in RETRIEVER.to_xcom().items() if k != "seconds"}
    reused = RetrieverResult.from_summary(summary, reused=True, seconds=0.1)
    assert reused == dataclasses.replace(RETRIEVER, reused=True, seconds=0.1)
    older = {k: v for k, v in summary.items() if not k.startswith("val_") and k != "best_epoch"}
    assert RetrieverResult.from_summary(older, seconds=0.1).best_epoch is None  # absent keys of closed-form kinds
    with pytest.raises(TypeError, match="no field"):
        RetrieverResult.from_summary({**summary, "surprise": 1}, seconds=0.1)


def test_the_ranker_metrics_keep_their_cut_off():
    assert RANKER.k == 10 and RANKER.evaluation[f"ranker_ndcg_at_{RANKER.k}"] == 0.3
