"""The drift policy's files (monitoring.policy_files): the packaged default, a user's
overrides, clear errors for a bad file, and the state file."""

from __future__ import annotations

import pytest
from policy_days import day_signals, run

from monitoring.policy_files import DEFAULT_POLICY_PATH, load_policy, load_state, save_state
from monitoring.policy_rules import PolicyError
from monitoring.policy_state import MonitorState
from monitoring.signal_table import SIGNAL_NAMES


def test_the_default_policy_covers_every_signal_with_a_reason(policy):
    assert set(policy.signals) == set(SIGNAL_NAMES)
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
    custom = load_policy(path)
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
        load_policy(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_the_packaged_default_is_the_documented_yaml():
    assert DEFAULT_POLICY_PATH.name == "drift_policy.yaml" and DEFAULT_POLICY_PATH.is_file()


def test_state_round_trips_through_its_file(tmp_path, policy):
    decisions, state = run(policy, [day_signals(item_popularity=0.3, quality_proxy=0.0)] * 2)
    path = tmp_path / "monitor" / "state.json"
    assert load_state(path) == MonitorState()  # no file yet: a fresh state
    save_state(path, state)
    assert load_state(path) == state
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
