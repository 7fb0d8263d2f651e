"""The drift policy's rules (monitoring.policy_rules): validation and override merging, pure."""

from __future__ import annotations

import pytest

from monitoring.policy_rules import DriftPolicy, PolicyError, merge_overrides


def test_a_rule_needs_exactly_one_threshold():
    with pytest.raises(PolicyError, match="exactly one of `threshold`"):
        DriftPolicy.from_mapping({"signals": {"head_share": {"threshold": 0.1, "below": 0.5}}})
    with pytest.raises(PolicyError, match="exactly one of `threshold`"):
        DriftPolicy.from_mapping({"signals": {"head_share": {"kind": "soft"}}})


def test_overrides_merge_rule_by_rule_and_a_switched_direction_drops_the_other():
    base = {"persistence_days": 2, "signals": {"head_share": {"threshold": 0.05, "min_samples": 100}}}
    merged = merge_overrides(base, {"persistence_days": 3, "signals": {"head_share": {"below": 0.2}}})
    assert merged == {"persistence_days": 3, "signals": {"head_share": {"below": 0.2, "min_samples": 100}}}
    assert base["signals"]["head_share"] == {"threshold": 0.05, "min_samples": 100}  # not modified
    policy = DriftPolicy.from_mapping(merged)
    assert policy.signals["head_share"].direction == "below" and policy.rule("user_activity") is None
