"""Typed settings for every graphrec component, in groups.

All values come from the environment with the ``GRAPHREC_`` prefix: top-level ones as
``GRAPHREC_HOME=/data/graphrec``, a group's as ``GRAPHREC_<GROUP>__<FIELD>`` (for example
``GRAPHREC_TRAINING__EPOCHS=10``, ``GRAPHREC_INDEX__FACTORY=HNSW32``). The groups are in
:mod:`graphrec.settings.groups`; the configuration reference (``docs/configuration.md``)
is generated from their field descriptions (:mod:`graphrec.settings.reference`). The flat
names of graphrec 0.1 (``GRAPHREC_EPOCHS``) still work for one release, with a deprecation
warning (:mod:`graphrec.settings.legacy`).

Nothing is created or connected at import time; :func:`get_settings` builds the object and
the path helpers only compute paths.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from graphrec.settings.groups import (
    RETRIEVER_MODELS,
    AirflowSettings,
    AlertSettings,
    CanarySettings,
    DriftSettings,
    IndexSettings,
    MlflowSettings,
    RankerSettings,
    RetrieverModel,
    ServerSettings,
    ServeSettings,
    Severity,
    TrainingSettings,
    ValidationSettings,
)
from graphrec.settings.legacy import LegacyEnvSource

PROJECT_ROOT = Path(__file__).resolve().parents[2]

Profile = Literal["embedded", "services"]

__all__ = [
    "PROJECT_ROOT",
    "RETRIEVER_MODELS",
    "AirflowSettings",
    "AlertSettings",
    "CanarySettings",
    "DriftSettings",
    "IndexSettings",
    "MlflowSettings",
    "Profile",
    "RankerSettings",
    "RetrieverModel",
    "ServeSettings",
    "ServerSettings",
    "Settings",
    "Severity",
    "TrainingSettings",
    "ValidationSettings",
    "get_settings",
]


class Settings(BaseSettings):
    """Configuration of one graphrec installation.

    The embedded default (``profile=embedded``) needs no server: SQLite for Airflow,
    MLflow and the Feast registry and online store, parquet files for the lake, FAISS
    files on disk and a loopback SMTP sink for alerts. ``profile=services`` runs the same
    code on servers: PostgreSQL for Airflow's metadata, MLflow's backend store and Feast's
    registry; Redis for Feast's online store and the Celery broker; an MLflow server;
    Airflow's CeleryExecutor (see :mod:`app.services`). Only these store addresses
    differ between the two.
    """

    model_config = SettingsConfigDict(env_prefix="GRAPHREC_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(Path("var"), description="Root of the lake, stores, indexes, reports, mail and Airflow home.")
    seed: int = Field(42, description="Seed of every random choice (data splits, sampling, initialisation).")
    profile: Profile = Field(
        "embedded", description="embedded: SQLite files, no server; services: PostgreSQL, Redis, MLflow server, Celery."
    )
    # Where the non-package parts of the project live (editable installs find them).
    dags_folder: Path = Field(PROJECT_ROOT / "dags", description="The Airflow DAGs folder.")
    feature_repo: Path = Field(PROJECT_ROOT / "feature_repo", description="The Feast feature repository.")

    validation: ValidationSettings = Field(default_factory=ValidationSettings, description="The data contract.")
    training: TrainingSettings = Field(default_factory=TrainingSettings, description="The retriever's training.")
    ranker: RankerSettings = Field(default_factory=RankerSettings, description="The BST ranker.")
    canary: CanarySettings = Field(default_factory=CanarySettings, description="The canary gate.")
    index: IndexSettings = Field(default_factory=IndexSettings, description="The FAISS index and publication.")
    serve: ServeSettings = Field(default_factory=ServeSettings, description="The recommendation service.")
    drift: DriftSettings = Field(default_factory=DriftSettings, description="Drift policy and retraining.")
    alerts: AlertSettings = Field(default_factory=AlertSettings, description="Alert email.")
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings, description="MLflow tracking and registry.")
    airflow: AirflowSettings = Field(default_factory=AirflowSettings, description="Airflow.")
    servers: ServerSettings = Field(default_factory=ServerSettings, description="services profile: the servers.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The 0.1 flat names come after the grouped ones: where both are set, the new name wins.
        return init_settings, env_settings, LegacyEnvSource(settings_cls), dotenv_settings, file_secret_settings

    def updated(self, changes: dict[str, Any]) -> Settings:
        """A validated copy with ``changes`` applied; keys are ``field`` or ``group.field``.

        ``settings.updated({"training.epochs": 3, "index.factory": "HNSW32"})``
        """
        data = self.model_dump(exclude_unset=False)
        for key, value in changes.items():
            group, _, field = key.rpartition(".")
            target = data[group] if group else data
            if field not in target:
                raise KeyError(f"no setting {key!r}")
            target[field] = value.model_dump() if hasattr(value, "model_dump") else value
        copy = type(self).model_validate(data)
        fields_set = set(self.model_fields_set) | {k.split(".", 1)[0] for k in changes}
        object.__setattr__(copy, "__pydantic_fields_set__", fields_set)
        return copy

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
    def services(self) -> bool:
        return self.profile == "services"

    def database_url(self, name: str, driver: str = "psycopg2") -> str:
        """services: the SQLAlchemy URL of the database ``<database_prefix>_<name>``."""
        base = self.servers.postgres_url.rstrip("/")
        scheme, rest = base.split("://", 1)
        return f"{scheme.split('+')[0]}+{driver}://{rest}/{self.servers.database_prefix}_{name}"

    @property
    def tracking_uri(self) -> str:
        """Where graphrec's code logs and reads MLflow runs and the registry."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        if self.services:
            return f"http://{_connect_host(self.mlflow.host)}:{self.mlflow.port}"
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    def _sql_store(self, name: str, sqlite_file: Path) -> str:
        """The database ``name`` on PostgreSQL (services) or the SQLite file (embedded)."""
        return self.database_url(name) if self.services else f"sqlite:///{sqlite_file}"

    @property
    def mlflow_backend_store_uri(self) -> str:
        """The MLflow server's backend store (services: PostgreSQL)."""
        return self._sql_store("mlflow", self.mlflow_dir / "mlflow.db")

    @property
    def airflow_database_url(self) -> str:
        return self._sql_store("airflow", self.airflow_home / "airflow.db")

    @property
    def executor(self) -> str:
        return self.airflow.executor or ("CeleryExecutor" if self.services else "LocalExecutor")

    @property
    def celery_broker_url(self) -> str:
        return f"{self.servers.redis_url.rstrip('/')}/{self.servers.celery_redis_db}"

    @property
    def feast_registry_path(self) -> str:
        """Feast's SQL registry: PostgreSQL (services) or a SQLite file under home."""
        return self._sql_store("feast", self.feast_dir / "registry.db")

    @property
    def feast_online_store(self) -> dict:
        """Feast's online store config: Redis (services) or a SQLite file under home."""
        if not self.services:
            return {"type": "sqlite", "path": str(self.feast_dir / "online_store.db")}
        from urllib.parse import urlsplit

        url = urlsplit(self.servers.redis_url)
        parts = [f"{url.hostname or '127.0.0.1'}:{url.port or 6379}", f"db={self.servers.feast_redis_db}"]
        if url.password:
            parts.append(f"password={url.password}")
        return {"type": "redis", "redis_type": "redis", "connection_string": ",".join(parts)}

    @property
    def feast_offline_store(self) -> dict:
        """Feast's offline store config: PostgreSQL (services) or DuckDB over parquet (embedded).

        services: the snapshots are tables in the Feast database (the registry's), read by
        Feast's PostgreSQL offline store; embedded: DuckDB reads the parquet snapshot files
        under home.
        """
        if not self.services:
            return {"type": "duckdb"}
        from urllib.parse import unquote, urlsplit

        url = urlsplit(self.servers.postgres_url)
        return {
            "type": "postgres", "host": url.hostname or "127.0.0.1", "port": url.port or 5432,
            "database": f"{self.servers.database_prefix}_feast", "db_schema": "public",
            "user": unquote(url.username or "postgres"), "password": unquote(url.password or ""),
            "sslmode": "prefer",  # libpq's default (Feast's is "require", which a local server refuses)
        }  # fmt: skip

    @property
    def services_dir(self) -> Path:
        """State of natively started services: pids, logs, generated secrets."""
        return self.root / "services"

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
    def validation_reports_dir(self) -> Path:
        """One JSON record per validation run, by day, plus the Data Docs site."""
        return self.reports_dir / "validation"

    @property
    def data_docs_dir(self) -> Path:
        return self.validation_reports_dir / "data_docs"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"


def _connect_host(host: str) -> str:
    """The address a client on this machine uses for a server listening on ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
