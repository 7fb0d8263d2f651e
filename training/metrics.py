"""All-ranking evaluation of dot-product retrievers: Recall@K and NDCG@K.

Every model is scored the same way (the LightGCN paper's protocol): for each evaluated
user, score *every* item the model knows, mask the items the user already interacted
with in the history, rank the rest and compare the top ``K`` with the user's holdout
items ``T_u``:

.. math::
    \\text{Recall@K}(u) = \\frac{|\\text{top}_K(u) \\cap T_u|}{|T_u|}, \\qquad
    \\text{NDCG@K}(u) = \\frac{\\sum_{r=1}^{K} [i_r \\in T_u] / \\log_2(r + 1)}
                              {\\sum_{r=1}^{\\min(K, |T_u|)} 1 / \\log_2(r + 1)}

and both are averaged over the evaluated users. Catalog coverage@K, the share of the
items the model knows that reach at least one evaluated user's top ``K``, comes with
them (the canary's guard against a model that shows everyone the same few items).

**Who and what is evaluated** is decided by the data, never by the model, so that
the champion, the challenger and the popularity baseline are averaged over exactly the
same users and denominators (a fair canary):

* the evaluated users are those with at least one history interaction and at least one
  holdout item they had not interacted with in the history;
* ``T_u`` is that set of new holdout items. Holdout items a model does not know (for
  example items first seen in the holdout) stay in ``T_u``: they are misses;
* a user the model does not know (not in its ``user_ids``) gets Recall = NDCG = 0;
* a model can only recommend the items it knows; history items are masked only among
  those.

The functions are pure (numpy in, numbers out); scoring runs in batches of users with
one matrix product per batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from graphrec import contract
from training.embeddings import ModelEmbeddings
from training.ids import IdMap
from training.topk import top_k_indices

DEFAULT_K = 20


@dataclasses.dataclass(frozen=True)
class RankingTask:
    """The ground truth of one all-ranking evaluation, in external ids.

    Per-user item lists are stored CSR-style: the items of ``user_ids[u]`` are
    ``seen_items[seen_indptr[u]:seen_indptr[u + 1]]`` (and likewise for ``test_*``).

    Args:
        user_ids: evaluated users (external ids, sorted).
        seen_indptr: offsets into ``seen_items`` (length ``n_users + 1``).
        seen_items: history items of each user, to be masked (external ids).
        test_indptr: offsets into ``test_items`` (length ``n_users + 1``).
        test_items: new holdout items of each user, the relevant set (external ids).
    """

    user_ids: np.ndarray
    seen_indptr: np.ndarray
    seen_items: np.ndarray
    test_indptr: np.ndarray
    test_items: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_test(self) -> np.ndarray:
        """``|T_u|`` per evaluated user."""
        return np.diff(self.test_indptr)


@dataclasses.dataclass(frozen=True)
class RankingMetrics:
    """Averaged and per-user metrics of one model on one :class:`RankingTask`.

    Args:
        k: the cut-off.
        recall: mean Recall@K over the task's users.
        ndcg: mean NDCG@K over the task's users.
        n_users: number of evaluated users (the averages' denominator).
        n_users_known: how many of them the model could score.
        recall_per_user: Recall@K per task user (task order).
        ndcg_per_user: NDCG@K per task user (task order).
        n_items_recommended: distinct items in the evaluated users' top-K lists (masked
            positions excluded). (default: ``0``)
        coverage: catalog coverage, ``n_items_recommended`` over the number of items the
            model knows; ``0`` when it knows none. (default: ``0.0``)
    """

    k: int
    recall: float
    ndcg: float
    n_users: int
    n_users_known: int
    recall_per_user: np.ndarray
    ndcg_per_user: np.ndarray
    n_items_recommended: int = 0
    coverage: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        """Small JSON-able summary, e.g. ``{"recall_at_20": ..., "ndcg_at_20": ..., "coverage_at_20": ...}``."""
        return {
            f"recall_at_{self.k}": self.recall,
            f"ndcg_at_{self.k}": self.ndcg,
            "n_eval_users": self.n_users,
            "n_eval_users_known": self.n_users_known,
            f"coverage_at_{self.k}": self.coverage,
            "n_items_recommended": self.n_items_recommended,
        }


def _pairs(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[contract.USER_ID, contract.ITEM_ID]].drop_duplicates().astype(np.int64)


def build_ranking_task(history: pd.DataFrame, holdout: pd.DataFrame) -> RankingTask:
    """The evaluation ground truth from a history and the holdout that follows it.

    Args:
        history: interactions before the holdout (what is masked; the training part).
        holdout: interactions of the holdout days.

    Returns:
        A :class:`RankingTask` over users with history and at least one new holdout item.
    """
    seen = _pairs(history)
    test = _pairs(holdout)
    # Keep only holdout pairs that are new for the user (anti-join with the history).
    test = test.merge(seen, how="left", on=[contract.USER_ID, contract.ITEM_ID], indicator=True)
    test = test[test["_merge"] == "left_only"].drop(columns="_merge")
    test = test[test[contract.USER_ID].isin(seen[contract.USER_ID].unique())]
    users = IdMap.from_values(test[contract.USER_ID])
    seen = seen[seen[contract.USER_ID].isin(users.ids)]

    def csr(pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        pairs = pairs.sort_values([contract.USER_ID, contract.ITEM_ID])
        rows = users.index(pairs[contract.USER_ID].to_numpy())
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.add.at(indptr, rows + 1, 1)
        return np.cumsum(indptr), pairs[contract.ITEM_ID].to_numpy(np.int64)

    seen_indptr, seen_items = csr(seen)
    test_indptr, test_items = csr(test)
    return RankingTask(users.ids, seen_indptr, seen_items, test_indptr, test_items)


def _gather(indptr: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten the CSR rows ``rows``: returns (position in ``rows``, value) pairs."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    which = np.repeat(np.arange(len(rows)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return which, values[np.repeat(starts, lengths) + offsets]


def _writable_scores(scores: np.ndarray) -> np.ndarray:
    """``scores`` as a writable float32 C array to mask in place: the scorer's own array
    when it already is one, else a float32 copy (copying every batch took as long as the
    matrix product on the L world's 29,610 x 39,805 validation scores)."""
    usable = (
        isinstance(scores, np.ndarray)
        and scores.dtype == np.float32
        and scores.flags.c_contiguous
        and scores.flags.writeable
    )
    return scores if usable else np.array(scores, dtype=np.float32, copy=True)


def evaluate_embeddings(
    model: ModelEmbeddings, task: RankingTask, k: int = DEFAULT_K, *, batch_size: int = 1024
) -> RankingMetrics:
    """All-ranking Recall@K and NDCG@K of a dot-product model (see the module docstring).

    Args:
        model: user/item embeddings with their external ids; score = ``<user, item>``.
        task: the ground truth (:func:`build_ranking_task`).
        k: the cut-off. (default: ``20``)
        batch_size: users scored per matrix product. (default: ``1024``)

    Returns:
        :class:`RankingMetrics`; both means are 0 when the task has no users.
    """
    user_emb = np.asarray(model.user_emb, dtype=np.float32)
    item_emb_t = np.ascontiguousarray(np.asarray(model.item_emb, dtype=np.float32).T)
    buffer = np.empty((min(batch_size, task.n_users), item_emb_t.shape[1]), dtype=np.float32)

    def score(rows: np.ndarray) -> np.ndarray:
        # Into one reused buffer: a fresh 1024 x 40k product each batch paid ~40% more
        # for its memory than for the arithmetic.
        return np.matmul(user_emb[rows], item_emb_t, out=buffer[: len(rows)])

    return evaluate_scorer(score, model.user_ids, model.item_ids, task, k, batch_size=batch_size)


def evaluate_scorer(
    score: Callable[[np.ndarray], np.ndarray],
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    task: RankingTask,
    k: int = DEFAULT_K,
    *,
    batch_size: int = 1024,
) -> RankingMetrics:
    """All-ranking Recall@K, NDCG@K and coverage of any scoring model (see the module docstring).

    Args:
        score: ``score(rows)`` returns a dense ``(len(rows), len(item_ids))`` float array:
            the scores of the model's users at positions ``rows`` of ``user_ids`` for
            every item in ``item_ids`` order. A writable float32 C array is masked in
            place (the scorer may reuse one buffer from call to call, but must not hand
            out an array it keeps scores in); any other is copied first. Dot-product
            models, closed-form filters (:mod:`training.gfcf`) and popularity all go
            through this one function.
        user_ids: external ids of the users the model can score (its rows).
        item_ids: external ids of the items it scores (its columns).
        task: the ground truth.
        k: the cut-off.
        batch_size: users per call of ``score``.

    Coverage counts the distinct items that reach some evaluated user's top ``k``
    (positions filled by masked ``-inf`` items excluded) over ``len(item_ids)``: a model
    that shows everyone the same few items has a low coverage whatever its recall.
    """
    n = task.n_users
    recall = np.zeros(n, dtype=np.float64)
    ndcg = np.zeros(n, dtype=np.float64)
    # IdMap looks ids up in sorted arrays; remember how to get back to the model's rows.
    order = np.argsort(user_ids, kind="stable")
    model_users = IdMap(np.asarray(user_ids, dtype=np.int64)[order])
    model_items_sorted = np.argsort(item_ids, kind="stable")
    item_lookup = IdMap(np.asarray(item_ids, dtype=np.int64)[model_items_sorted])

    positions = model_users.index(task.user_ids)
    known = np.flatnonzero(positions >= 0)
    if n == 0 or len(item_ids) == 0 or len(known) == 0:
        return RankingMetrics(k, 0.0, 0.0, n, int(len(known)), recall, ndcg)

    rows_in_model = np.where(positions >= 0, order[np.maximum(positions, 0)], -1)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    n_test = task.n_test
    recommended = np.zeros(len(item_ids), dtype=bool)

    for lo in range(0, len(known), batch_size):
        batch = known[lo : lo + batch_size]
        scores = _writable_scores(score(rows_in_model[batch]))
        # Mask history items the model knows.
        which, seen = _gather(task.seen_indptr, task.seen_items, batch)
        pos = item_lookup.index(seen)
        keep = pos >= 0
        scores[which[keep], model_items_sorted[pos[keep]]] = -np.inf
        top = top_k_indices(scores, k)
        valid = np.isfinite(np.take_along_axis(scores, top, axis=1))
        recommended[top[valid]] = True
        # A top item is a hit when (user, item) is one of the user's test pairs.
        which_t, test = _gather(task.test_indptr, task.test_items, batch)
        universe = IdMap.from_values(test)
        test_keys = np.unique(which_t * len(universe) + universe.index(test))
        cand_pos = universe.index(item_ids[top])
        cand_keys = np.arange(len(batch))[:, None] * len(universe) + cand_pos
        hits = np.isin(cand_keys, test_keys) & (cand_pos >= 0) & valid
        recall[batch] = hits.sum(axis=1) / n_test[batch]
        dcg = (hits * discounts[: top.shape[1]]).sum(axis=1)
        ndcg[batch] = dcg / ideal[np.minimum(n_test[batch], k) - 1]
    n_recommended = int(recommended.sum())
    return RankingMetrics(
        k,
        float(recall.mean()),
        float(ndcg.mean()),
        n,
        int(len(known)),
        recall,
        ndcg,
        n_recommended,
        n_recommended / len(item_ids),
    )


def popularity_model(history: pd.DataFrame) -> ModelEmbeddings:
    """The popularity baseline written as a one-dimensional dot-product model.

    Every history user gets the embedding ``[1]`` and every history item the embedding
    ``[count]`` (its number of history interactions), so ``<user, item>`` ranks items by
    popularity and :func:`evaluate_embeddings` scores the baseline with the very code
    that scores the learned models. Ties go to the lower item id (a deterministic
    ``0.5 * rank / n`` nudge, smaller than one interaction).

    Args:
        history: interactions of the training part / history.

    Returns:
        A :class:`ModelEmbeddings` of dimension 1 with ``meta={"model": "popularity"}``.
    """
    counts = history.groupby(contract.ITEM_ID).size().sort_index()
    item_ids = counts.index.to_numpy(np.int64)
    nudge = 0.5 * (1.0 - np.arange(len(item_ids)) / max(len(item_ids), 1))
    item_emb = (counts.to_numpy(np.float64) + nudge).astype(np.float32)[:, None]
    user_ids = np.unique(history[contract.USER_ID].to_numpy(np.int64))
    user_emb = np.ones((len(user_ids), 1), dtype=np.float32)
    return ModelEmbeddings(user_ids, item_ids, user_emb, item_emb, {"model": "popularity"})
