"""The thirteen drift signals, declared once: name, group, metric, sample, report mark.

Every other place reads this table: the computations (:mod:`monitoring.signals` and the
modules it calls) stamp each measured :class:`~monitoring.signal_values.Signal` with its
group and metric, the Evidently reports draw their marks at ``display_threshold``, the
policy (:mod:`monitoring.policy_rules`) accepts exactly these names, and the tests check
that ``drift_policy.yaml`` and ``docs/drift.md`` cover the same signals.

A signal's value is an effect size (larger = more drift), except for the ``low_is_bad``
ones (``quality_proxy``: low means the served model collapsed). The table says *what*
is measured, never whether to act: the thresholds that decide live in
``monitoring/drift_policy.yaml``; ``display_threshold`` only draws the pass/fail marks of
the Evidently reports.

Metrics: ``wasserstein_normed`` is the Wasserstein distance divided by the reference's
standard deviation; ``jensen_shannon`` the Jensen-Shannon distance (natural log, so in
``[0, 0.83]``); ``share_abs_diff`` ``|after - before|`` of a share; ``share_diff``
``after - before`` (keeps its sign); ``vanished_share`` the reference share of what is
absent today; ``relative_abs_diff`` ``|after - before| / before``; ``ratio``
``after / before``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Group = Literal["data", "model", "quality"]


@dataclasses.dataclass(frozen=True)
class SignalSpec:
    """The declaration of one drift signal.

    Args:
        name (str): the signal's name, as in ``signals.json``, the policy and the emails.
        group (str): ``"data"`` (the day's interactions against the reference window),
            ``"model"`` (what the champion serves) or ``"quality"`` (online proxy against
            the offline metric).
        metric (str): how the value is computed (module docstring).
        measures (str): what the metric is taken of.
        samples (str): what ``n_current`` / ``n_reference`` count.
        display_threshold (float): where the Evidently reports draw their pass/fail mark
            (display only; for ``quality_proxy`` the mark is at this fraction of the
            offline Recall@k).
        low_is_bad (bool): a low value is the drift (``quality_proxy``). Default: ``False``.
    """

    name: str
    group: Group
    metric: str
    measures: str
    samples: str
    display_threshold: float
    low_is_bad: bool = False


_EVENTS = "all events (the reference's on the matched weekday)"
_SAMPLED_EVENTS = "events in the report sample"

#: Every signal, in report order.
SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec(
        name="user_activity",
        group="data",
        metric="wasserstein_normed",
        measures="log1p(events per active user-day)",
        samples="user-days in the report sample",
        display_threshold=0.1,
    ),
    SignalSpec(
        name="user_concentration",
        group="data",
        metric="share_abs_diff",
        measures="share of events by each day's top 1% users",
        samples=_EVENTS,
        display_threshold=0.05,
    ),
    SignalSpec(
        name="item_popularity",
        group="data",
        metric="wasserstein_normed",
        measures="log1p(reference count) per event",
        samples=_SAMPLED_EVENTS,
        display_threshold=0.1,
    ),
    SignalSpec(
        name="head_share",
        group="data",
        metric="share_abs_diff",
        measures="share of events on the reference's top-10% items",
        samples=_EVENTS,
        display_threshold=0.05,
    ),
    SignalSpec(
        name="category_mix",
        group="data",
        metric="jensen_shannon",
        measures="the item categories of the events",
        samples=_SAMPLED_EVENTS,
        display_threshold=0.1,
    ),
    SignalSpec(
        name="new_item_share",
        group="data",
        metric="share_diff",
        measures="share of events on items absent from the reference",
        samples=_EVENTS,
        display_threshold=0.05,
    ),
    SignalSpec(
        name="new_user_share",
        group="data",
        metric="share_abs_diff",
        measures="share of events by users absent from the reference",
        samples=_EVENTS,
        display_threshold=0.05,
    ),
    SignalSpec(
        name="event_type_mix",
        group="data",
        metric="jensen_shannon",
        measures="the event types",
        samples=_SAMPLED_EVENTS,
        display_threshold=0.1,
    ),
    SignalSpec(
        name="event_type_missing",
        group="data",
        metric="vanished_share",
        measures="reference share of event types (>= 1%) absent today",
        samples="all events",
        display_threshold=0.0,
    ),
    SignalSpec(
        name="score_distribution",
        group="model",
        metric="wasserstein_normed",
        measures="served retrieval scores (no fallback rows)",
        samples="scored (non-fallback) served recommendations in the report sample",
        display_threshold=0.1,
    ),
    SignalSpec(
        name="catalog_coverage",
        group="model",
        metric="relative_abs_diff",
        measures="distinct served items / catalog size",
        samples="served users",
        display_threshold=0.2,
    ),
    SignalSpec(
        name="recommended_popularity",
        group="model",
        metric="wasserstein_normed",
        measures="log1p(reference count) of served items",
        samples="served recommendations in the report sample",
        display_threshold=0.1,
    ),
    SignalSpec(
        name="quality_proxy",
        group="quality",
        metric="ratio",
        measures="recall proxy / the champion's offline Recall@k",
        samples="users counted in the proxy (reference: 0, an offline figure)",
        display_threshold=0.5,
        low_is_bad=True,
    ),
)

#: ``{name: spec}`` in report order.
SPECS: dict[str, SignalSpec] = {spec.name: spec for spec in SIGNALS}
#: The signal names, in report order.
SIGNAL_NAMES: tuple[str, ...] = tuple(SPECS)
