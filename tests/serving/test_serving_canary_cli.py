"""The live canary from the command line: start, status, stop and promote.

``graphrec canary start`` publishes a registered model version without moving ``CURRENT``
and names it in the ``CANARY`` file; ``promote`` makes it the served version and moves the
champion aliases; ``stop`` removes the canary. A real SQLite MLflow registry
(``model_registry`` in conftest) holds retriever and ranker versions 1 and 2.
"""

from __future__ import annotations

import json

import pytest

from app import cli
from serving import layout
from serving.promotion import NoCanary, canary_status, promote_canary, start_canary, stop_canary
from serving.publish import publish_model
from serving.recommender import Recommender
from serving.versions import current_version, verify_version
from training import registry

DS = "2025-01-04"


def _champions(settings) -> tuple[int | None, int | None]:
    return (
        registry.get_alias_version(settings, registry.CHAMPION),
        registry.get_alias_version(settings, registry.CHAMPION, model=settings.mlflow.ranker_model_name),
    )


def _serve_champion(settings, version: int = 1, ranker: int | None = 1) -> None:
    registry.set_alias(settings, registry.CHAMPION, version)
    if ranker is not None:
        registry.set_alias(settings, registry.CHAMPION, ranker, model=settings.mlflow.ranker_model_name)
    publish_model(settings, version, DS, ranker_version=ranker)


def test_canary_start_publishes_without_serving_and_writes_the_spec(cli_settings, capsys):
    settings = cli_settings
    _serve_champion(settings)
    pointer = (settings.indexes_dir / layout.POINTER_FILE).read_bytes()

    assert (
        cli.main(
            [
                "canary",
                "start",
                "2",
                "--ranker-version",
                "2",
                "--share",
                "0.25",
                "--mode",
                "shadow",
                "--ds",
                DS,
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["published"]["index_version"] == "v0002" and result["published"]["activated"] is False
    assert (result["published"]["model_version"], result["published"]["ranker_version"]) == (2, 2)
    assert result["replaced"] is None
    spec = layout.read_canary(settings.indexes_dir)
    assert (spec.version, spec.share, spec.mode) == ("v0002", 0.25, "shadow") and spec.started_at
    assert result["canary"] == {"version": "v0002", "share": 0.25, "mode": "shadow", "started_at": spec.started_at}

    assert (settings.indexes_dir / layout.POINTER_FILE).read_bytes() == pointer  # CURRENT did not move
    assert verify_version(settings.indexes_dir / "v0002")
    manifest = layout.read_manifest(settings.indexes_dir / "v0002")
    assert (manifest["model_version"], manifest["ranker_version"], manifest["ds"]) == (2, 2, DS)
    assert _champions(settings) == (1, 1)  # starting a canary moves no alias


def test_canary_start_defaults_come_from_settings_and_the_lake(cli_settings, capsys):
    settings = cli_settings
    _serve_champion(settings)
    assert cli.main(["canary", "start", "2"]) == 0
    assert "live canary v0002 (split, share 0.1): model 2, ranker None" in capsys.readouterr().out
    spec = layout.read_canary(settings.indexes_dir)
    assert (spec.share, spec.mode) == (settings.serve.live_canary_share, settings.serve.live_canary_mode)
    assert layout.read_manifest(settings.indexes_dir / "v0002")["ds"] == DS  # the newest curated partition

    # a second start replaces the first
    result = start_canary(settings.updated({"serve.live_canary_share": 0.3}), 1, ranker_version=2)
    assert result["replaced"]["version"] == "v0002" and result["canary"]["share"] == 0.3
    assert layout.read_canary(settings.indexes_dir).version == "v0003"


def test_canary_status_describes_the_canary_and_current(cli_settings, capsys):
    settings = cli_settings
    _serve_champion(settings)
    assert cli.main(["canary", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["canary"] is None and status["version"] is None
    assert status["current"]["index_version"] == "v0001" and status["current"]["verified"]
    assert cli.main(["canary", "status"]) == 0
    assert "no live canary" in capsys.readouterr().out

    start_canary(settings, 2, ranker_version=2, share=0.5)
    assert cli.main(["canary", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["canary"]["version"] == "v0002" and status["canary"]["share"] == 0.5
    version = status["version"]
    assert (version["index_version"], version["model_version"], version["ranker_version"]) == ("v0002", 2, 2)
    assert version["verified"] and version["canary"] and not version["current"]
    assert cli.main(["canary", "status"]) == 0
    out = capsys.readouterr().out
    assert "CANARY:  v0002 (model 2, ranker 2), split, share 0.5" in out and "checksums ok" in out

    (settings.indexes_dir / "v0002" / layout.POPULAR_FILE).write_bytes(b"tampered")
    assert canary_status(settings)["version"]["verified"] is False


def test_canary_stop_clears_the_spec_and_keeps_current(cli_settings, capsys):
    settings = cli_settings
    _serve_champion(settings)
    start_canary(settings, 2)
    assert cli.main(["canary", "stop"]) == 0
    assert "stopped the live canary v0002" in capsys.readouterr().out
    assert layout.read_canary(settings.indexes_dir) is None
    assert current_version(settings) == "v0001" and _champions(settings) == (1, 1)
    assert cli.main(["canary", "stop", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"stopped": None, "cleared": False}
    (settings.indexes_dir / layout.CANARY_FILE).write_text("garbage")
    assert stop_canary(settings) == {"stopped": None, "cleared": True}


def test_canary_promote_serves_it_and_moves_the_champions(cli_settings, capsys):
    settings = cli_settings
    _serve_champion(settings)
    serving = Recommender(settings)
    assert serving.recommend(0, 5).index_version == "v0001"
    start_canary(settings, 2, ranker_version=2)

    assert cli.main(["canary", "promote"]) == 0
    out = capsys.readouterr().out
    assert "promoted the live canary v0002" in out and "CURRENT: v0001 -> v0002" in out
    assert current_version(settings) == "v0002" and layout.read_canary(settings.indexes_dir) is None
    assert _champions(settings) == (2, 2)
    rec = serving.recommend(0, 5)
    assert (rec.index_version, rec.model_version, rec.ranker_version) == ("v0002", 2, 2)
    assert rec.items == Recommender(settings).recommend(0, 5).items

    assert cli.main(["canary", "promote"]) == 2  # nothing left to promote
    assert "no live canary" in capsys.readouterr().err
    with pytest.raises(NoCanary):
        promote_canary(settings)


def test_a_failed_promotion_keeps_the_canary_running(cli_settings, capsys, request):
    settings = cli_settings
    _serve_champion(settings)
    start_canary(settings, 2, ranker_version=2)
    pointer = (settings.indexes_dir / layout.POINTER_FILE).read_bytes()
    request.getfixturevalue("ranker_registry_down")  # from here on, the ranker alias cannot move
    assert cli.main(["canary", "promote"]) == 1
    assert "registry unreachable" in capsys.readouterr().err
    assert (settings.indexes_dir / layout.POINTER_FILE).read_bytes() == pointer
    assert layout.read_canary(settings.indexes_dir).version == "v0002"
    assert _champions(settings) == (1, 1)


def test_the_canary_version_survives_pruning(cli_settings):
    settings = cli_settings.updated({"index.keep_versions": 1})
    _serve_champion(settings)
    start_canary(settings, 2, ranker_version=2)
    for _ in range(2):
        publish_model(settings, 1, DS)
    assert [p.name for p in layout.version_dirs(settings.indexes_dir)] == ["v0002", "v0004"]
    assert promote_canary(settings)["index_version"] == "v0002"


@pytest.mark.parametrize(
    "argv",
    [
        ["canary", "start", "2", "--share", "1.5"],
        ["canary", "start", "2", "--mode", "half"],
        ["canary", "start"],
        ["canary"],
    ],
)
def test_bad_canary_arguments_are_usage_errors(cli_settings, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert not (cli_settings.indexes_dir / layout.CANARY_FILE).exists()


def test_unknown_model_versions_and_missing_history_publish_nothing(cli_settings, capsys):
    settings = cli_settings
    _serve_champion(settings)
    assert cli.main(["canary", "start", "42"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert cli.main(["canary", "start", "challenger"]) == 2  # an alias nobody set
    assert "no alias 'challenger'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="share"):
        start_canary(settings, 2, share=2.0)
    import shutil

    shutil.rmtree(settings.curated_dir)
    with pytest.raises(NoCanary, match="curated"):
        start_canary(settings, 2)
    assert [p.name for p in layout.version_dirs(settings.indexes_dir)] == ["v0001"]
    assert layout.read_canary(settings.indexes_dir) is None and current_version(settings) == "v0001"
