"""Training losses of the LightGCN trainer, one batch at a time, negative sampling included.

:func:`batch_loss` is the seam between the training loop (:mod:`training.train`) and the
objective: the loop hands it the step's propagated embeddings of all nodes and a batch
of positive ``(user, item)`` edges; the loss draws its own negatives and returns a
scalar to call ``backward`` on. ``TrainConfig.loss`` picks the objective among
:data:`LOSSES`:

* ``"bpr"``: Bayesian Personalised Ranking (`Rendle et al., 2009
  <https://arxiv.org/abs/1205.2618>`_) with one uniform negative ``j`` per edge, as in
  LightGCN, and PyG's L2 term on the batch's distinct layer-0 embeddings:

  .. math::
      \\mathcal{L} = -\\frac{1}{B} \\sum_{(u, i, j)} \\ln \\sigma(\\langle x_u, x_i \\rangle
      - \\langle x_u, x_j \\rangle) + \\frac{\\lambda}{B} \\lVert X^{(0)}_{\\{u, i, j\\}} \\rVert^2

  (:meth:`torch_geometric.nn.models.LightGCN.recommendation_loss`, bit for bit).
* ``"softmax"``: the multinomial log-likelihood of each positive item under a softmax
  over **every** item (no sampling), for the distinct users ``U_b`` of the batch, with an
  L2 term on their layer-0 embeddings and on the whole item table:

  .. math::
      \\mathcal{L} = -\frac{1}{B} \\sum_{(u, i)} \\ln
      \frac{e^{\\langle x_u, x_i \rangle / \tau}}{\\sum_{j \\in I} e^{\\langle x_u, x_j \rangle / \tau}}
      + \frac{\\lambda}{B} \\Big( \\lVert X^{(0)}_{U_b} \rVert^2
      + \frac{B}{|E|} \\lVert X^{(0)}_{I} \rVert^2 \\Big)

  Over an epoch every user and every item is penalised with the same total weight
  ``lambda / B``. The training loop feeds this loss batches of edges grouped by user
  (``training.train``: users shuffled, each user's edges together), so one ``|U_b| x |I|``
  product scores all the positives of ~``B / avg_degree`` users at once. It is the
  multinomial likelihood of Mult-VAE (`Liang et al., 2018
  <https://arxiv.org/abs/1802.05814>`_) applied to LightGCN's embeddings; every
  positive is pushed up against all items in each step instead of one sampled negative,
  which is what makes it converge in a few epochs where BPR needs hundreds (Gowalla,
  README's performance section). ``lambda`` is on a different scale from BPR's:
  ~5-10 where BPR uses ``1e-4``. The temperature ``tau`` (``TrainConfig.temperature``)
  sharpens the softmax without changing what the model ranks; with the L2 term it sets
  how peaked the learned scores may become.

  ``TrainConfig.item_l2_degree_power`` ``beta > 0`` weighs each item's row in the item
  table's L2 term by ``max(d_i, 1)^beta`` (``d_i`` its training degree), scaled to
  average 1 over the items: popular items, whose likelihood terms grow with ``d_i``, are
  then shrunk more (``beta = 1`` is the frequency-weighted regularisation of ALS-WR, and
  roughly what BPR's per-triple L2 does); ``0`` (default) is the uniform term, bit for
  bit. On Gowalla ``beta = 1`` was ahead of the uniform term at every epoch it was
  compared at (``benchmarks/results/retrieval_gowalla_lightgcn_softmax_iteml2deg1.0.log``).
  Every rank adds the same item term, so DDP is unaffected.

**Under DDP** a rank sees one contiguous shard of the global batch and DDP *averages*
the ranks' gradients. A loss therefore reduces its per-edge terms with
:func:`batch_mean` (the shard's sum times ``world_size / global_size``) and adds its
penalty with :func:`l2_penalty` (each node weighed by one over the number of shards
holding it): the ranks' average is then exactly the one-process loss of the global
batch, whatever the shard sizes. A new loss that follows these two rules trains the
same under one process and under ``torchrun``; ``tests/training`` checks it for BPR.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch_geometric.nn.models import LightGCN

from training.ids import positions
from training.train_config import TrainConfig

#: Objectives :func:`batch_loss` knows (``TrainConfig.loss``).
LOSSES = ("bpr", "softmax")

#: The L2 strength each loss was tuned with (LightGCN paper for BPR; Gowalla and the
#: simulator for softmax), used when a setting leaves ``weight_decay`` unset.
DEFAULT_WEIGHT_DECAY = {"bpr": 1e-4, "softmax": 7.0}


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
    for _ in range(rounds):
        clash = positions(positive_keys, users * n_items + items) >= 0
        if not clash.any():
            break
        items[clash] = rng.integers(0, n_items, size=int(clash.sum()))
    return items.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Positives:
    """What a loss needs to know about the training graph besides its batch.

    Args:
        n_users: users (items are numbered after them in ``out``).
        n_items: items to sample negatives from.
        keys: sorted ``user * n_items + item`` keys of every training edge.
    """

    n_users: int
    n_items: int
    keys: np.ndarray

    @property
    def n_edges(self) -> int:
        """Training edges (one key each)."""
        return len(self.keys)

    @functools.cached_property
    def item_degrees(self) -> np.ndarray:
        """Training edges of each item (int64, ``n_items`` long)."""
        return np.bincount(self.keys % self.n_items, minlength=self.n_items)

    def item_l2_weights(self, beta: float) -> np.ndarray:
        """``max(d_i, 1)^beta`` per item, scaled to average 1 over the items (float32)."""
        weights = np.maximum(self.item_degrees, 1).astype(np.float64) ** beta
        return (weights / weights.mean()).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Shard:
    """A rank's share of a global batch under DDP.

    Args:
        global_size: edges in the whole batch, all ranks together.
        world_size: ranks sharing it; DDP averages their gradients.
    """

    global_size: int
    world_size: int


def batch_mean(values: Tensor, shard: Shard | None) -> Tensor:
    """Mean over the batch: ``values.mean()`` in one process; under DDP the shard's sum
    times ``world_size / global_size``, whose average over the ranks is the mean over the
    global batch (also for unequal or empty shards)."""
    if shard is None:
        return values.mean()
    return values.sum() * (shard.world_size / shard.global_size)


def l2_penalty(model: LightGCN, node_id: Tensor, n: int, weight_decay: float, shard: Shard | None) -> Tensor | float:
    """PyG's BPR regulariser ``lambda * ||X^(0)[node_id]||^2 / n`` over the batch's distinct nodes.

    Under DDP each rank knows only its shard's nodes, and a node in several shards must
    still count once: the ranks sum a 0/1 mask of their nodes (one all-reduce, so every
    rank must call this at the same step) and each rank weighs a node by one over the
    number of shards holding it, so the ranks' average is the one-process penalty of the
    global batch (divided by ``shard.global_size``; ``n`` is then unused).

    Args:
        model: the LightGCN whose layer-0 table is penalised.
        node_id: distinct node indices of the batch (this rank's shard under DDP).
        n: edges in the batch (one process).
        weight_decay: ``lambda``; ``0`` returns ``0.0`` (no all-reduce on any rank).
        shard: ``None`` in one process, else this rank's :class:`Shard`.
    """
    if weight_decay == 0:
        return 0.0
    emb = model.embedding.weight[node_id]
    if shard is None:
        return weight_decay * emb.norm(p=2).pow(2) / n  # == BPRLoss, bit for bit
    holders = torch.zeros(model.embedding.num_embeddings, dtype=emb.dtype)
    holders[node_id] = 1.0
    dist.all_reduce(holders)
    share = (emb.pow(2).sum(dim=-1) / holders[node_id]).sum()
    return weight_decay * share * (shard.world_size / shard.global_size)


class SoftmaxNLL(torch.autograd.Function):
    """Per-edge ``-log softmax(<q_r, x_j> / tau)[p]`` over all items ``j``, fused by hand.

    ``forward(queries, items, row, pos, temperature)``: ``queries`` are the batch's distinct
    users (``|U_b| x d``), ``items`` the item table (``|I| x d``), and edge ``e`` is the
    pair ``(row[e], pos[e])``; it returns the ``B`` negative log-likelihoods. It is
    ``-torch.log_softmax(queries @ items.T / tau, 1)[row, pos]`` to float rounding
    (``tests/training``), but the ``|U_b| x |I|`` logits are scaled, exponentiated and
    normalised in place, and the backward turns that softmax into the gradient in place
    (``softmax * sum of the user's edge gradients``, minus each edge's own at its item):
    about half the passes over the big matrix that autograd's chain of ``mm``, ``div``,
    ``log_softmax`` and indexing makes, and the step's loss took ~70 ms instead of ~120 ms
    on the L world's batches (240 users x 40k items, 2 cores).
    """

    @staticmethod
    def forward(ctx, queries: Tensor, items: Tensor, row: Tensor, pos: Tensor, temperature: float) -> Tensor:  # noqa: D102
        logits = queries @ items.T
        logits.mul_(1.0 / temperature)
        picked = logits[row, pos]
        top = logits.max(dim=1, keepdim=True).values
        logits.sub_(top).exp_()
        total = logits.sum(dim=1, keepdim=True)
        probs = logits.div_(total)
        log_normaliser = (top + total.log()).squeeze(1)
        ctx.save_for_backward(queries, items, row, pos, probs)
        ctx.temperature = temperature
        return log_normaliser[row] - picked

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:  # noqa: D102
        queries, items, row, pos, probs = ctx.saved_tensors
        per_user = torch.zeros(probs.shape[0], dtype=grad.dtype).index_add_(0, row, grad)
        grad_logits = probs.mul_(per_user.unsqueeze(1))  # the saved softmax is not needed again
        grad_logits.index_put_((row, pos), -grad, accumulate=True)
        grad_logits.mul_(1.0 / ctx.temperature)
        grad_queries = grad_logits @ items if ctx.needs_input_grad[0] else None
        grad_items = grad_logits.T @ queries if ctx.needs_input_grad[1] else None
        return grad_queries, grad_items, None, None, None


def batch_loss(
    model: LightGCN,
    out: Tensor,
    users: np.ndarray,
    pos: np.ndarray,
    config: TrainConfig,
    rng: np.random.Generator,
    positives: Positives,
    shard: Shard | None = None,
) -> Tensor:
    """The training loss of one batch of positive edges (``config.loss``), negatives drawn here.

    ``"bpr"``: one uniform negative per edge (:func:`sample_negatives`) and
    ``-mean(log sigmoid(<x_u, x_i> - <x_u, x_j>)) + lambda * ||X^(0)[u, i, j]||^2 / B``,
    which is :meth:`~torch_geometric.nn.models.LightGCN.recommendation_loss`.

    Args:
        model: the LightGCN (not its DDP wrapper); the L2 term reads its layer-0 table.
        out: this step's propagated embeddings of all nodes (items after the users).
        users: user index of each edge of the batch (this rank's shard under DDP).
        pos: positive item index of each edge.
        config: ``loss`` and ``weight_decay``.
        rng: draws the negatives (one per rank under DDP).
        positives: graph sizes and the keys negatives must avoid.
        shard: ``None`` in one process; under DDP the global batch this shard belongs to,
            and the loss is scaled so that DDP's average of the ranks' gradients is the
            gradient of the one-process loss of that batch.

    Returns:
        A scalar tensor to call ``backward`` on.
    """
    if config.loss == "softmax":
        return _softmax_loss(model, out, users, pos, config, positives, shard)
    if config.loss != "bpr":
        raise ValueError(f"loss must be one of {LOSSES}, got {config.loss!r}")
    neg = sample_negatives(users, positives.n_items, positives.keys, rng)
    u = torch.from_numpy(users)
    p = torch.from_numpy(pos + positives.n_users)
    q = torch.from_numpy(neg + positives.n_users)
    eu = out[u]
    pos_rank = (eu * out[p]).sum(dim=-1)
    neg_rank = (eu * out[q]).sum(dim=-1)
    node_id = torch.cat([u, p, q]).unique()
    log_prob = batch_mean(F.logsigmoid(pos_rank - neg_rank), shard)
    return -log_prob + l2_penalty(model, node_id, len(users), config.weight_decay, shard)


def _softmax_loss(
    model: LightGCN,
    out: Tensor,
    users: np.ndarray,
    pos: np.ndarray,
    config: TrainConfig,
    positives: Positives,
    shard: Shard | None,
) -> Tensor:
    """``"softmax"`` of :func:`batch_loss`: full softmax over the items per distinct user."""
    distinct, row = np.unique(users, return_inverse=True)
    node_id = torch.from_numpy(distinct.astype(np.int64))
    items = out[positives.n_users :]
    nll = SoftmaxNLL.apply(
        out[node_id],
        items,
        torch.from_numpy(row.astype(np.int64)),
        torch.from_numpy(pos.astype(np.int64)),
        config.temperature,
    )
    loss = batch_mean(nll, shard)
    if config.weight_decay:
        n = len(users)
        loss = loss + l2_penalty(model, node_id, n, config.weight_decay, shard)
        # Every rank adds the same item term, so DDP's average keeps it whole.
        table = model.embedding.weight[positives.n_users :]
        if config.item_l2_degree_power:
            weights = torch.from_numpy(positives.item_l2_weights(config.item_l2_degree_power))
            loss = loss + config.weight_decay * (table.pow(2).sum(dim=1) * weights).sum() / positives.n_edges
        else:
            loss = loss + config.weight_decay * table.pow(2).sum() / positives.n_edges
    return loss
