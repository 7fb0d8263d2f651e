"""The retriever as an MLflow pyfunc model: embeddings in, top-k item ids out.

The logged model holds no torch module, only the artifact directory
``embeddings/`` (``embeddings.npz`` + ``meta.json``, see
:class:`training.embeddings.ModelEmbeddings`). Loaded with
``mlflow.pyfunc.load_model("models:/graphrec-retriever@champion")``, ``predict``
scores every item for each requested user by dot product and returns the top ``k``.

This module depends on numpy, pandas and mlflow only: :mod:`training.registry`
pickles :class:`EmbeddingRetriever` *by value*, so a logged model loads in any
environment with those three packages, without graphrec installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

EMBEDDINGS_ARTIFACT = "embeddings"
OUTPUT_COLUMNS = ("user_id", "rank", "item_id", "score")


class EmbeddingRetriever(PythonModel):
    """Top-k retrieval by inner product over stored user and item embeddings.

    Input: a DataFrame with a ``user_id`` column (int64). Params: ``k`` (default 20).
    Output: a long DataFrame with columns ``user_id, rank, item_id, score`` (``rank``
    1 is the best), ``k`` rows per known user; users the model does not know get no
    rows (cold start is the serving layer's job).
    """

    def load_context(self, context) -> None:
        directory = Path(context.artifacts[EMBEDDINGS_ARTIFACT])
        with np.load(directory / "embeddings.npz") as data:
            self.user_ids = data["user_ids"]
            self.item_ids = data["item_ids"]
            self.user_emb = data["user_emb"]
            self.item_emb = data["item_emb"]
        self.meta = json.loads((directory / "meta.json").read_text())
        self._order = np.argsort(self.user_ids, kind="stable")
        self._sorted_users = self.user_ids[self._order]

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", 20))
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame({"user_id": model_input})
        users = frame["user_id"].to_numpy(np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_users, users), max(len(self._sorted_users) - 1, 0))
        known = (len(self._sorted_users) > 0) & (self._sorted_users[pos] == users)
        users, rows = users[known], self._order[pos[known]]
        k = min(k, len(self.item_ids))
        if len(users) == 0 or k <= 0:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c != "score" else "float32") for c in OUTPUT_COLUMNS})
        scores = self.user_emb[rows] @ self.item_emb.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
        return pd.DataFrame(
            {
                "user_id": np.repeat(users, k),
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), len(users)),
                "item_id": self.item_ids[top].ravel(),
                "score": np.take_along_axis(scores, top, axis=1).ravel().astype(np.float32),
            }
        )
