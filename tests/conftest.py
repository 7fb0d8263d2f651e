"""Test-wide environment: Airflow and graphrec never touch the developer's real homes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="graphrec-test-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
os.environ.setdefault("GRAPHREC_HOME", str(Path(tempfile.mkdtemp(prefix="graphrec-test-home-"))))
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite) for this test session."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return _AIRFLOW_HOME


# Tests `make test-unit` leaves out: each of these modules trains models, materializes Feast,
# runs Great Expectations over whole simulated runs or starts subprocesses (seconds per test).
# `make test` runs them all. Measured with `pytest --durations`; keep the unit loop under 3 minutes.
SLOW_MODULES = {
    "tests/features/test_features_historical.py",
    "tests/features/test_features_materialize.py",
    "tests/features/test_features_online.py",
    "tests/features/test_features_store.py",
    "tests/monitoring/test_monitoring_monitor.py",
    "tests/serving/test_serving_canary_cli.py",
    "tests/serving/test_serving_canary_gate.py",
    "tests/serving/test_serving_canary_retriever.py",
    "tests/serving/test_serving_publish_kill.py",
    "tests/serving/test_serving_ranker.py",
    "tests/serving/test_serving_rollback.py",
    "tests/training/test_training_distributed.py",
    "tests/training/test_training_models.py",
    "tests/training/test_training_pyfunc_ranker.py",
    "tests/training/test_training_registry.py",
    "tests/training/test_training_retriever_mlflow.py",
    "tests/training/test_training_warm_start.py",
    "tests/validation/test_validation_contract_corpus.py",
    "tests/validation/test_validation_partition.py",
}
SLOW_TESTS = {
    "tests/app/test_app_land.py::test_movielens_loads_through_the_contract_with_nothing_quarantined",
    "tests/ingest/test_ingest_gowalla.py::test_full_split_lands_without_bad_rows",
}


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parents[1]
    for item in items:
        module = item.path.relative_to(root).as_posix()
        if module in SLOW_MODULES or f"{module}::{item.originalname}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
