"""The signal table (monitoring.signal_table) is the one list of drift signals: the default
policy, its YAML file and the drift documentation name exactly its signals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitoring.signal_table import SIGNAL_NAMES, SIGNALS, SPECS

DRIFT_DOC = Path(__file__).resolve().parents[2] / "docs" / "drift.md"


def test_every_signal_is_declared_once_with_a_group_metric_and_mark():
    assert len(SIGNALS) == len(SPECS) == len(SIGNAL_NAMES) == 13
    assert tuple(SPECS) == SIGNAL_NAMES == tuple(spec.name for spec in SIGNALS)
    for spec in SIGNALS:
        assert spec.group in ("data", "model", "quality")
        assert spec.metric and spec.measures and spec.samples and spec.display_threshold >= 0
    assert [spec.name for spec in SIGNALS if spec.low_is_bad] == ["quality_proxy"]


def test_the_policy_knows_exactly_the_signals_the_monitor_produces(policy):
    # Every signal the monitor computes has a rule, in the table's order, and "low is bad"
    # signals are the ones judged with `below`.
    assert list(policy.signals) == list(SIGNAL_NAMES)
    assert {name for name, rule in policy.signals.items() if rule.direction == "below"} == {
        spec.name for spec in SIGNALS if spec.low_is_bad
    }


@pytest.mark.parametrize("group", ["data", "model", "quality"])
def test_the_drift_documentation_lists_each_group_s_signals(group):
    row = next(line for line in DRIFT_DOC.read_text().splitlines() if line.startswith(f"| {group} |"))
    assert set(re.findall(r"`([a-z_]+)`", row)) == {spec.name for spec in SIGNALS if spec.group == group}
