"""Monitoring: Evidently drift reports, drift alerts by email and a loopback SMTP sink.

Modules:
    drift: per-interaction drift features and the daily Evidently drift check.
    alerts: the drift alert email and its delivery through Airflow's SMTP hook.
    mailsink: an aiosmtpd server that stores received mail as ``.eml`` files.

Nothing is imported here on purpose: Evidently and Airflow are heavy, and DAG files
import the one function they need inside a task.
"""
