"""Hyper-parameters of one LightGCN training run (:class:`TrainConfig`) and the step size they imply.

:func:`training.train.train_lightgcn` takes a :class:`TrainConfig`; the retriever task
builds one from the installation's settings (:func:`training.retriever.train_config`),
and checkpoints compare all its fields but the resumable ones
(:data:`training.checkpoint.RESUMABLE_FIELDS`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one LightGCN training run.

    Args:
        epochs: passes over the (deduplicated) training edges. (default: ``30``)
        embedding_dim: size of the embeddings. (default: ``64``)
        num_layers: number of propagation layers ``L``. (default: ``3``)
        learning_rate: Adam's step size. (default: ``0.01``)
        batch_size: positive edges per optimisation step; under DDP the global batch,
            shared among the ranks. (default: ``2048``)
        max_steps_per_epoch: when positive, a large graph's batch grows to
            ``ceil(edges / max_steps_per_epoch)`` edges (never below ``batch_size``). Each
            step propagates over the whole graph, so an epoch costs steps x edges: with
            a fixed batch that grows with the square of the data, with a bounded number
            of steps linearly. ``0`` keeps ``batch_size``. (default: ``0``)
        weight_decay: L2 strength ``lambda`` of the BPR loss on the batch's layer-0
            embeddings. (default: ``1e-4``)
        seed: seeds the initial embeddings, the edge shuffling and negative sampling.
        eval_every: evaluate every this many epochs (and after the last one) when an
            evaluation callback is given; ``0`` evaluates only after the last epoch.
        num_threads: torch intra-op threads during training (per process); ``None`` picks
            one thread for graphs under :data:`training.train.SMALL_GRAPH_EDGES` edges (the per-layer products
            are too small to split, and on a busy 2-core machine a second thread made
            steps up to 10x slower) and all cores above, shared among the processes of a
            DDP run (Gowalla, 810k edges: 2 threads trained 70 epochs at batch 32768 in
            355 s against 961 s on one thread, same model).
        propagation: ``"symmetric_csr"`` (default, fastest), ``"csr"`` (PyG's LGConv over
            the pre-normalised CSR matrix) or ``"edge_index"`` (PyG's LGConv normalising
            a plain ``edge_index`` on every call). All three compute the same model.
        loss: the training objective, one of :data:`training.losses.LOSSES`. (default: ``"bpr"``;
            the product's settings default to ``"softmax"``, see :func:`training.retriever.train_config`)
        patience: stop after this many evaluations in a row without a higher ``monitor``
            and return the best evaluation's embeddings; ``0`` (default) never stops
            early and returns the last epoch's.
        monitor: the key of the evaluation callback's dict that early stopping watches;
            higher is better. (default: ``"recall_at_20"``)
        checkpoint_every: with a checkpoint directory, also save every this many epochs
            (besides every evaluation and the last epoch); ``0`` saves only then.
            (default: ``10``)
        init_std: draw the initial embeddings from ``N(0, init_std^2)`` (the official
            LightGCN code uses ``0.1``); ``None`` keeps PyG's Xavier-uniform init, whose
            scale (~0.01 on Gowalla) is too small for the ``"softmax"`` loss: with it,
            Gowalla reached Recall@20 0.092 after 8 epochs against 0.166 with ``0.1``.
            (default: ``None``)
        temperature: ``tau`` of the ``"softmax"`` loss (scores are divided by it before
            the softmax); unused by BPR. (default: ``0.1``)
        lr_decay: epoch ``e`` trains with ``learning_rate * lr_decay ** (e - 1)``
            (a function of the epoch alone, so resumed runs keep the schedule); ``1``
            keeps the rate constant. (default: ``1.0``)
        item_l2_degree_power: exponent ``beta`` of the ``"softmax"`` loss's per-item L2
            weights: item ``i``'s row counts ``max(d_i, 1)^beta`` (``d_i`` its training
            degree), scaled to average 1 over the items (:mod:`training.losses`); ``0``
            is the uniform term. Unused by BPR. (default: ``0.0``)
    """

    epochs: int = 30
    embedding_dim: int = 64
    num_layers: int = 3
    learning_rate: float = 0.01
    batch_size: int = 2048
    max_steps_per_epoch: int = 0
    weight_decay: float = 1e-4
    seed: int = 42
    eval_every: int = 5
    num_threads: int | None = None
    propagation: str = "symmetric_csr"
    loss: str = "bpr"
    patience: int = 0
    monitor: str = "recall_at_20"
    checkpoint_every: int = 10
    init_std: float | None = None
    temperature: float = 0.1
    lr_decay: float = 1.0
    item_l2_degree_power: float = 0.0


def step_batch_size(config: TrainConfig, n_edges: int) -> int:
    """Edges per step: ``config.batch_size``, or more to stay within ``max_steps_per_epoch``."""
    if config.max_steps_per_epoch <= 0:
        return config.batch_size
    return max(config.batch_size, -(-n_edges // config.max_steps_per_epoch))
