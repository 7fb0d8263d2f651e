"""The HTTP service: validation, 503 before publication, hot swap without restart."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.publish import publish_embeddings


def _publish(settings, emb, interactions, popularity):
    return publish_embeddings(
        settings, emb, ds="2025-01-04", seen=interactions[["user_id", "item_id"]], popularity=popularity
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings, online_features=False)) as client:
        yield client


@pytest.mark.parametrize(
    "url",
    [
        "/recommend/1?k=0",
        "/recommend/1?k=1000",
        "/recommend/1?k=101",
        "/recommend/1?k=ten",
        "/recommend/abc",
        "/recommend/-1",
    ],
)
def test_bad_requests_are_422(client, url):
    response = client.get(url)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("url", ["/recommend/1", "/recommend/1?k=5", "/version"])
def test_503_before_anything_is_published(client, url):
    response = client.get(url)
    assert response.status_code == 503
    assert "no index has been published" in response.json()["detail"]


def test_healthz_reports_no_index_then_ok(client, settings, make_embeddings, interactions, popularity):
    body = client.get("/healthz").json()
    assert client.get("/healthz").status_code == 200 and body["status"] == "no_index"
    _publish(settings, make_embeddings(model_version=3), interactions, popularity)
    body = client.get("/healthz").json()
    assert body == {
        "status": "ok",
        "index_version": "v0001",
        "model_version": 3,
        "ranker_version": None,
        "detail": None,
        "pointer_version": "v0001",
        "refused_version": None,
        "fallback": False,
    }


def test_hot_swap_without_restart(client, settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(seed=0, model_version=1), interactions, popularity)
    first = client.get("/recommend/7", params={"k": 10})
    assert first.status_code == 200
    body = first.json()
    assert body["index_version"] == "v0001" and body["model_version"] == 1
    assert len(body["items"]) == 10 and not body["fallback"]
    assert not {i["item_id"] for i in body["items"]} & set(interactions.loc[interactions["user_id"] == 7, "item_id"])

    _publish(settings, make_embeddings(seed=1, model_version=2), interactions, popularity)
    # The service loads the new version in the background and answers from the old one
    # meanwhile: every answer is whole, and the new version arrives within seconds.
    deadline = time.monotonic() + 30
    while True:
        second = client.get("/recommend/7", params={"k": 10}).json()
        assert second["index_version"] in ("v0001", "v0002") and len(second["items"]) == 10
        if second["index_version"] == "v0002" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (second["index_version"], second["model_version"]) == ("v0002", 2)
    version = client.get("/version").json()
    assert version["index_version"] == "v0002" and version["model_version"] == 2
    assert version["data_window"] == ["2025-01-01", "2025-01-04"] and version["n_items"] == len(popularity)


def test_unknown_user_fallback_over_http(client, settings, make_embeddings, interactions, popularity):
    _publish(settings, make_embeddings(), interactions, popularity)
    body = client.get("/recommend/987654?k=3").json()
    assert body["fallback"] and body["fallback_reason"] == "unknown_user"
    assert [i["item_id"] for i in body["items"]] == popularity[:3].tolist()


def test_online_hook_failure_degrades_not_5xx(settings, make_embeddings, interactions, popularity):
    """With the Feast hook on but no feature views applied under this home, requests still succeed."""
    _publish(settings, make_embeddings(), interactions, popularity)
    with TestClient(create_app(settings, online_features=True)) as client:
        response = client.get("/recommend/2?k=4")
    assert response.status_code == 200
    body = response.json()
    assert len(body["items"]) == 4 and not body["fallback"]
    assert body["degraded"] == ["recent_items"]


def test_openapi_describes_the_three_resources(client):
    schema = client.get("/openapi.json").json()
    assert {"/recommend/{user_id}", "/healthz", "/version"} <= set(schema["paths"])
    params = {p["name"]: p for p in schema["paths"]["/recommend/{user_id}"]["get"]["parameters"]}
    assert params["k"]["schema"]["maximum"] == 100 and params["k"]["schema"]["minimum"] == 1
    assert client.get("/docs").status_code == 200
