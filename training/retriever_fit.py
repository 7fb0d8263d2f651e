"""The pure part of a retriever run: the validation split, the fit with early stopping, the refit.

The trained kinds (``lightgcn``, ``mf``) never see the holdout while training: with a
validation fraction each user's latest training events are split off
(:func:`split_for_validation`; for a warm start only the events the champion never saw,
:func:`training.retriever_init.unseen_validation`), the model is fitted on the rest with
early stopping on validation Recall@20, and with ``settings.training.refit`` it is trained again
on the whole training part for the epochs early stopping chose
(:func:`fit_with_refit`). Only the metric curves are logged here
(:func:`training.retriever_mlflow.log_curves`); :func:`training.retriever.train_retriever`
logs and registers the rest, and its summary line (:func:`holdout_report`) says which
events each number was measured on.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from graphrec.settings import Settings
from training.data import BipartiteGraph, Window, build_graph, validation_split
from training.embeddings import ModelEmbeddings
from training.metrics import DEFAULT_K, RankingMetrics, RankingTask, build_ranking_task, evaluate_embeddings
from training.models import TRAINED_KINDS, FittedRetriever, fit_model
from training.retriever_init import Init, unseen_validation
from training.retriever_mlflow import log_curves

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ValidationSplit:
    """The training part cut for early stopping: ``fit`` trains, ``validation`` steers.

    ``task`` is the validation ranking task (``None``: no early stopping, then ``params``
    has ``patience = 0``).
    """

    fit: pd.DataFrame
    validation: pd.DataFrame
    task: RankingTask | None
    params: dict[str, Any]


def split_for_validation(
    train: pd.DataFrame, params: dict[str, Any], fraction: float, init: Init, seed: int
) -> ValidationSplit:
    """The validation split of the training part only: the holdout never steers training."""
    fit, validation = validation_split(train, fraction, seed)
    if init.warm_start and len(validation):
        unseen = unseen_validation(fit, validation, init.trained_until)
        if len(unseen[1]) and build_ranking_task(*unseen).n_users:
            fit, validation = unseen
    val_task = build_ranking_task(fit, validation) if len(validation) else None
    fit_params = params
    if val_task is not None and val_task.n_users == 0:
        log.warning(
            "validation split has no user with a new item: training on all %d events, no early stopping", len(train)
        )
        fit, validation, val_task = train, train.iloc[:0], None
    if val_task is None and fit_params.get("patience"):
        fit_params = {**params, "patience": 0}
    if val_task is not None:
        log.info(
            "validation split (fraction %.2f): %d fit events, %d validation events, %d validation users",
            fraction,
            len(fit),
            len(validation),
            val_task.n_users,
        )
    return ValidationSplit(fit, validation, val_task, fit_params)


@dataclasses.dataclass(frozen=True)
class RetrieverFit:
    """The run's fit: the first (early-stopped) fit, and the embeddings it keeps.

    ``embeddings``/``base`` are the refit's when there was one (``refit_epochs > 0``),
    and ``graph`` is the graph they were trained on.
    """

    result: FittedRetriever
    embeddings: ModelEmbeddings
    base: ModelEmbeddings | None
    refit_epochs: int
    graph: BipartiteGraph


def fit_with_refit(
    settings: Settings,
    kind: str,
    split: ValidationSplit,
    graph: BipartiteGraph,
    train: pd.DataFrame,
    run_id: str,
    checkpoints: Path,
    warm: ModelEmbeddings | None,
) -> RetrieverFit:
    """Fit ``kind`` on the fit part with early stopping, log its curves, then refit on the whole window."""
    k = DEFAULT_K

    def evaluate(embeddings):
        metrics = evaluate_embeddings(embeddings, split.task, k)
        # Unprefixed: the trainer monitors "recall_at_20"; MLflow gets them as val_*.
        return {f"recall_at_{k}": metrics.recall, f"ndcg_at_{k}": metrics.ndcg}

    result = fit_model(
        kind,
        split.params,
        graph,
        train,
        evaluate if split.task is not None else None,
        checkpoints,
        init=warm,
        label=f"retriever {kind}",
    )
    log_curves(settings, run_id, result)
    embeddings, base, refit_epochs = result.embeddings, result.base_embeddings, 0
    if settings.training.refit and split.task is not None and result.best_epoch:
        # The validation split held out each user's newest events, the most telling for
        # tomorrow: retrain on the whole window for the epochs early stopping chose
        # (from the same start: the champion's embeddings for a warm start).
        refit_epochs = result.best_epoch
        graph = build_graph(train)
        refit = fit_model(
            kind,
            {**split.params, "epochs": refit_epochs, "patience": 0},
            graph,
            train,
            checkpoint_dir=checkpoints / "refit",
            init=warm,
            label=f"retriever {kind} refit",
        )
        embeddings, base = refit.embeddings, refit.base_embeddings
        log.info(
            "refit on the whole window (%d events) for %d epochs in %.1f s", len(train), refit_epochs, refit.seconds
        )
    return RetrieverFit(result, embeddings, base, refit_epochs, graph)


def training_record(kind: str, fitted: RetrieverFit, chosen: tuple[int, dict[str, float]] | None) -> dict[str, Any]:
    """How the epochs went (trained kinds; empty for the others)."""
    training: dict[str, Any] = {}
    if kind in TRAINED_KINDS:
        training["epochs_run"] = fitted.result.epochs_run
        training["stopped_early"] = fitted.result.stopped_early
        if fitted.result.best_epoch is not None:
            training["best_epoch"] = fitted.result.best_epoch
        training["refit_epochs"] = fitted.refit_epochs
        if chosen is not None:
            training.update({f"val_{name}": round(value, 6) for name, value in chosen[1].items()})
    return training


def holdout_report(
    kind: str,
    final: RankingMetrics,
    popularity: RankingMetrics,
    training: dict[str, Any],
    window: Window,
    first_holdout: pd.Timestamp,
    *,
    canary_window_days: int,
) -> str:
    """The run's result in words, saying which events each number was measured on.

    The holdout numbers are on the window's last days (:func:`training.data.temporal_split`);
    the nightly canary scores the same model on the same days again, over a window of
    ``canary_window_days`` (``settings.training.window_days``): the same numbers when the
    windows are equal, otherwise other users and another popularity. The ``val_*``
    numbers are on the validation split of the training days, not on the holdout.
    """
    k = final.k
    first, last = first_holdout.date(), window.end
    days = (last - first).days + 1
    window_days = (window.end - window.start).days + 1
    holdout = last.isoformat() if days == 1 else f"{first.isoformat()}..{last.isoformat()}"
    canary = "the canary scores it again on the same holdout"
    if canary_window_days != window_days:
        canary += f" over a {canary_window_days}-day window (other users and popularity than this run's)"
    text = (
        f"{kind} on the training holdout ({holdout}: the last {days} day{'s' if days > 1 else ''} of the "
        f"{window_days}-day window {window.start.isoformat()}..{last.isoformat()}, {final.n_users} users with history "
        f"and new items): recall@{k} {final.recall:.4f}, ndcg@{k} {final.ndcg:.4f}; popularity on the same holdout: "
        f"recall@{k} {popularity.recall:.4f}, ndcg@{k} {popularity.ndcg:.4f}; {canary}"
    )
    epochs = {name: value for name, value in training.items() if not name.startswith("val_")}
    if epochs:
        text += "; training: " + ", ".join(f"{name} {value}" for name, value in epochs.items())
    validation = {name: value for name, value in training.items() if name.startswith("val_")}
    if validation:
        text += "; on the validation split (each user's latest training events, not the holdout): " + ", ".join(
            f"{name} {value:.4f}" for name, value in validation.items()
        )
    return text
