"""The paired bootstrap: a confidence interval of the mean per-user delta of two models.

The canary gate (:mod:`serving.canary_rules`) compares a challenger with the champion on
the same holdout users, so the per-user deltas are paired: :func:`paired_bootstrap_ci`
resamples users (with replacement), which keeps both models' values of a user together.

Why a percentile interval and not BCa: the statistic is a mean of hundreds or more
bounded per-user values, where the percentile interval is accurate and BCa's skew
correction is a second-order gain; BCa needs a jackknife over all users (``O(n^2)`` for
100k holdout users) and returns NaN when the bootstrap distribution is degenerate (most
deltas zero), which the percentile interval does not. Degenerate samples are handled
before the bootstrap: equal deltas (or one user) give the point interval, no users no
interval (the ``no_regression`` check then fails).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy.stats import bootstrap

from training.metrics import DEFAULT_K

#: Bootstrap memory bound: resamples per batch times users stays below this many values.
BOOTSTRAP_CELLS = 1 << 22


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
