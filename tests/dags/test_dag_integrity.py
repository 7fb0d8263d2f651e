"""DAG integrity: every DAG file imports cleanly, is configured safely and stays light at parse time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
    chain = ["resolve_day", "validate", "features", "train", "train_ranker", "canary", "publish", "drift_check"]
    for upstream, downstream in zip(chain, chain[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert {"send_alert", "retrain_request", "trigger_retrain"} <= set(dag.task_ids)
    assert "trigger_retrain" in dag.get_task("retrain_request").downstream_task_ids
    assert dag.get_task("trigger_retrain").trigger_dag_id == "graphrec_nightly"
    assert set(dag.params.keys()) >= {"ds", "window_days", "epochs", "force_publish", "trigger_reason", "drift_report"}


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


def test_model_param_offers_every_retriever_kind(dagbag):
    from airflow.sdk.definitions.param import ParamValidationError

    from graphrec.settings import RETRIEVER_MODELS, get_settings

    param = dagbag.get_dag("graphrec_nightly").params.get_param("model")
    assert param.schema["enum"] == ["lightgcn", "mf", "gfcf", "popularity"] == list(RETRIEVER_MODELS)
    assert param.value == get_settings().training.model and param.description
    assert param.resolve("gfcf") == "gfcf"
    with pytest.raises(ParamValidationError):
        param.resolve("svd")


def _with_params(monkeypatch, callable_, params):
    """Run a TaskFlow callable outside Airflow with ``params`` as its context's params."""
    monkeypatch.setitem(callable_.__globals__, "get_current_context", lambda: {"params": params})


def test_train_passes_the_model_and_the_drift_retrain_keeps_it(dagbag, monkeypatch):
    import training.retriever

    dag = dagbag.get_dag("graphrec_nightly")
    params = {"model": "gfcf", "window_days": 14, "epochs": 30}
    calls = []
    no_result = SimpleNamespace(to_xcom=dict)  # what the task hands to XCom: {}
    monkeypatch.setattr(
        training.retriever, "train_retriever", lambda *args, **kwargs: calls.append(kwargs) or no_result
    )
    train = dag.get_task("train").python_callable
    _with_params(monkeypatch, train, params)
    train({"ds": "2025-01-08", "reason": "schedule"}, {})
    assert calls[0]["model"] == "gfcf"

    import dataclasses
    import datetime as dt
    from pathlib import Path

    from monitoring.monitor import MonitorResult
    from monitoring.policy import Decision

    retrain_request = dag.get_task("retrain_request").python_callable
    _with_params(monkeypatch, retrain_request, params)
    decision = Decision(
        ds=dt.date(2025, 1, 8),
        status="alert",
        fired=["item_popularity"],
        watch=[],
        insufficient=[],
        severity="warning",
        main_signal="item_popularity",
        send_email=True,
        trigger_retrain=True,
        retrain_reason="drift on 2025-01-08, warning: item_popularity 0.61",
        cooldown_until=dt.date(2025, 1, 11),
        episode_id="drift-2025-01-08",
        episode_since=dt.date(2025, 1, 8),
        explanation=[],
        summary="",
        verdicts=[],
    )
    monitored = MonitorResult(
        ds=dt.date(2025, 1, 8),
        status="alert",
        decision=decision,
        signals=[],
        reference_days=[],
        rows_current=0,
        rows_reference=0,
        report_dir=Path("/r/ds=2025-01-08"),
        reports={},
        html=Path("/r/ds=2025-01-08/data.html"),
        reason=None,
    )
    conf = retrain_request({"ds": "2025-01-08"}, monitored.to_xcom())
    assert conf["model"] == "gfcf" and conf["trigger_reason"].startswith("drift on 2025-01-08")
    assert conf["drift_report"] == "/r/ds=2025-01-08/data.html" and conf["drift_episode"] == "drift-2025-01-08"
    from airflow.sdk.exceptions import AirflowSkipException

    held = dataclasses.replace(decision, status="ongoing", trigger_retrain=False)
    with pytest.raises(AirflowSkipException, match="cooling down until 2025-01-11"):
        retrain_request({"ds": "2025-01-09"}, dataclasses.replace(monitored, status="ongoing", decision=held).to_xcom())

    # The drift-triggered run records its trigger in MLflow: the tags reach the trainer.
    train({"ds": "2025-01-08", "reason": "drift: x", "tags": {"trigger": "drift", "drift_report": "/r"}}, {})
    assert calls[-1]["tags"] == {"trigger": "drift", "drift_report": "/r"}


def test_every_task_emails_on_failure_and_retry(dagbag):
    """Airflow failure and retry emails on every task of every DAG (monitoring.alerts)."""
    assert dagbag.dags
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            for hook in ("on_failure_callback", "on_retry_callback"):
                callbacks = getattr(task, hook)
                callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
                names = [getattr(c, "__name__", "") for c in callbacks if c]
                assert any(n.startswith("email_on_") for n in names), (dag.dag_id, task.task_id, hook, names)


def test_trigger_form_params_are_documented(dagbag):
    dag = dagbag.get_dag("graphrec_nightly")
    for name in ("ds", "window_days", "model", "epochs", "force_publish", "dry_run"):
        param = dag.params.get_param(name)
        assert param.description, name
        assert f"**{name}**" in dag.doc_md, f"{name} is missing from the DAG's docs table"
    assert dag.params.get_param("dry_run").value is False


def test_validate_task_fails_on_a_quarantined_or_missing_day(dagbag, tmp_path, monkeypatch):
    """A re-run of a quarantined day, or a day that never landed, does not skip its way to green."""
    from airflow.sdk.exceptions import AirflowFailException

    from graphrec import settings as settings_module
    from ingest.simulator import SimulationConfig, simulate
    from validation.partition import validate_partition

    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GRAPHREC_VALIDATION__DATA_DOCS", "false")
    settings_module.get_settings.cache_clear()
    try:
        settings = settings_module.get_settings()
        cfg = SimulationConfig(n_users=60, n_items=40, days=1, events_per_day=200, drift_day=None, corrupt_day=1)
        simulate(cfg, settings.landing_dir)
        assert validate_partition(settings, cfg.day(1)).status == "quarantined"
        validate = dagbag.get_dag("graphrec_nightly").get_task("validate").python_callable

        with pytest.raises(AirflowFailException, match="was quarantined at .* To re-land it"):
            validate({"ds": cfg.day(1).isoformat()})
        with pytest.raises(AirflowFailException, match="no data landed for 2031-01-01"):
            validate({"ds": "2031-01-01"})
    finally:
        settings_module.get_settings.cache_clear()
