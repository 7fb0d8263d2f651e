"""The published versions: listing, activating the pointer alone, and pruning that spares what serves."""

from __future__ import annotations

import pytest

from serving import layout
from serving.publish import publish_embeddings
from serving.versions import activate_version, current_version, list_versions, prune


def _publish(settings, emb, interactions, popularity, **kwargs):
    return publish_embeddings(
        settings, emb, ds="2025-01-04", seen=interactions[["user_id", "item_id"]], popularity=popularity, **kwargs
    )


def test_pruning_never_deletes_the_current_version(settings, make_embeddings, interactions, popularity):
    for i in range(3):
        _publish(settings, make_embeddings(seed=i), interactions, popularity)
    activate_version(settings, "v0001")  # rolled back
    pruned = prune(settings.indexes_dir, keep=1, current=current_version(settings))
    assert pruned == ["v0002"]
    assert [v["index_version"] for v in list_versions(settings)] == ["v0001", "v0003"]


def test_rollback_repoints_current_and_refuses_broken_versions(settings, make_embeddings, interactions, popularity):
    for i in range(2):
        _publish(settings, make_embeddings(seed=i, model_version=i + 1), interactions, popularity)
    summary = activate_version(settings, "v0001")
    assert summary["index_version"] == "v0001" and summary["model_version"] == 1 and summary["current"]
    assert current_version(settings) == "v0001"
    assert [v["current"] for v in list_versions(settings)] == [True, False]

    (settings.indexes_dir / "v0002" / "popular.npy").write_bytes(b"not numpy")
    with pytest.raises(layout.BundleError):
        activate_version(settings, "v0002")
    with pytest.raises(layout.BundleError):
        activate_version(settings, "v0042")
    assert current_version(settings) == "v0001"


def test_pruning_spares_the_current_and_the_canary_version(settings, make_embeddings, interactions, popularity):
    settings = settings.updated({"index.keep_versions": 1})
    root = settings.indexes_dir

    def names():
        return [v["index_version"] for v in list_versions(settings)]

    _publish(settings, make_embeddings(seed=0), interactions, popularity)
    _publish(settings, make_embeddings(seed=1), interactions, popularity, activate=False)
    assert names() == ["v0001", "v0002"]  # v0001 is CURRENT, v0002 the newest
    layout.write_canary(root, layout.CanarySpec(version="v0002", share=0.5))
    _publish(settings, make_embeddings(seed=2), interactions, popularity)
    assert names() == ["v0002", "v0003"] and current_version(settings) == "v0003"  # v0002: the canary
    _publish(settings, make_embeddings(seed=3), interactions, popularity, activate=False)
    assert names() == ["v0002", "v0003", "v0004"]  # canary, CURRENT, newest
    activate_version(settings, "v0002")
    _publish(settings, make_embeddings(seed=4), interactions, popularity, activate=False)
    assert names() == ["v0002", "v0005"]  # CURRENT (and canary), newest

    (root / layout.CANARY_FILE).write_text("{not json")  # an unreadable CANARY could name anything
    assert prune(root, keep=1, current=current_version(settings)) == []
    layout.clear_canary(root)
    assert prune(root, keep=1, current="v0005") == []  # CURRENT is read from disk, not only `current`
    assert names() == ["v0002", "v0005"]
    activate_version(settings, "v0005")
    assert prune(root, keep=1, current=None) == ["v0002"]
    assert names() == ["v0005"]
