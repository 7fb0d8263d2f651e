"""Resumable checkpoints of a training run: one file per directory, written atomically.

:func:`training.train.train_lightgcn` saves everything its loop needs to continue as if
it had never stopped (model and optimizer state, random generator states, losses,
evaluations, early-stopping state) with :func:`save_checkpoint`, and reads it back with
:func:`load_checkpoint`. A checkpoint only fits the run that wrote it: it carries a
:func:`fingerprint` of the training inputs (the graph's ids and edges, the config minus
the fields a resumed run may change, the number of processes), and loading it for
other inputs raises a ``ValueError`` naming what differs, instead of silently training
a model on data it was not initialised for.

:class:`LoopState` is what the loop keeps besides model, optimizer and random generators;
:func:`save_state` gathers all of it (under DDP every rank's negative sampler too) and
rank 0 writes it; :func:`restore_state` puts it back.

The file is ``torch.save`` output, written to a temporary file in the same directory and
renamed over ``checkpoint.pt`` (:func:`graphrec.lake.atomic_write_bytes`), so a run
killed while saving leaves the previous checkpoint intact. It holds only tensors and
plain Python values and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch_geometric.nn.models import LightGCN

from graphrec.lake import atomic_write_bytes
from training.data import BipartiteGraph
from training.ddp import Ranks
from training.train_config import TrainConfig

CHECKPOINT_FILE = "checkpoint.pt"

#: :class:`~training.train_config.TrainConfig` fields a resumed run may change: how long to
#: train, when to stop, evaluate and save, and how many threads to use. Every other
#: field shapes the model or its trajectory and must match the checkpoint's.
RESUMABLE_FIELDS = ("epochs", "patience", "eval_every", "checkpoint_every", "num_threads")


def fingerprint(graph: BipartiteGraph, config: TrainConfig, world_size: int = 1) -> dict[str, Any]:
    """What a checkpoint must agree on with the run that resumes it.

    Args:
        graph: the training graph; its sizes and a sha256 over its user ids, item ids
            and edges are compared.
        config: the run's config; every field but :data:`RESUMABLE_FIELDS` is compared.
        world_size: processes in the run (each rank's sampling state is saved).

    Returns:
        A dict of plain values (compare with ``==``).
    """
    digest = hashlib.sha256()
    for array in (graph.users.ids, graph.items.ids, graph.edge_index):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    fields = {name: value for name, value in dataclasses.asdict(config).items() if name not in RESUMABLE_FIELDS}
    return {
        "config": fields,
        "n_users": graph.n_users,
        "n_items": graph.n_items,
        "n_edges": graph.n_edges,
        "graph_sha256": digest.hexdigest(),
        "world_size": world_size,
    }


def _differences(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    diffs = []
    for key in sorted(set(expected) | set(found)):
        want, got = expected.get(key), found.get(key)
        if isinstance(want, dict) and isinstance(got, dict):
            diffs += [f"{key}.{name}" for name in _differences(want, got)]
        elif want != got:
            diffs.append(key)
    return diffs


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically and return the path."""
    path = Path(directory) / CHECKPOINT_FILE
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(directory: Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint in ``directory``, or ``None`` when there is none.

    Args:
        directory: where :func:`save_checkpoint` wrote it.
        expected: the resuming run's :func:`fingerprint`.

    Raises:
        ValueError: the checkpoint was written for other inputs (the message names the
            differing fields).
    """
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        return None
    state = torch.load(path, weights_only=True)
    found = state.get("fingerprint", {})
    if found != expected:
        raise ValueError(
            f"checkpoint {path} does not match this run (fingerprint differs in: "
            f"{', '.join(_differences(expected, found)) or 'format'}); delete it or train with resume=False"
        )
    return state


@dataclasses.dataclass
class LoopState:
    """Everything of a run besides model, optimizer and generators (checkpointed with them)."""

    epoch: int = 0
    losses: list[float] = dataclasses.field(default_factory=list)
    evaluations: list[tuple[int, dict[str, float]]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    best_epoch: int | None = None
    best_value: float | None = None
    best_state: dict[str, Tensor] | None = None
    stale: int = 0  # evaluations since the best one


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python number (``torch.load(weights_only=True)`` refuses numpy)."""
    return value.item() if isinstance(value, np.generic) else value


def save_state(
    directory: Path,
    state: LoopState,
    model: LightGCN,
    optimizer: torch.optim.Optimizer,
    rngs: tuple[np.random.Generator, np.random.Generator],
    expected: dict[str, Any],
    ranks: Ranks,
) -> None:
    """Rank 0 writes the checkpoint; under DDP it first gathers every rank's sampler state."""
    negative_rngs = None
    if ranks.distributed:
        negative_rngs = [None] * ranks.world_size if ranks.main else None
        dist.gather_object(rngs[1].bit_generator.state, negative_rngs, dst=0)
    if not ranks.main:
        return
    save_checkpoint(
        directory,
        {
            "fingerprint": expected,
            "epoch": state.epoch,
            "losses": state.losses,
            "seconds": state.seconds,
            "evaluations": [
                (epoch, {name: _plain(value) for name, value in metrics.items()})
                for epoch, metrics in state.evaluations
            ],
            "best_epoch": state.best_epoch,
            "best_value": state.best_value,
            "best_state": state.best_state,
            "stale": state.stale,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "numpy_rng": rngs[0].bit_generator.state,
            "negative_rngs": negative_rngs,
            "torch_rng": torch.get_rng_state(),
        },
    )


def restore_state(
    saved: dict[str, Any],
    model: LightGCN,
    optimizer: torch.optim.Optimizer,
    rngs: tuple[np.random.Generator, np.random.Generator],
    ranks: Ranks,
) -> LoopState:
    """Load a :func:`load_checkpoint` state into ``model``, ``optimizer`` and ``rngs``; the loop's state."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    rngs[0].bit_generator.state = saved["numpy_rng"]  # in one process also the negatives' generator
    if ranks.distributed:
        rngs[1].bit_generator.state = saved["negative_rngs"][ranks.rank]
    torch.set_rng_state(saved["torch_rng"])
    return LoopState(
        saved["epoch"],
        list(saved["losses"]),
        [(e, dict(m)) for e, m in saved["evaluations"]],
        saved["seconds"],
        saved["best_epoch"],
        saved["best_value"],
        saved["best_state"],
        saved["stale"],
    )
