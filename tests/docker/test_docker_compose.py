"""docker/compose.yaml: the Compose Specification, what ``docker compose config`` resolves, and graphrec's side.

The CI machines have no Docker engine, so nothing is started: the file is parsed and each
check of :mod:`compose_checks` runs on it. Every check also runs on a broken variant of the
file, written to a temporary directory, and must reject it.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_checks import (
    SCHEMA_BLOB,
    SCHEMA_FILE,
    build_problems,
    env_file_problems,
    healthcheck_problems,
    image_problems,
    interpolation_problems,
    port_problems,
    reference_problems,
    schema_problems,
    secret_problems,
    url_host_problems,
    variables,
)
from dockerfile_checks import gitignored, ignore_patterns

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
ENV_TEMPLATE = ROOT / "docker" / ".env.example"


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.strip().startswith("#"):
            key, sep, value = line.strip().partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


class Layout:
    """A compose file in ``<root>/docker/`` with its env template, and the repository's .gitignore rules."""

    def __init__(self, root: Path) -> None:
        self.root, self.compose_dir = root, root / "docker"
        self.gitignore = ignore_patterns((ROOT / ".gitignore").read_text())

    def ignored(self, path: Path) -> bool:
        return gitignored(path.resolve().relative_to(self.root.resolve()).as_posix(), self.gitignore)

    def template(self) -> dict[str, str]:
        path = self.compose_dir / ".env.example"
        return read_env_file(path) if path.is_file() else {}


#: name -> check(data, layout) -> problems
CHECKS: dict[str, Callable[[Any, Layout], list[str]]] = {
    "schema": lambda data, layout: schema_problems(data),
    "references": lambda data, layout: reference_problems(data),
    "interpolation": lambda data, layout: interpolation_problems(data, set(layout.template())),
    "secrets": lambda data, layout: secret_problems(data, layout.template()),
    "url hosts": lambda data, layout: url_host_problems(data),
    "builds": lambda data, layout: build_problems(data, layout.compose_dir),
    "env files": lambda data, layout: env_file_problems(data, layout.compose_dir, layout.ignored),
    "images": lambda data, layout: image_problems(data),
    "ports": lambda data, layout: port_problems(data),
    "health checks": lambda data, layout: healthcheck_problems(data),
    "obsolete keys": lambda data, layout: ["`version` is obsolete in the Compose Specification"] * ("version" in data),
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture
def broken_layout(tmp_path) -> Layout:
    """A copy of docker/ (compose file, Dockerfile, env template) under ``tmp_path``, the build context."""
    (tmp_path / "docker").mkdir()
    for name in ("compose.yaml", "Dockerfile", ".env.example"):
        shutil.copy(ROOT / "docker" / name, tmp_path / "docker" / name)
    return Layout(tmp_path)


def test_the_vendored_schema_is_the_released_file():
    blob = SCHEMA_FILE.read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest() == SCHEMA_BLOB, "compose-spec.json was edited"


@pytest.mark.parametrize("check", CHECKS)
def test_the_compose_file_passes(check, compose):
    assert CHECKS[check](compose, Layout(ROOT)) == []


#: (id, check, break the parsed file in place, a fragment of the expected problem)
BROKEN: list[tuple[str, str, Callable[[dict], None], str]] = [
    ("obsolete version", "obsolete keys", lambda d: d.update(version="3.8"), "version"),
    ("misspelt key", "schema", lambda d: d["services"]["redis"].update(helthcheck={}), "helthcheck"),
    (
        "unknown condition",
        "schema",
        lambda d: d["services"]["airflow-init"]["depends_on"]["postgres"].update(condition="service_ready"),
        "service_ready",
    ),
    ("ports not a list", "schema", lambda d: d["services"]["mailpit"].update(ports="8025"), "ports"),
    ("depends_on a word", "schema", lambda d: d["services"]["mlflow"].update(depends_on="postgres"), "depends_on"),
    (
        "unknown dependency",
        "references",
        lambda d: d["services"]["recommender"]["depends_on"].update(redis_cache={"condition": "service_started"}),
        "redis_cache",
    ),
    ("undeclared volume", "references", lambda d: d["volumes"].pop("pgdata"), "pgdata"),
    ("undeclared network", "references", lambda d: d["services"]["redis"].update(networks=["backend"]), "backend"),
    (
        "dependency cycle",
        "references",
        lambda d: d["services"]["postgres"].update(depends_on={"airflow-init": {"condition": "service_started"}}),
        "cycle",
    ),
    (
        "healthy without a check",
        "references",
        lambda d: d["services"]["redis"].pop("healthcheck"),
        "no health check",
    ),
    (
        "waits for a server to exit",
        "references",
        lambda d: d["services"]["airflow-init"].update(restart="unless-stopped"),
        "restarts",
    ),
    (
        "unlisted variable",
        "interpolation",
        lambda d: d["services"]["redis"].update(command=["redis-server", "--maxmemory", "${REDIS_MAXMEMORY}"]),
        "REDIS_MAXMEMORY",
    ),
    (
        "unclosed brace",
        "interpolation",
        lambda d: d["services"]["postgres"]["environment"].update(POSTGRES_DB="${POSTGRES_DB"),
        "invalid interpolation",
    ),
    (
        "unknown modifier",
        "interpolation",
        lambda d: d["services"]["postgres"]["environment"].update(POSTGRES_DB="${POSTGRES_DB/x}"),
        "not an interpolation",
    ),
    (
        "secret with a default",
        "secrets",
        lambda d: d["services"]["postgres"]["environment"].update(POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-graphrec}"),
        "POSTGRES_PASSWORD",
    ),
    (
        "literal secret",
        "secrets",
        lambda d: d["services"]["mailpit"]["environment"].update(MP_UI_AUTH_PASSWORD="hunter2"),
        "literal value",
    ),
    (
        "misspelt host",
        "url hosts",
        lambda d: d["services"]["mlflow"]["environment"].update(GRAPHREC_SERVERS__REDIS_URL="redis://rediss:6379"),
        "rediss",
    ),
    ("missing context", "builds", lambda d: d["services"]["mlflow"]["build"].update(context="../nowhere"), "nowhere"),
    (
        "missing Dockerfile",
        "builds",
        lambda d: d["services"]["mlflow"]["build"].update(dockerfile="docker/Dockerfile.gpu"),
        "Dockerfile.gpu",
    ),
    ("missing env file", "env files", lambda d: d["services"]["redis"].update(env_file="redis.env"), "redis.env"),
    ("latest tag", "images", lambda d: d["services"]["redis"].update(image="redis:latest"), "redis:latest"),
    ("untagged image", "images", lambda d: d["services"]["redis"].update(image="redis"), "'redis'"),
    ("every interface", "ports", lambda d: d["services"]["mailpit"].update(ports=["8025:8025"]), "every interface"),
    ("public address", "ports", lambda d: d["services"]["mailpit"].update(ports=["0.0.0.0:8025:8025"]), "0.0.0.0"),
    ("no health check", "health checks", lambda d: d["services"]["mlflow"].pop("healthcheck"), "mlflow"),
    (
        "bare test word",
        "health checks",
        lambda d: d["services"]["redis"]["healthcheck"].update(test=["redis-cli", "ping"]),
        "neither CMD",
    ),
]


@pytest.mark.parametrize(("check", "breaks", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_compose_file_is_rejected(check, breaks, expected, compose, broken_layout):
    data = copy.deepcopy(compose)
    breaks(data)
    path = broken_layout.compose_dir / "compose.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    problems = CHECKS[check](yaml.safe_load(path.read_text()), broken_layout)
    assert any(expected in problem for problem in problems), problems


def test_a_secret_in_the_env_template_is_rejected(compose, broken_layout):
    template = broken_layout.compose_dir / ".env.example"
    template.write_text(template.read_text().replace("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD=s3cret\n"))
    assert any("template holds a value" in p for p in CHECKS["secrets"](compose, broken_layout))


def test_a_secrets_file_git_would_commit_is_rejected(compose, broken_layout):
    (broken_layout.compose_dir / "secrets.env.example").write_text("TOKEN=\n")
    compose = copy.deepcopy(compose)
    compose["services"]["redis"]["env_file"] = "secrets.env"
    assert any("git does not ignore" in p for p in CHECKS["env files"](compose, broken_layout))


def test_every_required_variable_has_a_generating_command_in_the_template(compose):
    """``.env.example`` says how to make each secret compose requires (the comment block above it)."""
    text = ENV_TEMPLATE.read_text()
    required = {name for _, name, op, _ in variables(compose) if op in (":?", "?")}
    assert required, "compose.yaml requires no variable"
    for name in required:
        block = text.split(f"\n{name}=", 1)[0].rsplit("\n\n", 1)[-1]
        assert f"\n{name}=" in text, f".env.example does not list {name}"
        assert "python -c" in block, f".env.example: no command above {name} that generates it"
