"""The canary gate: should the challenger replace the serving champion?

:func:`run_canary` loads the challenger, the serving champion and (when one is given)
the challenger's BST ranker from the MLflow registry, has them measured on the same
fresh holdout (:mod:`serving.canary_evidence`), applies the gate's rules
(:mod:`serving.canary_rules`: the paired bootstrap of per-user Recall@20 deltas, the
popularity floor, healthy embeddings, coverage, the index's recall and, for a ranker,
the pair's NDCG) and then acts on the decision: it moves the ``champion`` aliases of the
retriever (and the ranker) when the challenger passes, writes the decision as
``canary.*`` tags on every version involved (:mod:`serving.canary_result`), logs one INFO
line and returns a :class:`~serving.canary_result.CanaryResult`.

``force=True`` promotes although checks failed and says which ones, except when the
challenger's embeddings are not finite (they can be neither indexed nor served);
``dry_run=True`` judges and reports but moves nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from graphrec.settings import Settings
from serving.canary_evidence import Holdout, gather_evidence, prepare_holdout, saw_holdout
from serving.canary_result import (
    CanaryResult,
    DeltaSummary,
    ModelScores,
    PairedDeltas,
    PairJudgement,
    gate_tags,
    ranker_tags,
    summary_line,
    version_tags,
)
from serving.canary_rules import GateDecision, decide, finite, label, pair_failures, with_pair
from training import ranker_eval, registry
from training.data import holdout_start
from training.embeddings import ModelEmbeddings
from training.ranker import load_ranker
from training.results import RankerResult

log = logging.getLogger(__name__)


def run_canary(
    settings: Settings,
    ds: dt.date,
    challenger_version: int,
    *,
    force: bool = False,
    ranker_version: int | None = None,
    ranker_result: RankerResult | None = None,
    dry_run: bool = False,
) -> CanaryResult:
    """Score challenger, champion and popularity on the fresh holdout; maybe promote.

    Args:
        settings: the installation's settings (``canary_*``, ``index_*``, windows, MLflow).
        ds: the last day of the holdout.
        challenger_version: the registered version to judge.
        force: promote even when the gate fails (the result and tags say so), unless
            the challenger's embeddings are not finite.
        ranker_version: a ranker to judge as a pair with the challenger (:func:`judge_pair`).
        ranker_result: what the training task returned for that ranker
            (:func:`training.ranker.train_ranker`); its evaluation of the challenger pair is
            reused when it was made on this very holdout (same data fingerprint, window,
            candidates and cut-off), instead of being computed a second time.
        dry_run: judge and report, but move no alias and tag only the challenger
            (``canary.decision`` ``dry-run: <label>``); ``promoted`` is then False and
            ``would_promote`` says what the gate decided.

    Returns:
        CanaryResult: the decision, the scores, intervals and checks behind it, and the
        champion versions before and after.

    The decision is also written as model-version tags, on the challenger and (when it
    is a different version) the champion before the gate: ``canary.decision``
    (challenger: ``promoted`` / ``rejected`` / ``forced``; champion: ``retained`` /
    ``replaced``), ``canary.role``, that version's own ``canary.recall_at_20`` /
    ``canary.ndcg_at_20`` / ``canary.coverage_at_20`` and the decision's numbers
    (:func:`serving.canary_result.gate_tags`); with a ranker, the challenger ranker and
    the champion ranker it faced get ``canary.decision``, ``canary.role``,
    ``canary.reason`` and their pair's evaluation. A later canary overwrites them, so
    they describe each version's latest judgement. The
    :func:`~serving.canary_result.summary_line` is logged at INFO.
    """
    started = time.perf_counter()
    log.info("canary %s: preparing the holdout (the %d day(s) ending %s)", ds, settings.training.holdout_days, ds)
    holdout = prepare_holdout(settings, ds)
    first_holdout_day = holdout_start(ds, settings.training.holdout_days).date()
    champion_before = registry.get_alias_version(settings, registry.CHAMPION)
    log.info(
        "canary %s: scoring challenger v%s, %s and popularity on %d holdout users; then the paired bootstrap "
        "(%.1f s so far)",
        ds,
        challenger_version,
        "no champion" if champion_before is None else f"champion v{champion_before}",
        len(holdout.task.user_ids),
        time.perf_counter() - started,
    )

    challenger = registry.load_model_embeddings(settings, challenger_version)
    champion = None if champion_before is None else registry.load_model_embeddings(settings, champion_before)
    notes = []
    if saw_holdout(challenger, first_holdout_day):
        notes.append(f"note: challenger v{challenger_version} was trained on data from the holdout days")
    if champion is not None and saw_holdout(champion, first_holdout_day):
        notes.append(f"note: champion v{champion_before} was trained on data from the holdout days")
    if champion is not None and not finite(champion):
        notes.append(f"note: champion v{champion_before} has non-finite embeddings and was not compared")
    evidence = gather_evidence(settings, holdout.task, challenger, champion, holdout.popularity)

    if champion_before == challenger_version:
        decision = GateDecision(True, True, f"v{challenger_version} is already the champion")
    else:
        decision = decide(evidence.checks, force=force)
    pair = None
    if ranker_version is not None:
        log.info(
            "canary %s: retrieval judged (%s); judging ranker v%s with it as a pair (%.1f s so far)",
            ds,
            decision.reason,
            ranker_version,
            time.perf_counter() - started,
        )
        pair = judge_pair(
            settings, holdout, challenger, ranker_version, champion_before, champion, handed_over=ranker_result
        )
        decision = with_pair(decision, pair.failures, force=force)
    would_promote = decision.promote
    if dry_run:
        notes.append("dry run: no alias moved")
        decision = GateDecision(False, decision.passed, decision.reason)
    if decision.promote and champion_before != challenger_version:
        registry.set_alias(settings, registry.CHAMPION, challenger_version)
    if pair is not None and decision.promote:
        registry.set_alias(settings, registry.CHAMPION, ranker_version, model=settings.mlflow.ranker_model_name)
    champion_after = registry.get_alias_version(settings, registry.CHAMPION)
    reason = "; ".join([decision.reason, *notes])
    outcome = label(decision)
    if dry_run:
        outcome = "dry-run: " + label(GateDecision(would_promote, decision.passed, decision.reason))
    summary = summary_line(ds, outcome, challenger_version, champion_before, evidence, settings.canary.tolerance)
    if pair is not None:
        summary += "; ranker pair: " + ("passed" if pair.passed else "rejected: " + "; ".join(pair.failures))
    log.info("%s (%.1f s)", summary, time.perf_counter() - started)

    challenger_scores = None if evidence.challenger is None else ModelScores.of(evidence.challenger)
    champion_scores = None if evidence.champion is None else ModelScores.of(evidence.champion)
    common = gate_tags(
        evidence,
        settings,
        ds=ds,
        reason=reason,
        challenger_version=challenger_version,
        champion_version=champion_before,
    )
    registry.set_version_tags(
        settings, challenger_version, version_tags(common, "challenger", outcome, challenger_scores)
    )
    if champion_before is not None and champion_before != challenger_version and not dry_run:
        fate = "replaced" if decision.promote else "retained"
        registry.set_version_tags(settings, champion_before, version_tags(common, "champion", fate, champion_scores))
    if pair is not None and not dry_run:
        _tag_rankers(settings, pair, outcome, decision.promote, reason)
    return CanaryResult(
        promoted=decision.promote,
        forced=decision.promote and not decision.passed,
        dry_run=dry_run,
        would_promote=would_promote,
        reason=reason,
        summary=summary,
        ds=ds,
        challenger_version=challenger_version,
        champion_version_before=champion_before,
        champion_version_after=champion_after,
        challenger=challenger_scores,
        champion=champion_scores,
        popularity=ModelScores.of(evidence.popularity),
        delta=None
        if evidence.recall_delta is None or evidence.ndcg_delta is None
        else PairedDeltas(DeltaSummary.of(evidence.recall_delta), DeltaSummary.of(evidence.ndcg_delta)),
        checks={c.name: c for c in evidence.checks},
        failed_checks=tuple(c.name for c in evidence.checks if c.failed),
        ann=evidence.ann,
        tolerance=settings.canary.tolerance,
        confidence=settings.canary.confidence,
        coverage_floor=settings.canary.coverage_floor,
        n_eval_users=holdout.task.n_users,
        ranker=pair,
        ranker_version=ranker_version,
        ranker_champion_after=registry.get_alias_version(
            settings, registry.CHAMPION, model=settings.mlflow.ranker_model_name
        )
        if pair is not None
        else None,
    )


def judge_pair(
    settings: Settings,
    holdout: Holdout,
    challenger: ModelEmbeddings,
    ranker_version: int,
    champion_version: int | None,
    champion: ModelEmbeddings | None,
    *,
    handed_over: RankerResult | None = None,
) -> PairJudgement:
    """The ranker half of the gate: the challenger *pair* against the champion pair.

    Both pairs re-rank their own retriever's candidates on the canary's holdout
    (:func:`training.ranker_eval.evaluate_pairs`, features as of the holdout's start, one
    feature join for both). The pair passes when its NDCG@k is not below the champion
    pair's by more than ``settings.canary.ranker_tolerance`` (the champion pair is its
    retriever alone when no ranker has been promoted yet) and the ranker does not make
    its own retriever worse (:func:`serving.canary_rules.pair_failures`).

    Args:
        holdout: the canary's prepared holdout.
        challenger: the challenger retriever's embeddings.
        ranker_version: the challenger ranker.
        champion_version, champion: the champion retriever (``None``: no champion).
        handed_over: the training task's result for ``ranker_version``; its evaluation
            is used for the challenger pair when it was made on this holdout
            (:func:`training.ranker_eval.evaluation_key`).
    """
    k = settings.ranker.k
    expected = ranker_eval.evaluation_key(settings, holdout.fingerprint, holdout.window_days)
    mine = _handed_evaluation(handed_over, ranker_version, expected)
    pairs: list[tuple[ModelEmbeddings, Any]] = []
    if mine is None:
        model, vocab, meta, _ = load_ranker(settings, ranker_version)
        pairs.append((challenger, (model, vocab, meta)))
    champion_ranker = registry.get_alias_version(settings, registry.CHAMPION, model=settings.mlflow.ranker_model_name)
    if champion_version is not None and champion is not None:
        loaded = load_ranker(settings, champion_ranker)[:3] if champion_ranker is not None else None
        pairs.append((champion, loaded))
    scored = ranker_eval.evaluate_pairs(settings, holdout.task, holdout.history, holdout.at, pairs) if pairs else []
    reused = mine is not None
    if mine is None:
        mine = scored.pop(0)
    theirs = scored[0] if scored else None
    failures = pair_failures(mine, theirs, k, settings.canary.ranker_tolerance)
    return PairJudgement(
        passed=not failures,
        failures=tuple(failures),
        challenger=mine,
        champion=theirs,
        ranker_version=ranker_version,
        champion_ranker_version=champion_ranker,
        k=k,
        reused_evaluation=reused,
    )


def _handed_evaluation(
    handed_over: RankerResult | None, ranker_version: int, expected: dict[str, Any]
) -> dict[str, Any] | None:
    """The training task's evaluation of the challenger pair, when made for this ranker on this holdout."""
    if (
        handed_over is not None
        and handed_over.model_version == ranker_version
        and handed_over.evaluation_key == expected
    ):
        return dict(sorted(handed_over.evaluation.items()))
    return None


def _tag_rankers(settings: Settings, pair: PairJudgement, outcome: str, promoted: bool, reason: str) -> None:
    """The decision as tags on the challenger ranker and on the champion ranker it faced."""
    model = settings.mlflow.ranker_model_name
    mine, theirs = ranker_tags(pair, outcome, promoted, reason)
    registry.set_version_tags(settings, pair.ranker_version, mine, model=model)
    if theirs is not None:
        registry.set_version_tags(settings, pair.champion_ranker_version, theirs, model=model)
