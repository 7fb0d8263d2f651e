"""The ranker's training rows: the holdout replayed inside the training part, joined with Feast features.

**Training rows** (:func:`build_training_rows`). The ranker must learn to re-rank what
a retriever proposes for interactions that retriever has *not* seen, at the moment the
list is made, because that is what it does in serving and in the evaluation (:mod:`training.ranker_eval`). So the
holdout is replayed inside the training part: at each of ``ranker_cuts`` cut times
``T_k = holdout_start - holdout_days - (k - 1) * ranker_cut_every_days``, a *proxy
retriever* of the registered one's kind and parameters is fitted on the events before ``T_k``, each user with history and new
items in ``[T_k, T_k + holdout_days)`` gets its top ``ranker_candidates`` unseen items as
rows at ``T_k``, labelled 1 when the user took the item in that window (their next
interactions) and 0 otherwise (:func:`training.ranker_candidates.candidate_rows`). The negatives are the hard ones:
what the retriever ranked high but the user did not take.

Every row carries the proxy's retrieval score and, through Feast's point-in-time join
(:func:`features.historical.historical_ranker_features`), the user's behaviour sequence and
activity and the item's popularity and category as they were *before* ``T_k``.
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
from graphrec import contract
from graphrec.settings import Settings
from training import registry
from training.data import InsufficientDataError, build_graph
from training.embeddings import ModelEmbeddings
from training.metrics import build_ranking_task
from training.models import TRAINED_KINDS, FittedRetriever, fit_model
from training.progress import heartbeat
from training.ranker_candidates import LABEL, candidate_rows, retrieve

log = logging.getLogger(__name__)


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
    ``settings.ranker.proxy_reuse_days`` after the end of its data; beyond that, a trained
    kind is warm-started from it for ``settings.ranker.proxy_warm_epochs`` epochs on the
    events before ``cut``; the first proxy (or a closed-form kind) is fitted from scratch.
    """
    if previous is not None and previous.until <= cut <= previous.until + pd.Timedelta(
        days=settings.ranker.proxy_reuse_days
    ):
        return Proxy(previous.fitted, previous.until, "reused", previous.version)
    before = train[train[contract.EVENT_TS] < cut]
    graph = build_graph(before)
    seed = previous.fitted.base_embeddings if previous is not None else None
    label = f"ranker proxy {kind} (events before {cut.date()})"
    if kind in TRAINED_KINDS and seed is not None and seed.dim == params.get("embedding_dim"):
        warm = {**params, "epochs": settings.ranker.proxy_warm_epochs}
        return Proxy(fit_model(kind, warm, graph, before, init=seed, label=label), cut, "warm")
    return Proxy(fit_model(kind, params, graph, before, label=label), cut, "fit")


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
    horizon = pd.Timedelta(days=settings.training.holdout_days)
    every = pd.Timedelta(days=settings.ranker.cut_every_days or settings.training.holdout_days)
    rng = np.random.default_rng(settings.seed)
    plans = []  # (cut, task, users), latest cut first: the order the users are sampled in
    for k in range(1, settings.ranker.cuts + 1):
        cut = holdout_from - horizon - (k - 1) * every
        before = train[train[contract.EVENT_TS] < cut]
        after = train[(train[contract.EVENT_TS] >= cut) & (train[contract.EVENT_TS] < cut + horizon)]
        task = build_ranking_task(before, after) if len(before) and len(after) else None
        if task is None or task.n_users == 0:
            log.info("ranker rows: cut %s has no user with history and next items; skipped", cut)
            continue
        users = task.user_ids
        if len(users) > settings.ranker.max_users:
            users = np.sort(rng.choice(users, settings.ranker.max_users, replace=False))
        plans.append((cut, task, users))
    parts, cuts, proxies, proxy_seconds = [], [], [], 0.0
    proxy = start_from
    replay_started = time.perf_counter()
    for done, (cut, task, users) in enumerate(sorted(plans, key=lambda plan: plan[0])):
        started = time.perf_counter()
        try:
            proxy = next_proxy(settings, kind, params, proxy, train, cut)
        except InsufficientDataError as exc:
            log.info("ranker rows: no proxy retriever before %s (%s); skipped", cut, exc)
            continue
        proxy_seconds += time.perf_counter() - started
        before = train[train[contract.EVENT_TS] < cut]
        candidates = retrieve(
            proxy.fitted.embeddings, users, before, settings.ranker.candidates, progress=f"ranker rows: cut {cut}:"
        )
        rows = candidate_rows(candidates, task, cut)
        elapsed = time.perf_counter() - replay_started
        log.info(
            "ranker rows: cut %d/%d (%s): proxy %s (%s, events before %s), %d rows of %d users, %d positive; "
            "%.1f s so far, ETA %.0f s",
            done + 1,
            len(plans),
            cut,
            kind,
            proxy.mode,
            proxy.until,
            len(rows),
            len(users),
            int(rows[LABEL].sum()),
            elapsed,
            elapsed / (done + 1) * (len(plans) - done - 1),
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
            f"({settings.ranker.cuts} cuts of {settings.training.holdout_days} days)"
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
    horizon = pd.Timedelta(days=settings.training.holdout_days)
    every = pd.Timedelta(days=settings.ranker.cut_every_days or settings.training.holdout_days)
    earliest = holdout_from - horizon - (settings.ranker.cuts - 1) * every
    rows, info = replay_cuts(
        settings, train, retriever, holdout_from, start_from=registered_proxy(settings, kind, earliest)
    )
    what = f"ranker rows: Feast point-in-time features of {len(rows):,} rows ({len(info['cuts'])} cuts)"
    log.info("%s ...", what)  # one query: it cannot say how far it is, the heartbeat says it is alive
    joined_at = time.perf_counter()
    with heartbeat(log, what):
        rows = historical_ranker_features(settings, rows)
    seconds = time.perf_counter() - joined_at
    log.info("%s joined in %.1f s (%s rows/s)", what, seconds, f"{len(rows) / max(seconds, 1e-9):,.0f}")
    return rows, {
        "n_rows": len(rows),
        "n_positives": int(rows[LABEL].sum()),
        "n_users": int(rows[contract.USER_ID].nunique()),
        **info,
        "feature_join_seconds": round(seconds, 2),
    }
