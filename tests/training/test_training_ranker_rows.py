"""The ranker's training rows (training.ranker_rows): replayed cuts whose proxies never see the label window."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest

from features.ranker_columns import EVENT_TIMESTAMP
from graphrec import contract
from training.embeddings import ModelEmbeddings
from training.ranker_candidates import LABEL


@pytest.fixture(scope="module")
def replay_world(tmp_path_factory):
    """A small simulated world, its window split, and an MF retriever's embeddings as the
    registered one (the proxies copy its kind and params)."""
    from training_sim import SMALL, curated_world

    from training.data import build_graph, holdout_start, load_window, temporal_split
    from training.models import fit_model

    settings = curated_world(tmp_path_factory.mktemp("replay"), SMALL)
    window = load_window(settings, SMALL.day(SMALL.days), SMALL.days)
    train, _ = temporal_split(window.interactions, 1, end=window.end)
    params = {
        "epochs": 2,
        "embedding_dim": 8,
        "num_layers": 0,
        "batch_size": 1024,
        "learning_rate": 0.01,
        "seed": 0,
        "loss": "bpr",
        "patience": 0,
    }
    fitted = fit_model("mf", params, build_graph(train), train)
    retriever = ModelEmbeddings(
        fitted.embeddings.user_ids,
        fitted.embeddings.item_ids,
        fitted.embeddings.user_emb,
        fitted.embeddings.item_emb,
        meta={"model": "mf", "params": params},
    )
    return settings, train, retriever, holdout_start(window.end, 1)


@pytest.mark.parametrize("reuse_days, modes", [(7, ["fit", "reused", "reused"]), (0, ["fit", "warm", "warm"])])
def test_no_proxy_sees_the_label_window_of_a_row_it_scores(replay_world, monkeypatch, caplog, reuse_days, modes):
    import training.ranker_rows as ranking

    settings, train, retriever, holdout_from = replay_world
    settings = settings.updated({"ranker.cuts": 3, "ranker.proxy_reuse_days": reuse_days, "ranker.candidates": 20})
    seen_until = []  # the newest event each real fit was given, in call order
    real_fit = ranking.fit_model

    def recording_fit(kind, params, graph, history, *args, **kwargs):
        seen_until.append(history[contract.EVENT_TS].max())
        return real_fit(kind, params, graph, history, *args, **kwargs)

    monkeypatch.setattr(ranking, "fit_model", recording_fit)
    with caplog.at_level(logging.INFO):
        rows, info = ranking.replay_cuts(settings, train, retriever, holdout_from)

    assert [p["mode"] for p in info["proxies"]] == modes
    # Each cut is one line saying how far the replay is; each proxy's epochs say they are a proxy's.
    cut_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ranker rows: cut ")]
    assert [line.split(" (")[0] for line in cut_lines] == [
        "ranker rows: cut 1/3",
        "ranker rows: cut 2/3",
        "ranker rows: cut 3/3",
    ]
    assert all(re.search(r"\d+\.\d s so far, ETA \d+ s$", line) for line in cut_lines)
    epochs = [r.getMessage() for r in caplog.records if r.name == "training.progress"]
    assert epochs and all(line.startswith("ranker proxy mf (events before ") for line in epochs)
    assert len(seen_until) == info["proxy_fits"] == modes.count("fit") + modes.count("warm")
    fits = iter(seen_until)
    newest_seen = None
    for proxy in info["proxies"]:
        cut = pd.Timestamp(proxy["cut"])
        if proxy["mode"] != "reused":
            newest_seen = next(fits)
        # The proxy scoring this cut's rows never saw an event at or after the cut: the
        # rows' label window [cut, cut + 1 day) is unseen, and so is everything later.
        assert newest_seen < cut
        assert pd.Timestamp(proxy["data_until"]) <= cut
    assert sorted(rows[EVENT_TIMESTAMP].unique()) == [pd.Timestamp(p["cut"]) for p in info["proxies"]]
    # Labels are exactly the users' items taken inside each cut's label window.
    for cut, part in rows.groupby(EVENT_TIMESTAMP):
        window = train[(train[contract.EVENT_TS] >= cut) & (train[contract.EVENT_TS] < cut + pd.Timedelta(days=1))]
        taken = set(zip(window[contract.USER_ID], window[contract.ITEM_ID]))
        expected = [int((u, i) in taken) for u, i in zip(part[contract.USER_ID], part[contract.ITEM_ID])]
        assert part[LABEL].tolist() == expected


def test_a_registered_retriever_older_than_the_cut_stands_in_for_the_first_proxy(replay_world, monkeypatch):
    import training.ranker_rows as ranking
    from training.models import FittedRetriever

    settings, train, retriever, holdout_from = replay_world
    settings = settings.updated({"ranker.cuts": 3, "ranker.proxy_reuse_days": 7, "ranker.candidates": 20})
    first_cut = holdout_from - pd.Timedelta(days=3)
    until = first_cut - pd.Timedelta(days=1)  # its data ends a day before the first cut
    older = ranking.Proxy(FittedRetriever(retriever, 0.0), until, "registered", version=4)
    calls = []
    monkeypatch.setattr(ranking, "fit_model", lambda *a, **k: calls.append(a))
    rows, info = ranking.replay_cuts(settings, train, retriever, holdout_from, start_from=older)
    assert not calls  # no fit at all
    assert [(p["mode"], p.get("version")) for p in info["proxies"]] == [("reused", 4)] * 3
    assert all(pd.Timestamp(p["data_until"]) <= pd.Timestamp(p["cut"]) for p in info["proxies"])


def test_proxies_fit_with_the_full_retrain_params_of_a_warm_started_retriever():
    from training.ranker_rows import proxy_params

    full = {"epochs": 30, "learning_rate": 0.01, "eval_every": 2, "patience": 3, "embedding_dim": 8}
    warm = {**full, "learning_rate": 0.001, "eval_every": 1, "patience": 1}
    ids = np.arange(2, dtype=np.int64)
    emb = np.zeros((2, 8), dtype=np.float32)
    meta = {
        "model": "lightgcn",
        "params": warm,
        "full_retrain_params": full,
        "validation": {"full_refit_epochs": 12, "refit_epochs": 2},
    }
    kind, params = proxy_params(ModelEmbeddings(ids, ids, emb, emb, meta=meta))
    assert kind == "lightgcn"
    # From scratch, for the epochs of the line's last full retrain, at the full learning rate, no early stopping.
    assert params == {**full, "epochs": 12, "patience": 0}
    # Versions registered before full_retrain_params existed: their own params.
    del meta["full_retrain_params"]
    assert proxy_params(ModelEmbeddings(ids, ids, emb, emb, meta=meta))[1]["learning_rate"] == 0.001
