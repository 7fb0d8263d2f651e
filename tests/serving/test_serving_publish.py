"""Versioned, atomic publication: completeness, checksums, failures, pruning as it publishes, concurrency."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pandas as pd
import pytest

from graphrec import lake
from serving import layout
from serving.bundle import load_bundle
from serving.publish import PublishResult, publish_embeddings, read_history
from serving.versions import current_version, list_versions, verify_version


def _publish(settings, emb, interactions, popularity, ds="2025-01-04"):
    return publish_embeddings(settings, emb, ds=ds, seen=interactions[["user_id", "item_id"]], popularity=popularity)


def _visible(settings) -> list[str]:
    return sorted(p.name for p in settings.indexes_dir.iterdir() if not p.name.startswith("."))


def _hidden_dirs(settings) -> list[str]:
    return sorted(p.name for p in settings.indexes_dir.iterdir() if p.is_dir() and p.name.startswith("."))


def test_publication_writes_a_complete_verified_version(settings, make_embeddings, interactions, popularity):
    assert current_version(settings) is None
    emb = make_embeddings(model_version=7)
    out = _publish(settings, emb, interactions, popularity)

    assert out.index_version == "v0001" and out.model_version == 7
    path = settings.indexes_dir / "v0001"
    assert out.path == path and out.manifest_path == path / "manifest.json" and out.activated
    assert out.to_xcom()["path"] == str(path)  # plain data for XCom, and back
    assert PublishResult.from_xcom(json.loads(json.dumps(out.to_xcom()))) == out
    assert current_version(settings) == "v0001"
    assert (settings.indexes_dir / "CURRENT").read_text().strip() == "v0001"
    assert _visible(settings) == ["CURRENT", "v0001"]
    assert _hidden_dirs(settings) == []  # the temporary build directory is gone
    assert {p.name for p in path.iterdir()} == set(layout.DATA_FILES) | {"manifest.json"}
    assert verify_version(path)

    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["index_version"] == "v0001"
    assert manifest["model_version"] == 7 and manifest["run_id"] == "run-7"
    assert manifest["data_window"] == ["2025-01-01", "2025-01-04"] and manifest["ds"] == "2025-01-04"
    assert manifest["metrics"] == {"recall_at_20": pytest.approx(0.7)}
    assert (manifest["dim"], manifest["n_items"], manifest["n_users"]) == (16, len(emb.item_ids), len(emb.user_ids))
    assert manifest["index_check"]["recall_at_k"] == pytest.approx(1.0)
    assert manifest["files"] == {name: lake.sha256_file(path / name) for name in layout.DATA_FILES}
    assert manifest["created_at"]

    loaded = load_bundle(path)
    np.testing.assert_array_equal(loaded.item_ids, emb.item_ids)
    np.testing.assert_array_equal(loaded.user_emb, emb.user_emb)
    np.testing.assert_array_equal(loaded.popular, popularity)
    assert loaded.seen.n_pairs == len(interactions[["user_id", "item_id"]].drop_duplicates())


@pytest.mark.parametrize("name", layout.DATA_FILES)
def test_a_tampered_file_fails_verification(settings, make_embeddings, interactions, popularity, name):
    path = settings.indexes_dir / _publish(settings, make_embeddings(), interactions, popularity).index_version
    with open(path / name, "r+b") as fh:  # flip one byte in the middle
        fh.seek((path / name).stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert not verify_version(path)
    assert any(name in problem for problem in layout.checksum_problems(path))
    with pytest.raises(layout.BundleError, match="failed verification"):
        load_bundle(path)


def test_a_missing_file_or_manifest_entry_fails_verification(settings, make_embeddings, interactions, popularity):
    path = settings.indexes_dir / _publish(settings, make_embeddings(), interactions, popularity).index_version
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]["seen.npz"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert not verify_version(path)
    (path / "manifest.json").unlink()
    assert not verify_version(path)


def _nan_items(emb):
    item_emb = emb.item_emb.copy()
    item_emb[3, 0] = np.nan
    return dataclasses.replace(emb, item_emb=item_emb)


def _duplicate_items(emb):
    item_ids = emb.item_ids.copy()
    item_ids[1] = item_ids[0]
    return dataclasses.replace(emb, item_ids=item_ids)


@pytest.mark.parametrize("corrupt", [_nan_items, _duplicate_items], ids=["nan-item-embedding", "duplicate-item-ids"])
def test_a_failed_publication_leaves_everything_untouched(settings, make_embeddings, interactions, popularity, corrupt):
    _publish(settings, make_embeddings(), interactions, popularity)
    before_pointer = (settings.indexes_dir / "CURRENT").read_bytes()
    before_files = {p.name: p.read_bytes() for p in (settings.indexes_dir / "v0001").iterdir()}

    with pytest.raises(ValueError):
        _publish(settings, corrupt(make_embeddings(seed=1, model_version=2)), interactions, popularity)

    assert (settings.indexes_dir / "CURRENT").read_bytes() == before_pointer
    assert _visible(settings) == ["CURRENT", "v0001"]
    assert _hidden_dirs(settings) == []  # no half-written version left behind
    assert {p.name: p.read_bytes() for p in (settings.indexes_dir / "v0001").iterdir()} == before_files
    # and the next good publication still gets the next number
    assert _publish(settings, make_embeddings(seed=2), interactions, popularity).index_version == "v0002"


def test_bad_seen_frame_fails_before_anything_is_visible(settings, make_embeddings, popularity):
    with pytest.raises(ValueError):
        publish_embeddings(
            settings, make_embeddings(), ds="2025-01-04", seen=pd.DataFrame({"user": [1]}), popularity=popularity
        )
    assert current_version(settings) is None
    assert list_versions(settings) == [] and _hidden_dirs(settings) == []


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_old_versions_are_pruned_and_numbers_keep_growing(settings, make_embeddings, interactions, popularity, keep):
    settings = settings.updated({"index.keep_versions": keep})
    published = [
        _publish(settings, make_embeddings(seed=i, model_version=i + 1), interactions, popularity).index_version
        for i in range(4)
    ]
    assert published == ["v0001", "v0002", "v0003", "v0004"]
    assert [v["index_version"] for v in list_versions(settings)] == published[-keep:]
    assert current_version(settings) == "v0004"
    assert _hidden_dirs(settings) == []


def test_concurrent_publishers_get_distinct_versions(settings, make_embeddings, interactions, popularity):
    results, errors = [], []

    def run(seed):
        try:
            results.append(_publish(settings, make_embeddings(seed=seed), interactions, popularity).index_version)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == ["v0001", "v0002", "v0003", "v0004"]
    assert current_version(settings) in results
    assert all(verify_version(settings.indexes_dir / v) for v in results)


def test_read_history_uses_partitions_up_to_ds(sim_curated, interactions, tmp_path):
    from graphrec.settings import Settings

    settings = Settings(home=sim_curated.parent, training={"window_days": 2})
    seen, popular = read_history(settings, "2025-01-03")
    upto = interactions[interactions["event_ts"] < pd.Timestamp("2025-01-04", tz="UTC")]
    assert len(seen) == len(upto)
    assert set(map(tuple, seen.to_numpy())) == set(map(tuple, upto[["user_id", "item_id"]].to_numpy()))

    window = upto[upto["event_ts"] >= pd.Timestamp("2025-01-02", tz="UTC")]
    counts = window["item_id"].value_counts()
    assert popular.tolist() == sorted(counts.index, key=lambda i: (-counts[i], i))

    empty_seen, empty_popular = read_history(Settings(home=tmp_path), "2025-01-03")
    assert empty_seen.empty and empty_popular.size == 0
