"""Training loop of the LightGCN retriever (PyTorch Geometric) with the BPR loss.

LightGCN (`He et al., 2020 <https://arxiv.org/abs/2002.02126>`_) learns one free
embedding ``x_i^(0)`` per user and item and propagates it over the normalised
user-item graph without weights or non-linearities:

.. math::
    \\mathbf{x}^{(l+1)} = \\hat{A}\\,\\mathbf{x}^{(l)}, \\qquad
    \\hat{A} = D^{-1/2} A D^{-1/2}, \\qquad
    \\mathbf{x} = \\frac{1}{L+1} \\sum_{l=0}^{L} \\mathbf{x}^{(l)}

and scores a user-item pair by ``<x_u, x_i>``. Training minimises the Bayesian
Personalised Ranking loss over (user, positive item, sampled negative item) triples
(:meth:`torch_geometric.nn.models.LightGCN.recommendation_loss`), with Adam.

Speed: ``Â`` never changes, so it is normalised once (``gcn_norm``) and handed to
the model as a torch sparse CSR matrix with ``normalize=False``; each layer is then one
sparse-dense product instead of gathering and scattering messages per edge and
re-normalising on every call, and the backward pass reuses ``Â`` because it is
symmetric (:mod:`training.model`). Measured on the simulator's default graph
(1.4k nodes, 51k directed edges, dim 64, 3 layers, one thread), forward + backward per
step: plain ``edge_index`` ~80-120 ms, CSR with PyG's LGConv ~15-23 ms, symmetric CSR
~6-9 ms; the 30 default epochs took ~36 s, ~9 s and ~3-4 s (2-core machine shared with
other jobs). All three give the same model (``tests/training``).

This module holds no I/O: graphs in, embeddings and a history of numbers out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.models import LightGCN
from torch_geometric.utils import to_torch_csr_tensor

from training.data import BipartiteGraph
from training.embeddings import ModelEmbeddings
from training.model import build_lightgcn


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one LightGCN training run.

    Args:
        epochs: passes over the (deduplicated) training edges. (default: ``30``)
        embedding_dim: size of the embeddings. (default: ``64``)
        num_layers: number of propagation layers ``L``. (default: ``3``)
        learning_rate: Adam's step size. (default: ``0.01``)
        batch_size: positive edges per optimisation step. (default: ``2048``)
        weight_decay: L2 strength ``lambda`` of the BPR loss on the batch's layer-0
            embeddings. (default: ``1e-4``)
        seed: seeds the initial embeddings, the edge shuffling and negative sampling.
        eval_every: evaluate every this many epochs (and after the last one) when an
            evaluation callback is given; ``0`` evaluates only after the last epoch.
        num_threads: torch intra-op threads during training; ``None`` picks one thread
            for graphs under ``SMALL_GRAPH_EDGES`` edges (the per-layer products are too
            small to split, and on a busy 2-core machine a second thread made steps up
            to 10x slower) and all cores above (Gowalla, 810k edges: 2 threads trained
            70 epochs at batch 32768 in 355 s against 961 s on one thread, same model).
        propagation: ``"symmetric_csr"`` (default, fastest), ``"csr"`` (PyG's LGConv over
            the pre-normalised CSR matrix) or ``"edge_index"`` (PyG's LGConv normalising
            a plain ``edge_index`` on every call). All three compute the same model.
    """

    epochs: int = 30
    embedding_dim: int = 64
    num_layers: int = 3
    learning_rate: float = 0.01
    batch_size: int = 2048
    weight_decay: float = 1e-4
    seed: int = 42
    eval_every: int = 5
    num_threads: int | None = None
    propagation: str = "symmetric_csr"


@dataclasses.dataclass
class TrainResult:
    """What a training run produced.

    Args:
        embeddings: final layer-combined user and item embeddings with external ids.
        losses: mean BPR loss per epoch (``losses[e - 1]`` is epoch ``e``).
        evaluations: ``(epoch, metrics)`` pairs from the evaluation callback.
        seconds: wall time of the optimisation (evaluations included).
    """

    embeddings: ModelEmbeddings
    losses: list[float]
    evaluations: list[tuple[int, dict[str, float]]]
    seconds: float


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


def default_threads(n_edges: int) -> int:
    """One thread for small graphs, every core for large ones (see :class:`TrainConfig`)."""
    return 1 if n_edges < SMALL_GRAPH_EDGES else max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (restored on exit)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def sample_negatives(
    users: np.ndarray, n_items: int, positive_keys: np.ndarray, rng: np.random.Generator, rounds: int = 3
) -> np.ndarray:
    """Uniform random items for ``users``, re-drawn (vectorised) where they hit a positive.

    Args:
        users: user index of each positive edge in the batch.
        n_items: number of items to draw from.
        positive_keys: sorted ``user * n_items + item`` keys of all training edges.
        rng: the numpy generator (seeded by the caller).
        rounds: re-draw rounds; a remaining collision after them is kept (rare, harmless).

    Returns:
        int64 item indices, one per user.
    """
    items = rng.integers(0, n_items, size=len(users))
    last = len(positive_keys) - 1
    for _ in range(rounds):
        keys = users * n_items + items
        clash = positive_keys[np.minimum(np.searchsorted(positive_keys, keys), last)] == keys
        if not clash.any():
            break
        items[clash] = rng.integers(0, n_items, size=int(clash.sum()))
    return items.astype(np.int64)


def _embeddings(model: LightGCN, adj: torch.Tensor, graph: BipartiteGraph) -> ModelEmbeddings:
    with torch.no_grad():
        out = model.get_embedding(adj).numpy().astype(np.float32, copy=True)
    return ModelEmbeddings(
        user_ids=graph.users.ids.copy(),
        item_ids=graph.items.ids.copy(),
        user_emb=out[: graph.n_users],
        item_emb=out[graph.n_users :],
    )


def train_lightgcn(graph: BipartiteGraph, config: TrainConfig, evaluate: EvalFn | None = None) -> TrainResult:
    """Train LightGCN on a bipartite graph with BPR and uniform negative sampling.

    Args:
        graph: the training graph (:func:`training.data.build_graph`).
        config: hyper-parameters; runs with equal graphs and configs give equal results.
        evaluate: optional callback scoring the current :class:`ModelEmbeddings`
            (for example holdout Recall@20/NDCG@20); called every ``config.eval_every``
            epochs and after the last one.

    Returns:
        A :class:`TrainResult` with the final embeddings (``model.get_embedding``, the
        layer-combined ones) split into users and items.
    """
    if graph.n_edges == 0:
        raise ValueError("cannot train on a graph without edges")
    if config.propagation not in PROPAGATIONS:
        raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {config.propagation!r}")
    with torch_threads(config.num_threads or default_threads(graph.n_edges)):
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        n_users, n_items = graph.n_users, graph.n_items
        n_nodes = n_users + n_items
        if config.propagation == "edge_index":
            adj = homogeneous_edge_index(graph)
            model = LightGCN(n_nodes, config.embedding_dim, config.num_layers)
        else:
            adj = normalized_adjacency(graph)
            symmetric = config.propagation == "symmetric_csr"
            model = build_lightgcn(n_nodes, config.embedding_dim, config.num_layers, symmetric_sparse=symmetric)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        edges = graph.edge_index
        positive_keys = np.sort(edges[0] * n_items + edges[1])

        losses: list[float] = []
        evaluations: list[tuple[int, dict[str, float]]] = []
        start = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            model.train()
            perm = rng.permutation(graph.n_edges)
            total, count = 0.0, 0
            for lo in range(0, graph.n_edges, config.batch_size):
                batch = perm[lo : lo + config.batch_size]
                users = edges[0, batch]
                pos = edges[1, batch]
                neg = sample_negatives(users, n_items, positive_keys, rng)
                u = torch.from_numpy(users)
                p = torch.from_numpy(pos + n_users)
                q = torch.from_numpy(neg + n_users)
                out = model.get_embedding(adj)
                eu = out[u]
                pos_rank = (eu * out[p]).sum(dim=-1)
                neg_rank = (eu * out[q]).sum(dim=-1)
                node_id = torch.cat([u, p, q]).unique()
                loss = model.recommendation_loss(
                    pos_rank, neg_rank, node_id=node_id, lambda_reg=config.weight_decay
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
                count += len(batch)
            losses.append(total / count)
            last = epoch == config.epochs
            if evaluate is not None and (last or (config.eval_every and epoch % config.eval_every == 0)):
                model.eval()
                evaluations.append((epoch, evaluate(_embeddings(model, adj, graph))))
        seconds = time.perf_counter() - start
        model.eval()
        return TrainResult(_embeddings(model, adj, graph), losses, evaluations, seconds)
