"""The model signals (monitoring.model_signals): unknown users collapse coverage, louder
users move the score distribution, and both sides are equal seeded samples of users."""

from __future__ import annotations

import numpy as np
import pandas as pd

from graphrec import contract
from monitoring.offline_serving import FALLBACK, ServingModel
from monitoring.signals import compute_signals


def test_a_wave_of_unknown_users_collapses_coverage_and_lifts_served_popularity(lake_days, model, ordinary):
    day = lake_days["ordinary"].assign(**{contract.USER_ID: lambda f: f[contract.USER_ID] + 10**6})
    report = compute_signals(day, lake_days["reference"], lake_days["catalog"], model=model)
    assert report.served[FALLBACK].all()
    assert report.signals["catalog_coverage"].value >= 0.5 > ordinary.signals["catalog_coverage"].value
    assert report.signals["recommended_popularity"].value >= 0.5
    assert report.signals["score_distribution"].value is None  # no scored rows today


def test_score_distribution_reacts_when_todays_users_score_differently(lake_days, model):
    boosted = np.arange(len(model.user_ids)) % 2 == 0
    emb = model.user_emb.copy()
    emb[boosted] *= 4.0
    louder = ServingModel(model.user_ids, emb, model.item_ids, model.item_emb, model.seen, model.popular)
    day = lake_days["ordinary"]
    day = day[day[contract.USER_ID].isin(model.user_ids[boosted])]
    report = compute_signals(day, lake_days["reference"], lake_days["catalog"], model=louder)
    assert report.signals["score_distribution"].value >= 0.5


def test_served_users_are_equal_seeded_samples(lake_days, model):
    kwargs = dict(model=model, max_served_users=50, seed=3)
    first = compute_signals(lake_days["ordinary"], lake_days["reference"], lake_days["catalog"], **kwargs)
    again = compute_signals(lake_days["ordinary"], lake_days["reference"], lake_days["catalog"], **kwargs)
    coverage = first.signals["catalog_coverage"]
    assert coverage.n_current == coverage.n_reference == 50
    assert first.served[contract.USER_ID].nunique() == 50
    pd.testing.assert_frame_equal(first.served, again.served)
    assert first.signals == again.signals
