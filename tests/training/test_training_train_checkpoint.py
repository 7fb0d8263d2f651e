"""Unit tests of resumable training checkpoints: resuming is invisible, mismatches are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from training.checkpoint import CHECKPOINT_FILE, RESUMABLE_FIELDS, fingerprint
from training.train import train_lightgcn
from training.train_config import TrainConfig

CONFIG = TrainConfig(epochs=6, embedding_dim=8, batch_size=256, eval_every=1, seed=11, checkpoint_every=2)


def evaluate(embeddings):
    """A deterministic score of the embeddings (varies, so early stopping has work to do);
    a numpy scalar, as callbacks often return."""
    return {"recall_at_20": np.abs(embeddings.item_emb).mean(dtype=np.float64) % 0.01}


def assert_same_run(a, b):
    assert a.losses == b.losses
    assert a.evaluations == b.evaluations
    assert (a.best_epoch, a.stopped_early, a.epochs_run) == (b.best_epoch, b.stopped_early, b.epochs_run)
    np.testing.assert_array_equal(a.embeddings.user_emb, b.embeddings.user_emb)
    np.testing.assert_array_equal(a.embeddings.item_emb, b.embeddings.item_emb)


@pytest.mark.parametrize("with_eval, patience", [(False, 0), (True, 0), (True, 4)])
def test_half_run_plus_resume_equals_one_run(tiny_graph, tmp_path, with_eval, patience):
    config = dataclasses.replace(CONFIG, patience=patience)
    callback = evaluate if with_eval else None
    full = train_lightgcn(tiny_graph, config, callback)
    half = train_lightgcn(tiny_graph, dataclasses.replace(config, epochs=3), callback, checkpoint_dir=tmp_path)
    assert half.epochs_run == 3 and torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["epoch"] == 3
    resumed = train_lightgcn(tiny_graph, config, callback, checkpoint_dir=tmp_path, resume=True)
    assert_same_run(resumed, full)
    assert resumed.seconds >= half.seconds


def test_checkpoints_are_written_at_their_epochs_atomically(tiny_graph, tmp_path):
    epochs = []
    seen = set()

    def spy(embeddings):  # the checkpoint of the previous evaluation is on disk while evaluating
        path = tmp_path / CHECKPOINT_FILE
        if path.exists():
            epochs.append(torch.load(path, weights_only=True)["epoch"])
        seen.update(p.name for p in tmp_path.iterdir())
        return {"recall_at_20": 0.0}

    config = dataclasses.replace(CONFIG, epochs=7, eval_every=3, checkpoint_every=2)
    train_lightgcn(tiny_graph, config, spy, checkpoint_dir=tmp_path)
    # evaluations at 3, 6, 7; saves at 2, 3, 4, 6, 7 (evaluation, every 2nd epoch, the last)
    assert epochs == [2, 4, 6]
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert saved["epoch"] == 7 and [e for e, _ in saved["evaluations"]] == [3, 6, 7]
    assert {"model", "optimizer", "numpy_rng", "torch_rng", "losses", "fingerprint", "best_state"} <= set(saved)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE] and seen == {CHECKPOINT_FILE}


@pytest.mark.parametrize("change", ["seed", "embedding_dim", "learning_rate", "graph"])
def test_resume_refuses_a_checkpoint_of_other_inputs(tiny_graph, tmp_path, change):
    train_lightgcn(tiny_graph, dataclasses.replace(CONFIG, epochs=2), checkpoint_dir=tmp_path)
    graph, config = tiny_graph, CONFIG
    if change == "graph":
        graph = dataclasses.replace(tiny_graph, edge_index=tiny_graph.edge_index[:, 1:])
        field = "graph_sha256"
    else:
        config = dataclasses.replace(CONFIG, **{change: getattr(CONFIG, change) * 2})
        field = f"config.{change}"
    with pytest.raises(ValueError, match=rf"fingerprint differs in: .*{field}"):
        train_lightgcn(graph, config, checkpoint_dir=tmp_path, resume=True)
    # without resume the mismatching checkpoint is simply replaced
    train_lightgcn(graph, dataclasses.replace(config, epochs=1), checkpoint_dir=tmp_path)
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["epoch"] == 1


def test_resumable_fields_may_change(tiny_graph, tmp_path):
    base = fingerprint(tiny_graph, CONFIG)
    changed = dataclasses.replace(CONFIG, epochs=99, patience=3, eval_every=7, checkpoint_every=0, num_threads=2)
    assert set(RESUMABLE_FIELDS) == {"epochs", "patience", "eval_every", "checkpoint_every", "num_threads"}
    assert fingerprint(tiny_graph, changed) == base
    assert fingerprint(tiny_graph, CONFIG, world_size=2) != base


def test_resume_without_a_checkpoint_starts_afresh(tiny_graph, tmp_path):
    fresh = train_lightgcn(tiny_graph, dataclasses.replace(CONFIG, epochs=2))
    resumed = train_lightgcn(
        tiny_graph, dataclasses.replace(CONFIG, epochs=2), checkpoint_dir=tmp_path / "new", resume=True
    )
    assert_same_run(resumed, fresh)
    assert (tmp_path / "new" / CHECKPOINT_FILE).exists()
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train_lightgcn(tiny_graph, CONFIG, resume=True)


def test_a_stopped_run_stays_stopped_unless_patience_grows(tiny_graph, tmp_path):
    def falling(embeddings, values=iter([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])):  # noqa: B008 (one iterator shared by the calls)
        return {"recall_at_20": next(values)}

    config = dataclasses.replace(CONFIG, patience=2)
    stopped = train_lightgcn(tiny_graph, config, falling, checkpoint_dir=tmp_path)
    assert (stopped.epochs_run, stopped.best_epoch, stopped.stopped_early) == (3, 1, True)
    again = train_lightgcn(tiny_graph, config, falling, checkpoint_dir=tmp_path, resume=True)
    assert (again.epochs_run, again.best_epoch, again.stopped_early) == (3, 1, True)
    np.testing.assert_array_equal(again.embeddings.item_emb, stopped.embeddings.item_emb)
    longer = train_lightgcn(
        tiny_graph, dataclasses.replace(config, patience=3), falling, checkpoint_dir=tmp_path, resume=True
    )
    assert (longer.epochs_run, longer.best_epoch, longer.stopped_early) == (4, 1, True)
