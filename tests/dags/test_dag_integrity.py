"""DAG integrity: every DAG file imports cleanly, is configured safely and stays light at parse time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
HEAVY = ("torch", "torch_geometric", "faiss", "feast", "great_expectations", "evidently", "mlflow")


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_nightly_dag_shape(dagbag):
    dag = dagbag.get_dag("graphrec_nightly")
    assert dag is not None
    assert dag.timetable.expression == "0 2 * * *"
    assert str(dag.timetable.timezone) in ("UTC", "Timezone('UTC')")
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    chain = ["resolve_day", "validate", "features", "train", "canary", "publish", "drift_check"]
    for upstream, downstream in zip(chain, chain[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert {"drift_detected", "send_alert", "trigger_retrain"} <= set(dag.task_ids)
    assert dag.get_task("trigger_retrain").trigger_dag_id == "graphrec_nightly"
    assert set(dag.params.keys()) >= {"ds", "window_days", "epochs", "force_publish", "trigger_reason"}


def test_retries_set_on_every_task(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            # Validation failures are data problems, not transient errors: no retries there.
            if task.task_id == "validate":
                assert task.retries == 0
            else:
                assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries"


def test_dag_files_do_not_import_heavy_libraries_at_parse_time():
    code = (
        "import sys, runpy, pathlib\n"
        f"sys.path.insert(0, {str(DAGS_FOLDER)!r})\n"
        f"for f in sorted(pathlib.Path({str(DAGS_FOLDER)!r}).glob('*.py')): runpy.run_path(str(f))\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1:] in ([""], []), result.stdout
