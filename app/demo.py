"""The main job of the embedded default: simulate days and run the nightly DAG on each.

Every pipeline run, including the drift-triggered retraining runs, is executed by
Airflow's own scheduler; this module only lands data, starts the components, asks the
API for one run per day (as a user would from the UI) and reports what happened.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from typing import Any

from app.airflow_local import LocalAirflow
from app.status import collect_status
from graphrec.lake import atomic_write_json
from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate
from monitoring.mailsink import MailSink
from training.results import RankerResult, RetrieverResult

DAG_ID = "graphrec_nightly"
MARKER = ".graphrec-demo"


def prepare_home(settings: Settings) -> None:
    """Start from an empty home; refuse to wipe a directory the demo did not create."""
    root = settings.root
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise RuntimeError(
                f"GRAPHREC_HOME={root} is not empty and was not created by the demo; "
                "point GRAPHREC_HOME at an empty directory to run the demo."
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("created by `graphrec demo`; the next demo run wipes this directory\n")


def describe_run(client, run: dict) -> dict[str, Any]:
    """Task states and the key results of one DAG run, read back through the REST API."""
    run_id = run["dag_run_id"]
    states = {ti["task_id"]: ti["state"] for ti in client.task_instances(DAG_ID, run_id)}
    out: dict[str, Any] = {
        "run_id": run_id,
        "state": run["state"],
        "conf": run.get("conf") or {},
        "tasks": states,
        "note": run.get("note") or "",  # the verdicts the tasks wrote (app.airflow_notes)
    }
    day = client.xcom(DAG_ID, run_id, "resolve_day") if states.get("resolve_day") == "success" else None
    out["ds"], out["reason"] = (day or {}).get("ds"), (day or {}).get("reason")
    for task_id in ("validate", "train", "train_ranker", "canary", "publish", "drift_check"):
        if states.get(task_id) == "success":
            out[task_id] = client.xcom(DAG_ID, run_id, task_id)
    return out


def _line(run: dict[str, Any]) -> str:
    tasks = run["tasks"]
    head = f"  {run.get('ds') or '?'} [{run.get('reason') or '?'}] {run['state']}"
    if tasks.get("validate") == "failed":
        data = next((line for line in run.get("note", "").splitlines() if line.startswith("data: ")), "")
        return f"{head}: {data.removeprefix('data: ') or 'partition QUARANTINED by validation'}".replace(
            "quarantined:", "partition QUARANTINED by validation:"
        )
    parts = [head + ":"]
    if warnings := (run.get("validate") or {}).get("warning_checks"):
        parts.append(f"accepted with warnings {warnings};")
    if trained := run.get("train"):
        train = RetrieverResult.from_xcom(trained)
        parts.append(
            f"model v{train.model_version} Recall@20 {train.recall_at_20:.4f} NDCG@20 {train.ndcg_at_20:.4f}"
            f" (popularity {train.popularity_recall_at_20:.4f}/{train.popularity_ndcg_at_20:.4f})"
        )
    if (ranked := run.get("train_ranker")) and ranked.get("model_version") is not None:
        ranker = RankerResult.from_xcom(ranked)
        k, scores = ranker.k, ranker.evaluation
        parts.append(
            f"ranker v{ranker.model_version} NDCG@{k} {scores[f'ranker_ndcg_at_{k}']:.4f}"
            f" (retrieval alone {scores[f'retrieval_ndcg_at_{k}']:.4f});"
        )
    elif ranked:  # the task's {"skipped": why}
        parts.append(f"no ranker ({ranked.get('skipped')});")
    if canary := run.get("canary"):
        parts.append("promoted" if canary["promoted"] else f"kept champion ({canary['reason']})")
    if publish := run.get("publish"):
        parts.append(f"index {publish['index_version']}")
    if drift := run.get("drift_check"):
        decision = drift.get("decision")
        if not decision:
            parts.append(f"drift not checked ({drift.get('reason')})")
        else:
            fired = decision.get("fired") or decision.get("watch") or []
            parts.append(f"drift {decision['status']}" + (f" ({', '.join(fired)})" if fired else ""))
    if tasks.get("send_alert") == "success":
        parts.append("-> alert emailed")
    if tasks.get("trigger_retrain") == "success":
        parts.append("-> retrain triggered")
    return " ".join(parts)


def run_demo(
    settings: Settings,
    *,
    config: SimulationConfig | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Simulate ``config.days`` days and run the nightly DAG for each through Airflow.

    Returns the summary (also written to ``GRAPHREC_HOME/demo_summary.json``).
    """
    config = config or SimulationConfig(days=10, drift_day=8, corrupt_day=4, seed=settings.seed)
    started = time.monotonic()
    prepare_home(settings)
    echo(f"graphrec demo: home {settings.root}")
    simulate(config, settings.landing_dir)
    echo(
        f"simulated {config.days} days from {config.start} ({config.n_users} users, {config.n_items} items); "
        f"drift from day {config.drift_day}, malformed partition on day {config.corrupt_day}"
    )

    runs: list[dict[str, Any]] = []
    with MailSink(settings.mail_dir, host=settings.alerts.smtp_host, port=0) as sink:
        echo(f"SMTP sink on {settings.alerts.smtp_host}:{sink.port} -> {settings.mail_dir}")
        with LocalAirflow(settings, smtp_port=sink.port) as airflow:
            client = airflow.client
            echo(f"Airflow API server, scheduler and DAG processor up at {airflow.base_url} (logs: {airflow.log_dir})")
            airflow.wait_for_dag(DAG_ID)
            client.set_paused(DAG_ID, False)
            client.wait_idle(DAG_ID)  # the scheduler's own run for the latest 02:00 slot, if any
            seen = {r["dag_run_id"] for r in client.runs(DAG_ID)}
            for index in range(1, config.days + 1):
                ds = config.day(index)
                logical = dt.datetime.combine(ds + dt.timedelta(days=1), dt.time(2), tzinfo=dt.UTC)
                echo(
                    f"  {ds} day {index} of {config.days}: run triggered "
                    f"({time.monotonic() - started:.0f} s since the demo started) ..."
                )
                client.trigger(DAG_ID, logical_date=logical.isoformat(), run_id=f"demo__{ds.isoformat()}")
                client.wait_idle(DAG_ID, poll=0.5)
                for run in client.runs(DAG_ID):
                    if run["dag_run_id"] not in seen:
                        seen.add(run["dag_run_id"])
                        described = describe_run(client, run)
                        runs.append(described)
                        echo(_line(described))
    elapsed = time.monotonic() - started

    status = collect_status(settings)
    retrains = [r for r in runs if (r.get("reason") or "").startswith("drift")]
    summary = {
        "wall_seconds": round(elapsed, 1),
        "days_processed": len({r["ds"] for r in runs if r["tasks"].get("validate") == "success"}),
        "days_simulated": config.days,
        "partitions_quarantined": status["lake"]["quarantined_partitions"],
        "quarantined": status["validation"]["quarantined"],
        "validation_warnings": status["validation"]["warnings"],
        "data_docs": status["validation"]["data_docs"],
        "model_versions": len(status["models"]["versions"]),
        "champion_version": status["models"]["champion_version"],
        "promotions": sum(1 for r in runs if (r.get("canary") or {}).get("promoted")),
        "ranker_versions": sum(1 for r in runs if (r.get("train_ranker") or {}).get("model_version") is not None),
        "served_ranker_version": status["index"].get("ranker_version"),
        "index_version": status["index"]["version"],
        "index_manifest": status["index"]["manifest"],
        "drift_days": status["drift"]["drift_days"],
        "alert_emails": status["mail"]["drift_alerts"],
        "task_alert_emails": status["mail"]["task_alerts"],
        "drift_retrain_runs": [
            {"run_id": r["run_id"], "state": r["state"], "reason": r["reason"], "note": r.get("note", "")}
            for r in retrains
        ],
        "reports_dir": status["reports_dir"],
        "runs": runs,
    }
    atomic_write_json(settings.root / "demo_summary.json", summary)
    return summary


def format_summary(summary: dict[str, Any], settings: Settings) -> str:
    retrains = summary["drift_retrain_runs"]
    lines = [
        "",
        "graphrec demo summary",
        f"  wall time:              {summary['wall_seconds']:.0f} s",
        f"  days processed:         {summary['days_processed']} of {summary['days_simulated']}",
        f"  partitions quarantined: {summary['partitions_quarantined']} "
        + "".join(f"[{q['ds']}: {q['reason']}] " for q in summary["quarantined"])
        + "(graphrec quarantine list)",
        "  validation warnings:    "
        + ("; ".join(f"{ds} {', '.join(c)}" for ds, c in summary["validation_warnings"].items()) or "none"),
        f"  data docs:              {summary['data_docs']}",
        f"  model versions:         {summary['model_versions']}, champion v{summary['champion_version']}, "
        f"{summary['promotions']} promotions",
        f"  ranker versions:        {summary['ranker_versions']}, serving ranker "
        + (
            f"v{summary['served_ranker_version']}"
            if summary["served_ranker_version"] is not None
            else "none (retrieval only)"
        ),
        f"  published index:        {summary['index_version']} ({summary['index_manifest']})",
        f"  drift days:             {', '.join(summary['drift_days']) or 'none'}",
        f"  alert emails stored:    {summary['alert_emails']} drift, {summary['task_alert_emails']} task failure/retry "
        f"({settings.mail_dir})",
        f"  drift-triggered retrains: {len(retrains)} " + ", ".join(f"{r['run_id']} {r['state']}" for r in retrains),
        f"  reports:                {summary['reports_dir']}",
        f"  summary JSON:           {settings.root / 'demo_summary.json'}",
        "",
        "Next: graphrec status --json | graphrec recommend <user_id> --k 10 | graphrec serve",
    ]
    return "\n".join(lines)
