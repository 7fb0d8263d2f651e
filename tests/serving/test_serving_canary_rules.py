"""The canary's pure rules: each check, the decision and the pair's rule (the bootstrap has its own file)."""

from __future__ import annotations

import numpy as np
import pytest

from serving import canary_rules
from serving.canary_bootstrap import DeltaInterval, paired_bootstrap_ci
from serving.canary_rules import (
    COLLAPSE_SHARE,
    FAIL,
    PASS,
    SKIP,
    AnnRecall,
    Check,
    GateDecision,
    ann_check,
    collapse_problem,
    coverage_check,
    decide,
    embeddings_check,
    label,
    pair_failures,
    popularity_check,
    regression_check,
    with_pair,
)
from training.embeddings import ModelEmbeddings
from training.metrics import RankingMetrics

# --- The decision boundary ---------------------------------------------------------------


@pytest.mark.parametrize("tolerance, status", [(0.25, PASS), (0.2500001, PASS), (0.2499999, FAIL), (0.0, FAIL)])
def test_lower_bound_exactly_at_minus_tolerance_passes(tolerance, status):
    # Exactly representable: every delta is 0.5 - 0.75 = -0.25, so the interval is the point -0.25.
    ci = paired_bootstrap_ci(np.full(40, 0.5), np.full(40, 0.75))
    check = regression_check(ci, tolerance)
    assert check.status == status
    assert check.numbers["ci_low"] == -0.25 and check.numbers["allowed"] == -tolerance
    assert "ΔRecall@20 -0.2500 [95% CI -0.2500, -0.2500] over 40 users" in check.detail


def test_regression_check_reads_the_lower_bound_not_the_mean():
    ci = DeltaInterval(
        mean=0.01, low=-0.0051, high=0.025, confidence=0.95, n_users=300, n_resamples=2000, method="percentile"
    )
    check = regression_check(ci, 0.005)
    assert check.status == FAIL and "below the allowed -0.0050" in check.detail
    assert regression_check(None, 0.005).status == SKIP


# --- The sanity checks -------------------------------------------------------------------


@pytest.mark.parametrize("challenger, popularity, status", [(0.3, 0.2, PASS), (0.2, 0.2, FAIL), (0.1, 0.2, FAIL)])
def test_popularity_check(challenger, popularity, status):
    check = popularity_check(challenger, popularity)
    assert check.status == status and f"{popularity:.4f}" in check.detail


def _model(user_emb: np.ndarray, item_emb: np.ndarray) -> ModelEmbeddings:
    return ModelEmbeddings(
        np.arange(len(user_emb)), np.arange(len(item_emb)), user_emb.astype(np.float32), item_emb.astype(np.float32)
    )


def test_collapse_problem_on_healthy_and_collapsed_matrices():
    rng = np.random.default_rng(0)
    healthy = rng.normal(size=(500, 16))
    problem, share = collapse_problem(healthy, "item")
    assert problem is None and share < 0.2
    same_rows = np.tile(rng.normal(size=16), (500, 1))
    assert "all 500 rows are the same" in collapse_problem(same_rows, "item")[0]
    one_direction = rng.normal(size=(500, 1)) * rng.normal(size=(1, 16))  # rank 1: one ranking for everyone
    problem, share = collapse_problem(one_direction, "user")
    assert "one direction" in problem and share >= COLLAPSE_SHARE
    assert collapse_problem(np.zeros((10, 4)), "item")[0] is not None
    assert collapse_problem(np.ones((1, 4)), "item")[0] is not None  # one row ranks nothing


def test_collapse_problem_samples_large_matrices(monkeypatch):
    monkeypatch.setattr(canary_rules, "SPECTRUM_ROWS", 64)
    rng = np.random.default_rng(1)
    assert collapse_problem(rng.normal(size=(1000, 8)), "item")[0] is None
    rank_one = rng.normal(size=(1000, 1)) * rng.normal(size=(1, 8))
    assert collapse_problem(rank_one, "item")[0] is not None


def test_embeddings_check_rejects_non_finite_as_a_hard_failure():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(50, 8))
    items[3, 2] = np.nan
    items[4, 0] = np.inf
    check = embeddings_check(_model(rng.normal(size=(30, 8)), items))
    assert check.status == FAIL and check.hard
    assert "non-finite" in check.detail and "2 item" in check.detail
    assert check.numbers["finite"] is False and check.numbers["non_finite_item"] == 2


def test_embeddings_check_on_healthy_and_collapsed_models():
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(30, 8)), rng.normal(size=(50, 8))
    healthy = embeddings_check(_model(users, items))
    assert healthy.status == PASS and not healthy.hard and healthy.numbers["item_top_sv_share"] < 0.5
    collapsed = embeddings_check(_model(np.ones((30, 8)), items))
    assert collapsed.status == FAIL and not collapsed.hard and "user embeddings collapsed" in collapsed.detail


def _metrics(coverage: float, n_items: int = 100) -> RankingMetrics:
    return RankingMetrics(20, 0.3, 0.2, 10, 10, np.zeros(10), np.zeros(10), round(coverage * n_items), coverage)


@pytest.mark.parametrize(
    "challenger, champion, floor, status",
    [
        (0.6, 0.64, 0.5, PASS),
        (0.32, 0.64, 0.5, PASS),
        (0.31, 0.64, 0.5, FAIL),
        (0.2, 0.64, 0.5, FAIL),
        (0.2, None, 0.5, SKIP),
        (0.0, 0.0, 0.5, PASS),
    ],
)
def test_coverage_check(challenger, champion, floor, status):
    check = coverage_check(_metrics(challenger), None if champion is None else _metrics(champion), floor)
    assert check.status == status
    assert f"coverage@20 {challenger:.3f}" in check.detail


def test_coverage_check_catches_everyone_getting_the_same_items():
    """All users get the same 20 of 300 items: coverage 20/300 against a champion's 0.5."""
    same = RankingMetrics(20, 0.4, 0.3, 50, 50, np.zeros(50), np.zeros(50), 20, 20 / 300)
    check = coverage_check(same, _metrics(0.5, 300), 0.5)
    assert check.status == FAIL and "0.067 (20 items) < 0.5 x the champion's 0.500 = 0.250" in check.detail


@pytest.mark.parametrize("recall, status", [(1.0, PASS), (0.95, PASS), (0.9499, FAIL)])
def test_ann_check(recall, status):
    ann = AnnRecall(recall=recall, k=100, factory="HNSW32", n_queries=256, floor=0.95)
    check = ann_check(ann)
    assert check.status == status and "HNSW32 index recall@100" in check.detail


def test_ann_check_fails_an_index_that_cannot_be_built():
    ann = AnnRecall(recall=None, k=100, factory="IVF4096,Flat", n_queries=256, floor=0.95, error="cannot train index")
    check = ann_check(ann)
    assert check.status == FAIL and "cannot build" in check.detail


# --- decide -------------------------------------------------------------------------------


def _checks(*statuses: str, hard: bool = False) -> list[Check]:
    names = ("no_regression", "beats_popularity", "embeddings")
    return [
        Check(name, status, f"{name} numbers", hard=hard and status == FAIL) for name, status in zip(names, statuses)
    ]


@pytest.mark.parametrize(
    "statuses, force, hard, promote, passed, start",
    [
        ((PASS, PASS, PASS), False, False, True, True, "passed"),
        ((SKIP, PASS, PASS), False, False, True, True, "passed"),  # no champion
        ((FAIL, PASS, PASS), False, False, False, False, "rejected"),
        ((SKIP, FAIL, FAIL), False, False, False, False, "rejected"),
        ((FAIL, FAIL, PASS), True, False, True, False, "forced"),
        ((SKIP, SKIP, FAIL), True, True, False, False, "rejected"),  # force cannot promote NaN embeddings
    ],
)
def test_decide(statuses, force, hard, promote, passed, start):
    checks = _checks(*statuses, hard=hard)
    decision = decide(checks, force=force)
    assert (decision.promote, decision.passed) == (promote, passed)
    assert decision.reason.startswith(start)
    for check in checks:
        named = f"{check.name}: {check.name} numbers" in decision.reason
        assert named == (check.status == FAIL or (passed and check.status == PASS))
    assert ("force cannot override" in decision.reason) == (force and hard)


@pytest.mark.parametrize(
    "promote, passed, expected", [(True, True, "promoted"), (True, False, "forced"), (False, False, "rejected")]
)
def test_label(promote, passed, expected):
    assert label(GateDecision(promote, passed, "why")) == expected


# --- The pair -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ranker, retrieval, champion, failed",
    [
        (0.30, 0.25, None, []),
        (0.30, 0.25, {"ranker_ndcg_at_10": 0.30, "retrieval_ndcg_at_10": 0.4}, []),
        (0.30, 0.25, {"ranker_ndcg_at_10": 0.3051, "retrieval_ndcg_at_10": 0.2}, ["trails the champion pair's 0.3051"]),
        (0.30, 0.25, {"retrieval_ndcg_at_10": 0.31}, ["trails the champion pair's 0.3100"]),  # champion without ranker
        (0.24, 0.25, None, ["lowers its retriever's NDCG@10 from 0.2500 to 0.2400"]),
    ],
)
def test_pair_failures(ranker, retrieval, champion, failed):
    mine = {"ranker_ndcg_at_10": ranker, "retrieval_ndcg_at_10": retrieval}
    failures = pair_failures(mine, champion, 10, 0.005)
    assert len(failures) == len(failed)
    assert all(text in failure for text, failure in zip(failed, failures))


@pytest.mark.parametrize(
    "decision, failures, force, promote, passed, phrase",
    [
        (GateDecision(True, True, "passed: x"), [], False, True, True, None),
        (GateDecision(True, True, "passed: x"), ["bad pair"], False, False, False, "rejected as a pair: bad pair"),
        (GateDecision(True, True, "passed: x"), ["bad pair"], True, True, False, "forced although the pair failed"),
        (GateDecision(False, False, "rejected: y"), ["bad pair"], True, False, False, "rejected as a pair"),
    ],
)
def test_with_pair(decision, failures, force, promote, passed, phrase):
    judged = with_pair(decision, failures, force=force)
    assert (judged.promote, judged.passed) == (promote, passed)
    assert judged.reason.startswith(decision.reason)
    assert phrase is None and judged == decision or phrase in judged.reason
