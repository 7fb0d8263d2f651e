"""The services profile: graphrec's stack on real servers, started natively or in containers.

``GRAPHREC_PROFILE=services`` points the same code at PostgreSQL (Airflow's metadata,
MLflow's backend store, Feast's SQL registry), Redis (Feast's online store, the Celery
broker), an MLflow server, Airflow's CeleryExecutor and a real SMTP server. This module
prepares those servers (:func:`init`), builds each long-running component's command
(:func:`component_command`) and runs them:

* ``graphrec services run COMPONENT`` execs one component in the foreground (what each
  container of ``docker/compose.yaml`` runs);
* ``graphrec services up`` / ``down`` (``make up`` / ``make down``) start all of them on
  this machine as background processes (:class:`app.stack.ServicesStack`).

Airflow's UI and API always require a login. The user ``admin`` gets its password from
``GRAPHREC_AIRFLOW__ADMIN_PASSWORD`` or, when that is unset, a random one generated once
into ``<home>/services/secrets.json`` (mode 600); nothing in the repository is a password.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg2
import redis
from cryptography.fernet import Fernet
from psycopg2 import sql

from app.airflow_local import airflow_command, airflow_env
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
    url = settings.servers.postgres_url.rstrip("/").replace("postgresql+psycopg2://", "postgresql://")
    return psycopg2.connect(f"{url}/{database}", connect_timeout=5)


def check_servers(settings: Settings) -> None:
    """Raise :class:`ServicesError` saying which server is unreachable and how to set it."""
    try:
        _postgres(settings).close()
    except Exception as exc:  # psycopg2.OperationalError and DNS errors alike
        raise ServicesError(
            f"PostgreSQL is not reachable at {settings.servers.postgres_url} (GRAPHREC_SERVERS__POSTGRES_URL): {exc}".strip()
        ) from exc
    try:
        redis.Redis.from_url(settings.servers.redis_url, socket_connect_timeout=5).ping()
    except Exception as exc:
        raise ServicesError(
            f"Redis is not reachable at {settings.servers.redis_url} (GRAPHREC_SERVERS__REDIS_URL): {exc}"
        ) from exc


def ensure_databases(settings: Settings) -> list[str]:
    """Create the profile's databases that do not exist yet; returns the names created."""
    created = []
    conn = _postgres(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in DATABASES:
                database = f"{settings.servers.database_prefix}_{name}"
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                    created.append(database)
    finally:
        conn.close()
    return created


def drop_databases(settings: Settings) -> None:
    """Drop the profile's databases (tests; never called by ``down``)."""
    conn = _postgres(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in DATABASES:
                cur.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(f"{settings.servers.database_prefix}_{name}")
                    )
                )
    finally:
        conn.close()


# Secrets ---------------------------------------------------------------------------------
_SECRETS = {
    "admin_password": lambda: secrets.token_urlsafe(18),
    "jwt_secret": lambda: secrets.token_urlsafe(32),
    "secret_key": lambda: secrets.token_urlsafe(32),
    "fernet_key": lambda: Fernet.generate_key().decode(),
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

    Each comes from its ``GRAPHREC_AIRFLOW__*`` setting when set, otherwise from
    ``<home>/services/secrets.json``, where a random value is generated the first time.
    """
    path = settings.services_dir / "secrets.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    values = {}
    for key, generate in _SECRETS.items():
        given = getattr(settings.airflow, key)
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
    settings = services_settings(settings)
    values = service_secrets(settings)
    env = airflow_env(settings, api_port=settings.airflow.port)
    env.update(
        {
            "GRAPHREC_PROFILE": "services",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
            "AIRFLOW__API_AUTH__JWT_SECRET": values["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": values["secret_key"],
            "AIRFLOW__CORE__FERNET_KEY": values["fernet_key"],
            "AIRFLOW__API__HOST": settings.airflow.host,
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
    py = sys.executable
    if name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        return airflow_command(settings, name)
    if name == "celery-worker":
        return [
            *airflow_command(settings, "celery", "worker"),
            "--concurrency",
            str(settings.airflow.celery_worker_concurrency),
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
            settings.mlflow.host,
            "--port",
            str(settings.mlflow.port),
            "--workers",
            "1",
        ]
    if name == "serve":
        return [py, "-m", "app", "serve", "--host", settings.serve.host, "--port", str(settings.serve.port)]
    if name == "mail-sink":
        return [py, "-m", "app", "mail-sink"]
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
