"""The nightly ranker task: training rows → BST fit → two-stage evaluation → MLflow version.

:func:`train_ranker` trains the second stage, a BST ranker (:mod:`training.bst`) that
re-ranks the retriever's candidates, paired with one registered retriever version:

1. the training rows replay the holdout inside the training part with proxy retrievers
   and join Feast's point-in-time features (:mod:`training.ranker_rows`);
2. the BST is fitted on them, a tenth of the users validating (:func:`fit_ranker`, with
   the negatives of each list sampled, :func:`sample_negatives`);
3. the pair is evaluated on the window's holdout (:mod:`training.ranker_eval`);
4. the run is logged, the ranker's files registered as a pyfunc model
   (:mod:`training.pyfunc_ranker`) and the version aliased ``challenger`` with the tag
   ``retriever_version``: the canary judges and promotes the two together.

The MLflow run starts before step 1 (:func:`training.runs.training_run`), so its
duration is the work's. It holds the window, the ranker's settings and the model's
constructor arguments (``bst.dim``...) as params, the curves ``train_loss`` and ``val_auc`` per epoch,
the evaluation's HR@k, NDCG@k and AUC as metrics, and its counts and timings (rows,
users, proxy fits, seconds) as params. The version's tags are few (:func:`version_tags`).

The result is a :class:`training.results.RankerResult`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from features.ranker_columns import EVENT_TIMESTAMP
from graphrec import contract, lake
from graphrec.settings import Settings
from training import bst_io, pyfunc_ranker, registry, runs
from training.bst import BST, build_bst
from training.bst_encoding import encode
from training.bst_fit import BSTTrainConfig, fit_bst
from training.bst_io import save_ranker
from training.bst_vocab import Vocabulary
from training.data import InsufficientDataError, Window, holdout_start, load_window, temporal_split
from training.metrics import build_ranking_task
from training.ranker_candidates import LABEL
from training.ranker_eval import describe_evaluation, evaluate_pair, evaluation_key
from training.ranker_rows import build_training_rows
from training.results import RankerResult

log = logging.getLogger(__name__)

RANKER_DIR = "ranker"
PAIRED_RETRIEVER_TAG = "retriever_version"


def _catalog_items(settings: Settings, ds: dt.date, train: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    catalog = lake.read_catalog(settings.curated_dir, until=ds)
    items = np.union1d(catalog[contract.ITEM_ID].to_numpy(np.int64), train[contract.ITEM_ID].to_numpy(np.int64))
    categories = sorted(set(catalog[contract.CATEGORY].astype(str))) if contract.CATEGORY in catalog else []
    return items, categories


def train_ranker(
    settings: Settings,
    ds: dt.date,
    retriever_version: int,
    *,
    window_days: int | None = None,
    reason: str = "schedule",
    tags: Mapping[str, str] | None = None,
) -> RankerResult:
    """Train, evaluate, log and register the BST ranker paired with a retriever version.

    The new version gets the alias ``challenger`` and the tag ``retriever_version``: the
    canary judges and promotes the two together. ``tags`` are added to the run and the
    version (e.g. ``trigger=drift`` and the drift report that caused the run).

    Returns:
        The :class:`~training.results.RankerResult`: run, version, paired retriever
        version, the evaluation of :func:`~training.ranker_eval.evaluate_pair`
        (``ranker_ndcg_at_10`` ...) and its key, row counts, timings.
    """
    started = time.perf_counter()
    window_days = window_days or settings.training.window_days
    # The run starts before the data is read: its duration is the whole work's.
    with runs.training_run(settings, f"ranker-bst-{ds.isoformat()}-{reason}") as run:
        window = load_window(settings, ds, window_days)
        train, holdout = temporal_split(window.interactions, settings.training.holdout_days, end=window.end)
        task = build_ranking_task(train, holdout)
        if train.empty or task.n_users == 0:
            raise InsufficientDataError(f"no training events or holdout users in {window.data_window} for the ranker")
        _log_inputs(settings, window, retriever_version, reason=reason, tags=tags)
        retriever = registry.load_model_embeddings(settings, retriever_version)
        items, categories = _catalog_items(settings, ds, train)
        at = holdout_start(window.end, settings.training.holdout_days)
        rows, info = build_training_rows(settings, train, retriever, at)
        vocab = Vocabulary.build(items, categories)
        model, fit_info = fit_ranker(settings, rows, vocab)
        log.info("ranker fitted in %.1f s (best epoch %s)", fit_info["fit_seconds"], fit_info["best_epoch"])
        meta = {"seq_len": settings.ranker.seq_len}
        metrics = evaluate_pair(settings, task, train, at, retriever, (model, vocab, meta))
        _log_results(model, fit_info, metrics, info)
        version = register_ranker(
            settings,
            model,
            vocab,
            run.run_id,
            extra={
                "retriever_version": retriever_version,
                "ds": ds.isoformat(),
                "data_window": window.data_window,
                "metrics": metrics,
            },
            tags=version_tags(settings, retriever_version, ds, reason, window, metrics, tags),
        )
    result = RankerResult(
        run_id=run.run_id,
        model_version=version,
        retriever_version=retriever_version,
        ds=ds,
        reason=reason,
        evaluation=metrics,
        evaluation_key=evaluation_key(settings, window.fingerprint, window_days),
        **info,
        best_epoch=fit_info.get("best_epoch"),
        fit_seconds=fit_info["fit_seconds"],
        n_fit_rows=fit_info["n_fit_rows"],
        seconds=round(time.perf_counter() - started, 2),
    )
    registry.set_alias(settings, registry.CHALLENGER, version, model=settings.mlflow.ranker_model_name)
    log.info(
        "ranker v%s (paired with retriever v%s) %s",
        version,
        retriever_version,
        describe_evaluation(metrics, settings.ranker.k, at.date(), ds),
    )
    return result


def version_tags(
    settings: Settings,
    retriever_version: int,
    ds: dt.date,
    reason: str,
    window: Window,
    metrics: dict[str, Any],
    tags: Mapping[str, str] | None,
) -> dict[str, Any]:
    """A ranker version's tags: lineage and the headline numbers; the rest is in its run.

    Lineage: :data:`PAIRED_RETRIEVER_TAG` (the canary judges the pair), ``ds``, ``reason``,
    ``data_window`` and the run's trigger tags (``tags``). Quality: ``ranker_ndcg_at_k``
    against ``retrieval_ndcg_at_k`` (the retriever's own order) and ``ranker_auc``; every
    number of :func:`~training.ranker_eval.evaluate_pair` is a metric or param of the run.
    """
    k = settings.ranker.k
    quality = (f"ranker_ndcg_at_{k}", f"retrieval_ndcg_at_{k}", "ranker_auc")
    return {
        **(tags or {}),
        PAIRED_RETRIEVER_TAG: retriever_version,
        "ds": ds.isoformat(),
        "reason": reason,
        "data_window": json.dumps(window.data_window),
        **{name: metrics[name] for name in quality if metrics.get(name) is not None},
    }


def _log_inputs(
    settings: Settings,
    window: Window,
    retriever_version: int,
    *,
    reason: str,
    tags: Mapping[str, str] | None,
) -> None:
    """The active run's tags and the params known before the work."""
    mlflow.set_tags(
        {
            "ds": window.end.isoformat(),
            "reason": reason,
            "model": "bst",
            PAIRED_RETRIEVER_TAG: retriever_version,
            **(tags or {}),
        }
    )
    mlflow.log_params(
        {
            "data_window": json.dumps(window.data_window),
            "dataset_fingerprint": window.fingerprint,
            "retriever_version": retriever_version,
            "candidates": settings.ranker.candidates,
            "cuts": settings.ranker.cuts,
            "cut_every_days": settings.ranker.cut_every_days,
            "max_users": settings.ranker.max_users,
            "seq_len": settings.ranker.seq_len,
            "negatives_per_list": settings.ranker.negatives_per_list,
            "epochs": settings.ranker.epochs,
            "seed": settings.seed,
        }
    )


def _log_results(model: BST, fit_info: dict[str, Any], metrics: dict[str, Any], info: dict[str, Any]) -> None:
    """The model's params, per-epoch ``train_loss``/``val_auc``, the evaluation's metrics and,
    as params, the counts and timings (one number each, nothing to chart)."""
    for epoch, (loss, val_auc) in enumerate(zip(fit_info["losses"], fit_info["val_auc"]), start=1):
        mlflow.log_metrics({"train_loss": loss, **({"val_auc": val_auc} if val_auc is not None else {})}, step=epoch)
    quality = {name: float(value) for name, value in metrics.items() if _is_quality(name) and value is not None}
    mlflow.log_metrics(quality)
    counts = {name: value for name, value in metrics.items() if not _is_quality(name) and name != "candidates"}
    counts |= {name: fit_info[name] for name in ("best_epoch", "fit_seconds", "n_fit_rows")}
    for name, value in info.items():  # the cut times are "cut_times": "cuts" is the setting
        counts["cut_times" if name == "cuts" else name] = json.dumps(value) if isinstance(value, list) else value
    mlflow.log_params({**{f"bst.{name}": value for name, value in model.config().items()}, **counts})


def _is_quality(name: str) -> bool:
    """Whether an evaluation number is a quality metric (HR, NDCG, AUC) rather than a count."""
    return "_hr_at_" in name or "_ndcg_at_" in name or name.endswith("_auc")


def sample_negatives(rows: pd.DataFrame, per_list: int, seed: int) -> np.ndarray:
    """Positions of ``rows`` to train on: every positive, and up to ``per_list`` negatives of
    each candidate list (``user_id``, ``event_timestamp``) drawn uniformly at random (seeded).

    A list holds ~100 candidates and a few positives: the negatives are many and alike,
    and a sample of them teaches the ranker nearly as much at a fraction of the cost.
    Sampling uniformly over the list keeps every rank of the list represented.
    ``per_list = 0`` keeps every row.
    """
    if per_list <= 0:
        return np.arange(len(rows))
    draw = np.random.default_rng(seed).random(len(rows))
    negative = rows[LABEL].to_numpy() == 0
    keys = pd.DataFrame(
        {
            "u": rows[contract.USER_ID].to_numpy(),
            "t": rows[EVENT_TIMESTAMP].to_numpy(),
            "draw": np.where(negative, draw, np.inf),
        }
    )
    order = keys.groupby(["u", "t"], sort=False)["draw"].rank(method="first").to_numpy()
    return np.flatnonzero(~negative | (order <= per_list))


def fit_ranker(settings: Settings, rows: pd.DataFrame, vocab: Vocabulary) -> tuple[BST, dict[str, Any]]:
    """Fit a BST on feature-joined rows; a tenth of the users (seeded hash) validate.

    Rows are encoded whole (a row's rank and score gap within its list need the full
    list); the training users' rows are then sampled (:func:`sample_negatives`,
    ``settings.ranker.negatives_per_list``), the validation users' are all kept, so the
    early-stopping AUC is measured on lists as the ranker meets them.
    """
    users = rows[contract.USER_ID].to_numpy(np.int64)
    valid_mask = (pd.util.hash_array(users ^ settings.seed) % 10) == 0
    encoded_at = time.perf_counter()
    batch = encode(rows, vocab, settings.ranker.seq_len)
    encoding_seconds = time.perf_counter() - encoded_at
    labels = rows[LABEL].to_numpy(np.float32)
    model = build_bst(vocab, seed=settings.seed, seq_len=settings.ranker.seq_len)
    valid = None
    sampled = np.zeros(len(rows), dtype=bool)
    sampled[sample_negatives(rows, settings.ranker.negatives_per_list, settings.seed)] = True
    train_index = np.flatnonzero(~valid_mask & sampled)
    if valid_mask.any() and (~valid_mask).any():
        index = np.flatnonzero(valid_mask)
        valid = (batch.subset(index), labels[index])
    else:
        train_index = np.flatnonzero(sampled)
    log.info(
        "ranker: %s rows encoded in %.1f s; training on %s of them (negatives sampled), validating on %s",
        f"{len(rows):,}",
        encoding_seconds,
        f"{len(train_index):,}",
        f"{len(valid[1]):,}" if valid is not None else "none",
    )
    config = BSTTrainConfig(epochs=settings.ranker.epochs, seed=settings.seed, patience=2 if valid else 0)
    result = fit_bst(model, batch.subset(train_index), labels[train_index], config, valid=valid)
    return model, {
        "losses": list(result.losses),
        "val_auc": list(result.valid_auc) or [None] * len(result.losses),
        "best_epoch": result.best_epoch,
        "fit_seconds": round(result.seconds, 2),
        "n_fit_rows": len(train_index),
    }


def register_ranker(
    settings: Settings,
    model: BST,
    vocab: Vocabulary,
    run_id: str,
    extra: dict[str, Any],
    tags: dict[str, Any] | None = None,
) -> int:
    """Log the ranker's files (``ranker/``) to ``run_id`` and register them as a new version with ``tags``."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / RANKER_DIR
        save_ranker(model, vocab, directory, extra={**extra, "seq_len": settings.ranker.seq_len})
        version = pyfunc_ranker.log_and_register(settings, directory, run_id, tags)
    return version


def load_ranker(settings: Settings, ref: int | str) -> tuple[BST, Vocabulary, dict[str, Any], Path]:
    """A registered ranker by version or alias: ``(model, vocab, meta, files)``; the files
    (``ranker.pt``, ``ranker.json``) are downloaded to a temporary directory that lives as
    long as the process (publication copies them into the index bundle)."""
    directory = pyfunc_ranker.download(settings, ref)
    model, vocab, meta = bst_io.load_ranker(directory)
    return model, vocab, meta, directory
