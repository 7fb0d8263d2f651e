"""``graphrec recommend`` on a tiny published index: what the text says, clean JSON, progress on stderr."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from app import cli, progress
from app.commands.recommend import format_recommendation
from graphrec import settings as settings_module
from serving.publish import publish_embeddings
from serving.schemas import Recommendation, ScoredItem
from training.embeddings import ModelEmbeddings

N_USERS, N_ITEMS, DIM = 30, 40, 8
UNKNOWN_USER = 10_000


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home whose CURRENT is a retrieval-only index v0001 of model version 3 (no Feast, no curated days)."""
    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path / "home"))
    settings_module.get_settings.cache_clear()
    settings = settings_module.get_settings()
    rng = np.random.default_rng(0)
    items = np.arange(100, 100 + N_ITEMS, dtype=np.int64)
    emb = ModelEmbeddings(
        user_ids=np.arange(N_USERS, dtype=np.int64),
        item_ids=items,
        user_emb=rng.normal(size=(N_USERS, DIM)).astype(np.float32),
        item_emb=rng.normal(size=(N_ITEMS, DIM)).astype(np.float32),
        meta={"model_version": 3, "run_id": "run-3", "data_window": ["2025-01-01", "2025-01-04"]},
    )
    seen = pd.DataFrame({"user_id": np.repeat(np.arange(N_USERS), 3), "item_id": rng.choice(items, 3 * N_USERS)})
    publish_embeddings(settings, emb, ds="2025-01-04", seen=seen, popularity=items)
    yield settings
    settings_module.get_settings.cache_clear()


def test_text_names_the_versions_and_says_it_was_not_reranked(home, capsys):
    assert cli.main(["recommend", "4", "--k", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "user 4: index v0001, retriever v3, ranker none (champion)"
    assert out[1] == "re-ranked: no (the index has no ranker; retrieval order)"
    assert out[2:4] == ["fallback: no", "degraded: none"]
    assert out[4].startswith("excluded: ")
    assert [line.split()[0] for line in out[5:]] == ["1.", "2.", "3.", "4.", "5."]


def test_text_says_an_unknown_user_gets_the_popularity_fallback(home, capsys):
    assert cli.main(["recommend", str(UNKNOWN_USER), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "re-ranked: no (popularity fallback)" in out
    assert "fallback: yes, popularity (unknown_user)" in out
    assert "item 100  score" in out  # the most popular item first


def test_json_stdout_is_one_document_while_progress_goes_to_stderr(home, capsys, monkeypatch):
    monkeypatch.setattr(progress, "enabled", lambda: True)  # as on a terminal
    assert cli.main(["recommend", "4", "--k", "5", "--json"]) == 0
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert answer["index_version"] == "v0001" and len(answer["items"]) == 5
    assert answer["reranked"] is False and answer["fallback"] is False and answer["degraded"] == []
    assert "loading index v0001…" in captured.err
    assert "answering user 4…" in captured.err
    assert captured.err.count("… done in ") == 3  # the libraries, the index, the answer
    assert "…" not in captured.out


def test_no_progress_when_stderr_is_not_a_terminal(home, capsys):
    assert cli.main(["recommend", "4", "--json"]) == 0
    assert capsys.readouterr().err == ""


def test_nothing_published_is_exit_3_after_a_failed_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(progress, "enabled", lambda: True)
    settings_module.get_settings.cache_clear()
    try:
        assert cli.main(["recommend", "4"]) == 3
    finally:
        settings_module.get_settings.cache_clear()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "loading index (none published)…\n… failed after " in captured.err
    assert captured.err.splitlines()[-1].startswith("error: ")


def _answer(**fields) -> Recommendation:
    base = {
        "user_id": 7,
        "items": [ScoredItem(item_id=11, score=0.9), ScoredItem(item_id=12, score=0.5)],
        "index_version": "v0007",
        "model_version": 3,
        "ranker_version": 2,
    }
    return Recommendation(**{**base, **fields})


@pytest.mark.parametrize(
    ("answer", "ranker_features", "expected"),
    [
        (
            _answer(reranked=True),
            True,
            [
                "user 7: index v0007, retriever v3, ranker v2 (champion)",
                "re-ranked: yes, by ranker v2 (scores are its click probabilities)",
                "fallback: no",
                "degraded: none",
            ],
        ),
        (
            _answer(degraded=["ranker_features"], variant="challenger"),
            True,
            [
                "user 7: index v0007, retriever v3, ranker v2 (challenger)",
                "re-ranked: no (its online features failed; retrieval order)",
                "fallback: no",
                "degraded: ranker_features",
            ],
        ),
        (
            _answer(fallback=True, fallback_reason="unknown_user", degraded=["recent_items"]),
            True,
            [
                "re-ranked: no (popularity fallback)",
                "fallback: yes, popularity (unknown_user)",
                "degraded: recent_items",
            ],
        ),
        (
            _answer(),
            False,
            ["re-ranked: no (the ranker is disabled or there is no feature store; retrieval order)"],
        ),
        (
            _answer(ranker_version=None, model_version=None),
            True,
            ["user 7: index v0007, retriever unknown, ranker none (champion)"],
        ),
    ],
    ids=["reranked", "ranker-features-failed", "fallback", "features-off", "no-ranker"],
)
def test_text_output_states_order_fallback_and_degraded_sources(answer, ranker_features, expected):
    text = format_recommendation(answer, ranker_features=ranker_features).splitlines()
    assert set(expected) <= set(text)
    assert text[-2:] == ["  1. item 11  score 0.9000", "  2. item 12  score 0.5000"]
