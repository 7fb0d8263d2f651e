"""The ranker's candidate lists: each user's top retrieved items, and their labelled rows.

:func:`retrieve` gives each user the top ``n`` items of a retriever by inner product,
masking the items the user has already seen (exact top-k, :func:`training.topk.top_k_indices`).
:func:`candidate_rows` turns such lists, made at one moment, into the ranker's rows,
labelled by what each user took afterwards. Both the training rows
(:mod:`training.ranker_rows`) and the two-stage evaluation (:mod:`training.ranker_eval`)
start here.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

from features.ranker_columns import EVENT_TIMESTAMP, RETRIEVAL_SCORE
from graphrec import contract
from training.embeddings import ModelEmbeddings
from training.ids import RowLookup
from training.metrics import RankingTask
from training.progress import RateLog
from training.topk import top_k_indices

log = logging.getLogger(__name__)

#: The rows' label column: 1 when the user took the candidate in the label window.
LABEL = "label"


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Each user's top retrieved items, best first (``-1`` pads users with fewer)."""

    user_ids: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    def frame(self) -> pd.DataFrame:
        """One row per (user, candidate): ``user_id, item_id, retrieval_score, rank``."""
        n = self.items.shape[1]
        valid = self.items >= 0
        return pd.DataFrame(
            {
                contract.USER_ID: np.repeat(self.user_ids, n)[valid.ravel()],
                contract.ITEM_ID: self.items[valid],
                RETRIEVAL_SCORE: self.scores[valid].astype(np.float64),
                "rank": np.tile(np.arange(n), len(self.user_ids))[valid.ravel()],
            }
        )


def retrieve(
    model: ModelEmbeddings,
    users: np.ndarray,
    seen: pd.DataFrame,
    n: int,
    batch_size: int = 1024,
    *,
    progress: str = "candidates for",
) -> Candidates:
    """Top ``n`` items by inner product for ``users``, masking each user's ``seen`` items.

    Users the model does not know get no candidates (a row of ``-1``). When it takes more
    than a few seconds, the users done, the rate and the time left are logged
    (:class:`training.progress.RateLog`), each line starting with ``progress``.
    """
    users = np.asarray(users, dtype=np.int64)
    n = min(n, len(model.item_ids))
    items = np.full((len(users), n), -1, dtype=np.int64)
    scores = np.full((len(users), n), -np.inf, dtype=np.float32)
    rows = RowLookup.of(model.user_ids).rows_of(users)
    columns = RowLookup.of(model.item_ids)
    known = np.flatnonzero(rows >= 0)
    if len(np.unique(users)) != len(users):
        raise ValueError("retrieve() needs distinct users")
    seen = seen[[contract.USER_ID, contract.ITEM_ID]].drop_duplicates()
    item_t = np.ascontiguousarray(np.asarray(model.item_emb, dtype=np.float32).T)
    rate = RateLog(log, progress, len(known), "users")
    for lo in range(0, len(known), batch_size):
        batch = known[lo : lo + batch_size]
        block = np.asarray(model.user_emb, dtype=np.float32)[rows[batch]] @ item_t
        mask = seen[seen[contract.USER_ID].isin(users[batch])]
        r = RowLookup.of(users[batch]).rows_of(mask[contract.USER_ID])  # every masked user is in the batch
        c = columns.rows_of(mask[contract.ITEM_ID])
        ok = c >= 0
        block[r[ok], c[ok]] = -np.inf
        top = top_k_indices(block, n)
        top_scores = np.take_along_axis(block, top, axis=1)
        top_items = np.where(np.isfinite(top_scores), model.item_ids[top], -1)
        items[batch], scores[batch] = top_items, top_scores
        rate.update(lo + len(batch))
    rate.close()
    return Candidates(users, items, scores)


def candidate_rows(candidates: Candidates, task: RankingTask, at: pd.Timestamp) -> pd.DataFrame:
    """Rows of candidate lists made at ``at``, labelled by the users' next interactions.

    A candidate is positive when it is one of the user's new items in ``task`` (what they
    took after ``at``), negative otherwise: the negatives are exactly the hard ones the
    ranker meets in serving, items the retriever ranks high that the user did not take.

    Returns:
        ``user_id, item_id, retrieval_score, rank, event_timestamp, label``.
    """
    rows = candidates.frame()
    rows[EVENT_TIMESTAMP] = pd.Series(pd.Timestamp(at), index=rows.index).astype("datetime64[us, UTC]")
    taken = pd.MultiIndex.from_arrays([np.repeat(task.user_ids, np.diff(task.test_indptr)), task.test_items])
    rows[LABEL] = pd.MultiIndex.from_frame(rows[[contract.USER_ID, contract.ITEM_ID]]).isin(taken).astype(np.int64)
    return rows
