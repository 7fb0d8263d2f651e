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

**Warm start and full retrains.** ``lightgcn`` and ``mf`` usually start from the
serving champion's layer-0 embeddings instead of random ones (:func:`choose_init`):
the users and items the champion knows get its vectors (matched by external id), new
ones the usual random init, and those that left the window are dropped. A warm-started
run validates only on the validation events newer than the champion's training data
(:func:`unseen_validation`), evaluates every ``settings.warm_start_eval_every`` epochs,
stops after ``settings.warm_start_patience`` evaluations without progress and refits
(again from the champion) for the chosen epochs: on the simulator (5,000 users and
items, 10,000 events a day) 3 + 2 epochs in 11 s instead of 10 + 4 in 37 s, holdout
Recall@20 0.1610 against 0.1632 (``benchmarks/bench_warm_start.py``); without the refit
0.1590. A chain of warm starts slowly falls behind a full retrain (about -0.007 after
five nights on a smaller simulated world), which the scheduled full retrain bounds. A
run trains from scratch instead (a *full
retrain*) when asked to (``full_retrain=True``), when it is drift-triggered (``reason``
starting with ``"drift"``), when there is no champion, when the champion's last full
retrain is ``settings.full_retrain_every_days`` days old or more, or when the champion
cannot seed it (another kind, dimension or number of layers, or trained on days inside
this run's holdout). Which it was is the run's param and tag ``warm_start``,
``warm_start_from`` (the champion's version) and ``init_reason``, and the same keys of
the summary, the version tags and ``meta``. The canary judges both kinds alike.

:func:`train_retriever` is what the Airflow task calls. It is idempotent for its
inputs: a rerun with the same curated bytes, hyper-parameters, code and warm-start
source finds the version it registered before (model-version tag ``training_key``),
points ``challenger`` at it again and returns the same summary, instead of registering a
duplicate. A rerun after that version became the champion starts from where the
original run started. Pass ``reuse=False`` to force a fresh run.
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
from graphrec import contract
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
from training.embeddings import ModelEmbeddings
from training.losses import DEFAULT_WEIGHT_DECAY
from training.metrics import DEFAULT_K, RankingMetrics, build_ranking_task, evaluate_embeddings, popularity_model
from training.models import TRAINED_KINDS, FittedRetriever, check_kind, fit_model, logged_params, model_params
from training.train import TrainConfig, warm_start_rows

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
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
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
        "max_steps_per_epoch": settings.max_steps_per_epoch,
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


@dataclasses.dataclass(frozen=True)
class Init:
    """How a run's trained parameters start: from scratch or from the champion's.

    Args:
        warm_start: start from ``embeddings`` (else from the random init).
        reason: why, in words (the run's ``init_reason``).
        source_version: the champion version warm-started from.
        embeddings: its layer-0 embeddings (or its served ones, see
            :func:`training.registry.load_warm_start_embeddings`).
        full_retrain_ds: the day of the last full retrain in the source's lineage (a
            warm start), ``None`` for a full retrain (then it is the run's own day).
        full_retrain_epochs: the epochs that full retrain chose, when known.
        trained_until: the last day the source trained on (a warm start).
    """

    warm_start: bool
    reason: str
    source_version: int | None = None
    embeddings: ModelEmbeddings | None = None
    full_retrain_ds: str | None = None
    full_retrain_epochs: int | None = None
    trained_until: dt.date | None = None

    def record(self) -> dict[str, Any]:
        """``warm_start, warm_start_from, init_reason`` (summary, ``meta``, tags)."""
        return {"warm_start": self.warm_start, "warm_start_from": self.source_version, "init_reason": self.reason}


def _days_tag(tags: Mapping[str, str], name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(tags[name])
    except (KeyError, ValueError):
        return None


def choose_init(
    settings: Settings, ds: dt.date, kind: str, params: dict[str, Any], *, reason: str, full_retrain: bool
) -> Init:
    """Warm start from the champion, or a full retrain from scratch, and why.

    The source is the ``champion`` version of ``settings.retriever_model_name``; when
    the champion is this day's own model (a rerun after its promotion), the model it
    started from, so that a rerun repeats the original run. Reads the source's version
    tags (``ds``, ``model``, ``full_retrain_ds``) and, when they allow a warm start, its
    warm-start embeddings and ``meta`` (``params``, ``train_until``).

    Args:
        settings: ``full_retrain_every_days``, ``holdout_days`` and the registry.
        ds: the run's day.
        kind: the kind to train; only ``lightgcn`` and ``mf`` can be warm-started.
        params: its params (:func:`training.models.model_params`): the champion must
            have the same ``embedding_dim`` (and ``num_layers`` for ``lightgcn``).
        reason: the run's reason; ``"drift..."`` always retrains from scratch.
        full_retrain: retrain from scratch (the DAG Param ``full_retrain``).
    """

    def full(why: str) -> Init:
        return Init(False, why)

    if kind not in TRAINED_KINDS:
        return full(f"{kind} has no trained parameters to start from")
    if full_retrain:
        return full("full retrain requested (full_retrain)")
    if reason.startswith("drift"):
        return full(f"drift-triggered run ({reason})")
    if settings.full_retrain_every_days == 0:
        return full("warm starts are off (full_retrain_every_days = 0)")
    version = registry.get_alias_version(settings, registry.CHAMPION)
    if version is None:
        return full("no champion to start from")
    tags = registry.get_version_tags(settings, version)
    seen = {version}
    while _days_tag(tags, "ds") == ds:  # this day's own champion: start where it started
        source = tags.get("warm_start_from") if tags.get("warm_start") == "true" else None
        if not source or int(source) in seen:
            return full(f"champion v{version} is this day's model, trained from scratch")
        version = int(source)
        seen.add(version)
        tags = registry.get_version_tags(settings, version)
    champion = f"champion v{version}"
    trained_for = _days_tag(tags, "ds")
    if tags.get("model") != kind:
        return full(f"{champion} is {tags.get('model') or 'of an unknown kind'}, this run trains {kind}")
    last_full = _days_tag(tags, "full_retrain_ds") or trained_for  # versions from before warm starts: their own day
    if last_full is None:
        return full(f"{champion} records no training day")
    age = (ds - last_full).days
    if age >= settings.full_retrain_every_days:
        return full(
            f"scheduled full retrain: {champion}'s last full retrain ({last_full}) is {age} days old "
            f"(full_retrain_every_days = {settings.full_retrain_every_days})"
        )
    embeddings = registry.load_warm_start_embeddings(settings, version)
    theirs = embeddings.meta.get("params") or {}
    if embeddings.dim != params["embedding_dim"]:
        return full(f"{champion} has dimension {embeddings.dim}, this run {params['embedding_dim']}")
    if kind == "lightgcn" and theirs.get("num_layers") != params["num_layers"]:
        return full(f"{champion} has {theirs.get('num_layers')} layers, this run {params['num_layers']}")
    until = embeddings.meta.get("train_until")
    if until is None or dt.date.fromisoformat(until) >= holdout_start(ds, settings.holdout_days).date():
        return full(f"{champion} was trained on days up to {until}, not before this run's holdout")
    epochs = tags.get("full_retrain_epochs") or (embeddings.meta.get("validation") or {}).get("refit_epochs")
    layer = embeddings.meta["embeddings_layer"]
    return Init(
        True,
        f"warm start from {champion} ({layer} embeddings; last full retrain {last_full}, {age} days old)",
        version,
        embeddings,
        last_full.isoformat(),
        int(epochs) if epochs else None,
        dt.date.fromisoformat(until),
    )


def unseen_validation(
    fit: pd.DataFrame, validation: pd.DataFrame, trained_until: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move the validation events up to ``trained_until`` back into the fit part.

    A warm start begins from a champion that trained on most of the validation split (each
    user's newest events of the window, most of them older than the newest day): scored on
    them, it looks best before any training and better the more it memorises, so early
    stopping could not see it overfit. It validates on the events the champion never saw.
    """
    seen = (validation[contract.EVENT_TS] < pd.Timestamp(trained_until + dt.timedelta(days=1), tz="UTC")).to_numpy()
    return pd.concat([fit, validation[seen]], ignore_index=True), validation[~seen].reset_index(drop=True)


def warm_start_params(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` of a warm-started run: its learning rate, evaluation cadence and patience."""
    patience = settings.warm_start_patience if params.get("patience") else 0
    changes: dict[str, Any] = {"eval_every": settings.warm_start_eval_every, "patience": patience}
    if "learning_rate" in params:
        changes["learning_rate"] = params["learning_rate"] * settings.warm_start_learning_rate_factor
    return {**params, **changes}


def _tag_value(value: Any) -> str:
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
    full_retrain: bool = False,
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
        full_retrain: train from scratch even when the champion could seed a warm
            start (see :func:`choose_init`).

    Returns:
        A small JSON-able summary for XCom: ``run_id, model_version, model,
        recall_at_20, ndcg_at_20, popularity_recall_at_20, popularity_ndcg_at_20,
        data_window, n_users, n_items, n_train, n_fit, n_validation, n_holdout,
        n_eval_users, seconds`` plus ``ds, reason, dataset_fingerprint, reused`` and
        ``warm_start, warm_start_from, init_reason, full_retrain_ds``; the trained kinds
        add ``epochs_run, stopped_early``, ``best_epoch`` (when the trainer reports it),
        ``refit_epochs`` and ``val_recall_at_20, val_ndcg_at_20`` (the kept embeddings on
        the validation split). ``n_users``/``n_items`` are the model's (the fit part's).

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
    registry.configure(settings)
    init = choose_init(settings, ds, kind, params, reason=reason, full_retrain=full_retrain)
    log.info("%s", init.reason)
    full_params = params  # what a full retrain of this line uses (the ranker's proxies fit with them)
    if init.warm_start:
        params = warm_start_params(settings, params)
    key = _training_key(
        window.fingerprint,
        ds,
        window_days,
        settings.holdout_days,
        kind,
        {**params, "refit": settings.refit} if validation_fraction else params,
        code,
        validation_fraction,
        init.source_version,
    )
    if reuse and (found := _find_version(settings, key)) is not None:
        version, summary = found
        registry.set_alias(settings, registry.CHALLENGER, version)
        return {
            **summary,
            "reason": reason,
            "init_reason": init.reason,
            "reused": True,
            "seconds": round(time.perf_counter() - started, 3),
        }

    # The validation split comes from the training part only: the holdout never steers training.
    fit, validation = validation_split(train, validation_fraction, settings.seed)
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
            validation_fraction,
            len(fit),
            len(validation),
            val_task.n_users,
        )
    graph = build_graph(fit)
    k = DEFAULT_K
    init_tags = {name: _tag_value(value) for name, value in init.record().items()}
    warm = init.embeddings if init.warm_start else None
    with mlflow.start_run(run_name=f"retriever-{kind}-{ds.isoformat()}-{reason}") as run:
        mlflow.set_tags({"ds": ds.isoformat(), "reason": reason, "model": kind, **init_tags, **(tags or {})})
        mlflow.log_params(
            {
                "window_days": window_days,
                "holdout_days": settings.holdout_days,
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

        def evaluate(embeddings):
            metrics = evaluate_embeddings(embeddings, val_task, k)
            # Unprefixed: the trainer monitors "recall_at_20"; MLflow gets them as val_*.
            return {f"recall_at_{k}": metrics.recall, f"ndcg_at_{k}": metrics.ndcg}

        # An Airflow retry of the same inputs resumes from the interrupted attempt's checkpoint.
        checkpoints = settings.home / "checkpoints" / key[:16]
        result = fit_model(
            kind, fit_params, graph, train, evaluate if val_task is not None else None, checkpoints, init=warm
        )
        _log_curves(settings, run.info.run_id, result)
        chosen = chosen_evaluation(result)
        embeddings, base, refit_epochs = result.embeddings, result.base_embeddings, 0
        if settings.refit and val_task is not None and result.best_epoch:
            # The validation split held out each user's newest events, the most telling for
            # tomorrow: retrain on the whole window for the epochs early stopping chose
            # (from the same start: the champion's embeddings for a warm start).
            refit_epochs = result.best_epoch
            graph = build_graph(train)
            refit = fit_model(
                kind,
                {**fit_params, "epochs": refit_epochs, "patience": 0},
                graph,
                train,
                checkpoint_dir=checkpoints / "refit",
                init=warm,
            )
            embeddings, base = refit.embeddings, refit.base_embeddings
            log.info(
                "refit on the whole window (%d events) for %d epochs in %.1f s", len(train), refit_epochs, refit.seconds
            )
        warm_counts = {}
        if warm is not None:  # how many of the model's users and items started from the champion
            users, items = warm_start_rows(graph, warm)
            warm_counts = {"n_warm_users": int((users >= 0).sum()), "n_warm_items": int((items >= 0).sum())}
        final = evaluate_embeddings(embeddings, task, k)
        popularity = evaluate_embeddings(popularity_model(train), task, k)
        mlflow.log_table(final_metrics_table(kind, final, popularity, chosen), FINAL_METRICS_TABLE)
        metrics = {
            f"recall_at_{k}": final.recall,
            f"ndcg_at_{k}": final.ndcg,
            f"popularity_recall_at_{k}": popularity.recall,
            f"popularity_ndcg_at_{k}": popularity.ndcg,
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
            {
                **metrics,
                "train_seconds": result.seconds,
                "n_eval_users": final.n_users,
                "n_users": graph.n_users,
                "n_items": graph.n_items,
                "n_edges": graph.n_edges,
                "n_fit": len(fit),
                "n_validation": len(validation),
                "n_val_users": val_task.n_users if val_task is not None else 0,
                "embedding_dim": result.embeddings.dim,
                **result.details,
                **warm_counts,
                **{
                    name: float(value)
                    for name, value in training.items()
                    if name in ("epochs_run", "stopped_early", "best_epoch", "refit_epochs")
                },
            }
        )
        log.info(
            "%s: holdout recall@%d %.4f, ndcg@%d %.4f (popularity %.4f, %.4f)%s",
            kind,
            k,
            final.recall,
            k,
            final.ndcg,
            popularity.recall,
            popularity.ndcg,
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
            **init.record(),
            "full_retrain_ds": init.full_retrain_ds or ds.isoformat(),
        }
        own_epochs = refit_epochs or training.get("best_epoch") or training.get("epochs_run")
        lineage = {  # the last full retrain of this model's line, read by the next warm start
            "full_retrain_ds": summary["full_retrain_ds"],
            "full_retrain_epochs": init.full_retrain_epochs if init.warm_start else own_epochs,
        }
        meta = {
            "model": kind,
            "data_window": window.data_window,
            "train_until": (holdout_start(window.end, settings.holdout_days).date() - dt.timedelta(days=1)).isoformat(),
            "partitions": [d.isoformat() for d in window.days],
            "dataset_fingerprint": window.fingerprint,
            "metrics": metrics,
            "params": params,
            "full_retrain_params": full_params,
            "fit_details": result.details,
            "validation": {
                "fraction": validation_fraction,
                "n_fit": len(fit),
                "n_validation": len(validation),
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
        embeddings = dataclasses.replace(embeddings, meta=meta)
        version = registry.register_model(settings, embeddings, run_id=run.info.run_id, base_embeddings=base)
        summary["model_version"] = version
        registry.set_version_tags(
            settings,
            version,
            {
                **(tags or {}),
                "ds": ds.isoformat(),
                "reason": reason,
                "model": kind,
                **metrics,
                "data_window": json.dumps(window.data_window),
                **init_tags,
                **{name: _tag_value(value) for name, value in lineage.items()},
                "dataset_fingerprint": window.fingerprint,
                TRAINING_KEY_TAG: key,
                SUMMARY_TAG: json.dumps(summary),
            },
        )
        registry.set_alias(settings, registry.CHALLENGER, version)
    shutil.rmtree(checkpoints, ignore_errors=True)  # registered: nothing left to resume
    return {**summary, "seconds": round(time.perf_counter() - started, 3)}
