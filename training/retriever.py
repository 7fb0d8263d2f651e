"""The retriever training task: window → split → model → evaluation → MLflow version.

The model is one of the kinds of :mod:`training.models` (``lightgcn``, ``mf``, ``gfcf``,
``popularity``), chosen by ``settings.training.model`` or the ``model`` argument; all
are evaluated, logged and registered the same way.

**Validation and early stopping** (:mod:`training.retriever_fit`). The trained kinds (``lightgcn``, ``mf``) never see the
holdout while training: with ``settings.training.validation_fraction > 0`` each user's latest
training events are split off (:func:`training.data.validation_split`), the graph and
id maps are built from the rest (the *fit* part), the trainer's evaluation callback
scores the validation events every ``settings.training.eval_every`` epochs and stops after
``settings.training.patience`` evaluations without a better validation Recall@20, keeping the
embeddings of the best one. With ``settings.training.refit`` (default) the model is then trained
again on the whole training part for the number of epochs early stopping chose, because
the validation split holds each user's newest events, the most telling ones for the next
day (on the demo's drifted day 10: holdout Recall@20 0.1634 from the fit part alone,
0.2075 after the refit). Without it, the early-stopped embeddings of the fit part are
kept. The chosen embeddings are scored on the holdout exactly like every other kind.
``gfcf`` and ``popularity`` have no epochs and fit the whole training part.

**What the MLflow run holds** is described in :mod:`training.retriever_mlflow`; **warm
starts and full retrains** (which start a run begins from) in :mod:`training.retriever_init`.

:func:`train_retriever` is what the Airflow task calls. It is idempotent for its
inputs: a rerun with the same curated bytes, hyper-parameters, code and warm-start
source finds the version it registered before (model-version tag ``training_key``),
points ``challenger`` at it again and returns the same summary, instead of registering a
duplicate (the run it opened is deleted: it trained nothing). A rerun after that version
became the champion starts from where the original run started. Pass ``reuse=False`` to force a fresh run. The result is a
:class:`training.results.RetrieverResult`.
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

import pandas as pd

import graphrec
from graphrec.settings import PROJECT_ROOT, Settings
from training import registry, runs
from training.data import (
    InsufficientDataError,
    Window,
    build_graph,
    holdout_start,
    load_window,
    temporal_split,
)
from training.losses import DEFAULT_WEIGHT_DECAY
from training.metrics import DEFAULT_K, RankingTask, build_ranking_task, evaluate_embeddings, popularity_model
from training.models import TRAINED_KINDS, check_kind, model_params
from training.results import RetrieverResult
from training.retriever_fit import fit_with_refit, holdout_report, split_for_validation, training_record
from training.retriever_init import choose_init, warm_start_params
from training.retriever_mlflow import (
    chosen_evaluation,
    find_version,
    log_run_inputs,
    log_run_results,
    register_version,
    tag_value,
    version_tags,
)
from training.train_config import TrainConfig
from training.warm_start import warm_start_rows

log = logging.getLogger(__name__)


def code_version() -> str:
    """``graphrec.__version__``, plus ``+g<commit>`` when the source is a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{graphrec.__version__}+g{commit}" if commit else graphrec.__version__


def train_config(settings: Settings, epochs: int | None = None) -> TrainConfig:
    """The :class:`~training.train_config.TrainConfig` the settings describe (``epochs`` overrides).

    Early stopping (``patience``) needs a validation split to watch: it is off when
    ``settings.training.validation_fraction`` is 0, so that nothing ever stops on the holdout.
    """
    values = {
        "epochs": epochs or settings.training.epochs,
        "embedding_dim": settings.training.embedding_dim,
        "num_layers": settings.training.num_layers,
        "learning_rate": settings.training.learning_rate,
        "batch_size": settings.training.batch_size,
        "max_steps_per_epoch": settings.training.max_steps_per_epoch,
        "loss": settings.training.loss,
        "weight_decay": DEFAULT_WEIGHT_DECAY[settings.training.loss]
        if settings.training.weight_decay is None
        else settings.training.weight_decay,
        "init_std": settings.training.init_std,
        "temperature": settings.training.temperature,
        "item_l2_degree_power": settings.training.item_l2_degree_power,
        "seed": settings.seed,
        "eval_every": settings.training.eval_every,
        "patience": settings.training.patience if settings.training.validation_fraction > 0 else 0,
    }
    # Only the fields this trainer has (``patience`` came with early stopping).
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{name: value for name, value in values.items() if name in fields})


def _training_key(
    fingerprint: str,
    ds: dt.date,
    window_days: int,
    holdout_days: int,
    model: str,
    params: dict[str, Any],
    code: str,
    validation_fraction: float,
    warm_start_from: int | None,
) -> str:
    payload = {
        "fingerprint": fingerprint,
        "ds": ds.isoformat(),
        "window_days": window_days,
        "holdout_days": holdout_days,
        "model": model,
        "params": params,
        "code": code,
        "validation_fraction": validation_fraction,
        "warm_start_from": warm_start_from,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


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
    full_retrain: bool = False,
) -> RetrieverResult:
    """Fit, evaluate, log and register a retriever; alias it ``challenger``.

    Args:
        settings: the installation's settings (hyper-parameters, seed, MLflow stores).
        ds: the last curated day of the window; its last ``settings.training.holdout_days`` days
            are the evaluation holdout.
        window_days: window length; defaults to ``settings.training.window_days``.
        epochs: training epochs of ``lightgcn`` and ``mf``; defaults to ``settings.training.epochs``.
        reason: why this run happens (``"schedule"``, ``"drift"``, ``"manual"``...);
            logged as a param and a version tag.
        reuse: return the existing version when the same inputs were trained before.
        model: the retriever kind (``lightgcn``, ``mf``, ``gfcf`` or ``popularity``, see
            :mod:`training.models`); defaults to ``settings.training.model``. It is the
            run's ``model`` tag and param, a version tag and ``meta["model"]``.
        tags: extra run and version tags, e.g. what triggered the run
            (``trigger=drift``, ``drift_report``, ``drift_episode``).
        full_retrain: train from scratch even when the champion could seed a warm
            start (see :func:`training.retriever_init.choose_init`).

    Returns:
        The :class:`~training.results.RetrieverResult`: run, version, holdout metrics and
        the popularity baseline's, data window, sizes, the warm-start record and, for the
        trained kinds, ``epochs_run``, ``stopped_early``, ``best_epoch`` (when the trainer
        reports it), ``refit_epochs`` and the kept embeddings' validation metrics.
        ``n_users``/``n_items`` are the model's: the whole training part's after a refit,
        else the fit part's.

    Raises:
        InsufficientDataError: no training events, or no user with both history and
            new holdout items in the window.
        ValueError: an unknown ``model``.
    """
    started = time.perf_counter()
    kind = check_kind(model or settings.training.model)
    window_days = window_days or settings.training.window_days
    # The run starts before the data is read: its duration is the whole work's.
    with runs.training_run(settings, f"retriever-{kind}-{ds.isoformat()}-{reason}") as run:
        window, train, holdout, task = _load_split(settings, ds, window_days)
        params = model_params(kind, train_config(settings, epochs), settings)
        validation_fraction = settings.training.validation_fraction if kind in TRAINED_KINDS else 0.0
        code = code_version()
        init = choose_init(settings, ds, kind, params, reason=reason, full_retrain=full_retrain)
        log.info("%s", init.reason)
        full_params = params  # what a full retrain of this line uses (the ranker's proxies fit with them)
        if init.warm_start:
            params = warm_start_params(settings, params)
        key = _training_key(
            window.fingerprint,
            ds,
            window_days,
            settings.training.holdout_days,
            kind,
            {**params, "refit": settings.training.refit} if validation_fraction else params,
            code,
            validation_fraction,
            init.source_version,
        )
        if reuse and (found := find_version(settings, key)) is not None:
            run.discard()  # nothing trained: the version registered before stands
            version, summary = found
            registry.set_alias(settings, registry.CHALLENGER, version)
            return RetrieverResult.from_summary(
                summary,
                reason=reason,
                init_reason=init.reason,
                reused=True,
                seconds=round(time.perf_counter() - started, 3),
            )

        init_tags = {name: tag_value(value) for name, value in init.record().items()}
        log_run_inputs(
            settings,
            window,
            window_days=window_days,
            kind=kind,
            params=params,
            reason=reason,
            code=code,
            validation_fraction=validation_fraction,
            init_tags=init_tags,
            tags=dict(tags or {}),
        )
        split = split_for_validation(train, params, validation_fraction, init, settings.seed)
        graph = build_graph(split.fit)
        k = DEFAULT_K
        warm = init.embeddings if init.warm_start else None
        # An Airflow retry of the same inputs resumes from the interrupted attempt's checkpoint.
        checkpoints = settings.home / "checkpoints" / key[:16]
        fitted = fit_with_refit(settings, kind, split, graph, train, run.run_id, checkpoints, warm)
        result, graph = fitted.result, fitted.graph
        chosen = chosen_evaluation(result)
        warm_counts = {}
        if warm is not None:  # how many of the model's users and items started from the champion
            users, items = warm_start_rows(graph, warm)
            warm_counts = {"n_warm_users": int((users >= 0).sum()), "n_warm_items": int((items >= 0).sum())}
        final = evaluate_embeddings(fitted.embeddings, task, k)
        popularity = evaluate_embeddings(popularity_model(train), task, k)
        metrics = {
            f"recall_at_{k}": final.recall,
            f"ndcg_at_{k}": final.ndcg,
            f"popularity_recall_at_{k}": popularity.recall,
            f"popularity_ndcg_at_{k}": popularity.ndcg,
        }
        training = training_record(kind, fitted, chosen)
        log_run_results(
            kind,
            final,
            popularity,
            chosen,
            metrics,
            {
                "train_seconds": round(result.seconds, 3),
                "n_eval_users": final.n_users,
                "n_users": graph.n_users,
                "n_items": graph.n_items,
                "n_edges": graph.n_edges,
                "n_fit": len(split.fit),
                "n_validation": len(split.validation),
                "n_val_users": split.task.n_users if split.task is not None else 0,
                "embedding_dim": result.embeddings.dim,
                **result.details,
                **warm_counts,
                **{
                    name: value
                    for name, value in training.items()
                    if name in ("epochs_run", "stopped_early", "best_epoch", "refit_epochs")
                },
            },
        )
        log.info(
            "%s",
            holdout_report(
                kind,
                final,
                popularity,
                training,
                window,
                holdout_start(window.end, settings.training.holdout_days),
                canary_window_days=settings.training.window_days,
            ),
        )
        summary = {
            "run_id": run.run_id,
            "model_version": None,
            "model": kind,
            **{name: round(value, 6) for name, value in metrics.items()},
            **training,
            "data_window": window.data_window,
            "n_users": graph.n_users,
            "n_items": graph.n_items,
            "n_train": len(train),
            "n_fit": len(split.fit),
            "n_validation": len(split.validation),
            "n_holdout": len(holdout),
            "n_eval_users": final.n_users,
            "ds": ds.isoformat(),
            "reason": reason,
            "dataset_fingerprint": window.fingerprint,
            "reused": False,
            **init.record(),
            "full_retrain_ds": init.full_retrain_ds or ds.isoformat(),
        }
        own_epochs = fitted.refit_epochs or training.get("best_epoch") or training.get("epochs_run")
        lineage = {  # the last full retrain of this model's line, read by the next warm start
            "full_retrain_ds": summary["full_retrain_ds"],
            "full_retrain_epochs": init.full_retrain_epochs if init.warm_start else own_epochs,
        }
        meta = {
            "model": kind,
            "data_window": window.data_window,
            "train_until": (
                holdout_start(window.end, settings.training.holdout_days).date() - dt.timedelta(days=1)
            ).isoformat(),
            "partitions": [d.isoformat() for d in window.days],
            "dataset_fingerprint": window.fingerprint,
            "metrics": metrics,
            "params": params,
            "full_retrain_params": full_params,
            "fit_details": result.details,
            "validation": {
                "fraction": validation_fraction,
                "n_fit": len(split.fit),
                "n_validation": len(split.validation),
                **training,
                # the epochs of this line's last full retrain (a warm start's refit_epochs are few)
                "full_refit_epochs": lineage["full_retrain_epochs"],
            },
            "code_version": code,
            "ds": ds.isoformat(),
            "reason": reason,
            **init.record(),
            **lineage,
            "warm_start_embeddings": init.embeddings.meta["embeddings_layer"] if init.warm_start else None,
            **warm_counts,
        }
        version = register_version(
            settings,
            dataclasses.replace(fitted.embeddings, meta=meta),
            run_id=run.run_id,
            base=fitted.base,
            tags=version_tags(
                ds=ds.isoformat(),
                reason=reason,
                kind=kind,
                data_window=window.data_window,
                quality={name: metrics[name] for name in (f"recall_at_{k}", f"ndcg_at_{k}")},
                lineage={name: init.record()[name] for name in ("warm_start", "warm_start_from")} | lineage,
                key=key,
                extra=tags,
            ),
            summary=summary,
        )
    shutil.rmtree(checkpoints, ignore_errors=True)  # registered: nothing left to resume
    return RetrieverResult.from_summary(summary, model_version=version, seconds=round(time.perf_counter() - started, 3))


def _load_split(
    settings: Settings, ds: dt.date, window_days: int
) -> tuple[Window, pd.DataFrame, pd.DataFrame, RankingTask]:
    """The window ending at ``ds``, its training part, its holdout and the holdout's ranking task.

    Raises:
        InsufficientDataError: no training events, or no holdout user with history.
    """
    window = load_window(settings, ds, window_days)
    train, holdout = temporal_split(window.interactions, settings.training.holdout_days, end=window.end)
    if train.empty:
        raise InsufficientDataError(
            f"no training events in {window.data_window} before the {settings.training.holdout_days}-day holdout "
            f"(curated days found: {[d.isoformat() for d in window.days]})"
        )
    task = build_ranking_task(train, holdout)
    if task.n_users == 0:
        raise InsufficientDataError(
            f"no holdout users to evaluate on: the holdout from {holdout_start(window.end, settings.training.holdout_days).date()} "
            f"to {ds} has {len(holdout)} events and none is a new item of a user with history"
        )
    return window, train, holdout, task
