"""One measured drift signal: what moved, by how much, and against what.

A :class:`Signal` is the value of one declared signal (:mod:`monitoring.signal_table`)
on one day, with the summaries it compares and the sample sizes behind them. It is plain
JSON-able data: ``signals.json`` stores :meth:`Signal.to_dict`, the policy reads the
fields, the emails show them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from monitoring.signal_table import SPECS


@dataclasses.dataclass(frozen=True)
class Signal:
    """One named effect size with what it compares.

    Args:
        name: a name of :data:`monitoring.signal_table.SIGNAL_NAMES`.
        group: ``"data"``, ``"model"`` or ``"quality"`` (the table's).
        metric: how ``value`` is computed (the table's).
        value: the effect size (larger = more drift, except ``quality_proxy`` where low
            means collapse); ``None`` when it cannot be computed.
        before: reference summary, JSON-able: a float (mean or share) or ``{label: share}``.
        after: current summary, same shape.
        n_current: sample size behind ``after`` (the table's ``samples``).
        n_reference: the same for ``before`` (0 for ``quality_proxy``: an offline figure).
        detail: one human line.
    """

    name: str
    group: str
    metric: str
    value: float | None
    before: Any
    after: Any
    n_current: int
    n_reference: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signal:
        return cls(**{field.name: d[field.name] for field in dataclasses.fields(cls)})


def measured(
    name: str, value: float | None, before: Any, after: Any, n_current: int, n_reference: int, detail: str
) -> Signal:
    """The :class:`Signal` ``name`` with its group and metric from the table.

    Non-finite numbers (in ``value``, ``before`` and ``after``, also inside a
    ``{label: share}`` summary) become ``None``, so the signal is valid JSON.
    """
    spec = SPECS[name]
    return Signal(
        name,
        spec.group,
        spec.metric,
        _number(value),
        _jsonable(before),
        _jsonable(after),
        int(n_current),
        int(n_reference),
        detail,
    )


def _number(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(key): _number(val) for key, val in x.items()}
    return _number(x)
