"""The MLflow run of a training task: opened before the work, deleted when nothing was trained.

:func:`training_run` is what :func:`training.retriever.train_retriever` and
:func:`training.ranker.train_ranker` log into. It starts before the task reads its data,
so that the run's duration in MLflow is the task's work (data loading, fitting,
evaluation, registration), not only the logging at the end. A run that trained nothing
(a rerun that found its version, a day with too little data) is deleted, so that the
experiment lists only runs that produced something.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import mlflow

from graphrec.settings import Settings
from training import registry
from training.data import InsufficientDataError


@dataclasses.dataclass
class TrainingRun:
    """The run :func:`training_run` started: its id, and :meth:`discard` for a run that trained nothing."""

    settings: Settings
    run_id: str
    discarded: bool = False

    def discard(self) -> None:
        """End and delete the run (e.g. a rerun that found the version it would register)."""
        if self.discarded:
            return
        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            mlflow.end_run("KILLED")
        registry.client_for(self.settings).delete_run(self.run_id)
        self.discarded = True


@contextlib.contextmanager
def training_run(settings: Settings, name: str) -> Iterator[TrainingRun]:
    """A run started before the work it records, so that its duration is the work's.

    Enter it before loading data. The run is deleted when it trained nothing: when the
    work raises :class:`~training.data.InsufficientDataError` (the task is skipped) or
    calls :meth:`TrainingRun.discard`. Any other exception leaves it ``FAILED``.
    """
    registry.configure(settings)
    with mlflow.start_run(run_name=name) as run:
        handle = TrainingRun(settings, run.info.run_id)
        try:
            yield handle
        except InsufficientDataError:
            handle.discard()
            raise
