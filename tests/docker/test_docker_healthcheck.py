"""docker/healthcheck.py, the containers' health check: the component's environment, its commands, HTTP."""

from __future__ import annotations

import importlib.util
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

HEALTHCHECK = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


@pytest.fixture(scope="module")
def healthcheck_module():
    spec = importlib.util.spec_from_file_location("graphrec_docker_healthcheck", HEALTHCHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
