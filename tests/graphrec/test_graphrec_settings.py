from __future__ import annotations

from pathlib import Path

from graphrec.settings import Settings


def test_env_prefix_and_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("GRAPHREC_EPOCHS", "7")
    monkeypatch.setenv("GRAPHREC_ALERT_RECIPIENTS", '["a@x.org", "b@x.org"]')
    settings = Settings()
    assert settings.epochs == 7
    assert settings.alert_recipients == ["a@x.org", "b@x.org"]
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
