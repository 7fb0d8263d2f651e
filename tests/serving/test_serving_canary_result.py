"""The gate's report: the typed result crosses XCom unchanged, and the tags carry the result's numbers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest

from graphrec.settings import Settings
from serving.canary_bootstrap import paired_bootstrap_ci
from serving.canary_evidence import Evidence
from serving.canary_result import (
    CanaryResult,
    DeltaSummary,
    ModelScores,
    PairedDeltas,
    PairJudgement,
    gate_tags,
    ranker_tags,
    version_tags,
)
from serving.canary_rules import SKIP, AnnRecall, Check, regression_check
from training.metrics import RankingMetrics

DS = dt.date(2025, 1, 4)


def _metrics(recall: float, coverage: float, seed: int) -> RankingMetrics:
    per_user = np.random.default_rng(seed).uniform(0, 1, 40)
    return RankingMetrics(20, recall, recall / 2, 40, 40, per_user, per_user / 2, 30, coverage)


def _evidence(*, champion: bool = True) -> Evidence:
    mine, theirs, pop = _metrics(0.31234567, 0.6, 0), _metrics(0.3, 0.64, 1), _metrics(0.2, 0.05, 2)
    recall = ndcg = None
    if champion:
        recall = paired_bootstrap_ci(mine.recall_per_user, theirs.recall_per_user, n_resamples=100)
        ndcg = paired_bootstrap_ci(mine.ndcg_per_user, theirs.ndcg_per_user, n_resamples=100)
    ann = AnnRecall(recall=0.97, k=100, factory="HNSW32", n_queries=256, floor=0.95)
    checks = (
        regression_check(recall, 0.01) if champion else Check("no_regression", SKIP, "no champion"),
        Check("beats_popularity", "pass", "better", {"challenger": 0.312346, "popularity": 0.2}),
        Check("embeddings", "pass", "fine", {"finite": True, "user_top_sv_share": 0.1}),
        Check("coverage", "pass", "enough", {"challenger": 0.6}),
        Check("ann_recall", "pass", "exact enough", ann.as_dict()),
    )
    return Evidence(mine, theirs if champion else None, pop, recall, ndcg, ann, checks)


def _result(evidence: Evidence, ranker: PairJudgement | None = None) -> CanaryResult:
    delta = None
    if evidence.recall_delta is not None:
        delta = PairedDeltas(DeltaSummary.of(evidence.recall_delta), DeltaSummary.of(evidence.ndcg_delta))
    return CanaryResult(
        promoted=True,
        forced=False,
        dry_run=False,
        would_promote=True,
        reason="passed: ...",
        summary="canary 2025-01-04: promoted v3 vs champion v2: ...",
        ds=DS,
        challenger_version=3,
        champion_version_before=2,
        champion_version_after=3,
        challenger=ModelScores.of(evidence.challenger),
        champion=None if evidence.champion is None else ModelScores.of(evidence.champion),
        popularity=ModelScores.of(evidence.popularity),
        delta=delta,
        checks={c.name: c for c in evidence.checks},
        failed_checks=(),
        ann=evidence.ann,
        tolerance=0.01,
        confidence=0.95,
        coverage_floor=0.3,
        n_eval_users=40,
        ranker=ranker,
        ranker_version=None if ranker is None else ranker.ranker_version,
        ranker_champion_after=None if ranker is None else ranker.ranker_version,
    )


PAIR = PairJudgement(
    passed=False,
    failures=("pair NDCG@10 0.1000 trails the champion pair's 0.2000 by more than 0.005",),
    challenger={"ranker_ndcg_at_10": 0.1, "retrieval_ndcg_at_10": 0.09, "ranker_auc": None},
    champion={"ranker_ndcg_at_10": 0.2, "retrieval_ndcg_at_10": 0.15},
    ranker_version=5,
    champion_ranker_version=4,
    k=10,
    reused_evaluation=True,
)


@pytest.mark.parametrize("champion", [True, False])
@pytest.mark.parametrize("ranker", [None, PAIR])
def test_the_result_crosses_xcom_as_plain_json_and_comes_back_equal(champion, ranker):
    result = _result(_evidence(champion=champion), ranker)
    xcom = result.to_xcom()
    assert json.loads(json.dumps(xcom)) == xcom
    assert xcom["ds"] == "2025-01-04" and xcom["promoted"] is True and xcom["challenger_version"] == 3
    assert (xcom["delta"] is None) == (not champion)
    assert CanaryResult.from_xcom(json.loads(json.dumps(xcom))) == result


def test_scores_are_rounded_and_named_like_the_tags():
    scores = ModelScores.of(_metrics(0.31234567, 0.6, 0))
    assert scores.recall == 0.312346 and scores.k == 20
    assert scores.named() == {
        "recall_at_20": 0.312346,
        "ndcg_at_20": 0.156173,
        "coverage_at_20": 0.6,
        "n_items_recommended": 30,
    }


def test_gate_tags_carry_the_numbers_of_the_result(tmp_path):
    evidence = _evidence()
    result = _result(evidence)
    settings = Settings(home=tmp_path, canary={"tolerance": 0.01})
    common = gate_tags(evidence, settings, ds=DS, reason=result.reason, challenger_version=3, champion_version=2)
    assert common["canary.ds"] == "2025-01-04" and common["canary.champion_version"] == 2
    assert common["canary.delta_recall_at_20"] == result.delta.recall.mean
    assert common["canary.delta_recall_at_20_ci_low"] == result.delta.recall.ci_low
    assert common["canary.delta_ndcg_at_20_ci_high"] == result.delta.ndcg.ci_high
    assert common["canary.popularity_recall_at_20"] == result.popularity.recall
    assert common["canary.challenger_coverage_at_20"] == result.challenger.coverage
    assert common["canary.ann_recall"] == result.ann.recall and common["canary.ann_factory"] == "HNSW32"
    assert {name: common[f"canary.check.{name}"] for name in result.checks} == {
        name: c.status for name, c in result.checks.items()
    }
    mine = version_tags(common, "challenger", "promoted", result.challenger)
    assert mine["canary.role"] == "challenger" and mine["canary.recall_at_20"] == result.challenger.recall
    assert version_tags(common, "champion", "retained", None)["canary.decision"] == "retained"
    no_champion = gate_tags(
        _evidence(champion=False), settings, ds=DS, reason="r", challenger_version=3, champion_version=None
    )
    assert no_champion["canary.champion_version"] == "none" and "canary.delta_recall_at_20" not in no_champion


def test_ranker_tags_skip_a_champion_that_was_not_evaluated():
    mine, theirs = ranker_tags(PAIR, "rejected", False, "why")
    assert mine["canary.decision"] == "rejected" and mine["canary.ranker_ndcg_at_10"] == 0.1
    assert theirs["canary.decision"] == "retained" and theirs["canary.ranker_ndcg_at_10"] == 0.2
    assert ranker_tags(dataclasses.replace(PAIR, champion=None), "rejected", False, "why")[1] is None
    assert ranker_tags(dataclasses.replace(PAIR, champion_ranker_version=5), "promoted", True, "why")[1] is None


def test_the_verdict_fits_one_line_with_the_numbers_that_decided():
    promoted = _result(_evidence())
    line = promoted.verdict()
    assert line.startswith("promoted v3 (R@20 0.312 vs champion 0.300, ΔR@20 ")
    assert " CI [" in line and "\n" not in line

    rejected = dataclasses.replace(promoted, promoted=False, would_promote=False, failed_checks=("no_regression",))
    assert rejected.verdict().startswith("rejected v3: no_regression (R@20 0.312 vs champion 0.300")

    # The ranker pair's rejection is part of the verdict, not left out.
    paired = dataclasses.replace(_result(_evidence(), PAIR), promoted=False, would_promote=False)
    assert "ranker pair rejected: pair NDCG@10 0.1000 trails" in paired.verdict()

    first = _result(_evidence(champion=False))
    assert first.verdict().startswith("promoted v3 (R@20 0.312 vs popularity 0.200")
    dry = dataclasses.replace(first, promoted=False, dry_run=True)
    assert dry.verdict().startswith("dry run: would promote v3")
