"""The drift decision policy: loading and validation, persistence, episodes, cooldown, state."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from monitoring.policy import (
    DEFAULT_POLICY_PATH,
    SIGNAL_GROUPS,
    Decision,
    DriftPolicy,
    MonitorState,
    PolicyError,
    decide,
    load_state,
    save_state,
)

DAY0 = dt.date(2025, 1, 20)
# Values beyond the default thresholds (drifted) and well inside them (quiet).
DRIFT = {"item_popularity": 0.3, "head_share": 0.08, "event_type_missing": 0.12, "quality_proxy": 0.3}
QUIET = {"item_popularity": 0.02, "head_share": 0.01, "event_type_missing": 0.0, "quality_proxy": 0.95}


def signal(name: str, value: float | None, n: int = 5000) -> dict:
    return {
        "name": name,
        "group": SIGNAL_GROUPS[name],
        "metric": "test metric",
        "value": value,
        "before": 0.1,
        "after": 0.4,
        "n_current": n,
        "n_reference": n,
        "detail": "",
    }


def day_signals(**drifted: float | None) -> list[dict]:
    """The four test signals, quiet except the ones given."""
    return [signal(name, drifted.get(name, QUIET[name])) for name in QUIET]


def run(policy: DriftPolicy, days: list[list[dict] | None], state: MonitorState | None = None, start=DAY0):
    """Decide day after day (``None``: the monitor did not run that day)."""
    state = state or MonitorState()
    decisions = []
    for offset, signals in enumerate(days):
        if signals is None:
            continue
        decision, state = decide(policy, start + dt.timedelta(days=offset), signals, state)
        decisions.append(decision)
    return decisions, state


@pytest.fixture(scope="module")
def policy() -> DriftPolicy:
    return DriftPolicy.load()


# --- loading and validation ----------------------------------------------------------


def test_the_default_policy_covers_every_signal_with_a_reason(policy):
    assert set(policy.signals) == set(SIGNAL_GROUPS)
    assert (policy.persistence_days, policy.cooldown_days, policy.clear_days, policy.digest) == (2, 3, 2, False)
    assert {n for n, r in policy.signals.items() if r.kind == "hard"} == {"event_type_missing", "quality_proxy"}
    assert policy.signals["quality_proxy"].direction == "below" and policy.signals["quality_proxy"].limit == 0.5
    assert all(rule.why and rule.enabled and rule.limit > 0 for rule in policy.signals.values())


def test_a_policy_file_overrides_only_what_it_names(tmp_path, policy):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "persistence_days: 3\n"
        "signals:\n"
        "  head_share: {threshold: 0.08}\n"
        "  new_user_share: {enabled: false}\n"
        "  catalog_coverage: {below: 0.2}\n"
    )
    custom = DriftPolicy.load(path)
    assert custom.persistence_days == 3 and custom.cooldown_days == policy.cooldown_days
    assert custom.signals["head_share"].threshold == 0.08
    assert custom.signals["head_share"].min_samples == policy.signals["head_share"].min_samples
    assert not custom.signals["new_user_share"].enabled
    assert custom.signals["catalog_coverage"].direction == "below"  # the default threshold was dropped
    assert custom.signals["item_popularity"] == policy.signals["item_popularity"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("signals:\n  item_populatiry: {threshold: 0.2}\n", "unknown signal(s) ['item_populatiry']"),
        ("signals:\n  head_share: {kind: medium}\n", "signals.head_share.kind"),
        ("signals:\n  head_share: {threshold: -0.1}\n", "greater than 0"),
        ("signals:\n  quality_proxy: {below: -1}\n", "greater than or equal to 0"),
        ("signals:\n  head_share: {treshold: 0.1}\n", "signals.head_share.treshold: Extra inputs"),
        ("signals:\n  head_share: {min_samples: -5}\n", "signals.head_share.min_samples"),
        ("signals:\n  head_share: {immediate_at: 0.01}\n", "not beyond the threshold"),
        ("signals:\n  event_type_missing: {immediate_at: 0.5}\n", "soft signals only"),
        ("persistence_days: 0\n", "persistence_days"),
        ("cooldown_days: -1\n", "cooldown_days"),
        ("digests: true\n", "digests: Extra inputs"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_invalid_policies_are_rejected_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as error:
        DriftPolicy.load(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_a_rule_needs_exactly_one_threshold():
    with pytest.raises(PolicyError, match="exactly one of `threshold`"):
        DriftPolicy.from_mapping({"signals": {"head_share": {"threshold": 0.1, "below": 0.5}}})
    with pytest.raises(PolicyError, match="exactly one of `threshold`"):
        DriftPolicy.from_mapping({"signals": {"head_share": {"kind": "soft"}}})


def test_the_packaged_default_is_the_documented_yaml():
    assert DEFAULT_POLICY_PATH.name == "drift_policy.yaml" and DEFAULT_POLICY_PATH.is_file()


# --- persistence, hard and immediate signals ----------------------------------------


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
    policy = DriftPolicy.load().model_copy(update={"persistence_days": persistence_days})
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


@pytest.mark.parametrize("value, state", [(0.95, "ok"), (0.51, "ok"), (0.5, "fired"), (0.1, "fired"), (0.0, "fired")])
def test_quality_proxy_drifts_when_it_falls_to_its_below_threshold(policy, value, state):
    (decision,), _ = run(policy, [day_signals(quality_proxy=value)])
    verdict = decision.verdict("quality_proxy")
    assert verdict.state == state and verdict.direction == "below"
    assert ("quality_proxy" in decision.fired) == (state == "fired")
    json.dumps(decision.to_dict())  # an infinite ratio (value 0) stays valid JSON


def test_insufficient_samples_never_count(policy):
    small = [signal("event_type_missing", 0.9, n=20), signal("item_popularity", 0.9, n=20)]
    decisions, state = run(policy, [small] * 4)
    assert all(d.status == "ok" and not d.fired and not d.watch for d in decisions)
    assert decisions[-1].insufficient == ["event_type_missing", "item_popularity"]
    assert "insufficient samples (current 20, reference 20; needs 100 each)" in decisions[-1].explanation[0]
    # One side short is enough to skip.
    one_side = signal("event_type_missing", 0.9) | {"n_reference": 10}
    (decision,), _ = run(policy, [[one_side]])
    assert decision.insufficient == ["event_type_missing"] and decision.status == "ok"


def test_quality_proxy_needs_no_reference_sample_but_enough_current_users(policy):
    # monitoring.signals reports n_reference 0 for quality_proxy: its reference is an offline figure.
    offline = signal("quality_proxy", 0.2) | {"n_reference": 0}
    (decision,), _ = run(policy, [[offline]])
    assert decision.fired == ["quality_proxy"]
    (decision,), _ = run(policy, [[offline | {"n_current": 30}]])
    assert decision.insufficient == ["quality_proxy"]
    assert "needs 100 current, 0 reference" in decision.verdict("quality_proxy").line


def test_the_policy_knows_exactly_the_signals_the_monitor_produces():
    from monitoring.signals import DISPLAY_THRESHOLDS, SIGNAL_METRICS

    # Every signal the monitor computes has a metric, a display mark and a rule here.
    assert set(SIGNAL_METRICS) == set(DISPLAY_THRESHOLDS) == set(SIGNAL_GROUPS)
    assert set(DriftPolicy.load().signals) == set(SIGNAL_GROUPS)


def test_a_value_that_is_not_computable_is_skipped_and_breaks_no_streak(policy):
    decisions, _ = run(
        policy, [day_signals(item_popularity=0.3), day_signals(item_popularity=None), day_signals(item_popularity=0.3)]
    )
    assert [d.status for d in decisions] == ["watch", "ok", "alert"]
    skipped = decisions[1].verdict("item_popularity")
    assert skipped.state == "skipped" and "not computable" in skipped.line
    assert "item_popularity" not in decisions[1].insufficient + decisions[1].fired + decisions[1].watch


def test_disabled_and_unknown_signals_never_count(policy):
    custom = DriftPolicy.load().model_copy(
        update={
            "signals": policy.signals
            | {"event_type_missing": policy.signals["head_share"].model_copy(update={"enabled": False})}
        }
    )
    odd = {
        "name": "brand_new_signal",
        "group": "data",
        "metric": "m",
        "value": 99.0,
        "before": 0,
        "after": 1,
        "n_current": 5000,
        "n_reference": 5000,
        "detail": "",
    }
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
    policy = DriftPolicy.load().model_copy(update={"clear_days": 1})  # cooldown_days 3
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
    policy = DriftPolicy.load().model_copy(update={"cooldown_days": 0, "clear_days": 1})
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


def test_state_and_decision_round_trip_through_json(tmp_path, policy):
    decisions, state = run(policy, [day_signals(item_popularity=0.3, quality_proxy=0.0)] * 2)
    path = tmp_path / "monitor" / "state.json"
    assert load_state(path) == MonitorState()  # no file yet: a fresh state
    save_state(path, state)
    assert load_state(path) == state
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    payload = json.loads(json.dumps(decisions[-1].to_dict()))
    assert payload["ds"] == "2025-01-21" and payload["status"] == "ongoing"
    restored = Decision.from_dict(payload)
    assert dataclasses.replace(restored, verdicts=[]) == dataclasses.replace(decisions[-1], verdicts=[])
    assert [v.name for v in restored.verdicts] == [v.name for v in decisions[-1].verdicts]


def test_history_is_pruned_to_a_bounded_window(policy):
    _, state = run(policy, [day_signals()])
    _, state = decide(policy, DAY0 + dt.timedelta(days=365), day_signals(), state)
    assert list(state.history) == ["2026-01-20"]
