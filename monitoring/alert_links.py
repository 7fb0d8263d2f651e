"""The absolute links that alert emails carry: Airflow UI pages and drift reports.

Emails are read on another machine than the one that sent them, so every link is
absolute and built from settings, never from what the running process happens to know:

* Airflow pages start at ``settings.alerts.airflow_url`` (the public base URL of the
  Airflow UI), or ``http://{settings.airflow.host}:{settings.airflow.port}`` when it is
  unset. The paths are the Airflow 3 UI's routes: ``/dags/{dag_id}/runs/{run_id}`` (the
  DAG run) and ``/dags/{dag_id}/runs/{run_id}/tasks/{task_id}`` (the task instance,
  which opens on its log; ``/mapped/{map_index}`` for a mapped one, ``?try_number=N``
  for one try), with every part URL-quoted (run ids hold ``:`` and ``+``).
* Reports under ``GRAPHREC_HOME/reports/`` link to ``settings.alerts.reports_url`` plus
  their path below that directory when it is set, else to a ``file://`` URL.

Pure and light (no Airflow, no pandas): the DAG file imports the task alert at parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from graphrec.settings import Settings


def airflow_base_url(settings: Settings) -> str:
    """The Airflow UI's public base URL, without a trailing slash."""
    base = settings.alerts.airflow_url or f"http://{settings.airflow.host}:{settings.airflow.port}"
    return base.rstrip("/")


def dag_run_url(settings: Settings, dag_id: str, run_id: str) -> str:
    """The Airflow 3 UI page of one DAG run."""
    return f"{airflow_base_url(settings)}/dags/{_part(dag_id)}/runs/{_part(run_id)}"


def task_url(
    settings: Settings,
    dag_id: str,
    run_id: str,
    task_id: str,
    *,
    map_index: int | None = None,
    try_number: int | None = None,
) -> str:
    """The Airflow 3 UI page of one task instance, which opens on its log."""
    url = f"{dag_run_url(settings, dag_id, run_id)}/tasks/{_part(task_id)}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    if try_number is not None and try_number > 0:
        url += f"?try_number={try_number}"
    return url


def context_run(context: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(dag_id, run_id)`` of an Airflow task context (``dag_run`` or ``ti``), ``None`` without one."""
    if not context:
        return None
    source = context.get("dag_run") or context.get("ti") or context.get("task_instance")
    dag_id = getattr(source, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
    run_id = getattr(source, "run_id", None)
    return (str(dag_id), str(run_id)) if dag_id and run_id else None


def file_url(path: str | Path) -> str:
    """A ``file://`` URL for a local path (URLs are returned unchanged).

    Unlike ``Path.as_uri`` it keeps ``=`` readable (``ds=2025-01-22``, not ``ds%3D...``).
    """
    text = str(path)
    if "://" in text:
        return text
    return "file://" + quote(Path(text).expanduser().resolve().as_posix(), safe="/=:@-._~+,")


def report_url(settings: Settings, path: str | Path) -> str:
    """The link of a report file: under ``reports_url`` when it is set and the file lies
    below ``settings.reports_dir``, else its ``file://`` URL (URLs are returned unchanged)."""
    text = str(path)
    if "://" in text or not settings.alerts.reports_url:
        return file_url(text)
    try:
        relative = Path(text).expanduser().resolve().relative_to(settings.reports_dir.expanduser().resolve())
    except ValueError:  # not below the served directory: only a local path can name it
        return file_url(text)
    return settings.alerts.reports_url.rstrip("/") + "/" + quote(relative.as_posix(), safe="/=:@-._~+,")


def _part(value: str) -> str:
    return quote(str(value), safe="")
