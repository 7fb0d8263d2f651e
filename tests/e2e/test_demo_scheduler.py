"""The demo path on a tiny lake: Airflow's own scheduler runs every day's DAG run and the
retraining run that drift triggers (not the test, not dag.test())."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from app.demo import run_demo
from graphrec.settings import Settings
from ingest.simulator import SimulationConfig

pytestmark = pytest.mark.e2e


def test_scheduler_executes_drift_triggered_retrain(tmp_path):
    settings = Settings(home=tmp_path / "home", training={"epochs": 8})
    config = SimulationConfig(
        n_users=300, n_items=150, days=3, events_per_day=1500, drift_day=3, drift_new_items=40, seed=7
    )
    lines: list[str] = []
    summary = run_demo(settings, config=config, echo=lines.append)

    assert summary["days_processed"] == 3
    # A line as each day starts (before its run), not only when it ends.
    started = [i for i, line in enumerate(lines) if "run triggered" in line]
    assert [lines[i].split()[0] for i in started] == [config.day(d).isoformat() for d in (1, 2, 3)]
    assert all(lines[i + 1].strip().startswith(config.day(d).isoformat()) for d, i in zip((1, 2, 3), started))
    assert summary["drift_days"] == [config.day(3).isoformat()]
    assert summary["alert_emails"] == 1
    retrains = summary["drift_retrain_runs"]
    assert len(retrains) == 1 and retrains[0]["state"] == "success", lines
    assert retrains[0]["reason"].startswith(f"drift on {config.day(3).isoformat()}")
    # The retrain is a separate run created by TriggerDagRunOperator, not one the test asked for,
    # named after its day and episode, with the reason as its note.
    day3 = config.day(3).isoformat()
    assert retrains[0]["run_id"] == f"drift__{day3}__{day3}", retrains[0]["run_id"]
    note = retrains[0]["note"].splitlines()
    assert any(line.startswith(f"retrain: drift-triggered for {day3}: drift on {day3}") for line in note), note
    assert any(line.startswith("canary: ") for line in note), note  # the retrain's own verdict
    # Every run states its verdicts in its note (written by the tasks through the REST API).
    notes = {r["ds"]: r["note"] for r in summary["runs"] if r["run_id"].startswith("demo__")}
    assert notes[config.day(1).isoformat()].startswith("data: curated"), notes
    assert notes[config.day(2).isoformat()].startswith("canary: "), notes  # the night's verdict first
    assert "drift: alert" in notes[day3] and "retrain triggered" in notes[day3], notes
    retrain_run = next(r for r in summary["runs"] if r["run_id"] == retrains[0]["run_id"])
    assert retrain_run["tasks"]["train"] == "success"
    assert retrain_run["tasks"]["drift_check"] == "skipped"  # no alert loop
    # The retrain's model version records in MLflow that drift triggered it, and which report.
    from training import registry

    versions = registry.client_for(settings).search_model_versions(f"name='{settings.mlflow.retriever_model_name}'")
    drifted = [v for v in versions if v.tags.get("trigger") == "drift"]
    assert len(drifted) == 1, [v.tags for v in versions]
    report = drifted[0].tags["drift_report"]
    assert (
        f"ds={config.day(3).isoformat()}" in report and (tmp_path / "home").resolve() in Path(report).resolve().parents
    )
    assert Path(report).is_file()
    assert drifted[0].tags["drift_episode"] == f"drift-{config.day(3).isoformat()}"
    assert json.loads((settings.root / "demo_summary.json").read_text())["alert_emails"] == 1
    # Everything the demo started (API server, scheduler, DAG processor, SMTP sink) is stopped.
    leftovers = [p.cmdline() for p in psutil.Process().children(recursive=True) if p.is_running()]
    assert not [c for c in leftovers if any("airflow" in part for part in c)], leftovers
