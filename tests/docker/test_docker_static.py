"""Static checks of docker/: the image, the compose stack and its secrets template.

The CI machines have no Docker engine, so nothing is built or started here: the files are
parsed (compose.yaml with PyYAML, the Dockerfile with a small parser below) and checked
against the repository and against the contract of ``graphrec services run COMPONENT``.
No network, no docker; ``hadolint`` runs only when it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import posixpath
import re
import shlex
import shutil
import socket
import subprocess
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
ENV_EXAMPLE = DOCKER / ".env.example"
HEALTHCHECK = DOCKER / "healthcheck.py"

#: What ``graphrec services run`` must accept for the stack (the contract with app.services).
CONTRACT_COMPONENTS = (
    "init",
    "api-server",
    "scheduler",
    "dag-processor",
    "triggerer",
    "celery-worker",
    "mlflow",
    "serve",
)
#: Secrets: only from docker/.env, never a default in the repository.
SECRETS = (
    "GRAPHREC_AIRFLOW_ADMIN_PASSWORD",
    "GRAPHREC_AIRFLOW_JWT_SECRET",
    "GRAPHREC_AIRFLOW_SECRET_KEY",
    "GRAPHREC_AIRFLOW_FERNET_KEY",
    "POSTGRES_PASSWORD",
)
#: The graphrec containers and the component each runs.
GRAPHREC_SERVICES = {
    "airflow-init": "init",
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery-worker",
    "mlflow": "mlflow",
    "recommender": "serve",
}
THIRD_PARTY_SERVICES = {"postgres", "redis", "mailpit"}
ONE_SHOT = {"airflow-init"}
#: Settings every graphrec container gets (compose's x-graphrec-common environment).
CONTRACT_ENVIRONMENT = {
    "GRAPHREC_PROFILE": "services",
    "GRAPHREC_HOME": "/data/graphrec",
    "GRAPHREC_REDIS_URL": "redis://redis:6379",
    "GRAPHREC_MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "GRAPHREC_AIRFLOW_API_URL": "http://airflow-apiserver:8080",
    "GRAPHREC_SMTP_HOST": "mailpit",
    "GRAPHREC_SMTP_PORT": "1025",
    "GRAPHREC_SERVE_HOST": "0.0.0.0",
    "GRAPHREC_AIRFLOW_HOST": "0.0.0.0",
    "GRAPHREC_MLFLOW_HOST": "0.0.0.0",
}
#: Container ports of the web components (what their health checks and published ports use).
WEB_PORTS = {"airflow-apiserver": 8080, "mlflow": 5000, "recommender": 8000, "mailpit": 8025}


# Helpers -------------------------------------------------------------------------------------
def project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def torch_pin() -> str:
    pins = [dep for dep in project()["dependencies"] if re.match(r"torch\s*==", dep)]
    assert len(pins) == 1, f"pyproject.toml must pin torch exactly once: {pins}"
    return pins[0].split("==", 1)[1].strip()


def is_pinned(image: str) -> bool:
    """``name:tag`` with a tag that names a version (has a digit, not latest), or a digest."""
    if "@sha256:" in image:
        return True
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag or not name:
        return False
    return tag != "latest" and any(ch.isdigit() for ch in tag)


def env_file_entries(value: Any) -> list[tuple[str, bool]]:
    """compose ``env_file`` (a string, a list of strings or of ``{path, required}``)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append((item["path"], bool(item.get("required", True))))
        else:
            out.append((str(item), True))
    return out


def environment_dict(value: Any) -> dict[str, str | None]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {k: (None if v is None else str(v)) for k, v in value.items()}
    out: dict[str, str | None] = {}
    for item in value:
        key, sep, val = str(item).partition("=")
        out[key] = val if sep else None
    return out


def parse_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        values[key.strip()] = value.strip()
    return values


def compose_variables(text: str) -> list[tuple[str, str]]:
    """(name, modifier) of every interpolation in compose text: ``${NAME<modifier>}`` and ``$NAME``."""
    text = text.replace("$$", "")  # an escaped dollar is no variable
    found = [(m.group(1), m.group(2)) for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", text)]
    found += [(m.group(1), "") for m in re.finditer(r"\$([A-Za-z_][A-Za-z0-9_]*)", text)]
    return found


def gitignored(relpath: str) -> bool:
    """Whether ``relpath`` (a file) is ignored by the root .gitignore (the usual pattern forms)."""
    ignored = False
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (ROOT / ".gitignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        anchored = "/" in pattern
        pattern = pattern.lstrip("/")
        for i, prefix in enumerate(prefixes):
            if dir_only and i == len(prefixes) - 1:
                continue  # a directory pattern never matches the file itself
            subject = prefix if anchored else prefix.rsplit("/", 1)[-1]
            if re.fullmatch(glob_regex(pattern), subject):
                ignored = not negate
    return ignored


def glob_regex(pattern: str) -> str:
    """Regex of a dockerignore/gitignore glob: ``**`` spans directories, ``*`` and ``?`` do not."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += r"(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += r".*"
            i += 2
        elif pattern[i] == "*":
            out += r"[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += r"[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return out


def dockerignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def dockerignored(relpath: str, patterns: list[str]) -> bool:
    """Whether ``relpath`` is left out of the build context (it or a parent matches, last match wins)."""
    parts = posixpath.normpath(relpath).split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = glob_regex(posixpath.normpath(pattern.lstrip("!").lstrip("/")))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


# The Dockerfile parser -----------------------------------------------------------------------
class Instruction:
    def __init__(self, keyword: str, args: str, line: int) -> None:
        self.keyword, self.args, self.line = keyword, args, line

    def __repr__(self) -> str:
        return f"{self.keyword} {self.args} (line {self.line})"

    def words(self) -> list[str]:
        """Arguments as words: JSON (exec) form or shell-like words."""
        if self.args.startswith("["):
            return json.loads(self.args)
        return shlex.split(self.args)

    def flags_and_rest(self) -> tuple[dict[str, str], list[str]]:
        flags, rest = {}, []
        for word in self.words():
            if word.startswith("--") and not rest:
                key, _, value = word[2:].partition("=")
                flags[key] = value
            else:
                rest.append(word)
        return flags, rest


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments, blank lines and directives dropped."""
    escape = "\\"
    lines = text.splitlines()
    for line in lines:  # parser directives come first, before any other line
        match = re.match(r"#\s*(\w+)\s*=\s*(\S+)\s*$", line)
        if not match:
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if not buffer:
            start = number
        if stripped.endswith(escape):
            buffer += stripped[: -len(escape)].rstrip() + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued instruction"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        assert out, f"instruction before the first FROM: {ins}"
        out[-1].append(ins)
    return out


def from_image(ins: Instruction) -> tuple[str, str | None]:
    _, rest = ins.flags_and_rest()
    image = rest[0]
    alias = rest[2] if len(rest) >= 3 and rest[1].upper() == "AS" else None
    return image, alias


def env_pairs(ins: Instruction) -> dict[str, str]:
    words = shlex.split(ins.args)
    if words and "=" not in words[0]:  # legacy `ENV KEY value`
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def copy_targets(stage: list[Instruction]) -> list[tuple[Instruction, list[str], str]]:
    """(instruction, sources, absolute destination) of each COPY/ADD of a stage."""
    workdir, out = "/", []
    for ins in stage:
        if ins.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, ins.args)
        elif ins.keyword in ("COPY", "ADD"):
            flags, rest = ins.flags_and_rest()
            *sources, dest = rest
            out.append((ins, sources if "from" not in flags else [], posixpath.normpath(posixpath.join(workdir, dest))))
    return out


def shell_commands(run_args: str) -> list[list[str]]:
    """The simple commands of a RUN (split on && ; ||), as words; RUN flags dropped."""
    words = shlex.split(run_args)
    while words and words[0].startswith("--"):
        words.pop(0)
    commands, current = [], []
    for word in words:
        if word in ("&&", ";", "||", "|"):
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    return [c for c in commands if c]


def pip_installs(instructions: list[Instruction]) -> list[list[str]]:
    out = []
    for ins in instructions:
        if ins.keyword != "RUN":
            continue
        for command in shell_commands(ins.args):
            joined = " ".join(command)
            if re.search(r"\bpip3?\b.*\binstall\b", joined):
                out.append(command)
    return out


# Fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    data = yaml.safe_load(compose_text)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def healthcheck_module():
    spec = importlib.util.spec_from_file_location("graphrec_docker_healthcheck", HEALTHCHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# compose.yaml --------------------------------------------------------------------------------
def test_compose_is_a_compose_specification_file(compose):
    assert "version" not in compose, "the Compose Specification has no `version:` key"
    assert set(compose["services"]) == set(GRAPHREC_SERVICES) | THIRD_PARTY_SERVICES
    assert "x-graphrec-common" in compose


def test_build_context_and_dockerfile_exist(services):
    builds = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(builds) == set(GRAPHREC_SERVICES), "every graphrec container, and only those, builds the image"
    for name, build in builds.items():
        build = {"context": build} if isinstance(build, str) else build
        context = (DOCKER / build.get("context", ".")).resolve()
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        assert dockerfile == DOCKERFILE
        assert context == ROOT, "the build context is the repository root (the Dockerfile COPYs from it)"


def test_graphrec_services_share_one_pinned_image(services):
    images = {services[name]["image"] for name in GRAPHREC_SERVICES}
    assert len(images) == 1, f"one image for every graphrec container: {images}"


def test_every_image_is_pinned(services):
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name}: no image"
        assert is_pinned(image), f"{name}: image {image!r} is not pinned to a version tag"


def test_env_files_exist_or_are_templated_and_gitignored(services):
    for name in GRAPHREC_SERVICES:
        entries = env_file_entries(services[name].get("env_file"))
        assert entries, f"{name}: no env_file"
        for path, _required in entries:
            file = (DOCKER / path).resolve()
            rel = file.relative_to(ROOT).as_posix()
            if file.name == ".env":
                assert (file.parent / ".env.example").is_file(), f"{name}: {rel} has no .env.example template"
                assert gitignored(rel), f"{rel} holds secrets and must be gitignored"
            else:
                assert file.is_file(), f"{name}: env_file {rel} does not exist"
    assert not gitignored("docker/.env.example"), "the template must be committed"


def test_every_compose_variable_is_listed_in_env_example(compose_text, env_example):
    names = {name for name, _ in compose_variables(compose_text)}
    assert names, "compose.yaml reads no variable at all"
    missing = names - set(env_example)
    assert not missing, f"compose.yaml reads variables .env.example does not list: {sorted(missing)}"


def test_secrets_are_required_and_have_no_default(compose_text, services):
    variables = compose_variables(compose_text)
    for secret in SECRETS:
        uses = [modifier for name, modifier in variables if name == secret]
        assert uses, f"compose.yaml never requires {secret}"
        for modifier in uses:
            assert modifier.startswith(":?"), (
                f"${{{secret}{modifier}}}: a secret must be written ${{{secret}:?set it in docker/.env}}"
            )
    for name, service in services.items():
        for key, value in environment_dict(service.get("environment")).items():
            if key in SECRETS:
                assert value is not None and value.startswith("${" + key + ":?"), (
                    f"{name}: {key} must come from docker/.env (got {value!r})"
                )
            for secret in SECRETS:
                if value and secret in key and key != secret:
                    assert "${" in value, f"{name}: {key} looks like a secret with a literal value"


def test_env_example_lists_secrets_empty_with_generating_commands(env_example):
    text = ENV_EXAMPLE.read_text()
    for secret in SECRETS:
        assert secret in env_example, f".env.example does not list {secret}"
        value = env_example[secret]
        assert value in ("", "change-me"), f".env.example must not hold a real value for {secret}: {value!r}"
        # the comment block right above the variable says how to generate it
        block = text.split(f"\n{secret}=", 1)[0].rsplit("\n\n", 1)[-1]
        assert "python -c" in block, f".env.example: no generating command above {secret}"
    assert "secrets.token_urlsafe" in text
    assert "Fernet.generate_key()" in text


def test_env_file_never_enters_the_build_context():
    assert dockerignored("docker/.env", dockerignore_patterns())


def test_every_service_but_the_one_shot_init_has_a_healthcheck(services):
    for name, service in services.items():
        check = service.get("healthcheck")
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f'{name} is one-shot: restart must be "no"'
            continue
        assert check and not check.get("disable"), f"{name}: no health check"
        test = check.get("test")
        assert isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, (
            f"{name}: health check test {test!r}"
        )


def test_graphrec_healthchecks_use_the_script_in_the_image(services, instructions, healthcheck_module):
    final = stages(instructions)[-1]
    destinations = {dest for _, _, dest in copy_targets(final)}
    modes = {"http"} | set(healthcheck_module.AIRFLOW_JOBS) | {"celery-worker"}
    for name in set(GRAPHREC_SERVICES) - ONE_SHOT:
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: exec form (the image has no curl)"
        scripts = [word for word in test if word.endswith("healthcheck.py")]
        assert scripts, f"{name}: health check does not run healthcheck.py"
        assert scripts[0] in destinations, f"{name}: {scripts[0]} is not copied into the image"
        args = test[test.index(scripts[0]) + 1 :]
        assert args and args[0] in modes, f"{name}: healthcheck.py {args}"
        if args[0] == "http":
            url = urlsplit(args[1])
            assert url.hostname == "localhost" and url.port == WEB_PORTS[name], f"{name}: checks {args[1]}"
    assert services["airflow-apiserver"]["healthcheck"]["test"][-1].endswith("/api/v2/monitor/health")
    assert services["mlflow"]["healthcheck"]["test"][-1].endswith("/health")
    assert services["recommender"]["healthcheck"]["test"][-1].endswith("/healthz")


def _contract_or_installed_components() -> tuple[str, ...]:
    """``app.services.COMPONENTS`` when graphrec has it, else the contract's list."""
    try:
        from app import services as graphrec_services
    except ImportError:
        return CONTRACT_COMPONENTS
    return tuple(getattr(graphrec_services, "COMPONENTS", CONTRACT_COMPONENTS))


def test_every_graphrec_service_runs_a_known_component(services):
    known = _contract_or_installed_components()
    used = set()
    for name, component in GRAPHREC_SERVICES.items():
        command = services[name].get("command")
        assert command == ["services", "run", component], f"{name}: command {command!r}"
        assert component in CONTRACT_COMPONENTS, f"{name}: {component} is not in the contract"
        assert component in known, f"{name}: `graphrec services run` does not accept {component}"
        used.add(component)
    assert used == set(CONTRACT_COMPONENTS), f"components not run by any container: {set(CONTRACT_COMPONENTS) - used}"


def test_graphrec_environment_follows_the_contract(services):
    for name in GRAPHREC_SERVICES:
        env = environment_dict(services[name].get("environment"))
        for key, value in CONTRACT_ENVIRONMENT.items():
            assert env.get(key) == value, f"{name}: {key}={env.get(key)!r}, expected {value!r}"
        assert re.fullmatch(
            r"postgresql://graphrec:\$\{POSTGRES_PASSWORD:\?[^}]*\}@postgres:5432",
            env.get("GRAPHREC_POSTGRES_URL") or "",
        ), f"{name}: GRAPHREC_POSTGRES_URL"
        for secret in SECRETS:
            if secret != "POSTGRES_PASSWORD":
                assert secret in env, f"{name}: {secret} is not passed (compose must require it)"
        for value in env.values():  # every host a URL names is a service of the stack
            plain = re.sub(r"\$\{[^}]*\}", "secret", value or "")
            for url in re.findall(r"\b[a-z]+://[^\s,]+", plain):
                host = urlsplit(url).hostname
                assert host in services, f"{name}: {url} names {host!r}, not a service"
    postgres_env = environment_dict(services["postgres"]["environment"])
    assert postgres_env["POSTGRES_USER"] == "graphrec"


def test_ports_are_published_on_loopback_only(services):
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
                published[name] = int(port["target"])
            else:
                parts = str(port).split(":")
                assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name}: port {port!r} is not bound to 127.0.0.1"
                published[name] = int(parts[2].split("/")[0])
    assert published == WEB_PORTS


def test_depends_on_conditions(services):
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions (long form)"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target} healthy; it has no check"
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} waits for {target} to exit, but it runs until stopped"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition!r}")
    assert services["airflow-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in set(GRAPHREC_SERVICES) - ONE_SHOT:
        depends = services[name]["depends_on"]
        assert depends.get("airflow-init", {}).get("condition") == "service_completed_successfully", name
        assert depends.get("postgres", {}).get("condition") == "service_healthy", name
    for name in ("airflow-scheduler", "airflow-worker", "airflow-triggerer", "recommender"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_volumes(compose, services):
    assert {"pgdata", "graphrec-data"} <= set(compose.get("volumes") or {})
    for name in GRAPHREC_SERVICES:
        assert "graphrec-data:/data" in services[name].get("volumes", []), f"{name}: graphrec-data not at /data"
    assert any(str(v).startswith("pgdata:") for v in services["postgres"]["volumes"])


def test_workers_scale(services):
    worker = services["airflow-worker"]
    assert worker.get("deploy", {}).get("replicas", 1) >= 2
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker, (
        "a fixed name, hostname or host port would stop `--scale airflow-worker=N`"
    )


# Dockerfile ----------------------------------------------------------------------------------
def test_dockerfile_parser_joins_continuations():
    parsed = parse_dockerfile("# syntax=docker/dockerfile:1\nFROM a:1 AS b\n# c\nRUN x \\\n  # inside\n  && y\n")
    assert [(i.keyword, i.args) for i in parsed] == [("FROM", "a:1 AS b"), ("RUN", "x && y")]
    assert shell_commands("--mount=type=cache,target=/c pip install a && pip check") == [
        ["pip", "install", "a"],
        ["pip", "check"],
    ]


def test_dockerfile_is_multi_stage_with_pinned_bases(instructions):
    all_stages = stages(instructions)
    assert len(all_stages) >= 2, "a builder stage and a runtime stage"
    names: set[str] = set()
    requires = project()["requires-python"].lstrip("=").rstrip(".*")  # "==3.11.*" -> "3.11"
    for stage in all_stages:
        image, alias = from_image(stage[0])
        if image not in names:
            assert is_pinned(image), f"base image {image!r} is not pinned"
            assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", image), f"{image}: python slim, exact version"
            assert image.split(":")[1].startswith(requires + "."), f"{image}: the project needs Python {requires}"
        if alias:
            names.add(alias)


def test_final_user_is_not_root(instructions):
    final = stages(instructions)[-1]
    users = [ins.args.split(":")[0] for ins in final if ins.keyword == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    assert users[-1] not in ("root", "0"), f"final USER {users[-1]}"
    assert users[-1] in ("10001", "graphrec")


def test_every_copy_source_exists_and_enters_the_context(instructions):
    patterns = dockerignore_patterns()
    copies = [c for stage in stages(instructions) for c in copy_targets(stage)]
    assert copies
    for ins, sources, _dest in copies:
        for source in sources:
            matches = list(ROOT.glob(source))
            assert matches, f"{ins}: {source} does not exist in the repository"
            assert not dockerignored(source, patterns), f"{ins}: {source} is excluded by {DOCKERIGNORE.name}"


def test_dockerignore_keeps_local_state_out():
    patterns = dockerignore_patterns()
    for path in (
        ".git/config",
        ".venv/bin/python",
        ".venv-load/bin/python",
        "var/lake/x.parquet",
        "benchmarks/results/x.json",
        "graphrec/__pycache__/cli.cpython-311.pyc",
        "docker/.env",
    ):
        assert dockerignored(path, patterns), f"{path} would enter the build context"
    for path in (
        "app/cli.py",
        "dags/graphrec_nightly.py",
        "feature_repo/feature_store.yaml",
        "monitoring/drift_policy.yaml",
        "constraints.txt",
        "pyproject.toml",
        "docker/healthcheck.py",
    ):
        assert not dockerignored(path, patterns), f"{path} is needed by the build"


def test_pip_pins_torch_and_uses_the_lock(instructions):
    version = torch_pin()
    assert version == "2.13.0"
    installs = pip_installs(instructions)
    torch_installs = [c for c in installs if any(re.match(r"torch($|[=<>~!\[])", w) for w in c)]
    assert torch_installs, "torch is installed explicitly (the CPU wheel)"
    for command in torch_installs:
        words = [w for w in command if re.match(r"torch($|[=<>~!\[])", w)]
        assert words == [f"torch=={version}"], f"{' '.join(command)}: torch must be =={version}"
    cpu = [c for c in torch_installs if "https://download.pytorch.org/whl/cpu" in c]
    assert cpu and cpu[0][cpu[0].index("https://download.pytorch.org/whl/cpu") - 1] == "--index-url"
    first_torch = installs.index(cpu[0])
    project_installs = [i for i, c in enumerate(installs) if "." in c]
    assert project_installs, "the project itself is installed (the services' drivers are core dependencies)"
    for i in project_installs:
        command = installs[i]
        assert i > first_torch, "torch comes first, from the CPU index"
        assert "-c" in command and command[command.index("-c") + 1] == "constraints.txt", "versions from the lock"
        assert "-e" not in command and "--editable" not in command, "non-editable install"


def test_runtime_environment_entrypoint_and_layout(instructions):
    final = stages(instructions)[-1]
    env: dict[str, str] = {}
    for ins in final:
        if ins.keyword == "ENV":
            env.update(env_pairs(ins))
    assert env.get("GRAPHREC_HOME") == "/data/graphrec"
    destinations = {dest for _, _, dest in copy_targets(final)}
    for key, source in (("GRAPHREC_DAGS_FOLDER", "dags"), ("GRAPHREC_FEATURE_REPO", "feature_repo")):
        assert env.get(key) in destinations, f"{key}={env.get(key)} is not where {source}/ is copied"
    assert "/opt/venv" in destinations, "the runtime copies the builder's venv"
    assert env.get("PATH", "").startswith("/opt/venv/bin:")
    workdirs = [ins.args for ins in final if ins.keyword == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/opt/graphrec"
    volumes = [ins for ins in final if ins.keyword == "VOLUME"]
    assert volumes and "/data" in volumes[-1].words()
    assert any(
        ins.keyword == "RUN" and "chown" in ins.args and "/data" in ins.args and "graphrec" in ins.args for ins in final
    ), "/data is owned by the service user"
    entrypoint = [ins for ins in final if ins.keyword == "ENTRYPOINT"]
    cmd = [ins for ins in final if ins.keyword == "CMD"]
    assert entrypoint and entrypoint[-1].words() == ["graphrec"]
    assert cmd and cmd[-1].words() == ["services", "run", "serve"]


def test_the_builder_stage_builds_the_venv(instructions):
    builder = stages(instructions)[0]
    assert any(ins.keyword == "RUN" and "venv /opt/venv" in ins.args for ins in builder)
    runtime = stages(instructions)[-1]
    assert any(
        ins.keyword == "COPY" and ins.flags_and_rest()[0].get("from") == from_image(builder[0])[1] for ins in runtime
    ), "the runtime copies from the builder stage"
    assert not any(ins.keyword == "RUN" and "build-essential" in ins.args for ins in runtime), (
        "compilers stay in the builder"
    )


def test_hadolint_when_available():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (optional)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "error", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# healthcheck.py ------------------------------------------------------------------------------
def test_healthcheck_finds_the_component_environment(tmp_path, healthcheck_module):
    hc = healthcheck_module

    def proc(pid: str, env: dict[str, str] | None) -> None:
        (tmp_path / pid).mkdir()
        if env is not None:
            blob = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
            (tmp_path / pid / "environ").write_bytes(blob)

    proc("1", {"PATH": "/usr/bin"})  # the init
    proc("5", None)  # gone (no environ)
    proc("7", {"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"})
    proc("9", {hc.AIRFLOW_MARKER: "postgresql://x/y", "A": "b=c"})
    proc("12", {hc.AIRFLOW_MARKER: "ignored: later pid"})
    (tmp_path / "self").mkdir()
    env = hc.component_env(tmp_path, skip=frozenset())
    assert env == {hc.AIRFLOW_MARKER: "postgresql://x/y", "A": "b=c"}
    assert hc.component_env(tmp_path, skip=frozenset({9, 12})) == {"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}
    assert hc.component_env(tmp_path, skip=frozenset({7, 9, 12})) is None


def test_healthcheck_commands(healthcheck_module):
    hc = healthcheck_module
    assert hc.airflow_job_command("SchedulerJob")[1:] == [
        "-m",
        "airflow",
        "jobs",
        "check",
        "--job-type",
        "SchedulerJob",
        "--local",
    ]
    command = hc.celery_ping_command("abc123")
    assert command[1] == "-c" and command[-1] == "abc123"
    compile(command[2], "<celery ping>", "exec")
    assert set(hc.AIRFLOW_JOBS.values()) == {"SchedulerJob", "DagProcessorJob", "TriggererJob"}
    assert hc.main([]) == 2 and hc.main(["nope"]) == 2


def test_healthcheck_http(healthcheck_module):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert healthcheck_module.main(["http", base + "/healthz"]) == 0
        assert healthcheck_module.main(["http", base + "/readyz"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert healthcheck_module.check_http(f"http://127.0.0.1:{port}/", timeout=2) == 1
