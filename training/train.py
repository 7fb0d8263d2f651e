"""Training loop of the LightGCN retriever (PyTorch Geometric), full-softmax or BPR loss.

LightGCN (`He et al., 2020 <https://arxiv.org/abs/2002.02126>`_) learns one free
embedding ``x_i^(0)`` per user and item and propagates it over the normalised
user-item graph without weights or non-linearities:

.. math::
    \\mathbf{x}^{(l+1)} = \\hat{A}\\,\\mathbf{x}^{(l)}, \\qquad
    \\hat{A} = D^{-1/2} A D^{-1/2}, \\qquad
    \\mathbf{x} = \\frac{1}{L+1} \\sum_{l=0}^{L} \\mathbf{x}^{(l)}

and scores a user-item pair by ``<x_u, x_i>``. Training uses Adam on one of two losses
(:func:`training.losses.batch_loss`, ``TrainConfig.loss``):

* ``"softmax"``, what the product trains with (the default of ``settings.training.loss``): each
  positive against a softmax over *all* items, with the epoch's edges grouped by user
  (:func:`epoch_order`). A step still costs one full-graph propagation, but it teaches
  every positive against every item instead of one negative: on Gowalla it reaches in
  about 10 epochs (~3 minutes on 2 cores) the Recall@20 that BPR reached after 140
  epochs (README, Performance);
* ``"bpr"``, the paper's and :class:`~training.train_config.TrainConfig`'s own default
  (``mf`` always uses it): Bayesian Personalised Ranking over (user, positive item, one
  sampled negative) triples (:meth:`torch_geometric.nn.models.LightGCN.recommendation_loss`).

Speed: ``Â`` never changes, so it is normalised once (:mod:`training.adjacency`) and handed to
the model as a torch sparse CSR matrix with ``normalize=False``; each layer is then one
sparse-dense product instead of gathering and scattering messages per edge and
re-normalising on every call, and the backward pass reuses ``Â`` because it is
symmetric (:mod:`training.model`). Measured on the simulator's default graph
(1.4k nodes, 51k directed edges, dim 64, 3 layers, one thread), forward + backward per
step: plain ``edge_index`` ~80-120 ms, CSR with PyG's LGConv ~15-23 ms, symmetric CSR
~6-9 ms; the 30 default epochs took ~36 s, ~9 s and ~3-4 s (2-core machine shared with
other jobs). All three give the same model (``tests/training``).

Hygiene, all off by default (the defaults train exactly as before they existed):

* **Early stopping** (``TrainConfig.patience > 0`` with an ``evaluate`` callback): stop
  after ``patience`` evaluations in a row without a higher ``TrainConfig.monitor`` and
  return the embeddings of the best evaluation, not the last. The callback scores a
  validation split the caller takes from the training data (never the test set).
* **Checkpoints** (``checkpoint_dir``): the whole loop state is saved at every evaluation,
  every ``TrainConfig.checkpoint_every`` epochs and after the last epoch
  (:mod:`training.checkpoint`); ``resume=True`` continues from it, and a run of ``N``
  epochs equals ``N / 2`` epochs plus a resume to ``N``, bit for bit.
* **Progress** (:mod:`training.progress`): a tqdm bar with the live loss and metric on a
  terminal, one labelled log line per epoch elsewhere (Airflow's task logs).
* **Warm start** (``init``): start from another model's layer-0 embeddings (the
  previous night's champion, :mod:`training.retriever_init`) instead of random ones. Users and
  items are matched by external id (:mod:`training.warm_start`); those ``init`` does not know
  keep the random init, those only ``init`` knows are dropped. The optimizer starts
  afresh. :attr:`TrainResult.base_embeddings` are the layer-0 embeddings a later warm
  start can begin from.

**Distributed data parallel** (:mod:`training.ddp`). Under ``torchrun`` every rank holds
the whole graph, computes the full propagation through
:class:`~torch.nn.parallel.DistributedDataParallel` and trains on its shard of each
global batch, so that a step equals the one-process step on the whole batch. Rank 0
alone evaluates, checkpoints and reports. The command line is :mod:`training.distributed`.

This module holds no I/O but the optional checkpoint file: graphs in, embeddings and a
history of numbers out.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.nn.models import LightGCN

from training.adjacency import homogeneous_edge_index, normalized_adjacency
from training.checkpoint import LoopState, fingerprint, load_checkpoint, restore_state, save_state
from training.data import BipartiteGraph
from training.ddp import Ranks, current_ranks, from_main
from training.embeddings import ModelEmbeddings
from training.losses import LOSSES, Positives, Shard, batch_loss
from training.model import build_lightgcn
from training.progress import EpochProgress
from training.threads import torch_threads
from training.train_config import TrainConfig, step_batch_size
from training.warm_start import apply_warm_start, init_digest


@dataclasses.dataclass
class TrainResult:
    """What a training run produced.

    Args:
        embeddings: layer-combined user and item embeddings with external ids: the best
            evaluation's with early stopping (``best_epoch``), else the last epoch's.
        losses: mean training loss per epoch (``losses[e - 1]`` is epoch ``e``).
        evaluations: ``(epoch, metrics)`` pairs from the evaluation callback.
        seconds: wall time of the optimisation (evaluations included; a resumed run adds
            the time of the sessions before).
        best_epoch: with early stopping (``patience > 0`` and a callback), the epoch whose
            embeddings are returned; ``None`` otherwise.
        stopped_early: whether training stopped before ``epochs`` for lack of progress.
        epochs_run: epochs trained, resumed ones included (``len(losses)``).
        base_embeddings: the layer-0 parameters (``x^(0)``) that ``embeddings`` were
            propagated from, with the same ids; what a warm start begins from.
    """

    embeddings: ModelEmbeddings
    losses: list[float]
    evaluations: list[tuple[int, dict[str, float]]]
    seconds: float
    best_epoch: int | None = None
    stopped_early: bool = False
    epochs_run: int = 0
    base_embeddings: ModelEmbeddings | None = None


EvalFn = Callable[[ModelEmbeddings], dict[str, float]]


SMALL_GRAPH_EDGES = 200_000
PROPAGATIONS = ("symmetric_csr", "csr", "edge_index")


def default_threads(n_edges: int, world_size: int = 1) -> int:
    """One thread for small graphs, else the cores shared among ``world_size`` processes."""
    return 1 if n_edges < SMALL_GRAPH_EDGES else max(1, (os.cpu_count() or 1) // world_size)


class _Propagation(torch.nn.Module):
    """``forward(adj)`` is ``lightgcn.get_embedding(adj)``: the step's only forward, so that
    DistributedDataParallel sees it and all-reduces the embedding table's gradient."""

    def __init__(self, lightgcn: LightGCN) -> None:
        super().__init__()
        self.lightgcn = lightgcn

    def forward(self, adj: Tensor) -> Tensor:
        return self.lightgcn.get_embedding(adj)


def _build_model(
    graph: BipartiteGraph, config: TrainConfig, init: ModelEmbeddings | None = None
) -> tuple[LightGCN, Tensor]:
    n_nodes = graph.n_users + graph.n_items
    if config.propagation == "edge_index":
        model, adj = LightGCN(n_nodes, config.embedding_dim, config.num_layers), homogeneous_edge_index(graph)
    else:
        symmetric = config.propagation == "symmetric_csr"
        model = build_lightgcn(n_nodes, config.embedding_dim, config.num_layers, symmetric_sparse=symmetric)
        adj = normalized_adjacency(graph)
    if config.init_std is not None:
        torch.nn.init.normal_(model.embedding.weight, std=config.init_std)
    if init is not None:  # the random init stays for whom init does not know
        apply_warm_start(model.embedding.weight, graph, init)
    return model, adj


def _split(out: np.ndarray, graph: BipartiteGraph) -> ModelEmbeddings:
    return ModelEmbeddings(
        user_ids=graph.users.ids.copy(),
        item_ids=graph.items.ids.copy(),
        user_emb=out[: graph.n_users],
        item_emb=out[graph.n_users :],
    )


def _embeddings(model: LightGCN, adj: torch.Tensor, graph: BipartiteGraph) -> ModelEmbeddings:
    with torch.no_grad():
        return _split(model.get_embedding(adj).numpy().astype(np.float32, copy=True), graph)


def _base_embeddings(model: LightGCN, graph: BipartiteGraph) -> ModelEmbeddings:
    """The layer-0 parameters ``x^(0)`` split into users and items."""
    with torch.no_grad():
        return _split(model.embedding.weight.detach().numpy().astype(np.float32, copy=True), graph)


def _check(graph: BipartiteGraph, config: TrainConfig, checkpoint_dir: Path | None, resume: bool) -> None:
    if graph.n_edges == 0:
        raise ValueError("cannot train on a graph without edges")
    if config.propagation not in PROPAGATIONS:
        raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {config.propagation!r}")
    if config.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {config.loss!r}")
    if config.patience < 0 or config.checkpoint_every < 0:
        raise ValueError("patience and checkpoint_every must be >= 0")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    if not config.temperature > 0 or not 0 < config.lr_decay <= 1:
        raise ValueError(f"temperature must be > 0 and lr_decay in (0, 1], got {config.temperature}, {config.lr_decay}")
    if config.item_l2_degree_power < 0:
        raise ValueError(f"item_l2_degree_power must be >= 0, got {config.item_l2_degree_power}")


def epoch_order(graph: BipartiteGraph, config: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """The order in which an epoch visits the training edges.

    A random permutation of the edges, except for the ``"softmax"`` loss: there the users
    are shuffled and each user's edges follow one another, so that a batch holds all the
    positives of few users (one row of the user x item score matrix per distinct user).
    """
    if config.loss != "softmax":
        return rng.permutation(graph.n_edges)
    rank = rng.permutation(graph.n_users)
    return np.argsort(rank[graph.edge_index[0]], kind="stable")


def _train_epoch(
    step_model: torch.nn.Module,
    model: LightGCN,
    adj: Tensor,
    optimizer: torch.optim.Optimizer,
    graph: BipartiteGraph,
    config: TrainConfig,
    positives: Positives,
    rngs: tuple[np.random.Generator, np.random.Generator],
    ranks: Ranks,
) -> float:
    """One pass over the shuffled edges; returns the mean loss of the global batches."""
    edges = graph.edge_index
    perm_rng, neg_rng = rngs
    perm = epoch_order(graph, config, perm_rng)
    total = 0.0
    size = step_batch_size(config, graph.n_edges)
    for lo in range(0, graph.n_edges, size):
        batch = perm[lo : lo + size]
        mine, shard = batch, None
        if ranks.distributed:
            mine = np.array_split(batch, ranks.world_size)[ranks.rank]
            shard = Shard(len(batch), ranks.world_size)
        out = step_model(adj)
        loss = batch_loss(model, out, edges[0, mine], edges[1, mine], config, neg_rng, positives, shard)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(batch)
    if ranks.distributed:  # the global loss is the ranks' average
        summed = torch.tensor([total], dtype=torch.float64)
        dist.all_reduce(summed)
        total = float(summed) / ranks.world_size
    return total / graph.n_edges


def train_lightgcn(
    graph: BipartiteGraph,
    config: TrainConfig,
    evaluate: EvalFn | None = None,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    init: ModelEmbeddings | None = None,
    label: str = "lightgcn",
) -> TrainResult:
    """Train LightGCN on a bipartite graph with ``config.loss`` (full softmax, or BPR with uniform negatives).

    In an initialised ``torch.distributed`` group of two or more processes, this is one
    rank of a DDP run (see the module docstring): call it on every rank with the same
    graph and config.

    Args:
        graph: the training graph (:func:`training.data.build_graph`).
        config: hyper-parameters; runs with equal graphs and configs (and process
            counts) give equal results.
        evaluate: optional callback scoring the current :class:`ModelEmbeddings`
            (for example validation Recall@20/NDCG@20); called every ``config.eval_every``
            epochs and after the last one. With ``config.patience > 0`` training stops
            after ``patience`` evaluations without a higher ``config.monitor`` and the
            best evaluation's embeddings are returned. Under DDP only rank 0 calls it
            (the other ranks may pass ``None``).
        checkpoint_dir: save the loop's state to ``checkpoint_dir/checkpoint.pt`` at every
            evaluation, every ``config.checkpoint_every`` epochs and after the last epoch
            (rank 0 writes; under DDP on several machines it must be a shared path).
        resume: continue from the checkpoint in ``checkpoint_dir`` when there is one
            (after its epoch, up to ``config.epochs``; a missing one starts afresh, so
            retries can always pass ``True``).
        progress: a tqdm bar (``True``), one log line per epoch (``False``) or a bar only
            when stderr is a terminal (``None``); rank 0 only.
        init: warm start: layer-0 embeddings (:attr:`TrainResult.base_embeddings` of an
            earlier run) for the users and items they know, matched by external id; the
            others get the usual random init. ``None`` (default) starts from scratch.
        label: what the progress lines call this run (e.g. ``"retriever lightgcn"``).

    Returns:
        A :class:`TrainResult` with the embeddings (``model.get_embedding``, the
        layer-combined ones) split into users and items, and the layer-0 ones.

    Raises:
        ValueError: an empty graph, an unknown ``propagation`` or ``loss``, ``init`` of
            another dimension, or a checkpoint written for another graph, config, init
            or process count.
    """
    _check(graph, config, checkpoint_dir, resume)
    ranks = current_ranks()
    with torch_threads(config.num_threads or default_threads(graph.n_edges, ranks.world_size)):
        torch.manual_seed(config.seed)
        model, adj = _build_model(graph, config, init)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        perm_rng = np.random.default_rng(config.seed)  # the same edge order on every rank
        neg_rng = np.random.default_rng([config.seed, ranks.rank]) if ranks.distributed else perm_rng
        rngs = (perm_rng, neg_rng)
        edges = graph.edge_index
        positives = Positives(graph.n_users, graph.n_items, np.sort(edges[0] * graph.n_items + edges[1]))
        expected = fingerprint(graph, config, ranks.world_size) if checkpoint_dir is not None else None
        if expected is not None and init is not None:
            expected["init_sha256"] = init_digest(init)
        saved = load_checkpoint(checkpoint_dir, expected) if resume else None
        state = restore_state(saved, model, optimizer, rngs, ranks) if saved else LoopState()
        step_model: torch.nn.Module = _Propagation(model)
        if ranks.distributed:
            step_model = DistributedDataParallel(step_model, broadcast_buffers=False)
        (evaluating,) = from_main(ranks, evaluate is not None)
        early = bool(evaluating) and config.patience > 0
        reporter = (
            EpochProgress(config.epochs, state.epoch, config.monitor, progress, label=label, loss=config.loss)
            if ranks.main
            else None
        )
        start = time.perf_counter() - state.seconds
        stopped = early and state.stale >= config.patience
        try:
            for epoch in range(state.epoch + 1, config.epochs + 1):
                if stopped:
                    break
                epoch_start = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = config.learning_rate * config.lr_decay ** (epoch - 1)
                model.train()
                state.losses.append(
                    _train_epoch(step_model, model, adj, optimizer, graph, config, positives, rngs, ranks)
                )
                state.epoch = epoch
                last = epoch == config.epochs
                metrics = None
                if evaluating and (last or (config.eval_every and epoch % config.eval_every == 0)):
                    metrics, stopped = _evaluation(state, model, adj, graph, config, evaluate, early, ranks)
                state.seconds = time.perf_counter() - start
                every = config.checkpoint_every and epoch % config.checkpoint_every == 0
                if checkpoint_dir is not None and (metrics is not None or last or every or stopped):
                    save_state(checkpoint_dir, state, model, optimizer, rngs, expected, ranks)
                if reporter is not None:
                    reporter.update(epoch, state.losses[-1], time.perf_counter() - epoch_start, metrics)
        finally:
            if reporter is not None:
                reporter.close()
        if early and state.best_state is not None:
            model.load_state_dict(state.best_state)
        model.eval()
        return TrainResult(
            _embeddings(model, adj, graph),
            state.losses,
            state.evaluations,
            time.perf_counter() - start,
            best_epoch=state.best_epoch if early else None,
            stopped_early=stopped and state.epoch < config.epochs,
            epochs_run=state.epoch,
            base_embeddings=_base_embeddings(model, graph),
        )


def _evaluation(
    state: LoopState,
    model: LightGCN,
    adj: Tensor,
    graph: BipartiteGraph,
    config: TrainConfig,
    evaluate: EvalFn | None,
    early: bool,
    ranks: Ranks,
) -> tuple[dict[str, float] | None, bool]:
    """Rank 0 evaluates; every rank learns whether it improved and whether to stop.

    Returns:
        ``(metrics, stop)``; ``metrics`` is ``None`` on ranks other than 0.
    """
    metrics, improved = None, False
    if ranks.main:
        model.eval()
        metrics = evaluate(_embeddings(model, adj, graph))
        state.evaluations.append((state.epoch, metrics))
        if early:
            if config.monitor not in metrics:
                raise ValueError(
                    f"early stopping monitors {config.monitor!r}, the evaluation returned {sorted(metrics)}"
                )
            value = float(metrics[config.monitor])
            improved = not math.isnan(value) and (state.best_value is None or value > state.best_value)
            if improved:
                state.best_value = value
    if not early:
        return metrics, False
    (improved,) = from_main(ranks, improved)
    if improved:  # every rank holds the same parameters, so each keeps its own copy
        state.best_epoch, state.stale = state.epoch, 0
        state.best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    else:
        state.stale += 1
    return metrics, state.stale >= config.patience
