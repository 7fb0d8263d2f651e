"""The retriever as an MLflow pyfunc model: embeddings in, top-k item ids out.

The logged model holds no torch module, only the artifact directory
``embeddings/`` (``embeddings.npz`` + ``meta.json``, see
:class:`training.embeddings.ModelEmbeddings`). Loaded with
``mlflow.pyfunc.load_model("models:/graphrec-retriever@champion")``, ``predict``
scores every item for each requested user by dot product and returns the top ``k``.

Users are found with :class:`training.ids.RowLookup` and the top ``k`` is
:func:`training.topk.top_k` (ties ordered by item column, as everywhere else).
:mod:`training.registry` pickles :class:`EmbeddingRetriever` and those two modules
*by value*, so a logged model loads in any environment with numpy, pandas, mlflow and
torch (which the top-k uses), without graphrec installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from training.ids import RowLookup
from training.topk import top_k

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
        self._users = RowLookup.of(self.user_ids)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", 20))
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame({"user_id": model_input})
        users = frame["user_id"].to_numpy(np.int64)
        rows = self._users.rows_of(users)
        known = rows >= 0
        users, rows = users[known], rows[known]
        k = min(k, len(self.item_ids))
        if len(users) == 0 or k <= 0:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c != "score" else "float32") for c in OUTPUT_COLUMNS})
        values, top = top_k(self.user_emb[rows] @ self.item_emb.T, k)
        return pd.DataFrame(
            {
                "user_id": np.repeat(users, k),
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), len(users)),
                "item_id": self.item_ids[top].ravel(),
                "score": values.ravel().astype(np.float32),
            }
        )
