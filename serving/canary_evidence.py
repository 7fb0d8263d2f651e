"""What the canary gate measures: every model scored on the same fresh holdout.

Both registered models and the popularity baseline are scored by the same code
(:func:`training.metrics.evaluate_embeddings`) on the same fresh holdout
(:func:`prepare_holdout`): the last ``settings.training.holdout_days`` curated days ending at
``ds``, masking each user's items from the earlier days of the ``settings.training.window_days``
window. Models are compared through external ids, so a champion trained on an older
window (fewer users and items) is scored fairly: users it does not know score zero and
items it does not know can never be its hits (see the metrics module for the full
protocol). :func:`gather_evidence` then runs every check of :mod:`serving.canary_rules`
on those numbers, building the index publication would build (:func:`ann_recall`).

This module reads the curated lake and builds FAISS indexes in memory; it never touches
the MLflow registry (:mod:`serving.canary` loads the models and writes the decision).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd

from graphrec.settings import Settings
from serving.canary_bootstrap import DeltaInterval, paired_bootstrap_ci
from serving.canary_rules import (
    CHECKS,
    SKIP,
    AnnRecall,
    Check,
    ann_check,
    coverage_check,
    embeddings_check,
    finite,
    popularity_check,
    regression_check,
)
from serving.index import build_index, choose_factory
from serving.index_check import check_queries, recall_against_exact
from training.data import InsufficientDataError, holdout_start, load_window, temporal_split
from training.embeddings import ModelEmbeddings
from training.metrics import (
    DEFAULT_K,
    RankingMetrics,
    RankingTask,
    build_ranking_task,
    evaluate_embeddings,
    popularity_model,
)


@dataclasses.dataclass(frozen=True)
class Holdout:
    """The canary's fresh holdout, prepared once for every model the gate scores.

    Args:
        task: the ground truth (each holdout user's new items).
        history: the window's events before the holdout (masked items, popularity).
        at: the holdout's start, the moment the candidate lists are made.
        popularity: the popularity baseline counted on ``history``.
        fingerprint: the window's dataset fingerprint (:class:`training.data.Window`).
        window_days: the window's length in days.
    """

    task: RankingTask
    history: pd.DataFrame
    at: pd.Timestamp
    popularity: ModelEmbeddings
    fingerprint: str
    window_days: int


def prepare_holdout(settings: Settings, ds: dt.date) -> Holdout:
    """Read the ``settings.training.window_days`` window ending at ``ds`` once and split it.

    Raises:
        InsufficientDataError: no user with history and new holdout items.
    """
    window = load_window(settings, ds, settings.training.window_days)
    history, holdout = temporal_split(window.interactions, settings.training.holdout_days, end=window.end)
    task = build_ranking_task(history, holdout)
    if task.n_users == 0:
        raise InsufficientDataError(
            f"no canary holdout users for {ds}: the holdout has {len(holdout)} events, the history {len(history)}"
        )
    return Holdout(
        task,
        history,
        holdout_start(ds, settings.training.holdout_days),
        popularity_model(history),
        window.fingerprint,
        settings.training.window_days,
    )


def saw_holdout(model: ModelEmbeddings, first_holdout_day: dt.date) -> bool:
    """Whether a model's training data reaches into the holdout (its score is inflated)."""
    until = model.meta.get("train_until")
    return until is not None and dt.date.fromisoformat(until) >= first_holdout_day


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Everything the gate measured for one challenger (see :func:`gather_evidence`)."""

    challenger: RankingMetrics | None
    champion: RankingMetrics | None
    popularity: RankingMetrics
    recall_delta: DeltaInterval | None
    ndcg_delta: DeltaInterval | None
    ann: AnnRecall | None
    checks: tuple[Check, ...]


def gather_evidence(
    settings: Settings,
    task: RankingTask,
    challenger: ModelEmbeddings,
    champion: ModelEmbeddings | None,
    popularity: ModelEmbeddings,
) -> Evidence:
    """Score the models on ``task`` and run every check (no registry access).

    Non-finite challenger embeddings are not scored (the other checks are skipped); a
    non-finite champion is not compared with (its checks are skipped, saying so).
    """
    k = DEFAULT_K
    pop = evaluate_embeddings(popularity, task, k)
    health = embeddings_check(challenger, seed=settings.seed)
    if health.hard:
        skipped = tuple(
            Check(name, SKIP, "not run: the challenger's embeddings are not finite")
            for name in CHECKS
            if name != "embeddings"
        )
        return Evidence(None, None, pop, None, None, None, (health, *skipped))
    mine = evaluate_embeddings(challenger, task, k)
    theirs = recall_delta = ndcg_delta = None
    if champion is not None and finite(champion):
        theirs = evaluate_embeddings(champion, task, k)
        recall_delta, ndcg_delta = (
            paired_bootstrap_ci(
                a,
                b,
                confidence=settings.canary.confidence,
                n_resamples=settings.canary.bootstrap_samples,
                seed=settings.seed,
            )
            for a, b in ((mine.recall_per_user, theirs.recall_per_user), (mine.ndcg_per_user, theirs.ndcg_per_user))
        )
    ann = ann_recall(settings, challenger)
    checks = [
        regression_check(recall_delta, settings.canary.tolerance),
        popularity_check(mine.recall, pop.recall),
        health,
        coverage_check(mine, theirs, settings.canary.coverage_floor),
        ann_check(ann),
    ]
    if champion is not None and theirs is None:
        why = "the champion's embeddings are not finite: not compared"
        checks[0] = Check("no_regression", SKIP, why)
        checks[3] = Check("coverage", SKIP, why, checks[3].numbers)
    return Evidence(mine, theirs, pop, recall_delta, ndcg_delta, ann, tuple(checks))


def ann_recall(settings: Settings, model: ModelEmbeddings) -> AnnRecall:
    """Recall against exact search of the index publication would build for ``model``.

    The same factory (:func:`serving.index.choose_factory`), search parameters, cut-off
    and seeded query users (:func:`serving.index_check.check_queries`) as publication
    (:func:`serving.bundle_writer.check_bundle`).

    Returns:
        AnnRecall: ``recall`` is ``None`` and ``error`` says why when the index cannot
        be built.
    """
    n_items = len(model.item_ids)
    factory = choose_factory(
        n_items,
        settings.index.factory,
        ann_factory=settings.index.ann_factory,
        exact_max_items=settings.index.exact_max_items,
    )
    rows = check_queries(len(model.user_ids), settings.seed)
    k = min(settings.index.recall_k, n_items)
    try:
        index = build_index(model.item_emb, factory, settings.index.search_params)
        recall = round(recall_against_exact(index, model.item_emb, model.user_emb[rows], k), 6)
    except ValueError as exc:
        return AnnRecall(None, k, factory, len(rows), settings.index.recall_floor, error=str(exc))
    return AnnRecall(recall, k, factory, len(rows), settings.index.recall_floor)
