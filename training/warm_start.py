"""Warm start: a new model's layer-0 embeddings seeded from another model's, matched by id.

:func:`training.train.train_lightgcn` can start from another model's layer-0 embeddings
(the previous night's champion, chosen by :mod:`training.retriever_init`) instead of
random ones. Users and items are matched by external id (:func:`warm_start_rows`); those
the source does not know keep the random init, those only the source knows are dropped.
:func:`init_digest` fingerprints the source, so a checkpoint only resumes the run it was
started for.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import Tensor

from training.data import BipartiteGraph
from training.embeddings import ModelEmbeddings
from training.ids import RowLookup


def warm_start_rows(graph: BipartiteGraph, init: ModelEmbeddings) -> tuple[np.ndarray, np.ndarray]:
    """Where each of the graph's users and items is in ``init``, by external id.

    Returns:
        ``(user_rows, item_rows)``: ``user_rows[u]`` is the row of ``init.user_emb``
        holding graph user ``u`` (``-1``: ``init`` does not know it), likewise for items.
    """
    return RowLookup.of(init.user_ids).rows_of(graph.users.ids), RowLookup.of(init.item_ids).rows_of(graph.items.ids)


def apply_warm_start(weight: Tensor, graph: BipartiteGraph, init: ModelEmbeddings) -> None:
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


def init_digest(init: ModelEmbeddings) -> str:
    """sha256 of warm-start embeddings (a checkpoint only resumes the run it was started for)."""
    digest = hashlib.sha256()
    for array in (init.user_ids, init.item_ids):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    for array in (init.user_emb, init.item_emb):
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()
