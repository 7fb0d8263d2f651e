"""The retriever kinds ``train_retriever`` can fit, each ending as a :class:`ModelEmbeddings`.

Every kind is a dot-product model over the training graph's users and items, so the
same evaluation (:func:`training.metrics.evaluate_embeddings`), MLflow registration,
canary gate, FAISS index and recommender serve all of them:

* ``lightgcn``: LightGCN (:func:`training.train.train_lightgcn`) with ``settings.training.loss``
  (full softmax by default, or BPR), dimension ``embedding_dim``;
* ``mf``: MF-BPR, the same trainer with ``num_layers = 0``, dimension ``embedding_dim``;
* ``gfcf``: GF-CF, closed form and training-free (:func:`training.gfcf.fit_gfcf`),
  exported by :meth:`training.gfcf.GFCF.embeddings`, dimension ``2 k``;
* ``popularity``: item counts (:func:`training.metrics.popularity_model`), dimension 1.
  The canary never promotes it (it cannot beat itself) unless forced.

A kind's *params* (:func:`model_params`) are a JSON-able dict that fully describes the
fit: they are logged to MLflow, stored in the embeddings' ``meta``, part of the
idempotency key, and the only input :func:`fit_model` takes besides the data.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pandas as pd

from graphrec.settings import RETRIEVER_MODELS, Settings
from training.data import BipartiteGraph, InsufficientDataError
from training.embeddings import ModelEmbeddings
from training.gfcf import fit_gfcf
from training.losses import DEFAULT_WEIGHT_DECAY
from training.metrics import popularity_model
from training.train import EvalFn, train_lightgcn
from training.train_config import TrainConfig

#: MLflow param prefix per kind (``train.epochs``, ``gfcf.k``...).
PARAM_PREFIX = {"lightgcn": "train", "mf": "train", "gfcf": "gfcf", "popularity": "popularity"}

#: The kinds trained for epochs (with an evaluation callback and early stopping); the
#: others are fitted in closed form and need no validation split.
TRAINED_KINDS = ("lightgcn", "mf")


@dataclasses.dataclass
class FittedRetriever:
    """What fitting one retriever kind produced.

    Args:
        embeddings: user and item embeddings with the graph's external ids.
        seconds: wall time of the fit (evaluation callbacks included).
        losses: mean loss per epoch (trained kinds only).
        evaluations: ``(epoch, metrics)`` pairs from the evaluation callback.
        details: numbers known only after fitting (e.g. GF-CF's ``k`` after capping).
        best_epoch: trained kinds with early stopping: the epoch whose embeddings were
            kept (``None`` when the trainer does not report one).
        stopped_early: whether training stopped before ``epochs`` for lack of progress.
        epochs_run: epochs actually trained (trained kinds only).
        base_embeddings: trained kinds: the layer-0 parameters ``embeddings`` were
            propagated from (equal to them for ``mf``); what a warm start begins from.
    """

    embeddings: ModelEmbeddings
    seconds: float
    losses: list[float] = dataclasses.field(default_factory=list)
    evaluations: list[tuple[int, dict[str, float]]] = dataclasses.field(default_factory=list)
    details: dict[str, float] = dataclasses.field(default_factory=dict)
    best_epoch: int | None = None
    stopped_early: bool = False
    epochs_run: int | None = None
    base_embeddings: ModelEmbeddings | None = None


def check_kind(kind: str) -> str:
    """``kind`` if it is a known retriever kind, else a ``ValueError`` listing them."""
    if kind not in RETRIEVER_MODELS:
        raise ValueError(f"unknown retriever model {kind!r}: choose one of {', '.join(RETRIEVER_MODELS)}")
    return kind


def model_params(kind: str, config: TrainConfig, settings: Settings) -> dict[str, Any]:
    """The JSON-able params of ``kind``.

    Args:
        kind: one of :data:`graphrec.settings.RETRIEVER_MODELS`.
        config: the trainer's config (``lightgcn``; ``mf`` with ``num_layers = 0`` and
            the BPR loss, with BPR's default L2 unless the settings set one).
        settings: ``gfcf_k``, ``gfcf_alpha`` and ``seed`` for ``gfcf``.
    """
    check_kind(kind)
    if kind == "lightgcn":
        return dataclasses.asdict(config)
    if kind == "mf":  # MF-BPR: no propagation, always the BPR loss
        decay = (
            DEFAULT_WEIGHT_DECAY["bpr"] if settings.training.weight_decay is None else settings.training.weight_decay
        )
        return dataclasses.asdict(dataclasses.replace(config, num_layers=0, loss="bpr", weight_decay=decay))
    if kind == "gfcf":
        return {"k": settings.training.gfcf_k, "alpha": settings.training.gfcf_alpha, "seed": settings.seed}
    return {}


def logged_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` named for MLflow: ``{"train.epochs": 30, ...}`` or ``{"gfcf.k": 256, ...}``."""
    return {f"{PARAM_PREFIX[kind]}.{name}": value for name, value in params.items()}


def fit_model(
    kind: str,
    params: dict[str, Any],
    graph: BipartiteGraph,
    history: pd.DataFrame,
    evaluate: EvalFn | None = None,
    checkpoint_dir: Path | None = None,
    init: ModelEmbeddings | None = None,
    label: str | None = None,
) -> FittedRetriever:
    """Fit a retriever of ``kind`` on the training graph.

    Args:
        kind: one of :data:`graphrec.settings.RETRIEVER_MODELS`.
        params: its params (:func:`model_params`).
        graph: the graph to fit (:func:`training.data.build_graph`); for the trained
            kinds with a validation split, the graph of its fit part only.
        history: the training interactions (popularity counts repeats; the graph does not).
        evaluate: called by the trained kinds every ``eval_every`` epochs; with
            ``patience > 0`` in ``params`` the trainer stops early on its ``monitor`` key
            and returns the embeddings of the best evaluation.
        checkpoint_dir: the trained kinds checkpoint there and resume from what a
            previous, interrupted attempt left (:func:`training.train.train_lightgcn`).
        init: the trained kinds: warm-start from these layer-0 embeddings (matched by
            external id; see :func:`training.train.train_lightgcn`). Other kinds have no
            parameters to start from and refuse it.
        label: the trained kinds: what their epoch lines call the fit (default: ``kind``).

    Raises:
        InsufficientDataError: GF-CF on fewer than two users or items (no SVD to take).
        ValueError: ``init`` for a kind other than ``lightgcn`` and ``mf``.
    """
    check_kind(kind)
    started = time.perf_counter()
    if init is not None and kind not in TRAINED_KINDS:
        raise ValueError(f"{kind} cannot be warm-started: only {', '.join(TRAINED_KINDS)} have trained parameters")
    if kind in TRAINED_KINDS:
        result = train_lightgcn(
            graph,
            TrainConfig(**params),
            evaluate,
            checkpoint_dir=checkpoint_dir,
            resume=checkpoint_dir is not None,
            init=init,
            label=label or kind,
        )
        return FittedRetriever(
            result.embeddings,
            result.seconds,
            list(result.losses),
            list(result.evaluations),
            best_epoch=result.best_epoch,
            stopped_early=result.stopped_early,
            epochs_run=result.epochs_run,
            base_embeddings=result.base_embeddings,
        )
    if kind == "gfcf":
        if min(graph.n_users, graph.n_items) < 2:
            raise InsufficientDataError(
                f"GF-CF needs at least 2 users and 2 items, the graph has {graph.n_users} and {graph.n_items}"
            )
        fitted = fit_gfcf(
            graph.edge_index[0],
            graph.edge_index[1],
            graph.n_users,
            graph.n_items,
            k=params["k"],
            alpha=params["alpha"],
            user_ids=graph.users.ids,
            item_ids=graph.items.ids,
            seed=params["seed"],
        )
        embeddings = fitted.embeddings()
        return FittedRetriever(
            embeddings,
            time.perf_counter() - started,
            details={"gfcf_k_used": embeddings.meta["k"], "gfcf_svd_seconds": fitted.fit_seconds},
        )
    return FittedRetriever(popularity_model(history), time.perf_counter() - started)
