"""Unit tests of the trainer's hygiene: config checks, early stopping and progress reporting."""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import pytest

from training.losses import LOSSES
from training.progress import RateLog, heartbeat
from training.train import train_lightgcn
from training.train_config import TrainConfig

CONFIG = TrainConfig(epochs=6, embedding_dim=8, batch_size=256, eval_every=1, seed=3)


class Scripted:
    """An evaluation callback returning a fixed sequence of Recall@20 values."""

    def __init__(self, values):
        self.values = list(values)
        self.seen = []

    def __call__(self, embeddings):
        self.seen.append(embeddings)
        return {"recall_at_20": self.values[len(self.seen) - 1], "ndcg_at_20": 0.0}


def test_rejects_unknown_loss_and_negative_patience(tiny_graph):
    assert LOSSES == ("bpr", "softmax")
    with pytest.raises(ValueError, match="loss must be one of"):
        train_lightgcn(tiny_graph, dataclasses.replace(CONFIG, loss="warp"))
    with pytest.raises(ValueError, match="patience"):
        train_lightgcn(tiny_graph, dataclasses.replace(CONFIG, patience=-1))


def test_defaults_report_the_last_epoch(tiny_graph):
    evaluate = Scripted([0.1, 0.3, 0.2, 0.1, 0.1, 0.1])
    result = train_lightgcn(tiny_graph, CONFIG, evaluate)
    assert (result.best_epoch, result.stopped_early, result.epochs_run) == (None, False, 6)
    assert len(result.losses) == 6 and [e for e, _ in result.evaluations] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(result.embeddings.item_emb, evaluate.seen[-1].item_emb)


@pytest.mark.parametrize(
    "values, patience, best, epochs_run, stopped",
    [
        ([0.1, 0.3, 0.2, 0.25, 0.5, 0.6], 2, 2, 4, True),  # two evaluations without a better one
        ([0.1, 0.3, 0.2, 0.4, 0.3, 0.2], 2, 4, 6, False),  # the stale count restarts at epoch 4
        ([0.1, 0.3, 0.3, 0.3, 0.3, 0.3], 3, 2, 5, True),  # equal is not better
        ([0.5, 0.4, 0.3, 0.2, 0.1, 0.0], 9, 1, 6, False),  # never stops, still keeps the best
    ],
)
def test_early_stopping_keeps_the_best_evaluation(tiny_graph, values, patience, best, epochs_run, stopped):
    evaluate = Scripted(values)
    result = train_lightgcn(tiny_graph, dataclasses.replace(CONFIG, patience=patience), evaluate)
    assert (result.best_epoch, result.epochs_run, result.stopped_early) == (best, epochs_run, stopped)
    assert len(result.losses) == epochs_run and len(result.evaluations) == epochs_run
    np.testing.assert_array_equal(result.embeddings.user_emb, evaluate.seen[best - 1].user_emb)
    np.testing.assert_array_equal(result.embeddings.item_emb, evaluate.seen[best - 1].item_emb)
    # The kept state is the model of that epoch: training only to it gives the same embeddings.
    plain = train_lightgcn(tiny_graph, dataclasses.replace(CONFIG, epochs=best))
    np.testing.assert_array_equal(result.embeddings.item_emb, plain.embeddings.item_emb)


def test_early_stopping_needs_a_callback_and_counts_evaluations(tiny_graph):
    result = train_lightgcn(tiny_graph, dataclasses.replace(CONFIG, patience=1))
    assert (result.best_epoch, result.stopped_early, result.epochs_run) == (None, False, 6)
    evaluate = Scripted([0.3, 0.2, 0.1])  # evaluated at epochs 2, 4, 6
    result = train_lightgcn(tiny_graph, dataclasses.replace(CONFIG, patience=1, eval_every=2), evaluate)
    assert (result.best_epoch, result.stopped_early, result.epochs_run) == (2, True, 4)


def test_early_stopping_needs_the_monitored_metric(tiny_graph):
    config = dataclasses.replace(CONFIG, patience=2, monitor="ndcg_at_10")
    with pytest.raises(ValueError, match="ndcg_at_10"):
        train_lightgcn(tiny_graph, config, Scripted([0.1] * 6))


def test_progress_logs_one_labelled_line_per_epoch(tiny_graph, caplog):
    with caplog.at_level(logging.INFO, logger="training.progress"):
        train_lightgcn(
            tiny_graph,
            dataclasses.replace(CONFIG, epochs=4, eval_every=2),
            Scripted([0.25, 0.5]),
            progress=False,
            label="retriever lightgcn",
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "training.progress"]
    assert len(lines) == 4
    head, loss, time = r"retriever lightgcn epoch", r"train bpr loss \d\.\d{4}", r"\d+\.\d s"
    assert re.fullmatch(rf"{head} 1/4: {loss}, {time}", lines[0])
    assert re.fullmatch(rf"{head} 2/4: {loss}, val recall_at_20 0\.2500, {time}", lines[1])
    # An epoch without an evaluation shows the latest one, with the epoch it is from.
    assert re.fullmatch(rf"{head} 3/4: {loss}, val recall_at_20 0\.2500 \(epoch 2\), {time}", lines[2])
    assert re.fullmatch(rf"{head} 4/4: {loss}, val recall_at_20 0\.5000, {time}", lines[3])


def test_progress_bar_shows_loss_and_metric(tiny_graph, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="training.progress"):
        train_lightgcn(tiny_graph, dataclasses.replace(CONFIG, epochs=2), Scripted([0.125, 0.5]), progress=True)
    err = capsys.readouterr().err
    assert "2/2" in err and "loss=" in err and "recall_at_20=0.5000" in err
    assert not [r for r in caplog.records if r.name == "training.progress"]


def test_rate_log_is_silent_for_short_loops_and_says_done_rate_and_eta_for_long_ones(caplog):
    logger = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        quick = RateLog(logger, "quick:", 100)
        for done in (50, 100):
            quick.update(done)
        quick.close()
        assert not caplog.records
        slow = RateLog(logger, "candidates for", 4000, "users", every=0.0, after=0.0)
        slow.update(1000)
        slow.update(4000)
        slow.close()
    first, last = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(r"candidates for 1,000/4,000 users \(25%\), [\d,]+ users/s, ETA \d+ s", first)
    assert re.fullmatch(r"candidates for 4,000 users done in \d+\.\d s \([\d,]+ users/s\)", last)


def test_heartbeat_says_a_long_call_is_still_running(caplog):
    import time

    logger = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"), heartbeat(logger, "joining", every=0.02):
        time.sleep(0.1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all(re.fullmatch(r"joining: still running, \d+ s", line) for line in lines)
    count = len(lines)
    time.sleep(0.05)
    assert len(caplog.records) == count  # stopped with the block
