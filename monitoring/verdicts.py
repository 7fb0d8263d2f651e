"""How each signal counts on one day: the per-signal half of the drift policy.

:func:`evaluate_signals` reads the day's signals against the policy's rules and the
history of earlier monitored days and returns one :class:`Verdict` per signal:

* a signal is **drifted** when its value reaches its threshold (``value >= threshold``,
  or ``value <= below`` for "low is bad" signals) with enough samples on both sides;
* a drifted **hard** signal counts (*fires*) at once; a drifted **soft** signal fires
  once it has been drifted on ``persistence_days`` consecutive monitored days, or at
  once if it reaches ``immediate_at``; until then it is on **watch**;
* streaks count *monitored* days: a day the monitor did not run breaks nothing, a
  monitored day where the signal was measured and not drifted resets it, and a day
  where it was not measurable (too few samples, no value) is skipped.

Each verdict carries one explanation line (value vs threshold, kind, streak, counted or
not). Pure: no files, no mail.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from monitoring.policy_rules import DriftPolicy, SignalRule
from monitoring.signal_table import SPECS
from monitoring.signal_values import Signal


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How one signal counted today; ``line`` is its explanation.

    ``state`` is ``fired`` (counts today), ``watch`` (drifted, does not count yet),
    ``ok`` (measured, within range), ``insufficient`` (too few samples), ``skipped``
    (no value today), ``disabled`` (off in the policy), ``unknown`` (not in the policy)
    or ``missing`` (in the policy, not reported). ``ratio`` is the effect relative to
    the threshold (:meth:`~monitoring.policy_rules.SignalRule.ratio`).
    """

    name: str
    group: str | None
    kind: str | None
    metric: str | None
    value: float | None
    threshold: float | None
    direction: str | None
    state: str  # fired | watch | ok | insufficient | skipped | disabled | unknown | missing
    streak: int
    ratio: float | None
    before: Any
    after: Any
    line: str

    @property
    def drifted(self) -> bool:
        return self.state in ("fired", "watch")

    def comparison(self) -> str:
        """``name value op threshold``, e.g. ``item_popularity 0.3 >= 0.15`` (retrain reasons)."""
        op = ">=" if self.direction == "above" else "<="
        return f"{self.name} {format_number(self.value)} {op} {format_number(self.threshold)}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["ratio"] is not None and not math.isfinite(data["ratio"]):
            data["ratio"] = None
        return data


def evaluate_signals(
    policy: DriftPolicy, signals: Iterable[Signal], history: Mapping[str, Any], past_days: list[str]
) -> list[Verdict]:
    """One :class:`Verdict` per reported signal, then one per enabled rule not reported.

    Args:
        policy (DriftPolicy): the rules.
        signals (Iterable[Signal]): the day's signals.
        history (Mapping): the state's per-day records (``observed``, ``drifted``).
        past_days (list[str]): the ISO days of ``history`` before today, newest first
            (a soft signal's streak counts back through them).

    Raises:
        ValueError: a signal is reported twice.
    """
    verdicts: list[Verdict] = []
    seen: set[str] = set()
    for signal in signals:
        name = str(signal.name)
        if name in seen:
            raise ValueError(f"signal {name!r} reported twice")
        seen.add(name)
        verdicts.append(_verdict(policy, signal, history, past_days))
    for name, rule in policy.signals.items():
        if rule.enabled and name not in seen:
            verdicts.append(
                Verdict(
                    name=name,
                    group=SPECS[name].group,
                    kind=rule.kind,
                    metric=None,
                    value=None,
                    threshold=rule.limit,
                    direction=rule.direction,
                    state="missing",
                    streak=0,
                    ratio=None,
                    before=None,
                    after=None,
                    line=f"{name}: not reported by the monitor today",
                )
            )
    return verdicts


def _verdict(policy: DriftPolicy, signal: Signal, history: Mapping[str, Any], past_days: list[str]) -> Verdict:
    name = str(signal.name)
    value = signal.value
    value = None if value is None or not math.isfinite(float(value)) else float(value)
    rule = policy.rule(name)
    group = signal.group or (SPECS[name].group if name in SPECS else None)
    base: dict[str, Any] = dict(
        name=name,
        group=group,
        metric=signal.metric,
        value=value,
        before=signal.before,
        after=signal.after,
    )
    if rule is None:
        return Verdict(
            **base,
            kind=None,
            threshold=None,
            direction=None,
            state="unknown",
            streak=0,
            ratio=None,
            line=f"{name}: not in the drift policy, ignored (value {format_number(value)})",
        )
    base |= dict(kind=rule.kind, threshold=rule.limit, direction=rule.direction)
    head = f"{name} ({group}, {rule.kind})"

    def verdict(state: str, line: str, streak: int = 0) -> Verdict:
        ratio = rule.ratio(value) if value is not None else None
        return Verdict(**base, state=state, streak=streak, ratio=ratio, line=f"{head}: {line}")

    if not rule.enabled:
        return verdict("disabled", f"value {format_number(value)}; disabled in the policy, not counted")
    n_current, n_reference = int(signal.n_current or 0), int(signal.n_reference or 0)
    min_reference = rule.min_samples if rule.min_reference_samples is None else rule.min_reference_samples
    if n_current < rule.min_samples or n_reference < min_reference:
        needs = (
            f"{rule.min_samples} each"
            if min_reference == rule.min_samples
            else (f"{rule.min_samples} current, {min_reference} reference")
        )
        return verdict(
            "insufficient",
            f"insufficient samples (current {n_current}, reference {n_reference}; needs {needs}), not counted",
        )
    if value is None:
        detail = f" ({signal.detail})" if signal.detail else ""
        return verdict("skipped", f"not computable today{detail}, skipped")
    compared = _compare_rule(rule, value)
    if not rule.reaches(value):
        return verdict("ok", f"{compared}: within range")
    if rule.kind == "hard":
        return verdict("fired", f"{compared}: FIRED (hard signals count on the first drifted day)", 1)
    streak = 1
    for day in past_days:
        record = history[day]
        if name not in record.get("observed", ()):
            continue
        if name not in record.get("drifted", ()):
            break
        streak += 1
    needed = policy.persistence_days
    if rule.immediate_at is not None and rule.reaches(value, rule.immediate_at):
        return verdict(
            "fired", f"{compared}, beyond immediate_at {format_number(rule.immediate_at)}: FIRED at once", streak
        )
    if streak >= needed:
        return verdict("fired", f"{compared}, drifted {streak} monitored days in a row (needs {needed}): FIRED", streak)
    return verdict(
        "watch", f"{compared}, drifted {streak} of {needed} monitored days needed: WATCH, not counted yet", streak
    )


def _compare_rule(rule: SignalRule, value: float) -> str:
    if rule.direction == "above":
        op = ">=" if value >= rule.limit else "<"
        return f"{format_number(value)} {op} threshold {format_number(rule.limit)}"
    op = "<=" if value <= rule.limit else ">"
    return f"{format_number(value)} {op} threshold {format_number(rule.limit)} (low is bad)"


def format_number(value: float | None) -> str:
    """A value as the explanations show it: 3 significant digits, ``n/a`` for ``None``."""
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
