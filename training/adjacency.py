"""The user-item graph as LightGCN's propagation input: ``edge_index`` or ``Â`` as sparse CSR.

Users are nodes ``0..n_users - 1`` and items follow them. :func:`normalized_adjacency`
computes ``Â = D^{-1/2} A D^{-1/2}`` once (``gcn_norm``) as a torch sparse CSR tensor, so
that each propagation layer is one sparse-dense product (:mod:`training.model`) instead
of gathering and scattering messages per edge and re-normalising on every call.
"""

from __future__ import annotations

import warnings

import torch
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

from training.data import BipartiteGraph


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
