"""Monitoring: the daily drift monitor, its decision policy, drift emails, a loopback SMTP sink.

Modules:
    signal_table: the thirteen drift signals, declared once (name, group, metric, marks).
    signal_values: one measured signal (:class:`~monitoring.signal_values.Signal`).
    signals: the day's signals (:func:`~monitoring.signals.compute_signals`), from
        data_signals, model_signals and quality_signal, on the tables of events.
    evidently_metrics: the Evidently metrics and report runs behind the distances.
    offline_serving: what the service would answer, in batch (the model signals' input).
    report_files: the day's report files (Evidently HTML/JSON, ``signals.json``, served lists),
        each HTML report headed by the policy's decision.
    policy_rules: the configurable decision policy (thresholds, persistence, cooldown), validated.
    verdicts: how each signal counts on a day (drifted, watch, fired; streaks).
    policy: the pure decision (episodes, one email, retraining, cooldown, re-runs).
    policy_state: what the policy carries from day to day.
    policy_files: the YAML policy and the state file, read and written.
    monitor: one monitored day end to end (signals, reports, decision, state).
    alert_messages: the alert emails, composed (pure).
    alert_layout: the plain-text and HTML form every alert email shares.
    alert_links: absolute links to Airflow UI pages and reports.
    alerts: the SMTP edge (Airflow's SMTP connection) and the task failure/retry callbacks.
    drift_alerts: one email per drift episode (and an optional digest), retrain follow-ups, sent.
    mailsink: an aiosmtpd server that stores received mail as ``.eml`` files.

Nothing is imported here on purpose: Evidently and Airflow are heavy, and DAG files
import the one function they need inside a task.
"""
