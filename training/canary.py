"""The canary gate: should the challenger replace the serving champion?

Both registered models and the popularity baseline are scored by the same code
(:func:`training.metrics.evaluate_embeddings`) on the same fresh holdout: the last
``settings.holdout_days`` curated days ending at ``ds``, masking each user's items from
the earlier days of the ``settings.window_days`` window. Models are compared through
external ids, so a champion trained on an older window (fewer users and items) is
scored fairly: users it does not know score zero and items it does not know can
never be its hits (see the metrics module for the full protocol).

The challenger is promoted (alias ``champion`` moves to it) when

* there is no champion, or its Recall@20 >= champion Recall@20 - ``settings.canary_tolerance``,
* and its Recall@20 beats popularity's.

``force=True`` promotes regardless and says so. Every decision is recorded as tags on
both model versions and returned as a small JSON-able dict for XCom.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from graphrec.settings import Settings
from training import registry
from training.data import InsufficientDataError, holdout_start, load_window, temporal_split
from training.embeddings import ModelEmbeddings
from training.metrics import DEFAULT_K, RankingTask, build_ranking_task, evaluate_embeddings, popularity_model


@dataclasses.dataclass(frozen=True)
class GateDecision:
    """The outcome of :func:`decide`.

    Args:
        promote: whether ``champion`` should point at the challenger.
        passed: whether the gate itself passed (``False`` when only ``force`` promotes).
        reason: a sentence for people reading the DAG run or the registry.
    """

    promote: bool
    passed: bool
    reason: str


def decide(
    challenger_recall: float,
    champion_recall: float | None,
    popularity_recall: float,
    tolerance: float,
    *,
    force: bool = False,
) -> GateDecision:
    """The canary rule on Recall@20 (pure; see the module docstring).

    Args:
        challenger_recall: the challenger's Recall@20 on the holdout.
        champion_recall: the champion's, or ``None`` when there is no champion.
        popularity_recall: the popularity baseline's.
        tolerance: how far the challenger may trail the champion.
        force: promote even when the gate fails.
    """
    failures = []
    if champion_recall is not None and challenger_recall < champion_recall - tolerance:
        failures.append(
            f"Recall@20 {challenger_recall:.4f} trails the champion's {champion_recall:.4f} by more than {tolerance}"
        )
    if not challenger_recall > popularity_recall:
        failures.append(f"Recall@20 {challenger_recall:.4f} does not beat popularity's {popularity_recall:.4f}")
    if not failures:
        versus = "no champion yet" if champion_recall is None else f"champion {champion_recall:.4f}"
        return GateDecision(
            True, True,
            f"passed: Recall@20 {challenger_recall:.4f} vs {versus}, popularity {popularity_recall:.4f}",
        )
    if force:
        return GateDecision(True, False, "forced promotion although the gate failed: " + "; ".join(failures))
    return GateDecision(False, False, "rejected: " + "; ".join(failures))


def holdout_task(settings: Settings, ds: dt.date) -> tuple[RankingTask, ModelEmbeddings]:
    """The canary's ground truth and the popularity baseline for the day ``ds``.

    Raises:
        InsufficientDataError: no user with history and new holdout items.
    """
    window = load_window(settings, ds, settings.window_days)
    history, holdout = temporal_split(window.interactions, settings.holdout_days, end=window.end)
    task = build_ranking_task(history, holdout)
    if task.n_users == 0:
        raise InsufficientDataError(
            f"no canary holdout users for {ds}: the holdout has {len(holdout)} events, "
            f"the history {len(history)}"
        )
    return task, popularity_model(history)


def _scores(model: ModelEmbeddings, task: RankingTask) -> dict[str, float]:
    metrics = evaluate_embeddings(model, task, DEFAULT_K)
    return {f"recall_at_{DEFAULT_K}": round(metrics.recall, 6), f"ndcg_at_{DEFAULT_K}": round(metrics.ndcg, 6)}


def _saw_holdout(model: ModelEmbeddings, first_holdout_day: dt.date) -> bool:
    """Whether a model's training data reaches into the holdout (its score is inflated)."""
    until = model.meta.get("train_until")
    return until is not None and dt.date.fromisoformat(until) >= first_holdout_day


def run_canary(
    settings: Settings,
    ds: dt.date,
    challenger_version: int,
    *,
    force: bool = False,
    ranker_version: int | None = None,
) -> dict[str, Any]:
    """Score challenger, champion and popularity on the fresh holdout; maybe promote.

    Args:
        settings: the installation's settings (``canary_tolerance``, windows, MLflow).
        ds: the last day of the holdout.
        challenger_version: the registered version to judge.
        force: promote even when the gate fails (the result and tags say so).

    Returns:
        ``{promoted, forced, reason, ds, challenger_version, champion_version_before,
        champion_version_after, challenger: {recall_at_20, ndcg_at_20}, champion: {...} |
        None, popularity: {...}, tolerance, n_eval_users}``.

    The decision is also written as model-version tags, on the challenger and (when it
    is a different version) the champion before the gate: ``canary.decision``
    (challenger: ``promoted`` / ``rejected`` / ``forced``; champion: ``retained`` /
    ``replaced``), ``canary.role``, ``canary.ds``, ``canary.reason``,
    ``canary.challenger_version``, ``canary.champion_version``, that version's own
    ``canary.recall_at_20`` / ``canary.ndcg_at_20`` and popularity's
    ``canary.popularity_recall_at_20`` / ``canary.popularity_ndcg_at_20``. A later
    canary overwrites them, so they describe each version's latest judgement.
    """
    task, popularity = holdout_task(settings, ds)
    first_holdout_day = holdout_start(ds, settings.holdout_days).date()
    champion_before = registry.get_alias_version(settings, registry.CHAMPION)

    challenger = registry.load_model_embeddings(settings, challenger_version)
    challenger_scores = _scores(challenger, task)
    popularity_scores = _scores(popularity, task)
    champion_scores = None
    notes = []
    if _saw_holdout(challenger, first_holdout_day):
        notes.append(f"note: challenger v{challenger_version} was trained on data from the holdout days")
    if champion_before is not None:
        champion = registry.load_model_embeddings(settings, champion_before)
        champion_scores = _scores(champion, task)
        if _saw_holdout(champion, first_holdout_day):
            notes.append(f"note: champion v{champion_before} was trained on data from the holdout days")

    recall_key = f"recall_at_{DEFAULT_K}"
    if champion_before == challenger_version:
        decision = GateDecision(True, True, f"v{challenger_version} is already the champion")
    else:
        decision = decide(
            challenger_scores[recall_key],
            None if champion_scores is None else champion_scores[recall_key],
            popularity_scores[recall_key],
            settings.canary_tolerance,
            force=force,
        )
    pair = None
    if ranker_version is not None:
        pair = judge_pair(settings, ds, challenger, ranker_version, champion_before)
        if not pair["passed"]:
            failed = "; ".join(pair["failures"])
            decision = (
                GateDecision(True, False, f"{decision.reason}; forced although the pair failed: {failed}")
                if force else GateDecision(False, False, f"{decision.reason}; rejected as a pair: {failed}")
            )
    if decision.promote and champion_before != challenger_version:
        registry.set_alias(settings, registry.CHAMPION, challenger_version)
    if pair is not None and decision.promote:
        registry.set_alias(settings, registry.CHAMPION, ranker_version, model=settings.ranker_model_name)
    champion_after = registry.get_alias_version(settings, registry.CHAMPION)
    reason = "; ".join([decision.reason, *notes])
    label = "promoted" if decision.passed and decision.promote else "forced" if decision.promote else "rejected"

    common = {
        "canary.ds": ds.isoformat(),
        "canary.reason": reason,
        "canary.challenger_version": challenger_version,
        "canary.champion_version": "none" if champion_before is None else champion_before,
        **{f"canary.popularity_{name}": value for name, value in popularity_scores.items()},
    }
    registry.set_version_tags(
        settings,
        challenger_version,
        {**common, "canary.role": "challenger", "canary.decision": label,
         **{f"canary.{name}": value for name, value in challenger_scores.items()}},
    )
    if champion_before is not None and champion_scores is not None and champion_before != challenger_version:
        registry.set_version_tags(
            settings,
            champion_before,
            {**common, "canary.role": "champion", "canary.decision": "replaced" if decision.promote else "retained",
             **{f"canary.{name}": value for name, value in champion_scores.items()}},
        )
    if pair is not None:
        _tag_rankers(settings, pair, label, decision.promote, reason)
    return {
        "ranker": pair,
        "ranker_version": ranker_version,
        "ranker_champion_after": registry.get_alias_version(
            settings, registry.CHAMPION, model=settings.ranker_model_name) if pair is not None else None,
        "promoted": decision.promote,
        "forced": decision.promote and not decision.passed,
        "reason": reason,
        "ds": ds.isoformat(),
        "challenger_version": challenger_version,
        "champion_version_before": champion_before,
        "champion_version_after": champion_after,
        "challenger": challenger_scores,
        "champion": champion_scores,
        "popularity": popularity_scores,
        "tolerance": settings.canary_tolerance,
        "n_eval_users": task.n_users,
    }


def judge_pair(
    settings: Settings,
    ds: dt.date,
    challenger: ModelEmbeddings,
    ranker_version: int,
    champion_retriever: int | None,
) -> dict[str, Any]:
    """The ranker half of the gate: the challenger *pair* against the champion pair.

    Both pairs re-rank their own retriever's candidates on the canary's holdout
    (:func:`training.ranker.evaluate_pair`, features as of the holdout's start). The pair
    passes when its NDCG@k is not below the champion pair's by more than
    ``settings.ranker_canary_tolerance`` (the champion pair is its retriever alone when no
    ranker has been promoted yet) and the ranker does not make its own retriever worse.

    Returns:
        ``{passed, failures, challenger: metrics, champion: metrics | None,
        champion_ranker_version, ranker_version, k}`` (JSON-able).
    """
    from training import ranker as ranking

    window = load_window(settings, ds, settings.window_days)
    history, holdout = temporal_split(window.interactions, settings.holdout_days, end=window.end)
    task = build_ranking_task(history, holdout)
    at = holdout_start(ds, settings.holdout_days)
    k = settings.ranker_k
    key = f"ranker_ndcg_at_{k}"
    model, vocab, meta, _ = ranking.load_ranker(settings, ranker_version)
    mine = ranking.evaluate_pair(settings, task, history, at, challenger, (model, vocab, meta))
    champion_ranker = registry.get_alias_version(settings, registry.CHAMPION, model=settings.ranker_model_name)
    theirs = None
    if champion_retriever is not None:
        retriever = registry.load_model_embeddings(settings, champion_retriever)
        if champion_ranker is not None:
            loaded = ranking.load_ranker(settings, champion_ranker)
            theirs = ranking.evaluate_pair(settings, task, history, at, retriever, loaded[:3])
        else:
            theirs = ranking.evaluate_pair(settings, task, history, at, retriever, None)
    failures = []
    tolerance = settings.ranker_canary_tolerance
    own_retrieval = mine[f"retrieval_ndcg_at_{k}"]
    if mine[key] < own_retrieval - tolerance:
        failures.append(f"the ranker lowers its retriever's NDCG@{k} from {own_retrieval:.4f} to {mine[key]:.4f}")
    if theirs is not None:
        best = theirs.get(key, theirs[f"retrieval_ndcg_at_{k}"])
        if mine[key] < best - tolerance:
            failures.append(f"pair NDCG@{k} {mine[key]:.4f} trails the champion pair's {best:.4f} by more than {tolerance}")
    return {"passed": not failures, "failures": failures, "challenger": mine, "champion": theirs,
            "ranker_version": ranker_version, "champion_ranker_version": champion_ranker, "k": k}


def _tag_rankers(settings: Settings, pair: dict[str, Any], label: str, promoted: bool, reason: str) -> None:
    """The decision as tags on the challenger ranker and on the champion ranker it faced."""
    model = settings.ranker_model_name
    numbers = {f"canary.{name}": value for name, value in pair["challenger"].items()}
    registry.set_version_tags(settings, pair["ranker_version"],
                              {"canary.decision": label, "canary.role": "challenger", "canary.reason": reason, **numbers},
                              model=model)
    before = pair["champion_ranker_version"]
    if before is not None and before != pair["ranker_version"] and pair["champion"] is not None:
        registry.set_version_tags(
            settings, before,
            {"canary.decision": "replaced" if promoted else "retained", "canary.role": "champion", "canary.reason": reason,
             **{f"canary.{name}": value for name, value in pair["champion"].items()}},
            model=model,
        )
