"""BST ranker: the Behavior Sequence Transformer module (tensors in, one logit per row out).

BST (`Chen et al., 2019 <https://arxiv.org/abs/1905.06874>`_) scores a (user, candidate
item) pair from the user's recent behaviour sequence ``v_1..v_L`` (most recent last) and
the candidate ``v_t``. Each of the ``L + 1`` items becomes one token

.. math::
    \\mathbf{e}_j = E_{item}[v_j] + E_{cat}[c_j] + P[a_j], \\qquad
    a_j = 1 + \\min\\left(A - 2, \\left\\lfloor \\log_2 (1 + \\Delta t_j / 1\\,\\mathrm{h}) \\right\\rfloor\\right)

where ``P`` is the paper's time-based "positional" embedding indexed by the age bucket
``a_j`` of the event (``A = AGE_BUCKETS``; bucket ``0`` is padding and the candidate has the
dedicated bucket ``A``). The embeddings are summed rather than concatenated (the paper
concatenates): one width ``d`` for all, no projection. One transformer block
(:class:`torch.nn.TransformerEncoderLayer`: multi-head self-attention and a feed-forward
net with LeakyReLU, post-norm as in the paper) mixes the tokens; padding positions are
masked as keys and the candidate token is never masked, so an empty history still scores.
The feed-forward net is ``2 d`` wide, not the usual ``4 d``. The candidate token's output
(instead of the paper's flattening of every position, which would tie the MLP to ``L``
and to where the padding falls) is concatenated with the standardised dense features and
fed to an MLP with LeakyReLU that outputs one logit.

Only the candidate position's output is used, so the block computes only that position
(:meth:`BST.candidate_output`): its query attends to the keys and values of every token,
then the residual, norm and feed-forward steps run on that one position. This is the same
function as running the whole block and keeping its last position (a test checks it), at
a fraction of the cost: on one core, 200 candidates with ``L = 20`` went from ~4.6 ms to
~1 ms per request (``benchmarks/bench_ranker_cost.py``).

The dense features (:data:`~training.bst_vocab.DENSE_FEATURES`) are standardised with the
training set's mean and standard deviation, kept as buffers of the model
(:meth:`BST.fit_dense_scaling`): unlike batch normalisation this is the same transform in
training and in serving, for a batch of one.

This module is the model alone. Around it: :mod:`training.bst_vocab` (input vocabulary and
sizes), :mod:`training.bst_encoding` (frames to a :class:`~training.bst_encoding.RankerBatch`,
whose :meth:`~training.bst_encoding.RankerBatch.inputs` are :meth:`BST.forward`'s arguments),
:mod:`training.bst_fit` (training loop, ``predict``, AUC), :mod:`training.bst_scorer`
(the serving path's traced scorer) and :mod:`training.bst_io` (``ranker.pt`` /
``ranker.json``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.bst_vocab import AGE_BUCKETS, N_DENSE, PAD, Vocabulary


class BST(nn.Module):
    """Behavior Sequence Transformer ranker (module docstring): one logit per row.

    Args:
        n_items: item embedding rows, :attr:`Vocabulary.n_items`.
        n_categories: category embedding rows, :attr:`Vocabulary.n_categories`.
        seq_len: ``L``, the history length the batches must have. (default: ``20``)
        dim: token width ``d``. (default: ``32``)
        heads: attention heads (must divide ``dim``). (default: ``2``)
        age_buckets: ``A``; the age table has ``A + 1`` rows, the last for the candidate.
            (default: :data:`AGE_BUCKETS`)
        n_dense: dense features per row. (default: :data:`N_DENSE`)
        hidden: widths of the MLP's hidden layers. (default: ``(64, 32)``)
        dropout: dropout in the transformer block and the MLP. (default: ``0.1``)
    """

    dense_mean: Tensor  # buffers, set by fit_dense_scaling
    dense_std: Tensor

    def __init__(
        self,
        n_items: int,
        n_categories: int,
        *,
        seq_len: int = 20,
        dim: int = 32,
        heads: int = 2,
        age_buckets: int = AGE_BUCKETS,
        n_dense: int = N_DENSE,
        hidden: tuple[int, ...] = (64, 32),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim})")
        self.n_items, self.n_categories, self.seq_len, self.dim, self.heads = n_items, n_categories, seq_len, dim, heads
        self.age_buckets, self.n_dense, self.hidden, self.dropout = age_buckets, n_dense, tuple(hidden), dropout
        self.item_embedding = nn.Embedding(n_items, dim, padding_idx=PAD)
        self.category_embedding = nn.Embedding(n_categories, dim, padding_idx=PAD)
        self.age_embedding = nn.Embedding(age_buckets + 1, dim, padding_idx=0)
        with torch.no_grad():  # three summed tables: each token starts at about unit norm
            for table in (self.item_embedding, self.category_embedding, self.age_embedding):
                nn.init.normal_(table.weight, std=dim**-0.5)
                table.weight[0] = 0.0
        # A custom activation keeps torch's fused "fast path" off: train and eval (and a
        # batch of one and of many) run the same kernels.
        self.block = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, activation=nn.LeakyReLU(), batch_first=True
        )
        self.register_buffer("dense_mean", torch.zeros(n_dense))
        self.register_buffer("dense_std", torch.ones(n_dense))
        layers: list[nn.Module] = []
        width = dim + n_dense
        for size in self.hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def config(self) -> dict[str, Any]:
        """The constructor's arguments, JSON-able: ``BST(**model.config())`` rebuilds it."""
        return {
            "n_items": self.n_items,
            "n_categories": self.n_categories,
            "seq_len": self.seq_len,
            "dim": self.dim,
            "heads": self.heads,
            "age_buckets": self.age_buckets,
            "n_dense": self.n_dense,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
        }

    @torch.no_grad()
    def fit_dense_scaling(self, dense: Tensor) -> None:
        """Standardise dense features with the mean and standard deviation of ``dense`` ``[N, n_dense]``.

        Constant columns (std below ``1e-6``) are only centred.
        """
        std = dense.double().std(dim=0, unbiased=False)
        self.dense_mean.copy_(dense.double().mean(dim=0))
        self.dense_std.copy_(torch.where(std < 1e-6, torch.ones_like(std), std))

    def forward(
        self,
        seq_items: Tensor,
        seq_categories: Tensor,
        seq_age: Tensor,
        target_item: Tensor,
        target_category: Tensor,
        dense: Tensor,
    ) -> Tensor:
        """Logits ``[B]`` of ``B`` rows (``model(*batch.inputs())`` for a :class:`~training.bst_encoding.RankerBatch`).

        Args:
            seq_items: ``[B, L]`` long, item indices of the history, most recent last,
                left-padded with ``0``.
            seq_categories: ``[B, L]`` long, their category indices.
            seq_age: ``[B, L]`` long, age bucket of each event (``0`` marks padding).
            target_item: ``[B]`` long, the candidate's item index.
            target_category: ``[B]`` long, the candidate's category index.
            dense: ``[B, n_dense]`` float32, the dense features (not yet standardised).
        """
        if seq_items.shape[1:] != (self.seq_len,) or dense.shape[1:] != (self.n_dense,):
            raise ValueError(
                f"batch has sequences of {tuple(seq_items.shape[1:])} and dense of "
                f"{tuple(dense.shape[1:])}, the model wants ({self.seq_len},) and ({self.n_dense},)"
            )
        candidate_age = torch.full_like(target_item, self.age_buckets)
        items = torch.cat([seq_items, target_item[:, None]], dim=1)
        categories = torch.cat([seq_categories, target_category[:, None]], dim=1)
        ages = torch.cat([seq_age, candidate_age[:, None]], dim=1)
        tokens = self.item_embedding(items) + self.category_embedding(categories) + self.age_embedding(ages)
        padding = ages == 0  # never true for the candidate (last) token
        dense = (dense - self.dense_mean) / self.dense_std
        return self.mlp(torch.cat([self.candidate_output(tokens, padding), dense], dim=1)).squeeze(-1)

    def candidate_output(self, tokens: Tensor, padding: Tensor) -> Tensor:
        """``self.block(tokens, src_key_padding_mask=padding)[:, -1]``, computing only that position.

        In a single post-norm encoder layer, position ``j``'s output depends on the layer's
        *inputs* at every position (as keys and values) but on no other position's output,
        so the last position can be computed alone: attention with one query, then
        ``norm1``, the feed-forward net and ``norm2`` on ``[B, 1, d]``.
        """
        block = self.block
        query = tokens[:, -1:]
        attended = block.self_attn(query, tokens, tokens, key_padding_mask=padding, need_weights=False)[0]
        hidden = block.norm1(query + block.dropout1(attended))
        feed = block.linear2(block.dropout(block.activation(block.linear1(hidden))))
        return block.norm2(hidden + block.dropout2(feed))[:, 0]

    def shared_history_logits(
        self,
        seq_items: Tensor,
        seq_categories: Tensor,
        seq_age: Tensor,
        target_item: Tensor,
        target_category: Tensor,
        dense: Tensor,
    ) -> Tensor:
        """Logits ``[B]`` of ``B`` candidates that share one history (one request), in eval mode.

        The same function as :meth:`forward` on a batch repeating the history ``[L]`` for
        every row, computed once where it is shared: the history's tokens and their keys
        and values are projected once instead of ``B`` times, and each candidate's query
        attends to them and to its own key and value. For 100 candidates and ``L = 20``
        that is ~20x fewer projections (a test checks it against :meth:`forward`). No
        dropout: serving only.

        Args:
            seq_items, seq_categories, seq_age: ``[L]`` the history (padding: age ``0``).
            target_item, target_category: ``[B]`` the candidates.
            dense: ``[B, n_dense]`` their dense features.
        """
        attention = self.block.self_attn
        d, heads = self.dim, self.heads
        width = d // heads
        history = self.item_embedding(seq_items) + self.category_embedding(seq_categories) + self.age_embedding(seq_age)
        candidate_age = torch.full_like(target_item, self.age_buckets)
        candidates = (
            self.item_embedding(target_item)
            + self.category_embedding(target_category)
            + self.age_embedding(candidate_age)
        )
        w_q, w_kv = attention.in_proj_weight[:d], attention.in_proj_weight[d:]
        b_q, b_kv = attention.in_proj_bias[:d], attention.in_proj_bias[d:]
        query = F.linear(candidates, w_q, b_q).view(-1, heads, width) * width**-0.5  # [B, H, w]
        k_history, v_history = F.linear(history, w_kv, b_kv).view(-1, 2, heads, width).unbind(1)  # [L, H, w]
        k_own, v_own = F.linear(candidates, w_kv, b_kv).view(-1, 2, heads, width).unbind(1)  # [B, H, w]
        on_history = torch.einsum("bhw,lhw->bhl", query, k_history)
        on_history = on_history.masked_fill((seq_age == 0)[None, None, :], float("-inf"))
        on_own = (query * k_own).sum(-1, keepdim=True)
        weights = torch.softmax(torch.cat([on_history, on_own], dim=-1), dim=-1)  # [B, H, L + 1]
        mixed = torch.einsum("bhl,lhw->bhw", weights[..., :-1], v_history) + weights[..., -1:] * v_own
        attended = attention.out_proj(mixed.reshape(-1, d))
        block = self.block
        hidden = block.norm1(candidates + attended)
        output = block.norm2(hidden + block.linear2(block.activation(block.linear1(hidden))))
        dense = (dense - self.dense_mean) / self.dense_std
        return self.mlp(torch.cat([output, dense], dim=1)).squeeze(-1)


def build_bst(vocab: Vocabulary, seed: int = 42, **kwargs: Any) -> BST:
    """A :class:`BST` sized for ``vocab``, initialised from ``seed`` (global RNG untouched).

    Args:
        vocab: gives ``n_items`` and ``n_categories``.
        seed: the initial weights' seed.
        **kwargs: further :class:`BST` arguments.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BST(vocab.n_items, vocab.n_categories, **kwargs)
