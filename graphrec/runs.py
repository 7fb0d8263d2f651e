"""Pure helpers that turn an Airflow run's context into pipeline inputs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from graphrec.lake import parse_ds


def resolve_run_day(
    *, params: Mapping[str, Any], logical_date: dt.datetime | None, run_after: dt.datetime | None, run_type: str
) -> dict[str, Any]:
    """Pick the partition day a nightly run processes and record why the run happens.

    The ``ds`` param wins; otherwise the run processes the day before its logical date
    (a run at 02:00 on the 8th processes the 7th). Manual runs without a logical date
    use the time they were queued for.

    Returns:
        ``{"ds": "YYYY-MM-DD", "reason": ..., "tags": {...}}`` where reason is the
        ``trigger_reason`` param when set, else ``"schedule"`` for scheduled runs and
        ``"manual"`` otherwise; ``tags`` are the MLflow tags that record the trigger:
        ``trigger`` (``drift`` when the ``drift_report`` param names the report that
        caused the run, else ``schedule``/``manual``/``other``), plus ``drift_report`` and
        ``drift_episode`` for drift-triggered runs, and ``dry_run: "true"`` when the
        ``dry_run`` param is set (and then ``"dry_run": True`` next to them).
    """
    if params.get("ds"):
        ds = parse_ds(params["ds"])
    else:
        anchor = logical_date or run_after
        if anchor is None:
            raise ValueError("run has neither a ds param, a logical date nor a run_after time")
        ds = (anchor - dt.timedelta(days=1)).date()
    reason = (params.get("trigger_reason") or "").strip()
    if not reason:
        reason = "schedule" if "scheduled" in run_type.lower() else "manual"
    report = (params.get("drift_report") or "").strip()
    if report:
        tags = {
            "trigger": "drift",
            "drift_report": report,
            "drift_episode": (params.get("drift_episode") or "").strip(),
        }
    else:
        tags = {"trigger": reason if reason in ("schedule", "manual") else "other"}
    day: dict[str, Any] = {"ds": ds.isoformat(), "reason": reason, "tags": tags}
    if params.get("dry_run"):
        tags["dry_run"] = "true"
        day["dry_run"] = True
    return day
