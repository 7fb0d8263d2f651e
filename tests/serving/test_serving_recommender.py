"""The recommender: exclusion of seen items, fallback, degraded sources, hot swap."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from serving.publish import publish_embeddings
from serving.recommender import Recommender
from serving.swap import NoPublishedIndex


def _publish(settings, emb, interactions, popularity):
    return publish_embeddings(
        settings, emb, ds="2025-01-04", seen=interactions[["user_id", "item_id"]], popularity=popularity
    )


def _seen(interactions, user_id) -> set[int]:
    return set(interactions.loc[interactions["user_id"] == user_id, "item_id"].tolist())


def _corrupt_user_emb(version_dir) -> None:
    """Overwrite the tail of a published version's user embeddings: its checksum fails."""
    user_emb = version_dir / "user_emb.npy"
    user_emb.write_bytes(user_emb.read_bytes()[:-8] + b"\x00" * 8)


def _unreachable_recent_items(user_ids):
    """A real network call to a closed loopback port (the online store is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return {}


@pytest.mark.parametrize("shuffled", [False, True], ids=["sorted-ids", "shuffled-ids"])
@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize("user_id", [0, 17, 42, 99])
def test_known_user_gets_exact_top_k_unseen_items(
    settings, make_embeddings, interactions, popularity, user_id, k, shuffled
):
    emb = make_embeddings(shuffled=shuffled)
    _publish(settings, emb, interactions, popularity)
    rec = Recommender(settings).recommend(user_id, k)

    seen = _seen(interactions, user_id)
    ids = [item.item_id for item in rec.items]
    assert len(ids) == k == len(set(ids))
    assert not set(ids) & seen
    assert not rec.fallback and rec.fallback_reason is None and rec.degraded == []
    assert rec.index_version == "v0001" and rec.model_version == 1

    # reference: brute-force scores over the whole catalog, seen items removed
    row = emb.user_ids.tolist().index(user_id)
    scores = emb.item_emb @ emb.user_emb[row]
    ranked = [int(emb.item_ids[j]) for j in np.argsort(-scores)]
    unseen = [i for i in ranked if i not in seen]
    assert ids == unseen[:k]
    np.testing.assert_allclose(
        [item.score for item in rec.items], np.sort(scores)[::-1][[ranked.index(i) for i in ids]], rtol=1e-5
    )
    cutoff = ranked.index(ids[-1])
    assert rec.excluded == len(set(ranked[:cutoff]) & seen)


def test_unknown_user_gets_flagged_popularity_fallback_without_seen_items(
    settings, make_embeddings, interactions, popularity
):
    emb = make_embeddings()
    _publish(settings, emb, interactions, popularity)
    recommender = Recommender(settings)

    stranger = recommender.recommend(10_000, 5)  # never seen anywhere
    assert stranger.fallback and stranger.fallback_reason == "unknown_user"
    assert [i.item_id for i in stranger.items] == popularity[:5].tolist()
    assert [i.score for i in stranger.items] == sorted((i.score for i in stranger.items), reverse=True)

    user_id = max(set(interactions["user_id"]) - set(emb.user_ids.tolist()))  # history, no embedding
    seen = _seen(interactions, user_id)
    assert seen
    rec = recommender.recommend(user_id, 10)
    assert rec.fallback and rec.fallback_reason == "unknown_user"
    expected = [i for i in popularity.tolist() if i not in seen][:10]
    assert [i.item_id for i in rec.items] == expected
    assert rec.excluded == len(set(popularity.tolist()[: popularity.tolist().index(expected[-1])]) & seen)


def test_recent_items_are_excluded_too(settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(), interactions, popularity)
    user_id = 5
    plain = Recommender(settings).recommend(user_id, 5)
    recent = {user_id: [plain.items[0].item_id, plain.items[2].item_id]}
    with_recent = Recommender(settings, recent_items_fn=lambda ids: {u: recent.get(u, []) for u in ids}).recommend(
        user_id, 5
    )
    got = [i.item_id for i in with_recent.items]
    assert len(got) == 5 and not set(got) & set(recent[user_id])
    assert got[:2] == [plain.items[1].item_id, plain.items[3].item_id]
    assert with_recent.excluded == plain.excluded + 2 and with_recent.degraded == []


def test_a_failing_recent_items_source_degrades_instead_of_failing(settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(), interactions, popularity)
    rec = Recommender(settings, recent_items_fn=_unreachable_recent_items).recommend(3, 5)
    assert rec.degraded == ["recent_items"]
    assert len(rec.items) == 5 and not {i.item_id for i in rec.items} & _seen(interactions, 3)


def test_a_failed_source_is_skipped_for_a_while_then_retried(settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(), interactions, popularity)
    calls = []

    def flaky_recent_items(user_ids):
        calls.append(user_ids)
        return _unreachable_recent_items(user_ids)

    patient = Recommender(settings, recent_items_fn=flaky_recent_items, recent_items_retry_s=3600)
    assert [patient.recommend(1, 3).degraded for _ in range(3)] == [["recent_items"]] * 3
    assert len(calls) == 1  # the down source was not called again during the pause
    eager = Recommender(settings, recent_items_fn=flaky_recent_items, recent_items_retry_s=0)
    eager.recommend(1, 3)
    eager.recommend(1, 3)
    assert len(calls) == 3


def test_k_beyond_the_unseen_catalog_returns_every_unseen_item_once(
    settings, make_embeddings, interactions, popularity
):
    emb = make_embeddings()
    _publish(settings, emb, interactions, popularity)
    user_id = int(interactions["user_id"].value_counts().index[0])  # heaviest user
    rec = Recommender(settings).recommend(user_id, 100)
    unseen = set(emb.item_ids.tolist()) - _seen(interactions, user_id)
    assert {i.item_id for i in rec.items} == unseen and len(rec.items) == len(unseen)
    assert rec.excluded == len(_seen(interactions, user_id))


def test_no_published_index_is_a_clear_error(settings):
    with pytest.raises(NoPublishedIndex, match="no index has been published"):
        Recommender(settings).recommend(1, 5)


def test_hot_swap_to_a_new_version_keeps_old_bundles_usable(settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(seed=0, model_version=1), interactions, popularity)
    recommender = Recommender(settings)
    first = recommender.recommend(0, 5)
    old_bundle = recommender.bundle
    assert first.index_version == "v0001"

    _publish(settings, make_embeddings(seed=1, model_version=2), interactions, popularity)
    second = recommender.recommend(0, 5)
    assert (second.index_version, second.model_version) == ("v0002", 2)
    assert recommender.bundle is not old_bundle
    assert [i.item_id for i in second.items] != [i.item_id for i in first.items]
    # an in-flight request holding the old bundle still has consistent arrays
    assert old_bundle.version == "v0001" and old_bundle.index.ntotal == len(old_bundle.item_ids)


def test_a_tampered_new_version_is_refused_and_the_old_one_kept(settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(seed=0), interactions, popularity)
    recommender = Recommender(settings)
    assert recommender.recommend(0, 5).index_version == "v0001"

    # publish v0002, then corrupt it before the service notices the pointer change
    out = _publish(settings, make_embeddings(seed=1, model_version=2), interactions, popularity)
    _corrupt_user_emb(settings.indexes_dir / out.index_version)

    assert recommender.recommend(0, 5).index_version == "v0001"
    state = recommender.state
    assert (state.pointer_version, state.refused_version, state.fallback) == ("v0002", "v0002", False)
    assert "failed verification" in state.detail
    # a fresh start on the refused version serves the newest older version that verifies
    fresh = Recommender(settings)
    assert fresh.recommend(0, 5).index_version == "v0001"
    assert fresh.state.refused_version == "v0002" and fresh.state.fallback
    _corrupt_user_emb(settings.indexes_dir / "v0001")  # none left: a clear error
    with pytest.raises(NoPublishedIndex, match="failed verification.*no older version verifies"):
        Recommender(settings).recommend(0, 5)
