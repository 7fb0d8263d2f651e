"""Training and batch scoring of the BST ranker: :func:`fit_bst`, :func:`predict`, :func:`auc`.

:func:`fit_bst` trains a :class:`training.bst.BST` in place with binary cross-entropy
on logits and Adam, optionally early-stopping on a validation set's AUC; it is
deterministic for a given seed, and logs one INFO line per epoch (``ranker epoch 3/8:
train logloss 0.4120, val AUC 0.7310, 2.1 s``). :func:`predict` turns a
:class:`~training.bst_encoding.RankerBatch` into click probabilities in eval mode. No
I/O: batches in, a trained model and numbers out.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from training.bst import BST
from training.bst_encoding import RankerBatch
from training.threads import torch_threads

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BSTTrainConfig:
    """Hyper-parameters of one ranker training run.

    Args:
        epochs: passes over the training rows. (default: ``10``)
        batch_size: rows per Adam step. (default: ``1024``)
        learning_rate: Adam's step size. (default: ``1e-3``)
        weight_decay: Adam's L2 term. (default: ``1e-6``)
        seed: seeds the shuffling and dropout. (default: ``42``)
        patience: with a validation set, stop after this many epochs in a row without a
            higher validation AUC and restore the best epoch's weights; ``0`` never stops
            early and keeps the last epoch's. (default: ``0``)
        num_threads: torch intra-op threads while training, restored afterwards; ``None``
            keeps the current setting. (default: ``None``)
        scale_dense: fit the model's dense standardisation on the training rows first
            (:meth:`training.bst.BST.fit_dense_scaling`). (default: ``True``)
    """

    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    seed: int = 42
    patience: int = 0
    num_threads: int | None = None
    scale_dense: bool = True


@dataclasses.dataclass
class FitResult:
    """What :func:`fit_bst` did to the model it trained in place.

    Args:
        losses: mean training BCE per epoch (``losses[e - 1]`` is epoch ``e``).
        valid_auc: validation AUC after each epoch (empty without a validation set).
        best_epoch: with early stopping, the epoch whose weights the model holds.
        stopped_early: whether training stopped before ``epochs``.
        seconds: wall time.
    """

    losses: list[float]
    valid_auc: list[float]
    best_epoch: int | None
    stopped_early: bool
    seconds: float


def _check_labels(batch: RankerBatch, labels: np.ndarray, what: str) -> Tensor:
    labels = np.asarray(labels, dtype=np.float32).reshape(-1)
    if len(labels) != len(batch):
        raise ValueError(f"{what}: {len(labels)} labels for {len(batch)} rows")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError(f"{what}: labels must be 0 or 1")
    return torch.from_numpy(labels)


def fit_bst(
    model: BST,
    batch: RankerBatch,
    labels: np.ndarray,
    config: BSTTrainConfig = BSTTrainConfig(),
    valid: tuple[RankerBatch, np.ndarray] | None = None,
) -> FitResult:
    """Train ``model`` in place with binary cross-entropy on logits and Adam.

    Deterministic: the same initial model, data and ``config.seed`` give bit-identical
    weights (shuffling from a seeded :class:`torch.Generator`, dropout from the global RNG
    seeded inside :func:`torch.random.fork_rng`, so the caller's RNG state is untouched).
    The model is left in eval mode.

    Args:
        model: the ranker, e.g. from :func:`training.bst.build_bst`.
        batch: the training rows (:func:`training.bst_encoding.encode`).
        labels: ``[N]`` 0/1 (clicked or not).
        config: hyper-parameters.
        valid: optional ``(batch, labels)`` scored after each epoch (AUC), needed for
            early stopping; it must hold both classes.

    Returns:
        Per-epoch losses and validation AUCs.
    """
    started = time.perf_counter()
    target = _check_labels(batch, labels, "train")
    if len(batch) == 0:
        raise ValueError("cannot train on an empty batch")
    if valid is not None:
        valid_labels = _check_labels(valid[0], valid[1], "valid").numpy()
        if len(np.unique(valid_labels)) < 2:
            raise ValueError("valid labels must hold both classes")
    if config.patience < 0 or config.epochs < 1 or config.batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1 and patience >= 0")
    losses: list[float] = []
    aucs: list[float] = []
    best: tuple[float, int, dict[str, Tensor]] | None = None
    stopped_early = False
    with torch_threads(config.num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        if config.scale_dense:
            model.fit_dense_scaling(batch.dense)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.perf_counter()
            model.train()
            order = torch.randperm(len(batch), generator=generator)
            total = 0.0
            for start in range(0, len(batch), config.batch_size):
                rows = order[start : start + config.batch_size]
                loss = F.binary_cross_entropy_with_logits(model(*batch.subset(rows).inputs()), target[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(rows)
            losses.append(total / len(batch))
            if valid is not None:
                aucs.append(auc(valid_labels, predict(model, valid[0])))
            log.info(
                "ranker epoch %d/%d: train logloss %.4f%s, %.1f s",
                epoch,
                config.epochs,
                losses[-1],
                f", val AUC {aucs[-1]:.4f}" if valid is not None else "",
                time.perf_counter() - epoch_started,
            )
            if valid is None or config.patience == 0:
                continue
            if best is None or aucs[-1] > best[0]:
                best = (aucs[-1], epoch, copy.deepcopy(model.state_dict()))
            elif epoch - best[1] >= config.patience:
                stopped_early = epoch < config.epochs
                break
    if best is not None:
        model.load_state_dict(best[2])
    model.eval()
    return FitResult(losses, aucs, best[1] if best else None, stopped_early, time.perf_counter() - started)


def predict(model: BST, batch: RankerBatch, batch_size: int = 8192) -> np.ndarray:
    """Click probabilities ``[B]`` (float32), in eval mode without gradients.

    The model's training mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            chunks = [
                torch.sigmoid(model(*batch.subset(torch.arange(start, min(start + batch_size, len(batch)))).inputs()))
                for start in range(0, len(batch), batch_size)
            ]
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy() if chunks else np.zeros(0, dtype=np.float32)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` against 0/1 ``labels``; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score  # lazy: scikit-learn only to score, not to serve

    labels = np.asarray(labels).reshape(-1)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores).reshape(-1)))
