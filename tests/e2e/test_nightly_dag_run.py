"""End to end: the real graphrec_nightly DAG, run by Airflow's dag.test() on a tiny simulated lake.

Every stage runs for real (Great Expectations, Feast, PyG + MLflow, FAISS, Evidently, SMTP
to a loopback server). dag.test() executes one run in-process; the retraining run that the
drift branch triggers is created in Airflow's database (the scheduler executes it in the
demo and in production).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import json
from pathlib import Path

import pytest

from graphrec import settings as settings_module
from graphrec.lake import list_partitions, partition_name, read_curated
from ingest.simulator import SimulationConfig, simulate

pytestmark = pytest.mark.e2e

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
CONFIG = SimulationConfig(
    n_users=300, n_items=150, days=4, events_per_day=1500, drift_day=4, drift_new_items=40, corrupt_day=2, seed=7
)


def _sha(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.parquet"))}


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.fixture
def lake(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("GRAPHREC_HOME", str(home))
    settings_module.get_settings.cache_clear()
    settings = settings_module.get_settings()
    simulate(CONFIG, settings.landing_dir)
    yield settings
    settings_module.get_settings.cache_clear()


def test_nightly_dag_end_to_end(airflow_db, lake, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from monitoring.mailsink import MailSink
    from serving.recommender import Recommender
    from serving.versions import current_version, verify_version

    settings = lake
    corrupt_day = CONFIG.day(2)
    landed_bad = _sha(settings.landing_dir / partition_name(corrupt_day))

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).get_dag("graphrec_nightly")
    with MailSink(settings.mail_dir, port=0) as sink:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMTP_DEFAULT",
            json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": sink.port,
                    "extra": {"disable_tls": True, "disable_ssl": True},
                }
            ),
        )
        runs = {}
        for index in range(1, CONFIG.days + 1):
            ds = CONFIG.day(index)
            logical = dt.datetime.combine(ds + dt.timedelta(days=1), dt.time(2), tzinfo=dt.UTC)
            # One day of history makes a weak first model: force its publication so the
            # later days exercise the gate against a real champion.
            conf = {"epochs": 8, "force_publish": index == 3}
            runs[index] = dag.test(logical_date=logical, run_conf=conf)

    # Day 1: validated and featurized; too little history to train yet.
    day1 = _states(runs[1])
    assert day1["validate"] == "success" and day1["features"] == "success"
    assert day1["train"] == "skipped"

    # Day 2: the malformed partition is quarantined unchanged, with its reasons; the run fails.
    day2 = _states(runs[2])
    assert day2["validate"] == "failed" and day2["features"] == "upstream_failed"
    assert str(runs[2].state) == "failed"
    attempts = list((settings.quarantine_dir / partition_name(corrupt_day)).iterdir())
    assert len(attempts) == 1
    assert _sha(attempts[0]) == landed_bad
    reason = json.loads((attempts[0] / "_reason.json").read_text())
    failed = {f["expectation"] for f in reason["failed"]}
    assert any("not_be_null" in name for name in failed)
    assert any("in_set" in name for name in failed)
    assert {"null_ids", "timestamp_outside_day", "unknown_event_type"} <= set(reason["checks"])
    assert not (settings.curated_dir / partition_name(corrupt_day)).exists()
    # Every validation run left a record and Data Docs pages (linked from the task log).
    from app.status import collect_status

    recent = {v["ds"]: v for v in collect_status(settings, include_registry=False)["validation"]["recent"]}
    assert recent[corrupt_day.isoformat()]["status"] == "quarantined"
    assert recent[CONFIG.day(1).isoformat()]["status"] == "curated"
    assert all(Path(page).is_file() for page in recent[CONFIG.day(1).isoformat()]["data_docs"].values())

    # Day 3: trained, promoted (forced) and published.
    day3 = _states(runs[3])
    for task_id in ("validate", "features", "train", "train_ranker", "canary", "publish", "drift_check"):
        assert day3[task_id] == "success", (task_id, day3)
    version = current_version(settings)
    assert version is not None and verify_version(settings.indexes_dir / version)

    # Day 4: drift is detected, an alert email is delivered over SMTP, a retrain is triggered.
    day4 = _states(runs[4])
    assert day4["drift_check"] == "success"
    assert day4["send_alert"] == "success" and day4["trigger_retrain"] == "success", day4
    stored = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(settings.mail_dir.glob("*.eml"))
    ]
    kinds = {m["X-Graphrec-Kind"]: m for m in stored}
    assert sorted(m["X-Graphrec-Kind"] for m in stored) == ["drift", "task-failed"], [m["Subject"] for m in stored]
    message = kinds["drift"]
    assert "drift" in message["Subject"].lower() and CONFIG.day(4).isoformat() in message["Subject"]
    assert message["To"] == ", ".join(settings.alerts.recipients)
    # Day 2's failed validate task emailed too (the failure callback every task carries).
    failure = kinds["task-failed"]
    assert failure["Subject"].startswith("[graphrec] task failed: graphrec_nightly.validate")
    body = failure.get_body(("html", "plain")).get_content()
    assert "AirflowFailException" in body and "quarantined" in body.lower(), body
    with create_session() as session:
        triggered = [
            run
            for run in session.query(DagRun).filter(DagRun.dag_id == "graphrec_nightly").all()
            if str((run.conf or {}).get("trigger_reason", "")).startswith("drift")
        ]
    assert len(triggered) == 1
    assert triggered[0].conf["ds"] == CONFIG.day(4).isoformat()

    # Day 4 trained a BST ranker paired with its retriever; the canary judged them as a pair
    # (day 3 had no day before its holdout with next items to learn from: it served retrieval).
    from training import registry

    assert day4["train_ranker"] == "success" and day4["canary"] == "success", day4
    rankers = registry.client_for(settings).search_model_versions(f"name='{settings.mlflow.ranker_model_name}'")
    assert len(rankers) == 1
    tags = rankers[0].tags
    assert tags["retriever_version"] == str(registry.get_alias_version(settings, registry.CHALLENGER))
    assert tags["canary.decision"] in ("promoted", "rejected") and "canary.ranker_ndcg_at_10" in tags
    promoted = tags["canary.decision"] == "promoted"
    ranker_champion = registry.get_alias_version(settings, registry.CHAMPION, model=settings.mlflow.ranker_model_name)
    assert (ranker_champion == int(rankers[0].version)) == promoted
    assert (registry.get_alias_version(settings, registry.CHAMPION) == int(tags["retriever_version"])) == promoted
    # The pair that passed the canary is the pair that serves.
    manifest = json.loads((settings.indexes_dir / current_version(settings) / "manifest.json").read_text())
    assert manifest["ranker_version"] == ranker_champion
    assert manifest["model_version"] == registry.get_alias_version(settings, registry.CHAMPION)

    # Serving answers from the published index, excluding what the user already saw.
    # (what it saw up to the published day: a rejected day's events are not in that index)
    published_day = dt.date.fromisoformat(manifest["ds"])
    history = read_curated(
        settings.curated_dir, [d for d in list_partitions(settings.curated_dir) if d <= published_day]
    )
    user = int(history["user_id"].value_counts().index[0])
    from features.online import OnlineFeatures

    rec = Recommender(settings, ranker_features_fn=OnlineFeatures(settings)).recommend(user, 5)
    assert not rec.fallback and rec.index_version == current_version(settings)
    assert rec.reranked == (manifest["ranker_version"] is not None) and rec.ranker_version == manifest["ranker_version"]
    assert rec.degraded == []
    served = [item.item_id for item in rec.items]
    assert len(set(served)) == 5
    assert not set(served) & set(history.loc[history["user_id"] == user, "item_id"])
