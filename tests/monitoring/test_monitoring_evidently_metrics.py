"""The Evidently side (monitoring.evidently_metrics): distances are Evidently's fixed-method
``ValueDrift`` scores, equal to the textbook normed Wasserstein distance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from graphrec import contract


def test_distances_are_evidentlys_fixed_method_scores(ordinary, lake_days):
    report_json = ordinary.snapshots["data"].dict()
    drift = {m["config"]["column"]: m for m in report_json["metrics"] if m["config"]["type"].endswith(":ValueDrift")}
    assert drift["item_popularity"]["config"]["method"] == "wasserstein"
    assert drift["category"]["config"]["method"] == "jensenshannon"
    assert ordinary.signals["item_popularity"].value == pytest.approx(float(drift["item_popularity"]["value"]))
    # and it is the normed Wasserstein distance of log1p(reference count) (no sampling at this size)
    reference, day = lake_days["reference"], lake_days["ordinary"]
    counts = reference[contract.ITEM_ID].value_counts()
    ref_pop = np.log1p(reference[contract.ITEM_ID].map(counts).to_numpy(float))
    cur_pop = np.log1p(day[contract.ITEM_ID].map(counts).fillna(0).to_numpy(float))
    expected = stats.wasserstein_distance(ref_pop, cur_pop) / np.std(ref_pop)
    assert ordinary.signals["item_popularity"].value == pytest.approx(expected, rel=1e-6)


def test_reports_measure_without_verdicts(drifted):
    """No Evidently tests (no FAIL marks) and no "Data drift detected": the policy judges."""
    for name, snapshot in drifted.snapshots.items():
        assert snapshot.dict()["tests"] == [], name
        data = snapshot.get_html_str(as_iframe=False).split("</head>", 1)[0]  # the widgets' data, not the JS
        for text in (data, snapshot.json()):
            assert "drift detected" not in text.lower() and "FAIL" not in text, name
    data = drifted.snapshots["data"].get_html_str(as_iframe=False).split("</head>", 1)[0]
    assert "Drift detection method: Jensen-Shannon distance. Drift score:" in data  # the score stays
