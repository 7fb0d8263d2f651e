"""The canary gate's rules: pure functions from measured numbers to checks and a decision.

Nothing here reads MLflow, files or indexes; :mod:`serving.canary_evidence` measures the
numbers on the fresh holdout and :mod:`serving.canary` applies the decision (aliases, tags).

**The rule.** For every evaluated holdout user ``u`` (the same users for every model,
so the deltas are paired) let ``d_u = Recall@20_challenger(u) - Recall@20_champion(u)``.
The challenger is promoted (alias ``champion`` moves to it) when every check passes:

* ``no_regression`` (skipped when there is no champion): the lower bound of the
  two-sided ``settings.canary.confidence`` percentile-bootstrap interval of
  ``mean(d_u)`` (``settings.canary.bootstrap_samples`` resamples of the users, seeded
  with ``settings.seed``; :func:`serving.canary_bootstrap.paired_bootstrap_ci`) is ``>= -settings.canary.tolerance``:
  at that confidence the challenger is at most ``canary_tolerance`` Recall@20 worse than
  the champion. The same interval of the NDCG@20 delta is reported, not gated on.
* ``beats_popularity``: the challenger's mean Recall@20 is strictly above popularity's.
* ``embeddings``: every user and item embedding is finite, and neither matrix has
  collapsed (:func:`collapse_problem`): its rows are not all the same and its top
  singular value carries less than ``COLLAPSE_SHARE`` (0.999) of its squared Frobenius
  norm (a one-dimensional matrix gives every user the same ranking or its reverse).
  Non-finite embeddings are not scored at all: the other checks are skipped.
* ``coverage`` (skipped when there is no champion): the challenger's catalog
  coverage@20 (distinct items in the evaluated users' top 20 over the items it knows)
  is ``>= settings.canary.coverage_floor`` times the champion's.
* ``ann_recall``: the index publication would build for the challenger's items
  (:func:`serving.index.choose_factory` with the ``index_*`` settings) returns at least
  ``settings.index.recall_floor`` of the exact top ``min(index_recall_k, n_items)`` for
  up to 256 seeded user embeddings (the check :mod:`serving.bundle_writer` repeats).

A challenger judged with its BST ranker is also judged as a *pair*
(:func:`pair_failures`): the pair's NDCG@k must not trail the champion pair's by more
than ``settings.canary.ranker_tolerance``, and the ranker must not make its own
retriever worse (:func:`with_pair`).

``force=True`` promotes although checks failed and says which ones (:func:`decide`),
except when the challenger's embeddings are not finite (they can be neither indexed nor
served).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serving.canary_bootstrap import DeltaInterval
from training.embeddings import ModelEmbeddings
from training.metrics import DEFAULT_K, RankingMetrics

PASS, FAIL, SKIP = "pass", "fail", "skip"
#: The checks, in the order they are reported.
CHECKS = ("no_regression", "beats_popularity", "embeddings", "coverage", "ann_recall")
#: A matrix whose top singular value carries this share of its energy is one-dimensional.
COLLAPSE_SHARE = 0.999
#: Rows are "all the same" when the summed per-dimension std is below this share of the summed RMS.
SPREAD_EPS = 1e-6
#: Rows sampled (seeded) for the singular values of a large matrix.
SPECTRUM_ROWS = 4096


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


@dataclasses.dataclass(frozen=True)
class AnnRecall:
    """The challenger's index measured against exact search (:func:`serving.canary_evidence.ann_recall`).

    Args:
        recall: recall@k of the index, ``None`` when it could not be built.
        k: the cut-off, ``min(settings.index.recall_k, n_items)``.
        factory: the FAISS factory string publication would use.
        n_queries: the seeded user queries.
        floor: ``settings.index.recall_floor``.
        error: why the index could not be built, else ``None``.
    """

    recall: float | None
    k: int
    factory: str
    n_queries: int
    floor: float
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The numbers (``error`` only when there is one)."""
        numbers = {
            "recall": self.recall,
            "k": self.k,
            "factory": self.factory,
            "n_queries": self.n_queries,
            "floor": self.floor,
        }
        return numbers if self.error is None else {**numbers, "error": self.error}


def ann_check(ann: AnnRecall) -> Check:
    """``ann_recall``: the index's recall@k against exact search reaches the floor."""
    if ann.recall is None:
        return Check("ann_recall", FAIL, f"cannot build the {ann.factory!r} index: {ann.error}", ann.as_dict())
    ok = ann.recall >= ann.floor
    return Check(
        "ann_recall",
        _status(ok),
        f"{ann.factory} index recall@{ann.k} {ann.recall:.4f} {'>=' if ok else 'below'} "
        f"the floor {ann.floor} ({ann.n_queries} queries)",
        ann.as_dict(),
    )


def finite(model: ModelEmbeddings) -> bool:
    """Whether every user and item embedding of ``model`` is finite."""
    return bool(np.isfinite(model.user_emb).all() and np.isfinite(model.item_emb).all())


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


def label(decision: GateDecision) -> str:
    """``promoted`` (the gate passed), ``forced`` (only ``force`` promotes) or ``rejected``."""
    return "promoted" if decision.passed and decision.promote else "forced" if decision.promote else "rejected"


# --- The pair -----------------------------------------------------------------------------


def pair_failures(mine: Mapping[str, Any], theirs: Mapping[str, Any] | None, k: int, tolerance: float) -> list[str]:
    """Why a challenger pair (retriever + ranker) fails, as sentences; empty when it passes.

    Args:
        mine: the challenger pair's evaluation (:func:`training.ranker_eval.evaluate_pair`:
            ``ranker_ndcg_at_{k}``, ``retrieval_ndcg_at_{k}``...).
        theirs: the champion pair's, ``None`` without a champion. A champion retriever
            without a ranker is judged by its ``retrieval_ndcg_at_{k}``.
        k: the ranker's cut-off (``settings.ranker.k``).
        tolerance: how much lower the pair's NDCG@k may be (``settings.canary.ranker_tolerance``).
    """
    key = f"ranker_ndcg_at_{k}"
    failures = []
    own_retrieval = mine[f"retrieval_ndcg_at_{k}"]
    if mine[key] < own_retrieval - tolerance:
        failures.append(f"the ranker lowers its retriever's NDCG@{k} from {own_retrieval:.4f} to {mine[key]:.4f}")
    if theirs is not None:
        best = theirs.get(key, theirs[f"retrieval_ndcg_at_{k}"])
        if mine[key] < best - tolerance:
            failures.append(
                f"pair NDCG@{k} {mine[key]:.4f} trails the champion pair's {best:.4f} by more than {tolerance}"
            )
    return failures


def with_pair(decision: GateDecision, failures: Sequence[str], *, force: bool = False) -> GateDecision:
    """The retriever's decision once its pair was judged: a failed pair rejects, unless forced."""
    if not failures:
        return decision
    failed = "; ".join(failures)
    if force and decision.promote:
        return GateDecision(True, False, f"{decision.reason}; forced although the pair failed: {failed}")
    return GateDecision(False, False, f"{decision.reason}; rejected as a pair: {failed}")
