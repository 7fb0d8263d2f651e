"""The paired bootstrap of per-user deltas: deterministic, paired, and right by normal theory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from serving import canary_bootstrap
from serving.canary_bootstrap import paired_bootstrap_ci
from serving.canary_rules import FAIL, regression_check


def _per_user(n: int, mean_delta: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Recall-like per-user values of a champion and a challenger ``mean_delta`` better on average."""
    rng = np.random.default_rng(seed)
    champion = rng.uniform(0, 1, n)
    return champion + mean_delta + rng.normal(0, 0.1, n), champion


# --- paired_bootstrap_ci ------------------------------------------------------------------


def test_bootstrap_is_deterministic_for_a_seed():
    challenger, champion = _per_user(500, 0.01)
    one = paired_bootstrap_ci(challenger, champion, n_resamples=500, seed=42)
    two = paired_bootstrap_ci(challenger, champion, n_resamples=500, seed=42)
    other = paired_bootstrap_ci(challenger, champion, n_resamples=500, seed=43)
    assert one == two
    assert (one.low, one.high) != (other.low, other.high)
    assert one.method == "percentile" and one.n_users == 500 and one.n_resamples == 500


@pytest.mark.parametrize("n", [50, 400, 5000])
def test_bootstrap_interval_contains_the_true_mean_and_matches_normal_theory(n):
    rng = np.random.default_rng(n)
    true_mean = 0.01
    deltas = rng.normal(true_mean, 0.1, n)
    ci = paired_bootstrap_ci(deltas, np.zeros(n), confidence=0.95, n_resamples=2000, seed=0)
    assert ci.low < true_mean < ci.high
    assert ci.low < ci.mean < ci.high and ci.mean == pytest.approx(deltas.mean())
    half = 1.96 * deltas.std(ddof=1) / math.sqrt(n)
    assert ci.high - ci.low == pytest.approx(2 * half, rel=0.15)


def test_bootstrap_pairs_users():
    """A constant per-user improvement on noisy users is certain: the pairing removes the noise."""
    champion = np.random.default_rng(0).uniform(0, 1, 300)
    ci = paired_bootstrap_ci(champion + 0.25, champion, n_resamples=200)
    assert ci.low == pytest.approx(0.25) and ci.high == pytest.approx(0.25) and ci.mean == pytest.approx(0.25)


def test_higher_confidence_gives_a_wider_interval():
    challenger, champion = _per_user(300, 0.0)
    narrow = paired_bootstrap_ci(challenger, champion, confidence=0.8, n_resamples=1000)
    wide = paired_bootstrap_ci(challenger, champion, confidence=0.99, n_resamples=1000)
    assert wide.low < narrow.low and wide.high > narrow.high


@pytest.mark.parametrize("n", [1, 2, 37])
def test_constant_deltas_give_a_point_interval(n):
    ci = paired_bootstrap_ci(np.full(n, 0.5), np.full(n, 0.75))
    assert (ci.mean, ci.low, ci.high) == (-0.25, -0.25, -0.25)
    assert ci.method == "point" and ci.n_resamples == 0 and ci.n_users == n


def test_no_users_give_no_interval_and_fail_the_regression_check():
    ci = paired_bootstrap_ci(np.array([]), np.array([]))
    assert ci.n_users == 0 and math.isnan(ci.low) and ci.method == "empty"
    assert ci.as_dict()["ci_low"] is None  # JSON-able: no NaN
    check = regression_check(ci, 0.005)
    assert check.status == FAIL and "no evaluated users" in check.detail


def test_bootstrap_refuses_unpaired_arrays():
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap_ci(np.zeros(3), np.zeros(4))


def test_small_batches_bound_memory_and_still_work(monkeypatch):
    monkeypatch.setattr(canary_bootstrap, "BOOTSTRAP_CELLS", 1000)  # batches of 2 resamples for 500 users
    challenger, champion = _per_user(500, 0.02)
    ci = paired_bootstrap_ci(challenger, champion, n_resamples=300)
    assert ci.low < 0.02 < ci.high
