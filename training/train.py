"""Training loop of the LightGCN retriever (PyTorch Geometric), BPR or full-softmax loss.

LightGCN (`He et al., 2020 <https://arxiv.org/abs/2002.02126>`_) learns one free
embedding ``x_i^(0)`` per user and item and propagates it over the normalised
user-item graph without weights or non-linearities:

.. math::
    \\mathbf{x}^{(l+1)} = \\hat{A}\\,\\mathbf{x}^{(l)}, \\qquad
    \\hat{A} = D^{-1/2} A D^{-1/2}, \\qquad
    \\mathbf{x} = \\frac{1}{L+1} \\sum_{l=0}^{L} \\mathbf{x}^{(l)}

and scores a user-item pair by ``<x_u, x_i>``. Training uses Adam on one of two losses
(:func:`training.losses.batch_loss`, ``TrainConfig.loss``):

* ``"bpr"``, the paper's: Bayesian Personalised Ranking over (user, positive item, one
  sampled negative) triples (:meth:`torch_geometric.nn.models.LightGCN.recommendation_loss`);
* ``"softmax"``: each positive against a softmax over *all* items, with the epoch's edges
  grouped by user (:func:`epoch_order`). A step still costs one full-graph propagation,
  but it now teaches every positive against every item instead of one negative: on
  Gowalla it reaches in about 10 epochs (~3 minutes on 2 cores) the Recall@20 that BPR
  reached after 140 epochs (README, Performance).

Speed: ``Â`` never changes, so it is normalised once (``gcn_norm``) and handed to
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
  terminal, one log line per epoch elsewhere (Airflow's task logs).
* **Warm start** (``init``): start from another model's layer-0 embeddings (the
  previous night's champion, :mod:`training.retriever`) instead of random ones. Users and
  items are matched by external id (:func:`warm_start_rows`); those ``init`` does not know
  keep the random init, those only ``init`` knows are dropped. The optimizer starts
  afresh. :attr:`TrainResult.base_embeddings` are the layer-0 embeddings a later warm
  start can begin from.

**Distributed data parallel.** Under ``torchrun`` (any initialised ``torch.distributed``
group of two or more processes; gloo on CPU) every rank holds the whole graph and
computes the full propagation through :class:`~torch.nn.parallel.DistributedDataParallel`.
All ranks draw the same edge permutation; each global batch of ``batch_size`` edges is
cut into ``world_size`` contiguous shards, each rank samples negatives for its shard
(its own generator, seeded by ``(seed, rank)``) and DDP averages the gradients. The
shard losses are scaled so that this average is exactly the gradient of the one-process
loss of the whole batch, L2 term included (:mod:`training.losses`), so one optimisation step
sees the same ``batch_size`` edges as in one process and reaches the same quality
(``tests/training/test_training_distributed.py``). Rank 0 alone evaluates, checkpoints
and reports; its early-stopping decisions are broadcast so all ranks stop together.
The command line is :mod:`training.distributed`.

This module holds no I/O but the optional checkpoint file: graphs in, embeddings and a
history of numbers out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.models import LightGCN
from torch_geometric.utils import to_torch_csr_tensor

from training.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from training.data import BipartiteGraph
from training.embeddings import ModelEmbeddings
from training.ids import IdMap
from training.losses import LOSSES, Positives, Shard, batch_loss
from training.losses import sample_negatives as sample_negatives  # re-exported: callers import it from here
from training.model import build_lightgcn
from training.progress import EpochProgress


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one LightGCN training run.

    Args:
        epochs: passes over the (deduplicated) training edges. (default: ``30``)
        embedding_dim: size of the embeddings. (default: ``64``)
        num_layers: number of propagation layers ``L``. (default: ``3``)
        learning_rate: Adam's step size. (default: ``0.01``)
        batch_size: positive edges per optimisation step; under DDP the global batch,
            shared among the ranks. (default: ``2048``)
        max_steps_per_epoch: when positive, a large graph's batch grows to
            ``ceil(edges / max_steps_per_epoch)`` edges (never below ``batch_size``). Each
            step propagates over the whole graph, so an epoch costs steps x edges: with
            a fixed batch that grows with the square of the data, with a bounded number
            of steps linearly. ``0`` keeps ``batch_size``. (default: ``0``)
        weight_decay: L2 strength ``lambda`` of the BPR loss on the batch's layer-0
            embeddings. (default: ``1e-4``)
        seed: seeds the initial embeddings, the edge shuffling and negative sampling.
        eval_every: evaluate every this many epochs (and after the last one) when an
            evaluation callback is given; ``0`` evaluates only after the last epoch.
        num_threads: torch intra-op threads during training (per process); ``None`` picks
            one thread for graphs under ``SMALL_GRAPH_EDGES`` edges (the per-layer products
            are too small to split, and on a busy 2-core machine a second thread made
            steps up to 10x slower) and all cores above, shared among the processes of a
            DDP run (Gowalla, 810k edges: 2 threads trained 70 epochs at batch 32768 in
            355 s against 961 s on one thread, same model).
        propagation: ``"symmetric_csr"`` (default, fastest), ``"csr"`` (PyG's LGConv over
            the pre-normalised CSR matrix) or ``"edge_index"`` (PyG's LGConv normalising
            a plain ``edge_index`` on every call). All three compute the same model.
        loss: the training objective, one of :data:`LOSSES`. (default: ``"bpr"``)
        patience: stop after this many evaluations in a row without a higher ``monitor``
            and return the best evaluation's embeddings; ``0`` (default) never stops
            early and returns the last epoch's.
        monitor: the key of the evaluation callback's dict that early stopping watches;
            higher is better. (default: ``"recall_at_20"``)
        checkpoint_every: with a checkpoint directory, also save every this many epochs
            (besides every evaluation and the last epoch); ``0`` saves only then.
            (default: ``10``)
        init_std: draw the initial embeddings from ``N(0, init_std^2)`` (the official
            LightGCN code uses ``0.1``); ``None`` keeps PyG's Xavier-uniform init, whose
            scale (~0.01 on Gowalla) is too small for the ``"softmax"`` loss: with it,
            Gowalla reached Recall@20 0.092 after 8 epochs against 0.166 with ``0.1``.
            (default: ``None``)
        temperature: ``tau`` of the ``"softmax"`` loss (scores are divided by it before
            the softmax); unused by BPR. (default: ``0.1``)
        lr_decay: epoch ``e`` trains with ``learning_rate * lr_decay ** (e - 1)``
            (a function of the epoch alone, so resumed runs keep the schedule); ``1``
            keeps the rate constant. (default: ``1.0``)
        item_l2_degree_power: exponent ``beta`` of the ``"softmax"`` loss's per-item L2
            weights: item ``i``'s row counts ``max(d_i, 1)^beta`` (``d_i`` its training
            degree), scaled to average 1 over the items (:mod:`training.losses`); ``0``
            is the uniform term. Unused by BPR. (default: ``0.0``)
    """

    epochs: int = 30
    embedding_dim: int = 64
    num_layers: int = 3
    learning_rate: float = 0.01
    batch_size: int = 2048
    max_steps_per_epoch: int = 0
    weight_decay: float = 1e-4
    seed: int = 42
    eval_every: int = 5
    num_threads: int | None = None
    propagation: str = "symmetric_csr"
    loss: str = "bpr"
    patience: int = 0
    monitor: str = "recall_at_20"
    checkpoint_every: int = 10
    init_std: float | None = None
    temperature: float = 0.1
    lr_decay: float = 1.0
    item_l2_degree_power: float = 0.0


def step_batch_size(config: TrainConfig, n_edges: int) -> int:
    """Edges per step: ``config.batch_size``, or more to stay within ``max_steps_per_epoch``."""
    if config.max_steps_per_epoch <= 0:
        return config.batch_size
    return max(config.batch_size, -(-n_edges // config.max_steps_per_epoch))


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


def homogeneous_edge_index(graph: BipartiteGraph) -> torch.Tensor:
    """Both directions of every user-item edge; items are numbered after the users."""
    users = torch.from_numpy(graph.edge_index[0])
    items = torch.from_numpy(graph.edge_index[1]) + graph.n_users
    return torch.cat([torch.stack([users, items]), torch.stack([items, users])], dim=1)


def normalized_adjacency(graph: BipartiteGraph) -> torch.Tensor:
    """``D^{-1/2} A D^{-1/2}`` of the symmetric user-item graph as a sparse CSR tensor."""
    n = graph.n_users + graph.n_items
    edge_index = homogeneous_edge_index(graph)
    edge_index, weight = gcn_norm(edge_index, None, n, add_self_loops=False)
    with warnings.catch_warnings():  # torch's "sparse CSR is beta" / invariant-check notices
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*", category=UserWarning)
        return to_torch_csr_tensor(edge_index, weight, size=(n, n))


SMALL_GRAPH_EDGES = 200_000
PROPAGATIONS = ("symmetric_csr", "csr", "edge_index")


def default_threads(n_edges: int, world_size: int = 1) -> int:
    """One thread for small graphs, else the cores shared among ``world_size`` processes."""
    return 1 if n_edges < SMALL_GRAPH_EDGES else max(1, (os.cpu_count() or 1) // world_size)


@contextlib.contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (restored on exit)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Propagation(torch.nn.Module):
    """``forward(adj)`` is ``lightgcn.get_embedding(adj)``: the step's only forward, so that
    DistributedDataParallel sees it and all-reduces the embedding table's gradient."""

    def __init__(self, lightgcn: LightGCN) -> None:
        super().__init__()
        self.lightgcn = lightgcn

    def forward(self, adj: Tensor) -> Tensor:
        return self.lightgcn.get_embedding(adj)


@dataclasses.dataclass(frozen=True)
class _Ranks:
    """This process's place in a ``torch.distributed`` group; one process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _ranks() -> _Ranks:
    if dist.is_available() and dist.is_initialized():
        return _Ranks(dist.get_rank(), dist.get_world_size())
    return _Ranks()


def _from_main(ranks: _Ranks, *values: int) -> list[int]:
    """Rank 0's ``values`` on every rank (one broadcast)."""
    if not ranks.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.int64)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


@dataclasses.dataclass
class _LoopState:
    """Everything of a run besides model, optimizer and generators (checkpointed with them)."""

    epoch: int = 0
    losses: list[float] = dataclasses.field(default_factory=list)
    evaluations: list[tuple[int, dict[str, float]]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    best_epoch: int | None = None
    best_value: float | None = None
    best_state: dict[str, Tensor] | None = None
    stale: int = 0  # evaluations since the best one


def _rows_of(known: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each ``wanted`` id in ``known`` (unique, in any order); ``-1`` where absent."""
    if len(known) == 0:
        return np.full(len(wanted), -1, dtype=np.int64)
    order = np.argsort(known, kind="stable")
    pos = IdMap(np.asarray(known, dtype=np.int64)[order]).index(wanted)
    return np.where(pos >= 0, order[np.maximum(pos, 0)], -1)


def warm_start_rows(graph: BipartiteGraph, init: ModelEmbeddings) -> tuple[np.ndarray, np.ndarray]:
    """Where each of the graph's users and items is in ``init``, by external id.

    Returns:
        ``(user_rows, item_rows)``: ``user_rows[u]`` is the row of ``init.user_emb``
        holding graph user ``u`` (``-1``: ``init`` does not know it), likewise for items.
    """
    return _rows_of(init.user_ids, graph.users.ids), _rows_of(init.item_ids, graph.items.ids)


def _warm_start(weight: Tensor, graph: BipartiteGraph, init: ModelEmbeddings) -> None:
    """Overwrite the rows of ``weight`` (users, then items) that ``init`` knows."""
    if init.dim != weight.shape[1]:
        raise ValueError(f"warm-start embeddings have dimension {init.dim}, the model {weight.shape[1]}")
    users, items = warm_start_rows(graph, init)
    user_nodes, item_nodes = np.flatnonzero(users >= 0), np.flatnonzero(items >= 0)
    with torch.no_grad():
        weight[torch.from_numpy(user_nodes)] = torch.from_numpy(init.user_emb[users[user_nodes]]).to(weight.dtype)
        weight[torch.from_numpy(item_nodes + graph.n_users)] = torch.from_numpy(init.item_emb[items[item_nodes]]).to(
            weight.dtype
        )


def _init_digest(init: ModelEmbeddings) -> str:
    """sha256 of warm-start embeddings (a checkpoint only resumes the run it was started for)."""
    digest = hashlib.sha256()
    for array in (init.user_ids, init.item_ids):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    for array in (init.user_emb, init.item_emb):
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()


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
        _warm_start(model.embedding.weight, graph, init)
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
    ranks: _Ranks,
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


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python number (``torch.load(weights_only=True)`` refuses numpy)."""
    return value.item() if isinstance(value, np.generic) else value


def _save(
    directory: Path,
    state: _LoopState,
    model: LightGCN,
    optimizer: torch.optim.Optimizer,
    rngs: tuple[np.random.Generator, np.random.Generator],
    expected: dict[str, Any],
    ranks: _Ranks,
) -> None:
    """Rank 0 writes the checkpoint; under DDP it first gathers every rank's sampler state."""
    negative_rngs = None
    if ranks.distributed:
        negative_rngs = [None] * ranks.world_size if ranks.main else None
        dist.gather_object(rngs[1].bit_generator.state, negative_rngs, dst=0)
    if not ranks.main:
        return
    save_checkpoint(
        directory,
        {
            "fingerprint": expected,
            "epoch": state.epoch,
            "losses": state.losses,
            "seconds": state.seconds,
            "evaluations": [
                (epoch, {name: _plain(value) for name, value in metrics.items()})
                for epoch, metrics in state.evaluations
            ],
            "best_epoch": state.best_epoch,
            "best_value": state.best_value,
            "best_state": state.best_state,
            "stale": state.stale,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "numpy_rng": rngs[0].bit_generator.state,
            "negative_rngs": negative_rngs,
            "torch_rng": torch.get_rng_state(),
        },
    )


def _restore(
    saved: dict[str, Any],
    model: LightGCN,
    optimizer: torch.optim.Optimizer,
    rngs: tuple[np.random.Generator, np.random.Generator],
    ranks: _Ranks,
) -> _LoopState:
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    rngs[0].bit_generator.state = saved["numpy_rng"]  # in one process also the negatives' generator
    if ranks.distributed:
        rngs[1].bit_generator.state = saved["negative_rngs"][ranks.rank]
    torch.set_rng_state(saved["torch_rng"])
    return _LoopState(
        saved["epoch"],
        list(saved["losses"]),
        [(e, dict(m)) for e, m in saved["evaluations"]],
        saved["seconds"],
        saved["best_epoch"],
        saved["best_value"],
        saved["best_state"],
        saved["stale"],
    )


def train_lightgcn(
    graph: BipartiteGraph,
    config: TrainConfig,
    evaluate: EvalFn | None = None,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    init: ModelEmbeddings | None = None,
) -> TrainResult:
    """Train LightGCN on a bipartite graph with BPR and uniform negative sampling.

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

    Returns:
        A :class:`TrainResult` with the embeddings (``model.get_embedding``, the
        layer-combined ones) split into users and items, and the layer-0 ones.

    Raises:
        ValueError: an empty graph, an unknown ``propagation`` or ``loss``, ``init`` of
            another dimension, or a checkpoint written for another graph, config, init
            or process count.
    """
    _check(graph, config, checkpoint_dir, resume)
    ranks = _ranks()
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
            expected["init_sha256"] = _init_digest(init)
        saved = load_checkpoint(checkpoint_dir, expected) if resume else None
        state = _restore(saved, model, optimizer, rngs, ranks) if saved else _LoopState()
        step_model: torch.nn.Module = _Propagation(model)
        if ranks.distributed:
            step_model = DistributedDataParallel(step_model, broadcast_buffers=False)
        (evaluating,) = _from_main(ranks, evaluate is not None)
        early = bool(evaluating) and config.patience > 0
        reporter = EpochProgress(config.epochs, state.epoch, config.monitor, progress) if ranks.main else None
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
                    _save(checkpoint_dir, state, model, optimizer, rngs, expected, ranks)
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
    state: _LoopState,
    model: LightGCN,
    adj: Tensor,
    graph: BipartiteGraph,
    config: TrainConfig,
    evaluate: EvalFn | None,
    early: bool,
    ranks: _Ranks,
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
    (improved,) = _from_main(ranks, improved)
    if improved:  # every rank holds the same parameters, so each keeps its own copy
        state.best_epoch, state.stale = state.epoch, 0
        state.best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    else:
        state.stale += 1
    return metrics, state.stale >= config.patience
