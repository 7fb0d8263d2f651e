"""Rollback: the pointer and the MLflow champion aliases move together, or not at all.

Uses a real SQLite MLflow registry (``model_registry`` in conftest) with retriever and
ranker versions 1 and 2, published with :func:`serving.publish.publish_model` the way
the nightly DAG does, and the ``graphrec`` CLI as a user runs it.
"""

from __future__ import annotations

import json

import pytest

from app import cli
from serving import layout
from serving.promotion import ChampionUpdateError, VersionNotFound, rollback
from serving.publish import publish_embeddings, publish_model
from serving.recommender import Recommender
from serving.versions import current_version
from training import registry

DS = "2025-01-04"
USERS = (0, 3, 17, 42, 99, 105, 10_000)  # known users, a user with history only, a stranger


def _answers(recommender: Recommender) -> list[dict]:
    return [recommender.recommend(user, 10).model_dump() for user in USERS]


def _champions(settings) -> tuple[int | None, int | None]:
    return (
        registry.get_alias_version(settings, registry.CHAMPION),
        registry.get_alias_version(settings, registry.CHAMPION, model=settings.mlflow.ranker_model_name),
    )


def _promote_and_publish(settings, version: int, ranker: int | None = None) -> str:
    """What a nightly run does once a challenger wins: move the aliases, publish the pair."""
    registry.set_alias(settings, registry.CHAMPION, version)
    if ranker is not None:
        registry.set_alias(settings, registry.CHAMPION, ranker, model=settings.mlflow.ranker_model_name)
    return publish_model(settings, version, DS, ranker_version=ranker).index_version


def _flip_a_byte(path) -> None:
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_rollback_restores_the_previous_answers_and_champions_exactly(registry_settings):
    settings = registry_settings
    assert _promote_and_publish(settings, 1, ranker=1) == "v0001"
    serving = Recommender(settings)
    before = _answers(serving)
    assert {(a["index_version"], a["model_version"], a["ranker_version"]) for a in before} == {("v0001", 1, 1)}

    assert _promote_and_publish(settings, 2, ranker=2) == "v0002"
    after = _answers(serving)
    assert {a["index_version"] for a in after} == {"v0002"} and after != before
    assert _champions(settings) == (2, 2)

    result = rollback(settings)
    assert result["index_version"] == "v0001" and result["previous_version"] == "v0002"
    assert (result["model_version"], result["ranker_version"]) == (1, 1)
    assert result["champions"] == {
        settings.mlflow.retriever_model_name: {"from": 2, "to": 1},
        settings.mlflow.ranker_model_name: {"from": 2, "to": 1},
    }
    assert result["notes"] == [] and result["canary"] is None
    assert current_version(settings) == "v0001" and _champions(settings) == (1, 1)
    assert _answers(serving) == before  # the recommender that was serving swapped back
    assert _answers(Recommender(settings)) == before


def test_cli_rollback_rolls_back_and_forward(cli_settings, capsys):
    settings = cli_settings
    _promote_and_publish(settings, 1, ranker=1)
    before = _answers(Recommender(settings))
    _promote_and_publish(settings, 2, ranker=2)
    after = _answers(Recommender(settings))

    assert cli.main(["rollback"]) == 0
    out = capsys.readouterr().out
    assert "CURRENT: v0002 -> v0001" in out
    assert f"champion {settings.mlflow.retriever_model_name}: 2 -> 1" in out
    assert f"champion {settings.mlflow.ranker_model_name}: 2 -> 1" in out
    assert _answers(Recommender(settings)) == before and _champions(settings) == (1, 1)

    assert cli.main(["rollback", "v0002", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["index_version"], payload["previous_version"]) == ("v0002", "v0001")
    assert _answers(Recommender(settings)) == after and _champions(settings) == (2, 2)


def test_rolling_back_to_a_broken_or_missing_version_is_refused(cli_settings, capsys):
    settings = cli_settings
    _promote_and_publish(settings, 1, ranker=1)
    assert cli.main(["rollback"]) == 2  # nothing older than v0001
    assert "nothing to roll back to" in capsys.readouterr().err
    _promote_and_publish(settings, 2, ranker=2)
    pointer = (settings.indexes_dir / layout.POINTER_FILE).read_bytes()
    answers = _answers(Recommender(settings))

    _flip_a_byte(settings.indexes_dir / "v0001" / layout.RANKER_WEIGHTS_FILE)
    with pytest.raises(layout.BundleError, match="refusing to serve v0001"):
        rollback(settings)
    assert cli.main(["rollback", "v0001"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ranker.pt: sha256 mismatch" in err

    with pytest.raises(VersionNotFound):
        rollback(settings, "v0042")
    assert cli.main(["rollback", "v0042"]) == 2
    assert "no index version 'v0042'" in capsys.readouterr().err
    assert cli.main(["rollback", "latest"]) == 2

    assert (settings.indexes_dir / layout.POINTER_FILE).read_bytes() == pointer
    assert _champions(settings) == (2, 2)
    assert _answers(Recommender(settings)) == answers


def test_nothing_published_is_nothing_to_roll_back(cli_settings, capsys):
    with pytest.raises(VersionNotFound, match="nothing is published"):
        rollback(cli_settings)
    assert cli.main(["rollback"]) == 2
    assert "nothing" in capsys.readouterr().err


def test_a_failing_alias_move_puts_pointer_and_aliases_back(cli_settings, capsys, request):
    settings = cli_settings
    _promote_and_publish(settings, 1, ranker=1)
    _promote_and_publish(settings, 2, ranker=2)
    pointer = (settings.indexes_dir / layout.POINTER_FILE).read_bytes()
    serving = Recommender(settings)
    answers = _answers(serving)
    request.getfixturevalue("ranker_registry_down")  # from here on, the ranker alias cannot move
    with pytest.raises(ChampionUpdateError, match="registry unreachable"):
        rollback(settings)
    assert (settings.indexes_dir / layout.POINTER_FILE).read_bytes() == pointer
    assert _champions(settings) == (2, 2)  # the retriever's alias had moved: it is back
    assert _answers(serving) == answers and _answers(Recommender(settings)) == answers

    assert cli.main(["rollback"]) == 1
    err = capsys.readouterr().err
    assert "could not move" in err and "put back" in err
    assert current_version(settings) == "v0002" and _champions(settings) == (2, 2)


def test_an_unregistered_model_version_is_refused_by_the_registry(
    registry_settings, make_embeddings, interactions, popularity
):
    """A version whose manifest names a model version the registry lacks: MLflow refuses, all is restored."""
    settings = registry_settings
    publish_embeddings(
        settings,
        make_embeddings(seed=9, model_version=99),
        ds=DS,
        seen=interactions[["user_id", "item_id"]],
        popularity=popularity,
    )
    _promote_and_publish(settings, 1)
    with pytest.raises(ChampionUpdateError):
        rollback(settings, "v0001")
    assert current_version(settings) == "v0002" and _champions(settings) == (1, None)


def test_rollback_to_a_retrieval_only_version_leaves_the_ranker_champion(cli_settings, capsys):
    settings = cli_settings
    assert _promote_and_publish(settings, 1) == "v0001"  # retrieval only
    _promote_and_publish(settings, 2, ranker=2)
    assert cli.main(["rollback"]) == 0
    out = capsys.readouterr().out
    assert "CURRENT: v0002 -> v0001" in out
    assert (
        f"note: v0001 was published without a ranker_version: the {settings.mlflow.ranker_model_name} champion alias "
        "stays at version 2" in out
    )
    assert _champions(settings) == (1, 2)
    rec = Recommender(settings).recommend(0, 5)
    assert (rec.index_version, rec.model_version, rec.ranker_version) == ("v0001", 1, None)


def test_versions_lists_every_version_with_its_lineage_and_index(cli_settings, capsys):
    settings = cli_settings
    assert cli.main(["versions", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    _promote_and_publish(settings, 1)
    _promote_and_publish(settings, 2, ranker=2)
    rollback(settings)
    layout.write_canary(settings.indexes_dir, layout.CanarySpec(version="v0002", share=0.2))

    assert cli.main(["versions", "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)
    assert [v["index_version"] for v in versions] == ["v0001", "v0002"]
    assert [(v["current"], v["canary"]) for v in versions] == [(True, False), (False, True)]
    assert [(v["model_version"], v["ranker_version"]) for v in versions] == [(1, None), (2, 2)]
    for v, seed in zip(versions, (1, 2)):
        assert v["ds"] == DS and v["created_at"]
        assert v["metrics"]["recall_at_20"] == pytest.approx(0.1 + seed / 100)
        assert v["metrics"]["ndcg_at_20"] == pytest.approx(0.05 + seed / 100)
        assert (v["index_type"], v["index_factory"]) == ("IndexFlatIP", "Flat")
        assert v["index_recall_at_k"] == pytest.approx(1.0) and v["index_recall_k"] == min(
            settings.index.recall_k, v["n_items"]
        )

    assert cli.main(["versions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row1, row2 = (next(line for line in lines if name in line) for name in ("v0001", "v0002"))
    assert row1.lstrip().startswith("* v0001") and row2.lstrip().startswith("c v0002")
    assert "IndexFlatIP (1.000@" in row1 and "0.1100" in row1 and "0.0700" in row2
