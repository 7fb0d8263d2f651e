"""The day's drift signals (monitoring.signals.compute_signals): the contract, an ordinary
day against the simulated drift day, and seeded sampling.

Behavioural tests on the simulated lake of ``conftest.py`` (days 1..3 are the reference,
day 4 an ordinary day, day 5 the drift day): every signal must stay small on an ordinary
day and the drift day must move the item signals.
"""

from __future__ import annotations

import pytest

from monitoring.signal_table import SIGNAL_NAMES, SPECS
from monitoring.signals import compute_signals


# The contract -------------------------------------------------------------------------
def test_every_signal_is_reported_in_order_with_its_group_and_metric(ordinary):
    assert tuple(ordinary.signals) == SIGNAL_NAMES
    for name, signal in ordinary.signals.items():
        assert (signal.name, signal.group, signal.metric) == (
            name,
            SPECS[name].group,
            SPECS[name].metric,
        )
        assert signal.detail
    assert set(ordinary.snapshots) == {"data", "users", "model"}


def test_without_model_or_history_the_model_and_quality_signals_are_none(lake_days):
    report = compute_signals(lake_days["ordinary"], lake_days["reference"], lake_days["catalog"])
    for name in ("score_distribution", "catalog_coverage", "recommended_popularity", "quality_proxy"):
        assert report.signals[name].value is None
    assert report.served is None and set(report.snapshots) == {"data", "users"}


def test_empty_inputs_are_refused(lake_days):
    with pytest.raises(ValueError, match="non-empty"):
        compute_signals(lake_days["ordinary"].iloc[:0], lake_days["reference"], lake_days["catalog"])


# An ordinary day scores low; the simulated drift day moves the item signals -------------
@pytest.mark.parametrize(
    "name, bound",
    [
        ("user_activity", 0.15),
        ("user_concentration", 0.03),
        ("item_popularity", 0.1),
        ("head_share", 0.05),
        ("category_mix", 0.1),
        ("new_item_share", 0.03),
        ("new_user_share", 0.03),
        ("event_type_mix", 0.05),
        ("event_type_missing", 0.0),
        ("score_distribution", 0.1),
        ("catalog_coverage", 0.1),
        ("recommended_popularity", 0.1),
    ],
)
def test_an_ordinary_day_scores_low(ordinary, name, bound):
    assert abs(ordinary.signals[name].value) <= bound


@pytest.mark.parametrize(
    "name, floor", [("item_popularity", 0.5), ("category_mix", 0.2), ("new_item_share", 0.2), ("head_share", 0.1)]
)
def test_the_simulated_drift_day_moves_the_item_signals(drifted, ordinary, name, floor):
    assert drifted.signals[name].value >= floor > ordinary.signals[name].value


# Samples are seeded; shares are exact ---------------------------------------------------
def test_reports_are_sampled_to_max_rows_and_shares_stay_exact(lake_days):
    day, reference, catalog = lake_days["ordinary"], lake_days["reference"], lake_days["catalog"]
    full = compute_signals(day, reference, catalog)
    sampled = compute_signals(day, reference, catalog, max_rows=500, seed=1)
    assert sampled.signals == compute_signals(day, reference, catalog, max_rows=500, seed=1).signals
    assert (sampled.signals["item_popularity"].n_current, sampled.signals["item_popularity"].n_reference) == (500, 500)
    assert sampled.signals["head_share"].n_current == len(day)
    assert sampled.signals["head_share"] == full.signals["head_share"]
    assert sampled.signals["item_popularity"].value != full.signals["item_popularity"].value
