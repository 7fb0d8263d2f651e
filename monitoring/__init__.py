"""Monitoring: the daily drift monitor, its decision policy, drift emails, a loopback SMTP sink.

Modules:
    signals: the recommender's drift signals (data, model, quality proxy) as Evidently reports.
    offline_serving: what the service would answer, in batch (the model signals' input).
    policy: the configurable decision policy (thresholds, persistence, episodes, cooldown).
    monitor: one monitored day end to end (signals, reports, decision, state).
    alerts: one email per drift episode (and an optional digest) through Airflow's SMTP notifier.
    mailsink: an aiosmtpd server that stores received mail as ``.eml`` files.

Nothing is imported here on purpose: Evidently and Airflow are heavy, and DAG files
import the one function they need inside a task.
"""
