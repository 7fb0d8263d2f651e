"""The BST ranker as an MLflow pyfunc model, and its registration.

The logged model carries the artifact directory ``ranker/`` (``ranker.pt``: the state
dict; ``ranker.json``: constructor arguments, vocabulary, sequence length, lineage;
see :func:`training.bst_io.save_ranker`). ``predict`` takes feature-joined rows (the
columns of :func:`features.historical.historical_ranker_features` plus
``retrieval_score``) and returns one click probability per row. :class:`BSTRanker`, the
ranker's modules (:data:`BY_VALUE`) and the column names they read are pickled *by
value*, so the model loads where torch, numpy, pandas and mlflow are installed, without
graphrec.

The recommendation service does not go through pyfunc: publication copies ``ranker/``
into the index bundle next to the FAISS index it was evaluated with.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from features import ranker_columns
from training import bst, bst_encoding, bst_fit, bst_io, bst_vocab, ids, registry, threads

RANKER_ARTIFACT = "ranker"
MODEL_NAME_IN_RUN = "ranker"
#: The modules the logged model needs, pickled with it (by value) instead of imported.
BY_VALUE = (ranker_columns, ids, threads, bst_vocab, bst_encoding, bst, bst_fit, bst_io)


class BSTRanker(PythonModel):
    """Click probability of (user, item, time) rows from their features."""

    def load_context(self, context) -> None:
        self.model, self.vocab, self.meta = bst_io.load_ranker(Path(context.artifacts[RANKER_ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        batch = bst_encoding.encode(model_input, self.vocab, int(self.meta["seq_len"]))
        return bst_fit.predict(self.model, batch)


def log_and_register(settings, directory: Path, run_id: str, tags: dict | None = None) -> int:
    """Log ``directory`` as the pyfunc model of ``run_id`` and register a new ranker version with ``tags``."""
    registry.configure(settings)
    by_value = (*BY_VALUE, sys.modules[__name__])
    for module in by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        active = mlflow.active_run()
        same = active is not None and active.info.run_id == run_id
        with contextlib.nullcontext() if same else mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN,
                python_model=BSTRanker(),
                artifacts={RANKER_ARTIFACT: str(directory)},
                pip_requirements=[*registry.pip_requirements(), f"torch=={torch.__version__}"],
            )
    finally:
        for module in by_value:
            cloudpickle.unregister_pickle_by_value(module)
    return registry.create_version(
        settings, settings.mlflow.ranker_model_name, info, run_id, tags, description=registry.RANKER_DESCRIPTION
    )


def resolve_version(settings, ref: int | str) -> int:
    """A ranker version number from a number or an alias."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        return int(ref)
    version = registry.get_alias_version(settings, str(ref), model=settings.mlflow.ranker_model_name)
    if version is None:
        raise LookupError(f"model {settings.mlflow.ranker_model_name!r} has no alias {ref!r}")
    return version


def download(settings, ref: int | str) -> Path:
    """The ``ranker/`` files of a registered version in a temporary directory (removed at exit)."""
    version = resolve_version(settings, ref)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    tmp = tempfile.mkdtemp(prefix="graphrec-ranker-")
    atexit.register(shutil.rmtree, tmp, True)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{settings.mlflow.ranker_model_name}/{version}",
            dst_path=tmp,
            tracking_uri=settings.tracking_uri,
            registry_uri=settings.tracking_uri,
        )
    )
    found = next((p.parent for p in local.rglob("ranker.json")), None)
    if found is None:
        raise FileNotFoundError(f"ranker version {version} has no ranker.json under {local}")
    return found
