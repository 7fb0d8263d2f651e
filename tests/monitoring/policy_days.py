"""Days of drift signals for the policy tests: quiet or drifted values of four signals."""

from __future__ import annotations

import datetime as dt

from monitoring.policy import decide
from monitoring.policy_rules import DriftPolicy
from monitoring.policy_state import MonitorState
from monitoring.signal_table import SPECS
from monitoring.signal_values import Signal

DAY0 = dt.date(2025, 1, 20)


DRIFT = {"item_popularity": 0.3, "head_share": 0.08, "event_type_missing": 0.12, "quality_proxy": 0.3}


QUIET = {"item_popularity": 0.02, "head_share": 0.01, "event_type_missing": 0.0, "quality_proxy": 0.95}


def signal(name: str, value: float | None, n: int = 5000) -> Signal:
    return Signal(
        name=name,
        group=SPECS[name].group,
        metric="test metric",
        value=value,
        before=0.1,
        after=0.4,
        n_current=n,
        n_reference=n,
        detail="",
    )


def day_signals(**drifted: float | None) -> list[Signal]:
    """The four test signals, quiet except the ones given."""
    return [signal(name, drifted.get(name, QUIET[name])) for name in QUIET]


def run(policy: DriftPolicy, days: list[list[Signal] | None], state: MonitorState | None = None, start=DAY0):
    """Decide day after day (``None``: the monitor did not run that day)."""
    state = state or MonitorState()
    decisions = []
    for offset, signals in enumerate(days):
        if signals is None:
            continue
        decision, state = decide(policy, start + dt.timedelta(days=offset), signals, state)
        decisions.append(decision)
    return decisions, state
