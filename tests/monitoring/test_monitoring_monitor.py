"""The daily drift monitor end to end on the simulator's drift scenarios.

Each scenario's partitions go straight into ``curated/``; nothing is published, so the
reference is the ``window_days`` days before each monitored day and only the data signals
and the policy are under test here (the model signals and the quality proxy have their
own tests; the benchmark runs the whole loop with a trained champion).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from graphrec.settings import Settings
from ingest.scenarios import scenario, simulate_scenario
from monitoring.monitor import MonitorResult, monitor_day

WINDOW = 14
DRIFT_DAY = 19  # a Sunday: 2025-01-19
SIZE = {"n_users": 300, "n_items": 200, "events_per_day": 1500}


def _run(tmp_path_factory, name: str, first: int, last: int, *, days: int = 24) -> tuple[Settings, list[MonitorResult]]:
    sc = scenario(name, days=days, drift_day=DRIFT_DAY, **SIZE)
    settings = Settings(home=tmp_path_factory.mktemp(name), training={"window_days": WINDOW})
    simulate_scenario(sc, settings.curated_dir)
    results = [monitor_day(settings, sc.config.day(index)) for index in range(first, last + 1)]
    return settings, results


def _alert_days(results: list[MonitorResult]) -> list[int]:
    return [r.ds.day for r in results if r.status == "alert"]


@pytest.mark.parametrize(
    ("name", "signals", "within"),
    [
        ("popularity_shift", {"item_popularity", "head_share"}, 0),
        ("new_items", {"new_item_share", "item_popularity"}, 0),  # new items have no reference count
        ("bot_burst", {"user_concentration"}, 1),
        ("broken_feed", {"event_type_missing"}, 0),
        ("category_drift", {"category_mix"}, 3),
    ],
)
def test_each_drift_scenario_is_detected_in_time_and_not_before(tmp_path_factory, name, signals, within):
    _, results = _run(tmp_path_factory, name, DRIFT_DAY - 4, DRIFT_DAY + within)
    alerts = _alert_days(results)
    assert alerts and alerts[0] >= DRIFT_DAY, (name, alerts)
    assert alerts[0] <= DRIFT_DAY + within, (name, alerts)
    fired = {s for r in results if r.ds.day >= DRIFT_DAY for s in r.decision.fired}
    assert fired & signals, (name, fired)


def test_a_stable_world_with_weekly_seasonality_stays_silent(tmp_path_factory):
    # Two full weeks monitored, two weekends among them: weekday matching keeps them quiet.
    _, results = _run(tmp_path_factory, "stable", WINDOW + 1, WINDOW + 14, days=WINDOW + 14)
    assert [r.status for r in results if r.status not in ("ok", "watch")] == []
    assert not any(r.decision.send_email or r.decision.trigger_retrain for r in results)


def test_one_episode_one_email_one_retrain_with_its_reason(tmp_path_factory):
    settings, results = _run(tmp_path_factory, "new_items", DRIFT_DAY - 1, DRIFT_DAY + 4)
    emails = [r for r in results if r.decision.send_email]
    retrains = [r for r in results if r.decision.trigger_retrain]
    assert len(emails) == 1 and emails[0].ds.isoformat() == f"2025-01-{DRIFT_DAY}"
    # Nobody retrains here, so the episode goes on: the next trigger waits out the cooldown (3 days).
    assert [r.ds.isoformat() for r in retrains] == [f"2025-01-{DRIFT_DAY}", f"2025-01-{DRIFT_DAY + 3}"]
    decision = retrains[0].decision
    assert "item_popularity" in decision.retrain_reason and decision.episode_id == f"drift-2025-01-{DRIFT_DAY}"
    assert all(r.decision.episode_id == decision.episode_id for r in results[1:])
    # What the decision rests on is on disk: reports, signals, the decision and the state.
    day = settings.reports_dir / "drift" / f"ds=2025-01-{DRIFT_DAY}"
    assert {"data.html", "data.json", "signals.json", "decision.json", "summary.json"} <= {
        p.name for p in day.iterdir()
    }
    assert json.loads((day / "decision.json").read_text())["status"] == "alert"
    state = json.loads((settings.reports_dir / "drift" / "state.json").read_text())
    assert state["episode"]["id"] == decision.episode_id


def test_rerunning_a_day_repeats_no_action(tmp_path_factory):
    settings, results = _run(tmp_path_factory, "broken_feed", DRIFT_DAY - 1, DRIFT_DAY)
    assert results[-1].decision.send_email and results[-1].decision.trigger_retrain
    again = monitor_day(settings, dt.date(2025, 1, DRIFT_DAY))
    assert again.status == "alert" and again.decision.fired == results[-1].decision.fired
    assert not again.decision.send_email and not again.decision.trigger_retrain


def test_a_day_without_reference_is_skipped_with_its_reason(tmp_path_factory):
    sc = scenario("stable", days=3, drift_day=2, **SIZE)
    settings = Settings(home=tmp_path_factory.mktemp("first-day"))
    simulate_scenario(sc, settings.curated_dir)
    result = monitor_day(settings, sc.config.day(1))
    assert result.status == "skipped" and "no curated reference" in result.reason
    assert result.decision is None
    summary = json.loads((result.report_dir / "summary.json").read_text())
    assert summary == result.to_xcom() and MonitorResult.from_xcom(summary) == result


def test_the_result_crosses_xcom_unchanged_and_is_the_day_s_summary(tmp_path_factory):
    settings, results = _run(tmp_path_factory, "broken_feed", DRIFT_DAY, DRIFT_DAY)
    [result] = results
    xcom = json.loads(json.dumps(result.to_xcom()))  # what the alert and retrain tasks receive
    assert MonitorResult.from_xcom(xcom) == result
    assert json.loads((result.report_dir / "summary.json").read_text()) == xcom
    assert json.loads((result.report_dir / "decision.json").read_text()) == xcom["decision"]
    assert xcom["html"] == str(result.report_dir / "data.html") and xcom["status"] == result.decision.status
    assert [s["name"] for s in xcom["signals"]][:2] == ["user_activity", "user_concentration"]
