"""The serving path's BST scorer: one request's candidates, traced once by TorchScript.

:class:`RequestScorer` scores the rows of one request. Its :meth:`RequestScorer.shared`
path takes a batch whose rows share one history (what
:func:`training.bst_encoding.encode_candidates` builds) and runs
:meth:`training.bst.BST.shared_history_logits` through a frozen TorchScript trace made
at load (:func:`_trace`); a test checks it against :func:`training.bst_fit.predict`.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor, nn

from training.bst import BST
from training.bst_encoding import RankerBatch


class _SharedHistory(nn.Module):
    """``sigmoid`` of :meth:`BST.shared_history_logits` (TorchScript traces a module's forward)."""

    def __init__(self, model: BST) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        seq_items: Tensor,
        seq_categories: Tensor,
        seq_age: Tensor,
        target_item: Tensor,
        target_category: Tensor,
        dense: Tensor,
    ) -> Tensor:
        return torch.sigmoid(
            self.model.shared_history_logits(seq_items, seq_categories, seq_age, target_item, target_category, dense)
        )


class RequestScorer:
    """Click probabilities of one request's rows: the serving path's :func:`~training.bst_fit.predict`.

    :meth:`shared` scores a batch whose rows share one history, as
    :func:`~training.bst_encoding.encode_candidates` builds them, with
    :meth:`BST.shared_history_logits` traced by TorchScript (on a small batch, then
    frozen). For 100 candidates the eager module spends most of its time in Python
    (module calls, the attention's argument checks; :func:`~training.bst_fit.predict`
    also walks every submodule twice to switch training mode), and it projects the shared
    history once per row. On one core: ``predict`` ~1.5 ms, the eager forward ~0.7 ms,
    the shared history eagerly ~0.37 ms, traced less again (see
    ``benchmarks/bench_ranker_cost.py``). The trace has no data-dependent branches
    (padding is a mask), so it holds for any number of rows and any padding; a test
    checks it against ``predict``. If tracing fails, the eager function is used.
    ``__call__`` scores any batch with the eager module.

    Args:
        model: the ranker, in eval mode.
        trace: trace it (default); ``False`` scores with the eager module.

    Raises:
        ValueError: the model is in training mode (dropout would make scores random).
    """

    def __init__(self, model: BST, trace: bool = True) -> None:
        if model.training:
            raise ValueError("RequestScorer needs a model in eval mode (load_ranker returns one)")
        self.model = model
        self.traced: torch.jit.ScriptModule | None = None
        if trace:
            try:
                self.traced = _trace(model)
            except Exception:  # an exotic module: the eager path is correct, only slower
                logging.getLogger(__name__).warning("tracing the ranker failed; scoring eagerly", exc_info=True)

    def __call__(self, batch: RankerBatch) -> np.ndarray:
        """``[B]`` float32 probabilities of any batch: :func:`~training.bst_fit.predict`'s."""
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            return torch.sigmoid(self.model(*batch.inputs())).numpy()

    def shared(self, batch: RankerBatch) -> np.ndarray:
        """``[B]`` float32 probabilities of a batch whose rows all hold row 0's history.

        Equal to :func:`~training.bst_fit.predict`'s up to float rounding. Only row 0's history is read.
        """
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        args = (
            batch.seq_items[0],
            batch.seq_categories[0],
            batch.seq_age[0],
            batch.target_item,
            batch.target_category,
            batch.dense,
        )
        with torch.inference_mode():
            if self.traced is None:
                return torch.sigmoid(self.model.shared_history_logits(*args)).numpy()
            return self.traced(*args).numpy()


def _trace(model: BST) -> torch.jit.ScriptModule:
    """The frozen TorchScript trace of :class:`_SharedHistory`, run in before it is served.

    TorchScript's profiling executor optimizes a graph on its first calls (~30 ms, then
    ~7 ms on a 2-core machine) and again for new input shapes: the warm-up pays that here,
    at load, for a request's usual 100 candidates and for other counts, not in a request.
    """

    def example(n: int) -> tuple[Tensor, ...]:  # a one-event history
        seq = torch.zeros(model.seq_len, dtype=torch.long)
        seq[-1] = 2
        item = torch.full((n,), 2, dtype=torch.long)
        return seq, seq.clone(), (seq > 0).long(), item, item.clone(), torch.zeros(n, model.n_dense)

    with torch.inference_mode():
        traced = torch.jit.freeze(torch.jit.trace(_SharedHistory(model).eval(), example(2), check_trace=False))
        for n in (2, 2, 100, 100, 37, 5, 100):  # new shapes: the fallback graph is built too
            traced(*example(n))
    return traced
