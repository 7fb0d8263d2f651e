"""What the two nightly training stages return: :class:`RetrieverResult` and :class:`RankerResult`.

:func:`training.retriever.train_retriever` and :func:`training.ranker.train_ranker`
return these frozen dataclasses (:class:`graphrec.handoff.Handoff`); the DAG hands them
to XCom with :meth:`~graphrec.handoff.Handoff.to_xcom` and a downstream task rebuilds
them with :meth:`~graphrec.handoff.Handoff.from_xcom`. They hold references and scalars
only (run ids, versions, metrics, counts). This module imports no torch, MLflow or
Feast, so the DAG's tasks and the command line can read a result without loading them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Self

from graphrec.handoff import Handoff


@dataclasses.dataclass(frozen=True)
class RetrieverResult(Handoff):
    """A registered retriever version (alias ``challenger``) and how it was trained.

    Args:
        run_id: the MLflow run.
        model_version: the registered version of ``settings.mlflow.retriever_model_name``.
        model: the retriever kind (``lightgcn``, ``mf``, ``gfcf``, ``popularity``).
        recall_at_20, ndcg_at_20: the model's holdout metrics.
        popularity_recall_at_20, popularity_ndcg_at_20: the popularity baseline's.
        data_window: ``[first day, last day]`` of the window, ISO days.
        n_users, n_items: the model's users and items (those of its training graph).
        n_train: training events (the window before the holdout).
        n_fit, n_validation: how they were split for early stopping (``n_validation``
            is ``0`` without a validation split).
        n_holdout: holdout events.
        n_eval_users: holdout users the metrics average over.
        ds: the run's day (the window's last day).
        reason: why the run happened (``"schedule"``, ``"drift..."``, ``"manual"``...).
        dataset_fingerprint: sha256 of the window's curated files.
        reused: the same inputs were trained before and that version was returned.
        warm_start: the run started from the champion's embeddings.
        warm_start_from: the champion version it started from.
        init_reason: why it was a warm start or a full retrain, in words.
        full_retrain_ds: the day of the last full retrain of this model's line.
        seconds: wall time of the call.
        epochs_run: trained kinds: epochs trained.
        stopped_early: trained kinds: whether early stopping ended the training.
        best_epoch: trained kinds with early stopping: the epoch it kept.
        refit_epochs: trained kinds: epochs of the refit on the whole window (``0``: none).
        val_recall_at_20, val_ndcg_at_20: trained kinds with a validation split: the kept
            embeddings' validation metrics.
    """

    run_id: str
    model_version: int
    model: str
    recall_at_20: float
    ndcg_at_20: float
    popularity_recall_at_20: float
    popularity_ndcg_at_20: float
    data_window: list[str]
    n_users: int
    n_items: int
    n_train: int
    n_fit: int
    n_validation: int
    n_holdout: int
    n_eval_users: int
    ds: dt.date
    reason: str
    dataset_fingerprint: str
    reused: bool
    warm_start: bool
    warm_start_from: int | None
    init_reason: str
    full_retrain_ds: dt.date
    seconds: float
    epochs_run: int | None = None
    stopped_early: bool | None = None
    best_epoch: int | None = None
    refit_epochs: int | None = None
    val_recall_at_20: float | None = None
    val_ndcg_at_20: float | None = None

    @classmethod
    def from_summary(cls, summary: dict[str, Any], **changes: Any) -> Self:
        """The result from the JSON summary stored on the version (tag ``summary``), with ``changes``."""
        return cls.from_xcom({**summary, **changes})


@dataclasses.dataclass(frozen=True)
class RankerResult(Handoff):
    """A registered BST ranker version (alias ``challenger``), paired with a retriever version.

    Args:
        run_id: the MLflow run.
        model_version: the registered version of ``settings.mlflow.ranker_model_name``.
        retriever_version: the retriever version it re-ranks (tag ``retriever_version``).
        ds: the run's day.
        reason: why the run happened.
        evaluation: the pair's two-stage metrics on the window's holdout
            (:func:`training.ranker_eval.evaluate_pair`: ``retrieval_hr_at_k``,
            ``ranker_ndcg_at_k``, ``ranker_auc``, ``n_eval_users``...).
        evaluation_key: what the evaluation depends on
            (:func:`training.ranker_eval.evaluation_key`); the canary reuses
            ``evaluation`` when its own key is equal.
        n_rows, n_positives, n_users: the training rows, positive rows and users.
        cuts: the replayed cut times (ISO) that gave rows.
        proxies: per cut, the proxy retriever used (``cut``, ``mode``, ``data_until``,
            ``version``).
        proxy_model: the proxies' kind.
        proxy_seconds: time spent fitting proxies.
        proxy_fits: proxies fitted (not reused).
        feature_join_seconds: time of the point-in-time feature join.
        best_epoch: the epoch early stopping kept (``None`` without a validation split).
        fit_seconds: time of the BST fit.
        n_fit_rows: rows the BST trained on (after negative sampling).
        seconds: wall time of the call.
    """

    run_id: str
    model_version: int
    retriever_version: int
    ds: dt.date
    reason: str
    evaluation: dict[str, float | int | None]
    evaluation_key: dict[str, Any]
    n_rows: int
    n_positives: int
    n_users: int
    cuts: list[str]
    proxies: list[dict[str, Any]]
    proxy_model: str
    proxy_seconds: float
    proxy_fits: int
    feature_join_seconds: float
    best_epoch: int | None
    fit_seconds: float
    n_fit_rows: int
    seconds: float

    @property
    def k(self) -> int:
        """The cut-off of the two-stage metrics (``ranker_ndcg_at_{k}``...)."""
        return int(self.evaluation_key["k"])
