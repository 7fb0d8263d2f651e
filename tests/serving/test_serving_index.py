"""FAISS index idioms: exact search equals numpy top-k, persistence, input checks, ANN indexes and their publication."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from serving import layout
from serving.bundle import load_bundle
from serving.index import (
    apply_search_params,
    build_index,
    choose_factory,
    index_description,
    load_index,
    save_index,
    search,
)
from serving.index_check import exact_topk, recall_against_exact
from serving.publish import publish_embeddings


def _numpy_topk(xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = xq.astype(np.float64) @ xb.astype(np.float64).T
    order = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize(
    ("n_items", "dim", "n_queries", "k"),
    [(50, 8, 5, 1), (50, 8, 5, 10), (500, 32, 20, 50), (500, 32, 3, 500), (2000, 64, 10, 100)],
)
def test_faiss_topk_equals_exact_numpy_topk(n_items, dim, n_queries, k):
    rng = np.random.default_rng(n_items + k)
    xb = rng.normal(size=(n_items, dim)).astype(np.float32)
    xq = rng.normal(size=(n_queries, dim)).astype(np.float32)
    index = build_index(xb)
    scores, positions = search(index, xq, k)
    ref_scores, ref_positions = _numpy_topk(xb, xq, k)
    assert scores.shape == positions.shape == (n_queries, k)
    np.testing.assert_array_equal(positions, ref_positions)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    # the helper used by the publication check agrees too
    np.testing.assert_array_equal(exact_topk(xb, xq, k)[1], ref_positions)


def test_k_is_clipped_to_index_size_and_1d_query_is_one_row():
    xb = np.eye(4, dtype=np.float32)
    index = build_index(xb)
    scores, positions = search(index, np.array([0, 0, 1, 0], dtype=np.float64), 10)
    assert positions.shape == (1, 4)
    assert positions[0, 0] == 2 and scores[0, 0] == pytest.approx(1.0)
    assert sorted(positions[0].tolist()) == [0, 1, 2, 3]


def test_save_and_load_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    xb = rng.normal(size=(300, 16)).astype(np.float32)
    xq = rng.normal(size=(7, 16)).astype(np.float32)
    index = build_index(xb)
    path = save_index(index, tmp_path / "index.faiss")
    loaded = load_index(path)
    assert loaded.ntotal == 300 and loaded.d == 16
    for a, b in zip(search(index, xq, 25), search(loaded, xq, 25)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "bad",
    [np.full((3, 4), np.nan, np.float32), np.array([[1.0, np.inf]]), np.zeros((0, 4)), np.zeros((2, 3, 4))],
    ids=["nan", "inf", "empty", "3d"],
)
def test_build_index_rejects_bad_embeddings(bad):
    with pytest.raises(ValueError):
        build_index(bad)


def test_search_rejects_wrong_dimension_and_k():
    index = build_index(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError):
        search(index, np.ones((1, 5), np.float32), 2)
    with pytest.raises(ValueError):
        search(index, np.ones((1, 4), np.float32), 0)


# Approximate indexes, search parameters and their publication ------------------------------
def _clustered(n: int, dim: int = 16, clusters: int = 16, seed: int = 0) -> np.ndarray:
    """Points around a few well-separated centres: the structure IVF and HNSW exploit."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 3
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize(
    ("n_items", "factory", "expected"),
    [
        (10, "auto", "Flat"),
        (1000, "auto", "Flat"),
        (1001, "auto", "HNSW32"),
        (10**6, "auto", "HNSW32"),
        (10, "IVF16,Flat", "IVF16,Flat"),
        (10**6, "Flat", "Flat"),
    ],
)
def test_choose_factory_by_catalog_size(n_items, factory, expected):
    assert choose_factory(n_items, factory, ann_factory="HNSW32", exact_max_items=1000) == expected


def test_choose_factory_defaults():
    assert choose_factory(50_000) == "Flat" and choose_factory(50_001) == "IVF256,Flat"
    assert choose_factory(50_001, ann_factory="IVF1024,Flat") == "IVF1024,Flat"


@pytest.mark.parametrize(
    ("factory", "params", "index_type", "floor"),
    [("HNSW32", "efSearch=256", "IndexHNSWFlat", 0.95), ("IVF16,Flat", "nprobe=8", "IndexIVFFlat", 0.95)],
)
def test_approximate_indexes_reach_a_recall_floor_on_clustered_data(factory, params, index_type, floor):
    xb, xq = _clustered(4000), _clustered(200, seed=1)
    index = build_index(xb, factory, params)
    assert index_description(index) == index_type and index.ntotal == len(xb)
    recall = recall_against_exact(index, xb, xq, 20)
    assert floor <= recall <= 1.0
    # the exact index is the reference: recall 1
    assert recall_against_exact(build_index(xb, "Flat"), xb, xq, 20) == pytest.approx(1.0)


def test_ivf_needs_enough_points_to_train():
    with pytest.raises(ValueError, match="train"):
        build_index(_clustered(10), "IVF64,Flat")
    with pytest.raises(ValueError, match="FAISS cannot build"):
        build_index(_clustered(100), "NotAnIndex42")


def test_apply_search_params_sets_known_names_and_skips_unknown_ones():
    xb = _clustered(1000)
    hnsw = build_index(xb, "HNSW32")
    assert apply_search_params(hnsw, "efSearch=77,nprobe=3,bogus=1") == {"efSearch": 77.0}
    assert faiss.downcast_index(hnsw).hnsw.efSearch == 77
    ivf = build_index(xb, "IVF16,Flat")
    assert apply_search_params(ivf, " nprobe = 5 , efSearch=9") == {"nprobe": 5.0}
    assert faiss.extract_index_ivf(ivf).nprobe == 5
    flat = build_index(xb)
    assert apply_search_params(flat, "efSearch=77,nprobe=3") == {}
    assert apply_search_params(flat, "") == {} and apply_search_params(flat, "  ") == {}
    # build_index applies them too
    assert faiss.extract_index_ivf(build_index(xb, "IVF16,Flat", "nprobe=7")).nprobe == 7


@pytest.mark.parametrize("bad", ["efSearch", "efSearch=", "=3", "efSearch=abc", "nprobe=4,", "nprobe:4"])
def test_apply_search_params_rejects_malformed_strings(bad):
    with pytest.raises(ValueError, match="search parameters"):
        apply_search_params(build_index(_clustered(100), "HNSW32"), bad)


def _publish(settings, emb, interactions, popularity):
    return publish_embeddings(
        settings, emb, ds="2025-01-04", seen=interactions[["user_id", "item_id"]], popularity=popularity
    )


@pytest.mark.parametrize(
    ("factory", "index_type"), [("auto", "IndexFlatIP"), ("Flat", "IndexFlatIP"), ("HNSW32", "IndexHNSWFlat")]
)
def test_manifest_records_the_index_and_its_build_time_recall(
    settings, make_embeddings, interactions, popularity, factory, index_type
):
    settings = settings.updated({"index.factory": factory, "index.recall_k": 10})
    emb = make_embeddings()
    out = _publish(settings, emb, interactions, popularity)
    manifest = layout.read_manifest(settings.indexes_dir / out.index_version)
    assert manifest["index_factory"] == ("Flat" if factory == "auto" else factory)
    assert manifest["index_type"] == index_type
    assert manifest["index_search_params"] == settings.index.search_params
    check = manifest["index_check"]
    assert check["k"] == 10 and check["floor"] == settings.index.recall_floor
    assert check["n_queries"] == len(emb.user_ids)
    assert settings.index.recall_floor <= check["recall_at_k"] <= 1.0
    # the check is what recall_against_exact says for the published index and the same queries
    loaded = load_bundle(settings.indexes_dir / out.index_version)
    assert recall_against_exact(loaded.index, emb.item_emb, emb.user_emb, 10) == pytest.approx(check["recall_at_k"])
    # k is clipped to the catalog
    big_k = settings.updated({"index.recall_k": 10_000})
    out = _publish(big_k, emb, interactions, popularity)
    assert layout.read_manifest(big_k.indexes_dir / out.index_version)["index_check"]["k"] == len(emb.item_ids)


def test_a_build_below_the_recall_floor_is_not_published(settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(), interactions, popularity)
    pointer = (settings.indexes_dir / "CURRENT").read_bytes()
    bad = settings.updated(
        {"index.factory": "IVF64,Flat", "index.search_params": "nprobe=1", "index.recall_floor": 0.99}
    )
    emb = make_embeddings(seed=1, model_version=2)
    # it really is a bad index: built the same way, its recall is far below the floor
    index = build_index(emb.item_emb, "IVF64,Flat", "nprobe=1")
    k = min(bad.index.recall_k, len(emb.item_ids))
    assert recall_against_exact(index, emb.item_emb, emb.user_emb, k) < 0.99
    with pytest.raises(layout.BundleError, match="below the floor"):
        _publish(bad, emb, interactions, popularity)
    assert (settings.indexes_dir / "CURRENT").read_bytes() == pointer
    assert [p.name for p in layout.version_dirs(settings.indexes_dir)] == ["v0001"]
    assert not [p for p in settings.indexes_dir.iterdir() if p.name.startswith(layout.TMP_PREFIX)]
    # the same factory with enough probes is published
    good = bad.updated({"index.search_params": "nprobe=64"})
    assert _publish(good, emb, interactions, popularity).index_version == "v0002"


def test_a_loaded_bundle_gets_its_search_params_from_the_manifest(settings, make_embeddings, interactions, popularity):
    hnsw = settings.updated({"index.factory": "HNSW32", "index.search_params": "efSearch=123"})
    path = settings.indexes_dir / _publish(hnsw, make_embeddings(), interactions, popularity).index_version
    assert faiss.downcast_index(load_bundle(path).index).hnsw.efSearch == 123
    # the manifest, not the index file, decides (it is not among its own checksums)
    manifest = layout.read_manifest(path)
    manifest["index_search_params"] = "efSearch=45"
    (path / layout.MANIFEST_FILE).write_text(json.dumps(manifest))
    assert faiss.downcast_index(load_bundle(path).index).hnsw.efSearch == 45

    ivf = settings.updated({"index.factory": "IVF8,Flat", "index.search_params": "nprobe=8"})
    path = settings.indexes_dir / _publish(ivf, make_embeddings(seed=1), interactions, popularity).index_version
    assert faiss.extract_index_ivf(load_bundle(path).index).nprobe == 8  # every list: exact
