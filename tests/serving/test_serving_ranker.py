"""Serving the (retriever, ranker) pair: publication, verification, re-ranking, degradation.

Small seeded BST models with random weights stand in for trained rankers: the tests are
about plumbing (files, checksums, the order the service returns), not about quality.
Most tests read ranker features from a plain function over the simulated history; one
module reads them from a real Feast store materialized from a simulated lake.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from features import ranker_columns as columns
from graphrec import contract, lake
from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate
from serving import layout
from serving.app import create_app
from serving.bundle import load_bundle
from serving.publish import publish_embeddings
from serving.recommender import Recommender
from serving.versions import current_version, list_versions
from training import bst_io
from training.bst import build_bst
from training.bst_encoding import encode
from training.bst_fit import predict
from training.bst_vocab import Vocabulary

NOW = pd.Timestamp("2025-01-05 06:00", tz="UTC")  # after the simulated days (2025-01-01..04)
SEQ_LEN = 6


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Recommenders set torch's (process-wide) thread count; later tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# Helpers -----------------------------------------------------------------------------------
def _save_ranker(directory, item_ids, categories, *, seed=0, **kwargs):
    """A seeded random BST over ``item_ids`` saved as ``ranker.pt`` + ``ranker.json``."""
    vocab = Vocabulary.build(item_ids, categories)
    model = build_bst(vocab, seed=seed, seq_len=SEQ_LEN, dim=16, heads=2, hidden=(16,), **kwargs)
    return bst_io.save_ranker(model, vocab, directory, extra={"seq_len": SEQ_LEN, "seed": seed})


def _publish(settings, emb, interactions, popularity, ranker_dir=None, ranker_version=None):
    return publish_embeddings(
        settings,
        emb,
        ds="2025-01-04",
        seen=interactions[["user_id", "item_id"]],
        popularity=popularity,
        ranker_dir=ranker_dir,
        ranker_version=ranker_version,
    )


def _flip_a_byte(path):
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))


def _offline_candidates(emb, interactions, user_id, n):
    """Exact (numpy) top-``n`` unseen items of a known user with their inner products."""
    row = emb.user_ids.tolist().index(user_id)
    scores = emb.item_emb @ emb.user_emb[row]
    seen = set(interactions.loc[interactions["user_id"] == user_id, "item_id"].tolist())
    order = [j for j in np.argsort(-scores, kind="stable") if int(emb.item_ids[j]) not in seen][:n]
    return [int(emb.item_ids[j]) for j in order], scores[order].astype(np.float64)


@pytest.fixture(scope="module")
def catalog(sim_curated) -> pd.DataFrame:
    return lake.read_catalog(sim_curated)


@pytest.fixture(scope="module")
def features_fn(interactions, catalog):
    """A plain ``ranker_features_fn`` over the simulated history, as of :data:`NOW`.

    Same columns as ``features.historical.historical_ranker_features``; every counter is a
    count over the history, and the recent sequence is the user's last ten events.
    """
    category = catalog.set_index(contract.ITEM_ID)[contract.CATEGORY]
    events = interactions.sort_values(contract.EVENT_TS, kind="stable")
    last_week = events[events[contract.EVENT_TS] >= NOW - pd.Timedelta(days=7)]
    item_events = events[contract.ITEM_ID].value_counts()
    item_users = last_week.groupby(contract.ITEM_ID)[contract.USER_ID].nunique()

    def features(user_id: int, item_ids: list[int]) -> pd.DataFrame:
        mine = events[events[contract.USER_ID] == user_id].tail(10)
        n = len(item_ids)
        row = {
            columns.USER_ID: np.full(n, user_id, dtype=np.int64),
            columns.ITEM_ID: np.asarray(item_ids, dtype=np.int64),
            columns.EVENT_TIMESTAMP: pd.Series([NOW] * n, dtype="datetime64[us, UTC]"),
            "user_activity__events_1d": float(len(mine) % 3),
            "user_activity__events_7d": float(len(mine)),
            "user_activity__distinct_items_7d": float(mine[contract.ITEM_ID].nunique()),
            "user_activity__days_since_last_event": 1.0,
            "item_popularity__events_1d": [float(item_events.get(i, 0) % 5) for i in item_ids],
            "item_popularity__events_7d": [float(item_events.get(i, 0)) for i in item_ids],
            "item_popularity__users_7d": [float(item_users.get(i, 0)) for i in item_ids],
            columns.ITEM_CATEGORY: [category.get(i) for i in item_ids],
        }
        frame = pd.DataFrame(row)
        sequence = (
            mine[contract.ITEM_ID].astype(int).tolist(),
            [category.get(i, "unknown") for i in mine[contract.ITEM_ID]],
            [int(t.timestamp()) for t in mine[contract.EVENT_TS]],
        )
        for column, value in zip((columns.RECENT_ITEMS, columns.RECENT_CATEGORIES, columns.RECENT_TS), sequence):
            frame[column] = pd.Series([value] * n, dtype=object)  # one object, as Feast broadcasts it
        return frame

    return features


@pytest.fixture
def ranker_dir(tmp_path, interactions, catalog):
    return _save_ranker(tmp_path / "ranker", interactions["item_id"].unique(), catalog[contract.CATEGORY])


# Bundle and publication ----------------------------------------------------------------------
def test_ranker_file_names_match_the_training_module():
    assert layout.RANKER_FILES == (bst_io.WEIGHTS_FILE, bst_io.META_FILE)


def test_publication_with_a_ranker_writes_and_verifies_its_files(
    settings, make_embeddings, interactions, popularity, ranker_dir
):
    out = _publish(settings, make_embeddings(model_version=4), interactions, popularity, ranker_dir, ranker_version=3)
    assert (out.index_version, out.model_version, out.ranker_version) == ("v0001", 4, 3)
    path = settings.indexes_dir / "v0001"
    assert {p.name for p in path.iterdir()} == {*layout.DATA_FILES, *layout.RANKER_FILES, "manifest.json"}
    for name in layout.RANKER_FILES:
        assert (path / name).read_bytes() == (ranker_dir / name).read_bytes()

    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["ranker_version"] == 3
    names = (*layout.DATA_FILES, *layout.RANKER_FILES)
    assert manifest["files"] == {name: lake.sha256_file(path / name) for name in names}
    assert manifest["ranker_meta"] == {"seq_len": SEQ_LEN, "seed": 0}
    assert list_versions(settings)[0]["ranker_version"] == 3

    loaded = load_bundle(path)
    assert loaded.ranker_version == 3 and loaded.ranker is not None
    model, vocab, meta = loaded.ranker
    expected, expected_vocab, _ = bst_io.load_ranker(ranker_dir)
    assert vocab == expected_vocab and meta["seq_len"] == SEQ_LEN and not model.training
    for name, tensor in expected.state_dict().items():
        assert np.array_equal(model.state_dict()[name].numpy(), tensor.numpy()), name


def test_publication_without_a_ranker_is_retrieval_only(settings, make_embeddings, interactions, popularity):
    out = _publish(settings, make_embeddings(), interactions, popularity)
    assert out.ranker_version is None
    path = settings.indexes_dir / out.index_version
    assert not any((path / name).exists() for name in layout.RANKER_FILES)
    assert json.loads((path / "manifest.json").read_text())["ranker_version"] is None
    loaded = load_bundle(path)
    assert loaded.ranker is None and loaded.ranker_version is None


def _corrupt_weights(path):
    _flip_a_byte(path / "ranker.pt")


def _truncate_meta(path):
    (path / "ranker.json").write_bytes((path / "ranker.json").read_bytes()[:-20])


def _delete_weights(path):
    (path / "ranker.pt").unlink()


def _unlist_meta(path):
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]["ranker.json"]  # half a ranker: weights without their config
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [_corrupt_weights, _truncate_meta, _delete_weights, _unlist_meta])
def test_a_damaged_ranker_makes_the_version_unusable(
    settings, make_embeddings, interactions, popularity, ranker_dir, damage
):
    _publish(settings, make_embeddings(seed=0), interactions, popularity, ranker_dir, ranker_version=1)
    recommender = Recommender(settings)
    assert recommender.recommend(0, 5).index_version == "v0001"

    out = _publish(
        settings, make_embeddings(seed=1, model_version=2), interactions, popularity, ranker_dir, ranker_version=2
    )
    path = settings.indexes_dir / out.index_version
    damage(path)
    assert layout.checksum_problems(path)
    with pytest.raises(layout.BundleError, match="failed verification"):
        load_bundle(path)
    if damage is _corrupt_weights:  # a flipped byte may still unpickle: only the checksum is sure
        weights = path / "ranker.pt"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        with pytest.raises(layout.BundleError, match="ranker could not be loaded"):
            load_bundle(path, verify=False)
    # serving keeps the version it has, exactly as for a bad index file
    kept = recommender.recommend(0, 5)
    assert (kept.index_version, kept.ranker_version) == ("v0001", 1)


def test_publication_refuses_a_ranker_that_cannot_score(
    settings, make_embeddings, interactions, popularity, catalog, tmp_path
):
    _publish(settings, make_embeddings(), interactions, popularity)
    before = (settings.indexes_dir / "CURRENT").read_bytes()
    wrong = _save_ranker(tmp_path / "wrong", interactions["item_id"].unique(), catalog[contract.CATEGORY], n_dense=3)
    with pytest.raises(layout.BundleError, match="cannot score"):
        _publish(settings, make_embeddings(seed=1), interactions, popularity, wrong, ranker_version=9)
    broken = tmp_path / "broken"
    shutil.copytree(wrong, broken)
    (broken / "ranker.pt").write_bytes(b"not a state dict")
    with pytest.raises(layout.BundleError, match="ranker could not be loaded"):
        _publish(settings, make_embeddings(seed=1), interactions, popularity, broken, ranker_version=9)
    (broken / "ranker.json").unlink()
    with pytest.raises(FileNotFoundError):
        _publish(settings, make_embeddings(seed=1), interactions, popularity, broken, ranker_version=9)
    with pytest.raises(ValueError, match="without its files"):
        _publish(settings, make_embeddings(seed=1), interactions, popularity, None, ranker_version=9)
    assert (settings.indexes_dir / "CURRENT").read_bytes() == before and current_version(settings) == "v0001"
    assert [v["index_version"] for v in list_versions(settings)] == ["v0001"]
    assert not [p for p in settings.indexes_dir.iterdir() if p.is_dir() and p.name.startswith(".")]


# Re-ranking ----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize("user_id", [0, 17, 42])
def test_service_order_equals_offline_scoring_of_the_same_candidates(
    settings, make_embeddings, interactions, popularity, ranker_dir, features_fn, user_id, k
):
    emb = make_embeddings()
    _publish(settings, emb, interactions, popularity, ranker_dir, ranker_version=5)
    n = 30
    recommender = Recommender(settings, ranker_features_fn=features_fn, rerank_candidates=n)
    rec = recommender.recommend(user_id, k)
    assert rec.reranked and rec.degraded == [] and not rec.fallback
    assert (rec.index_version, rec.model_version, rec.ranker_version) == ("v0001", 1, 5)

    # offline: exact retrieval, the same features, the saved ranker
    items, scores = _offline_candidates(emb, interactions, user_id, n)
    frame = features_fn(user_id, items).assign(**{columns.RETRIEVAL_SCORE: scores})
    model, vocab, meta = bst_io.load_ranker(ranker_dir)
    probabilities = predict(model, encode(frame, vocab, meta["seq_len"]))
    order = np.argsort(-probabilities, kind="stable")[:k]
    assert [i.item_id for i in rec.items] == [items[j] for j in order]
    np.testing.assert_allclose([i.score for i in rec.items], probabilities[order], rtol=1e-5, atol=1e-6)
    assert all(0.0 <= i.score <= 1.0 for i in rec.items)
    np.testing.assert_allclose(recommender.rerank_scores(user_id, items, scores), probabilities, rtol=1e-5, atol=1e-6)


def test_reranking_changes_the_retrieval_order(
    settings, make_embeddings, interactions, popularity, ranker_dir, features_fn
):
    _publish(settings, make_embeddings(), interactions, popularity, ranker_dir, ranker_version=1)
    plain, ranked = Recommender(settings), Recommender(settings, ranker_features_fn=features_fn, rerank_candidates=40)
    changed = 0
    for user_id in range(10):
        retrieval = [i.item_id for i in plain.recommend(user_id, 10).items]
        reranked = [i.item_id for i in ranked.recommend(user_id, 10).items]
        changed += retrieval != reranked
    assert changed > 0
    assert torch.get_num_threads() == 1  # one scoring thread per request (ranker_threads)


def test_a_failing_features_fn_answers_in_retrieval_order(
    settings, make_embeddings, interactions, popularity, ranker_dir
):
    _publish(settings, make_embeddings(), interactions, popularity, ranker_dir, ranker_version=2)
    calls = []

    def unreachable(user_id, item_ids):
        calls.append(user_id)
        raise ConnectionError("online store down")

    expected = Recommender(settings).recommend(3, 5)
    patient = Recommender(settings, ranker_features_fn=unreachable, recent_items_retry_s=3600)
    answers = [patient.recommend(3, 5) for _ in range(3)]
    for rec in answers:
        assert rec.degraded == ["ranker_features"] and not rec.reranked and not rec.fallback
        assert rec.ranker_version == 2
        assert rec.items == expected.items and rec.excluded == expected.excluded
    assert len(calls) == 1  # the failing source is skipped during its pause
    eager = Recommender(settings, ranker_features_fn=unreachable, recent_items_retry_s=0)
    eager.recommend(3, 5)
    eager.recommend(3, 5)
    assert len(calls) == 3


def test_features_failing_for_one_user_do_not_pause_reranking_for_others(
    settings, make_embeddings, interactions, popularity, ranker_dir, features_fn
):
    """The probe (another known user, popular items) succeeds: the failure was the request's own."""
    _publish(settings, make_embeddings(), interactions, popularity, ranker_dir, ranker_version=2)
    calls = []

    def fails_for_user_8(user_id, item_ids):
        calls.append(user_id)
        if user_id == 8:
            raise ValueError("Value out of range")
        return features_fn(user_id, item_ids)

    recommender = Recommender(settings, ranker_features_fn=fails_for_user_8, recent_items_retry_s=3600)
    bad = recommender.recommend(8, 5)
    assert bad.degraded == ["ranker_features"] and not bad.reranked
    for user_id in (3, 42):
        rec = recommender.recommend(user_id, 5)
        assert rec.reranked and rec.degraded == [], user_id
    assert recommender.recommend(8, 5).degraded == ["ranker_features"]
    reference = calls[1]
    assert reference not in (8, 3, 42)  # the probe asks for another user the bundle knows
    assert calls == [8, reference, 3, 42, 8, reference]  # never paused: each failure probed again

    def broken(user_id, item_ids):  # fails for everyone: the probe fails too and the breaker opens
        calls.append(user_id)
        raise ValueError("feature service schema mismatch")

    calls.clear()
    recommender = Recommender(settings, ranker_features_fn=broken, recent_items_retry_s=3600)
    assert [recommender.recommend(u, 5).degraded for u in (8, 3)] == [["ranker_features"]] * 2
    assert len(calls) == 2  # the request and its probe; the next request skipped the source


@pytest.mark.parametrize(
    "mangle",
    [lambda f: f.drop(columns=[columns.RECENT_ITEMS]), lambda f: f.iloc[::-1], lambda f: f.iloc[:-1]],
    ids=["missing-column", "wrong-order", "missing-row"],
)
def test_malformed_features_degrade_too(
    settings, make_embeddings, interactions, popularity, ranker_dir, features_fn, mangle
):
    _publish(settings, make_embeddings(), interactions, popularity, ranker_dir, ranker_version=2)
    rec = Recommender(settings, ranker_features_fn=lambda u, items: mangle(features_fn(u, items))).recommend(8, 5)
    assert rec.degraded == ["ranker_features"] and not rec.reranked
    assert rec.items == Recommender(settings).recommend(8, 5).items


def test_no_reranking_for_unknown_users_or_retrieval_only_bundles(
    settings, make_embeddings, interactions, popularity, ranker_dir, features_fn
):
    calls = []

    def counted(user_id, item_ids):
        calls.append(user_id)
        return features_fn(user_id, item_ids)

    _publish(settings, make_embeddings(), interactions, popularity)  # retrieval only
    recommender = Recommender(settings, ranker_features_fn=counted)
    rec = recommender.recommend(4, 5)
    assert not rec.reranked and rec.ranker_version is None and rec.degraded == []
    assert rec.items == Recommender(settings).recommend(4, 5).items
    with pytest.raises(RuntimeError, match="no ranker"):
        recommender.rerank_scores(4, [1, 2], [0.1, 0.2])

    _publish(settings, make_embeddings(seed=1), interactions, popularity, ranker_dir, ranker_version=6)
    stranger = recommender.recommend(10_000, 5)
    assert stranger.fallback and not stranger.reranked and stranger.ranker_version == 6
    assert [i.item_id for i in stranger.items] == popularity[:5].tolist()
    assert calls == []
    assert recommender.recommend(4, 5).reranked and calls == [4]


# HTTP ----------------------------------------------------------------------------------------
def test_http_response_carries_both_versions(
    settings, make_embeddings, interactions, popularity, ranker_dir, features_fn
):
    _publish(settings, make_embeddings(model_version=7), interactions, popularity, ranker_dir, ranker_version=4)
    recommender = Recommender(settings, ranker_features_fn=features_fn, rerank_candidates=30)
    with TestClient(create_app(settings, recommender)) as client:
        body = client.get("/recommend/9?k=6").json()
        assert (body["index_version"], body["model_version"], body["ranker_version"]) == ("v0001", 7, 4)
        assert body["reranked"] and body["degraded"] == [] and len(body["items"]) == 6
        health = client.get("/healthz").json()
        assert (health["status"], health["ranker_version"]) == ("ok", 4)
        assert client.get("/version").json()["ranker_version"] == 4
        schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"ranker_version", "reranked"} <= set(schema["Recommendation"]["properties"])
    assert "probability" in schema["ScoredItem"]["properties"]["score"]["description"]


def test_app_wires_the_online_store_and_degrades_without_one(
    settings, make_embeddings, interactions, popularity, ranker_dir
):
    """``ranker_enabled`` builds the Feast hook; with no store under this home it fails per
    request, and the service answers 200 in retrieval order."""
    from features.online import OnlineFeatures

    _publish(settings, make_embeddings(), interactions, popularity, ranker_dir, ranker_version=4)
    assert settings.ranker.enabled
    with TestClient(create_app(settings, online_features=False)) as client:
        rec = client.app.state.recommender
        hook = rec._ranker_features_fn
        assert isinstance(hook, OnlineFeatures) and hook._settings is settings
        response = client.get("/recommend/2?k=4")
    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] == ["ranker_features"] and not body["reranked"] and body["ranker_version"] == 4
    with TestClient(create_app(settings, online_features=False, ranker_features=False)) as client:
        body = client.get("/recommend/2?k=4").json()
    assert body["degraded"] == [] and not body["reranked"]


# A real Feast store ------------------------------------------------------------------------
FEAST_SIM = SimulationConfig(n_users=40, n_items=30, days=2, events_per_day=300, drift_day=None)


@pytest.fixture(scope="module")
def feast_settings(tmp_path_factory) -> Settings:
    """A simulated lake materialized day by day into a real Feast store (SQLite online)."""
    from features.materialize import materialize

    settings = Settings(home=tmp_path_factory.mktemp("serving-ranker-feast"))
    for part in simulate(FEAST_SIM, settings.landing_dir):
        shutil.copytree(part, settings.curated_dir / part.name)
    for index in range(1, FEAST_SIM.days + 1):
        materialize(settings, FEAST_SIM.day(index).isoformat())
    return settings


def test_online_store_features_rerank_like_offline_point_in_time_features(feast_settings, tmp_path):
    from features.historical import historical_ranker_features
    from features.online import OnlineFeatures
    from features.tables import snapshot_time
    from training.embeddings import ModelEmbeddings

    settings = feast_settings
    curated_dir = settings.curated_dir
    events = lake.read_curated(curated_dir, lake.list_partitions(curated_dir))
    catalog = lake.read_catalog(curated_dir)
    rng = np.random.default_rng(3)
    users = np.arange(FEAST_SIM.n_users - 5, dtype=np.int64)  # the last five users are unknown to the model
    items = np.sort(catalog[contract.ITEM_ID].to_numpy(np.int64))
    emb = ModelEmbeddings(
        user_ids=users,
        item_ids=items,
        user_emb=rng.normal(size=(len(users), 8)).astype(np.float32),
        item_emb=rng.normal(size=(len(items), 8)).astype(np.float32),
        meta={"model_version": 1},
    )
    ranker_dir = _save_ranker(tmp_path / "ranker", items, catalog[contract.CATEGORY], seed=1)
    popularity = events[contract.ITEM_ID].value_counts().index.to_numpy(np.int64)
    publish_embeddings(
        settings,
        emb,
        ds=FEAST_SIM.day(FEAST_SIM.days),
        seen=events[[contract.USER_ID, contract.ITEM_ID]],
        popularity=popularity,
        ranker_dir=ranker_dir,
        ranker_version=1,
    )
    now = snapshot_time(FEAST_SIM.day(FEAST_SIM.days)) + pd.Timedelta(hours=2)
    online = functools.partial(OnlineFeatures(settings), now=now)
    recommender = Recommender(settings, ranker_features_fn=online, rerank_candidates=15)
    model, vocab, meta = bst_io.load_ranker(ranker_dir)
    user_id = int(events[contract.USER_ID].value_counts().index[0])  # the heaviest known user
    assert user_id in set(users.tolist())

    rec = recommender.recommend(user_id, 8)
    assert rec.reranked and rec.degraded == [] and rec.ranker_version == 1

    # offline: point-in-time join of the same candidates at the same time
    candidates, scores = _offline_candidates(emb, events, user_id, 15)
    rows = pd.DataFrame({contract.USER_ID: user_id, contract.ITEM_ID: candidates, "event_timestamp": now})
    offline = historical_ranker_features(settings, rows).assign(**{columns.RETRIEVAL_SCORE: scores})
    assert offline[contract.ITEM_ID].tolist() == candidates
    assert offline["user_recent_items__recent_items"].map(len).gt(0).all()  # the history reaches the ranker
    probabilities = predict(model, encode(offline, vocab, meta["seq_len"]))
    order = np.argsort(-probabilities, kind="stable")[:8]
    assert [i.item_id for i in rec.items] == [candidates[j] for j in order]
    np.testing.assert_allclose([i.score for i in rec.items], probabilities[order], rtol=1e-5, atol=1e-6)


# Through the MLflow registry -----------------------------------------------------------------
def test_publish_model_fetches_the_ranker_by_alias(
    settings, make_embeddings, sim_curated, interactions, catalog, tmp_path
):
    """``publish_model`` resolves the ranker alias, downloads its files and publishes the pair."""
    import mlflow

    from serving.publish import publish_model
    from training import pyfunc_ranker, registry

    shutil.copytree(sim_curated, settings.curated_dir)  # publish_model reads the seen pairs from the lake
    emb = make_embeddings()
    emb = dataclasses.replace(emb, meta={k: v for k, v in emb.meta.items() if k != "model_version"})
    model_version = registry.register_model(settings, emb)
    ranker_dir = _save_ranker(tmp_path / "ranker", emb.item_ids, catalog[contract.CATEGORY], seed=2)
    registry.configure(settings)
    with mlflow.start_run() as run:
        ranker_version = pyfunc_ranker.log_and_register(settings, ranker_dir, run.info.run_id)
    registry.set_alias(settings, "champion", ranker_version, model=settings.mlflow.ranker_model_name)

    out = publish_model(settings, model_version, "2025-01-04", ranker_version="champion")
    assert (out.model_version, out.ranker_version) == (model_version, ranker_version)
    path = settings.indexes_dir / out.index_version
    for name in layout.RANKER_FILES:
        assert (path / name).read_bytes() == (ranker_dir / name).read_bytes()
    rec = Recommender(settings).recommend(0, 3)
    assert (rec.model_version, rec.ranker_version) == (model_version, ranker_version)

    # The canary loads registered rankers the same way, by version or alias.
    from training.ranker import load_ranker

    for ref in (ranker_version, "champion"):
        model, vocab, meta, files = load_ranker(settings, ref)
        assert isinstance(model, torch.nn.Module) and len(vocab.item_ids) == len(emb.item_ids)
        assert {p.name for p in files.iterdir()} >= set(layout.RANKER_FILES) and isinstance(meta, dict)
