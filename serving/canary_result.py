"""What the canary gate reports: the typed result, the log line and the ``canary.*`` tags.

:func:`serving.canary.run_canary` returns a :class:`CanaryResult` (the DAG turns it into
plain data for XCom with :meth:`~graphrec.handoff.Handoff.to_xcom`, and the publish task
reads it back with :meth:`~graphrec.handoff.Handoff.from_xcom`), logs
:func:`summary_line` and writes the same decision as model-version tags built here
(:func:`gate_tags`, :func:`version_tags`, :func:`ranker_tags`): pure functions of what
the gate measured, so the tags, the log and the result always carry the same numbers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from graphrec.handoff import Handoff
from graphrec.settings import Settings
from serving.canary_bootstrap import DeltaInterval
from serving.canary_evidence import Evidence
from serving.canary_rules import AnnRecall, Check
from training.metrics import DEFAULT_K, RankingMetrics


@dataclasses.dataclass(frozen=True)
class ModelScores:
    """A model's numbers on the canary holdout, rounded to 6 decimals.

    Args:
        k: the cut-off (:data:`training.metrics.DEFAULT_K`, 20).
        recall: mean Recall@k over the evaluated users.
        ndcg: mean NDCG@k.
        coverage: catalog coverage@k (distinct recommended items over the items it knows).
        n_items_recommended: distinct items in the evaluated users' top ``k``.
    """

    k: int
    recall: float
    ndcg: float
    coverage: float
    n_items_recommended: int

    @classmethod
    def of(cls, metrics: RankingMetrics) -> ModelScores:
        return cls(
            metrics.k,
            round(metrics.recall, 6),
            round(metrics.ndcg, 6),
            round(metrics.coverage, 6),
            metrics.n_items_recommended,
        )

    def named(self) -> dict[str, float]:
        """``{recall_at_20, ndcg_at_20, coverage_at_20, n_items_recommended}``: the tags' names."""
        k = self.k
        return {
            f"recall_at_{k}": self.recall,
            f"ndcg_at_{k}": self.ndcg,
            f"coverage_at_{k}": self.coverage,
            "n_items_recommended": self.n_items_recommended,
        }


@dataclasses.dataclass(frozen=True)
class DeltaSummary:
    """A :class:`~serving.canary_bootstrap.DeltaInterval` as reported: rounded, ``None`` for NaN.

    Args:
        mean: the mean per-user delta (challenger - champion).
        ci_low: lower bound of the interval.
        ci_high: upper bound of the interval.
        confidence: the two-sided level.
        n_users: the paired users.
        n_resamples: bootstrap resamples (0 for a degenerate sample).
        method: ``"percentile"``, ``"point"`` or ``"empty"``.
    """

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    n_users: int
    n_resamples: int
    method: str

    @classmethod
    def of(cls, interval: DeltaInterval) -> DeltaSummary:
        return cls(**interval.as_dict())


@dataclasses.dataclass(frozen=True)
class PairedDeltas(Handoff):
    """The paired intervals of the challenger's per-user Recall@20 and NDCG@20 deltas."""

    recall: DeltaSummary
    ndcg: DeltaSummary


@dataclasses.dataclass(frozen=True)
class PairJudgement(Handoff):
    """The ranker half of the gate (:func:`serving.canary.judge_pair`).

    Args:
        passed: the challenger pair passed (:func:`serving.canary_rules.pair_failures`).
        failures: why not, as sentences.
        challenger: the challenger pair's evaluation (``ranker_ndcg_at_10``...).
        champion: the champion pair's, ``None`` without a champion retriever.
        ranker_version: the challenger ranker.
        champion_ranker_version: the ranker champion before the gate, ``None`` if none.
        k: the ranker's cut-off (``settings.ranker.k``).
        reused_evaluation: the training task's evaluation of the challenger pair was reused.
    """

    passed: bool
    failures: tuple[str, ...]
    challenger: dict[str, Any]
    champion: dict[str, Any] | None
    ranker_version: int
    champion_ranker_version: int | None
    k: int
    reused_evaluation: bool


@dataclasses.dataclass(frozen=True)
class CanaryResult(Handoff):
    """The gate's decision and the numbers behind it (:func:`serving.canary.run_canary`).

    Args:
        promoted: ``champion`` now names the challenger (``False`` in a dry run).
        forced: promoted by ``force`` although the gate failed.
        dry_run: nothing was moved.
        would_promote: what the gate decided (equals ``promoted`` outside a dry run).
        reason: the decision in a sentence, with notes.
        summary: the one-line record logged at INFO (:func:`summary_line`).
        ds: the last day of the holdout.
        challenger_version: the retriever version judged.
        champion_version_before: the retriever champion before the gate (``None``: none).
        champion_version_after: the retriever champion after it.
        challenger: its scores, ``None`` when its embeddings are not finite (not scored).
        champion: the champion's, ``None`` without a (finite) champion.
        popularity: the popularity baseline's.
        delta: the paired intervals, ``None`` without a compared champion.
        checks: every check by name (:data:`serving.canary_rules.CHECKS`).
        failed_checks: the names of the failed ones.
        ann: the challenger's index against exact search, ``None`` when not scored.
        tolerance: ``settings.canary.tolerance``.
        confidence: ``settings.canary.confidence``.
        coverage_floor: ``settings.canary.coverage_floor``.
        n_eval_users: the holdout users.
        ranker: the pair's judgement, ``None`` without a ranker.
        ranker_version: the ranker judged with the challenger.
        ranker_champion_after: the ranker champion after the gate (``None`` without a ranker).
    """

    promoted: bool
    forced: bool
    dry_run: bool
    would_promote: bool
    reason: str
    summary: str
    ds: dt.date
    challenger_version: int
    champion_version_before: int | None
    champion_version_after: int | None
    challenger: ModelScores | None
    champion: ModelScores | None
    popularity: ModelScores
    delta: PairedDeltas | None
    checks: dict[str, Check]
    failed_checks: tuple[str, ...]
    ann: AnnRecall | None
    tolerance: float
    confidence: float
    coverage_floor: float
    n_eval_users: int
    ranker: PairJudgement | None
    ranker_version: int | None
    ranker_champion_after: int | None

    def verdict(self) -> str:
        """The decision in one line for the Airflow grid's notes.

        E.g. ``promoted v9 (R@20 0.197 vs champion 0.190, ΔR@20 +0.0070 CI [+0.0021,
        +0.0114])`` or ``rejected v7: no_regression (R@20 0.181 vs champion 0.190, ΔR@20
        -0.0123 CI [-0.0201, -0.0046]); ranker pair: …``.
        """
        if self.dry_run:
            head = f"dry run: would {'promote' if self.would_promote else 'reject'} v{self.challenger_version}"
        elif self.promoted:
            head = f"{'forced: promoted' if self.forced else 'promoted'} v{self.challenger_version}"
        else:
            head = f"rejected v{self.challenger_version}"
        failed = ", ".join(self.failed_checks)
        if failed and not (self.promoted and not self.forced):
            head += f": {failed}"
        numbers = []
        if self.challenger is not None:
            k = self.challenger.k
            against = (
                f"champion {self.champion.recall:.3f}"
                if self.champion is not None
                else f"popularity {self.popularity.recall:.3f}"
            )
            numbers.append(f"R@{k} {self.challenger.recall:.3f} vs {against}")
            recall = self.delta.recall if self.delta is not None else None
            if recall is not None and recall.mean is not None:
                interval = ""
                if recall.ci_low is not None and recall.ci_high is not None:
                    interval = f" CI [{recall.ci_low:+.4f}, {recall.ci_high:+.4f}]"
                numbers.append(f"ΔR@{k} {recall.mean:+.4f}{interval}")
        line = head + (f" ({', '.join(numbers)})" if numbers else "")
        if self.ranker is not None and not self.ranker.passed:
            line += f"; ranker pair rejected: {'; '.join(self.ranker.failures)}"
        return line


def summary_line(
    ds: dt.date, label: str, challenger_version: int, champion_version: int | None, evidence: Evidence, tolerance: float
) -> str:
    """The one-line record of a decision for the task log.

    E.g. ``canary 2026-01-08: rejected v7 vs champion v6: ΔRecall@20 -0.0123 [95% CI
    -0.0201, -0.0046] over 412 users, allowed -0.005; Recall@20 0.0812 vs popularity
    0.0450; coverage@20 0.612 vs 0.640; ANN recall@100 1.0000; failed: no_regression``.
    """
    versus = "no champion" if champion_version is None else f"champion v{champion_version}"
    parts = []
    if evidence.recall_delta is not None:
        parts.append(f"{evidence.recall_delta.describe()}, allowed {-tolerance:+.4f}")
    if (mine := evidence.challenger) is not None:
        parts.append(f"Recall@{mine.k} {mine.recall:.4f} vs popularity {evidence.popularity.recall:.4f}")
        theirs = "" if evidence.champion is None else f" vs {evidence.champion.coverage:.3f}"
        parts.append(f"coverage@{mine.k} {mine.coverage:.3f}{theirs}")
    if evidence.ann is not None and evidence.ann.recall is not None:
        parts.append(f"ANN recall@{evidence.ann.k} {evidence.ann.recall:.4f}")
    failed = [c.name for c in evidence.checks if c.failed]
    parts.append(f"failed: {', '.join(failed)}" if failed else "all checks passed")
    return f"canary {ds.isoformat()}: {label} v{challenger_version} vs {versus}: " + "; ".join(parts)


# --- Tags ----------------------------------------------------------------------------------


def gate_tags(
    evidence: Evidence,
    settings: Settings,
    *,
    ds: dt.date,
    reason: str,
    challenger_version: int,
    champion_version: int | None,
) -> dict[str, Any]:
    """The ``canary.*`` tags written on both retriever versions (challenger and champion).

    ``canary.ds``, ``canary.reason``, the two versions, popularity's scores
    (``canary.popularity_*``) and the decision's numbers: the deltas with their interval
    (``canary.delta_recall_at_20``, ``_ci_low``, ``_ci_high``; likewise NDCG), confidence,
    tolerance, users, both coverages, the index check and each check's status
    (``canary.check.<name>``).
    """
    k = DEFAULT_K
    tags: dict[str, Any] = {
        "canary.ds": ds.isoformat(),
        "canary.reason": reason,
        "canary.challenger_version": challenger_version,
        "canary.champion_version": "none" if champion_version is None else champion_version,
        **{f"canary.popularity_{name}": value for name, value in ModelScores.of(evidence.popularity).named().items()},
        "canary.confidence": settings.canary.confidence,
        "canary.tolerance": settings.canary.tolerance,
        "canary.n_users": evidence.popularity.n_users,
        **{f"canary.check.{c.name}": c.status for c in evidence.checks},
    }
    for metric, interval in ((f"recall_at_{k}", evidence.recall_delta), (f"ndcg_at_{k}", evidence.ndcg_delta)):
        if interval is not None:
            numbers = interval.as_dict()
            tags |= {
                f"canary.delta_{metric}": numbers["mean"],
                f"canary.delta_{metric}_ci_low": numbers["ci_low"],
                f"canary.delta_{metric}_ci_high": numbers["ci_high"],
            }
    for role, metrics in (("challenger", evidence.challenger), ("champion", evidence.champion)):
        if metrics is not None:
            tags[f"canary.{role}_coverage_at_{k}"] = round(metrics.coverage, 6)
    if evidence.ann is not None:
        tags |= {
            "canary.ann_recall": evidence.ann.recall,
            "canary.ann_k": evidence.ann.k,
            "canary.ann_factory": evidence.ann.factory,
        }
    return tags


def version_tags(common: dict[str, Any], role: str, decision: str, scores: ModelScores | None) -> dict[str, Any]:
    """One retriever version's tags: :func:`gate_tags`, its role and decision, its own scores."""
    own = {} if scores is None else {f"canary.{name}": value for name, value in scores.named().items()}
    return {**common, "canary.role": role, "canary.decision": decision, **own}


def ranker_tags(
    pair: PairJudgement, label: str, promoted: bool, reason: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Tags of the challenger ranker, and of the champion ranker it faced (``None``: no such tags).

    The champion ranker is tagged only when there is one, it is another version and the
    champion pair was evaluated.
    """
    mine = {
        "canary.decision": label,
        "canary.role": "challenger",
        "canary.reason": reason,
        **{f"canary.{name}": value for name, value in pair.challenger.items()},
    }
    before = pair.champion_ranker_version
    if before is None or before == pair.ranker_version or pair.champion is None:
        return mine, None
    theirs = {
        "canary.decision": "replaced" if promoted else "retained",
        "canary.role": "champion",
        "canary.reason": reason,
        **{f"canary.{name}": value for name, value in pair.champion.items()},
    }
    return mine, theirs
