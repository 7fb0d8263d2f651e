"""The drift policy's rules: what a policy file may say, validated.

A :class:`DriftPolicy` holds one :class:`SignalRule` per signal of
:mod:`monitoring.signal_table` and the global windows (persistence, cooldown, clear
days, digest). The meaning of every key is documented in ``monitoring/drift_policy.yaml``,
the packaged default. Everything here is pure: :func:`merge_overrides` layers a user's
file over the default and :meth:`DriftPolicy.from_mapping` validates the result;
reading the files is :func:`monitoring.policy_files.load_policy`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from monitoring.signal_table import SIGNAL_NAMES


class PolicyError(ValueError):
    """A drift policy file or mapping that cannot be used, with every problem listed."""


class SignalRule(BaseModel):
    """How one signal counts. See ``drift_policy.yaml`` for the meaning of each key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    kind: Literal["soft", "hard"] = "soft"
    threshold: float | None = Field(None, gt=0, description="Drifted when value >= threshold.")
    below: float | None = Field(None, ge=0, description="Drifted when value <= below (low is bad).")
    min_samples: int = Field(0, ge=0, description="n_current and n_reference must both reach it.")
    min_reference_samples: int | None = Field(
        None, ge=0, description="For n_reference instead of min_samples (0 for signals with no reference sample)."
    )
    immediate_at: float | None = Field(None, ge=0, description="Soft only: fires at once at or beyond it.")
    why: str = ""

    @model_validator(mode="after")
    def _one_threshold(self) -> SignalRule:
        if (self.threshold is None) == (self.below is None):
            raise ValueError("set exactly one of `threshold` (drifted when value >= it) or `below` (value <= it)")
        if self.immediate_at is not None:
            if self.kind == "hard":
                raise ValueError("`immediate_at` applies to soft signals only: hard signals fire at once")
            if not self.reaches(self.immediate_at):
                raise ValueError(f"`immediate_at` {self.immediate_at} is not beyond the threshold {self.limit}")
        return self

    @property
    def direction(self) -> Literal["above", "below"]:
        return "above" if self.threshold is not None else "below"

    @property
    def limit(self) -> float:
        """The threshold value, whichever direction."""
        return float(self.threshold) if self.threshold is not None else float(self.below or 0.0)

    def reaches(self, value: float, limit: float | None = None) -> bool:
        """Whether ``value`` is at or beyond ``limit`` (default: the threshold)."""
        limit = self.limit if limit is None else limit
        return value >= limit if self.direction == "above" else value <= limit

    def ratio(self, value: float) -> float:
        """Effect relative to the threshold: value/threshold, or threshold/value for ``below``."""
        num, den = (value, self.limit) if self.direction == "above" else (self.limit, value)
        return num / den if den > 0 else (math.inf if num > 0 else 1.0)


class DriftPolicy(BaseModel):
    """The drift decision policy: one :class:`SignalRule` per signal and the global windows.

    Args:
        persistence_days (int): consecutive monitored days a soft signal must be drifted
            before it counts. Default: ``2``.
        cooldown_days (int): days after a triggered retrain during which no other retrain
            is triggered. Default: ``3``.
        clear_days (int): consecutive monitored days with no drifted signal that close an
            episode. Default: ``2``.
        digest (bool): also send a daily digest email. Default: ``False``.
        signals (dict[str, SignalRule]): rules by signal name (names of
            :data:`~monitoring.signal_table.SIGNAL_NAMES`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    persistence_days: int = Field(2, ge=1)
    cooldown_days: int = Field(3, ge=0)
    clear_days: int = Field(2, ge=1)
    digest: bool = False
    signals: dict[str, SignalRule] = Field(default_factory=dict)

    @field_validator("signals", mode="before")
    @classmethod
    def _known_names(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(SIGNAL_NAMES))
            if unknown:
                raise ValueError(f"unknown signal(s) {unknown}; known: {sorted(SIGNAL_NAMES)}")
        return value

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, *, source: str = "drift policy") -> DriftPolicy:
        """Validate a mapping (no defaults merged in), raising :class:`PolicyError`."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise PolicyError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            problems = [
                f"  {'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
                + (f" (got {err['input']!r})" if err["type"] not in ("missing", "value_error") else "")
                for err in exc.errors()
            ]
            raise PolicyError(f"{source}: invalid drift policy:\n" + "\n".join(problems)) from None

    def rule(self, name: str) -> SignalRule | None:
        """The rule of signal ``name``, or ``None`` when the policy has none."""
        return self.signals.get(name)


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (a policy mapping) with ``overrides`` applied, key by key and rule by rule.

    Top-level keys replace those of ``base``; each signal rule of ``overrides`` is merged
    into the base rule of that signal, and a rule that switches between ``threshold`` and
    ``below`` drops the other one. Malformed overrides are passed through for
    :meth:`DriftPolicy.from_mapping` to report.
    """
    merged = {**base, **{k: v for k, v in overrides.items() if k != "signals"}}
    signals = {name: dict(rule or {}) for name, rule in (base.get("signals") or {}).items()}
    override_signals = overrides.get("signals") or {}
    if not isinstance(override_signals, Mapping):
        return merged | {"signals": override_signals}  # let validation report it
    for name, rule in override_signals.items():
        if not isinstance(rule, Mapping):
            signals[name] = rule
            continue
        current = signals.get(name, {})
        if "below" in rule:
            current.pop("threshold", None)
        if "threshold" in rule:
            current.pop("below", None)
        signals[name] = current | dict(rule)
    return merged | {"signals": signals}
