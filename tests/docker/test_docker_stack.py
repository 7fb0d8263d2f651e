"""graphrec's side of docker/compose.yaml: the containers run commands, settings and health checks graphrec has.

Each check reads the compose file and what graphrec declares in code (the ``graphrec``
parser, ``app.services.COMPONENTS``, the settings model, docker/healthcheck.py, the image's
COPY destinations) and returns its problems; each is also fed a broken variant it must reject.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_checks import depends_on, environment, published_ports, services_of
from dockerfile_checks import copy_targets, parse_dockerfile, stages
from pydantic import BaseModel, ValidationError

from app.cli import build_parser
from app.services import COMPONENTS
from graphrec.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"
#: Components no container runs: the stack's SMTP server is Mailpit, not graphrec's loopback sink.
NOT_CONTAINERIZED = {"mail-sink"}


def built_services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the graphrec image (those that build it)."""
    return {name: s for name, s in services_of(data).items() if "build" in s}


def healthcheck_module():
    spec = importlib.util.spec_from_file_location("graphrec_docker_healthcheck", HEALTHCHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Checks --------------------------------------------------------------------------------------
def command_problems(data: dict[str, Any]) -> list[str]:
    """Each graphrec container runs ``graphrec services run COMPONENT``; every component runs somewhere."""
    problems, used = [], set()
    for name, service in built_services(data).items():
        command = service.get("command") or []
        try:
            args = build_parser().parse_args(command)
        except SystemExit:
            problems.append(f"{name}: `graphrec {' '.join(command)}` is not a graphrec command line")
            continue
        if (args.command, getattr(args, "action", None)) != ("services", "run"):
            problems.append(f"{name}: runs `graphrec {' '.join(command)}`, not `graphrec services run COMPONENT`")
        elif args.component not in COMPONENTS:
            problems.append(f"{name}: `graphrec services run` has no component {args.component!r}")
        else:
            used.add(args.component)
    missing = set(COMPONENTS) - NOT_CONTAINERIZED - used
    if missing:
        problems.append(f"no container runs the components {sorted(missing)}")
    if len({service.get("image") for service in built_services(data).values()}) > 1:
        problems.append("the graphrec containers run different images")
    return problems


def settings_names() -> set[str]:
    """Every ``GRAPHREC_*`` variable the settings model reads under its current name."""
    names = set()
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            names |= {f"GRAPHREC_{name}__{sub}".upper() for sub in group.model_fields}
        else:
            names.add(f"GRAPHREC_{name}".upper())
    return names


def settings_problems(data: dict[str, Any], template: dict[str, str]) -> list[str]:
    """The ``GRAPHREC_*`` variables a container gets are current setting names with valid values."""
    problems, names = [], settings_names()
    for name, service in built_services(data).items():
        env = {k: v for k, v in environment(service).items() if k.startswith("GRAPHREC_")}
        env |= {k: "x" for k in template if k.startswith("GRAPHREC_")}  # env_file: docker/.env
        for key in sorted(set(env) - names):
            problems.append(f"{name}: {key} is not a graphrec setting (a typo, or a renamed one)")
        values = {k: re.sub(r"\$\{[^}]*\}", "x", v or "") for k, v in env.items()}
        with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for key in [k for k in os.environ if k.startswith("GRAPHREC_")]:
                patch.delenv(key)
            for key, value in values.items():
                patch.setenv(key, value)
            try:
                Settings()
            except ValidationError as exc:
                problems.append(f"{name}: the settings do not validate: {exc}")
        problems += [f"{name}: {w.message}" for w in caught if issubclass(w.category, FutureWarning)]
    return problems


def setting_env(field: str) -> str:
    """The variable of the setting ``field`` (``postgres_url``), wherever the settings model groups it."""
    (name,) = [n for n in settings_names() if n == f"GRAPHREC_{field.upper()}" or n.endswith(f"__{field.upper()}")]
    return name


def wiring_problems(data: dict[str, Any]) -> list[str]:
    """Start order, the database login and where state lives.

    Every graphrec container waits for the one-shot ones (``init``: databases and Airflow's
    schema) to succeed and for PostgreSQL to be healthy; the URL logs in as the postgres
    service's user; GRAPHREC_HOME and PostgreSQL's data directory lie on volumes.
    """
    services, problems = services_of(data), []
    postgres = environment(services.get("postgres", {}))
    one_shot = [name for name, s in built_services(data).items() if s.get("restart") == "no"]
    for name, service in built_services(data).items():
        env = environment(service)
        waits = depends_on(service)
        for first in [n for n in one_shot if n != name]:
            if waits.get(first) != "service_completed_successfully":
                problems.append(f"{name}: does not wait for {first} to complete successfully")
        if waits.get("postgres") != "service_healthy":
            problems.append(f"{name}: does not wait for postgres to be healthy")
        url = urlsplit(re.sub(r"\$\{([A-Z_]+)[^}]*\}", r"$\1", env.get(setting_env("postgres_url")) or ""))
        expected_password = re.sub(r"\$\{([A-Z_]+)[^}]*\}", r"$\1", postgres.get("POSTGRES_PASSWORD") or "")
        if (url.username, url.password) != (postgres.get("POSTGRES_USER"), expected_password):
            problems.append(f"{name}: the PostgreSQL URL does not log in as the postgres service's user")
        home = env.get("GRAPHREC_HOME") or ""
        mounts = [str(v).split(":")[1] for v in service.get("volumes") or [] if ":" in str(v)]
        if not any(home == m or home.startswith(m.rstrip("/") + "/") for m in mounts):
            problems.append(f"{name}: GRAPHREC_HOME={home} is not on a volume: its state dies with the container")
    pg_mounts = [str(v).split(":")[1] for v in services.get("postgres", {}).get("volumes") or [] if ":" in str(v)]
    if "/var/lib/postgresql/data" not in pg_mounts:
        problems.append("postgres: its data directory /var/lib/postgresql/data is not on a volume")
    return problems


def healthcheck_problems(data: dict[str, Any], image_files: set[str]) -> list[str]:
    """graphrec's health checks run docker/healthcheck.py from the image, in a mode it has, on a port served."""
    hc = healthcheck_module()
    modes = {"http", "celery-worker", *hc.AIRFLOW_JOBS}
    problems = []
    for name, service in built_services(data).items():
        test = (service.get("healthcheck") or {}).get("test") or []
        scripts = [word for word in test if word.endswith("healthcheck.py")]
        if not scripts:
            continue  # the one-shot init has none (compose_checks.healthcheck_problems)
        if scripts[0] not in image_files:
            problems.append(f"{name}: {scripts[0]} is not copied into the image")
        args = test[test.index(scripts[0]) + 1 :]
        if not args or args[0] not in modes:
            problems.append(f"{name}: healthcheck.py has no mode {args[:1]}")
        elif args[0] == "http":
            url = urlsplit(args[1])
            ports = {port for _, port in published_ports(service)}
            if url.hostname != "localhost" or url.port not in ports:
                problems.append(f"{name}: checks {args[1]}, not a port the container serves ({sorted(ports)})")
    return problems


def scaling_problems(data: dict[str, Any]) -> list[str]:
    """A replicated service has no fixed name, hostname or host port (they would clash)."""
    return [
        f"{name}: {key} stops it from running {service['deploy']['replicas']} replicas"
        for name, service in services_of(data).items()
        if int((service.get("deploy") or {}).get("replicas", 1)) > 1
        for key in ("container_name", "hostname", "ports")
        if key in service
    ]


# Tests ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def template() -> dict[str, str]:
    lines = (ROOT / "docker" / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.fixture(scope="module")
def image_files() -> set[str]:
    final = stages(parse_dockerfile((ROOT / "docker" / "Dockerfile").read_text()))[-1]
    return {dest for _, _, dest, _ in copy_targets(final)}


CHECKS: dict[str, Callable[..., list[str]]] = {
    "commands": lambda data, template, files: command_problems(data),
    "settings": lambda data, template, files: settings_problems(data, template),
    "wiring": lambda data, template, files: wiring_problems(data),
    "health checks": lambda data, template, files: healthcheck_problems(data, files),
    "scaling": lambda data, template, files: scaling_problems(data),
}


@pytest.mark.parametrize("check", CHECKS)
def test_the_compose_file_passes(check, compose, template, image_files):
    assert CHECKS[check](compose, template, image_files) == []


def _set(service: str, **values: Any) -> Callable[[dict], None]:
    return lambda data: data["services"][service].update(values)


def _env(service: str, **values: str) -> Callable[[dict], None]:
    return lambda data: data["services"][service]["environment"].update(values)


BROKEN: list[tuple[str, str, Callable[[dict], None], str]] = [
    ("unknown component", "commands", _set("mlflow", command=["services", "run", "webserver"]), "webserver"),
    ("not a command", "commands", _set("mlflow", command=["services", "start", "mlflow"]), "not a graphrec command"),
    ("another command", "commands", _set("mlflow", command=["serve"]), "not `graphrec services run"),
    ("component not run", "commands", lambda d: d["services"].pop("airflow-triggerer"), "triggerer"),
    ("another image", "commands", _set("mlflow", image="graphrec:0.0.9"), "different images"),
    ("misspelt setting", "settings", _env("recommender", GRAPHREC_SMTP_HOTS="mailpit"), "GRAPHREC_SMTP_HOTS"),
    ("invalid value", "settings", _env("recommender", GRAPHREC_PROFILE="cluster"), "do not validate"),
    (
        "wrong database user",
        "wiring",
        _env("mlflow", **{setting_env("postgres_url"): "postgresql://airflow:${POSTGRES_PASSWORD:?x}@postgres:5432"}),
        "postgres service's user",
    ),
    ("home off the volume", "wiring", _env("recommender", GRAPHREC_HOME="/tmp/graphrec"), "not on a volume"),
    (
        "starts before init",
        "wiring",
        lambda d: d["services"]["mlflow"]["depends_on"].pop("airflow-init"),
        "airflow-init",
    ),
    ("database on the container", "wiring", lambda d: d["services"]["postgres"].pop("volumes"), "data directory"),
    (
        "unknown mode",
        "health checks",
        lambda d: d["services"]["airflow-scheduler"]["healthcheck"].update(
            test=["CMD", "/opt/venv/bin/python", "/opt/graphrec/docker/healthcheck.py", "sheduler"]
        ),
        "no mode",
    ),
    (
        "script not in the image",
        "health checks",
        lambda d: d["services"]["airflow-scheduler"]["healthcheck"].update(
            test=["CMD", "python", "/opt/graphrec/healthcheck.py", "scheduler"]
        ),
        "not copied",
    ),
    (
        "port not served",
        "health checks",
        lambda d: d["services"]["recommender"]["healthcheck"].update(
            test=["CMD", "python", "/opt/graphrec/docker/healthcheck.py", "http", "http://localhost:8001/healthz"]
        ),
        "8001",
    ),
    ("fixed worker name", "scaling", _set("airflow-worker", container_name="worker"), "container_name"),
]


@pytest.mark.parametrize(("check", "breaks", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_stack_is_rejected(check, breaks, expected, compose, template, image_files, tmp_path):
    data = copy.deepcopy(compose)
    breaks(data)
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    problems = CHECKS[check](yaml.safe_load(path.read_text()), template, image_files)
    assert any(expected in problem for problem in problems), problems
