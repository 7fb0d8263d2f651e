"""The canary gate: should the challenger replace the serving champion?

Both registered models and the popularity baseline are scored by the same code
(:func:`training.metrics.evaluate_embeddings`) on the same fresh holdout: the last
``settings.holdout_days`` curated days ending at ``ds``, masking each user's items from
the earlier days of the ``settings.window_days`` window. Models are compared through
external ids, so a champion trained on an older window (fewer users and items) is
scored fairly: users it does not know score zero and items it does not know can
never be its hits (see the metrics module for the full protocol).

**The rule.** For every evaluated holdout user ``u`` (the same users for every model,
so the deltas are paired) let ``d_u = Recall@20_challenger(u) - Recall@20_champion(u)``.
The challenger is promoted (alias ``champion`` moves to it) when every check passes:

* ``no_regression`` (skipped when there is no champion): the lower bound of the
  two-sided ``settings.canary_confidence`` percentile-bootstrap interval of
  ``mean(d_u)`` (``settings.canary_bootstrap_samples`` resamples of the users, seeded
  with ``settings.seed``) is ``>= -settings.canary_tolerance``: at that confidence the
  challenger is at most ``canary_tolerance`` Recall@20 worse than the champion. The
  same interval of the NDCG@20 delta is reported, not gated on.
* ``beats_popularity``: the challenger's mean Recall@20 is strictly above popularity's.
* ``embeddings``: every user and item embedding is finite, and neither matrix has
  collapsed (:func:`collapse_problem`): its rows are not all the same and its top
  singular value carries less than ``COLLAPSE_SHARE`` (0.999) of its squared Frobenius
  norm (a one-dimensional matrix gives every user the same ranking or its reverse).
  Non-finite embeddings are not scored at all: the other checks are skipped.
* ``coverage`` (skipped when there is no champion): the challenger's catalog
  coverage@20 (distinct items in the evaluated users' top 20 over the items it knows)
  is ``>= settings.canary_coverage_floor`` times the champion's.
* ``ann_recall``: the index publication would build for the challenger's items
  (:func:`serving.index.choose_factory` with the ``index_*`` settings) returns at least
  ``settings.index_recall_floor`` of the exact top ``min(index_recall_k, n_items)`` for
  up to 256 seeded user embeddings (the check :mod:`serving.publish` repeats).

Why a percentile interval and not BCa: the statistic is a mean of hundreds or more
bounded per-user values, where the percentile interval is accurate and BCa's skew
correction is a second-order gain; BCa needs a jackknife over all users (``O(n^2)`` for
100k holdout users) and returns NaN when the bootstrap distribution is degenerate (most
deltas zero), which the percentile interval does not. Degenerate samples are handled
before the bootstrap: equal deltas (or one user) give the point interval, no users no
interval (the ``no_regression`` check then fails).

``force=True`` promotes although checks failed and says which ones, except when the
challenger's embeddings are not finite (they can be neither indexed nor served). Every
decision is written as tags on both model versions, returned as a JSON-able dict for
XCom and logged as one INFO line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from graphrec.settings import Settings
from training import registry
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

log = logging.getLogger(__name__)

PASS, FAIL, SKIP = "pass", "fail", "skip"
#: The checks, in the order they are reported.
CHECKS = ("no_regression", "beats_popularity", "embeddings", "coverage", "ann_recall")
#: A matrix whose top singular value carries this share of its energy is one-dimensional.
COLLAPSE_SHARE = 0.999
#: Rows are "all the same" when the summed per-dimension std is below this share of the summed RMS.
SPREAD_EPS = 1e-6
#: Rows sampled (seeded) for the singular values of a large matrix.
SPECTRUM_ROWS = 4096
#: Bootstrap memory bound: resamples per batch times users stays below this many values.
BOOTSTRAP_CELLS = 1 << 22


# --- The paired bootstrap -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DeltaInterval:
    """A confidence interval of the mean per-user delta (challenger - champion).

    Args:
        mean: the observed mean delta (NaN without users).
        low: lower bound of the interval.
        high: upper bound of the interval.
        confidence: the two-sided level.
        n_users: the paired users.
        n_resamples: bootstrap resamples drawn (0 for a degenerate sample).
        method: ``"percentile"``, ``"point"`` (equal deltas or one user) or ``"empty"``.
    """

    mean: float
    low: float
    high: float
    confidence: float
    n_users: int
    n_resamples: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-able numbers (``None`` for NaN), rounded to 6 decimals."""

        def number(x: float) -> float | None:
            return None if math.isnan(x) else round(float(x), 6)

        return {
            "mean": number(self.mean),
            "ci_low": number(self.low),
            "ci_high": number(self.high),
            "confidence": self.confidence,
            "n_users": self.n_users,
            "n_resamples": self.n_resamples,
            "method": self.method,
        }

    def describe(self, metric: str = f"Recall@{DEFAULT_K}") -> str:
        """E.g. ``ΔRecall@20 -0.0123 [95% CI -0.0201, -0.0046] over 412 users``."""
        if self.n_users == 0:
            return f"Δ{metric} undefined: no evaluated users"
        return (
            f"Δ{metric} {self.mean:+.4f} [{self.confidence:.0%} CI {self.low:+.4f}, {self.high:+.4f}]"
            f" over {self.n_users} users"
        )


def paired_bootstrap_ci(
    challenger: np.ndarray,
    champion: np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> DeltaInterval:
    """Percentile-bootstrap interval of ``mean(challenger - champion)`` over paired users.

    Resampling users (with replacement) resamples both models' values of a user together,
    so the interval reflects the paired design (see the module docstring for why the
    percentile method).

    Args:
        challenger: per-user metric of the challenger (task order).
        champion: the champion's, for the same users in the same order.
        confidence: two-sided level. (default: ``0.95``)
        n_resamples: bootstrap resamples. (default: ``2000``)
        seed: seeds the resampling: equal inputs give equal intervals. (default: ``0``)

    Raises:
        ValueError: the arrays are not 1-D of the same length.
    """
    from scipy.stats import bootstrap

    a, b = np.asarray(challenger, dtype=np.float64), np.asarray(champion, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired per-user arrays must be 1-D of equal length, got {a.shape} and {b.shape}")
    deltas = a - b
    n = len(deltas)
    if n == 0:
        return DeltaInterval(math.nan, math.nan, math.nan, confidence, 0, 0, "empty")
    if np.all(deltas == deltas[0]):  # one user, or equal deltas: every resample has the same mean
        point = float(deltas[0])
        return DeltaInterval(point, point, point, confidence, n, 0, "point")
    result = bootstrap(
        (deltas,),
        np.mean,
        n_resamples=n_resamples,
        batch=max(1, min(n_resamples, BOOTSTRAP_CELLS // n)),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return DeltaInterval(float(deltas.mean()), float(low), float(high), confidence, n, n_resamples, "percentile")


# --- The checks ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Check:
    """One named check of the gate and the numbers behind it.

    Args:
        name: one of :data:`CHECKS`.
        status: ``"pass"``, ``"fail"`` or ``"skip"`` (not applicable or not computable).
        detail: a sentence with the numbers.
        numbers: JSON-able values the check used.
        hard: a failure ``force`` cannot override.
    """

    name: str
    status: str
    detail: str
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)
    hard: bool = False

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, **self.numbers}


def _status(ok: bool) -> str:
    return PASS if ok else FAIL


def regression_check(interval: DeltaInterval | None, tolerance: float) -> Check:
    """``no_regression``: the interval's lower bound is ``>= -tolerance`` (skip without a champion)."""
    if interval is None:
        return Check("no_regression", SKIP, "no champion to compare with")
    numbers = {"allowed": -tolerance, **interval.as_dict()}
    if interval.n_users == 0:
        return Check("no_regression", FAIL, interval.describe(), numbers)
    ok = interval.low >= -tolerance
    relation = ">=" if ok else "below"
    return Check(
        "no_regression",
        _status(ok),
        f"{interval.describe()}: lower bound {interval.low:+.4f} {relation} the allowed {-tolerance:+.4f}",
        numbers,
    )


def popularity_check(challenger_recall: float, popularity_recall: float) -> Check:
    """``beats_popularity``: the challenger's mean Recall@20 is strictly above popularity's."""
    ok = challenger_recall > popularity_recall
    verb = "beats" if ok else "does not beat"
    return Check(
        "beats_popularity",
        _status(ok),
        f"Recall@{DEFAULT_K} {challenger_recall:.4f} {verb} popularity's {popularity_recall:.4f}",
        {"challenger": round(challenger_recall, 6), "popularity": round(popularity_recall, 6)},
    )


def collapse_problem(matrix: np.ndarray, name: str, *, seed: int = 0) -> tuple[str | None, float]:
    """Whether a finite embedding matrix has collapsed, and its top singular value share.

    Collapsed means the rows are (nearly) all the same, i.e. the summed per-dimension
    standard deviation is at most ``SPREAD_EPS`` of the summed per-dimension RMS, or the
    matrix is (nearly) one-dimensional: its top singular value carries at least
    ``COLLAPSE_SHARE`` of the squared Frobenius norm (``SPECTRUM_ROWS`` seeded rows of a
    larger matrix). A one-dimensional user (item) matrix ranks the items the same way,
    or reversed, for every user.

    Returns:
        ``(problem or None, share)``.
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] == 0:
        return f"{name} embeddings of shape {x.shape} cannot rank anything", 1.0
    spread = float(x.std(axis=0).sum())
    scale = float(np.sqrt((x**2).mean(axis=0)).sum())
    if scale == 0 or spread <= SPREAD_EPS * scale:
        return f"{name} embeddings collapsed: all {x.shape[0]} rows are the same (summed std {spread:.2e})", 1.0
    if x.shape[0] > SPECTRUM_ROWS:
        x = x[np.sort(np.random.default_rng(seed).choice(x.shape[0], SPECTRUM_ROWS, replace=False))]
    energy = np.linalg.svd(x, compute_uv=False) ** 2
    share = float(energy[0] / energy.sum())
    if share >= COLLAPSE_SHARE:
        return (
            f"{name} embeddings collapsed to one direction: the top singular value carries {share:.4f} "
            f"of the energy (limit {COLLAPSE_SHARE})"
        ), share
    return None, share


def embeddings_check(model: ModelEmbeddings, *, seed: int = 0) -> Check:
    """``embeddings``: finite (a hard check: force cannot override it) and not collapsed."""
    bad = {
        name: int((~np.isfinite(np.asarray(m))).sum())
        for name, m in (("user", model.user_emb), ("item", model.item_emb))
    }
    if any(bad.values()):
        where = ", ".join(f"{count} {name}" for name, count in bad.items() if count)
        return Check(
            "embeddings",
            FAIL,
            f"non-finite embeddings (NaN or inf: {where} values); not scored",
            {"finite": False, **{f"non_finite_{k}": v for k, v in bad.items()}},
            hard=True,
        )
    problems, shares = [], {}
    for name, matrix in (("user", model.user_emb), ("item", model.item_emb)):
        problem, shares[f"{name}_top_sv_share"] = collapse_problem(matrix, name, seed=seed)
        problems += [problem] if problem else []
    numbers = {"finite": True, **{k: round(v, 6) for k, v in shares.items()}}
    if problems:
        return Check("embeddings", FAIL, "; ".join(problems), numbers)
    return Check(
        "embeddings",
        PASS,
        "finite and not collapsed (top singular value share: users "
        f"{shares['user_top_sv_share']:.3f}, items {shares['item_top_sv_share']:.3f})",
        numbers,
    )


def coverage_check(challenger: RankingMetrics, champion: RankingMetrics | None, floor: float) -> Check:
    """``coverage``: challenger coverage@20 ``>= floor`` x the champion's (skip without a champion)."""
    mine = f"coverage@{challenger.k} {challenger.coverage:.3f} ({challenger.n_items_recommended} items)"
    if champion is None:
        return Check(
            "coverage", SKIP, f"{mine}; no champion to compare with", {"challenger": round(challenger.coverage, 6)}
        )
    needed = floor * champion.coverage
    ok = challenger.coverage >= needed
    return Check(
        "coverage",
        _status(ok),
        f"{mine} {'>=' if ok else '<'} {floor} x the champion's {champion.coverage:.3f} = {needed:.3f}",
        {
            "challenger": round(challenger.coverage, 6),
            "champion": round(champion.coverage, 6),
            "floor": floor,
            "needed": round(needed, 6),
        },
    )


def ann_recall(settings: Settings, model: ModelEmbeddings) -> dict[str, Any]:
    """Recall against exact search of the index publication would build for ``model``.

    The same factory (:func:`serving.index.choose_factory`), search parameters, cut-off
    and seeded query users as :mod:`serving.publish`.

    Returns:
        ``{recall, k, factory, n_queries, floor}``; ``recall`` is ``None`` and ``error``
        says why when the index cannot be built.
    """
    from serving.index import build_index, choose_factory, recall_against_exact
    from serving.publish import RECALL_CHECK_QUERIES

    n_items, n_users = len(model.item_ids), len(model.user_ids)
    factory = choose_factory(
        n_items,
        settings.index_factory,
        ann_factory=settings.index_ann_factory,
        exact_max_items=settings.index_exact_max_items,
    )
    rows = np.random.default_rng(settings.seed).choice(n_users, size=min(n_users, RECALL_CHECK_QUERIES), replace=False)
    k = min(settings.index_recall_k, n_items)
    out: dict[str, Any] = {
        "recall": None,
        "k": k,
        "factory": factory,
        "n_queries": len(rows),
        "floor": settings.index_recall_floor,
    }
    try:
        index = build_index(model.item_emb, factory, settings.index_search_params)
        out["recall"] = round(recall_against_exact(index, model.item_emb, model.user_emb[rows], k), 6)
    except ValueError as exc:
        out["error"] = str(exc)
    return out


def ann_check(ann: dict[str, Any]) -> Check:
    """``ann_recall``: the index's recall@k against exact search reaches the floor."""
    if ann["recall"] is None:
        return Check("ann_recall", FAIL, f"cannot build the {ann['factory']!r} index: {ann.get('error')}", ann)
    ok = ann["recall"] >= ann["floor"]
    return Check(
        "ann_recall",
        _status(ok),
        f"{ann['factory']} index recall@{ann['k']} {ann['recall']:.4f} {'>=' if ok else 'below'} "
        f"the floor {ann['floor']} ({ann['n_queries']} queries)",
        ann,
    )


# --- The decision -------------------------------------------------------------------------


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


def decide(checks: Sequence[Check], *, force: bool = False) -> GateDecision:
    """The canary rule (pure): promote when no check failed (see the module docstring).

    Args:
        checks: the evaluated checks; skipped ones do not count.
        force: promote although checks failed, unless one of them is ``hard``.
    """
    failures = [c for c in checks if c.failed]
    if not failures:
        return GateDecision(
            True, True, "passed: " + "; ".join(f"{c.name}: {c.detail}" for c in checks if c.status == PASS)
        )
    text = "; ".join(f"{c.name}: {c.detail}" for c in failures)
    hard = [c.name for c in failures if c.hard]
    if force and not hard:
        return GateDecision(True, False, "forced promotion although the gate failed: " + text)
    suffix = f" (force cannot override {', '.join(hard)})" if force else ""
    return GateDecision(False, False, "rejected: " + text + suffix)


# --- Scoring ------------------------------------------------------------------------------


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
    """Read the ``settings.window_days`` window ending at ``ds`` once and split it.

    Raises:
        InsufficientDataError: no user with history and new holdout items.
    """
    window = load_window(settings, ds, settings.window_days)
    history, holdout = temporal_split(window.interactions, settings.holdout_days, end=window.end)
    task = build_ranking_task(history, holdout)
    if task.n_users == 0:
        raise InsufficientDataError(
            f"no canary holdout users for {ds}: the holdout has {len(holdout)} events, the history {len(history)}"
        )
    return Holdout(
        task,
        history,
        holdout_start(ds, settings.holdout_days),
        popularity_model(history),
        window.fingerprint,
        settings.window_days,
    )


def _scores(metrics: RankingMetrics) -> dict[str, float]:
    k = metrics.k
    return {
        f"recall_at_{k}": round(metrics.recall, 6),
        f"ndcg_at_{k}": round(metrics.ndcg, 6),
        f"coverage_at_{k}": round(metrics.coverage, 6),
        "n_items_recommended": metrics.n_items_recommended,
    }


def _saw_holdout(model: ModelEmbeddings, first_holdout_day: dt.date) -> bool:
    """Whether a model's training data reaches into the holdout (its score is inflated)."""
    until = model.meta.get("train_until")
    return until is not None and dt.date.fromisoformat(until) >= first_holdout_day


def _finite(model: ModelEmbeddings) -> bool:
    return bool(np.isfinite(model.user_emb).all() and np.isfinite(model.item_emb).all())


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Everything the gate measured for one challenger (see :func:`gather_evidence`)."""

    challenger: RankingMetrics | None
    champion: RankingMetrics | None
    popularity: RankingMetrics
    recall_delta: DeltaInterval | None
    ndcg_delta: DeltaInterval | None
    ann: dict[str, Any] | None
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
    if champion is not None and _finite(champion):
        theirs = evaluate_embeddings(champion, task, k)
        recall_delta, ndcg_delta = (
            paired_bootstrap_ci(
                a,
                b,
                confidence=settings.canary_confidence,
                n_resamples=settings.canary_bootstrap_samples,
                seed=settings.seed,
            )
            for a, b in ((mine.recall_per_user, theirs.recall_per_user), (mine.ndcg_per_user, theirs.ndcg_per_user))
        )
    ann = ann_recall(settings, challenger)
    checks = [
        regression_check(recall_delta, settings.canary_tolerance),
        popularity_check(mine.recall, pop.recall),
        health,
        coverage_check(mine, theirs, settings.canary_coverage_floor),
        ann_check(ann),
    ]
    if champion is not None and theirs is None:
        why = "the champion's embeddings are not finite: not compared"
        checks[0] = Check("no_regression", SKIP, why)
        checks[3] = Check("coverage", SKIP, why, checks[3].numbers)
    return Evidence(mine, theirs, pop, recall_delta, ndcg_delta, ann, tuple(checks))


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
    if evidence.ann is not None and evidence.ann["recall"] is not None:
        parts.append(f"ANN recall@{evidence.ann['k']} {evidence.ann['recall']:.4f}")
    failed = [c.name for c in evidence.checks if c.failed]
    parts.append(f"failed: {', '.join(failed)}" if failed else "all checks passed")
    return f"canary {ds.isoformat()}: {label} v{challenger_version} vs {versus}: " + "; ".join(parts)


def _decision_tags(evidence: Evidence, settings: Settings) -> dict[str, Any]:
    """The numbers behind a decision as ``canary.*`` tags (the same on both versions)."""
    k = DEFAULT_K
    tags: dict[str, Any] = {
        "canary.confidence": settings.canary_confidence,
        "canary.tolerance": settings.canary_tolerance,
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
            "canary.ann_recall": evidence.ann["recall"],
            "canary.ann_k": evidence.ann["k"],
            "canary.ann_factory": evidence.ann["factory"],
        }
    return tags


# --- The gate -----------------------------------------------------------------------------


def run_canary(
    settings: Settings,
    ds: dt.date,
    challenger_version: int,
    *,
    force: bool = False,
    ranker_version: int | None = None,
    ranker_result: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Score challenger, champion and popularity on the fresh holdout; maybe promote.

    Args:
        settings: the installation's settings (``canary_*``, ``index_*``, windows, MLflow).
        ds: the last day of the holdout.
        challenger_version: the registered version to judge.
        force: promote even when the gate fails (the result and tags say so), unless
            the challenger's embeddings are not finite.
        ranker_version: a ranker to judge as a pair with the challenger (:func:`judge_pair`).
        ranker_result: what ``training.ranker.train_ranker`` returned for that ranker; its
            evaluation of the challenger pair is reused when it was made on this very
            holdout (same data fingerprint, window, candidates and cut-off), instead of
            being computed a second time.
        dry_run: judge and report, but move no alias and tag only the challenger
            (``canary.decision`` ``dry-run: <label>``); ``promoted`` is then False and
            ``would_promote`` says what the gate decided.

    Returns:
        ``{promoted, forced, reason, summary, ds, challenger_version,
        champion_version_before, champion_version_after, challenger: {recall_at_20,
        ndcg_at_20, coverage_at_20, n_items_recommended} | None (not scored), champion:
        {...} | None, popularity: {...}, delta: {recall_at_20: interval, ndcg_at_20:
        interval} | None, checks: {name: {status, detail, ...numbers}}, failed_checks,
        ann: {recall, k, factory, n_queries, floor} | None, tolerance, confidence,
        coverage_floor, n_eval_users, ranker, ranker_version, ranker_champion_after}``;
        an interval is ``{mean, ci_low, ci_high, confidence, n_users, n_resamples, method}``.

    The decision is also written as model-version tags, on the challenger and (when it
    is a different version) the champion before the gate: ``canary.decision``
    (challenger: ``promoted`` / ``rejected`` / ``forced``; champion: ``retained`` /
    ``replaced``), ``canary.role``, ``canary.ds``, ``canary.reason``,
    ``canary.challenger_version``, ``canary.champion_version``, that version's own
    ``canary.recall_at_20`` / ``canary.ndcg_at_20`` / ``canary.coverage_at_20``,
    popularity's ``canary.popularity_*``, and the decision's numbers:
    ``canary.delta_recall_at_20`` (challenger - champion) with ``_ci_low`` / ``_ci_high``
    (likewise ``canary.delta_ndcg_at_20*``), ``canary.confidence``, ``canary.tolerance``,
    ``canary.n_users``, ``canary.challenger_coverage_at_20``,
    ``canary.champion_coverage_at_20``, ``canary.ann_recall`` / ``canary.ann_k`` /
    ``canary.ann_factory`` (the challenger's index) and ``canary.check.<name>``
    (``pass`` / ``fail`` / ``skip``). A later canary overwrites them, so they describe
    each version's latest judgement. The :func:`summary_line` is logged at INFO.
    """
    holdout = prepare_holdout(settings, ds)
    task, popularity = holdout.task, holdout.popularity
    first_holdout_day = holdout_start(ds, settings.holdout_days).date()
    champion_before = registry.get_alias_version(settings, registry.CHAMPION)

    challenger = registry.load_model_embeddings(settings, challenger_version)
    champion = None if champion_before is None else registry.load_model_embeddings(settings, champion_before)
    notes = []
    if _saw_holdout(challenger, first_holdout_day):
        notes.append(f"note: challenger v{challenger_version} was trained on data from the holdout days")
    if champion is not None and _saw_holdout(champion, first_holdout_day):
        notes.append(f"note: champion v{champion_before} was trained on data from the holdout days")
    if champion is not None and not _finite(champion):
        notes.append(f"note: champion v{champion_before} has non-finite embeddings and was not compared")
    evidence = gather_evidence(settings, task, challenger, champion, popularity)

    if champion_before == challenger_version:
        decision = GateDecision(True, True, f"v{challenger_version} is already the champion")
    else:
        decision = decide(evidence.checks, force=force)
    pair = None
    if ranker_version is not None:
        pair = judge_pair(
            settings, holdout, challenger, ranker_version, champion_before, champion, handed_over=ranker_result
        )
        if not pair["passed"]:
            failed = "; ".join(pair["failures"])
            decision = (
                GateDecision(True, False, f"{decision.reason}; forced although the pair failed: {failed}")
                if force and decision.promote
                else GateDecision(False, False, f"{decision.reason}; rejected as a pair: {failed}")
            )
    would_promote = decision.promote
    if dry_run:
        notes.append("dry run: no alias moved")
        decision = GateDecision(False, decision.passed, decision.reason)
    if decision.promote and champion_before != challenger_version:
        registry.set_alias(settings, registry.CHAMPION, challenger_version)
    if pair is not None and decision.promote:
        registry.set_alias(settings, registry.CHAMPION, ranker_version, model=settings.ranker_model_name)
    champion_after = registry.get_alias_version(settings, registry.CHAMPION)
    reason = "; ".join([decision.reason, *notes])
    label = "promoted" if decision.passed and decision.promote else "forced" if decision.promote else "rejected"
    if dry_run:
        label = "dry-run: " + (
            "promoted" if decision.passed and would_promote else "forced" if would_promote else "rejected"
        )
    summary = summary_line(ds, label, challenger_version, champion_before, evidence, settings.canary_tolerance)
    log.info(summary)

    challenger_scores = None if evidence.challenger is None else _scores(evidence.challenger)
    champion_scores = None if evidence.champion is None else _scores(evidence.champion)
    popularity_scores = _scores(evidence.popularity)
    common = {
        "canary.ds": ds.isoformat(),
        "canary.reason": reason,
        "canary.challenger_version": challenger_version,
        "canary.champion_version": "none" if champion_before is None else champion_before,
        **{f"canary.popularity_{name}": value for name, value in popularity_scores.items()},
        **_decision_tags(evidence, settings),
    }
    registry.set_version_tags(
        settings,
        challenger_version,
        {
            **common,
            "canary.role": "challenger",
            "canary.decision": label,
            **{f"canary.{name}": value for name, value in (challenger_scores or {}).items()},
        },
    )
    if champion_before is not None and champion_before != challenger_version and not dry_run:
        registry.set_version_tags(
            settings,
            champion_before,
            {
                **common,
                "canary.role": "champion",
                "canary.decision": "replaced" if decision.promote else "retained",
                **{f"canary.{name}": value for name, value in (champion_scores or {}).items()},
            },
        )
    if pair is not None and not dry_run:
        _tag_rankers(settings, pair, label, decision.promote, reason)
    k = DEFAULT_K
    return {
        "ranker": pair,
        "ranker_version": ranker_version,
        "ranker_champion_after": registry.get_alias_version(
            settings, registry.CHAMPION, model=settings.ranker_model_name
        )
        if pair is not None
        else None,
        "promoted": decision.promote,
        "forced": decision.promote and not decision.passed,
        "dry_run": dry_run,
        "would_promote": would_promote,
        "reason": reason,
        "summary": summary,
        "ds": ds.isoformat(),
        "challenger_version": challenger_version,
        "champion_version_before": champion_before,
        "champion_version_after": champion_after,
        "challenger": challenger_scores,
        "champion": champion_scores,
        "popularity": popularity_scores,
        "delta": None
        if evidence.recall_delta is None or evidence.ndcg_delta is None
        else {f"recall_at_{k}": evidence.recall_delta.as_dict(), f"ndcg_at_{k}": evidence.ndcg_delta.as_dict()},
        "checks": {c.name: c.as_dict() for c in evidence.checks},
        "failed_checks": [c.name for c in evidence.checks if c.failed],
        "ann": evidence.ann,
        "tolerance": settings.canary_tolerance,
        "confidence": settings.canary_confidence,
        "coverage_floor": settings.canary_coverage_floor,
        "n_eval_users": task.n_users,
    }


def judge_pair(
    settings: Settings,
    holdout: Holdout,
    challenger: ModelEmbeddings,
    ranker_version: int,
    champion_version: int | None,
    champion: ModelEmbeddings | None,
    *,
    handed_over: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ranker half of the gate: the challenger *pair* against the champion pair.

    Both pairs re-rank their own retriever's candidates on the canary's holdout
    (:func:`training.ranker.evaluate_pairs`, features as of the holdout's start, one
    feature join for both). The pair passes when its NDCG@k is not below the champion
    pair's by more than ``settings.ranker_canary_tolerance`` (the champion pair is its
    retriever alone when no ranker has been promoted yet) and the ranker does not make
    its own retriever worse.

    Args:
        holdout: the canary's prepared holdout.
        challenger: the challenger retriever's embeddings.
        ranker_version: the challenger ranker.
        champion_version, champion: the champion retriever (``None``: no champion).
        handed_over: the training task's result for ``ranker_version``; its
            ``evaluation`` is used for the challenger pair when it was made on this
            holdout (:func:`training.ranker.evaluation_key`).

    Returns:
        ``{passed, failures, challenger: metrics, champion: metrics | None,
        champion_ranker_version, ranker_version, k, reused_evaluation}`` (JSON-able).
    """
    from training import ranker as ranking

    k = settings.ranker_k
    key = f"ranker_ndcg_at_{k}"
    task, history, at = holdout.task, holdout.history, holdout.at
    expected = ranking.evaluation_key(settings, holdout.fingerprint, holdout.window_days)
    mine = None
    if (
        handed_over
        and handed_over.get("model_version") == ranker_version
        and handed_over.get("evaluation_key") == expected
    ):
        mine = {name: handed_over[name] for name in handed_over.get("evaluation_metrics", [])}
    pairs: list[tuple[ModelEmbeddings, Any]] = []
    if mine is None:
        model, vocab, meta, _ = ranking.load_ranker(settings, ranker_version)
        pairs.append((challenger, (model, vocab, meta)))
    champion_ranker = registry.get_alias_version(settings, registry.CHAMPION, model=settings.ranker_model_name)
    if champion_version is not None and champion is not None:
        loaded = ranking.load_ranker(settings, champion_ranker)[:3] if champion_ranker is not None else None
        pairs.append((champion, loaded))
    scored = ranking.evaluate_pairs(settings, task, history, at, pairs) if pairs else []
    reused = mine is not None
    if mine is None:
        mine = scored.pop(0)
    theirs = scored[0] if scored else None
    failures = []
    tolerance = settings.ranker_canary_tolerance
    own_retrieval = mine[f"retrieval_ndcg_at_{k}"]
    if mine[key] < own_retrieval - tolerance:
        failures.append(f"the ranker lowers its retriever's NDCG@{k} from {own_retrieval:.4f} to {mine[key]:.4f}")
    if theirs is not None:
        best = theirs.get(key, theirs[f"retrieval_ndcg_at_{k}"])
        if mine[key] < best - tolerance:
            failures.append(
                f"pair NDCG@{k} {mine[key]:.4f} trails the champion pair's {best:.4f} by more than {tolerance}"
            )
    return {
        "passed": not failures,
        "failures": failures,
        "challenger": mine,
        "champion": theirs,
        "ranker_version": ranker_version,
        "champion_ranker_version": champion_ranker,
        "k": k,
        "reused_evaluation": reused,
    }


def _tag_rankers(settings: Settings, pair: dict[str, Any], label: str, promoted: bool, reason: str) -> None:
    """The decision as tags on the challenger ranker and on the champion ranker it faced."""
    model = settings.ranker_model_name
    numbers = {f"canary.{name}": value for name, value in pair["challenger"].items()}
    registry.set_version_tags(
        settings,
        pair["ranker_version"],
        {"canary.decision": label, "canary.role": "challenger", "canary.reason": reason, **numbers},
        model=model,
    )
    before = pair["champion_ranker_version"]
    if before is not None and before != pair["ranker_version"] and pair["champion"] is not None:
        registry.set_version_tags(
            settings,
            before,
            {
                "canary.decision": "replaced" if promoted else "retained",
                "canary.role": "champion",
                "canary.reason": reason,
                **{f"canary.{name}": value for name, value in pair["champion"].items()},
            },
            model=model,
        )
