"""Verdicts on the Airflow grid: notes on the DAG run and its task instances.

A task of ``graphrec_nightly`` states what it decided in one line (``quarantined:
null_ids``, ``promoted v9 (R@20 0.197 vs champion 0.190 …)``, ``no data landed for
2025-01-11``) as its **task note**, and keeps one line per stage in the **run note**
(``canary: …``, ``data: …``, ``drift: …``), which the UI shows on the run (its first
line, the night's verdict, without a click).

Airflow 3's task processes reach the metadata only through the execution API, which has
no note call; notes are written with the public REST API (``PATCH
/api/v2/dags/{dag}/dagRuns/{run}`` and ``…/taskInstances/{task}`` with
``update_mask=note``), as the UI does, logged in as the installation's ``admin`` user
(the password from ``GRAPHREC_AIRFLOW__ADMIN_PASSWORD``, else from SimpleAuthManager's
passwords file). Notes are a view of the decision, never the decision: without a
reachable API server (``dag.test()`` in tests, an API on another host without
credentials here) a note is logged and skipped, and the task goes on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from graphrec.settings import Settings

log = logging.getLogger(__name__)

#: Airflow keeps at most this many characters of a note.
NOTE_LIMIT = 1000
#: The stages that keep a line in the run note, in the order they are shown: the night's
#: verdict (the canary's) first, because the UI shows a run note's first line.
STAGES = ("canary", "data", "publish", "drift", "retrain")


def merge_run_note(current: str | None, stage: str, line: str) -> str:
    """The run note with ``stage``'s line replaced (or added), stages in :data:`STAGES` order.

    >>> merge_run_note("data: curated 4,012 rows", "canary", "rejected v7: no_regression")
    'canary: rejected v7: no_regression\\ndata: curated 4,012 rows'
    """
    lines: dict[str, str] = {}
    other: list[str] = []
    for raw in (current or "").splitlines():
        key, sep, rest = raw.partition(": ")
        if sep and key in STAGES:
            lines[key] = rest
        elif raw.strip():
            other.append(raw)  # a note an operator wrote by hand is kept
    lines[stage] = " ".join(line.split())
    ordered = [f"{key}: {lines[key]}" for key in STAGES if key in lines]
    return "\n".join(ordered + other)[:NOTE_LIMIT]


def _password(settings: Settings) -> str | None:
    if settings.airflow.admin_password is not None:
        return settings.airflow.admin_password.get_secret_value()
    home = Path(os.environ.get("AIRFLOW_HOME") or settings.airflow_home)
    # Airflow's SimpleAuthManager reads its users' passwords from this file (the services
    # profile names it; embedded, Airflow generates it under AIRFLOW_HOME).
    configured = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    path = Path(configured) if configured else home / "simple_auth_manager_passwords.json.generated"
    try:
        return json.loads(path.read_text()).get("admin")
    except (OSError, ValueError, AttributeError):
        return None


def _base_url() -> str | None:
    return os.environ.get("AIRFLOW__API__BASE_URL") or None


class NoteWriter:
    """Writes run and task notes through Airflow's REST API; every failure is logged, never raised.

    Args:
        settings: locates the credentials.
        base_url: Airflow's API server (default: ``AIRFLOW__API__BASE_URL``, which
            graphrec sets for its components; ``None`` there: notes are skipped).
        timeout: seconds per HTTP call.
    """

    def __init__(self, settings: Settings, base_url: str | None = None, timeout: float = 5.0) -> None:
        self._settings = settings
        self._base = (base_url or _base_url() or "").rstrip("/")
        self._timeout = timeout
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client | None:
        if self._client is not None:
            return self._client
        password = _password(self._settings)
        if not self._base or password is None:
            log.debug("run notes skipped: no Airflow API server or credentials here")
            return None
        client = httpx.Client(base_url=self._base, timeout=self._timeout)
        reply = client.post("/auth/token", json={"username": "admin", "password": password})
        reply.raise_for_status()
        client.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
        self._client = client
        return client

    def annotate(self, context: Mapping[str, Any], stage: str, line: str, *, task_note: bool = True) -> bool:
        """Put ``line`` on the run note (as ``stage: line``) and, by default, as the task's note.

        Args:
            context: the running task's Airflow context (``dag_run``, ``ti``).
            stage: one of :data:`STAGES`.
            line: the verdict in one line.
            task_note: also set the task instance's note.

        Returns:
            bool: True when the notes were written.
        """
        dag_run, ti = context.get("dag_run"), context.get("ti")
        if dag_run is None or ti is None:
            return False
        dag_id, run_id = quote(str(dag_run.dag_id), safe=""), quote(str(dag_run.run_id), safe="")
        try:
            http = self._http()
            if http is None:
                return False
            run_path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
            current = http.get(run_path)
            current.raise_for_status()
            note = merge_run_note(current.json().get("note"), stage, line)
            http.patch(run_path, params={"update_mask": "note"}, json={"note": note}).raise_for_status()
            if task_note:
                task_path = f"{run_path}/taskInstances/{quote(str(ti.task_id), safe='')}"
                http.patch(
                    task_path, params={"update_mask": "note"}, json={"note": line[:NOTE_LIMIT]}
                ).raise_for_status()
            return True
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            log.info("could not write the run note (%s: %s); the decision stands: %s", type(exc).__name__, exc, line)
            return False


def annotate(settings: Settings, context: Mapping[str, Any], stage: str, line: str, *, task_note: bool = True) -> bool:
    """One note through a fresh :class:`NoteWriter` (see :meth:`NoteWriter.annotate`); also prints the line."""
    print(f"{stage}: {line}")
    return NoteWriter(settings).annotate(context, stage, line, task_note=task_note)
