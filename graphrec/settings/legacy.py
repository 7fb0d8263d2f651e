"""The flat environment variables of graphrec 0.1 (``GRAPHREC_EPOCHS``...), still read for one
release with a deprecation warning (a ``FutureWarning``, which Python shows by default); each maps to a field of a settings group.

``GRAPHREC_EPOCHS=10`` now reads ``GRAPHREC_TRAINING__EPOCHS=10``; where both are set, the
new name wins. The table is also the changelog of the rename (docs/configuration.md lists it).
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

_RENAMES_BY_GROUP: dict[str, dict[str, str]] = {
    "servers": {n: n for n in ("postgres_url", "database_prefix", "redis_url", "feast_redis_db", "celery_redis_db")},
    "airflow": {
        "airflow_executor": "executor",
        "airflow_parallelism": "parallelism",
        "airflow_preload": "preload",
        "celery_workers": "celery_workers",
        "celery_worker_concurrency": "celery_worker_concurrency",
        "airflow_host": "host",
        "airflow_port": "port",
        "airflow_api_url": "api_url",
        "airflow_admin_password": "admin_password",
        "airflow_jwt_secret": "jwt_secret",
        "airflow_secret_key": "secret_key",
        "airflow_fernet_key": "fernet_key",
    },
    "mlflow": {
        "mlflow_tracking_uri": "tracking_uri",
        "mlflow_experiment": "experiment",
        "retriever_model_name": "retriever_model_name",
        "ranker_model_name": "ranker_model_name",
        "mlflow_host": "host",
        "mlflow_port": "port",
    },
    "training": {
        "retriever_model": "model",
        **{
            n: n
            for n in (
                "window_days",
                "holdout_days",
                "epochs",
                "embedding_dim",
                "num_layers",
                "learning_rate",
                "batch_size",
                "max_steps_per_epoch",
                "loss",
                "weight_decay",
                "init_std",
                "temperature",
                "item_l2_degree_power",
                "validation_fraction",
                "eval_every",
                "patience",
                "refit",
                "full_retrain_every_days",
                "warm_start_learning_rate_factor",
                "warm_start_eval_every",
                "warm_start_patience",
                "gfcf_k",
                "gfcf_alpha",
            )
        },
    },
    "ranker": {
        f"ranker_{n}": n
        for n in (
            "enabled",
            "candidates",
            "cuts",
            "cut_every_days",
            "proxy_reuse_days",
            "proxy_warm_epochs",
            "max_users",
            "negatives_per_list",
            "epochs",
            "seq_len",
            "k",
        )
    },
    "canary": {
        "canary_tolerance": "tolerance",
        "canary_confidence": "confidence",
        "canary_bootstrap_samples": "bootstrap_samples",
        "canary_coverage_floor": "coverage_floor",
        "ranker_canary_tolerance": "ranker_tolerance",
    },
    "index": {
        "keep_index_versions": "keep_versions",
        **{
            f"index_{n}": n
            for n in ("factory", "ann_factory", "exact_max_items", "search_params", "recall_k", "recall_floor")
        },
    },
    "serve": {
        "serve_host": "host",
        "serve_port": "port",
        "serve_workers": "workers",
        "serve_threads": "threads",
        "live_canary_share": "live_canary_share",
        "live_canary_mode": "live_canary_mode",
    },
    "drift": {"drift_policy": "policy", "drift_retrain_window_days": "retrain_window_days"},
    "alerts": {
        "alert_recipients": "recipients",
        "alert_sender": "sender",
        "smtp_conn_id": "smtp_conn_id",
        "smtp_host": "smtp_host",
        "smtp_port": "smtp_port",
    },
}

#: Old flat field name -> (group, field).
RENAMED: dict[str, tuple[str, str]] = {
    old: (group, new) for group, names in _RENAMES_BY_GROUP.items() for old, new in names.items()
}
#: Old names that are gone, with what to do instead.
REMOVED: dict[str, str] = {"top_k": "nothing read it; cut-offs are fixed per metric (Recall@20, NDCG@k)"}


def new_env_name(old: str) -> str:
    group, field = RENAMED[old]
    return f"GRAPHREC_{group.upper()}__{field.upper()}"


def _decode(value: str) -> Any:
    """A flat variable's value as pydantic-settings would give it for a complex field (JSON), else the string."""
    try:
        return json.loads(value) if value[:1] in "[{" else value
    except ValueError:
        return value


class LegacyEnvSource(PydanticBaseSettingsSource):
    """Reads the 0.1 flat ``GRAPHREC_*`` variables into their groups, with a ``DeprecationWarning`` each."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False  # unused: __call__ reads the whole environment at once

    def __call__(self) -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = {}
        for old, (group, field) in RENAMED.items():
            value = os.environ.get(f"GRAPHREC_{old.upper()}")
            if value is None:
                continue
            warnings.warn(
                f"GRAPHREC_{old.upper()} is deprecated and will stop working in the next release; "
                f"set {new_env_name(old)} instead",
                FutureWarning,  # shown by default: the people who set variables are users, not developers
                stacklevel=2,
            )
            found.setdefault(group, {})[field] = _decode(value)
        for old, reason in REMOVED.items():
            if f"GRAPHREC_{old.upper()}" in os.environ:
                warnings.warn(f"GRAPHREC_{old.upper()} is ignored: {reason}", FutureWarning, stacklevel=2)
        return found
