"""Run Airflow itself on one machine for the embedded default.

Starts the real components (API server, scheduler, DAG processor) as child processes
on a SQLite metadata database under ``GRAPHREC_HOME/airflow`` and talks to them
through Airflow's public REST API, the way the UI does. Scheduled, triggered and
asset-driven runs are all executed by the scheduler, not by this module.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr

from graphrec.settings import Settings

COMPONENTS = ("api-server", "scheduler", "dag-processor")
ACTIVE_STATES = ("queued", "running")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def explicit_settings_env(settings: Settings) -> dict[str, str]:
    """Settings given explicitly (not from defaults) as GRAPHREC_* variables for the tasks.

    Secrets are left out: the components read them from the environment or the services
    profile's secrets file, never from a variable this function prints."""
    env: dict[str, str] = {}
    for name in sorted(settings.model_fields_set - {"home"}):
        value = getattr(settings, name)
        if isinstance(value, BaseModel):  # a group: GRAPHREC_<GROUP>__<FIELD>
            for field in sorted(value.model_fields_set):
                _put(env, f"GRAPHREC_{name.upper()}__{field.upper()}", getattr(value, field))
        else:
            _put(env, f"GRAPHREC_{name.upper()}", value)
    return env


def _put(env: dict[str, str], key: str, value: object) -> None:
    if value is None or isinstance(value, SecretStr):
        return
    env[key] = json.dumps(value) if isinstance(value, list | dict) else str(value)


def airflow_command(settings: Settings, *args: str) -> list[str]:
    """``python -m airflow ARGS``; the component that forks the tasks (the LocalExecutor
    scheduler, a Celery worker) starts through :mod:`app.airflow_preload` instead."""
    forks_tasks = args[:2] == ("celery", "worker") or (
        args[:1] == ("scheduler",) and settings.executor == "LocalExecutor"
    )
    module = "app.airflow_preload" if settings.airflow.preload and forks_tasks else "airflow"
    return [sys.executable, "-m", module, *args]


def airflow_env(settings: Settings, *, api_port: int, smtp_port: int | None = None) -> dict[str, str]:
    """Environment for Airflow's components and the tasks they run, from ``settings``.

    The profile decides the metadata database (SQLite under home, or PostgreSQL) and the
    executor (LocalExecutor, or CeleryExecutor with Redis as broker and the metadata
    database as result backend); everything else is the same in both."""
    home = settings.airflow_home
    api_url = settings.airflow.api_url or f"http://127.0.0.1:{api_port}"
    smtp = {
        "conn_type": "smtp",
        "host": settings.alerts.smtp_host,
        "port": smtp_port or settings.alerts.smtp_port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": settings.alerts.sender, "timeout": 10},
    }
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": settings.executor,
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow.parallelism or (32 if settings.services else 2)),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": api_url.rstrip("/") + "/execution/",
        # Every user logs in: no anonymous access (simple_auth_manager_all_admins stays off).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.airflow_database_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp),
        "GRAPHREC_HOME": str(settings.root),
        **explicit_settings_env(settings),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # MLflow's own handler writes its INFO and WARNING lines to stderr, which Airflow's task
        # logs show at error level; unconfigured, they reach Airflow's handlers at their own level.
        "MLFLOW_CONFIGURE_LOGGING": "false",
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
    }
    if not settings.services:
        # One DAG's tasks run one after another: an idle scheduler loop of 0.2 s instead of 1 s
        # starts each task sooner after the one before (a 3-day demo: 79 s to 63 s).
        env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] = "0.2"
    if settings.executor == "CeleryExecutor":
        env.update(
            {
                "AIRFLOW__CELERY__BROKER_URL": settings.celery_broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + settings.database_url("airflow"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(settings.airflow.celery_worker_concurrency),
            }
        )
    return env


class AirflowClient:
    """A small client of Airflow's REST API v2 (the calls the UI makes)."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=30)
        response = self._http.post("/auth/token", json={"username": username, "password": password})
        response.raise_for_status()
        self._http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, f"/api/v2{path}", **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"Airflow API {method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def scheduler_heartbeat(self) -> dt.datetime | None:
        """The scheduler's latest heartbeat (``/monitor/health``), ``None`` before its first."""
        beat = (self._call("GET", "/monitor/health").get("scheduler") or {}).get("latest_scheduler_heartbeat")
        return dt.datetime.fromisoformat(beat) if beat else None

    def import_errors(self) -> list[dict]:
        return self._call("GET", "/importErrors")["import_errors"]

    def dag(self, dag_id: str) -> dict | None:
        response = self._http.get(f"/api/v2/dags/{dag_id}")
        return response.json() if response.status_code == 200 else None

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(
        self, dag_id: str, *, logical_date: str | None, conf: dict | None = None, run_id: str | None = None
    ) -> dict:
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self._call("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def runs(self, dag_id: str, states: Iterable[str] = ()) -> list[dict]:
        params = [("limit", "100"), ("order_by", "run_after")] + [("state", s) for s in states]
        return self._call("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value (decoded from JSON when it is a string), or None if absent."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        response = self._http.get(path)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise RuntimeError(f"Airflow API GET {path} -> {response.status_code}: {response.text}")
        value = response.json().get("value")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def wait_idle(self, dag_id: str, *, timeout: float = 900, poll: float = 1.0) -> None:
        """Wait until the DAG has no queued or running runs (including runs it triggered)."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            if self.runs(dag_id, ACTIVE_STATES):
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= 2 * poll:
                return  # idle on two consecutive polls: nothing is about to be queued
            time.sleep(poll)
        raise TimeoutError(f"{dag_id} still has active runs after {timeout:.0f} s")


class LocalAirflow:
    """Airflow's API server, scheduler and DAG processor as child processes.

    Use as a context manager; everything it started is stopped on exit, even on errors.
    """

    def __init__(self, settings: Settings, *, smtp_port: int | None = None, api_port: int | None = None) -> None:
        self.settings = settings
        self.api_port = api_port or free_port()
        self.env = {**os.environ, **airflow_env(settings, api_port=self.api_port, smtp_port=smtp_port)}
        # Components must agree on the JWT secret; a fresh one per start is enough here.
        self.env["AIRFLOW__API_AUTH__JWT_SECRET"] = secrets.token_urlsafe(32)
        self.env["AIRFLOW__API__SECRET_KEY"] = secrets.token_urlsafe(32)
        self.log_dir = settings.airflow_home / "component-logs"
        self.processes: dict[str, subprocess.Popen] = {}
        self.client: AirflowClient | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _airflow(self, *args: str) -> list[str]:
        return airflow_command(self.settings, *args)

    def migrate(self) -> None:
        self.settings.airflow_home.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(self._airflow("db", "migrate"), env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")

    def start(self, timeout: float = 180) -> AirflowClient:
        self.migrate()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in COMPONENTS:
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
            self.processes[name] = subprocess.Popen(
                self._airflow(name), env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        started = dt.datetime.now(dt.UTC)
        deadline = time.monotonic() + timeout
        self.client = self._connect(timeout)
        # Callers act on the scheduler (unpause, trigger, wait for its runs): wait for its first
        # heartbeat, which comes later when it preloads the tasks' libraries.
        while (beat := self.client.scheduler_heartbeat()) is None or beat < started:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Airflow scheduler did not heartbeat within {timeout:.0f} s")
            time.sleep(0.5)
        return self.client

    def _connect(self, timeout: float) -> AirflowClient:
        deadline = time.monotonic() + timeout
        passwords = self.settings.airflow_home / "simple_auth_manager_passwords.json.generated"
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if passwords.exists():
                    password = json.loads(passwords.read_text())["admin"]
                    return AirflowClient(self.base_url, "admin", password)
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                last_error = exc
            time.sleep(1)
        raise TimeoutError(f"Airflow API server not ready after {timeout:.0f} s: {last_error}")

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        assert self.client is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            errors = self.client.import_errors()
            if errors:
                raise RuntimeError(f"DAG import errors: {json.dumps(errors, indent=2)}")
            dag = self.client.dag(dag_id)
            if dag is not None:
                return dag
            time.sleep(1)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout:.0f} s")

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()

    def __enter__(self) -> LocalAirflow:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
