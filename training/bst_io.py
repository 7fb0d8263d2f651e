"""The BST ranker's files: ``ranker.pt`` (state dict) and ``ranker.json`` (config, vocabulary).

:func:`save_ranker` and :func:`load_ranker` are the ranker's only file I/O. The two files
travel together: MLflow logs them as the pyfunc model's ``ranker/`` artifact
(:mod:`training.pyfunc_ranker`) and publication copies them into the index bundle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from training.bst import BST
from training.bst_vocab import Vocabulary

WEIGHTS_FILE = "ranker.pt"
META_FILE = "ranker.json"


def save_ranker(model: BST, vocab: Vocabulary, directory: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``ranker.pt`` (the state dict) and ``ranker.json`` (config, vocabulary, ``extra``).

    Args:
        model: the trained ranker.
        vocab: the vocabulary its embeddings are indexed by.
        directory: created if missing.
        extra: JSON-able metadata (metrics, run ids) handed back by :func:`load_ranker`.

    Returns:
        ``directory``.
    """
    if (model.n_items, model.n_categories) != (vocab.n_items, vocab.n_categories):
        raise ValueError("the vocabulary does not match the model's embedding tables")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    meta = {"model": model.config(), "vocab": vocab.to_dict(), "seq_len": model.seq_len, "extra": extra or {}}
    (directory / META_FILE).write_text(json.dumps(meta))
    return directory


def load_ranker(directory: Path) -> tuple[BST, Vocabulary, dict[str, Any]]:
    """``(model in eval mode, vocabulary, extra)`` written by :func:`save_ranker`."""
    directory = Path(directory)
    meta = json.loads((directory / META_FILE).read_text())
    config = {**meta["model"], "hidden": tuple(meta["model"]["hidden"])}
    model = BST(**config)
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, weights_only=True))
    model.eval()
    vocab = Vocabulary.from_dict(meta["vocab"])
    if (model.n_items, model.n_categories) != (vocab.n_items, vocab.n_categories):
        raise ValueError(f"{directory}: the vocabulary does not match the model's embedding tables")
    return model, vocab, meta["extra"]
