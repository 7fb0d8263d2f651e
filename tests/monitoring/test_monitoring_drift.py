"""Drift features (unit) and the Evidently drift check on simulated lakes (data)."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from graphrec import contract
from graphrec.settings import Settings
from graphrec.sources.simulator import SimulationConfig, simulate
from monitoring import drift

DRIFT_COLUMNS = {drift.CATEGORY, drift.IS_NEW_ITEM, drift.ITEM_POPULARITY}


# Unit: the feature transform ------------------------------------------------------------
def _interactions(rows):
    frame = pd.DataFrame(rows, columns=[contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS, contract.EVENT_TYPE])
    frame[contract.EVENT_TS] = pd.to_datetime(frame[contract.EVENT_TS], utc=True)
    frame[contract.RATING] = np.nan
    return frame


CATALOG = pd.DataFrame({contract.ITEM_ID: [1, 2, 3], contract.CATEGORY: ["books", "music", "games"]})
INTERACTIONS = _interactions(
    [
        (10, 1, "2025-01-08 09:15", "view"),
        (10, 2, "2025-01-08 23:59", "click"),
        (10, 1, "2025-01-09 00:01", "view"),  # same user, next UTC day
        (11, 3, "2025-01-08 12:00", "purchase"),  # item 3 absent from the reference
        (11, 99, "2025-01-08 12:30", "view"),  # item 99 absent from the catalog too
    ]
)
REFERENCE_COUNTS = pd.Series({1: 9, 2: 1})


def test_interaction_features_has_one_row_per_interaction_and_the_contract_columns():
    features = drift.interaction_features(INTERACTIONS, CATALOG, REFERENCE_COUNTS)
    assert list(features.columns) == list(drift.FEATURE_COLUMNS)
    assert len(features) == len(INTERACTIONS)
    assert features[drift.CATEGORY].tolist() == ["books", "music", "books", "games", drift.UNKNOWN_CATEGORY]
    assert features[drift.EVENT_TYPE].tolist() == INTERACTIONS[contract.EVENT_TYPE].tolist()
    assert features[drift.HOUR].tolist() == [9, 23, 0, 12, 12]


@pytest.mark.parametrize(
    "row, popularity, is_new",
    [(0, math.log1p(9), drift.KNOWN), (1, math.log1p(1), drift.KNOWN), (3, 0.0, drift.NEW), (4, 0.0, drift.NEW)],
)
def test_item_popularity_is_log1p_of_the_reference_count_and_zero_for_new_items(row, popularity, is_new):
    features = drift.interaction_features(INTERACTIONS, CATALOG, REFERENCE_COUNTS)
    assert features.loc[row, drift.ITEM_POPULARITY] == pytest.approx(popularity)
    assert features.loc[row, drift.IS_NEW_ITEM] == is_new


def test_user_daily_events_counts_the_users_events_on_each_utc_day():
    features = drift.interaction_features(INTERACTIONS, CATALOG, REFERENCE_COUNTS)
    # user 10: two events on the 8th, one on the 9th; user 11: two on the 8th.
    assert features[drift.USER_DAILY_EVENTS].tolist() == [2, 2, 1, 2, 2]


def test_interaction_features_keep_input_order_for_a_shuffled_non_default_index():
    shuffled = INTERACTIONS.sample(frac=1.0, random_state=0)
    shuffled.index = shuffled.index + 100
    features = drift.interaction_features(shuffled, CATALOG, REFERENCE_COUNTS)
    assert features[drift.EVENT_TYPE].tolist() == shuffled[contract.EVENT_TYPE].tolist()


def test_empty_catalog_and_reference_make_everything_unknown_and_new():
    features = drift.interaction_features(INTERACTIONS, pd.DataFrame(), drift.item_counts(INTERACTIONS.iloc[:0]))
    assert set(features[drift.CATEGORY]) == {drift.UNKNOWN_CATEGORY}
    assert set(features[drift.IS_NEW_ITEM]) == {drift.NEW}
    assert (features[drift.ITEM_POPULARITY] == 0).all()


# Data: real Evidently reports on a small simulated lake ---------------------------------
def test_drift_day_is_flagged_and_reports_are_written(drift_world, drift_result):
    cfg = drift_world.config
    result = drift_result
    assert result["drifted"] is True
    assert result["share"] >= result["threshold"] == drift_world.settings.drift_share_threshold
    assert DRIFT_COLUMNS <= set(result["drifted_columns"])
    assert set(result["column_scores"]) == set(drift.FEATURE_COLUMNS)
    assert result["share"] == pytest.approx(len(result["drifted_columns"]) / len(drift.FEATURE_COLUMNS))
    for column in result["drifted_columns"]:
        assert result["column_scores"][column] >= result["column_thresholds"][column]
    assert result["reference_days"] == [cfg.day(i).isoformat() for i in range(1, cfg.drift_day)]
    assert result["rows_current"] > 0 and result["rows_reference"] > 3 * result["rows_current"]
    assert result["reason"] is None

    out_dir = drift_world.settings.reports_dir / "drift" / f"ds={cfg.day(cfg.drift_day).isoformat()}"
    assert result["html"] == str(out_dir / "report.html")
    assert "<html" in (out_dir / "report.html").read_text(encoding="utf-8")[:2000].lower()
    report = json.loads((out_dir / "report.json").read_text())
    assert {"metrics", "tests"} <= set(report)
    assert drift.summarize_report(report)["drifted_columns"] == result["drifted_columns"]
    assert json.loads((out_dir / "summary.json").read_text()) == result
    json.dumps(result)  # JSON-able for XCom


def test_normal_day_is_not_flagged(drift_world):
    cfg = drift_world.config
    result = drift.check_drift(drift_world.settings, cfg.day(cfg.drift_day - 1), reference_days=2)
    assert result["drifted"] is False
    assert result["share"] < result["threshold"]
    assert not DRIFT_COLUMNS & set(result["drifted_columns"])
    assert result["reference_days"] == [cfg.day(2).isoformat(), cfg.day(3).isoformat()]
    assert (drift_world.settings.reports_dir / "drift" / f"ds={cfg.day(4).isoformat()}" / "report.html").exists()


def test_first_day_has_no_reference_and_is_skipped_without_a_report(drift_world):
    day = drift_world.config.day(1)
    result = drift.check_drift(drift_world.settings, day.isoformat())
    assert result["drifted"] is False and result["share"] is None
    assert "no curated reference data" in result["reason"]
    assert result["html"] is None and result["json"] is None
    out_dir = drift.report_dir(drift_world.settings, day)
    assert sorted(p.name for p in out_dir.iterdir()) == ["summary.json"]


def test_missing_current_partition_is_skipped_with_a_reason(drift_world):
    day = drift_world.config.day(drift_world.config.days + 1)
    result = drift.check_drift(drift_world.settings, day)
    assert result["drifted"] is False and result["rows_current"] == 0
    assert "no curated interactions" in result["reason"]


def test_the_share_threshold_comes_from_settings(drift_world, drift_result, tmp_path):
    settings = Settings(home=tmp_path, drift_share_threshold=0.95)
    shutil.copytree(drift_world.settings.curated_dir, settings.curated_dir)
    result = drift.check_drift(settings, drift_result["ds"])
    assert result["threshold"] == 0.95
    assert result["share"] == drift_result["share"]  # same data, same report
    assert result["drifted"] is False


def test_reference_days_must_be_positive(drift_world):
    with pytest.raises(ValueError, match="reference_days"):
        drift.check_drift(drift_world.settings, drift_world.config.day(3), reference_days=0)


# Calibration on the default simulator (10 days, drift from day 8) -----------------------
@pytest.fixture(scope="module")
def default_world(tmp_path_factory) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("monitoring-default"))
    simulate(SimulationConfig(), settings.curated_dir)
    return settings


@pytest.mark.parametrize("index", [2, 3, 4, 5, 6, 7, 8])
def test_default_simulation_flags_the_drift_day_only(default_world, index):
    cfg = SimulationConfig()
    result = drift.check_drift(default_world, cfg.day(index))
    assert result["drifted"] is (index == cfg.drift_day), result
    if index == cfg.drift_day:
        assert DRIFT_COLUMNS <= set(result["drifted_columns"])
    else:
        assert result["drifted_columns"] in ([], [drift.USER_DAILY_EVENTS]), result


def test_reference_window_skips_missing_days(drift_world, tmp_path):
    settings = Settings(home=tmp_path)
    shutil.copytree(drift_world.settings.curated_dir, settings.curated_dir)
    shutil.rmtree(settings.curated_dir / f"ds={drift_world.config.day(3).isoformat()}")
    window = drift.reference_window(settings, drift_world.config.day(5), 3)
    assert window == [drift_world.config.day(2), drift_world.config.day(4)]
    assert drift.reference_window(settings, dt.date(2024, 1, 1), 7) == []
