"""Checks of a Compose file without Docker: the specification's schema and what ``docker compose config`` resolves.

Each check takes the parsed file (PyYAML, merge keys resolved as compose resolves them) and
returns a list of problems, empty when the file passes, so a test can feed it a broken
variant and see it rejected.

The schema is the Compose Specification's own, vendored unchanged as ``compose-spec.json``
from https://github.com/compose-spec/compose-go/blob/v2.13.0/schema/compose-spec.json
(compose-go v2.13.0, commit 0670a1c375c19defea19147bd82eb126a7c33b29, the library Docker
Compose validates with; Apache License 2.0). :data:`SCHEMA_BLOB` is its git blob id, checked
by the tests so that an edit to the copy is noticed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema

SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")
SCHEMA_SOURCE = "https://github.com/compose-spec/compose-go/blob/v2.13.0/schema/compose-spec.json"
SCHEMA_BLOB = "fe0e45d68542fee8ba7b1e483760c2f8802f8a4c"

#: ``${NAME}``, ``${NAME<op>word}`` and ``$NAME``, as compose interpolates them (``$$`` is a dollar).
_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<word>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
#: Names that hold secrets: required from the environment, never a default in the repository.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$")
#: ``restart`` values with which a container stays exited after a successful run.
_ONE_SHOT_RESTART = (None, "no", "on-failure")


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def schema_problems(data: Any) -> list[str]:
    """Where ``data`` breaks the Compose Specification's JSON schema."""
    validator = jsonschema.validators.validator_for(schema())(schema())
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<top>'}: {error.message}"
        for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    ]


def services_of(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return data.get("services") or {}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """``{service: condition}``; the short (list) form means ``service_started``."""
    value = service.get("depends_on") or {}
    if isinstance(value, list):
        return {name: "service_started" for name in value}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


def reference_problems(data: dict[str, Any]) -> list[str]:
    """Names a service uses that compose resolves: services, volumes, networks; start-order conditions."""
    services = services_of(data)
    volumes = set(data.get("volumes") or {})
    networks = set(data.get("networks") or {}) | {"default"}
    problems = []
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            if target not in services:
                problems.append(f"{name}: depends_on names {target!r}, not a service")
            elif condition == "service_healthy":
                check = services[target].get("healthcheck") or {}
                if not check.get("test") or check.get("disable"):
                    problems.append(f"{name} waits for {target} to be healthy, but {target} has no health check")
            elif condition == "service_completed_successfully":
                if services[target].get("restart") not in _ONE_SHOT_RESTART:
                    problems.append(f"{name} waits for {target} to exit, but {target} restarts (runs until stopped)")
        for other in _service_references(service):
            if other not in services:
                problems.append(f"{name}: refers to {other!r}, not a service")
        for volume in service.get("volumes") or []:
            source = _named_volume(volume)
            if source is not None and source not in volumes:
                problems.append(f"{name}: volume {source!r} is not declared under the top-level volumes")
        service_networks = service.get("networks") or []
        for network in service_networks if isinstance(service_networks, list) else service_networks.keys():
            if network not in networks:
                problems.append(f"{name}: network {network!r} is not declared under the top-level networks")
    cycle = _dependency_cycle({name: list(depends_on(s)) for name, s in services.items()})
    if cycle:
        problems.append(f"depends_on cycle: {' -> '.join(cycle)}")
    return problems


def _service_references(service: dict[str, Any]) -> Iterator[str]:
    for entry in service.get("volumes_from") or []:
        if not entry.startswith("container:"):
            yield entry.split(":")[0]
    for link in service.get("links") or []:
        yield link.split(":")[0]
    for key in ("network_mode", "pid", "ipc"):
        value = service.get(key) or ""
        if value.startswith("service:"):
            yield value.split(":", 1)[1]
    extends = service.get("extends")
    if isinstance(extends, dict) and "file" not in extends:
        yield extends["service"]


def _named_volume(volume: Any) -> str | None:
    """The named volume a service mount uses, or None for a bind mount, tmpfs or anonymous volume."""
    if isinstance(volume, dict):
        return volume.get("source") if volume.get("type") == "volume" else None
    source, sep, _ = str(volume).partition(":")
    if not sep or source.startswith((".", "/", "~", "$")):
        return None
    return source


def _dependency_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt in graph and nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None


def strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(path, text)`` of every string value (compose interpolates values, not keys)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{path}/{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, f"{path}/{i}")
    elif isinstance(value, str):
        yield path, value


def variables(data: Any) -> Iterator[tuple[str, str, str, str]]:
    """``(path, name, operator, word)`` of every interpolation; operator ``""`` for ``$NAME``/``${NAME}``."""
    for path, text in strings(data):
        for match in _VARIABLE.finditer(text.replace("$$", "")):
            if match.group("bare"):
                yield path, match.group("bare"), "", ""
            else:
                yield path, match.group("braced"), match.group("op") or "", match.group("word")


def interpolation_problems(data: Any, declared: set[str]) -> list[str]:
    """Malformed ``$`` expressions, and variables with no default that ``declared`` (the env template) lacks."""
    problems = []
    for path, text in strings(data):
        rest = _VARIABLE.sub("", text.replace("$$", ""))
        if "$" in rest:
            problems.append(f"{path}: invalid interpolation in {text!r} (a literal dollar is written $$)")
    for path, name, op, word in variables(data):
        if op == "" and word:
            problems.append(f"{path}: ${{{name}{word}}} is not an interpolation compose understands")
        has_default = op in ("-", ":-", "+", ":+")
        if not has_default and name not in declared:
            problems.append(f"{path}: ${name} has no default and the env template does not list it")
    return problems


def secret_problems(data: dict[str, Any], template: dict[str, str]) -> list[str]:
    """Secrets come from the (gitignored) env file only: required, no default, blank in the template."""
    problems = []
    for path, name, op, _ in variables(data):
        if SECRET_NAME.search(name):
            if op != ":?":
                problems.append(f"{path}: the secret {name} must be required with no default: ${{{name}:?message}}")
            if template.get(name, "") not in ("", "change-me"):
                problems.append(f"the env template holds a value for the secret {name}")
    for name, service in services_of(data).items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and value is not None and "${" not in value:
                problems.append(f"{name}: {key} is a secret with a literal value in the compose file")
    return problems


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's ``environment`` (map or ``KEY=VALUE`` list) as a dict."""
    value = service.get("environment") or {}
    if isinstance(value, dict):
        return {k: (None if v is None else str(v)) for k, v in value.items()}
    out: dict[str, str | None] = {}
    for item in value:
        key, sep, val = str(item).partition("=")
        out[key] = val if sep else None
    return out


def url_host_problems(data: dict[str, Any]) -> list[str]:
    """Every URL in a service's environment names a service of the file (containers reach each other by name)."""
    services = services_of(data)
    problems = []
    for name, service in services.items():
        for key, value in environment(service).items():
            plain = re.sub(r"\$\{[^}]*\}", "x", value or "")
            for url in re.findall(r"\b[a-z][a-z0-9+.-]*://[^\s,]+", plain):
                host = urlsplit(url).hostname
                if host not in services and host not in ("localhost", "127.0.0.1"):
                    problems.append(f"{name}: {key} reaches {host!r}, not a service")
    return problems


def build_problems(data: dict[str, Any], compose_dir: Path) -> list[str]:
    """Build contexts and Dockerfiles exist; services sharing an image build it the same way."""
    problems = []
    by_image: dict[str, set[tuple[Path, Path]]] = {}
    for name, service in services_of(data).items():
        build = service.get("build")
        if build is None:
            continue
        build = {"context": build} if isinstance(build, str) else build
        context = (compose_dir / build.get("context", ".")).resolve()
        dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
        if not context.is_dir():
            problems.append(f"{name}: build context {context} is not a directory")
        elif not dockerfile.is_file():
            problems.append(f"{name}: Dockerfile {dockerfile} does not exist")
        if service.get("image"):
            by_image.setdefault(service["image"], set()).add((context, dockerfile))
    for image, builds in by_image.items():
        if len(builds) > 1:
            problems.append(f"{image} is built from different contexts or Dockerfiles: {sorted(map(str, builds))}")
    return problems


def env_file_entries(value: Any) -> list[tuple[str, bool]]:
    """compose ``env_file`` (a string, a list of strings or of ``{path, required}``) as ``(path, required)``."""
    if value is None:
        return []
    out = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            out.append((item["path"], bool(item.get("required", True))))
        else:
            out.append((str(item), True))
    return out


def env_file_problems(data: dict[str, Any], compose_dir: Path, ignored: Callable[[Path], bool]) -> list[str]:
    """A required env file exists, or is a secrets file with a committed ``.example`` template and is ignored by git."""
    problems = []
    for name, service in services_of(data).items():
        for path, required in env_file_entries(service.get("env_file")):
            file = compose_dir / path
            template = file.with_name(file.name + ".example")
            if template.is_file():
                if not ignored(file):
                    problems.append(f"{name}: {path} holds secrets but git does not ignore it")
                if ignored(template):
                    problems.append(f"{name}: the template {template.name} is ignored by git, so never committed")
            elif required and not file.is_file():
                problems.append(f"{name}: env_file {path} does not exist and has no .example template")
    return problems


def is_pinned(image: str) -> bool:
    """``name:tag`` with a tag that names a version (has a digit, not latest), or a digest."""
    if "@sha256:" in image:
        return True
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag or not name:
        return False
    return tag != "latest" and any(ch.isdigit() for ch in tag)


def image_problems(data: dict[str, Any]) -> list[str]:
    """Every service names an image pinned to a version tag or digest."""
    return [
        f"{name}: image {service.get('image')!r} is not pinned to a version tag or digest"
        for name, service in services_of(data).items()
        if not is_pinned(str(service.get("image") or ""))
    ]


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, int]]:
    """``(host_ip, container port)`` of each published port (short ``[ip:]host:container`` or long form)."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((port.get("host_ip"), int(port["target"])))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        ip = parts[0] if len(parts) == 3 else None
        out.append((ip, int(parts[-1])))
    return out


def port_problems(data: dict[str, Any]) -> list[str]:
    """Published ports bind the loopback interface only."""
    return [
        f"{name}: port {port} is published on {ip or 'every interface'}, not 127.0.0.1"
        for name, service in services_of(data).items()
        for ip, port in published_ports(service)
        if ip != "127.0.0.1"
    ]


def healthcheck_problems(data: dict[str, Any]) -> list[str]:
    """Every service that runs until stopped has a health check in exec or shell form."""
    problems = []
    for name, service in services_of(data).items():
        if service.get("restart") == "no":
            continue  # one-shot: it exits
        check = service.get("healthcheck") or {}
        test = check.get("test")
        if check.get("disable") or not test:
            problems.append(f"{name}: runs until stopped but has no health check")
        elif isinstance(test, list) and (test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2):
            problems.append(f"{name}: health check test {test!r} is neither CMD nor CMD-SHELL with a command")
    return problems
