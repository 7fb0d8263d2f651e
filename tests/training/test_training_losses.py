"""Unit tests of the training losses: the BPR seam is PyG's loss, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from training.losses import Positives, batch_loss, sample_negatives
from training.model import build_lightgcn
from training.train import TrainConfig, epoch_order, normalized_adjacency

CONFIG = TrainConfig(embedding_dim=8)


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
                   dataclasses.replace(CONFIG, loss="warp"), np.random.default_rng(0),
                   Positives(tiny_graph.n_users, tiny_graph.n_items, np.zeros(1, np.int64)))


@pytest.mark.parametrize("weight_decay", [0.0, 2.0])
def test_softmax_loss_is_the_dense_multinomial_likelihood(tiny_graph, weight_decay):
    torch.manual_seed(1)
    g = tiny_graph
    model = build_lightgcn(g.n_users + g.n_items, 8, 2)
    out = model.get_embedding(normalized_adjacency(g))
    edges = g.edge_index
    keys = np.sort(edges[0] * g.n_items + edges[1])
    take = np.flatnonzero(np.isin(edges[0], [0, 3, 5]))  # every edge of three users
    users, pos = edges[0, take], edges[1, take]
    config = dataclasses.replace(CONFIG, loss="softmax", weight_decay=weight_decay)
    loss = batch_loss(model, out, users, pos, config, np.random.default_rng(0), Positives(g.n_users, g.n_items, keys))
    # by hand: one softmax row over all items per edge's user, mean over the edges
    scores = out[: g.n_users] @ out[g.n_users :].T / config.temperature
    expected = -torch.stack([torch.log_softmax(scores[u], 0)[i] for u, i in zip(users, pos)]).mean()
    table = model.embedding.weight
    expected = expected + weight_decay * (table[[0, 3, 5]].pow(2).sum() / len(users)
                                          + table[g.n_users :].pow(2).sum() / g.n_edges)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_softmax_epoch_order_groups_each_users_edges(tiny_graph):
    g = tiny_graph
    order = epoch_order(g, dataclasses.replace(CONFIG, loss="softmax"), np.random.default_rng(3))
    assert np.array_equal(np.sort(order), np.arange(g.n_edges))
    users = g.edge_index[0, order]
    starts = users[np.r_[True, users[1:] != users[:-1]]]
    assert len(starts) == len(np.unique(users))  # each user's edges form one run
    again = epoch_order(g, dataclasses.replace(CONFIG, loss="softmax"), np.random.default_rng(3))
    assert np.array_equal(order, again)


def test_lr_decay_sets_each_epochs_rate_and_bad_values_are_refused(tiny_graph):
    from training.train import train_lightgcn

    config = dataclasses.replace(CONFIG, epochs=3, batch_size=4096, loss="softmax", lr_decay=0.5, init_std=0.1)
    decayed = train_lightgcn(tiny_graph, config, progress=False)
    constant = train_lightgcn(tiny_graph, dataclasses.replace(config, lr_decay=1.0), progress=False)
    assert decayed.losses[0] == constant.losses[0]  # epoch 1 trains at the full rate
    assert not np.array_equal(decayed.embeddings.item_emb, constant.embeddings.item_emb)
    for bad in ({"lr_decay": 0.0}, {"lr_decay": 1.5}, {"temperature": 0.0}):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            train_lightgcn(tiny_graph, dataclasses.replace(config, **bad), progress=False)


def _softmax_setup(g, seed=1):
    torch.manual_seed(seed)
    model = build_lightgcn(g.n_users + g.n_items, 8, 2)
    edges = g.edge_index
    positives = Positives(g.n_users, g.n_items, np.sort(edges[0] * g.n_items + edges[1]))
    take = np.flatnonzero(np.isin(edges[0], [0, 3, 5, 8]))  # every edge of four users
    return model, positives, edges[0, take], edges[1, take]


def _softmax_grad(g, model, users, pos, positives, **overrides):
    model.zero_grad()
    out = model.get_embedding(normalized_adjacency(g))
    config = dataclasses.replace(CONFIG, loss="softmax", weight_decay=2.0, **overrides)
    loss = batch_loss(model, out, users, pos, config, np.random.default_rng(0), positives)
    loss.backward()
    return loss.detach(), model.embedding.weight.grad.clone()


def test_user_weighting_zero_is_the_plain_softmax_loss_bit_for_bit(tiny_graph):
    model, positives, users, pos = _softmax_setup(tiny_graph)
    plain, plain_grad = _softmax_grad(tiny_graph, model, users, pos, positives)
    zero, zero_grad = _softmax_grad(tiny_graph, model, users, pos, positives, user_weighting=0.0)
    assert torch.equal(plain, zero) and torch.equal(plain_grad, zero_grad)


@pytest.mark.parametrize("gamma", [0.5, 1.0])
def test_user_weighting_weighs_each_edge_by_the_users_degree(tiny_graph, gamma):
    g = tiny_graph
    model, positives, users, pos = _softmax_setup(g)
    degrees = np.bincount(g.edge_index[0], minlength=g.n_users).astype(np.float64)
    weights = positives.user_weights(gamma)
    seen = degrees > 0  # d_u^-gamma up to one constant, averaging 1 over the training edges
    scale = weights[seen] / degrees[seen] ** -gamma
    assert np.allclose(scale, scale[0]) and np.all(weights[~seen] == 0)
    assert np.isclose((weights * degrees).sum(), g.n_edges, rtol=1e-5)
    out = model.get_embedding(normalized_adjacency(g))
    config = dataclasses.replace(CONFIG, loss="softmax", weight_decay=0.0, user_weighting=gamma)
    loss = batch_loss(model, out, users, pos, config, np.random.default_rng(0), positives)
    scores = out[: g.n_users] @ out[g.n_users :].T / config.temperature
    terms = torch.stack([torch.log_softmax(scores[u], 0)[i] for u, i in zip(users, pos)])
    expected = -(terms * torch.from_numpy(weights[users])).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    # the gradient moves towards the light users: a heavy user's rows get less of it
    plain_loss, plain = _softmax_grad(g, model, users, pos, positives)
    weighted_loss, weighted = _softmax_grad(g, model, users, pos, positives, user_weighting=gamma)
    assert not torch.equal(plain, weighted)
    heavy, light = max({0, 3, 5, 8}, key=lambda u: degrees[u]), min({0, 3, 5, 8}, key=lambda u: degrees[u])
    assert degrees[heavy] > degrees[light]
    ratio = lambda grad, u: grad[u].norm() / plain[u].norm()  # noqa: E731
    assert ratio(weighted, light) > ratio(weighted, heavy)


def test_negative_user_weighting_is_refused(tiny_graph):
    from training.train import train_lightgcn

    with pytest.raises(ValueError, match="user_weighting must be >= 0"):
        train_lightgcn(tiny_graph, dataclasses.replace(CONFIG, epochs=1, loss="softmax", user_weighting=-1.0),
                       progress=False)
