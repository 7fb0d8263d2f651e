"""``graphrec services up`` / ``down`` / ``status``: the services stack as background processes.

:class:`ServicesStack` starts every component of :mod:`app.services` on this machine
(``make up``), waits until each answers, and stops exactly the processes it started
(``make down``): their ids and kernel start times are kept in ``<home>/services/stack.json``,
so a reused pid is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from celery import Celery

from app.airflow_local import AirflowClient
from app.services import (
    ADMIN_USER,
    DAG_ID,
    ServicesError,
    component_command,
    init,
    service_secrets,
    services_env,
    services_settings,
)
from graphrec.settings import Settings


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
        return s.alerts.smtp_host in ("127.0.0.1", "localhost") and not _port_taken(
            s.alerts.smtp_host, s.alerts.smtp_port
        )

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
            for i in range(1, s.airflow.celery_workers + 1):
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
            "airflow": f"http://{host(s.airflow.host)}:{s.airflow.port}",
            "mlflow": f"http://{host(s.mlflow.host)}:{s.mlflow.port}",
            "service": f"http://{host(s.serve.host)}:{s.serve.port}",
        }

    # lifecycle
    def up(self, *, timeout: float = 300, unpause: bool = True) -> dict:
        """Start every component, wait until each answers; on any failure stop them all."""
        running = [p for p in self.processes() if p.alive()]
        if running:
            raise ServicesError(f"the stack is already up ({', '.join(p.name for p in running)}); `make down` stops it")
        s = self.settings
        for label, port, setting in (
            ("Airflow", s.airflow.port, "AIRFLOW__PORT"),
            ("MLflow", s.mlflow.port, "MLFLOW__PORT"),
            ("the recommendation service", s.serve.port, "SERVE__PORT"),
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
        app = Celery(broker=self.settings.celery_broker_url)
        try:
            replies = app.control.ping(timeout=2) or []
        finally:
            app.close()
        names = sorted(name for reply in replies for name in reply)
        return names if len(names) >= self.settings.airflow.celery_workers else None

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
