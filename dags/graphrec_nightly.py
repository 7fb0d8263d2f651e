"""
### graphrec nightly pipeline

Runs every night at 02:00 UTC on the previous day's partition:

validate (Great Expectations) → features (Feast materialization) → train (the retriever
chosen by **model**: LightGCN, MF-BPR, GF-CF or popularity; MLflow `challenger`) → train_ranker
(BST on Feast point-in-time features, paired with that retriever) → canary (the challenger
pair vs the `champion` pair) → publish (FAISS index plus the ranker, atomic pointer switch) → drift
check (recommender drift signals as Evidently reports, judged by the drift policy in
`monitoring/drift_policy.yaml`) → on a new drift episode: one alert email, and a retraining run
of this DAG triggered with a conf that names the reason and the report (never twice within the
policy's cooldown).

Trigger it from the UI (**Trigger**, then the *Run Parameters* form) to (re)process a day:

| Param | What it does |
|---|---|
| **ds** | The partition day, YYYY-MM-DD. Empty: the day before the run's logical date. |
| **window_days** | Curated days the retriever trains on (2-365; the last day is the holdout). |
| **model** | The retriever: lightgcn, mf, gfcf or popularity. |
| **epochs** | Training epochs for lightgcn and mf (1-1000). |
| **full_retrain** | Train lightgcn or mf from scratch instead of warm-starting from the champion's embeddings (also done on a schedule, on drift-triggered runs and without a champion). |
| **force_publish** | Promote and publish even when the canary gate says no. |
| **dry_run** | Validate, featurize, train and judge, but move no champion alias, publish nothing and skip the drift check (so no email and no retrain). |

A manual run with these values behaves exactly like a scheduled run with the same values:
both read only these Params. Re-running a day is idempotent. The form rejects values
outside the ranges above (so does the REST API, with 400 and the schema's message).

Every task emails `alert_recipients` when it fails and when it is retried (Airflow's SMTP
notifier on the `smtp_default` connection). A day whose partition never landed is not a
success: `validate` fails with "no data landed for <day>" (one email) and the run is red.

Each run carries a **note** with one line per stage (`data: …`, `canary: promoted v9 (R@20
0.197 vs champion 0.190, …)` or `canary: rejected v7: no_regression …`, `publish: …`,
`drift: …`), and the deciding tasks carry their verdict as a task note. Drift-triggered
retrains are named `drift__<day>__<episode>` and their note gives the reason.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task

from graphrec.assets import CURATED_INTERACTIONS, DRIFT_ALERT, ONLINE_FEATURES, PUBLISHED_INDEX, RETRIEVER_CHALLENGER
from graphrec.logs import quiet_libraries
from graphrec.settings import RETRIEVER_MODELS, get_settings
from monitoring.alerts import task_failure_notifier

_settings = get_settings()  # environment only: no I/O, no connections
quiet_libraries()  # the tasks' logs carry graphrec's lines, not the libraries' import chatter


class _TriggerRetrain(TriggerDagRunOperator):
    """TriggerDagRunOperator whose run note is templated too (the drift reason of the retrain)."""

    template_fields = (*TriggerDagRunOperator.template_fields, "note")


_RETRAIN = "ti.xcom_pull(task_ids='retrain_request')"


def _retrain_run_id(ds: str, episode: str | None) -> str:
    """The drift retrain's run id (as ``trigger_retrain`` renders it): ``drift__<day>__<episode day>``."""
    return f"drift__{ds}__{(episode or 'none').replace('drift-', '')}"


def _annotate(stage: str, line: str) -> None:
    """The verdict as a line of the run note and as the task's note (app.airflow_notes); printed too."""
    from app.airflow_notes import annotate

    try:
        context = get_current_context()
    except RuntimeError:  # called outside a running task (a test calling the function)
        print(f"{stage}: {line}")
        return
    annotate(get_settings(), context, stage, line)


DEFAULT_ARGS = {
    "owner": "graphrec",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    # Failure and retry emails on every task (task-level notifiers; see monitoring.alerts).
    "on_failure_callback": task_failure_notifier(_settings, "failed"),
    "on_retry_callback": task_failure_notifier(_settings, "up_for_retry"),
}


@dag(
    dag_id="graphrec_nightly",
    description="Validate, featurize, train, canary, publish and watch drift for one day of interactions.",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["graphrec", "nightly"],
    params={
        "ds": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Partition day (YYYY-MM-DD). Empty: the day before the run's logical date.",
        ),
        "window_days": Param(
            _settings.training.window_days,
            type="integer",
            minimum=2,
            maximum=365,
            description="Curated days the retriever trains on (the last day is the holdout).",
        ),
        "model": Param(
            _settings.training.model,
            type="string",
            enum=list(RETRIEVER_MODELS),
            description=(
                "Retriever to fit: lightgcn (LightGCN, full-softmax loss by default), mf (MF-BPR, LightGCN without propagation), "
                "gfcf (closed-form graph filter, no training) or popularity (baseline; the canary never "
                "promotes it unless forced)."
            ),
        ),
        "epochs": Param(
            _settings.training.epochs,
            type="integer",
            minimum=1,
            maximum=1000,
            description="Training epochs (lightgcn and mf; gfcf and popularity need none).",
        ),
        "full_retrain": Param(
            False,
            type="boolean",
            description="Train lightgcn or mf from scratch instead of warm-starting from the champion's embeddings "
            f"(done anyway every {_settings.training.full_retrain_every_days} days, on drift-triggered runs and when there is "
            "no champion).",
        ),
        "force_publish": Param(
            False, type="boolean", description="Promote and publish even if the canary gate says no."
        ),
        "dry_run": Param(
            False,
            type="boolean",
            description="Validate, featurize, train and judge the challenger, but move no champion alias, publish "
            "nothing and skip the drift check (no email, no retrain).",
        ),
        # Set by drift-triggered retraining; optional (null) so that the UI form can be
        # submitted with them empty (it treats a non-null string Param as required).
        "trigger_reason": Param(
            None,
            type=["null", "string"],
            section="Set by the drift loop",
            description="Why this run was started (set by drift-triggered retraining).",
        ),
        "drift_report": Param(
            None,
            type=["null", "string"],
            section="Set by the drift loop",
            description="The drift report that caused this run (set by drift-triggered retraining; recorded in MLflow).",
        ),
        "drift_episode": Param(
            None,
            type=["null", "string"],
            section="Set by the drift loop",
            description="The drift episode this retrain answers (set with drift_report).",
        ),
    },
)
def graphrec_nightly():
    @task
    def resolve_day() -> dict:
        """Which partition this run processes, and why it runs."""
        from graphrec.runs import resolve_run_day

        context = get_current_context()
        dag_run = context["dag_run"]
        return resolve_run_day(
            params=context["params"],
            logical_date=context.get("logical_date"),
            run_after=dag_run.run_after,
            run_type=str(dag_run.run_type),
        )

    @task(retries=0, outlets=[CURATED_INTERACTIONS])
    def validate(day: dict) -> dict:
        """The data contract (Great Expectations): a partition with a blocking failure is
        quarantined and the run fails (so does a re-run while the day's delivery is in
        quarantine: the message says how to re-land it); warnings are accepted and
        returned for the summary. The log links the run's Data Docs."""
        from airflow.sdk.exceptions import AirflowFailException

        from graphrec.lake import parse_ds
        from validation import MissingPartition, QuarantinedPartition, validate_partition

        settings = get_settings()
        try:
            outcome = validate_partition(settings, parse_ds(day["ds"]))
        except QuarantinedPartition as exc:  # a re-run while the day's delivery is in quarantine
            _annotate("data", f"still quarantined: {day['ds']} (re-land it, then clear)")
            raise AirflowFailException(str(exc)) from None
        except MissingPartition as exc:  # not a success: the night has nothing to learn from
            _annotate("data", f"no data landed for {day['ds']}")
            raise AirflowFailException(f"no data landed for {day['ds']}: {exc}") from None
        print(outcome.message())  # the task log: status, failures, warnings, Data Docs links
        if outcome.status == "quarantined":
            _annotate("data", f"quarantined: {', '.join(outcome.to_dict()['failed_checks'])}")
            raise AirflowFailException(f"partition {day['ds']} was quarantined (reasons above)")
        summary = outcome.to_dict()
        warned = f", warnings: {', '.join(summary['warning_checks'])}" if summary["warning_checks"] else ""
        _annotate("data", f"{outcome.status.replace('_', ' ')} {outcome.rows:,} rows{warned}")
        return summary

    @task(outlets=[ONLINE_FEATURES])
    def features(day: dict, _validated: dict) -> dict:
        """Compute feature tables from curated/, apply the Feast repo, materialize incrementally."""
        from features.materialize import materialize
        from graphrec.lake import parse_ds

        return materialize(get_settings(), parse_ds(day["ds"])).to_xcom()

    @task(outlets=[RETRIEVER_CHALLENGER])
    def train(day: dict, _features: dict) -> dict:
        """Fit the chosen retriever on the window, log to MLflow, register a version aliased `challenger`.

        lightgcn and mf stop early on a validation split of the training days (never the
        holdout); the trainer logs one line per epoch to this task's log and MLflow gets
        the curves (`train_loss`, `val_recall_at_20`) and a `final_metrics.json` table.
        Returns the `training.results.RetrieverResult` as XCom; it carries `epochs_run`,
        `stopped_early` and `best_epoch`."""
        from airflow.sdk.exceptions import AirflowSkipException

        from graphrec.lake import parse_ds
        from training.data import InsufficientDataError
        from training.retriever import train_retriever

        params = get_current_context()["params"]
        try:
            return train_retriever(
                get_settings(),
                parse_ds(day["ds"]),
                window_days=params["window_days"],
                epochs=params["epochs"],
                reason=day["reason"],
                model=params["model"],
                tags=day.get("tags"),
                full_retrain=params.get("full_retrain", False),
            ).to_xcom()
        except InsufficientDataError as exc:
            raise AirflowSkipException(f"not enough curated data to train yet: {exc}") from exc

    @task
    def train_ranker(day: dict, trained: dict) -> dict:
        """Fit the BST ranker on Feast point-in-time features, paired with the new retriever.

        Registered as a version of the ranker model aliased `challenger` with the tag
        `retriever_version`; the canary judges the two as a pair. Returns the
        `training.results.RankerResult` as XCom, or `{"skipped": why}` when the ranker is
        turned off (`GRAPHREC_RANKER__ENABLED=false`) or the window has too little data for
        it: the pipeline then serves retrieval alone."""
        from graphrec.lake import parse_ds
        from training.data import InsufficientDataError
        from training.ranker import train_ranker as fit
        from training.results import RetrieverResult

        settings = get_settings()
        if not settings.ranker.enabled:
            return {"skipped": "ranker disabled (GRAPHREC_RANKER__ENABLED=false)"}
        params = get_current_context()["params"]
        try:
            return fit(
                settings,
                parse_ds(day["ds"]),
                RetrieverResult.from_xcom(trained).model_version,
                window_days=params["window_days"],
                reason=day["reason"],
                tags=day.get("tags"),
            ).to_xcom()
        except InsufficientDataError as exc:
            return {"skipped": f"not enough data for the ranker: {exc}"}

    @task
    def canary(day: dict, trained: dict, ranked: dict) -> dict:
        """Challenger pair vs champion pair on the same fresh holdout; moves both `champion` aliases if it passes."""
        from graphrec.lake import parse_ds
        from serving.canary import run_canary
        from training.results import RankerResult, RetrieverResult

        settings = get_settings()
        params = get_current_context()["params"]
        ranker = RankerResult.from_xcom(ranked) if "model_version" in ranked else None  # else {"skipped": why}
        result = run_canary(
            settings,
            parse_ds(day["ds"]),
            RetrieverResult.from_xcom(trained).model_version,
            force=params["force_publish"],
            ranker_version=None if ranker is None else ranker.model_version,
            ranker_result=ranker,
            dry_run=day.get("dry_run", False),
        )
        _annotate("canary", result.verdict())
        return result.to_xcom()

    @task(outlets=[PUBLISHED_INDEX])
    def publish(day: dict, decision: dict) -> dict:
        """Build the FAISS index of the promoted model and switch serving to it atomically."""
        from airflow.sdk.exceptions import AirflowSkipException

        from graphrec.lake import parse_ds
        from serving.canary_result import CanaryResult
        from serving.publish import publish_model

        verdict = CanaryResult.from_xcom(decision)
        if not verdict.promoted:
            raise AirflowSkipException(f"champion kept, nothing to publish: {verdict.reason}")
        settings = get_settings()
        published = publish_model(
            settings, verdict.challenger_version, parse_ds(day["ds"]), ranker_version=verdict.ranker_champion_after
        )
        _annotate("publish", f"serving {published.index_version}")
        return published.to_xcom()

    @task(trigger_rule="none_failed")
    def drift_check(day: dict) -> dict:
        """The drift monitor: recommender drift signals of the day against the serving champion's
        training window (Evidently reports), and the drift policy's decision with its reasons."""
        from airflow.sdk.exceptions import AirflowSkipException

        from graphrec.lake import parse_ds, partition_name
        from monitoring.monitor import monitor_day

        settings = get_settings()
        if day.get("dry_run"):
            raise AirflowSkipException("dry run: no drift check, no email, no retrain")
        if day["reason"].startswith("drift"):
            raise AirflowSkipException("this run is itself a drift-triggered retrain: no new check")
        if not (settings.curated_dir / partition_name(parse_ds(day["ds"]))).is_dir():
            raise AirflowSkipException(f"no curated partition for {day['ds']}: nothing to check")
        result = monitor_day(settings, parse_ds(day["ds"]))  # logs the decision and its explanation
        decision = result.decision
        line = str(result.status) if decision is None else decision.status
        if decision is not None and (decision.fired or decision.watch):
            line += ": " + ", ".join([*decision.fired, *(f"{name} (watch)" for name in decision.watch)])
        if decision is not None and decision.trigger_retrain:
            line += "; retrain triggered"
        _annotate("drift", f"{line} (report {result.html or result.report_dir})")
        return result.to_xcom()

    @task(outlets=[DRIFT_ALERT], trigger_rule="none_failed")
    def send_alert(result: dict | None, retrain: dict | None) -> dict:
        """One email per drift episode (the day it opens), through Airflow's SMTP notifier,
        linking the report, this run and the retrain run it triggers; the optional daily
        digest when the policy asks for it."""
        from airflow.sdk.exceptions import AirflowSkipException

        if result is None:
            raise AirflowSkipException("no drift check ran")
        from monitoring.drift_alerts import send_digest, send_episode_alert
        from monitoring.monitor import MonitorResult
        from monitoring.policy_files import load_policy

        settings = get_settings()
        monitored = MonitorResult.from_xcom(result)
        decision = monitored.decision
        if decision is None:
            raise AirflowSkipException(f"nothing judged: {monitored.reason}")
        context = get_current_context()
        report = monitored.html or monitored.report_dir
        sent = {}
        if load_policy(settings.drift.policy).digest:
            sent["digest"] = send_digest(decision, monitored.signals, settings, report, context=context).to_xcom()
        alert = send_episode_alert(
            decision,
            monitored.signals,
            settings,
            report_path=report,
            context=context,
            retrain_run_id=_retrain_run_id(retrain["ds"], retrain["drift_episode"]) if retrain else None,
        )
        if alert is None and not sent:
            raise AirflowSkipException(f"no email due: status {decision.status}")
        return {**sent, "alert": alert.to_xcom() if alert else None}

    @task(trigger_rule="none_failed")
    def drift_followup(day: dict, decision: dict | None, _published: dict | None) -> dict:
        """On a drift-triggered retrain: email what came of the retrain the drift email announced
        (promoted or rejected, and why), after publication."""
        from pathlib import Path

        from airflow.sdk.exceptions import AirflowSkipException

        from monitoring.drift_alerts import canary_followup, send_drift_followup
        from serving.canary_result import CanaryResult

        tags = day.get("tags") or {}
        if tags.get("trigger") != "drift" or day.get("dry_run") or decision is None:
            raise AirflowSkipException("not a drift-triggered retrain: no follow-up")
        verdict, reasons = canary_followup(CanaryResult.from_xcom(decision))
        return send_drift_followup(
            get_settings(),
            ds=day["ds"],
            episode=tags.get("drift_episode") or None,
            verdict=verdict,
            reasons=reasons,
            report_path=Path(tags["drift_report"]) if tags.get("drift_report") else None,
            context=get_current_context(),
        ).to_xcom()

    @task
    def retrain_request(day: dict, result: dict) -> dict:
        """The conf of the drift-triggered retraining run (same model kind, a short recent window),
        when the policy asks for a retrain; skipped otherwise (no drift, or cooling down)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from monitoring.monitor import MonitorResult

        monitored = MonitorResult.from_xcom(result)
        decision = monitored.decision
        if decision is None or not decision.trigger_retrain:
            raise AirflowSkipException(
                f"no retrain: status {monitored.status}"
                + (f", cooling down until {decision.cooldown_until}" if decision and decision.cooldown_until else "")
            )
        settings = get_settings()
        return {
            "ds": day["ds"],
            "window_days": settings.drift.retrain_window_days,
            "model": get_current_context()["params"]["model"],
            "trigger_reason": decision.retrain_reason,  # "drift on <ds>, <severity>: <signals>; ..."
            "drift_report": str(monitored.html or monitored.report_dir),
            "drift_episode": decision.episode_id or "",
        }

    day = resolve_day()
    validated = validate(day)
    featured = features(day, validated)
    trained = train(day, featured)
    ranked = train_ranker(day, trained)
    decision = canary(day, trained, ranked)
    published = publish(day, decision)
    drift = drift_check(day)
    published >> drift
    drift_followup(day, decision, published)
    retrain_conf = retrain_request(day, drift)
    send_alert(drift, retrain_conf)
    retrain_conf >> _TriggerRetrain(
        task_id="trigger_retrain",
        trigger_dag_id="graphrec_nightly",
        conf=retrain_conf,
        logical_date=None,
        wait_for_completion=False,
        # A readable run id, one per day and episode: a re-run of the day triggers nothing twice.
        trigger_run_id=(
            f"drift__{{{{ {_RETRAIN}['ds'] }}}}__{{{{ ({_RETRAIN}['drift_episode'] or 'none') | replace('drift-', '') }}}}"
        ),
        skip_when_already_exists=True,
        note=f"retrain: drift-triggered for {{{{ {_RETRAIN}['ds'] }}}}: {{{{ {_RETRAIN}['trigger_reason'] }}}}",
    )


graphrec_nightly()
