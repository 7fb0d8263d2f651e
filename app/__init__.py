"""The application: the ``graphrec`` command, the demo, the services launcher and the local Airflow runner.

It composes the layers below it (ingest, validation, features, training, serving, monitoring)
and nothing below imports it.
"""
