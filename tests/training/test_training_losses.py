"""Unit tests of the training losses: the BPR seam is PyG's loss, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from training_sim import TINY, curated_world

from training.data import build_graph, load_window, temporal_split
from training.losses import Positives, batch_loss, sample_negatives
from training.model import build_lightgcn
from training.train import TrainConfig, normalized_adjacency

CONFIG = TrainConfig(embedding_dim=8)


@pytest.fixture(scope="module")
def tiny_graph(tmp_path_factory):
    settings = curated_world(tmp_path_factory.mktemp("tiny"), TINY)
    train, _ = temporal_split(load_window(settings, TINY.day(TINY.days), 14).interactions, 1)
    return build_graph(train)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-4, 0.1])
def test_batch_loss_is_pyg_recommendation_loss(tiny_graph, weight_decay):
    torch.manual_seed(0)
    model = build_lightgcn(tiny_graph.n_users + tiny_graph.n_items, 8, 2)
    out = model.get_embedding(normalized_adjacency(tiny_graph))
    edges = tiny_graph.edge_index
    keys = np.sort(edges[0] * tiny_graph.n_items + edges[1])
    users, pos = edges[0, :100], edges[1, :100]
    config = dataclasses.replace(CONFIG, weight_decay=weight_decay)
    loss = batch_loss(model, out, users, pos, config, np.random.default_rng(5),
                      Positives(tiny_graph.n_users, tiny_graph.n_items, keys))
    neg = sample_negatives(users, tiny_graph.n_items, keys, np.random.default_rng(5))
    u, p, q = (torch.from_numpy(a) for a in (users, pos + tiny_graph.n_users, neg + tiny_graph.n_users))
    expected = model.recommendation_loss((out[u] * out[p]).sum(-1), (out[u] * out[q]).sum(-1),
                                         node_id=torch.cat([u, p, q]).unique(), lambda_reg=weight_decay)
    assert loss.shape == () and torch.equal(loss, expected)


def test_unknown_loss_is_refused(tiny_graph):
    model = build_lightgcn(tiny_graph.n_users + tiny_graph.n_items, 8, 1)
    with pytest.raises(ValueError, match="loss must be one of"):
        batch_loss(model, model.embedding.weight, tiny_graph.edge_index[0, :3], tiny_graph.edge_index[1, :3],
                   dataclasses.replace(CONFIG, loss="softmax"), np.random.default_rng(0),
                   Positives(tiny_graph.n_users, tiny_graph.n_items, np.zeros(1, np.int64)))
