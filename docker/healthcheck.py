"""Health checks of the graphrec containers (docker/compose.yaml runs them; stdlib only).

    python healthcheck.py http URL          GET URL answers 2xx within 10 s
    python healthcheck.py scheduler         this container's Airflow SchedulerJob heartbeats
    python healthcheck.py dag-processor     ... DagProcessorJob
    python healthcheck.py triggerer         ... TriggererJob
    python healthcheck.py celery-worker     a Celery worker of this container answers a ping

Exit status 0 means healthy. The image has no curl, hence ``http``.

The Airflow checks need Airflow's configuration, which ``graphrec services run COMPONENT``
builds in its own process (AIRFLOW__* variables from graphrec's settings) before it execs
the real program. A health check is started by ``docker exec`` with the container's plain
environment, so it borrows the environment of the running component: the first process
of the container (same user) whose environment holds AIRFLOW__ variables.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

#: Airflow job types checked with ``airflow jobs check --job-type ... --local``.
AIRFLOW_JOBS = {
    "scheduler": "SchedulerJob",
    "dag-processor": "DagProcessorJob",
    "triggerer": "TriggererJob",
}
#: The Celery application of the Airflow Celery provider (``airflow celery worker``).
CELERY_APP_MODULE = "airflow.providers.celery.executors.celery_executor_utils"
#: Pings every worker through the broker; healthy when one whose node name ends in
#: ``@<this container's hostname>`` answers (graphrec names its workers ``graphrec-worker0@%h``).
CELERY_PING = f"""
import sys
from {CELERY_APP_MODULE} import app
names = [name for reply in (app.control.ping(timeout=10) or []) for name in reply]
mine = [name for name in names if name.partition("@")[2] == sys.argv[1]]
print("answered:", ", ".join(mine) or "none", "| all:", ", ".join(names) or "none")
sys.exit(0 if mine else 1)
"""
#: The variable that marks a process as one that runs with Airflow's configuration.
AIRFLOW_MARKER = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"

HTTP_TIMEOUT_S = 10
COMMAND_TIMEOUT_S = 60


def parse_environ(raw: bytes) -> dict[str, str]:
    """A ``/proc/PID/environ`` blob (NUL-separated ``KEY=VALUE``) as a dict."""
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return env


def component_env(proc: Path = Path("/proc"), skip: frozenset[int] | None = None) -> dict[str, str] | None:
    """The environment of the container's Airflow process, or None when none is found.

    Processes are tried by increasing PID; one holding :data:`AIRFLOW_MARKER` wins, else the
    first one holding any ``AIRFLOW__`` variable. Unreadable processes (another user, gone)
    are skipped, and so are this process and its parent.
    """
    if skip is None:
        skip = frozenset({os.getpid(), os.getppid()})
    pids = sorted(int(entry.name) for entry in proc.iterdir() if entry.name.isdigit())
    fallback: dict[str, str] | None = None
    for pid in pids:
        if pid in skip:
            continue
        try:
            env = parse_environ((proc / str(pid) / "environ").read_bytes())
        except OSError:
            continue
        if AIRFLOW_MARKER in env:
            return env
        if fallback is None and any(key.startswith("AIRFLOW__") for key in env):
            fallback = env
    return fallback


def check_http(url: str, timeout: float = HTTP_TIMEOUT_S) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed local URLs)
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if 200 <= status < 300:
        return 0
    print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
    return 1


def airflow_job_command(job_type: str) -> list[str]:
    return [sys.executable, "-m", "airflow", "jobs", "check", "--job-type", job_type, "--local"]


def celery_ping_command(hostname: str | None = None) -> list[str]:
    return [sys.executable, "-c", CELERY_PING, hostname or socket.gethostname()]


def run_with_component_env(command: list[str]) -> int:
    env = component_env()
    if env is None:
        print("unhealthy: no process with Airflow's environment in this container", file=sys.stderr)
        return 1
    try:
        return subprocess.run(command, env=env, timeout=COMMAND_TIMEOUT_S, check=False).returncode
    except subprocess.TimeoutExpired:
        print(f"unhealthy: {' '.join(command[1:4])} ran past {COMMAND_TIMEOUT_S} s", file=sys.stderr)
        return 1


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http":
        return check_http(argv[1])
    if len(argv) == 1 and argv[0] in AIRFLOW_JOBS:
        return run_with_component_env(airflow_job_command(AIRFLOW_JOBS[argv[0]]))
    if argv == ["celery-worker"]:
        return run_with_component_env(celery_ping_command())
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
