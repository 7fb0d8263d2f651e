from __future__ import annotations

import warnings
from pathlib import Path

import pydantic
import pytest

from graphrec.settings import Settings
from graphrec.settings.legacy import RENAMED, new_env_name
from graphrec.settings.reference import render

ROOT = Path(__file__).resolve().parents[2]


def test_env_prefix_groups_and_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("GRAPHREC_TRAINING__EPOCHS", "7")
    monkeypatch.setenv("GRAPHREC_ALERTS__RECIPIENTS", '["a@x.org", "b@x.org"]')
    settings = Settings()
    assert settings.training.epochs == 7
    assert settings.alerts.recipients == ["a@x.org", "b@x.org"]
    root = (tmp_path / "h").resolve()
    for path in (
        settings.landing_dir,
        settings.curated_dir,
        settings.quarantine_dir,
        settings.feast_dir,
        settings.mlflow_dir,
        settings.indexes_dir,
        settings.reports_dir,
        settings.mail_dir,
    ):
        assert path.parent == root
    assert settings.tracking_uri == f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    assert not root.exists()  # settings never create anything


def test_default_home_is_var_relative_to_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv("GRAPHREC_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings().root == (tmp_path / "var").resolve()
    assert Settings().home == Path("var")


def test_the_flat_names_of_0_1_still_work_with_a_warning_and_lose_to_the_new_ones(monkeypatch):
    monkeypatch.setenv("GRAPHREC_EPOCHS", "7")
    monkeypatch.setenv("GRAPHREC_INDEX_FACTORY", "HNSW32")
    monkeypatch.setenv("GRAPHREC_ALERT_RECIPIENTS", '["a@x.org"]')
    monkeypatch.setenv("GRAPHREC_RANKER_K", "5")
    monkeypatch.setenv("GRAPHREC_RANKER__K", "8")
    with pytest.warns(FutureWarning, match="GRAPHREC_EPOCHS is deprecated.*GRAPHREC_TRAINING__EPOCHS"):
        settings = Settings()
    assert settings.training.epochs == 7
    assert settings.index.factory == "HNSW32"
    assert settings.alerts.recipients == ["a@x.org"]
    assert settings.ranker.k == 8  # the grouped name wins


def test_every_old_name_maps_to_a_real_field():
    settings = Settings()
    for old, (group, field) in RENAMED.items():
        assert hasattr(getattr(settings, group), field), old
        assert new_env_name(old) == f"GRAPHREC_{group.upper()}__{field.upper()}"


def test_no_warning_without_old_names(monkeypatch):
    monkeypatch.setenv("GRAPHREC_TRAINING__EPOCHS", "3")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert Settings().training.epochs == 3


def test_a_misspelt_group_field_is_an_error(monkeypatch):
    with pytest.raises(pydantic.ValidationError, match="epoch"):
        Settings(training={"epoch": 3})


def test_updated_is_a_validated_copy():
    base = Settings(training={"epochs": 5})
    changed = base.updated({"training.epochs": 3, "index.factory": "HNSW32", "seed": 7})
    assert (changed.training.epochs, changed.index.factory, changed.seed) == (3, "HNSW32", 7)
    assert (base.training.epochs, base.index.factory, base.seed) == (5, "auto", 42)
    assert changed.training.embedding_dim == base.training.embedding_dim
    with pytest.raises(KeyError):
        base.updated({"training.nope": 1})
    with pytest.raises(pydantic.ValidationError):
        base.updated({"canary.confidence": 2.0})


def test_the_configuration_reference_is_generated_from_the_code():
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert text == render(), (
        "docs/configuration.md is stale: python -m graphrec.settings.reference > docs/configuration.md"
    )
    for group, field in RENAMED.values():
        assert f"GRAPHREC_{group.upper()}__{field.upper()}" in text
