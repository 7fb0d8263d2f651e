"""Torch's intra-op thread count, set for a block and restored afterwards.

Both trainers (:func:`training.train.train_lightgcn`, :func:`training.bst_fit.fit_bst`)
use it. It imports torch alone, so the ranker's fit does not pull in torch_geometric.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (``None``: leave them); restored on exit.

    Args:
        num_threads: threads for the block, at least ``1``; ``None`` keeps the current setting.
    """
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(max(1, num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
