"""Unit tests of the training losses: the BPR seam is PyG's loss, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from training.adjacency import normalized_adjacency
from training.losses import Positives, SoftmaxNLL, batch_loss, sample_negatives
from training.model import build_lightgcn
from training.train import epoch_order
from training.train_config import TrainConfig

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
    loss = batch_loss(
        model,
        out,
        users,
        pos,
        config,
        np.random.default_rng(5),
        Positives(tiny_graph.n_users, tiny_graph.n_items, keys),
    )
    neg = sample_negatives(users, tiny_graph.n_items, keys, np.random.default_rng(5))
    u, p, q = (torch.from_numpy(a) for a in (users, pos + tiny_graph.n_users, neg + tiny_graph.n_users))
    expected = model.recommendation_loss(
        (out[u] * out[p]).sum(-1),
        (out[u] * out[q]).sum(-1),
        node_id=torch.cat([u, p, q]).unique(),
        lambda_reg=weight_decay,
    )
    assert loss.shape == () and torch.equal(loss, expected)


def test_unknown_loss_is_refused(tiny_graph):
    model = build_lightgcn(tiny_graph.n_users + tiny_graph.n_items, 8, 1)
    with pytest.raises(ValueError, match="loss must be one of"):
        batch_loss(
            model,
            model.embedding.weight,
            tiny_graph.edge_index[0, :3],
            tiny_graph.edge_index[1, :3],
            dataclasses.replace(CONFIG, loss="warp"),
            np.random.default_rng(0),
            Positives(tiny_graph.n_users, tiny_graph.n_items, np.zeros(1, np.int64)),
        )


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
    expected = expected + weight_decay * (
        table[[0, 3, 5]].pow(2).sum() / len(users) + table[g.n_users :].pow(2).sum() / g.n_edges
    )
    assert torch.allclose(loss, expected, atol=1e-6)


def test_fused_softmax_nll_matches_autograd_values_and_gradients():
    """The hand-fused loss and its backward equal autograd's log_softmax chain, repeated
    (user, item) pairs and a user with a single edge included."""
    generator = torch.Generator().manual_seed(7)
    queries = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    items = torch.randn(40, 6, generator=generator, dtype=torch.float64)
    row = torch.tensor([0, 0, 0, 1, 2, 2, 3, 4, 4, 4])
    pos = torch.tensor([3, 3, 9, 0, 39, 1, 7, 2, 5, 2])
    weights = torch.rand(len(row), generator=generator, dtype=torch.float64)  # an uneven upstream gradient

    fused_q, fused_i = queries.clone().requires_grad_(), items.clone().requires_grad_()
    fused = SoftmaxNLL.apply(fused_q, fused_i, row, pos, 0.1)
    (fused * weights).sum().backward()
    ref_q, ref_i = queries.clone().requires_grad_(), items.clone().requires_grad_()
    reference = -torch.log_softmax(ref_q @ ref_i.T / 0.1, dim=1)[row, pos]
    (reference * weights).sum().backward()

    assert torch.allclose(fused, reference, rtol=1e-12, atol=1e-12)
    assert torch.allclose(fused_q.grad, ref_q.grad, rtol=1e-10, atol=1e-12)
    assert torch.allclose(fused_i.grad, ref_i.grad, rtol=1e-10, atol=1e-12)


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


def _softmax_grad(g, model, users, pos, positives, **overrides):
    model.zero_grad()
    out = model.get_embedding(normalized_adjacency(g))
    config = dataclasses.replace(CONFIG, loss="softmax", weight_decay=2.0, **overrides)
    loss = batch_loss(model, out, users, pos, config, np.random.default_rng(0), positives)
    loss.backward()
    return loss.detach(), model.embedding.weight.grad.clone()


def test_item_l2_degree_power_weighs_each_items_penalty_by_its_degree(tiny_graph):
    g = tiny_graph
    torch.manual_seed(1)
    model = build_lightgcn(g.n_users + g.n_items, 8, 2)
    edges = g.edge_index
    positives = Positives(g.n_users, g.n_items, np.sort(edges[0] * g.n_items + edges[1]))
    take = np.flatnonzero(np.isin(edges[0], [0, 3, 5, 8]))  # every edge of four users
    users, pos = edges[0, take], edges[1, take]
    plain, plain_grad = _softmax_grad(g, model, users, pos, positives)
    zero, zero_grad = _softmax_grad(g, model, users, pos, positives, item_l2_degree_power=0.0)
    assert torch.equal(plain, zero) and torch.equal(plain_grad, zero_grad)  # 0: the uniform term, bit for bit
    degrees = np.maximum(np.bincount(edges[1], minlength=g.n_items), 1).astype(np.float64)
    weights = positives.item_l2_weights(1.0)
    assert np.allclose(weights, degrees / degrees.mean())
    weighted, weighted_grad = _softmax_grad(g, model, users, pos, positives, item_l2_degree_power=1.0)
    table = model.embedding.weight.detach()[g.n_users :]
    # only the item term differs: lambda * sum_i (w_i - 1) ||x_i||^2 / |E|, lambda = 2
    extra = 2.0 * ((torch.from_numpy(weights) - 1) * table.pow(2).sum(1)).sum() / g.n_edges
    assert torch.allclose(weighted - plain, extra, atol=1e-5)
    diff = weighted_grad - plain_grad
    assert torch.equal(diff[: g.n_users], torch.zeros_like(diff[: g.n_users]))
    expected = 2 * 2.0 * (torch.from_numpy(weights)[:, None] - 1) * table / g.n_edges
    assert torch.allclose(diff[g.n_users :], expected, atol=1e-6)


def test_negative_item_l2_degree_power_is_refused(tiny_graph):
    from training.train import train_lightgcn

    with pytest.raises(ValueError, match="item_l2_degree_power must be >= 0"):
        train_lightgcn(
            tiny_graph, dataclasses.replace(CONFIG, epochs=1, loss="softmax", item_l2_degree_power=-1.0), progress=False
        )
