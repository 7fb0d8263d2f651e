"""Assets produced by the graphrec pipeline, declared once for producers and consumers."""

from __future__ import annotations

from airflow.sdk import Asset

CURATED_INTERACTIONS = Asset(name="graphrec_curated_interactions", uri="graphrec://lake/curated/interactions")
ONLINE_FEATURES = Asset(name="graphrec_online_features", uri="graphrec://feast/online")
RETRIEVER_CHALLENGER = Asset(name="graphrec_retriever_challenger", uri="graphrec://mlflow/retriever/challenger")
PUBLISHED_INDEX = Asset(name="graphrec_published_index", uri="graphrec://serving/index/current")
DRIFT_ALERT = Asset(name="graphrec_drift_alert", uri="graphrec://monitoring/drift-alert")
