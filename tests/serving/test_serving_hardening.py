"""The service under hostile input and operator faults: out-of-range ids, one request's bad
input versus the source breakers, a cold start on a corrupt ``CURRENT``, a refused swap, and
``HEAD`` on the health routes."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi.testclient import TestClient

from serving import layout
from serving.app import create_app
from serving.publish import publish_embeddings
from serving.recommender import RECENT_ITEMS, Recommender

INT64_MAX = 2**63 - 1


def _publish(settings, emb, interactions, popularity):
    return publish_embeddings(
        settings, emb, ds="2025-01-04", seen=interactions[["user_id", "item_id"]], popularity=popularity
    )


def _corrupt(settings, version: str) -> None:
    """Overwrite the tail of one file of a published version: its checksum no longer matches."""
    user_emb = settings.indexes_dir / version / layout.USER_EMB_FILE
    user_emb.write_bytes(user_emb.read_bytes()[:-8] + b"\x00" * 8)


def _int64_store(user_ids):
    """Recent items from a store keyed by int64, like Feast's online store: larger ids raise."""
    for user_id in user_ids:
        if not 0 <= user_id <= INT64_MAX:
            raise ValueError("Value out of range")
    return {user_id: [] for user_id in user_ids}


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def _await(client, path, condition, timeout_s=30.0):
    """Poll ``path`` until ``condition(body)``: the service swaps versions in the background."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get(path).json()
        if condition(body):
            return body
        assert time.monotonic() < deadline, f"{path} never satisfied the condition: {body}"
        time.sleep(0.02)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings, online_features=False, ranker_features=False)) as client:
        yield client


# Ids beyond the store's range ---------------------------------------------------------------
@pytest.mark.parametrize("path", ["/recommend", "/similar"])
@pytest.mark.parametrize("value", [INT64_MAX + 1, 99999999999999999999, 10**40])
def test_ids_beyond_int64_are_422_with_a_clear_message(
    client, settings, make_embeddings, interactions, popularity, path, value
):
    _publish(settings, make_embeddings(), interactions, popularity)
    response = client.get(f"{path}/{value}")
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][0] == "path" and str(INT64_MAX) in error["msg"], error


def test_the_largest_int64_id_is_still_served(client, settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(), interactions, popularity)
    body = client.get(f"/recommend/{INT64_MAX}?k=3").json()
    assert body["fallback"] and body["user_id"] == INT64_MAX
    assert client.get(f"/similar/{INT64_MAX}").status_code == 404


def test_a_huge_id_does_not_degrade_the_next_request(settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(), interactions, popularity)
    recommender = Recommender(settings, recent_items_fn=_int64_store, recent_items_retry_s=3600)
    with TestClient(create_app(settings, recommender)) as client:
        assert client.get("/recommend/99999999999999999999").status_code == 422
        body = client.get("/recommend/3?k=5").json()
    assert body["degraded"] == [] and len(body["items"]) == 5


# One request's input versus the breakers of the optional sources ---------------------------
@pytest.mark.parametrize("bad_user", [7, 0], ids=["some-user", "first-known-user"])
def test_one_users_failing_input_does_not_degrade_other_users(
    settings, make_embeddings, interactions, popularity, caplog, bad_user
):
    _publish(settings, make_embeddings(), interactions, popularity)
    calls = []

    def fails_for_one_user(user_ids):
        calls.append(list(user_ids))
        if bad_user in user_ids:
            raise ValueError("Value out of range")
        return {user_id: [] for user_id in user_ids}

    recommender = Recommender(settings, recent_items_fn=fails_for_one_user, recent_items_retry_s=3600)
    with caplog.at_level(logging.WARNING, logger="serving"):
        assert recommender.recommend(bad_user, 5).degraded == [RECENT_ITEMS]
    for user_id in (3, 42, 10_000):
        assert recommender.recommend(user_id, 5).degraded == [], user_id
    assert [r for r in caplog.records if r.levelno >= logging.WARNING and str(bad_user) in r.getMessage()]
    assert not any(r.exc_info for r in caplog.records)  # one line, no traceback
    assert recommender.recommend(bad_user, 5).degraded == [RECENT_ITEMS]  # still its own problem
    assert [bad_user] in calls[1:]  # the source was asked again: no pause was taken


def test_a_source_failing_for_everyone_still_opens_its_breaker(settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(), interactions, popularity)
    calls = []

    def broken(user_ids):
        calls.append(list(user_ids))
        raise ValueError("schema mismatch")  # not a network error: the service probes first

    recommender = Recommender(settings, recent_items_fn=broken, recent_items_retry_s=3600)
    assert [recommender.recommend(u, 3).degraded for u in (7, 3, 42)] == [[RECENT_ITEMS]] * 3
    assert len(calls) == 2  # the request and one probe with a reference user; then paused
    assert calls[1] != [7]


# A cold start on a corrupt CURRENT ------------------------------------------------------------
def test_a_cold_start_on_a_corrupt_current_serves_the_newest_older_verified_version(
    settings, make_embeddings, interactions, popularity, caplog
):
    for seed in range(3):
        _publish(settings, make_embeddings(seed=seed, model_version=seed + 1), interactions, popularity)
    _corrupt(settings, "v0003")
    _corrupt(settings, "v0002")
    pointer = (settings.indexes_dir / layout.POINTER_FILE).read_bytes()
    with caplog.at_level(logging.ERROR, logger="serving"):
        with TestClient(create_app(settings, online_features=False, ranker_features=False)) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200
            body = ready.json()
            assert (body["status"], body["index_version"]) == ("ready", "v0001")
            assert body["pointer_version"] == "v0003" and body["refused_version"] == "v0003"
            assert body["fallback"] is True
            assert "CURRENT names v0003" in body["detail"] and "failed verification" in body["detail"]
            assert "serving v0001" in body["detail"]
            health = client.get("/healthz").json()
            assert (health["status"], health["index_version"], health["fallback"]) == ("ok", "v0001", True)
            assert health["refused_version"] == "v0003" and "CURRENT names v0003" in health["detail"]
            assert client.get("/recommend/3?k=5").json()["index_version"] == "v0001"
            text = client.get("/metrics").text
            assert _metric(text, "graphrec_serving_fallback") == 1
            assert _metric(text, "graphrec_serving_refused") == 1
            assert _metric(text, "graphrec_index_version", role="current") == 1
            assert _metric(text, "graphrec_index_version", role="refused") == 3
            assert (settings.indexes_dir / layout.POINTER_FILE).read_bytes() == pointer  # never moved

            _publish(settings, make_embeddings(seed=5, model_version=9), interactions, popularity)  # v0004
            body = _await(client, "/readyz", lambda b: b["index_version"] == "v0004")
            assert not body["fallback"] and body["refused_version"] is None and body["detail"] is None
            assert body["pointer_version"] == "v0004"
            text = client.get("/metrics").text
            assert _metric(text, "graphrec_serving_fallback") == 0
            assert _metric(text, "graphrec_serving_refused") == 0
            assert _metric(text, "graphrec_index_version", role="refused") == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("v0003" in m and "v0001" in m for m in errors), errors


def test_a_cold_start_never_falls_back_to_a_version_newer_than_current(
    settings, make_embeddings, interactions, popularity
):
    """After a rollback, the versions above CURRENT are the ones rolled back from."""
    for seed in range(2):
        _publish(settings, make_embeddings(seed=seed), interactions, popularity)
    layout.write_pointer(settings.indexes_dir, "v0001")
    _corrupt(settings, "v0001")
    with TestClient(create_app(settings, online_features=False, ranker_features=False)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "v0001" in ready.json()["detail"] and "no older version verifies" in ready.json()["detail"]
        assert client.get("/recommend/3").status_code == 503


# A refused swap -----------------------------------------------------------------------------
def test_a_refused_swap_is_reported_until_a_good_version_loads(
    client, settings, make_embeddings, interactions, popularity
):
    _publish(settings, make_embeddings(seed=0), interactions, popularity)
    assert client.get("/readyz").json()["refused_version"] is None
    _publish(settings, make_embeddings(seed=1), interactions, popularity)
    _corrupt(settings, "v0002")  # before the service notices the new pointer
    ready = _await(client, "/readyz", lambda b: b["refused_version"] is not None)
    assert (ready["status"], ready["index_version"], ready["pointer_version"]) == ("ready", "v0001", "v0002")
    assert ready["refused_version"] == "v0002" and not ready["fallback"]
    assert "v0002" in ready["detail"] and "failed verification" in ready["detail"]
    health = client.get("/healthz").json()
    assert (health["index_version"], health["refused_version"]) == ("v0001", "v0002")
    assert "failed verification" in health["detail"]
    text = client.get("/metrics").text
    assert _metric(text, "graphrec_serving_refused") == 1
    assert _metric(text, "graphrec_index_version", role="refused") == 2

    _publish(settings, make_embeddings(seed=2), interactions, popularity)  # v0003, intact
    ready = _await(client, "/readyz", lambda b: b["index_version"] == "v0003")
    assert ready["refused_version"] is None and ready["detail"] is None
    assert client.get("/healthz").json()["refused_version"] is None
    text = client.get("/metrics").text
    assert _metric(text, "graphrec_serving_refused") == 0
    assert _metric(text, "graphrec_index_version", role="refused") == 0


def test_an_unreadable_pointer_is_reported_and_the_loaded_version_kept(
    client, settings, make_embeddings, interactions, popularity
):
    _publish(settings, make_embeddings(), interactions, popularity)
    assert client.get("/readyz").json()["index_version"] == "v0001"
    (settings.indexes_dir / layout.POINTER_FILE).write_text("not-a-version\n")  # by hand, not atomically
    ready = _await(client, "/readyz", lambda b: b["detail"] is not None)
    assert (ready["status"], ready["index_version"], ready["refused_version"]) == ("ready", "v0001", None)
    assert "does not name a version" in ready["detail"]
    assert _metric(client.get("/metrics").text, "graphrec_serving_refused") == 1


# HEAD on the health routes --------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_answers_like_get_without_a_body(client, settings, make_embeddings, interactions, popularity, path):
    before = client.head(path)
    assert before.status_code == client.get(path).status_code
    assert before.content == b""
    _publish(settings, make_embeddings(), interactions, popularity)
    after = client.head(path)
    assert after.status_code == 200 and after.content == b""
