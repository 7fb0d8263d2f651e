"""The retriever run's MLflow records: tags, params, metrics, the final table, the version.

What :func:`training.retriever.train_retriever` logs (the pure fit and evaluation stay
in :mod:`training.retriever`); the run starts before the data is loaded
(:func:`training.runs.training_run`), so its duration is the work's:

* **Params**: the window, partitions, ``dataset_fingerprint``, ``code_version``,
  ``validation_fraction``, the warm-start record and the kind's params (``train.seed``,
  ``train.patience``...) (:func:`log_run_inputs`); after the fit, its counts, sizes and
  timings (``n_users``, ``n_items``, ``n_edges``, ``n_fit``, ``n_validation``,
  ``n_val_users``, ``n_eval_users``, ``embedding_dim``, ``train_seconds``, ``epochs_run``,
  ``best_epoch``, ``stopped_early``, ``refit_epochs``...) (:func:`log_run_results`): one
  number each, nothing to chart.
* **Metric histories** with ``step = epoch`` (:func:`log_curves`): ``train_loss``,
  ``val_recall_at_20``, ``val_ndcg_at_20``.
* **Metrics**: the holdout ``recall_at_20``, ``ndcg_at_20`` and the popularity
  baseline's; the artifact ``final_metrics.json`` (:func:`final_metrics_table`): one row
  per model scored on the holdout (:func:`log_run_results`).
* **The version** (:func:`register_version`): a pyfunc model of the embeddings with the
  few tags something reads (:func:`version_tags`), the JSON summary (:data:`SUMMARY_TAG`)
  that a rerun with the same key returns (:func:`find_version`), and aliased
  ``challenger``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from graphrec.settings import Settings
from training import registry
from training.data import Window
from training.embeddings import ModelEmbeddings
from training.metrics import RankingMetrics
from training.models import FittedRetriever, logged_params

SUMMARY_TAG = "summary"
TRAINING_KEY_TAG = "training_key"
#: The run artifact with the holdout metrics of the model and its baseline.
FINAL_METRICS_TABLE = "final_metrics.json"


def tag_value(value: Any) -> str:
    """A tag or param value: booleans as ``true``/``false``, ``None`` as empty."""
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


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
        {
            "model": kind,
            "role": "candidate",
            names[0]: model.recall,
            names[1]: model.ndcg,
            "n_eval_users": model.n_users,
            **{f"val_{name}": values.get(name) for name in names},
            "val_epoch": epoch,
        },
        {
            "model": "popularity",
            "role": "baseline",
            names[0]: baseline.recall,
            names[1]: baseline.ndcg,
            "n_eval_users": baseline.n_users,
            **{f"val_{name}": None for name in names},
            "val_epoch": None,
        },
    ]
    return pd.DataFrame(rows)


def log_curves(settings: Settings, run_id: str, fitted: FittedRetriever) -> None:
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


def find_version(settings: Settings, key: str) -> tuple[int, dict[str, Any]] | None:
    """A registered version with ``training_key == key`` and its stored summary."""
    client = registry.client_for(settings)
    try:
        versions = client.search_model_versions(f"name='{settings.mlflow.retriever_model_name}'")
    except MlflowException:
        return None
    for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if version.tags.get(TRAINING_KEY_TAG) == key and SUMMARY_TAG in version.tags:
            return int(version.version), json.loads(version.tags[SUMMARY_TAG])
    return None


def log_run_inputs(
    settings: Settings,
    window: Window,
    *,
    window_days: int,
    kind: str,
    params: dict[str, Any],
    reason: str,
    code: str,
    validation_fraction: float,
    init_tags: dict[str, str],
    tags: dict[str, str],
) -> None:
    """The active run's tags and params: what was trained on what, and why."""
    mlflow.set_tags({"ds": window.end.isoformat(), "reason": reason, "model": kind, **init_tags, **tags})
    mlflow.log_params(
        {
            "window_days": window_days,
            "holdout_days": settings.training.holdout_days,
            "data_window": json.dumps(window.data_window),
            "partitions": json.dumps([d.isoformat() for d in window.days]),
            "dataset_fingerprint": window.fingerprint,
            "code_version": code,
            "reason": reason,
            "model": kind,
            "validation_fraction": validation_fraction,
            **init_tags,
            **logged_params(kind, params),
        }
    )


def log_run_results(
    kind: str,
    final: RankingMetrics,
    popularity: RankingMetrics,
    chosen: tuple[int, dict[str, float]] | None,
    metrics: dict[str, float],
    sizes: dict[str, Any],
) -> None:
    """The active run's :data:`FINAL_METRICS_TABLE` artifact, its ``metrics`` and, as params, its ``sizes``."""
    mlflow.log_table(final_metrics_table(kind, final, popularity, chosen), FINAL_METRICS_TABLE)
    mlflow.log_metrics(metrics)
    mlflow.log_params({name: tag_value(value) for name, value in sizes.items()})


def version_tags(
    *,
    ds: str,
    reason: str,
    kind: str,
    data_window: list[str],
    quality: dict[str, float],
    lineage: dict[str, Any],
    key: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A retriever version's tags: what something reads, grouped; the rest is in :data:`SUMMARY_TAG`.

    * lineage: ``ds``, ``reason``, ``model``, ``data_window``, and ``warm_start``,
      ``warm_start_from``, ``full_retrain_ds``, ``full_retrain_epochs`` (``lineage``),
      which the next night's :func:`training.retriever_init.choose_init` reads, with
      ``ds`` and ``model``; :data:`TRAINING_KEY_TAG` (:func:`find_version`);
    * quality: the holdout ``recall_at_20`` and ``ndcg_at_20`` (``quality``; listed by
      :func:`training.registry.list_model_versions`, e.g. ``graphrec status``);
    * ``extra``: the run's trigger tags (``trigger=drift``, ``drift_report``...).

    The popularity baseline's numbers, ``init_reason`` and ``dataset_fingerprint`` are in
    the summary tag, the run and the version's ``meta.json``; the canary adds its own
    ``canary.*`` tags later.
    """
    return {
        **{name: tag_value(value) for name, value in (extra or {}).items()},
        "ds": ds,
        "reason": reason,
        "model": kind,
        "data_window": json.dumps(data_window),
        **{name: tag_value(value) for name, value in lineage.items()},
        **{name: str(value) for name, value in quality.items()},
        TRAINING_KEY_TAG: key,
    }


def register_version(
    settings: Settings,
    embeddings: ModelEmbeddings,
    *,
    run_id: str,
    base: ModelEmbeddings | None,
    tags: dict[str, Any],
    summary: dict[str, Any],
) -> int:
    """Register ``embeddings`` as a new version, tag it and alias it ``challenger``.

    Args:
        settings: the installation (registry).
        embeddings: the served embeddings, their ``meta`` complete.
        run_id: the run the version is logged to.
        base: the layer-0 embeddings a later warm start reads (trained kinds).
        tags: the version tags (:func:`version_tags`), set as it is created.
        summary: the run's summary; stored with the version's number as :data:`SUMMARY_TAG`.

    Returns:
        The version number.
    """
    version = registry.register_model(settings, embeddings, run_id=run_id, tags=tags, base_embeddings=base)
    stored = {**summary, "model_version": version}
    registry.set_version_tags(settings, version, {SUMMARY_TAG: json.dumps(stored)})
    registry.set_alias(settings, registry.CHALLENGER, version)
    return version
