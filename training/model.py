"""PyG's LightGCN propagating over a fixed, pre-normalised, symmetric adjacency matrix.

LightGCN's graph convolution is ``x' = Â x`` with ``Â = D^{-1/2} A D^{-1/2}``
(:class:`torch_geometric.nn.conv.LGConv`). Given ``Â`` as a torch sparse CSR tensor,
LGConv's fused path computes it with one ``torch.sparse.mm`` per layer. Autograd's
backward of that product needs ``Â^T g``, and torch builds ``Â^T`` by converting the
matrix to CSR again (a sort of all edges) in every layer of every step: on the
simulator's graph this made the backward pass ~5x slower than the forward.

Because the user-item graph is undirected, ``Â`` is symmetric and ``Â^T g = Â g``.
:class:`SymmetricSpmm` uses that in its backward, :class:`SymmetricLGConv` is LGConv
with its fused product routed through it, and :func:`build_lightgcn` returns a stock
:class:`torch_geometric.nn.models.LightGCN` (its embedding table, layer combination,
``get_embedding``, ``recommendation_loss`` and ``recommend``) whose layers are
SymmetricLGConv. ``tests/training`` checks embeddings and gradients against the stock
model with a plain ``edge_index``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import ModuleList
from torch_geometric.nn.conv import LGConv
from torch_geometric.nn.models import LightGCN
from torch_geometric.utils import spmm


class SymmetricSpmm(torch.autograd.Function):
    """``adj @ x`` for a constant symmetric sparse ``adj``; the backward reuses ``adj``."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:  # noqa: D102
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:  # noqa: D102
        # d(adj @ x)/dx applied to grad is adj^T @ grad == adj @ grad (adj is symmetric).
        return None, torch.sparse.mm(ctx.adj, grad)


class SymmetricLGConv(LGConv):
    """:class:`~torch_geometric.nn.conv.LGConv` for a pre-normalised symmetric sparse ``Â``.

    Use it with ``normalize=False`` and a torch sparse CSR ``Â`` that does not require
    gradients; other inputs (``edge_index`` tensors) fall back to LGConv's own path.
    """

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        if isinstance(adj_t, Tensor) and adj_t.layout == torch.sparse_csr and not adj_t.requires_grad:
            return SymmetricSpmm.apply(adj_t, x)
        return spmm(adj_t, x, reduce=self.aggr)


def build_lightgcn(num_nodes: int, embedding_dim: int, num_layers: int, *, symmetric_sparse: bool = True) -> LightGCN:
    """A PyG LightGCN ready for a pre-normalised adjacency (``normalize=False``).

    Args:
        num_nodes: users + items.
        embedding_dim: size of the embeddings.
        num_layers: propagation layers ``L``.
        symmetric_sparse: swap in :class:`SymmetricLGConv` layers (for a symmetric CSR
            ``Â``); ``False`` keeps PyG's LGConv (any normalised ``edge_index`` or sparse
            matrix). (default: ``True``)

    Returns:
        A :class:`torch_geometric.nn.models.LightGCN` (initialised from torch's global
        RNG: seed it first).
    """
    model = LightGCN(num_nodes, embedding_dim, num_layers, normalize=False)
    if symmetric_sparse:
        model.convs = ModuleList([SymmetricLGConv(normalize=False) for _ in range(num_layers)])
    return model
