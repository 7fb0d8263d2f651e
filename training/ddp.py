"""Distributed data parallel: this process's place in a ``torch.distributed`` group.

:func:`training.train.train_lightgcn` runs as one rank of a DDP run under ``torchrun`` (any initialised ``torch.distributed``
group of two or more processes; gloo on CPU) every rank holds the whole graph and
computes the full propagation through :class:`~torch.nn.parallel.DistributedDataParallel`.
All ranks draw the same edge permutation; each global batch of ``batch_size`` edges is
cut into ``world_size`` contiguous shards, each rank samples negatives for its shard
(its own generator, seeded by ``(seed, rank)``) and DDP averages the gradients. The
shard losses are scaled so that this average is exactly the gradient of the one-process
loss of the whole batch, L2 term included (:mod:`training.losses`), so one optimisation step
sees the same ``batch_size`` edges as in one process and reaches the same quality
(``tests/training/test_training_distributed.py``). Rank 0 alone evaluates, checkpoints
and reports; its early-stopping decisions are broadcast so all ranks stop together.
The command line is :mod:`training.distributed`.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in a ``torch.distributed`` group; one process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def current_ranks() -> Ranks:
    """This process's rank and the group's size; rank 0 of 1 outside an initialised group."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def from_main(ranks: Ranks, *values: int) -> list[int]:
    """Rank 0's ``values`` on every rank (one broadcast)."""
    if not ranks.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.int64)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()
