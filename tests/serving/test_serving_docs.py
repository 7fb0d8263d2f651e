"""The API docs pages work offline: every script, stylesheet and icon comes from the service."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from graphrec.settings import Settings
from serving.app import DOCS_ASSETS_URL, create_app

ASSET = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("docs") / "home")
    with TestClient(create_app(settings, online_features=False)) as client:
        yield client


@pytest.mark.parametrize(("page", "expected"), [("/docs", {".js", ".css", ".png"}), ("/redoc", {".js", ".png"})])
def test_docs_pages_load_every_asset_from_the_service(client, page, expected):
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html, "the page references an external URL"
    urls = ASSET.findall(html)
    assert {url[url.rfind(".") :] for url in urls} == expected
    for url in urls:
        assert url.startswith(f"{DOCS_ASSETS_URL}/"), url
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url


def test_swagger_ui_loads_the_services_openapi_description(client):
    assert "url: '/openapi.json'" in client.get("/docs").text
    spec = client.get("/openapi.json").json()
    assert "/recommend/{user_id}" in spec["paths"]
    assert not any(path.startswith(DOCS_ASSETS_URL) for path in spec["paths"])
