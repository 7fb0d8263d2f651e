"""Typed settings for every graphrec component.

All values come from the environment with the ``GRAPHREC_`` prefix (for example
``GRAPHREC_HOME=/data/graphrec``). Nothing is created or connected at import time;
:func:`get_settings` builds the object and the path helpers only compute paths.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


Severity = Literal["blocking", "warning", "off"]

#: The retriever kinds ``train_retriever`` can fit (see :mod:`training.models`).
RetrieverModel = Literal["lightgcn", "mf", "gfcf", "popularity"]
RETRIEVER_MODELS: tuple[str, ...] = get_args(RetrieverModel)


class ValidationSettings(BaseModel):
    """The data contract's knobs: severities and the batch-level thresholds.

    Set from the environment with a double underscore, for example
    ``GRAPHREC_VALIDATION__NEW_ITEMS_BLOCK=0.6`` or
    ``GRAPHREC_VALIDATION__SEVERITY='{"duplicate_events": "warning"}'``. The check names
    and their default severities are listed by ``graphrec contract`` (see
    :mod:`validation.checks`).
    """

    severity: dict[str, Severity] = Field(
        default_factory=dict, description="Per-check severity overrides: blocking, warning or off."
    )
    # Batch level: compared with the trailing curated days before the partition.
    trailing_days: int = Field(7, ge=1, description="How many earlier curated days form the reference.")
    min_history_days: int = Field(3, ge=1, description="Batch checks run only with this many earlier days.")
    row_count_warn_ratio: float = Field(2.0, gt=1, description="Warn outside [min/r, max*r] of trailing counts.")
    row_count_block_ratio: float = Field(5.0, gt=1, description="Block outside [min/r, max*r] of trailing counts.")
    new_users_warn: float = Field(0.25, ge=0, le=1, description="Share of events by never-seen users: warn.")
    new_users_block: float = Field(0.5, ge=0, le=1, description="Share of events by never-seen users: block.")
    new_items_warn: float = Field(0.25, ge=0, le=1, description="Share of events on never-seen items: warn.")
    new_items_block: float = Field(0.5, ge=0, le=1, description="Share of events on never-seen items: block.")
    dominance_min_rows: int = Field(1000, ge=1, description="Dominance checks need at least this many rows.")
    user_share_warn: float = Field(0.03, ge=0, le=1, description="Largest share of one user's events: warn.")
    user_share_block: float = Field(0.08, ge=0, le=1, description="Largest share of one user's events: block.")
    item_share_warn: float = Field(0.2, ge=0, le=1, description="Largest share of one item's events: warn.")
    item_share_block: float = Field(0.35, ge=0, le=1, description="Largest share of one item's events: block.")
    # Row level
    future_tolerance_s: int = Field(300, ge=0, description="Clock skew allowed for events 'in the future'.")
    # Items file
    categories: list[str] | None = Field(None, description="Allowed item categories; None: any matching the pattern.")
    category_pattern: str = r"^[A-Za-z0-9][A-Za-z0-9 _&/'.-]{0,63}$"
    # Output
    data_docs: bool = Field(True, description="Write Great Expectations Data Docs (HTML) for every run.")


Profile = Literal["embedded", "services"]


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

    home: Path = Field(Path("var"), description="Root of the lake, stores, indexes, reports and mail.")
    seed: int = 42
    profile: Profile = Field(
        "embedded", description="embedded: SQLite files, no server; services: PostgreSQL, Redis, MLflow server, Celery."
    )

    # Servers of the services profile -----------------------------------------------------
    postgres_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432",
        description="services: the PostgreSQL server (no database); graphrec uses <database_prefix>_airflow, "
        "_mlflow and _feast on it and creates them when missing.",
    )
    database_prefix: str = Field("graphrec", pattern=r"^[a-z][a-z0-9_]{0,40}$", description="services: database names.")
    redis_url: str = Field("redis://127.0.0.1:6379", description="services: the Redis server (no database number).")
    feast_redis_db: int = Field(0, ge=0, le=15, description="services: Redis database of Feast's online store.")
    celery_redis_db: int = Field(1, ge=0, le=15, description="services: Redis database of the Celery broker.")
    airflow_executor: Literal["LocalExecutor", "CeleryExecutor"] | None = Field(
        None, description="Airflow's executor; unset: LocalExecutor (embedded) or CeleryExecutor (services)."
    )
    airflow_parallelism: int | None = Field(
        None,
        ge=1,
        description="Airflow's [core] parallelism (task slots of the whole installation); unset: 2 "
        "embedded (a 2-core machine), 32 services.",
    )
    airflow_preload: bool = Field(
        True,
        description="Start the component that forks Airflow's tasks (the LocalExecutor scheduler, Celery "
        "workers) through app.airflow_preload, which imports the tasks' libraries once so that no task "
        "pays for them (about 0.7 GB more resident memory in that process, shared with its tasks).",
    )
    celery_workers: int = Field(2, ge=1, description="services: Celery workers `graphrec services up` starts.")
    celery_worker_concurrency: int = Field(1, ge=1, description="services: task slots per Celery worker.")
    airflow_host: str = Field("127.0.0.1", description="services: address the Airflow API server and UI listen on.")
    airflow_port: int = Field(8080, ge=1, le=65535, description="services: port of the Airflow API server and UI.")
    airflow_api_url: str | None = Field(
        None, description="Where tasks reach Airflow's execution API; unset: http://127.0.0.1:<airflow_port>."
    )
    airflow_admin_password: SecretStr | None = Field(
        None,
        description="services: password of the Airflow user `admin`; unset: generated once into "
        "<home>/services/secrets.json (mode 600).",
    )
    airflow_jwt_secret: SecretStr | None = Field(None, description="services: shared JWT secret (unset: generated).")
    airflow_secret_key: SecretStr | None = Field(
        None, description="services: API server secret key (unset: generated)."
    )
    airflow_fernet_key: SecretStr | None = Field(
        None, description="services: Fernet key of Airflow (unset: generated)."
    )
    mlflow_host: str = Field("127.0.0.1", description="services: address the MLflow server listens on.")
    mlflow_port: int = Field(5000, ge=1, le=65535, description="services: port of the MLflow server and UI.")

    # Where the non-package parts of the project live (editable installs find them).
    dags_folder: Path = PROJECT_ROOT / "dags"
    feature_repo: Path = PROJECT_ROOT / "feature_repo"

    # Data contract (validation/)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)

    # MLflow
    mlflow_tracking_uri: str | None = Field(
        None, description="Unset: SQLite under home (embedded) or the MLflow server at mlflow_port (services)."
    )
    mlflow_experiment: str = "graphrec"
    retriever_model_name: str = "graphrec-retriever"

    # Training
    retriever_model: RetrieverModel = Field(
        "lightgcn", description="Retriever kind: lightgcn, mf (MF-BPR), gfcf (closed form) or popularity."
    )
    gfcf_k: int = Field(256, ge=1, description="GF-CF: singular vectors kept (capped by the matrix size).")
    gfcf_alpha: float = Field(0.3, ge=0, description="GF-CF: weight of the ideal low-pass filter.")
    window_days: int = 14
    holdout_days: int = 1
    epochs: int = 30
    embedding_dim: int = 64
    num_layers: int = 3
    learning_rate: float = 0.01
    batch_size: int = 2048
    max_steps_per_epoch: int = Field(
        64,
        ge=0,
        description="lightgcn/mf: a graph with more than batch_size x this many edges trains with larger batches, "
        "so an epoch takes at most this many steps (each step propagates over the whole graph; 0: always batch_size). "
        "64 rather than 128: training the L world's full retrain (910k events) took 264 s instead of 384 s, "
        "Recall@20 0.1035 instead of 0.1005; M's 48 s instead of 56 s, 0.1551 instead of 0.1530 "
        "(benchmarks/README.md, make bench-train-steps).",
    )
    loss: Literal["softmax", "bpr"] = Field(
        "softmax",
        description="lightgcn: training objective, full softmax over the items or BPR (mf always uses BPR).",
    )
    weight_decay: float | None = Field(
        None, ge=0, description="L2 strength; unset: the loss's tuned default (softmax 7, BPR 1e-4)."
    )
    init_std: float | None = Field(0.1, gt=0, description="Normal init of the embeddings (unset: PyG's Xavier).")
    temperature: float = Field(0.1, gt=0, description="Softmax loss temperature.")
    item_l2_degree_power: float = Field(
        0.0,
        ge=0,
        description="Softmax loss: item i's L2 weight is max(degree_i, 1)^beta, scaled to average 1 (0: uniform). "
        "1.5 lifts sparse long-tail data (Gowalla Recall@20 0.1786 to 0.1875) but fell behind uniform on MovieLens "
        "(0.1346 to 0.1243, below popularity's 0.1267) and on the simulator's worlds, so uniform is the default "
        "(docs/performance.md).",
    )
    validation_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="lightgcn/mf: share of each user's newest training events kept for early stopping (0: off).",
    )
    eval_every: int = Field(2, ge=0, description="lightgcn/mf: evaluate on the validation split every this many epochs")
    patience: int = Field(
        3, ge=0, description="lightgcn/mf: evaluations without a better validation Recall@20 before stopping (0: off)."
    )
    refit: bool = Field(
        True,
        description="lightgcn/mf: after early stopping, retrain on the whole window for the chosen number of epochs.",
    )
    full_retrain_every_days: int = Field(
        7,
        ge=0,
        description="lightgcn/mf: nightly runs warm-start from the champion's embeddings (same kind, dimension and "
        "layers) and retrain from scratch once the champion's last full retrain (its full_retrain_ds tag) is this "
        "many days old; also always without a champion, on drift-triggered runs and with the DAG Param "
        "full_retrain. 0: always from scratch.",
    )
    warm_start_learning_rate_factor: float = Field(
        0.1,
        gt=0,
        le=1,
        description="lightgcn/mf, warm-started runs: train at learning_rate times this. The champion was early-stopped "
        "where more epochs overfit; at the full rate a warm start carried on into that and lost to a full retrain "
        "(simulator 10,000 x 10,000 at 128 steps an epoch: Recall@20 -0.0086), at a tenth it fine-tunes (+0.0031, a "
        "third of the time).",
    )
    warm_start_eval_every: int = Field(
        1, ge=1, description="lightgcn/mf, warm-started runs: evaluate on the validation split every this many epochs."
    )
    warm_start_patience: int = Field(
        1,
        ge=1,
        description="lightgcn/mf, warm-started runs: evaluations without a better validation Recall@20 "
        "before stopping (when early stopping is on).",
    )
    top_k: int = 20

    # Ranker (BST, training/ranker.py)
    ranker_enabled: bool = Field(True, description="Train the BST ranker after the retriever and serve the pair.")
    ranker_model_name: str = "graphrec-ranker"
    ranker_candidates: int = Field(100, ge=10, description="Retrieved candidates the ranker re-ranks per user.")
    ranker_cuts: int = Field(
        3, ge=1, description="Replays of the holdout inside the training days the ranker learns from (training.ranker)."
    )
    ranker_cut_every_days: int | None = Field(
        None, ge=1, description="Days between replays (unset: holdout_days, so their label windows do not overlap)."
    )
    ranker_proxy_reuse_days: int = Field(
        7,
        ge=0,
        description="The ranker's replayed cuts: a proxy retriever fitted on the events before one cut also "
        "serves later cuts up to this many days after (0: a new proxy per cut).",
    )
    ranker_proxy_warm_epochs: int = Field(
        2,
        ge=1,
        description="Epochs a proxy past ranker_proxy_reuse_days is trained for, warm-started from the "
        "previous cut's proxy on the events before its own cut.",
    )
    ranker_max_users: int = Field(
        2_000, ge=10, description="Users whose candidate lists the ranker trains on (sampled, seeded, above this)."
    )
    ranker_negatives_per_list: int = Field(
        0,
        ge=0,
        description="Negatives per candidate list the BST trains on (sampled, seeded; every positive is "
        "kept; 0: all). Validation and evaluation lists are never sampled. 20 made the ranker's fit ~4x cheaper but "
        "cost MovieLens NDCG@10 (0.1864 to 0.1738, seed 42), so all rows are the default.",
    )
    ranker_epochs: int = Field(10, ge=1, description="BST training epochs (early-stopped on validation AUC).")
    ranker_seq_len: int = Field(20, ge=1, description="Behaviour sequence length of the BST.")
    ranker_k: int = Field(10, ge=1, description="Cut-off of the two-stage metrics (HR@k, NDCG@k).")

    # Canary gate (serving/canary.py): paired bootstrap of per-user Recall@20 deltas.
    canary_tolerance: float = Field(
        0.01,
        ge=0,
        description="Allowed regression: the lower confidence bound of the challenger's mean per-user Recall@20 "
        "delta against the champion must be at least -canary_tolerance.",
    )
    canary_confidence: float = Field(0.95, gt=0, lt=1, description="Two-sided level of the bootstrap interval.")
    canary_bootstrap_samples: int = Field(2000, ge=100, description="Bootstrap resamples of the per-user deltas.")
    canary_coverage_floor: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Sanity floor: the challenger's catalog coverage (distinct items in the evaluated users' "
        "top-20) must be at least this share of the champion's.",
    )
    ranker_canary_tolerance: float = Field(
        0.005, ge=0, description="How far the challenger pair's NDCG@k may trail the champion pair's."
    )

    # Publication and the FAISS index (serving/index.py, serving/publish.py)
    keep_index_versions: int = Field(5, ge=1, description="Published versions kept on disk (rollback targets).")
    index_factory: str = Field(
        "auto",
        description="FAISS index_factory string for the item index (inner product), e.g. Flat, HNSW32, "
        "IVF1024,Flat; auto: Flat up to index_exact_max_items items, index_ann_factory above.",
    )
    index_ann_factory: str = Field(
        "IVF256,Flat",
        description="The factory string auto picks for large catalogs. Not HNSW: with inner products over "
        "embeddings whose norms vary widely (LightGCN's), HNSW32 reached recall@100 0.77 at efSearch 256.",
    )
    index_exact_max_items: int = Field(
        50_000, ge=1, description="auto: catalogs up to this many items get an exact (Flat) index."
    )
    index_search_params: str = Field(
        "efSearch=256,nprobe=128",
        description="faiss.ParameterSpace settings applied to an approximate index at build and load time; "
        "names an index type does not have are ignored.",
    )
    index_recall_k: int = Field(100, ge=1, description="Cut-off of the build-time recall check against exact search.")
    index_recall_floor: float = Field(
        0.95,
        gt=0,
        le=1,
        description="A build whose recall@index_recall_k against exact search is lower is not published.",
    )

    # Live canary in the service: the CANARY pointer names a challenger version.
    live_canary_share: float = Field(
        0.1, ge=0, le=1, description="Default share of users (stable by user-id hash) served by a live canary version."
    )
    live_canary_mode: Literal["split", "shadow"] = Field(
        "split",
        description="split: the share of users is served by the canary; shadow: every request is also scored by "
        "the canary and both answers are logged, the champion's is served.",
    )

    # Monitoring and alerts
    drift_retrain_window_days: int = 3
    drift_policy: Path | None = Field(
        None, description="YAML file of the drift decision policy (default: monitoring/drift_policy.yaml)."
    )
    alert_recipients: list[str] = ["mlops@localhost"]
    alert_sender: str = "graphrec@localhost"
    smtp_conn_id: str = "smtp_default"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025

    # Service
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    serve_workers: int = Field(1, ge=1, description="Service processes (uvicorn workers); metrics are aggregated.")
    serve_threads: int = Field(
        4,
        ge=0,
        description="Handler threads per process for the plain routes (/metrics, /readyz, /healthz, "
        "/version; 0: anyio's default, 40). /recommend and /similar run on the event loop.",
    )

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
        base = self.postgres_url.rstrip("/")
        scheme, rest = base.split("://", 1)
        return f"{scheme.split('+')[0]}+{driver}://{rest}/{self.database_prefix}_{name}"

    @property
    def tracking_uri(self) -> str:
        """Where graphrec's code logs and reads MLflow runs and the registry."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if self.services:
            return f"http://{_connect_host(self.mlflow_host)}:{self.mlflow_port}"
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
        return self.airflow_executor or ("CeleryExecutor" if self.services else "LocalExecutor")

    @property
    def celery_broker_url(self) -> str:
        return f"{self.redis_url.rstrip('/')}/{self.celery_redis_db}"

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

        url = urlsplit(self.redis_url)
        parts = [f"{url.hostname or '127.0.0.1'}:{url.port or 6379}", f"db={self.feast_redis_db}"]
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

        url = urlsplit(self.postgres_url)
        return {
            "type": "postgres", "host": url.hostname or "127.0.0.1", "port": url.port or 5432,
            "database": f"{self.database_prefix}_feast", "db_schema": "public",
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
