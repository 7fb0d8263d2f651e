"""Resumable checkpoints of a training run: one file per directory, written atomically.

:func:`training.train.train_lightgcn` saves everything its loop needs to continue as if
it had never stopped (model and optimizer state, random generator states, losses,
evaluations, early-stopping state) with :func:`save_checkpoint`, and reads it back with
:func:`load_checkpoint`. A checkpoint only fits the run that wrote it: it carries a
:func:`fingerprint` of the training inputs (the graph's ids and edges, the config minus
the fields a resumed run may change, the number of processes), and loading it for
other inputs raises a ``ValueError`` naming what differs, instead of silently training
a model on data it was not initialised for.

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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from graphrec.lake import atomic_write_bytes
from training.data import BipartiteGraph

if TYPE_CHECKING:
    from training.train import TrainConfig

CHECKPOINT_FILE = "checkpoint.pt"

#: :class:`~training.train.TrainConfig` fields a resumed run may change: how long to
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
