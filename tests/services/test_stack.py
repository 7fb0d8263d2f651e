"""The services profile on real servers: what ``make up`` starts, exercised as users use it.

One stack for the module, started by the same :class:`app.stack.ServicesStack` that
``make up`` uses, on this machine's PostgreSQL and Redis (own databases and Redis database
numbers, dropped afterwards): Airflow's API server, scheduler, DAG processor and triggerer
on a PostgreSQL metadata database with the CeleryExecutor and two Celery workers (Redis
broker), the MLflow server on PostgreSQL, the recommendation service reading Feast from
Redis, and the loopback mail sink. A tiny clean simulated lake; the days before the last
are curated up front so that the nightly run trains.

Skipped, with how to start them, when PostgreSQL or Redis is unreachable. The browser test
is skipped (with how to install it) when no Chromium is installed.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from pathlib import Path

import httpx
import pytest

from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate

pytestmark = [pytest.mark.services, pytest.mark.e2e]

DAG_ID = "graphrec_nightly"
CONFIG = SimulationConfig(
    n_users=300, n_items=150, days=4, events_per_day=1500, drift_day=None, corrupt_day=None, seed=7
)
LAST_DAY = CONFIG.day(CONFIG.days).isoformat()
FEAST_DB, CELERY_DB = 14, 15


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg(settings: Settings, name: str):
    import psycopg2

    return psycopg2.connect(f"{settings.servers.postgres_url}/{settings.servers.database_prefix}_{name}")


def _query(settings: Settings, name: str, sql: str, args=()) -> list[tuple]:
    conn = _pg(settings, name)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    import redis

    from app.services import ServicesError, check_servers, drop_databases
    from app.stack import ServicesStack
    from validation import validate_partition

    home = tmp_path_factory.mktemp("stack") / "home"
    settings = Settings(
        home=home,
        profile="services",
        servers={
            "database_prefix": f"graphrec_t{secrets.token_hex(3)}",
            "feast_redis_db": FEAST_DB,
            "celery_redis_db": CELERY_DB,
        },
        airflow={"port": _free_port()},
        mlflow={"port": _free_port()},
        serve={"port": _free_port()},
        alerts={"smtp_port": _free_port(), "recipients": ["oncall@localhost"]},
    )
    try:
        check_servers(settings)
    except ServicesError as exc:
        pytest.skip(
            f"{exc}. The services tests need PostgreSQL on 127.0.0.1:5432 (user postgres) and Redis "
            "on 127.0.0.1:6379, or GRAPHREC_SERVERS__POSTGRES_URL / GRAPHREC_SERVERS__REDIS_URL pointing at them."
        )
    for db in (FEAST_DB, CELERY_DB):
        redis.Redis.from_url(f"{settings.servers.redis_url}/{db}").flushdb()
    simulate(CONFIG, settings.landing_dir)
    for index in range(1, CONFIG.days):
        outcome = validate_partition(settings, CONFIG.day(index), profile="backfill")
        assert outcome.status == "curated", outcome.message()

    services = ServicesStack(settings)
    try:
        info = services.up(timeout=300)
        yield services, info
    finally:
        services.down()
        drop_databases(settings)
        for db in (FEAST_DB, CELERY_DB):
            redis.Redis.from_url(f"{settings.servers.redis_url}/{db}").flushdb()


@pytest.fixture(scope="module")
def client(stack):
    from app.airflow_local import AirflowClient
    from app.services import service_secrets

    services, info = stack
    client = AirflowClient(info["airflow"], "admin", service_secrets(services.settings)["admin_password"])
    # Unpausing lets the scheduler create its run for the latest 02:00 slot (no partition
    # for that day: it skips); let it finish so that the runs below start at once.
    client.wait_idle(DAG_ID, timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="module")
def rest_run(stack, client):
    """The nightly DAG triggered through the REST API with a conf, run by the scheduler on Celery."""
    conf = {"ds": LAST_DAY, "window_days": CONFIG.days, "epochs": 3, "force_publish": True}
    run_id = f"rest-{secrets.token_hex(3)}"
    client.trigger(DAG_ID, logical_date=None, conf=conf, run_id=run_id)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        run = next(r for r in client.runs(DAG_ID) if r["dag_run_id"] == run_id)
        if run["state"] in ("success", "failed"):
            break
        time.sleep(3)
    states = {ti["task_id"]: ti["state"] for ti in client.task_instances(DAG_ID, run_id)}
    return {"run": run, "conf": conf, "states": states, "run_id": run_id}


def _worker_tasks(services) -> dict[str, list[tuple[str, str]]]:
    """(run_id, task_id) of every workload each Celery worker executed, from its log."""
    pattern = re.compile(r"Executing workload in Celery: .*?task_id='([^']+)', dag_id='[^']+', run_id='([^']+)'")
    out = {}
    for process in services.processes():
        if process.name.startswith("celery-worker"):
            text = Path(process.log).read_text(errors="replace")
            out[process.name] = [(m.group(2), m.group(1)) for m in pattern.finditer(text)]
    return out


def test_unauthenticated_calls_are_refused(stack):
    _, info = stack
    base = info["airflow"]
    http = httpx.Client(base_url=base, timeout=60)  # the first calls can be slow on a busy machine
    assert http.get("/api/v2/dags").status_code == 401
    assert http.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None}).status_code == 401
    wrong = http.post("/auth/token", json={"username": "admin", "password": "admin"})
    assert wrong.status_code in (401, 403), wrong.text
    forged = http.get("/api/v2/dags", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code in (401, 403), forged.text
    http.close()


def test_no_password_in_the_repository(stack):
    services, _ = stack
    secrets_file = services.settings.services_dir / "secrets.json"
    assert secrets_file.stat().st_mode & 0o077 == 0, "secrets readable by others"
    from app.services import service_secrets

    password = service_secrets(services.settings)["admin_password"]
    assert len(password) >= 16
    root = Path(__file__).resolve().parents[2]
    assert not any(password in p.read_text(errors="ignore") for p in root.glob("**/*.py") if ".venv" not in p.parts)


def test_airflow_metadata_lives_in_postgres(stack, client):
    services, _ = stack
    dags = _query(services.settings, "airflow", "SELECT dag_id, is_paused FROM dag WHERE dag_id = %s", (DAG_ID,))
    assert dags == [(DAG_ID, False)]
    assert not (services.settings.airflow_home / "airflow.db").exists()


def test_bad_params_are_rejected_with_the_schema_message(client):
    with pytest.raises(RuntimeError, match=r"400.*epochs|epochs.*400"):
        client.trigger(DAG_ID, logical_date=None, conf={"epochs": 0})
    with pytest.raises(RuntimeError, match="400"):
        client.trigger(DAG_ID, logical_date=None, conf={"model": "word2vec"})


def test_rest_triggered_run_completes_on_two_celery_workers(stack, client, rest_run):
    services, info = stack
    run, states = rest_run["run"], rest_run["states"]
    assert run["state"] == "success", (states, services.log_dir)
    assert {k: run["conf"].get(k) for k in rest_run["conf"]} == rest_run["conf"]
    for task in ("resolve_day", "validate", "features", "train", "train_ranker", "canary", "publish", "drift_check"):
        assert states[task] == "success", states
    train = client.xcom(DAG_ID, rest_run["run_id"], "train")
    assert train["epochs_run"] <= 3, train
    # Two Celery workers answered, and the run's tasks were executed through them.
    assert len(info["celery_workers"]) == 2, info
    executed = _worker_tasks(services)
    assert len(executed) == 2
    ours = {task for tasks in executed.values() for run_id, task in tasks if run_id == rest_run["run_id"]}
    assert {t for t, s in states.items() if s == "success"} <= ours, (ours, states)


def test_mlflow_registry_on_postgres_with_the_alias_flow(stack, client, rest_run):
    from training import registry

    services, _ = stack
    settings = services.settings
    assert rest_run["run"]["state"] == "success"
    assert settings.tracking_uri == f"http://127.0.0.1:{settings.mlflow.port}"
    rows = dict(
        ((name, alias), version)
        for name, alias, version in _query(
            settings, "mlflow", "SELECT name, alias, version FROM registered_model_aliases"
        )
    )
    assert rows[(settings.mlflow.retriever_model_name, "challenger")] == 1
    # force_publish: the first version becomes champion whatever the gate says of it.
    assert rows[(settings.mlflow.retriever_model_name, "champion")] == 1
    # The same through the MLflow server the tasks used.
    assert registry.get_alias_version(settings, registry.CHAMPION) == 1
    tags = registry.client_for(settings).get_model_version(settings.mlflow.retriever_model_name, "1").tags
    canary = client.xcom(DAG_ID, rest_run["run_id"], "canary")
    assert canary["promoted"]
    assert tags["canary.decision"] == ("forced" if canary["forced"] else "promoted"), (tags, canary["reason"])
    # The artifacts went through the server to its artifact store under home.
    assert any(settings.artifacts_dir.rglob("*")), "no artifact stored by the MLflow server"


def test_feast_materializes_into_redis_and_serves_online_reads(stack, rest_run):
    import pandas as pd
    import redis

    from features.online import OnlineFeatures
    from features.ranker_columns import USER_COUNTERS
    from features.store import feature_store
    from graphrec import contract

    services, info = stack
    settings = services.settings
    assert rest_run["run"]["state"] == "success"
    assert redis.Redis.from_url(f"{settings.servers.redis_url}/{FEAST_DB}").dbsize() > 0
    tables = {r[0] for r in _query(settings, "feast", "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert "feature_views" in tables, tables
    store = feature_store(settings)
    assert store.config.online_store.type == "redis"
    assert not (settings.feast_dir / "online_store.db").exists() and not (settings.feast_dir / "registry.db").exists()
    events = pd.read_parquet(settings.curated_dir / f"ds={LAST_DAY}" / "interactions.parquet")
    users = sorted(int(u) for u in events[contract.USER_ID].unique())[:20]
    reader = OnlineFeatures(settings)
    frame = pd.DataFrame([reader.user_features(u) for u in users])
    counters = [c for c in USER_COUNTERS if c in frame.columns]
    assert counters and frame[counters].notna().all().all(), frame.head()
    recent = reader.recent_items(users)
    assert all(recent[u] for u in users)
    # The service re-ranks with features read from Redis (nothing degraded), once it has
    # loaded the published version (what its readiness probe reports).
    from serving.versions import current_version

    published, deadline, ready = current_version(settings), time.monotonic() + 180, {}
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{info['service']}/readyz", timeout=30).json()
        except httpx.HTTPError:
            ready = {}
        if ready.get("status") == "ready" and ready.get("index_version") == published:
            break
        time.sleep(1)
    assert ready.get("index_version") == published, ready
    answers = [httpx.get(f"{info['service']}/recommend/{u}", params={"k": 5}, timeout=30).json() for u in users]
    assert all(a["items"] for a in answers), answers[:2]
    assert all(a["reranked"] and not a["degraded"] for a in answers), answers[:2]


def test_ui_login_trigger_form_and_a_dry_run(stack, client, rest_run, tmp_path):
    """Headless Chromium: sign in, open the trigger form, set Params, trigger; the run completes."""
    from urllib.parse import quote

    from tests.services.airflow_ui import (
        launch,
        login,
        new_run_id,
        save_page,
        skip_without_chromium,
        trigger_from_form,
        ui_step,
        wait_for_run,
    )

    skip_without_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright: make install")
    from app.services import service_secrets
    from serving.versions import current_version
    from training import registry

    services, info = stack
    settings = services.settings
    champion_before, index_before = registry.get_alias_version(settings, registry.CHAMPION), current_version(settings)
    form = {"ds": LAST_DAY, "epochs": 2, "dry_run": True}
    before = {r["dag_run_id"] for r in client.runs(DAG_ID)}
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            login(page, info["airflow"], "admin", service_secrets(settings)["admin_password"], artifacts=tmp_path)
            ui_run_id = trigger_from_form(page, info["airflow"], DAG_ID, form, artifacts=tmp_path)
        finally:
            browser.close()
    assert new_run_id(client, DAG_ID, before) == ui_run_id
    run = wait_for_run(client, DAG_ID, ui_run_id, timeout=600)
    states = {ti["task_id"]: ti["state"] for ti in client.task_instances(DAG_ID, ui_run_id)}
    assert run["state"] == "success", (states, services.log_dir)
    assert {k: run["conf"].get(k) for k in form} == form, run["conf"]
    # A dry run judged a new challenger but changed nothing that serves.
    canary = client.xcom(DAG_ID, ui_run_id, "canary")
    assert canary["dry_run"] is True and canary["promoted"] is False, canary
    assert states["publish"] == "skipped" and states["drift_check"] == "skipped", states
    # The run says what happened: its note (written by the tasks) carries the data and canary verdicts.
    lines = run["note"].splitlines()
    assert lines[0].startswith("canary: dry run: would "), run["note"]  # the verdict first: the UI shows it
    assert lines[1].startswith("data: ") and "curated" in lines[1], run["note"]
    # ... and the UI shows it on the run's page, where an operator looks.
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            login(page, info["airflow"], "admin", service_secrets(settings)["admin_password"], artifacts=tmp_path)
            with ui_step(page, "run-note", tmp_path):
                page.goto(f"{info['airflow']}/dags/{DAG_ID}/runs/{quote(ui_run_id, safe='')}")
                page.get_by_text("canary: dry run: would", exact=False).first.wait_for(timeout=60_000)
            save_page(page, tmp_path, "run-note")
        finally:
            browser.close()
    assert registry.get_alias_version(settings, registry.CHAMPION) == champion_before
    assert current_version(settings) == index_before
    # Both Celery workers have executed tasks by now.
    assert all(_worker_tasks(services).values()), {k: len(v) for k, v in _worker_tasks(services).items()}


def test_down_stops_exactly_what_up_started(stack):
    services, _ = stack
    pids = [p.pid for p in services.processes()]
    assert pids and all(p.alive() for p in services.processes())
    services.down()
    assert services.processes() == []
    assert not any(Path(f"/proc/{pid}").exists() and _not_zombie(pid) for pid in pids)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
