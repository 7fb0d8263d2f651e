"""The second stage: a BST ranker that re-ranks the retriever's candidates.

**Training rows** (:func:`build_training_rows`). The ranker must learn to re-rank what
a retriever proposes for interactions that retriever has *not* seen, at the moment the
list is made, because that is what it does in serving and in the evaluation below. So the
holdout is replayed inside the training part: at each of ``ranker_cuts`` cut times
``T_k = holdout_start - holdout_days - (k - 1) * ranker_cut_every_days``, a *proxy retriever* of the registered one's
kind and parameters is fitted on the events before ``T_k``, each user with history and new
items in ``[T_k, T_k + holdout_days)`` gets its top ``ranker_candidates`` unseen items as
rows at ``T_k``, labelled 1 when the user took the item in that window (their next
interactions) and 0 otherwise (:func:`candidate_rows`). The negatives are the hard ones:
what the retriever ranked high but the user did not take.

Every row carries the proxy's retrieval score and, through Feast's point-in-time join
(:func:`features.store.historical_ranker_features`), the user's behaviour sequence and
activity and the item's popularity and category as they were *before* ``T_k``.

**Evaluation** (:func:`evaluate_pair`), the protocol reported in the README: on the
window's holdout (the same users and ground truth as the retriever's canary), each
evaluated user gets the serving retriever's top ``ranker_candidates`` unseen items, scored
with features as of the holdout's start; *retrieval* keeps the retriever's order,
*retrieval + BST* sorts the same candidates by the ranker's probability, *popularity*
takes the most popular unseen items. HR@k (share of users with a holdout item in the
top k) and NDCG@k (binary relevance, ideal DCG over ``min(k, |T_u|)``) are computed on
the full holdout set ``T_u``, so a relevant item the retriever missed counts as a miss for
both stages; AUC is the ranker's on all candidate rows (relevant = in ``T_u``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from features.store import EVENT_TIMESTAMP, historical_ranker_features
from graphrec import contract, lake
from graphrec.settings import Settings
from training import bst, registry
from training.data import (
    InsufficientDataError,
    build_graph,
    holdout_start,
    load_window,
    temporal_split,
)
from training.embeddings import ModelEmbeddings
from training.metrics import RankingTask, build_ranking_task, popularity_model
from training.models import TRAINED_KINDS, FittedRetriever, fit_model
from training.topk import top_k_indices

log = logging.getLogger(__name__)

LABEL = "label"
RANKER_DIR = "ranker"
PAIRED_RETRIEVER_TAG = "retriever_version"


# Candidates -------------------------------------------------------------------------------
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
                bst.RETRIEVAL_SCORE: self.scores[valid].astype(np.float64),
                "rank": np.tile(np.arange(n), len(self.user_ids))[valid.ravel()],
            }
        )


def retrieve(
    model: ModelEmbeddings, users: np.ndarray, seen: pd.DataFrame, n: int, batch_size: int = 1024
) -> Candidates:
    """Top ``n`` items by inner product for ``users``, masking each user's ``seen`` items.

    Users the model does not know get no candidates (a row of ``-1``).
    """
    users = np.asarray(users, dtype=np.int64)
    n = min(n, len(model.item_ids))
    items = np.full((len(users), n), -1, dtype=np.int64)
    scores = np.full((len(users), n), -np.inf, dtype=np.float32)
    row_of = pd.Series(np.arange(len(model.user_ids)), index=model.user_ids)
    col_of = pd.Series(np.arange(len(model.item_ids)), index=model.item_ids)
    rows = row_of.reindex(users).to_numpy()
    known = np.flatnonzero(~np.isnan(rows))
    if len(np.unique(users)) != len(users):
        raise ValueError("retrieve() needs distinct users")
    seen = seen[[contract.USER_ID, contract.ITEM_ID]].drop_duplicates()
    item_t = np.ascontiguousarray(np.asarray(model.item_emb, dtype=np.float32).T)
    for lo in range(0, len(known), batch_size):
        batch = known[lo : lo + batch_size]
        block = np.asarray(model.user_emb, dtype=np.float32)[rows[batch].astype(np.int64)] @ item_t
        mask = seen[seen[contract.USER_ID].isin(users[batch])]
        r = pd.Series(np.arange(len(batch)), index=users[batch]).reindex(mask[contract.USER_ID]).to_numpy()
        c = col_of.reindex(mask[contract.ITEM_ID]).to_numpy()
        ok = ~np.isnan(c)
        block[r[ok].astype(np.int64), c[ok].astype(np.int64)] = -np.inf
        top = top_k_indices(block, n)
        top_scores = np.take_along_axis(block, top, axis=1)
        top_items = np.where(np.isfinite(top_scores), model.item_ids[top], -1)
        items[batch], scores[batch] = top_items, top_scores
    return Candidates(users, items, scores)


# Training rows ------------------------------------------------------------------------------
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


@dataclasses.dataclass
class Proxy:
    """A stand-in retriever for the replayed cuts, and the data it was fitted on.

    Args:
        fitted: the fit (its ``base_embeddings`` seed a warm start forward).
        until: the first moment *not* in its training data: it saw only events before.
        mode: ``"fit"`` (from scratch), ``"warm"`` (warm-started from the previous proxy),
            ``"registered"`` (an earlier registered retriever version), ``"reused"``.
        version: the registered version, for ``"registered"``.
    """

    fitted: FittedRetriever
    until: pd.Timestamp
    mode: str
    version: int | None = None


def proxy_params(retriever: ModelEmbeddings) -> tuple[str, dict[str, Any]]:
    """The kind and params a proxy copies from the registered retriever (those of its
    line's full retrain when it was warm-started).

    Trained kinds fit for the epochs the retriever's early stopping chose on its last
    full retrain (``validation.full_refit_epochs``, else ``refit_epochs``, else its epochs),
    without a validation split.
    """
    kind = retriever.meta.get("model", "lightgcn")
    # A warm start's own params (a lower learning rate, its early stopping) are not a fit from scratch's.
    params = dict(retriever.meta.get("full_retrain_params") or retriever.meta.get("params") or {})
    if kind in TRAINED_KINDS:
        validation = retriever.meta.get("validation") or {}
        epochs = validation.get("full_refit_epochs") or validation.get("refit_epochs") or params.get("epochs", 1)
        params = {**params, "epochs": int(epochs), "patience": 0}
    return kind, params


#: Canary decisions of versions that served as champion (tags written by the canary).
SERVED_DECISIONS = ("promoted", "replaced", "retained")


def registered_proxy(settings: Settings, kind: str, before: pd.Timestamp) -> Proxy | None:
    """The newest registered retriever of ``kind`` that served as champion and whose
    training data ends before ``before``, as a ready-made proxy; ``None`` when none does.

    In a running installation last week's champions are exactly such retrievers: the
    earliest replayed cut then needs no fit at all. A version qualifies when its tags say
    ``model = kind`` and a champion's canary decision, and its lineage's ``train_until``
    (the last training day) is before ``before``'s day.
    """
    candidates = [
        row
        for row in registry.list_model_versions(settings)
        if row["canary_decision"] in SERVED_DECISIONS
        and row["ds"] is not None
        and dt.date.fromisoformat(row["ds"]) < before.date()
    ]
    for row in sorted(candidates, key=lambda r: (r["ds"], r["version"]), reverse=True):
        if registry.get_version_tags(settings, row["version"]).get("model") != kind:
            continue
        served = registry.load_model_embeddings(settings, row["version"])
        until = served.meta.get("train_until")
        if until is None or dt.date.fromisoformat(until) >= before.date():
            continue
        base = registry.load_warm_start_embeddings(settings, row["version"]) if kind in TRAINED_KINDS else None
        start = pd.Timestamp(dt.date.fromisoformat(until) + dt.timedelta(days=1), tz="UTC")
        return Proxy(FittedRetriever(served, 0.0, base_embeddings=base), start, "registered", row["version"])
    return None


def next_proxy(
    settings: Settings,
    kind: str,
    params: dict[str, Any],
    previous: Proxy | None,
    train: pd.DataFrame,
    cut: pd.Timestamp,
) -> Proxy:
    """The proxy for a cut at ``cut``: it never sees an event at or after ``cut``.

    The previous cut's proxy is reused while ``cut`` is at most
    ``settings.ranker_proxy_reuse_days`` after the end of its data; beyond that, a trained
    kind is warm-started from it for ``settings.ranker_proxy_warm_epochs`` epochs on the
    events before ``cut``; the first proxy (or a closed-form kind) is fitted from scratch.
    """
    if previous is not None and previous.until <= cut <= previous.until + pd.Timedelta(
        days=settings.ranker_proxy_reuse_days
    ):
        return Proxy(previous.fitted, previous.until, "reused", previous.version)
    before = train[train[contract.EVENT_TS] < cut]
    graph = build_graph(before)
    seed = previous.fitted.base_embeddings if previous is not None else None
    if kind in TRAINED_KINDS and seed is not None and seed.dim == params.get("embedding_dim"):
        warm = {**params, "epochs": settings.ranker_proxy_warm_epochs}
        return Proxy(fit_model(kind, warm, graph, before, init=seed), cut, "warm")
    return Proxy(fit_model(kind, params, graph, before), cut, "fit")


def replay_cuts(
    settings: Settings,
    train: pd.DataFrame,
    retriever: ModelEmbeddings,
    holdout_from: pd.Timestamp,
    *,
    start_from: Proxy | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The ranker's labelled candidate rows of every replayed cut, before features.

    The cuts are replayed oldest first; each gets a proxy retriever that saw only the
    events before it (:func:`next_proxy`: one fit, reused or warm-started forward for the
    later cuts, rather than a fit from scratch per cut). ``start_from`` (e.g.
    :func:`registered_proxy`) stands in for the first cut's proxy when its data ends
    before that cut.

    Args:
        settings: ``ranker_cuts``, ``holdout_days`` (the label horizon), candidates, caps,
            ``ranker_proxy_*``.
        train: the window's training events (all before ``holdout_from``).
        retriever: the registered retriever; the proxies copy its kind and parameters.
        holdout_from: the start of the holdout; the latest cut is ``holdout_days`` before it,
            the others ``ranker_cut_every_days`` apart.

    Returns:
        ``(rows, info)``: :func:`candidate_rows` of every cut; ``info`` lists each cut's
        proxy (``proxies``: ``cut``, ``mode``, ``data_until``) and times them (JSON-able).

    Raises:
        InsufficientDataError: no cut has users with both history and next items.
    """
    kind, params = proxy_params(retriever)
    horizon = pd.Timedelta(days=settings.holdout_days)
    every = pd.Timedelta(days=settings.ranker_cut_every_days or settings.holdout_days)
    rng = np.random.default_rng(settings.seed)
    plans = []  # (cut, task, users), latest cut first: the order the users are sampled in
    for k in range(1, settings.ranker_cuts + 1):
        cut = holdout_from - horizon - (k - 1) * every
        before = train[train[contract.EVENT_TS] < cut]
        after = train[(train[contract.EVENT_TS] >= cut) & (train[contract.EVENT_TS] < cut + horizon)]
        task = build_ranking_task(before, after) if len(before) and len(after) else None
        if task is None or task.n_users == 0:
            log.info("ranker rows: cut %s has no user with history and next items; skipped", cut)
            continue
        users = task.user_ids
        if len(users) > settings.ranker_max_users:
            users = np.sort(rng.choice(users, settings.ranker_max_users, replace=False))
        plans.append((cut, task, users))
    parts, cuts, proxies, proxy_seconds = [], [], [], 0.0
    proxy = start_from
    for cut, task, users in sorted(plans, key=lambda plan: plan[0]):
        started = time.perf_counter()
        try:
            proxy = next_proxy(settings, kind, params, proxy, train, cut)
        except InsufficientDataError as exc:
            log.info("ranker rows: no proxy retriever before %s (%s); skipped", cut, exc)
            continue
        proxy_seconds += time.perf_counter() - started
        before = train[train[contract.EVENT_TS] < cut]
        rows = candidate_rows(retrieve(proxy.fitted.embeddings, users, before, settings.ranker_candidates), task, cut)
        log.info(
            "ranker rows: cut %s: proxy %s (%s, events before %s), %d rows of %d users, %d positive",
            cut,
            kind,
            proxy.mode,
            proxy.until,
            len(rows),
            len(users),
            int(rows[LABEL].sum()),
        )
        parts.append(rows)
        cuts.append(cut.isoformat())
        proxies.append(
            {
                "cut": cut.isoformat(),
                "mode": proxy.mode,
                "data_until": proxy.until.isoformat(),
                **({"version": proxy.version} if proxy.version is not None else {}),
            }
        )
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if not parts or not 0 < rows[LABEL].sum() < len(rows):
        raise InsufficientDataError(
            f"no cut before {holdout_from} gives the ranker both positive and negative rows "
            f"({settings.ranker_cuts} cuts of {settings.holdout_days} days)"
        )
    return rows, {
        "cuts": cuts,
        "proxies": proxies,
        "proxy_model": kind,
        "proxy_seconds": round(proxy_seconds, 2),
        "proxy_fits": sum(p["mode"] != "reused" for p in proxies),
    }


def build_training_rows(
    settings: Settings, train: pd.DataFrame, retriever: ModelEmbeddings, holdout_from: pd.Timestamp
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Labelled, feature-joined rows the ranker trains on (see the module docstring).

    :func:`replay_cuts`' rows, all cuts joined with their features in one point-in-time
    query.

    Returns:
        ``(rows, info)``: the rows with every feature column, ``retrieval_score`` and
        ``label``; ``info`` is :func:`replay_cuts`' plus row counts and the join's time.

    Raises:
        InsufficientDataError: no cut has users with both history and next items.
    """
    kind, _ = proxy_params(retriever)
    horizon = pd.Timedelta(days=settings.holdout_days)
    every = pd.Timedelta(days=settings.ranker_cut_every_days or settings.holdout_days)
    earliest = holdout_from - horizon - (settings.ranker_cuts - 1) * every
    rows, info = replay_cuts(
        settings, train, retriever, holdout_from, start_from=registered_proxy(settings, kind, earliest)
    )
    joined_at = time.perf_counter()
    rows = historical_ranker_features(settings, rows)
    log.info(
        "ranker rows: Feast point-in-time features of %d rows joined in %.1f s",
        len(rows),
        time.perf_counter() - joined_at,
    )
    return rows, {
        "n_rows": len(rows),
        "n_positives": int(rows[LABEL].sum()),
        "n_users": int(rows[contract.USER_ID].nunique()),
        **info,
        "feature_join_seconds": round(time.perf_counter() - joined_at, 2),
    }


# Evaluation ---------------------------------------------------------------------------------
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

    Users of the task missing from ``users`` score 0; the mean is over all task users.
    """
    row_of = pd.Series(np.arange(len(users)), index=users)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    hr = np.zeros(task.n_users)
    ndcg = np.zeros(task.n_users)
    for u, user in enumerate(task.user_ids):
        if user not in row_of.index:
            continue
        relevant = task.test_items[task.test_indptr[u] : task.test_indptr[u + 1]]
        top = lists[row_of[user], :k]
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


def score_rows(model: bst.BST, vocab: bst.Vocabulary, rows: pd.DataFrame, seq_len: int) -> np.ndarray:
    """The ranker's probability for feature-joined rows."""
    return bst.predict(model, bst.encode(rows, vocab, seq_len))


def evaluate_pair(
    settings: Settings,
    task: RankingTask,
    history: pd.DataFrame,
    at: pd.Timestamp,
    retriever: ModelEmbeddings,
    ranker: tuple[bst.BST, bst.Vocabulary, dict[str, Any]] | None,
) -> dict[str, Any]:
    """Two-stage metrics of one (retriever, ranker) pair on ``task``: :func:`evaluate_pairs` of one."""
    return evaluate_pairs(settings, task, history, at, [(retriever, ranker)])[0]


def evaluate_pairs(
    settings: Settings,
    task: RankingTask,
    history: pd.DataFrame,
    at: pd.Timestamp,
    pairs: list[tuple[ModelEmbeddings, tuple[bst.BST, bst.Vocabulary, dict[str, Any]] | None]],
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
        pairs: ``(retriever, ranker)`` with ``load_ranker``'s triple, or ``None`` for
            retrieval alone.

    Returns:
        Per pair, in order: ``retrieval_hr_at_k, retrieval_ndcg_at_k, popularity_*`` and,
        with a ranker, ``ranker_hr_at_k, ranker_ndcg_at_k, ranker_auc``, plus
        ``n_eval_users`` and ``candidates``.
    """
    k = settings.ranker_k
    popular = retrieve(popularity_model(history), task.user_ids, history, k)
    baseline = list_metrics(task, popular.user_ids, popular.items, k).as_dict("popularity_")
    results: list[dict[str, Any]] = []
    lists: list[Candidates] = []
    for retriever, _ in pairs:
        candidates = retrieve(retriever, task.user_ids, history, settings.ranker_candidates)
        lists.append(candidates)
        results.append(
            {
                "n_eval_users": task.n_users,
                "candidates": settings.ranker_candidates,
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
    joined = historical_ranker_features(settings, keys)
    relevant = pd.MultiIndex.from_arrays([np.repeat(task.user_ids, np.diff(task.test_indptr)), task.test_items])
    for i, frame in zip(ranked, frames):
        model, vocab, meta = pairs[i][1]
        rows = frame.merge(joined, how="left", on=[contract.USER_ID, contract.ITEM_ID], validate="many_to_one")
        probabilities = score_rows(model, vocab, rows, int(meta.get("seq_len", settings.ranker_seq_len)))
        results[i] |= list_metrics(task, lists[i].user_ids, rerank(lists[i], probabilities), k).as_dict("ranker_")
        labels = pd.MultiIndex.from_frame(rows[[contract.USER_ID, contract.ITEM_ID]]).isin(relevant).astype(int)
        results[i]["ranker_auc"] = round(bst.auc(labels, probabilities), 6) if 0 < labels.sum() < len(labels) else None
    return results


def evaluation_key(settings: Settings, fingerprint: str, window_days: int) -> dict[str, Any]:
    """What makes two :func:`evaluate_pair` runs of the same pair equal: the window's data
    and length, the holdout, the candidate count and the cut-off. The canary reuses the
    training task's evaluation of the challenger pair when the keys match."""
    return {
        "dataset_fingerprint": fingerprint,
        "window_days": int(window_days),
        "holdout_days": settings.holdout_days,
        "candidates": settings.ranker_candidates,
        "k": settings.ranker_k,
    }


# The nightly task ------------------------------------------------------------------------
def _catalog_items(settings: Settings, ds: dt.date, train: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    catalog = lake.read_catalog(settings.curated_dir, until=ds)
    items = np.union1d(catalog[contract.ITEM_ID].to_numpy(np.int64), train[contract.ITEM_ID].to_numpy(np.int64))
    categories = sorted(set(catalog[contract.CATEGORY].astype(str))) if contract.CATEGORY in catalog else []
    return items, categories


def train_ranker(
    settings: Settings,
    ds: dt.date,
    retriever_version: int,
    *,
    window_days: int | None = None,
    reason: str = "schedule",
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Train, evaluate, log and register the BST ranker paired with a retriever version.

    The new version gets the alias ``challenger`` and the tag ``retriever_version``: the
    canary judges and promotes the two together. ``tags`` are added to the run and the
    version (e.g. ``trigger=drift`` and the drift report that caused the run).

    Returns:
        A JSON-able summary for XCom: ``run_id, model_version, retriever_version`` and the
        evaluation of :func:`evaluate_pair` (``ranker_ndcg_at_10`` ...), row counts, timings.
    """
    started = time.perf_counter()
    window_days = window_days or settings.window_days
    window = load_window(settings, ds, window_days)
    train, holdout = temporal_split(window.interactions, settings.holdout_days, end=window.end)
    task = build_ranking_task(train, holdout)
    if train.empty or task.n_users == 0:
        raise InsufficientDataError(f"no training events or holdout users in {window.data_window} for the ranker")
    retriever = registry.load_model_embeddings(settings, retriever_version)
    items, categories = _catalog_items(settings, ds, train)
    at = holdout_start(window.end, settings.holdout_days)
    rows, info = build_training_rows(settings, train, retriever, at)
    vocab = bst.Vocabulary.build(items, categories)
    model, fit_info = fit_ranker(settings, rows, vocab)
    log.info("ranker fitted in %.1f s (best epoch %s)", fit_info["fit_seconds"], fit_info["best_epoch"])
    meta = {"seq_len": settings.ranker_seq_len}
    metrics = evaluate_pair(settings, task, train, at, retriever, (model, vocab, meta))
    registry.configure(settings)
    with mlflow.start_run(run_name=f"ranker-bst-{ds.isoformat()}-{reason}") as run:
        mlflow.set_tags(
            {
                "ds": ds.isoformat(),
                "reason": reason,
                "model": "bst",
                PAIRED_RETRIEVER_TAG: retriever_version,
                **(tags or {}),
            }
        )
        mlflow.log_params(
            {
                "data_window": json.dumps(window.data_window),
                "dataset_fingerprint": window.fingerprint,
                "retriever_version": retriever_version,
                "candidates": settings.ranker_candidates,
                "cuts": settings.ranker_cuts,
                "cut_every_days": settings.ranker_cut_every_days,
                "max_users": settings.ranker_max_users,
                "seq_len": settings.ranker_seq_len,
                "negatives_per_list": settings.ranker_negatives_per_list,
                "epochs": settings.ranker_epochs,
                "seed": settings.seed,
                **model.config(),
            }
        )
        for epoch, (loss, val_auc) in enumerate(zip(fit_info["losses"], fit_info["val_auc"]), start=1):
            mlflow.log_metrics(
                {"train_loss": loss, **({"val_auc": val_auc} if val_auc is not None else {})}, step=epoch
            )
        numbers = {
            key: float(v) for key, v in {**metrics, **info}.items() if isinstance(v, (int, float)) and v is not None
        }
        mlflow.log_metrics(numbers)
        version = register_ranker(
            settings,
            model,
            vocab,
            run.info.run_id,
            extra={
                "retriever_version": retriever_version,
                "ds": ds.isoformat(),
                "data_window": window.data_window,
                "metrics": metrics,
            },
        )
    summary = {
        "run_id": run.info.run_id,
        "model_version": version,
        "retriever_version": retriever_version,
        "ds": ds.isoformat(),
        "reason": reason,
        **metrics,
        **info,
        "evaluation_key": evaluation_key(settings, window.fingerprint, window_days),
        "evaluation_metrics": sorted(metrics),
        "best_epoch": fit_info.get("best_epoch"),
        "fit_seconds": fit_info["fit_seconds"],
        "n_fit_rows": fit_info["n_fit_rows"],
        "seconds": round(time.perf_counter() - started, 2),
    }
    registry.set_version_tags(
        settings,
        version,
        {
            **(tags or {}),
            PAIRED_RETRIEVER_TAG: retriever_version,
            "ds": ds.isoformat(),
            "reason": reason,
            **{k: v for k, v in metrics.items() if v is not None},
        },
        model=settings.ranker_model_name,
    )
    registry.set_alias(settings, registry.CHALLENGER, version, model=settings.ranker_model_name)
    log.info("ranker v%s (paired with retriever v%s): %s", version, retriever_version, json.dumps(metrics))
    return summary


def sample_negatives(rows: pd.DataFrame, per_list: int, seed: int) -> np.ndarray:
    """Positions of ``rows`` to train on: every positive, and up to ``per_list`` negatives of
    each candidate list (``user_id``, ``event_timestamp``) drawn uniformly at random (seeded).

    A list holds ~100 candidates and a few positives: the negatives are many and alike,
    and a sample of them teaches the ranker nearly as much at a fraction of the cost.
    Sampling uniformly over the list keeps every rank of the list represented.
    ``per_list = 0`` keeps every row.
    """
    if per_list <= 0:
        return np.arange(len(rows))
    draw = np.random.default_rng(seed).random(len(rows))
    negative = rows[LABEL].to_numpy() == 0
    keys = pd.DataFrame(
        {
            "u": rows[contract.USER_ID].to_numpy(),
            "t": rows[EVENT_TIMESTAMP].to_numpy(),
            "draw": np.where(negative, draw, np.inf),
        }
    )
    order = keys.groupby(["u", "t"], sort=False)["draw"].rank(method="first").to_numpy()
    return np.flatnonzero(~negative | (order <= per_list))


def fit_ranker(settings: Settings, rows: pd.DataFrame, vocab: bst.Vocabulary) -> tuple[bst.BST, dict[str, Any]]:
    """Fit a BST on feature-joined rows; a tenth of the users (seeded hash) validate.

    Rows are encoded whole (a row's rank and score gap within its list need the full
    list); the training users' rows are then sampled (:func:`sample_negatives`,
    ``settings.ranker_negatives_per_list``), the validation users' are all kept, so the
    early-stopping AUC is measured on lists as the ranker meets them.
    """
    users = rows[contract.USER_ID].to_numpy(np.int64)
    valid_mask = (pd.util.hash_array(users ^ settings.seed) % 10) == 0
    batch = bst.encode(rows, vocab, settings.ranker_seq_len)
    labels = rows[LABEL].to_numpy(np.float32)
    model = bst.build_bst(vocab, seed=settings.seed, seq_len=settings.ranker_seq_len)
    valid = None
    sampled = np.zeros(len(rows), dtype=bool)
    sampled[sample_negatives(rows, settings.ranker_negatives_per_list, settings.seed)] = True
    train_index = np.flatnonzero(~valid_mask & sampled)
    if valid_mask.any() and (~valid_mask).any():
        index = np.flatnonzero(valid_mask)
        valid = (batch.subset(index), labels[index])
    else:
        train_index = np.flatnonzero(sampled)
    config = bst.BSTTrainConfig(epochs=settings.ranker_epochs, seed=settings.seed, patience=2 if valid else 0)
    result = bst.fit_bst(model, batch.subset(train_index), labels[train_index], config, valid=valid)
    return model, {
        "losses": list(result.losses),
        "val_auc": list(result.valid_auc) or [None] * len(result.losses),
        "best_epoch": result.best_epoch,
        "fit_seconds": round(result.seconds, 2),
        "n_fit_rows": len(train_index),
    }


def register_ranker(
    settings: Settings, model: bst.BST, vocab: bst.Vocabulary, run_id: str, extra: dict[str, Any]
) -> int:
    """Log the ranker's files (``ranker/``) to ``run_id`` and register them as a new version."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / RANKER_DIR
        bst.save_ranker(model, vocab, directory, extra={**extra, "seq_len": settings.ranker_seq_len})
        from training import pyfunc_ranker

        version = pyfunc_ranker.log_and_register(settings, directory, run_id)
    return version


def load_ranker(settings: Settings, ref: int | str) -> tuple[bst.BST, bst.Vocabulary, dict[str, Any], Path]:
    """A registered ranker by version or alias: ``(model, vocab, meta, files)``; the files
    (``ranker.pt``, ``ranker.json``) are downloaded to a temporary directory that lives as
    long as the process (publication copies them into the index bundle)."""
    from training import pyfunc_ranker

    directory = pyfunc_ranker.download(settings, ref)
    model, vocab, meta = bst.load_ranker(directory)
    return model, vocab, meta, directory
