"""The retriever training task: window → split → model → evaluation → MLflow version.

The model is one of the kinds of :mod:`training.models` (``lightgcn``, ``mf``, ``gfcf``,
``popularity``), chosen by ``settings.retriever_model`` or the ``model`` argument; all
are evaluated, logged and registered the same way.

**Validation and early stopping.** The trained kinds (``lightgcn``, ``mf``) never see the
holdout while training: with ``settings.validation_fraction > 0`` each user's latest
training events are split off (:func:`training.data.validation_split`), the graph and
id maps are built from the rest (the *fit* part), the trainer's evaluation callback
scores the validation events every ``settings.eval_every`` epochs and stops after
``settings.patience`` evaluations without a better validation Recall@20, keeping the
embeddings of the best one. With ``settings.refit`` (default) the model is then trained
again on the whole training part for the number of epochs early stopping chose, because
the validation split holds each user's newest events, the most telling ones for the next
day (on the demo's drifted day 10: holdout Recall@20 0.1634 from the fit part alone,
0.2075 after the refit). Without it, the early-stopped embeddings of the fit part are
kept. The chosen embeddings are scored on the holdout exactly like every other kind.
``gfcf`` and ``popularity`` have no epochs and fit the whole training part.

**What the MLflow run holds.** Params: the window, partitions, ``dataset_fingerprint``,
``code_version``, ``validation_fraction`` and the kind's params (``train.seed``,
``train.patience``...). Metric histories with ``step = epoch``: ``train_loss``,
``val_recall_at_20``, ``val_ndcg_at_20``. Metrics: the holdout ``recall_at_20``,
``ndcg_at_20`` and the popularity baseline's, ``epochs_run``, ``best_epoch`` and
``stopped_early`` when the trainer reports them. A table artifact
``final_metrics.json`` (:func:`final_metrics_table`): one row per model scored on the
holdout.

:func:`train_retriever` is what the Airflow task calls. It is idempotent for its
inputs: a rerun with the same curated bytes, hyper-parameters and code finds the
version it registered before (model-version tag ``training_key``), points
``challenger`` at it again and returns the same summary, instead of registering a
duplicate. Pass ``reuse=False`` to force a fresh run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

import graphrec
from graphrec.settings import PROJECT_ROOT, Settings
from training import registry
from training.data import (
    InsufficientDataError,
    build_graph,
    holdout_start,
    load_window,
    temporal_split,
    validation_split,
)
from training.losses import DEFAULT_WEIGHT_DECAY
from training.metrics import DEFAULT_K, RankingMetrics, build_ranking_task, evaluate_embeddings, popularity_model
from training.models import TRAINED_KINDS, FittedRetriever, check_kind, fit_model, logged_params, model_params
from training.train import TrainConfig

SUMMARY_TAG = "summary"
TRAINING_KEY_TAG = "training_key"
#: The run artifact with the holdout metrics of the model and its baseline.
FINAL_METRICS_TABLE = "final_metrics.json"

log = logging.getLogger(__name__)


def code_version() -> str:
    """``graphrec.__version__``, plus ``+g<commit>`` when the source is a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{graphrec.__version__}+g{commit}" if commit else graphrec.__version__


def train_config(settings: Settings, epochs: int | None = None) -> TrainConfig:
    """The :class:`TrainConfig` the settings describe (``epochs`` overrides).

    Early stopping (``patience``) needs a validation split to watch: it is off when
    ``settings.validation_fraction`` is 0, so that nothing ever stops on the holdout.
    """
    values = {
        "epochs": epochs or settings.epochs,
        "embedding_dim": settings.embedding_dim,
        "num_layers": settings.num_layers,
        "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size,
        "loss": settings.loss,
        "weight_decay": DEFAULT_WEIGHT_DECAY[settings.loss] if settings.weight_decay is None else settings.weight_decay,
        "init_std": settings.init_std,
        "temperature": settings.temperature,
        "item_l2_degree_power": settings.item_l2_degree_power,
        "seed": settings.seed,
        "eval_every": settings.eval_every,
        "patience": settings.patience if settings.validation_fraction > 0 else 0,
    }
    # Only the fields this trainer has (``patience`` came with early stopping).
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{name: value for name, value in values.items() if name in fields})


def _training_key(
    fingerprint: str, ds: dt.date, window_days: int, holdout_days: int, model: str, params: dict[str, Any], code: str,
    validation_fraction: float,
) -> str:
    payload = {
        "fingerprint": fingerprint, "ds": ds.isoformat(), "window_days": window_days,
        "holdout_days": holdout_days, "model": model, "params": params, "code": code,
        "validation_fraction": validation_fraction,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def chosen_evaluation(fitted: FittedRetriever) -> tuple[int, dict[str, float]] | None:
    """The validation evaluation of the embeddings ``fitted`` returned.

    That is the evaluation at ``best_epoch`` when the trainer reports one (early
    stopping keeps the best embeddings), else the last one (the final embeddings);
    ``None`` without evaluations.
    """
    if fitted.best_epoch is not None:
        for epoch, values in fitted.evaluations:
            if epoch == fitted.best_epoch:
                return epoch, values
    return fitted.evaluations[-1] if fitted.evaluations else None


def final_metrics_table(
    kind: str,
    model: RankingMetrics,
    baseline: RankingMetrics,
    validation: tuple[int, dict[str, float]] | None = None,
) -> pd.DataFrame:
    """The run's final table: one row per model scored on the holdout.

    Args:
        kind: the retriever kind (the first row's ``model``).
        model: its holdout metrics.
        baseline: the popularity baseline's holdout metrics (row ``popularity``).
        validation: ``(epoch, {"recall_at_K": ..., "ndcg_at_K": ...})`` of the kept
            embeddings on the validation split (:func:`chosen_evaluation`); fills the
            model row's ``val_*`` columns (null elsewhere). ``val_epoch`` is the epoch of
            the kept embeddings: the best one under early stopping, else the last.

    Returns:
        Columns ``model, role, recall_at_K, ndcg_at_K, n_eval_users, val_recall_at_K,
        val_ndcg_at_K, val_epoch``; ``role`` is ``candidate`` or ``baseline``.
    """
    k = model.k
    names = (f"recall_at_{k}", f"ndcg_at_{k}")
    epoch, values = validation if validation is not None else (None, {})
    rows = [
        {"model": kind, "role": "candidate", names[0]: model.recall, names[1]: model.ndcg,
         "n_eval_users": model.n_users,
         **{f"val_{name}": values.get(name) for name in names}, "val_epoch": epoch},
        {"model": "popularity", "role": "baseline", names[0]: baseline.recall, names[1]: baseline.ndcg,
         "n_eval_users": baseline.n_users, **{f"val_{name}": None for name in names}, "val_epoch": None},
    ]
    return pd.DataFrame(rows)


def _log_curves(settings: Settings, run_id: str, fitted: FittedRetriever) -> None:
    """``train_loss`` and ``val_*`` metric histories with ``step = epoch``."""
    now = int(time.time() * 1000)
    history = [Metric("train_loss", loss, now, epoch) for epoch, loss in enumerate(fitted.losses, start=1)]
    history += [
        Metric(f"val_{name}", value, now, epoch)
        for epoch, values in fitted.evaluations
        for name, value in values.items()
    ]
    client = registry.client_for(settings)
    for lo in range(0, len(history), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=history[lo : lo + 1000])


def _find_version(settings: Settings, key: str) -> tuple[int, dict[str, Any]] | None:
    """A registered version with ``training_key == key`` and its stored summary."""
    client = registry.client_for(settings)
    try:
        versions = client.search_model_versions(f"name='{settings.retriever_model_name}'")
    except MlflowException:
        return None
    for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if version.tags.get(TRAINING_KEY_TAG) == key and SUMMARY_TAG in version.tags:
            return int(version.version), json.loads(version.tags[SUMMARY_TAG])
    return None


def train_retriever(
    settings: Settings,
    ds: dt.date,
    *,
    window_days: int | None = None,
    epochs: int | None = None,
    reason: str = "schedule",
    reuse: bool = True,
    model: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Fit, evaluate, log and register a retriever; alias it ``challenger``.

    Args:
        settings: the installation's settings (hyper-parameters, seed, MLflow stores).
        ds: the last curated day of the window; its last ``settings.holdout_days`` days
            are the evaluation holdout.
        window_days: window length; defaults to ``settings.window_days``.
        epochs: training epochs of ``lightgcn`` and ``mf``; defaults to ``settings.epochs``.
        reason: why this run happens (``"schedule"``, ``"drift"``, ``"manual"``...);
            logged as a param and a version tag.
        reuse: return the existing version when the same inputs were trained before.
        model: the retriever kind (``lightgcn``, ``mf``, ``gfcf`` or ``popularity``, see
            :mod:`training.models`); defaults to ``settings.retriever_model``. It is the
            run's ``model`` tag and param, a version tag and ``meta["model"]``.
        tags: extra run and version tags, e.g. what triggered the run
            (``trigger=drift``, ``drift_report``, ``drift_episode``).

    Returns:
        A small JSON-able summary for XCom: ``run_id, model_version, model,
        recall_at_20, ndcg_at_20, popularity_recall_at_20, popularity_ndcg_at_20,
        data_window, n_users, n_items, n_train, n_fit, n_validation, n_holdout,
        n_eval_users, seconds`` plus ``ds, reason, dataset_fingerprint, reused``; the
        trained kinds add ``epochs_run, stopped_early``, ``best_epoch`` (when the trainer
        reports it) and ``val_recall_at_20, val_ndcg_at_20`` (the kept embeddings on the
        validation split). ``n_users``/``n_items`` are the model's (the fit part's).

    Raises:
        InsufficientDataError: no training events, or no user with both history and
            new holdout items in the window.
        ValueError: an unknown ``model``.
    """
    started = time.perf_counter()
    kind = check_kind(model or settings.retriever_model)
    window_days = window_days or settings.window_days
    window = load_window(settings, ds, window_days)
    train, holdout = temporal_split(window.interactions, settings.holdout_days, end=window.end)
    if train.empty:
        raise InsufficientDataError(
            f"no training events in {window.data_window} before the {settings.holdout_days}-day holdout "
            f"(curated days found: {[d.isoformat() for d in window.days]})"
        )
    task = build_ranking_task(train, holdout)
    if task.n_users == 0:
        raise InsufficientDataError(
            f"no holdout users to evaluate on: the holdout from {holdout_start(window.end, settings.holdout_days).date()} "
            f"to {ds} has {len(holdout)} events and none is a new item of a user with history"
        )
    params = model_params(kind, train_config(settings, epochs), settings)
    validation_fraction = settings.validation_fraction if kind in TRAINED_KINDS else 0.0
    code = code_version()
    key = _training_key(
        window.fingerprint, ds, window_days, settings.holdout_days, kind,
        {**params, "refit": settings.refit} if validation_fraction else params, code, validation_fraction,
    )
    registry.configure(settings)
    if reuse and (found := _find_version(settings, key)) is not None:
        version, summary = found
        registry.set_alias(settings, registry.CHALLENGER, version)
        return {**summary, "reason": reason, "reused": True, "seconds": round(time.perf_counter() - started, 3)}

    # The validation split comes from the training part only: the holdout never steers training.
    fit, validation = validation_split(train, validation_fraction, settings.seed)
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
            validation_fraction, len(fit), len(validation), val_task.n_users,
        )
    graph = build_graph(fit)
    k = DEFAULT_K
    with mlflow.start_run(run_name=f"retriever-{kind}-{ds.isoformat()}-{reason}") as run:
        mlflow.set_tags({"ds": ds.isoformat(), "reason": reason, "model": kind, **(tags or {})})
        mlflow.log_params(
            {
                "window_days": window_days, "holdout_days": settings.holdout_days,
                "data_window": json.dumps(window.data_window),
                "partitions": json.dumps([d.isoformat() for d in window.days]),
                "dataset_fingerprint": window.fingerprint, "code_version": code, "reason": reason,
                "model": kind, "validation_fraction": validation_fraction, **logged_params(kind, params),
            }
        )

        def evaluate(embeddings):
            metrics = evaluate_embeddings(embeddings, val_task, k)
            # Unprefixed: the trainer monitors "recall_at_20"; MLflow gets them as val_*.
            return {f"recall_at_{k}": metrics.recall, f"ndcg_at_{k}": metrics.ndcg}

        # An Airflow retry of the same inputs resumes from the interrupted attempt's checkpoint.
        checkpoints = settings.home / "checkpoints" / key[:16]
        result = fit_model(kind, fit_params, graph, train, evaluate if val_task is not None else None, checkpoints)
        _log_curves(settings, run.info.run_id, result)
        chosen = chosen_evaluation(result)
        embeddings, refit_epochs = result.embeddings, 0
        if settings.refit and val_task is not None and result.best_epoch:
            # The validation split held out each user's newest events, the most telling for
            # tomorrow: retrain on the whole window for the epochs early stopping chose.
            refit_epochs = result.best_epoch
            graph = build_graph(train)
            refit = fit_model(kind, {**fit_params, "epochs": refit_epochs, "patience": 0}, graph, train,
                              checkpoint_dir=checkpoints / "refit")
            embeddings = refit.embeddings
            log.info("refit on the whole window (%d events) for %d epochs in %.1f s", len(train), refit_epochs, refit.seconds)
        final = evaluate_embeddings(embeddings, task, k)
        popularity = evaluate_embeddings(popularity_model(train), task, k)
        mlflow.log_table(final_metrics_table(kind, final, popularity, chosen), FINAL_METRICS_TABLE)
        metrics = {
            f"recall_at_{k}": final.recall, f"ndcg_at_{k}": final.ndcg,
            f"popularity_recall_at_{k}": popularity.recall, f"popularity_ndcg_at_{k}": popularity.ndcg,
        }
        training: dict[str, Any] = {}  # trained kinds: how the epochs went
        if kind in TRAINED_KINDS:
            training["epochs_run"] = result.epochs_run
            training["stopped_early"] = result.stopped_early
            if result.best_epoch is not None:
                training["best_epoch"] = result.best_epoch
            training["refit_epochs"] = refit_epochs
            if chosen is not None:
                training.update({f"val_{name}": round(value, 6) for name, value in chosen[1].items()})
        mlflow.log_metrics(
            {**metrics, "train_seconds": result.seconds, "n_eval_users": final.n_users,
             "n_users": graph.n_users, "n_items": graph.n_items, "n_edges": graph.n_edges,
             "n_fit": len(fit), "n_validation": len(validation),
             "n_val_users": val_task.n_users if val_task is not None else 0,
             "embedding_dim": result.embeddings.dim, **result.details,
             **{name: float(value) for name, value in training.items()
                if name in ("epochs_run", "stopped_early", "best_epoch", "refit_epochs")}}
        )
        log.info(
            "%s: holdout recall@%d %.4f, ndcg@%d %.4f (popularity %.4f, %.4f)%s",
            kind, k, final.recall, k, final.ndcg, popularity.recall, popularity.ndcg,
            "".join(f", {name} {value}" for name, value in training.items()),
        )
        summary = {
            "run_id": run.info.run_id,
            "model_version": None,
            "model": kind,
            **{name: round(value, 6) for name, value in metrics.items()},
            **training,
            "data_window": window.data_window,
            "n_users": graph.n_users,
            "n_items": graph.n_items,
            "n_train": len(train),
            "n_fit": len(fit),
            "n_validation": len(validation),
            "n_holdout": len(holdout),
            "n_eval_users": final.n_users,
            "ds": ds.isoformat(),
            "reason": reason,
            "dataset_fingerprint": window.fingerprint,
            "reused": False,
        }
        meta = {
            "model": kind,
            "data_window": window.data_window,
            "train_until": (holdout_start(window.end, settings.holdout_days).date() - dt.timedelta(days=1)).isoformat(),
            "partitions": [d.isoformat() for d in window.days],
            "dataset_fingerprint": window.fingerprint,
            "metrics": metrics,
            "params": params,
            "fit_details": result.details,
            "validation": {"fraction": validation_fraction, "n_fit": len(fit), "n_validation": len(validation), **training},
            "code_version": code,
            "ds": ds.isoformat(),
            "reason": reason,
        }
        embeddings = dataclasses.replace(embeddings, meta=meta)
        version = registry.register_model(settings, embeddings, run_id=run.info.run_id)
        summary["model_version"] = version
        registry.set_version_tags(
            settings, version,
            {**(tags or {}), "ds": ds.isoformat(), "reason": reason, "model": kind, **metrics,
             "data_window": json.dumps(window.data_window),
             "dataset_fingerprint": window.fingerprint, TRAINING_KEY_TAG: key, SUMMARY_TAG: json.dumps(summary)},
        )
        registry.set_alias(settings, registry.CHALLENGER, version)
    shutil.rmtree(checkpoints, ignore_errors=True)  # registered: nothing left to resume
    return {**summary, "seconds": round(time.perf_counter() - started, 3)}
