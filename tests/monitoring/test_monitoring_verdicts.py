"""How each signal counts (monitoring.verdicts), seen through the day's decision:
persistence of soft signals, hard and immediate signals, sample sizes, values that are
not computable, disabled and unknown signals, and the explanation lines."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from policy_days import DAY0, day_signals, run, signal

from monitoring.policy import decide
from monitoring.policy_files import load_policy
from monitoring.policy_state import MonitorState
from monitoring.signal_values import Signal


def test_a_soft_signal_is_watched_on_day_one_and_alerts_on_day_two(policy):
    (first, second), _ = run(policy, [day_signals(item_popularity=0.3)] * 2)
    assert (first.status, first.watch, first.fired, first.send_email) == ("watch", ["item_popularity"], [], False)
    assert not first.trigger_retrain and first.episode_id is None
    assert (second.status, second.fired, second.watch) == ("alert", ["item_popularity"], [])
    assert second.send_email and second.trigger_retrain
    assert second.severity == "warning" and second.main_signal == "item_popularity"
    assert second.episode_id == "drift-2025-01-21" and second.episode_since == dt.date(2025, 1, 21)
    assert "2025-01-21" in second.retrain_reason and "item_popularity 0.3 >= 0.15" in second.retrain_reason


@pytest.mark.parametrize("persistence_days", [1, 3])
def test_persistence_days_is_the_number_of_drifted_days_needed(persistence_days):
    policy = load_policy().model_copy(update={"persistence_days": persistence_days})
    decisions, _ = run(policy, [day_signals(head_share=0.09)] * 3)
    assert [d.status for d in decisions].index("alert") == persistence_days - 1


def test_a_quiet_monitored_day_resets_the_streak_but_an_unmonitored_gap_does_not(policy):
    drifted = day_signals(item_popularity=0.3)
    decisions, _ = run(policy, [drifted, day_signals(), drifted])
    assert [d.status for d in decisions] == ["watch", "ok", "watch"]
    decisions, _ = run(policy, [drifted, None, None, drifted])
    assert [d.status for d in decisions] == ["watch", "alert"]


def test_a_hard_signal_alerts_at_once_as_critical(policy):
    (decision,), _ = run(policy, [day_signals(event_type_missing=0.12, item_popularity=0.3)])
    assert decision.status == "alert" and decision.send_email and decision.trigger_retrain
    assert decision.fired == ["event_type_missing"] and decision.watch == ["item_popularity"]
    assert decision.severity == "critical" and decision.main_signal == "event_type_missing"


def test_a_soft_signal_beyond_immediate_at_fires_at_once(policy):
    assert policy.signals["item_popularity"].immediate_at == 0.5
    (decision,), _ = run(policy, [day_signals(item_popularity=0.6)])
    assert decision.status == "alert" and decision.fired == ["item_popularity"] and decision.severity == "warning"
    assert "immediate_at" in decision.verdict("item_popularity").line


@pytest.mark.parametrize("value, state", [(0.95, "ok"), (0.51, "ok"), (0.5, "fired"), (0.1, "fired"), (0.0, "fired")])
def test_quality_proxy_drifts_when_it_falls_to_its_below_threshold(policy, value, state):
    (decision,), _ = run(policy, [day_signals(quality_proxy=value)])
    verdict = decision.verdict("quality_proxy")
    assert verdict.state == state and verdict.direction == "below"
    assert ("quality_proxy" in decision.fired) == (state == "fired")
    json.dumps(decision.to_xcom())  # an infinite ratio (value 0) stays valid JSON


def test_insufficient_samples_never_count(policy):
    small = [signal("event_type_missing", 0.9, n=20), signal("item_popularity", 0.9, n=20)]
    decisions, state = run(policy, [small] * 4)
    assert all(d.status == "ok" and not d.fired and not d.watch for d in decisions)
    assert decisions[-1].insufficient == ["event_type_missing", "item_popularity"]
    assert "insufficient samples (current 20, reference 20; needs 100 each)" in decisions[-1].explanation[0]
    # One side short is enough to skip.
    one_side = dataclasses.replace(signal("event_type_missing", 0.9), n_reference=10)
    (decision,), _ = run(policy, [[one_side]])
    assert decision.insufficient == ["event_type_missing"] and decision.status == "ok"


def test_quality_proxy_needs_no_reference_sample_but_enough_current_users(policy):
    # monitoring.signals reports n_reference 0 for quality_proxy: its reference is an offline figure.
    offline = dataclasses.replace(signal("quality_proxy", 0.2), n_reference=0)
    (decision,), _ = run(policy, [[offline]])
    assert decision.fired == ["quality_proxy"]
    (decision,), _ = run(policy, [[dataclasses.replace(offline, n_current=30)]])
    assert decision.insufficient == ["quality_proxy"]
    assert "needs 100 current, 0 reference" in decision.verdict("quality_proxy").line


def test_a_value_that_is_not_computable_is_skipped_and_breaks_no_streak(policy):
    decisions, _ = run(
        policy, [day_signals(item_popularity=0.3), day_signals(item_popularity=None), day_signals(item_popularity=0.3)]
    )
    assert [d.status for d in decisions] == ["watch", "ok", "alert"]
    skipped = decisions[1].verdict("item_popularity")
    assert skipped.state == "skipped" and "not computable" in skipped.line
    assert "item_popularity" not in decisions[1].insufficient + decisions[1].fired + decisions[1].watch


def test_disabled_and_unknown_signals_never_count(policy):
    custom = load_policy().model_copy(
        update={
            "signals": policy.signals
            | {"event_type_missing": policy.signals["head_share"].model_copy(update={"enabled": False})}
        }
    )
    odd = Signal(
        name="brand_new_signal",
        group="data",
        metric="m",
        value=99.0,
        before=0,
        after=1,
        n_current=5000,
        n_reference=5000,
        detail="",
    )
    (decision,), _ = run(custom, [day_signals(event_type_missing=0.9) + [odd]])
    assert decision.status == "ok" and not decision.fired
    assert decision.verdict("event_type_missing").state == "disabled"
    assert decision.verdict("brand_new_signal").state == "unknown"


def test_the_explanation_has_a_line_per_signal_with_value_threshold_and_streak(policy):
    (_, decision), _ = run(policy, [day_signals(item_popularity=0.3)] * 2)
    lines = {line.split(" ")[0].rstrip(":"): line for line in decision.explanation}
    assert lines["item_popularity"] == (
        "item_popularity (data, soft): 0.3 >= threshold 0.15, drifted 2 monitored days in a row (needs 2): FIRED"
    )
    assert lines["head_share"] == "head_share (data, soft): 0.01 < threshold 0.05: within range"
    assert "(low is bad)" in lines["quality_proxy"]
    assert lines["user_activity"] == "user_activity: not reported by the monitor today"


def test_a_signal_reported_twice_is_an_error(policy):
    with pytest.raises(ValueError, match="reported twice"):
        decide(policy, DAY0, [signal("head_share", 0.1), signal("head_share", 0.2)], MonitorState())
