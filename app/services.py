"""The services profile: graphrec's stack on real servers, started natively or in containers.

``GRAPHREC_PROFILE=services`` points the same code at PostgreSQL (Airflow's metadata,
MLflow's backend store, Feast's SQL registry), Redis (Feast's online store, the Celery
broker), an MLflow server, Airflow's CeleryExecutor and a real SMTP server. This module
prepares those servers (:func:`init`), builds each long-running component's command
(:func:`component_command`) and runs them:

* ``graphrec services run COMPONENT`` execs one component in the foreground (what each
  container of ``docker/compose.yaml`` runs);
* ``graphrec services up`` / ``down`` (``make up`` / ``make down``) start all of them on
  this machine as background processes, wait until each answers, and stop exactly the
  processes it started (their ids and start times are kept in ``<home>/services``).

Airflow's UI and API always require a login. The user ``admin`` gets its password from
``GRAPHREC_AIRFLOW_ADMIN_PASSWORD`` or, when that is unset, a random one generated once
into ``<home>/services/secrets.json`` (mode 600); nothing in the repository is a password.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from graphrec.settings import Settings

#: What ``graphrec services run`` accepts. ``init`` is one-shot; the rest run until stopped.
COMPONENTS = (
    "init",
    "api-server",
    "scheduler",
    "dag-processor",
    "triggerer",
    "celery-worker",
    "mlflow",
    "serve",
    "mail-sink",
)
DATABASES = ("airflow", "mlflow", "feast")
DAG_ID = "graphrec_nightly"
ADMIN_USER = "admin"


class ServicesError(RuntimeError):
    """A server is unreachable, a port is taken or a component failed to start."""


def services_settings(settings: Settings) -> Settings:
    """``settings`` with the services profile switched on."""
    if settings.services:
        return settings
    copy = settings.model_copy(update={"profile": "services"})
    copy.model_fields_set.add("profile")  # passed on to the components' environment
    return copy


# Servers ---------------------------------------------------------------------------------
def _postgres(settings: Settings, database: str = "postgres"):
    import psycopg2

    url = settings.postgres_url.rstrip("/").replace("postgresql+psycopg2://", "postgresql://")
    return psycopg2.connect(f"{url}/{database}", connect_timeout=5)


def check_servers(settings: Settings) -> None:
    """Raise :class:`ServicesError` saying which server is unreachable and how to set it."""
    try:
        _postgres(settings).close()
    except Exception as exc:  # psycopg2.OperationalError and DNS errors alike
        raise ServicesError(
            f"PostgreSQL is not reachable at {settings.postgres_url} (GRAPHREC_POSTGRES_URL): {exc}".strip()
        ) from exc
    import redis

    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5).ping()
    except Exception as exc:
        raise ServicesError(f"Redis is not reachable at {settings.redis_url} (GRAPHREC_REDIS_URL): {exc}") from exc


def ensure_databases(settings: Settings) -> list[str]:
    """Create the profile's databases that do not exist yet; returns the names created."""
    from psycopg2 import sql

    created = []
    conn = _postgres(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in DATABASES:
                database = f"{settings.database_prefix}_{name}"
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                    created.append(database)
    finally:
        conn.close()
    return created


def drop_databases(settings: Settings) -> None:
    """Drop the profile's databases (tests; never called by ``down``)."""
    from psycopg2 import sql

    conn = _postgres(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in DATABASES:
                cur.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(f"{settings.database_prefix}_{name}")
                    )
                )
    finally:
        conn.close()


# Secrets ---------------------------------------------------------------------------------
_SECRETS = {
    "admin_password": lambda: secrets.token_urlsafe(18),
    "jwt_secret": lambda: secrets.token_urlsafe(32),
    "secret_key": lambda: secrets.token_urlsafe(32),
    "fernet_key": lambda: __import__("cryptography.fernet").fernet.Fernet.generate_key().decode(),
}


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def service_secrets(settings: Settings) -> dict[str, str]:
    """Airflow's admin password, JWT secret, API secret key and Fernet key.

    Each comes from its ``GRAPHREC_AIRFLOW_*`` setting when set, otherwise from
    ``<home>/services/secrets.json``, where a random value is generated the first time.
    """
    path = settings.services_dir / "secrets.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    values = {}
    for key, generate in _SECRETS.items():
        given = getattr(settings, f"airflow_{key}")
        if given is not None:
            values[key] = given.get_secret_value()
        else:
            if key not in stored:
                stored[key] = generate()
                changed = True
            values[key] = stored[key]
    if changed:
        _write_private(path, json.dumps(stored, indent=2))
    return values


def passwords_file(settings: Settings) -> Path:
    """The SimpleAuthManager passwords file: ``{"admin": <password>}``, mode 600."""
    path = settings.services_dir / "airflow-passwords.json"
    text = json.dumps({ADMIN_USER: service_secrets(settings)["admin_password"]})
    if not path.exists() or path.read_text() != text:
        _write_private(path, text)
    return path


def services_env(settings: Settings) -> dict[str, str]:
    """The environment every component of the stack runs with (Airflow's and graphrec's)."""
    from app.airflow_local import airflow_env

    settings = services_settings(settings)
    values = service_secrets(settings)
    env = airflow_env(settings, api_port=settings.airflow_port)
    env.update(
        {
            "GRAPHREC_PROFILE": "services",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
            "AIRFLOW__API_AUTH__JWT_SECRET": values["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": values["secret_key"],
            "AIRFLOW__CORE__FERNET_KEY": values["fernet_key"],
            "AIRFLOW__API__HOST": settings.airflow_host,
        }
    )
    return env


def init(settings: Settings) -> dict[str, Any]:
    """Prepare the servers: databases, secrets, Airflow's schema. Idempotent."""
    settings = services_settings(settings)
    check_servers(settings)
    created = ensure_databases(settings)
    env = {**os.environ, **services_env(settings)}
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ServicesError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return {"databases_created": created, "passwords_file": str(passwords_file(settings))}


# Components ------------------------------------------------------------------------------
def component_command(settings: Settings, name: str, *, index: int = 0) -> list[str]:
    """The command line of one long-running component."""
    from app.airflow_local import airflow_command

    py = sys.executable
    if name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        return airflow_command(settings, name)
    if name == "celery-worker":
        return [
            *airflow_command(settings, "celery", "worker"),
            "--concurrency",
            str(settings.celery_worker_concurrency),
            "--celery-hostname",
            f"graphrec-worker{index}@%h",
        ]
    if name == "mlflow":
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        return [
            py,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            settings.mlflow_backend_store_uri,
            "--artifacts-destination",
            str(settings.artifacts_dir),
            "--host",
            settings.mlflow_host,
            "--port",
            str(settings.mlflow_port),
            "--workers",
            "1",
        ]
    if name == "serve":
        return [py, "-m", "graphrec", "serve", "--host", settings.serve_host, "--port", str(settings.serve_port)]
    if name == "mail-sink":
        return [py, "-m", "graphrec", "mail-sink"]
    raise ValueError(f"unknown component {name!r}; one of {', '.join(COMPONENTS)}")


def run_component(settings: Settings, name: str) -> int:
    """``graphrec services run NAME``: ``init`` runs and returns; the others replace this process."""
    settings = services_settings(settings)
    if name == "init":
        print(json.dumps(init(settings), indent=2))
        return 0
    argv = component_command(settings, name)
    env = {**os.environ, **services_env(settings)}
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    os.execve(argv[0], argv, env)
    return 1  # not reached


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "") else host, port)) == 0


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (so ``down`` never signals a reused pid)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has exited
    except (OSError, IndexError):
        return None


@dataclass
class Process:
    name: str
    pid: int
    started: str | None
    log: str

    def alive(self) -> bool:
        return self.started is not None and _start_time(self.pid) == self.started


class ServicesStack:
    """The services stack as background processes on this machine (``make up`` / ``make down``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = services_settings(settings)
        self.dir = self.settings.services_dir
        self.state_file = self.dir / "stack.json"
        self.log_dir = self.dir / "logs"

    # state
    def processes(self) -> list[Process]:
        if not self.state_file.exists():
            return []
        return [Process(**p) for p in json.loads(self.state_file.read_text())["processes"]]

    def _save(self, processes: list[Process], info: dict | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {"processes": [p.__dict__ for p in processes], "info": info or {}}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.state_file)

    def info(self) -> dict:
        return json.loads(self.state_file.read_text()).get("info", {}) if self.state_file.exists() else {}

    def _mail_sink_wanted(self) -> bool:
        s = self.settings
        return s.smtp_host in ("127.0.0.1", "localhost") and not _port_taken(s.smtp_host, s.smtp_port)

    def plan(self) -> list[tuple[str, list[str], dict[str, str]]]:
        """(label, argv, extra env) of every process ``up`` starts, in start order."""
        s = self.settings
        plan: list[tuple[str, list[str], dict[str, str]]] = []
        if self._mail_sink_wanted():
            plan.append(("mail-sink", component_command(s, "mail-sink"), {}))
        plan.append(("mlflow", component_command(s, "mlflow"), {}))
        for name in ("api-server", "scheduler", "dag-processor"):
            plan.append((name, component_command(s, name), {}))
        plan.append(
            (
                "triggerer",
                component_command(s, "triggerer"),
                {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port())},
            )
        )
        if s.executor == "CeleryExecutor":
            for i in range(1, s.celery_workers + 1):
                # Each worker serves its task logs on its own port (they share this machine).
                plan.append(
                    (
                        f"celery-worker-{i}",
                        component_command(s, "celery-worker", index=i),
                        {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port())},
                    )
                )
        plan.append(("serve", component_command(s, "serve"), {}))
        return plan

    def urls(self) -> dict[str, str]:
        s = self.settings
        host = lambda h: "127.0.0.1" if h in ("0.0.0.0", "") else h  # noqa: E731
        return {
            "airflow": f"http://{host(s.airflow_host)}:{s.airflow_port}",
            "mlflow": f"http://{host(s.mlflow_host)}:{s.mlflow_port}",
            "service": f"http://{host(s.serve_host)}:{s.serve_port}",
        }

    # lifecycle
    def up(self, *, timeout: float = 300, unpause: bool = True) -> dict:
        """Start every component, wait until each answers; on any failure stop them all."""
        running = [p for p in self.processes() if p.alive()]
        if running:
            raise ServicesError(f"the stack is already up ({', '.join(p.name for p in running)}); `make down` stops it")
        s = self.settings
        for label, port, setting in (
            ("Airflow", s.airflow_port, "AIRFLOW_PORT"),
            ("MLflow", s.mlflow_port, "MLFLOW_PORT"),
            ("the recommendation service", s.serve_port, "SERVE_PORT"),
        ):
            if _port_taken("127.0.0.1", port):
                raise ServicesError(f"port {port} for {label} is taken; set GRAPHREC_{setting} to a free port")
        init(s)
        env = {**os.environ, **services_env(s)}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started: list[Process] = []
        try:
            for label, argv, extra in self.plan():
                log_path = self.log_dir / f"{label}.log"
                with open(log_path, "ab") as log:
                    proc = subprocess.Popen(
                        argv,
                        env={**env, **extra},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                started.append(Process(label, proc.pid, _start_time(proc.pid), str(log_path)))
                self._save(started)
            info = self._wait_ready(started, timeout=timeout, unpause=unpause)
        except BaseException:
            self._stop(started)
            self.state_file.unlink(missing_ok=True)
            raise
        self._save(started, info)
        return info

    def _check_alive(self, processes: list[Process]) -> None:
        for p in processes:
            if not p.alive():
                tail = Path(p.log).read_text(errors="replace")[-3000:] if Path(p.log).exists() else ""
                raise ServicesError(f"{p.name} exited during start-up; the end of {p.log}:\n{tail}")

    def _wait(self, processes: list[Process], what: str, probe, deadline: float) -> Any:
        last: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive(processes)
            try:
                result = probe()
                if result:
                    return result
            except Exception as exc:  # not answering yet
                last = exc
            time.sleep(1)
        raise ServicesError(f"{what} did not become ready in time: {last}")

    def _wait_ready(self, processes: list[Process], *, timeout: float, unpause: bool) -> dict:
        from app.airflow_local import AirflowClient

        deadline = time.monotonic() + timeout
        urls = self.urls()
        ok = lambda url: httpx.get(url, timeout=5).status_code == 200  # noqa: E731
        self._wait(processes, "MLflow", lambda: ok(urls["mlflow"] + "/health"), deadline)
        self._wait(
            processes, "the Airflow API server", lambda: ok(urls["airflow"] + "/api/v2/monitor/health"), deadline
        )
        password = service_secrets(self.settings)["admin_password"]
        client = self._wait(
            processes, "Airflow login", lambda: AirflowClient(urls["airflow"], ADMIN_USER, password), deadline
        )
        try:

            def parsed():
                errors = client.import_errors()
                if errors:
                    raise ServicesError(f"DAG import errors: {json.dumps(errors, indent=2)}")
                return client.dag(DAG_ID)

            self._wait(processes, f"the DAG {DAG_ID}", parsed, deadline)
            if unpause:
                client.set_paused(DAG_ID, False)
        finally:
            client.close()
        workers = []
        if self.settings.executor == "CeleryExecutor":
            workers = self._wait(processes, "the Celery workers", self._celery_workers, deadline)
        self._wait(processes, "the recommendation service", lambda: ok(urls["service"] + "/healthz"), deadline)
        return {
            **urls,
            "airflow_user": ADMIN_USER,
            "celery_workers": workers,
            "dag_paused": not unpause,
            "secrets_file": str(self.dir / "secrets.json"),
        }

    def _celery_workers(self) -> list[str] | None:
        from celery import Celery

        app = Celery(broker=self.settings.celery_broker_url)
        try:
            replies = app.control.ping(timeout=2) or []
        finally:
            app.close()
        names = sorted(name for reply in replies for name in reply)
        return names if len(names) >= self.settings.celery_workers else None

    def down(self, timeout: float = 30) -> list[str]:
        """Stop the processes ``up`` started (and nothing else); returns their names."""
        processes = self.processes()
        stopped = self._stop(processes, timeout=timeout)
        self.state_file.unlink(missing_ok=True)
        return stopped

    @staticmethod
    def _stop(processes: list[Process], timeout: float = 30) -> list[str]:
        alive = [p for p in processes if p.alive()]
        for p in alive:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # its own session: the component and its children
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for p in alive:
            while p.alive() and time.monotonic() < deadline:
                _reap(p.pid)
                time.sleep(0.2)
            if p.alive():
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _reap(p.pid)
        return [p.name for p in alive]

    def status(self) -> list[dict]:
        return [{"name": p.name, "pid": p.pid, "alive": p.alive(), "log": p.log} for p in self.processes()]


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our child (``up`` and ``down`` in one process, as in tests)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
