"""The ranker's data and metrics: candidate lists, labels from the next interactions, HR/NDCG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.store import EVENT_TIMESTAMP
from graphrec import contract
from training.embeddings import ModelEmbeddings
from training.metrics import build_ranking_task
from training.ranker import LABEL, Candidates, candidate_rows, list_metrics, rerank, retrieve


def _events(rows):
    return pd.DataFrame(
        {
            contract.USER_ID: [r[0] for r in rows],
            contract.ITEM_ID: [r[1] for r in rows],
            contract.EVENT_TS: pd.to_datetime([r[2] for r in rows], utc=True),
        }
    )


@pytest.fixture
def model() -> ModelEmbeddings:
    # Item j scores j for user 1 and -j for user 2 (1-d embeddings).
    items = np.arange(6, dtype=np.int64) + 100
    return ModelEmbeddings(
        user_ids=np.array([1, 2], dtype=np.int64),
        item_ids=items,
        user_emb=np.array([[1.0], [-1.0]], dtype=np.float32),
        item_emb=np.arange(6, dtype=np.float32)[:, None],
    )


def test_retrieve_masks_seen_items_and_leaves_unknown_users_empty(model):
    seen = _events([(1, 105, "2025-01-01"), (1, 103, "2025-01-01"), (2, 100, "2025-01-01")])
    found = retrieve(model, np.array([1, 2, 3]), seen, 3)
    assert found.items.tolist() == [[104, 102, 101], [101, 102, 103], [-1, -1, -1]]
    assert found.scores[0].tolist() == [4.0, 2.0, 1.0]
    assert np.isinf(found.scores[2]).all()


def test_candidate_rows_are_labelled_by_the_next_interactions(model):
    history = _events([(1, 105, "2025-01-01T00:00"), (2, 100, "2025-01-01T00:00")])
    found = retrieve(model, np.array([1, 2]), history, 3)
    after = _events([(1, 104, "2025-01-05T10:00"), (1, 100, "2025-01-04T08:00"), (2, 102, "2025-01-06T00:00")])
    at = pd.Timestamp("2025-01-03", tz="UTC")
    rows = candidate_rows(found, build_ranking_task(history, after), at)
    assert (rows[EVENT_TIMESTAMP] == at).all()
    assert rows.loc[rows[LABEL] == 1, contract.ITEM_ID].tolist() == [104, 102]  # 100 is not a candidate of user 1
    assert rows[contract.ITEM_ID].tolist() == [104, 103, 102, 101, 102, 103]
    assert rows["rank"].tolist() == [0, 1, 2, 0, 1, 2]
    assert rows["retrieval_score"].tolist() == [4.0, 3.0, 2.0, -1.0, -2.0, -3.0]


def test_list_metrics_match_hand_computed_values():
    history = _events([(1, 1, "2025-01-01"), (2, 1, "2025-01-01"), (3, 1, "2025-01-01")])
    holdout = _events([(1, 7, "2025-01-02"), (1, 8, "2025-01-02"), (2, 9, "2025-01-02"), (3, 5, "2025-01-02")])
    task = build_ranking_task(history, holdout)
    lists = np.array([[7, 3, 8], [3, 4, 9], [-1, -1, -1]])
    metrics = list_metrics(task, np.array([1, 2, 3]), lists, 3)
    d = 1 / np.log2(np.arange(2, 5))
    user1 = (d[0] + d[2]) / (d[0] + d[1])
    user2 = d[2] / d[0]
    assert metrics.hr == pytest.approx(2 / 3)
    assert metrics.ndcg == pytest.approx((user1 + user2 + 0) / 3)
    # Cut-off 1: only user 1's first item counts.
    assert list_metrics(task, np.array([1, 2, 3]), lists, 1).ndcg == pytest.approx(1 / 3)


def test_rerank_sorts_by_probability_and_keeps_retrieval_order_on_ties():
    found = Candidates(np.array([1, 2]), np.array([[10, 11, 12], [20, 21, -1]]), np.zeros((2, 3), np.float32))
    ranked = rerank(found, np.array([0.1, 0.9, 0.1, 0.5, 0.5]))
    assert ranked.tolist() == [[11, 10, 12], [20, 21, -1]]


# The replayed cuts' proxies ------------------------------------------------------------------
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
def test_no_proxy_sees_the_label_window_of_a_row_it_scores(replay_world, monkeypatch, reuse_days, modes):
    import training.ranker as ranking

    settings, train, retriever, holdout_from = replay_world
    settings = settings.model_copy(
        update={"ranker_cuts": 3, "ranker_proxy_reuse_days": reuse_days, "ranker_candidates": 20}
    )
    seen_until = []  # the newest event each real fit was given, in call order
    real_fit = ranking.fit_model

    def recording_fit(kind, params, graph, history, *args, **kwargs):
        seen_until.append(history[contract.EVENT_TS].max())
        return real_fit(kind, params, graph, history, *args, **kwargs)

    monkeypatch.setattr(ranking, "fit_model", recording_fit)
    rows, info = ranking.replay_cuts(settings, train, retriever, holdout_from)

    assert [p["mode"] for p in info["proxies"]] == modes
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


def test_negative_sampling_keeps_every_positive_and_at_most_n_negatives_per_list():
    from training.ranker import sample_negatives

    rng = np.random.default_rng(0)
    at = [pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-01-02", tz="UTC")]
    rows = pd.DataFrame(
        {
            contract.USER_ID: np.repeat([1, 1, 2], 50),
            EVENT_TIMESTAMP: np.repeat([at[0], at[1], at[0]], 50),
            LABEL: (rng.random(150) < 0.1).astype(np.int64),
        }
    )
    kept = sample_negatives(rows, 5, seed=3)
    picked = rows.iloc[kept]
    assert (rows[LABEL] == 1).sum() == (picked[LABEL] == 1).sum()
    negatives = picked[picked[LABEL] == 0].groupby([contract.USER_ID, EVENT_TIMESTAMP]).size()
    assert len(negatives) == 3 and (negatives == 5).all()
    assert (sample_negatives(rows, 5, seed=3) == kept).all()  # seeded
    assert len(sample_negatives(rows, 0, seed=3)) == 150


def test_a_registered_retriever_older_than_the_cut_stands_in_for_the_first_proxy(replay_world, monkeypatch):
    import training.ranker as ranking
    from training.models import FittedRetriever

    settings, train, retriever, holdout_from = replay_world
    settings = settings.model_copy(update={"ranker_cuts": 3, "ranker_proxy_reuse_days": 7, "ranker_candidates": 20})
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
    from training.ranker import proxy_params

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
