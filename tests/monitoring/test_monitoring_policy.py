"""The drift decision (monitoring.policy.decide): the main signal, episodes, one email,
retraining and its cooldown, re-runs of a day, and the decision's JSON form."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from policy_days import DAY0, day_signals, run

from monitoring.policy import Decision, decide
from monitoring.policy_files import load_policy
from monitoring.policy_state import MonitorState

# --- the main signal -------------------------------------------------------------------


def test_the_main_signal_is_the_one_furthest_beyond_its_threshold(policy):
    # event_type_missing 0.06/0.05 = 1.2x, quality_proxy 0.5/0.2 = 2.5x (low is bad).
    (decision,), _ = run(policy, [day_signals(event_type_missing=0.06, quality_proxy=0.2)])
    assert sorted(decision.fired) == ["event_type_missing", "quality_proxy"]
    assert decision.main_signal == "quality_proxy"
    assert decision.verdict("quality_proxy").ratio == pytest.approx(2.5)


def test_on_a_critical_day_the_main_signal_is_a_hard_one(policy):
    # item_popularity 0.6/0.15 = 4x (soft, immediate) but event_type_missing is hard: 1.2x.
    (decision,), _ = run(policy, [day_signals(event_type_missing=0.06, item_popularity=0.6)])
    assert decision.severity == "critical" and decision.main_signal == "event_type_missing"
    at_once = policy.model_copy(update={"persistence_days": 1})
    (decision,), _ = run(at_once, [day_signals(head_share=0.5, item_popularity=0.6)])  # soft only: largest ratio
    assert decision.severity == "warning" and decision.main_signal == "head_share"  # 10x beats 4x


# --- episodes ------------------------------------------------------------------------


def test_an_episode_sends_exactly_one_email_across_its_drifted_days(policy):
    days = [day_signals(item_popularity=0.3)] * 2 + [day_signals(item_popularity=0.3, head_share=0.09)] * 4
    decisions, state = run(policy, days)
    assert [d.status for d in decisions] == ["watch", "alert", "ongoing", "ongoing", "ongoing", "ongoing"]
    assert [d.send_email for d in decisions] == [False, True, False, False, False, False]
    assert {d.episode_id for d in decisions[1:]} == {"drift-2025-01-21"}
    assert state.episode.signals == ["head_share", "item_popularity"] and state.episode.email_sent


def test_an_episode_closes_after_clear_days_and_a_later_drift_opens_a_new_one(policy):
    hard = day_signals(event_type_missing=0.2)
    decisions, state = run(policy, [hard, hard, day_signals(), day_signals(), day_signals(), hard])
    assert [d.status for d in decisions] == ["alert", "ongoing", "recovering", "closed", "ok", "alert"]
    assert [d.send_email for d in decisions] == [True, False, False, False, False, True]
    assert decisions[3].episode_id == "drift-2025-01-20" and decisions[4].episode_id is None
    assert decisions[5].episode_id == "drift-2025-01-25" == state.episode.id


def test_drift_on_a_recovering_day_keeps_the_episode_open(policy):
    hard = day_signals(event_type_missing=0.2)
    decisions, _ = run(policy, [hard, day_signals(), day_signals(head_share=0.09), day_signals(), day_signals()])
    assert [d.status for d in decisions] == ["alert", "recovering", "ongoing", "recovering", "closed"]
    assert sum(d.send_email for d in decisions) == 1


# --- retraining and cooldown ---------------------------------------------------------


def test_no_second_retrain_within_the_cooldown_even_for_a_new_episode():
    policy = load_policy().model_copy(update={"clear_days": 1})  # cooldown_days 3
    hard = day_signals(event_type_missing=0.2)
    decisions, _ = run(policy, [hard, day_signals(), hard, hard])
    first, closed, reopened, later = decisions
    assert first.trigger_retrain and first.cooldown_until == dt.date(2025, 1, 23)
    assert closed.status == "closed" and closed.cooldown_until == dt.date(2025, 1, 23)
    assert reopened.status == "alert" and reopened.send_email and not reopened.trigger_retrain
    assert reopened.cooldown_until == dt.date(2025, 1, 23) and reopened.retrain_reason is None
    assert "held back by the cooldown until 2025-01-23" in reopened.summary
    # The held-back retrain happens once the cooldown is over, if the episode still fires.
    assert later.status == "ongoing" and later.trigger_retrain and "cooldown over" in later.retrain_reason


def test_a_new_signal_in_an_open_episode_triggers_retraining_after_the_cooldown(policy):
    quality = day_signals(event_type_missing=0.2)
    both = day_signals(event_type_missing=0.2, quality_proxy=0.1)
    decisions, _ = run(policy, [quality, quality, quality, both, both])
    assert [d.trigger_retrain for d in decisions] == [True, False, False, True, False]
    assert "new in episode drift-2025-01-20: quality_proxy" in decisions[3].retrain_reason
    assert decisions[1].cooldown_until == dt.date(2025, 1, 23) and decisions[4].cooldown_until == dt.date(2025, 1, 26)


def test_a_zero_cooldown_allows_a_trigger_every_day(policy):
    policy = load_policy().model_copy(update={"cooldown_days": 0, "clear_days": 1})
    hard = day_signals(event_type_missing=0.2)
    decisions, _ = run(policy, [hard, day_signals(), hard])
    assert [d.trigger_retrain for d in decisions] == [True, False, True]
    assert all(d.cooldown_until is None for d in decisions)


# --- re-runs and state ---------------------------------------------------------------


def test_re_running_a_day_replaces_it_instead_of_counting_it_twice(policy):
    drifted = day_signals(item_popularity=0.3)
    first, state = decide(policy, DAY0, drifted, MonitorState())
    again, state_again = decide(policy, DAY0, drifted, state)
    assert first.status == again.status == "watch"  # streak 1, not 2
    assert state_again == state


def test_re_running_the_alert_day_repeats_no_action(policy):
    hard = day_signals(event_type_missing=0.2)
    first, state = decide(policy, DAY0, hard, MonitorState())
    again, state_again = decide(policy, DAY0, hard, state)
    assert first.send_email and first.trigger_retrain
    assert (again.status, again.fired, again.episode_id) == (first.status, first.fired, first.episode_id)
    assert not again.send_email and not again.trigger_retrain
    assert again.cooldown_until == first.cooldown_until
    assert any("already sent" in line for line in again.explanation)
    assert state_again == state
    # A re-run with fixed data (nothing drifted) withdraws the episode it opened.
    fixed, state_fixed = decide(policy, DAY0, day_signals(), state)
    assert fixed.status == "ok" and state_fixed.episode is None


def test_re_running_an_earlier_day_keeps_the_later_state_and_repeats_no_action(policy):
    hard = day_signals(event_type_missing=0.2)
    decisions, state = run(policy, [hard, hard, hard])
    again, state_again = decide(policy, DAY0, hard, state)
    assert again.status == "alert" and not again.send_email and not again.trigger_retrain
    assert state_again.episode == state.episode and state_again.last_trigger == state.last_trigger
    assert "re-run of 2025-01-20 after later days" in again.explanation[-1]


def test_a_decision_round_trips_through_json(policy):
    decisions, state = run(policy, [day_signals(item_popularity=0.3, quality_proxy=0.0)] * 2)
    payload = json.loads(json.dumps(decisions[-1].to_xcom()))
    assert payload["ds"] == "2025-01-21" and payload["status"] == "ongoing"
    restored = Decision.from_xcom(payload)
    assert dataclasses.replace(restored, verdicts=[]) == dataclasses.replace(decisions[-1], verdicts=[])
    assert [v.name for v in restored.verdicts] == [v.name for v in decisions[-1].verdicts]


def test_history_is_pruned_to_a_bounded_window(policy):
    _, state = run(policy, [day_signals()])
    _, state = decide(policy, DAY0 + dt.timedelta(days=365), day_signals(), state)
    assert list(state.history) == ["2026-01-20"]
