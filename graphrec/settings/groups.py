"""The groups of :class:`graphrec.settings.Settings`, one model per part of graphrec.

Each group is read from the environment as ``GRAPHREC_<GROUP>__<FIELD>``, for example
``GRAPHREC_TRAINING__EPOCHS=10`` or ``GRAPHREC_INDEX__FACTORY=HNSW32``. The field
descriptions are the configuration reference (``docs/configuration.md`` is generated from
them by :mod:`graphrec.settings.reference`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Severity = Literal["blocking", "warning", "off"]

#: The retriever kinds ``train_retriever`` can fit (see :mod:`training.models`).
RetrieverModel = Literal["lightgcn", "mf", "gfcf", "popularity"]
RETRIEVER_MODELS: tuple[str, ...] = get_args(RetrieverModel)


class Group(BaseModel):
    """A settings group: unknown fields are an error, so a misspelt name never passes silently."""

    model_config = ConfigDict(extra="forbid")


class ValidationSettings(Group):
    """The data contract's knobs: severities and the batch-level thresholds.

    The check names and their default severities are listed by ``graphrec contract``
    (see :mod:`validation.checks`).
    """

    severity: dict[str, Severity] = Field(
        default_factory=dict,
        description='Per-check severity overrides: blocking, warning or off (JSON, e.g. {"duplicate_events": "warning"}).',
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
    future_tolerance_s: int = Field(300, ge=0, description="Clock skew allowed for events 'in the future' (seconds).")
    id_min: int = Field(0, ge=0, description="Smallest valid user_id / item_id (ids_out_of_range).")
    id_max: int = Field(
        2**53 - 1,
        ge=0,
        le=2**63 - 1,
        description="Largest valid user_id / item_id (ids_out_of_range); the default keeps ids exact in float64 "
        "and JSON numbers.",
    )
    sentinel_ids: list[int] = Field(
        default_factory=lambda: [2**15 - 1, 2**16 - 1, 2**31 - 1, 2**32 - 1, 2**53 - 1],
        description="Id values that upstream systems write as placeholders (type maxima); an id equal to one "
        "and more than twice every other id of its column (this day's and earlier days') is sentinel_ids.",
    )
    # Items file
    categories: list[str] | None = Field(None, description="Allowed item categories; unset: any matching the pattern.")
    category_pattern: str = Field(
        r"^[A-Za-z0-9][A-Za-z0-9 _&/'.-]{0,63}$", description="Regular expression every item category must match."
    )
    # Output
    data_docs: bool = Field(True, description="Write Great Expectations Data Docs (HTML) for every run.")

    @model_validator(mode="after")
    def _id_range_is_ordered(self) -> ValidationSettings:
        if self.id_min > self.id_max:
            raise ValueError(f"id_min ({self.id_min}) is larger than id_max ({self.id_max})")
        return self


class ServerSettings(Group):
    """services profile: the PostgreSQL and Redis servers graphrec's stores live on."""

    postgres_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432",
        description="The PostgreSQL server (no database); graphrec uses <database_prefix>_airflow, _mlflow and "
        "_feast on it and creates them when missing.",
    )
    database_prefix: str = Field(
        "graphrec", pattern=r"^[a-z][a-z0-9_]{0,40}$", description="Prefix of the database names."
    )
    redis_url: str = Field("redis://127.0.0.1:6379", description="The Redis server (no database number).")
    feast_redis_db: int = Field(0, ge=0, le=15, description="Redis database of Feast's online store.")
    celery_redis_db: int = Field(1, ge=0, le=15, description="Redis database of the Celery broker.")


class AirflowSettings(Group):
    """How graphrec runs Airflow: executor, task slots, where its API listens, its secrets."""

    executor: Literal["LocalExecutor", "CeleryExecutor"] | None = Field(
        None, description="Airflow's executor; unset: LocalExecutor (embedded) or CeleryExecutor (services)."
    )
    parallelism: int | None = Field(
        None,
        ge=1,
        description="Airflow's [core] parallelism (task slots of the whole installation); unset: 2 embedded "
        "(a 2-core machine), 32 services.",
    )
    preload: bool = Field(
        True,
        description="Start the component that forks Airflow's tasks (the LocalExecutor scheduler, Celery workers) "
        "through app.airflow_preload, which imports the tasks' libraries (Feast, Great Expectations, Evidently, "
        "PyTorch Geometric, MLflow...) once, so that a task starts in well under a second instead of paying "
        "several seconds of imports (about 0.7 GB more resident memory in that process, shared with its tasks).",
    )
    celery_workers: int = Field(2, ge=1, description="services: Celery workers `graphrec services up` starts.")
    celery_worker_concurrency: int = Field(1, ge=1, description="services: task slots per Celery worker.")
    host: str = Field("127.0.0.1", description="services: address the Airflow API server and UI listen on.")
    port: int = Field(8080, ge=1, le=65535, description="services: port of the Airflow API server and UI.")
    api_url: str | None = Field(
        None, description="Where tasks reach Airflow's execution API; unset: http://127.0.0.1:<port>."
    )
    admin_password: SecretStr | None = Field(
        None,
        description="services: password of the Airflow user `admin`; unset: generated once into "
        "<home>/services/secrets.json (mode 600).",
    )
    jwt_secret: SecretStr | None = Field(
        None, description="services: JWT secret all components share (unset: generated)."
    )
    secret_key: SecretStr | None = Field(None, description="services: API server secret key (unset: generated).")
    fernet_key: SecretStr | None = Field(None, description="services: Fernet key of Airflow (unset: generated).")


class MlflowSettings(Group):
    """MLflow tracking and the registered model names."""

    tracking_uri: str | None = Field(
        None,
        description="Where graphrec logs and reads runs and the registry; unset: SQLite under <home>/mlflow "
        "(embedded) or the MLflow server at <host>:<port> (services).",
    )
    experiment: str = Field("graphrec", description="The MLflow experiment of every run.")
    retriever_model_name: str = Field("graphrec-retriever", description="Registered model of the retriever.")
    ranker_model_name: str = Field("graphrec-ranker", description="Registered model of the BST ranker.")
    host: str = Field("127.0.0.1", description="services: address the MLflow server listens on.")
    port: int = Field(5000, ge=1, le=65535, description="services: port of the MLflow server and UI.")


class TrainingSettings(Group):
    """The retriever's training: data window, model kind and hyperparameters, warm starts.

    Most fields apply to the trained kinds (lightgcn, mf); the DAG's Params default to them.
    """

    model: RetrieverModel = Field(
        "lightgcn",
        description="Retriever kind: lightgcn, mf (MF-BPR), gfcf (closed form) or popularity (default of the "
        "DAG's `model` Param).",
    )
    window_days: int = Field(14, ge=1, description="Curated days a run trains and evaluates on (its window).")
    holdout_days: int = Field(1, ge=1, description="The window's last days, held out for evaluation and the canary.")
    epochs: int = Field(30, ge=0, description="lightgcn/mf: most epochs of a run (early stopping may end it sooner).")
    embedding_dim: int = Field(64, ge=1, description="lightgcn/mf: embedding size.")
    num_layers: int = Field(3, ge=0, description="lightgcn: propagation layers.")
    learning_rate: float = Field(0.01, gt=0, description="lightgcn/mf: Adam's learning rate.")
    batch_size: int = Field(2048, ge=1, description="lightgcn/mf: positive edges per step.")
    max_steps_per_epoch: int = Field(
        64,
        ge=0,
        description="lightgcn/mf: a graph with more than batch_size x this many edges trains with larger batches, "
        "so an epoch takes at most this many steps (each step propagates over the whole graph; 0: always "
        "batch_size). 64 rather than 128 trained the L world's full retrain (910k events) in 264 s instead of "
        "384 s at a better Recall@20 (benchmarks/README.md).",
    )
    loss: Literal["softmax", "bpr"] = Field(
        "softmax",
        description="lightgcn: training objective, full softmax over the items or the paper's BPR (mf always "
        "uses BPR).",
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
        "1.5 lifts sparse long-tail data (Gowalla Recall@20 0.1786 to 0.1875) but fell behind uniform on "
        "MovieLens and on the simulator's worlds (docs/performance.md).",
    )
    validation_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="lightgcn/mf: share of each user's newest training events kept for early stopping (0: off).",
    )
    eval_every: int = Field(
        2, ge=0, description="lightgcn/mf: evaluate on the validation split every this many epochs."
    )
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
        description="lightgcn/mf, warm-started runs: train at learning_rate times this. The champion was "
        "early-stopped where more epochs overfit; at the full rate a warm start lost to a full retrain, at a tenth "
        "it fine-tunes (benchmarks/README.md).",
    )
    warm_start_eval_every: int = Field(
        1, ge=1, description="lightgcn/mf, warm-started runs: evaluate on the validation split every this many epochs."
    )
    warm_start_patience: int = Field(
        1,
        ge=1,
        description="lightgcn/mf, warm-started runs: evaluations without a better validation Recall@20 before "
        "stopping (when early stopping is on).",
    )
    gfcf_k: int = Field(256, ge=1, description="gfcf: singular vectors kept (capped by the matrix size).")
    gfcf_alpha: float = Field(0.3, ge=0, description="gfcf: weight of the ideal low-pass filter.")


class RankerSettings(Group):
    """The BST ranker (training.ranker): its data, its training and its metrics."""

    enabled: bool = Field(
        True, description="Train the BST ranker after the retriever, gate and serve the pair (false: retrieval only)."
    )
    candidates: int = Field(
        100, ge=10, description="Retrieved candidates the ranker re-ranks per user (training, evaluation, serving)."
    )
    cuts: int = Field(3, ge=1, description="Replays of the holdout inside the training days the ranker learns from.")
    cut_every_days: int | None = Field(
        None, ge=1, description="Days between replays (unset: holdout_days, so their label windows do not overlap)."
    )
    proxy_reuse_days: int = Field(
        7,
        ge=0,
        description="A proxy retriever fitted on the events before one replay also serves later replays up to this "
        "many days after (0: a new proxy per replay).",
    )
    proxy_warm_epochs: int = Field(
        2,
        ge=1,
        description="Epochs a proxy past proxy_reuse_days is trained for, warm-started from the previous replay's "
        "proxy on the events before its own cut.",
    )
    max_users: int = Field(
        2_000, ge=10, description="Users whose candidate lists the ranker trains on (sampled, seeded, above this)."
    )
    negatives_per_list: int = Field(
        0,
        ge=0,
        description="Negatives per candidate list the BST trains on (sampled, seeded; every positive is kept; 0: "
        "all). Validation and evaluation lists are never sampled. 20 made the fit ~4x cheaper but cost MovieLens "
        "NDCG@10 (0.1864 to 0.1738), so all rows are the default.",
    )
    epochs: int = Field(10, ge=1, description="BST training epochs (early-stopped on validation AUC).")
    seq_len: int = Field(20, ge=1, description="Behaviour sequence length of the BST.")
    k: int = Field(10, ge=1, description="Cut-off of the two-stage metrics (HR@k, NDCG@k).")


class CanarySettings(Group):
    """The canary gate (serving.canary): paired bootstrap of per-user Recall@20 deltas, and its sanity checks."""

    tolerance: float = Field(
        0.01,
        ge=0,
        description="Allowed regression: the lower confidence bound of the challenger's mean per-user Recall@20 "
        "delta against the champion must be at least -tolerance.",
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="Two-sided level of the bootstrap interval.")
    bootstrap_samples: int = Field(2000, ge=100, description="Bootstrap resamples of the per-user deltas.")
    coverage_floor: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Sanity floor: the challenger's catalog coverage (distinct items in the evaluated users' "
        "top-20) must be at least this share of the champion's.",
    )
    ranker_tolerance: float = Field(
        0.005,
        ge=0,
        description="How far the challenger pair's NDCG@k may trail the champion pair's (and the ranker its own "
        "retriever).",
    )


class IndexSettings(Group):
    """The FAISS item index and publication (serving.index, serving.publish)."""

    keep_versions: int = Field(
        5, ge=1, description="Published versions kept on disk (rollback targets; CURRENT and a live canary are kept)."
    )
    factory: str = Field(
        "auto",
        description="FAISS index_factory string for the item index (inner product), e.g. Flat, HNSW32, "
        "IVF1024,Flat; auto: Flat up to exact_max_items items, ann_factory above.",
    )
    ann_factory: str = Field(
        "IVF256,Flat",
        description="The factory string auto picks for large catalogs. Not HNSW: with inner products over "
        "embeddings whose norms vary widely (LightGCN's), HNSW32 reached recall@100 0.77 at efSearch 256.",
    )
    exact_max_items: int = Field(
        50_000, ge=1, description="auto: catalogs up to this many items get an exact (Flat) index."
    )
    search_params: str = Field(
        "efSearch=256,nprobe=128",
        description="faiss.ParameterSpace settings applied to an approximate index at build and load time; names an "
        "index type does not have are ignored.",
    )
    recall_k: int = Field(100, ge=1, description="Cut-off of the build-time recall check against exact search.")
    recall_floor: float = Field(
        0.95,
        gt=0,
        le=1,
        description="A build whose recall@recall_k against exact search is lower is not published.",
    )


class ServeSettings(Group):
    """The recommendation service and its live canary."""

    host: str = Field("127.0.0.1", description="Address the service listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the service.")
    workers: int = Field(1, ge=1, description="Service processes (uvicorn workers); metrics are aggregated.")
    threads: int = Field(
        4,
        ge=0,
        description="Handler threads per process for the plain routes (/metrics, /readyz, /healthz, /version; 0: "
        "anyio's default, 40). /recommend and /similar run on the event loop.",
    )
    live_canary_share: float = Field(
        0.1, ge=0, le=1, description="Default share of users (stable by user-id hash) a live canary version serves."
    )
    live_canary_mode: Literal["split", "shadow"] = Field(
        "split",
        description="split: the share of users is served by the canary; shadow: every request is also scored by the "
        "canary and both answers are logged, the champion's is served.",
    )


class DriftSettings(Group):
    """The drift monitor's policy and the retraining it triggers."""

    policy: Path | None = Field(
        None,
        description="YAML file of the drift decision policy (thresholds, persistence, cooldown); a file only needs "
        "the keys it changes (default: monitoring/drift_policy.yaml).",
    )
    retrain_window_days: int = Field(3, ge=1, description="Window of a drift-triggered retrain, in days.")


class AlertSettings(Group):
    """Alert email: who gets it and through which SMTP server."""

    recipients: list[str] = Field(["mlops@localhost"], description="Alert recipients (a JSON list).")
    sender: str = Field("graphrec@localhost", description="From address of alert email.")
    smtp_conn_id: str = Field("smtp_default", description="Airflow connection alert email goes through.")
    smtp_host: str = Field("127.0.0.1", description="The SMTP server alerts go to.")
    smtp_port: int = Field(8025, ge=1, le=65535, description="Port of the SMTP server.")
    airflow_url: str | None = Field(
        None,
        description="Public base URL of the Airflow UI that links in email point to (e.g. https://airflow.example.com); "
        "unset: http://<airflow.host>:<airflow.port>.",
    )
    reports_url: str | None = Field(
        None,
        description="Public base URL under which GRAPHREC_HOME/reports/ is served (e.g. https://ops.example.com/reports); "
        "unset: links in email are file:// paths on the machine that wrote them.",
    )
