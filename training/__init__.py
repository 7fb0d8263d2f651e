"""Datasets, splits, models, training loops, evaluation and the MLflow registry."""
