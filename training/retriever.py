"""The retriever training task: window → split → model → evaluation → MLflow version.

The model is one of the kinds of :mod:`training.models` (``lightgcn``, ``mf``, ``gfcf``,
``popularity``), chosen by ``settings.retriever_model`` or the ``model`` argument; all
are evaluated, logged and registered the same way.

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
import subprocess
import time
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

import graphrec
from graphrec.settings import PROJECT_ROOT, Settings
from training import registry
from training.data import InsufficientDataError, build_graph, holdout_start, load_window, temporal_split
from training.metrics import DEFAULT_K, build_ranking_task, evaluate_embeddings, popularity_model
from training.models import check_kind, fit_model, logged_params, model_params
from training.train import TrainConfig

SUMMARY_TAG = "summary"
TRAINING_KEY_TAG = "training_key"


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
    """The :class:`TrainConfig` the settings describe (``epochs`` overrides)."""
    return TrainConfig(
        epochs=epochs or settings.epochs,
        embedding_dim=settings.embedding_dim,
        num_layers=settings.num_layers,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        weight_decay=settings.weight_decay,
        seed=settings.seed,
    )


def _training_key(
    fingerprint: str, ds: dt.date, window_days: int, holdout_days: int, model: str, params: dict[str, Any], code: str
) -> str:
    payload = {
        "fingerprint": fingerprint, "ds": ds.isoformat(), "window_days": window_days,
        "holdout_days": holdout_days, "model": model, "params": params, "code": code,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


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

    Returns:
        A small JSON-able summary for XCom: ``run_id, model_version, model,
        recall_at_20, ndcg_at_20, popularity_recall_at_20, popularity_ndcg_at_20,
        data_window, n_users, n_items, n_train, n_holdout, n_eval_users, seconds`` plus
        ``ds, reason, dataset_fingerprint, reused``.

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
    code = code_version()
    key = _training_key(window.fingerprint, ds, window_days, settings.holdout_days, kind, params, code)
    registry.configure(settings)
    if reuse and (found := _find_version(settings, key)) is not None:
        version, summary = found
        registry.set_alias(settings, registry.CHALLENGER, version)
        return {**summary, "reason": reason, "reused": True, "seconds": round(time.perf_counter() - started, 3)}

    graph = build_graph(train)
    k = DEFAULT_K
    with mlflow.start_run(run_name=f"retriever-{kind}-{ds.isoformat()}-{reason}") as run:
        mlflow.set_tags({"ds": ds.isoformat(), "reason": reason, "model": kind})
        mlflow.log_params(
            {
                "window_days": window_days, "holdout_days": settings.holdout_days,
                "data_window": json.dumps(window.data_window),
                "partitions": json.dumps([d.isoformat() for d in window.days]),
                "dataset_fingerprint": window.fingerprint, "code_version": code, "reason": reason,
                "model": kind, **logged_params(kind, params),
            }
        )

        def evaluate(embeddings):
            metrics = evaluate_embeddings(embeddings, task, k)
            return {f"recall_at_{k}": metrics.recall, f"ndcg_at_{k}": metrics.ndcg}

        result = fit_model(kind, params, graph, train, evaluate)
        final = evaluate_embeddings(result.embeddings, task, k)
        popularity = evaluate_embeddings(popularity_model(train), task, k)
        now = int(time.time() * 1000)
        history = [Metric("epoch_loss", loss, now, epoch) for epoch, loss in enumerate(result.losses, start=1)]
        history += [
            Metric(f"epoch_{name}", value, now, epoch) for epoch, values in result.evaluations for name, value in values.items()
        ]
        if history:  # the closed-form kinds have no epochs
            registry.client_for(settings).log_batch(run.info.run_id, metrics=history)
        metrics = {
            f"recall_at_{k}": final.recall, f"ndcg_at_{k}": final.ndcg,
            f"popularity_recall_at_{k}": popularity.recall, f"popularity_ndcg_at_{k}": popularity.ndcg,
        }
        mlflow.log_metrics(
            {**metrics, "train_seconds": result.seconds, "n_eval_users": final.n_users,
             "n_users": graph.n_users, "n_items": graph.n_items, "n_edges": graph.n_edges,
             "embedding_dim": result.embeddings.dim, **result.details}
        )
        summary = {
            "run_id": run.info.run_id,
            "model_version": None,
            "model": kind,
            **{name: round(value, 6) for name, value in metrics.items()},
            "data_window": window.data_window,
            "n_users": graph.n_users,
            "n_items": graph.n_items,
            "n_train": len(train),
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
            "code_version": code,
            "ds": ds.isoformat(),
            "reason": reason,
        }
        embeddings = dataclasses.replace(result.embeddings, meta=meta)
        version = registry.register_model(settings, embeddings, run_id=run.info.run_id)
        summary["model_version"] = version
        registry.set_version_tags(
            settings, version,
            {"ds": ds.isoformat(), "reason": reason, "model": kind, **metrics, "data_window": json.dumps(window.data_window),
             "dataset_fingerprint": window.fingerprint, TRAINING_KEY_TAG: key, SUMMARY_TAG: json.dumps(summary)},
        )
        registry.set_alias(settings, registry.CHALLENGER, version)
    return {**summary, "seconds": round(time.perf_counter() - started, 3)}
