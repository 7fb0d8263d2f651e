"""Model tests of the LightGCN training loop: learning, determinism, equivalences."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from training_sim import SMALL, TINY, curated_world

from training.adjacency import homogeneous_edge_index, normalized_adjacency
from training.data import build_graph, load_window, temporal_split
from training.losses import sample_negatives
from training.metrics import build_ranking_task, evaluate_embeddings, popularity_model
from training.model import SymmetricSpmm, build_lightgcn
from training.train import train_lightgcn
from training.train_config import TrainConfig


def _split(tmp_path_factory, name, cfg):
    settings = curated_world(tmp_path_factory.mktemp(name), cfg)
    window = load_window(settings, cfg.day(cfg.days), 14)
    return temporal_split(window.interactions, 1)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    train, holdout = _split(tmp_path_factory, "small", SMALL)
    return build_graph(train), build_ranking_task(train, holdout), train


@pytest.fixture(scope="module")
def tiny_graph(tmp_path_factory):
    train, _ = _split(tmp_path_factory, "tiny", TINY)
    return build_graph(train)


def test_normalized_adjacency_is_symmetric_gcn_norm(tiny_graph):
    adj = normalized_adjacency(tiny_graph).to_dense()
    n = tiny_graph.n_users + tiny_graph.n_items
    a = torch.zeros(n, n)
    ei = homogeneous_edge_index(tiny_graph)
    a[ei[0], ei[1]] = 1.0
    d = a.sum(1).pow(-0.5)
    torch.testing.assert_close(adj, d[:, None] * a * d[None, :])
    torch.testing.assert_close(adj, adj.T)


def test_symmetric_spmm_gradient_matches_dense(tiny_graph):
    adj = normalized_adjacency(tiny_graph)
    x = torch.randn(adj.size(0), 8, requires_grad=True)
    (SymmetricSpmm.apply(adj, x) ** 2).sum().backward()
    grad_sparse = x.grad.clone()
    x.grad = None
    ((adj.to_dense() @ x) ** 2).sum().backward()
    torch.testing.assert_close(grad_sparse, x.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("propagation", ["csr", "edge_index"])
def test_propagations_compute_the_same_model(tiny_graph, propagation):
    config = TrainConfig(epochs=2, embedding_dim=16, batch_size=256)
    reference = train_lightgcn(tiny_graph, config).embeddings
    other = train_lightgcn(tiny_graph, dataclasses.replace(config, propagation=propagation)).embeddings
    np.testing.assert_allclose(other.user_emb, reference.user_emb, atol=1e-4)
    np.testing.assert_allclose(other.item_emb, reference.item_emb, atol=1e-4)


def test_stock_lightgcn_layers_are_swapped():
    model = build_lightgcn(10, 4, 2)
    assert type(model).__name__ == "LightGCN" and len(model.convs) == 2
    assert all(not conv.normalize for conv in model.convs)


def test_negatives_avoid_positives(tiny_graph):
    rng = np.random.default_rng(0)
    edges = tiny_graph.edge_index
    keys = np.sort(edges[0] * tiny_graph.n_items + edges[1])
    users = np.repeat(edges[0], 5)
    negatives = sample_negatives(users, tiny_graph.n_items, keys, rng, rounds=10)
    assert ((negatives >= 0) & (negatives < tiny_graph.n_items)).all()
    clash = np.isin(users * tiny_graph.n_items + negatives, keys)
    assert clash.mean() < 0.001


def test_training_reduces_loss_and_beats_popularity(small):
    graph, task, train = small
    result = train_lightgcn(
        graph,
        TrainConfig(epochs=20, embedding_dim=64, batch_size=1024, eval_every=5),
        lambda e: {"recall_at_20": evaluate_embeddings(e, task).recall},
    )
    assert len(result.losses) == 20
    assert result.losses[-1] < 0.75 * result.losses[0]
    assert [epoch for epoch, _ in result.evaluations] == [5, 10, 15, 20]
    emb = result.embeddings
    assert emb.user_emb.shape == (graph.n_users, 64) and emb.item_emb.shape == (graph.n_items, 64)
    assert emb.user_emb.dtype == np.float32 and np.isfinite(emb.item_emb).all()
    np.testing.assert_array_equal(emb.user_ids, graph.users.ids)
    model = evaluate_embeddings(emb, task)
    popularity = evaluate_embeddings(popularity_model(train), task)
    assert model.recall == pytest.approx(result.evaluations[-1][1]["recall_at_20"])
    assert model.recall > popularity.recall + 0.02
    assert model.ndcg > popularity.ndcg


def test_same_seed_same_model_other_seed_other_model(tiny_graph):
    config = TrainConfig(epochs=3, embedding_dim=16, batch_size=256, seed=7)
    a = train_lightgcn(tiny_graph, config)
    b = train_lightgcn(tiny_graph, config)
    c = train_lightgcn(tiny_graph, dataclasses.replace(config, seed=8))
    assert a.losses == b.losses
    np.testing.assert_array_equal(a.embeddings.user_emb, b.embeddings.user_emb)
    np.testing.assert_array_equal(a.embeddings.item_emb, b.embeddings.item_emb)
    assert not np.allclose(a.embeddings.item_emb, c.embeddings.item_emb)


def test_threads_are_restored(tiny_graph):
    before = torch.get_num_threads()
    train_lightgcn(tiny_graph, TrainConfig(epochs=1, embedding_dim=8, num_threads=1))
    assert torch.get_num_threads() == before


def test_rejects_unknown_propagation_and_empty_graph(tiny_graph):
    with pytest.raises(ValueError, match="propagation"):
        train_lightgcn(tiny_graph, TrainConfig(epochs=1, propagation="dense"))
    empty = dataclasses.replace(tiny_graph, edge_index=np.zeros((2, 0), np.int64))
    with pytest.raises(ValueError, match="without edges"):
        train_lightgcn(empty, TrainConfig(epochs=1))


def test_large_graphs_train_with_at_most_max_steps_per_epoch():
    from training.train_config import TrainConfig, step_batch_size

    assert step_batch_size(TrainConfig(batch_size=2048), 10_000_000) == 2048  # 0: off
    capped = TrainConfig(batch_size=2048, max_steps_per_epoch=128)
    assert step_batch_size(capped, 100_000) == 2048  # small graphs keep their batch
    size = step_batch_size(capped, 910_001)
    assert size == 7110 and -(-910_001 // size) <= 128
