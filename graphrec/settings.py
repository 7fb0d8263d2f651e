"""Typed settings for every graphrec component.

All values come from the environment with the ``GRAPHREC_`` prefix (for example
``GRAPHREC_HOME=/data/graphrec``). Nothing is created or connected at import time;
:func:`get_settings` builds the object and the path helpers only compute paths.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Configuration of one graphrec installation.

    The embedded defaults need no server: SQLite for MLflow and Feast, parquet files
    for the lake, FAISS files on disk and a loopback SMTP sink for alerts.
    """

    model_config = SettingsConfigDict(env_prefix="GRAPHREC_", extra="ignore")

    home: Path = Field(Path("var"), description="Root of the lake, stores, indexes, reports and mail.")
    seed: int = 42

    # Where the non-package parts of the project live (editable installs find them).
    dags_folder: Path = PROJECT_ROOT / "dags"
    feature_repo: Path = PROJECT_ROOT / "feature_repo"

    # MLflow
    mlflow_tracking_uri: str | None = Field(None, description="Defaults to SQLite under home.")
    mlflow_experiment: str = "graphrec"
    retriever_model_name: str = "graphrec-retriever"

    # Training
    window_days: int = 14
    holdout_days: int = 1
    epochs: int = 30
    embedding_dim: int = 64
    num_layers: int = 3
    learning_rate: float = 0.01
    batch_size: int = 2048
    weight_decay: float = 1e-4
    top_k: int = 20

    # Canary gate: the challenger may trail the champion's Recall@20 by at most this much.
    canary_tolerance: float = 0.005

    # Publication
    keep_index_versions: int = 5

    # Monitoring and alerts
    drift_share_threshold: float = Field(0.4, description="Share of drifted columns that counts as drift.")
    drift_retrain_window_days: int = 3
    alert_recipients: list[str] = ["mlops@localhost"]
    alert_sender: str = "graphrec@localhost"
    smtp_conn_id: str = "smtp_default"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025

    # Service
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000

    # Paths -----------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def landing_dir(self) -> Path:
        return self.root / "landing"

    @property
    def curated_dir(self) -> Path:
        return self.root / "curated"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def feast_dir(self) -> Path:
        return self.root / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def runs_dir(self) -> Path:
        """Per-day working files handed between pipeline tasks (XCom carries paths)."""
        return self.root / "runs"

    @property
    def indexes_dir(self) -> Path:
        return self.root / "indexes"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
