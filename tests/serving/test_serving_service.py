"""The service's operational surface: /similar, /readyz, /metrics, live canary and shadow
mode, and hot swaps under concurrent requests."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving import layout
from serving.app import create_app
from serving.index_check import exact_topk
from serving.publish import publish_embeddings
from serving.recommender import CHALLENGER, CHAMPION, Recommender, in_canary


def _publish(settings, emb, interactions, popularity, **kwargs):
    return publish_embeddings(
        settings, emb, ds="2025-01-04", seen=interactions[["user_id", "item_id"]], popularity=popularity, **kwargs
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings, online_features=False, ranker_features=False)) as client:
        yield client


def _canary(settings, emb, interactions, popularity, share, mode):
    """Publish ``emb`` as a second version and name it in CANARY, CURRENT unchanged."""
    before = layout.read_pointer(settings.indexes_dir)
    published = _publish(settings, emb, interactions, popularity)
    layout.write_pointer(settings.indexes_dir, before)  # as a canary publication leaves it
    layout.write_canary(settings.indexes_dir, layout.CanarySpec(published.index_version, share, mode))
    return published.index_version


def _await_canary(client, version, *, broken=False, timeout_s=30.0):
    """Poll /readyz until the service serves canary ``version`` (``None``: no canary), or,
    with ``broken``, reports why it ignores it: the service loads canaries in the background."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = client.get("/readyz").json()
        if (ready["detail"] is not None) if broken else (ready["canary_version"] == version):
            return ready
        assert time.monotonic() < deadline, f"canary {version} not live after {timeout_s} s: {ready}"
        time.sleep(0.02)


# /similar -------------------------------------------------------------------------
def test_similar_items_are_the_exact_inner_product_neighbours(
    client, settings, make_embeddings, interactions, popularity
):
    emb = make_embeddings()
    _publish(settings, emb, interactions, popularity)
    item = int(emb.item_ids[5])
    body = client.get(f"/similar/{item}", params={"k": 7}).json()
    _, positions = exact_topk(emb.item_emb, emb.item_emb[5], 8)
    expected = [int(emb.item_ids[p]) for p in positions[0] if p != 5][:7]
    assert [i["item_id"] for i in body["items"]] == expected
    assert body["item_id"] == item and body["index_version"] == "v0001"


def test_similar_unknown_item_is_404_and_bad_k_is_422(client, settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(), interactions, popularity)
    response = client.get("/similar/99999999")
    assert response.status_code == 404 and "not in index v0001" in response.json()["detail"]
    for url in ("/similar/1?k=0", "/similar/1?k=101", "/similar/x", "/similar/-3"):
        assert client.get(url).status_code == 422, url


# /readyz and /metrics --------------------------------------------------------------
def test_readyz_is_503_until_an_index_is_published(client, settings, make_embeddings, interactions, popularity):
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "not_ready"
    _publish(settings, make_embeddings(), interactions, popularity)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready" and response.json()["index_version"] == "v0001"


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_count_requests_by_route_status_and_variant(
    client, settings, make_embeddings, interactions, popularity
):
    _publish(settings, make_embeddings(), interactions, popularity)
    for user in range(5):
        assert client.get(f"/recommend/{user}?k=3").status_code == 200
    client.get("/recommend/1?k=0")  # 422
    client.get("/similar/99999999")  # 404
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        _metric(text, "graphrec_requests_total", endpoint="/recommend/{user_id}", status="200", variant=CHAMPION) == 5
    )
    assert _metric(text, "graphrec_requests_total", endpoint="/recommend/{user_id}", status="422", variant="none") == 1
    assert _metric(text, "graphrec_requests_total", endpoint="/similar/{item_id}", status="404", variant=CHAMPION) == 1
    assert (
        _metric(text, "graphrec_request_duration_seconds_count", endpoint="/recommend/{user_id}", variant=CHAMPION) == 5
    )
    assert _metric(text, "graphrec_served_item_popularity_count", variant=CHAMPION) == 5
    assert _metric(text, "graphrec_index_version", role="current") == 1
    assert _metric(text, "graphrec_index_version", role="canary") == 0


# Live canary -------------------------------------------------------------------------
def test_canary_assignment_is_stable_and_close_to_the_share():
    users = np.arange(20_000)
    chosen = np.array([in_canary(u, 0.1, "v0002") for u in users])
    assert 0.09 < chosen.mean() < 0.11
    assert (chosen == np.array([in_canary(u, 0.1, "v0002") for u in users])).all()
    other = np.array([in_canary(u, 0.1, "v0003") for u in users])
    assert (chosen != other).any()  # a new canary draws a new sample
    assert not any(in_canary(u, 0.0, "v") for u in range(100)) and all(in_canary(u, 1.0, "v") for u in range(100))


def test_split_canary_serves_its_share_with_the_challenger(client, settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(seed=0, model_version=1), interactions, popularity)
    challenger = make_embeddings(seed=1, model_version=2)
    version = _canary(settings, challenger, interactions, popularity, share=0.5, mode="split")
    _await_canary(client, version)
    rec = Recommender(settings)
    for user in range(40):
        body = client.get(f"/recommend/{user}?k=5").json()
        expected = CHALLENGER if in_canary(user, 0.5, version) else CHAMPION
        assert body["variant"] == expected
        assert body["index_version"] == (version if expected == CHALLENGER else "v0001")
        # the challenger's answer is exactly what its bundle alone would serve
        assert body["items"] == rec.recommend(user, 5).model_dump()["items"]
    text = client.get("/metrics").text
    n_challenger = sum(in_canary(u, 0.5, version) for u in range(40))
    assert (
        _metric(text, "graphrec_requests_total", endpoint="/recommend/{user_id}", status="200", variant=CHALLENGER)
        == n_challenger
    )
    assert _metric(text, "graphrec_canary_share") == 0.5
    assert _metric(text, "graphrec_index_version", role="canary") == 2
    assert client.get("/readyz").json()["canary_version"] == version

    layout.clear_canary(settings.indexes_dir)  # stopping the canary: everybody on the champion again
    _await_canary(client, None)
    assert {client.get(f"/recommend/{u}?k=5").json()["variant"] for u in range(40)} == {CHAMPION}


def test_shadow_canary_serves_the_champion_and_logs_both(
    client, settings, make_embeddings, interactions, popularity, caplog
):
    _publish(settings, make_embeddings(seed=0, model_version=1), interactions, popularity)
    plain = client.get("/recommend/3?k=5").json()
    version = _canary(
        settings, make_embeddings(seed=1, model_version=2), interactions, popularity, share=1.0, mode="shadow"
    )
    _await_canary(client, version)
    with caplog.at_level(logging.INFO, logger="graphrec.shadow"):
        body = client.get("/recommend/3?k=5").json()
    assert body == plain  # served: the champion, unchanged
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "graphrec.shadow"]
    assert len(lines) == 1 and lines[0]["user_id"] == 3
    assert lines[0]["champion"]["items"] == [i["item_id"] for i in plain["items"]]
    assert lines[0]["challenger"]["index_version"] == version and len(lines[0]["challenger"]["items"]) == 5
    assert _metric(client.get("/metrics").text, "graphrec_shadow_overlap_count") == 1


def test_a_broken_canary_is_ignored(client, settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(seed=0, model_version=1), interactions, popularity)
    version = _canary(settings, make_embeddings(seed=1, model_version=2), interactions, popularity, 1.0, "split")
    (settings.indexes_dir / version / layout.POPULAR_FILE).write_bytes(b"tampered")
    _await_canary(client, version, broken=True)
    body = client.get("/recommend/3?k=5")
    assert body.status_code == 200 and body.json()["variant"] == CHAMPION
    ready = client.get("/readyz").json()
    assert ready["canary_version"] is None and "failed verification" in ready["detail"]


# Hot swap under load -------------------------------------------------------------------
def test_hot_swap_under_concurrent_requests_fails_nothing(client, settings, make_embeddings, interactions, popularity):
    """Eight threads hammer /recommend while five new versions are published and one is
    rolled back: every response is a 200 from a complete version, and versions only move
    as published."""
    _publish(settings, make_embeddings(seed=0, model_version=1), interactions, popularity)
    stop = threading.Event()
    seen_versions: set[str] = set()
    failures: list[str] = []

    def hammer(worker: int) -> int:
        n = 0
        while not stop.is_set():
            response = client.get(f"/recommend/{(worker * 7 + n) % 110}?k=10")
            n += 1
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.text}")
                continue
            body = response.json()
            seen_versions.add(body["index_version"])
            if len(body["items"]) != 10:
                failures.append(f"short answer from {body['index_version']}")
        return n

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(hammer, w) for w in range(8)]
        for version in range(2, 7):
            _publish(settings, make_embeddings(seed=version, model_version=version), interactions, popularity)
        layout.write_pointer(settings.indexes_dir, "v0004")  # a rollback mid-load
        client.get("/recommend/1?k=10")
        stop.set()
        counts = [f.result() for f in futures]
    assert not failures, failures[:5]
    assert sum(counts) > 50
    assert len(seen_versions) >= 2 and seen_versions <= {f"v{i:04d}" for i in range(1, 7)}
    deadline = time.monotonic() + 30  # the service loads a new version in the background
    while client.get("/recommend/1?k=10").json()["index_version"] != "v0004" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/recommend/1?k=10").json()["index_version"] == "v0004"
