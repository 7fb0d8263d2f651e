"""Two-stage evaluation of a (retriever, ranker) pair: HR@k, NDCG@k and the ranker's AUC.

**Evaluation** (:func:`evaluate_pair`), the protocol reported in the README: on the
window's holdout (the same users and ground truth as the retriever's canary), each
evaluated user gets the serving retriever's top ``ranker_candidates`` unseen items, scored
with features as of the holdout's start; *retrieval* keeps the retriever's order,
*retrieval + BST* sorts the same candidates by the ranker's probability, *popularity*
takes the most popular unseen items. HR@k (share of users with a holdout item in the
top k) and NDCG@k (binary relevance, ideal DCG over ``min(k, |T_u|)``) are computed on
the full holdout set ``T_u``, so a relevant item the retriever missed counts as a miss for
both stages; AUC is the ranker's on all candidate rows (relevant = in ``T_u``).

The nightly ranker task reports :func:`evaluate_pair` of its new pair, and the canary
(:mod:`serving.canary`) compares pairs with :func:`evaluate_pairs`; :func:`evaluation_key`
says when the two evaluations are the same one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from features.historical import historical_ranker_features
from features.ranker_columns import EVENT_TIMESTAMP
from graphrec import contract
from graphrec.settings import Settings
from training.bst import BST
from training.bst_encoding import encode
from training.bst_fit import auc, predict
from training.bst_vocab import Vocabulary
from training.embeddings import ModelEmbeddings
from training.ids import RowLookup
from training.metrics import RankingTask, popularity_model
from training.progress import heartbeat
from training.ranker_candidates import Candidates, retrieve

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ListMetrics:
    """HR@k and NDCG@k of ranked lists against a :class:`RankingTask` (means over its users)."""

    k: int
    hr: float
    ndcg: float
    n_users: int

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}hr_at_{self.k}": round(self.hr, 6), f"{prefix}ndcg_at_{self.k}": round(self.ndcg, 6)}


def list_metrics(task: RankingTask, users: np.ndarray, lists: np.ndarray, k: int) -> ListMetrics:
    """HR@k and NDCG@k of ``lists[u]`` (item ids, best first, ``-1`` = empty) for ``task``'s users.

    Users of the task missing from ``users`` (distinct) score 0; the mean is over all task users.
    """
    rows = RowLookup.of(users).rows_of(task.user_ids)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    hr = np.zeros(task.n_users)
    ndcg = np.zeros(task.n_users)
    for u, row in enumerate(rows):
        if row < 0:
            continue
        relevant = task.test_items[task.test_indptr[u] : task.test_indptr[u + 1]]
        top = lists[row, :k]
        hits = np.isin(top, relevant) & (top >= 0)
        hr[u] = float(hits.any())
        ndcg[u] = (hits * discounts[: len(top)]).sum() / discounts[: min(k, len(relevant))].sum()
    n = task.n_users
    return ListMetrics(k, float(hr.mean()) if n else 0.0, float(ndcg.mean()) if n else 0.0, n)


def rerank(candidates: Candidates, probabilities: np.ndarray) -> np.ndarray:
    """The candidates sorted by the ranker's probability (ties: retrieval order)."""
    scores = np.full(candidates.items.shape, -np.inf)
    scores[candidates.items >= 0] = probabilities
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(candidates.items, order, axis=1)


def score_rows(model: BST, vocab: Vocabulary, rows: pd.DataFrame, seq_len: int) -> np.ndarray:
    """The ranker's probability for feature-joined rows."""
    return predict(model, encode(rows, vocab, seq_len))


def evaluate_pair(
    settings: Settings,
    task: RankingTask,
    history: pd.DataFrame,
    at: pd.Timestamp,
    retriever: ModelEmbeddings,
    ranker: tuple[BST, Vocabulary, dict[str, Any]] | None,
) -> dict[str, Any]:
    """Two-stage metrics of one (retriever, ranker) pair on ``task``: :func:`evaluate_pairs` of one."""
    return evaluate_pairs(settings, task, history, at, [(retriever, ranker)])[0]


def evaluate_pairs(
    settings: Settings,
    task: RankingTask,
    history: pd.DataFrame,
    at: pd.Timestamp,
    pairs: list[tuple[ModelEmbeddings, tuple[BST, Vocabulary, dict[str, Any]] | None]],
) -> list[dict[str, Any]]:
    """Two-stage metrics of (retriever, ranker) pairs on the same ``task`` (module docstring).

    The pairs share the work that does not depend on them: the popularity lists, and one
    point-in-time feature join over the union of every pair's candidate rows (a candidate
    both retrievers propose is joined once).

    Args:
        settings: ``ranker_candidates`` and ``ranker_k``, the Feast store.
        task: the holdout ground truth.
        history: the events before ``at`` (masked, popularity counts).
        at: the moment the lists are made (features as of then).
        pairs: ``(retriever, ranker)`` with :func:`training.bst_io.load_ranker`'s triple, or ``None`` for
            retrieval alone.

    Returns:
        Per pair, in order: ``retrieval_hr_at_k, retrieval_ndcg_at_k, popularity_*`` and,
        with a ranker, ``ranker_hr_at_k, ranker_ndcg_at_k, ranker_auc``, plus
        ``n_eval_users`` and ``candidates``.
    """
    k = settings.ranker.k
    popular = retrieve(popularity_model(history), task.user_ids, history, k)
    baseline = list_metrics(task, popular.user_ids, popular.items, k).as_dict("popularity_")
    results: list[dict[str, Any]] = []
    lists: list[Candidates] = []
    for retriever, _ in pairs:
        candidates = retrieve(
            retriever, task.user_ids, history, settings.ranker.candidates, progress="ranker evaluation: candidates for"
        )
        lists.append(candidates)
        results.append(
            {
                "n_eval_users": task.n_users,
                "candidates": settings.ranker.candidates,
                **list_metrics(task, candidates.user_ids, candidates.items, k).as_dict("retrieval_"),
                **baseline,
            }
        )
    ranked = [i for i, (_, ranker) in enumerate(pairs) if ranker is not None]
    if not ranked:
        return results
    frames = [lists[i].frame() for i in ranked]
    keys = pd.concat([f[[contract.USER_ID, contract.ITEM_ID]] for f in frames], ignore_index=True)
    keys = keys.drop_duplicates(ignore_index=True)
    keys[EVENT_TIMESTAMP] = at
    what = f"ranker evaluation: Feast point-in-time features of {len(keys):,} candidate rows"
    log.info("%s ...", what)
    joined_at = time.perf_counter()
    with heartbeat(log, what):
        joined = historical_ranker_features(settings, keys)
    seconds = time.perf_counter() - joined_at
    log.info("%s joined in %.1f s (%s rows/s)", what, seconds, f"{len(keys) / max(seconds, 1e-9):,.0f}")
    relevant = pd.MultiIndex.from_arrays([np.repeat(task.user_ids, np.diff(task.test_indptr)), task.test_items])
    for i, frame in zip(ranked, frames):
        model, vocab, meta = pairs[i][1]
        rows = frame.merge(joined, how="left", on=[contract.USER_ID, contract.ITEM_ID], validate="many_to_one")
        scored_at = time.perf_counter()
        probabilities = score_rows(model, vocab, rows, int(meta.get("seq_len", settings.ranker.seq_len)))
        log.info("ranker evaluation: %s rows scored in %.1f s", f"{len(rows):,}", time.perf_counter() - scored_at)
        results[i] |= list_metrics(task, lists[i].user_ids, rerank(lists[i], probabilities), k).as_dict("ranker_")
        labels = pd.MultiIndex.from_frame(rows[[contract.USER_ID, contract.ITEM_ID]]).isin(relevant).astype(int)
        results[i]["ranker_auc"] = round(auc(labels, probabilities), 6) if 0 < labels.sum() < len(labels) else None
    return results


def evaluation_key(settings: Settings, fingerprint: str, window_days: int) -> dict[str, Any]:
    """What makes two :func:`evaluate_pair` runs of the same pair equal: the window's data
    and length, the holdout, the candidate count and the cut-off. The canary reuses the
    training task's evaluation of the challenger pair when the keys match."""
    return {
        "dataset_fingerprint": fingerprint,
        "window_days": int(window_days),
        "holdout_days": settings.training.holdout_days,
        "candidates": settings.ranker.candidates,
        "k": settings.ranker.k,
    }


#: How :func:`describe_evaluation` names the lists of :func:`evaluate_pairs`' metric prefixes.
WHO = (("ranker", "ranker"), ("retrieval order", "retrieval"), ("popularity", "popularity"))


def describe_evaluation(metrics: dict[str, Any], k: int, first: dt.date, last: dt.date) -> str:
    """:func:`evaluate_pair`'s numbers in words, e.g. ``on the holdout 2025-01-14 (812 users,
    100 candidates each): NDCG@10 ranker 0.1234, retrieval order 0.1100, popularity 0.0500;
    HR@10 ...; ranker AUC 0.7310``."""
    holdout = last.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"

    def row(name: str) -> str:
        values = [(who, metrics.get(f"{prefix}_{name}_at_{k}")) for who, prefix in WHO]
        return f"{name.upper()}@{k} " + ", ".join(f"{who} {value:.4f}" for who, value in values if value is not None)

    auc_value = metrics.get("ranker_auc")
    return (
        f"on the holdout {holdout} ({metrics.get('n_eval_users')} users, {metrics.get('candidates')} candidates each): "
        f"{row('ndcg')}; {row('hr')}" + (f"; ranker AUC {auc_value:.4f}" if auc_value is not None else "")
    )
