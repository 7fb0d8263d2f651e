"""The current state of an installation, for ``graphrec status`` and the demo summary."""

from __future__ import annotations

import email
import json
from pathlib import Path
from typing import Any

from graphrec.lake import list_partitions
from graphrec.settings import Settings
from monitoring.alert_messages import KIND_HEADER
from serving.versions import current_version, verify_version
from validation.partition import recent_validations
from validation.quarantine import list_quarantined


def _drift_summaries(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """``(ds, summary.json)`` of every monitored day, oldest first."""
    drift_dir = settings.reports_dir / "drift"
    out = []
    for ds in list_partitions(drift_dir):
        path = drift_dir / f"ds={ds.isoformat()}" / "summary.json"
        if path.exists():
            out.append((ds.isoformat(), json.loads(path.read_text())))
    return out


def _latest_drift_report(summaries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
    if not summaries:
        return None
    ds, summary = summaries[-1]
    decision = summary.get("decision") or {}
    return {
        "ds": ds,
        "html": summary.get("html"),
        "status": summary.get("status"),
        "fired": decision.get("fired", []),
        "episode_id": decision.get("episode_id"),
    }


def _drift_days(summaries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Days on which the drift policy counted at least one signal (an episode opened or went on)."""
    return [ds for ds, summary in summaries if (summary.get("decision") or {}).get("fired")]


def _model_registry(settings: Settings) -> dict[str, Any]:
    db = settings.mlflow_dir / "mlflow.db"
    if settings.tracking_uri.startswith("sqlite:") and not db.exists():
        return {"champion_version": None, "challenger_version": None, "versions": []}
    # Imported here: MLflow takes seconds to import, and a home without a registry never needs it.
    from training.registry import get_alias_version, list_model_versions

    return {
        "champion_version": get_alias_version(settings, "champion"),
        "challenger_version": get_alias_version(settings, "challenger"),
        "versions": list_model_versions(settings),
    }


def collect_status(settings: Settings, *, include_registry: bool = True) -> dict[str, Any]:
    """Champion, published index, latest drift report and lake counts as one JSON-able dict."""
    index_version = current_version(settings)
    index: dict[str, Any] = {"version": index_version, "manifest": None, "checksums_ok": None}
    if index_version:
        path = settings.indexes_dir / index_version
        manifest = path / "manifest.json"
        content = json.loads(manifest.read_text()) if manifest.exists() else {}
        index.update(
            manifest=str(manifest),
            checksums_ok=verify_version(path),
            model_version=content.get("model_version"),
            ranker_version=content.get("ranker_version"),
        )
    recent = recent_validations(settings)
    drift = _drift_summaries(settings)
    mail = sorted(settings.mail_dir.glob("*.eml")) if settings.mail_dir.is_dir() else []
    status: dict[str, Any] = {
        "home": str(settings.root),
        "index": index,
        "drift": {"latest_report": _latest_drift_report(drift), "drift_days": _drift_days(drift)},
        "lake": {
            "landing_partitions": len(list_partitions(settings.landing_dir)),
            "curated_partitions": len(list_partitions(settings.curated_dir)),
            "quarantined_partitions": len(list_partitions(settings.quarantine_dir)),
        },
        "validation": {
            "recent": recent,
            "warnings": {v["ds"]: v["warning_checks"] for v in recent if v.get("warning_checks")},
            "quarantined": [
                {"ds": q["ds"], "attempt": q["attempt"], "reason": q["reason"], "day_now_curated": q["day_now_curated"]}
                for q in list_quarantined(settings)
            ],
            "data_docs": str(settings.data_docs_dir / "index.html"),
        },
        "mail": {"messages": len(mail), **_mail_kinds(mail), "directory": str(settings.mail_dir)},
        "reports_dir": str(settings.reports_dir),
    }
    if include_registry:
        status["models"] = _model_registry(settings)
    return status


def format_status(status: dict[str, Any]) -> str:
    models = status.get("models", {})
    index = status["index"]
    drift = status["drift"]
    lake = status["lake"]
    latest = drift["latest_report"] or {}
    validation = status.get("validation", {})
    warnings = "; ".join(f"{ds} {', '.join(checks)}" for ds, checks in validation.get("warnings", {}).items())
    quarantined = "; ".join(
        f"{q['ds']} {q['reason']}{' (corrected since)' if q['day_now_curated'] else ''}"
        for q in validation.get("quarantined", [])
    )
    lines = [
        f"home:               {status['home']}",
        f"champion model:     {models.get('champion_version')} (versions: {len(models.get('versions', []))})",
        f"published index:    {index['version']} (model {index.get('model_version')}, ranker {index.get('ranker_version')}, "
        f"checksums {'ok' if index['checksums_ok'] else 'n/a' if index['checksums_ok'] is None else 'MISMATCH'})",
        f"  manifest:         {index['manifest']}",
        f"lake:               {lake['curated_partitions']} curated, {lake['quarantined_partitions']} quarantined, "
        f"{lake['landing_partitions']} waiting in landing",
        f"quarantined:        {quarantined or 'none'}",
        f"validation warnings: {warnings or 'none'}",
        f"data docs:          {validation.get('data_docs')}",
        f"drift days:         {', '.join(drift['drift_days']) or 'none'}",
        f"latest drift report: {latest.get('ds', 'none')} {latest.get('status') or ''} {latest.get('html') or ''}".rstrip(),
        f"alert emails:       {status['mail']['messages']} in {status['mail']['directory']} "
        f"({status['mail']['drift_alerts']} drift, {status['mail'].get('drift_followups', 0)} drift follow-up, "
        f"{status['mail']['task_alerts']} task failure/retry)",
    ]
    return "\n".join(lines)


def _mail_kinds(paths: list[Path]) -> dict[str, int]:
    """Stored alerts by kind: drift emails, drift follow-ups and task failure/retry emails (``X-Graphrec-Kind``)."""
    kinds = []
    for path in paths:
        with path.open("rb") as handle:
            kinds.append(email.message_from_binary_file(handle).get(KIND_HEADER, "drift"))
    tasks = sum(1 for kind in kinds if kind.startswith("task-"))
    followups = sum(1 for kind in kinds if kind == "drift-followup")
    return {"drift_alerts": len(kinds) - tasks - followups, "task_alerts": tasks, "drift_followups": followups}
