"""Recommender-specific drift signals, computed with Evidently 0.7 reports.

This module measures thirteen named effect sizes (:class:`Signal`) that a decision policy can weigh
separately -- each says *what* moved and *by how much*, never whether to act:

========================  =======  ===================  ==========================================
signal                    group    metric               value (larger = more drift)
========================  =======  ===================  ==========================================
``user_activity``         data     wasserstein_normed   of ``log1p(events per active user-day)``
``user_concentration``    data     share_abs_diff       share of events by each day's top 1% users
``item_popularity``       data     wasserstein_normed   of ``log1p(reference count)`` per event
``head_share``            data     share_abs_diff       share of events on the reference's top-10% items
``category_mix``          data     jensen_shannon       of the item categories of the events
``new_item_share``        data     share_diff           share of events on items absent from the reference
``new_user_share``        data     share_abs_diff       share of events by users absent from the reference
``event_type_mix``        data     jensen_shannon       of the event types
``event_type_missing``    data     vanished_share       reference share of types (>= 1%) absent today
``score_distribution``    model    wasserstein_normed   of served retrieval scores (no fallback rows)
``catalog_coverage``      model    relative_abs_diff    distinct served items / catalog size
``recommended_popularity`` model   wasserstein_normed   of ``log1p(reference count)`` of served items
``quality_proxy``         quality  ratio                recall proxy / offline Recall@k (low = collapse)
========================  =======  ===================  ==========================================

**Where the numbers come from.** The distances are Evidently ``ValueDrift`` scores with
fixed methods: ``"wasserstein"`` (Wasserstein distance
divided by the reference's standard deviation) for numerical columns and
``"jensenshannon"`` (natural log, so in ``[0, 0.83]``) for categorical ones. They run on
a seeded sample of at most ``max_rows`` rows per side (distances are stable at that
size); ``value``, ``before``, ``after`` and the sizes of those signals describe that
sample. Share signals are exact, counted with numpy on all rows, and appear in the
reports as per-event ``yes``/``no`` columns (``is_new_item``, ``is_head_item``,
``is_new_user``, ``is_top_user``) under Evidently ``CategoryCount`` metrics. Thresholds
given to Evidently (:data:`DISPLAY_THRESHOLDS`) only draw the reports' test marks; the
decision is made elsewhere.

**Sample sizes** (``n_current`` / ``n_reference``): events in the report sample for
``item_popularity``, ``category_mix`` and ``event_type_mix``; user-days in the sample for
``user_activity``; all events for the share signals and ``event_type_missing``; served
recommendations in the sample for ``recommended_popularity`` (those with a score for
``score_distribution``); served users for ``catalog_coverage``; for ``quality_proxy`` the
users counted in the proxy, and 0 for the offline figure. The catalog size of
``catalog_coverage`` is the number of distinct items in ``catalog`` (the model's item
count when the catalog is empty).

**Baselines ("before") of the share signals**, measured inside the reference so that a
normal day scores about zero:

* ``user_concentration``: the reference's events made by the top 1% users *of their own
  day* (at least one user per day), pooled over the reference days (an event-weighted
  mean of the daily shares);
* ``new_item_share`` / ``new_user_share``: leave-one-day-out -- the reference's events on
  items (by users) that occur on only one reference day, i.e. that would have been new
  on that day against the other reference days. With a single reference day there is no
  such baseline and ``before`` is 0. The comparison window is one day shorter than the
  current day's, so ``before`` leans slightly high; ``new_item_share`` keeps its sign
  (``after - before``: negative means fewer new items than usual).

**Weekly seasonality.** Weekends and weekdays differ (volume per user, category mix),
so a single day compared with a whole window drifts every Saturday. By default
(``match_weekday``) the data signals compare the day with the reference days of its own
weekday, when the reference has at least ``MIN_SEASON_EVENTS`` events on them (a 14-day
window has two of each); which items and users are known, their reference counts and the
head still come from the whole window, and ``event_type_missing`` uses the whole window.
With a shorter window the whole reference is used. The signals' ``detail`` names the
matched days.

**Model signals** serve today's active users and the reference window's active users
with the same :class:`~monitoring.offline_serving.ServingModel`, each a seeded sample of
the same size: ``min(active users today, active users in the reference,
max_served_users)``, 20,000 by default (2 × 20,000 users × 40,000 items take a few
seconds). Equal sizes make the catalog coverages comparable.

**Quality proxy.** For each user who got recommendations yesterday (``served_yesterday``)
and is active today, the relevant set ``T_u`` is today's distinct items minus the items
the user interacted with in the reference (what the served list had to exclude, as in
:mod:`training.metrics`); the user's recall is ``|T_u ∩ top_k| / min(k, |T_u|)`` (the
offline Recall@k whenever ``|T_u| <= k``, the usual case for one day). ``after`` is the
mean over users with a non-empty ``T_u``, ``before`` the champion's offline Recall@k,
``value = after / before``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from graphrec import contract, lake
from monitoring.offline_serving import (
    FALLBACK,
    RANK,
    SCORE,
    ServingModel,
    lookup_rows,
    serve_batch,
    sorted_lookup,
)
from monitoring.policy import SIGNAL_GROUPS

if TYPE_CHECKING:  # pragma: no cover - typing only
    from evidently.core.report import Snapshot

__all__ = [
    "SIGNAL_NAMES",
    "SIGNAL_GROUPS",
    "SIGNAL_METRICS",
    "DISPLAY_THRESHOLDS",
    "Signal",
    "SignalReport",
    "ServingModel",
    "serve_batch",
    "compute_signals",
    "write_signal_report",
    "read_signals",
    "recall_proxy",
]

log = logging.getLogger(__name__)

# Signals (names and groups are the policy's, monitoring.policy.SIGNAL_GROUPS) ---------
SIGNAL_NAMES = tuple(SIGNAL_GROUPS)
SIGNAL_METRICS = {
    "user_activity": "wasserstein_normed",
    "user_concentration": "share_abs_diff",
    "item_popularity": "wasserstein_normed",
    "head_share": "share_abs_diff",
    "category_mix": "jensen_shannon",
    "new_item_share": "share_diff",
    "new_user_share": "share_abs_diff",
    "event_type_mix": "jensen_shannon",
    "event_type_missing": "vanished_share",
    "score_distribution": "wasserstein_normed",
    "catalog_coverage": "relative_abs_diff",
    "recommended_popularity": "wasserstein_normed",
    "quality_proxy": "ratio",
}
#: Where the reports draw their pass/fail marks (display only; for quality_proxy the mark
#: is at this fraction of the offline Recall@k).
DISPLAY_THRESHOLDS = {
    "user_activity": 0.1,
    "user_concentration": 0.05,
    "item_popularity": 0.1,
    "head_share": 0.05,
    "category_mix": 0.1,
    "new_item_share": 0.05,
    "new_user_share": 0.05,
    "event_type_mix": 0.1,
    "event_type_missing": 0.0,
    "score_distribution": 0.1,
    "catalog_coverage": 0.2,
    "recommended_popularity": 0.1,
    "quality_proxy": 0.5,
}

FALLBACK_DISPLAY_THRESHOLD = 0.05  # the model report's mark on the share of fallback rows

TOP_USER_FRACTION = 0.01  # user_concentration: the day's top 1% most active users
HEAD_ITEM_FRACTION = 0.10  # head_share: the reference's top 10% items by count
MISSING_TYPE_MIN_SHARE = 0.01  # event_type_missing: only types with >= 1% of the reference
MIN_SEASON_EVENTS = 1_000  # weekday matching needs this many reference events on the weekday
MAX_SERVED_USERS = 20_000
EPS = 1e-9
YES, NO = "yes", "no"

NUMERICAL_METHOD = "wasserstein"  # Evidently stat-test names
CATEGORICAL_METHOD = "jensenshannon"

# Report columns, by snapshot ----------------------------------------------------------
ITEM_POPULARITY, CATEGORY, EVENT_TYPE = "item_popularity", contract.CATEGORY, contract.EVENT_TYPE
IS_NEW_ITEM, IS_HEAD_ITEM, IS_NEW_USER, IS_TOP_USER = "is_new_item", "is_head_item", "is_new_user", "is_top_user"
USER_ACTIVITY = "user_activity"
RECOMMENDED_POPULARITY = "recommended_popularity"
RECALL = "recall"

SIGNALS_FILE = "signals.json"
SERVED_FILE = "served.parquet"
SNAPSHOT_NAMES = ("data", "users", "model", "quality")


@dataclasses.dataclass(frozen=True)
class Signal:
    """One named effect size with what it compares.

    Args:
        name: one of :data:`SIGNAL_NAMES`.
        group: ``"data"``, ``"model"`` or ``"quality"``.
        metric: how ``value`` is computed (:data:`SIGNAL_METRICS`).
        value: the effect size (larger = more drift, except ``quality_proxy`` where low
            means collapse); ``None`` when it cannot be computed.
        before: reference summary, JSON-able: a float (mean or share) or ``{label: share}``.
        after: current summary, same shape.
        n_current: sample size behind ``after``: events (interactions), user-days,
            served recommendations, served users or proxy users (module docstring,
            "Sample sizes").
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


@dataclasses.dataclass
class SignalReport:
    """The signals of one day and the Evidently reports behind them.

    Args:
        signals: every name of :data:`SIGNAL_NAMES`, in that order.
        served: today's served recommendations (:func:`serve_batch` columns), for
            tomorrow's ``served_yesterday``; ``None`` without a model.
        snapshots: Evidently snapshots by name: ``data`` (per event), ``users`` (per
            user-day), ``model`` (per served recommendation, with a model) and ``quality``
            (per overlap user, with ``served_yesterday``).
    """

    signals: dict[str, Signal]
    served: pd.DataFrame | None
    snapshots: dict[str, Snapshot]


def _signal(
    name: str, value: float | None, before: Any, after: Any, n_current: int, n_reference: int, detail: str
) -> Signal:
    return Signal(
        name,
        SIGNAL_GROUPS[name],
        SIGNAL_METRICS[name],
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


# Event tables ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Events:
    """One interactions frame as arrays, with its per-user-day and per-item tables."""

    user: np.ndarray
    item: np.ndarray
    event_type: pd.Series
    n_days: int
    ud_count: np.ndarray  # events per user-day (user-days sorted by day)
    ud_top: np.ndarray  # among its day's top TOP_USER_FRACTION users
    event_ud: np.ndarray  # per event: its user-day
    user_once: np.ndarray  # per event: the user is active on only one of the frame's days
    item_codes: np.ndarray  # per event: index into item_ids
    item_ids: np.ndarray  # distinct items, in order of appearance
    item_count: np.ndarray  # events per item
    item_once: np.ndarray  # per item: occurs on only one of the frame's days
    day: np.ndarray  # per event: days since 1970-01-01 (UTC)
    ud_day: np.ndarray  # per user-day: days since 1970-01-01 (UTC)

    @property
    def n(self) -> int:
        return len(self.user)


def _events(frame: pd.DataFrame) -> _Events:
    user = frame[contract.USER_ID].to_numpy(np.int64)
    item = frame[contract.ITEM_ID].to_numpy(np.int64)
    ts = pd.to_datetime(frame[contract.EVENT_TS], utc=True).dt.tz_localize(None)
    day = ts.to_numpy().astype("datetime64[D]").astype(np.int64)
    day_codes, days = pd.factorize(day, sort=True)
    user_codes, users = pd.factorize(user)
    item_codes, items = pd.factorize(item)
    n_days, n_users, n_items = len(days), len(users), len(items)

    keys, event_ud, ud_count = np.unique(day_codes * n_users + user_codes, return_inverse=True, return_counts=True)
    ud_day, ud_user_code = keys // n_users, keys % n_users
    # rank users within their day by count (ties: smaller user id first)
    order = np.lexsort((users[ud_user_code], -ud_count, ud_day))
    day_sorted = ud_day[order]
    rank = np.arange(len(order)) - np.searchsorted(day_sorted, day_sorted)
    users_per_day = np.bincount(ud_day, minlength=n_days)
    n_top = np.maximum(1, np.floor(TOP_USER_FRACTION * users_per_day).astype(np.int64))
    ud_top = np.empty(len(order), bool)
    ud_top[order] = rank < n_top[day_sorted]

    days_per_user = np.bincount(ud_user_code, minlength=n_users)
    days_per_item = np.bincount(pd.unique(day_codes * n_items + item_codes) % n_items, minlength=n_items)
    return _Events(
        user=user,
        item=item,
        event_type=frame[contract.EVENT_TYPE].astype(str).reset_index(drop=True),
        n_days=n_days,
        ud_count=ud_count,
        ud_top=ud_top,
        event_ud=event_ud,
        user_once=days_per_user[user_codes] == 1,
        item_codes=item_codes,
        item_ids=np.asarray(items, np.int64),
        item_count=np.bincount(item_codes, minlength=n_items),
        item_once=days_per_item == 1,
        day=day,
        ud_day=np.asarray(days, np.int64)[ud_day],
    )


def _sample(n: int, max_rows: int, seed: int, stream: int) -> np.ndarray:
    """Sorted row positions of a seeded sample of at most ``max_rows`` of ``n`` rows."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, stream]).choice(n, size=max_rows, replace=False))


def _yes_no(flags: np.ndarray) -> np.ndarray:
    return np.where(flags, YES, NO).astype(object)


def _categories(catalog: pd.DataFrame, items: np.ndarray) -> np.ndarray:
    if catalog.empty or contract.CATEGORY not in catalog:
        return np.full(len(items), contract.UNKNOWN_CATEGORY, dtype=object)
    by_item = catalog.drop_duplicates(contract.ITEM_ID, keep="last")
    rows = lookup_rows(sorted_lookup(by_item[contract.ITEM_ID].to_numpy(np.int64)), items)
    labels = by_item[contract.CATEGORY].astype(str).to_numpy(dtype=object)
    return np.where(rows >= 0, labels[np.maximum(rows, 0)], contract.UNKNOWN_CATEGORY).astype(object)


def _shares(values: pd.Series | np.ndarray) -> dict[str, float]:
    counts = pd.Series(values).value_counts(normalize=True)
    return {str(label): round(float(share), 6) for label, share in counts.sort_index().items()}


def _largest_change(before: dict[str, float], after: dict[str, float]) -> str:
    labels = sorted(set(before) | set(after), key=lambda c: -abs(after.get(c, 0.0) - before.get(c, 0.0)))
    if not labels:
        return "no labels"
    label = labels[0]
    return f"largest change: {label} {before.get(label, 0.0):.1%} -> {after.get(label, 0.0):.1%}"


# Evidently -------------------------------------------------------------------------
def _value_drift(column: str, signal: str, numerical: bool):
    from evidently.metrics import ValueDrift

    method = NUMERICAL_METHOD if numerical else CATEGORICAL_METHOD
    return ValueDrift(column=column, method=method, threshold=DISPLAY_THRESHOLDS[signal])


def _yes_share(column: str, threshold: float):
    """Share of ``"yes"`` in a flag column, marked where it moves ``threshold`` from the reference."""
    from evidently.metrics import CategoryCount
    from evidently.tests import Reference, eq

    return CategoryCount(column=column, category=YES, tests=[], share_tests=[eq(Reference(absolute=threshold))])


def _run_report(
    metrics: list,
    current: pd.DataFrame,
    reference: pd.DataFrame | None,
    *,
    numerical: list[str],
    categorical: list[str],
) -> Snapshot:
    from evidently import DataDefinition, Dataset, Report

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    return Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=None if reference is None else Dataset.from_pandas(reference, data_definition=definition),
    )


def _drift_scores(snapshot: Snapshot) -> dict[str, float]:
    """``{column: score}`` of the snapshot's ``ValueDrift`` metrics."""
    return {
        metric["config"]["column"]: float(metric["value"])
        for metric in snapshot.dict().get("metrics", [])
        if str(metric.get("config", {}).get("type", "")).endswith(":ValueDrift")
    }


# Signals by group -----------------------------------------------------------------
def _season_masks(cur: _Events, ref: _Events, min_events: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Reference events and user-days on the current day's weekday(s), if there are enough.

    Returns ``(event mask, user-day mask, matched days)``; all ``True`` (and no days) when
    the reference has fewer than ``min_events`` events on those weekdays.
    """
    weekdays = np.unique((cur.day + 3) % 7)  # 1970-01-01 was a Thursday: (day + 3) % 7 == 0 on Mondays
    events = np.isin((ref.day + 3) % 7, weekdays)
    if events.sum() < min_events:
        return np.ones(ref.n, bool), np.ones(len(ref.ud_count), bool), []
    return events, np.isin((ref.ud_day + 3) % 7, weekdays), sorted(np.unique(ref.day[events]).tolist())


def _data_signals(
    cur: _Events, ref: _Events, catalog: pd.DataFrame, max_rows: int, seed: int, match_weekday: bool = True
) -> tuple[dict[str, Signal], dict[str, Snapshot]]:
    ref_lookup = sorted_lookup(ref.item_ids)
    cur_item_row = lookup_rows(ref_lookup, cur.item)
    known_item = cur_item_row >= 0
    cur_ref_count = np.where(known_item, ref.item_count[np.maximum(cur_item_row, 0)], 0)

    n_head = max(1, int(HEAD_ITEM_FRACTION * len(ref.item_ids)))
    head = np.zeros(len(ref.item_ids), bool)
    head[np.lexsort((ref.item_ids, -ref.item_count))[:n_head]] = True
    cur_head = known_item & head[np.maximum(cur_item_row, 0)]
    cur_new_user = lookup_rows(sorted_lookup(np.unique(ref.user)), cur.user) < 0
    several_days = ref.n_days >= 2  # leave-one-day-out needs another reference day
    flags = {  # exact per-event flags: (current, reference)
        IS_NEW_ITEM: (~known_item, ref.item_once[ref.item_codes] & several_days),
        IS_HEAD_ITEM: (cur_head, head[ref.item_codes]),
        IS_NEW_USER: (cur_new_user, ref.user_once & several_days),
        IS_TOP_USER: (cur.ud_top[cur.event_ud], ref.ud_top[ref.event_ud]),
    }

    # Weekly seasonality: the day is compared with the reference days of its weekday
    # (what items and users are known, and the head, still come from the whole window).
    season, ud_season, matched = (
        _season_masks(cur, ref, MIN_SEASON_EVENTS)
        if match_weekday
        else (np.ones(ref.n, bool), np.ones(len(ref.ud_count), bool), [])
    )
    season_rows = np.flatnonzero(season)

    # Evidently on seeded samples: per event and per user-day
    ci, ri = _sample(cur.n, max_rows, seed, 0), season_rows[_sample(len(season_rows), max_rows, seed, 1)]
    data_cur = pd.DataFrame(
        {
            ITEM_POPULARITY: np.log1p(cur_ref_count[ci].astype(np.float64)),
            CATEGORY: _categories(catalog, cur.item[ci]),
            EVENT_TYPE: cur.event_type.to_numpy(dtype=object)[ci],
            **{column: _yes_no(c[ci]) for column, (c, _) in flags.items()},
        }
    )
    data_ref = pd.DataFrame(
        {
            ITEM_POPULARITY: np.log1p(ref.item_count[ref.item_codes[ri]].astype(np.float64)),
            CATEGORY: _categories(catalog, ref.item[ri]),
            EVENT_TYPE: ref.event_type.to_numpy(dtype=object)[ri],
            **{column: _yes_no(r[ri]) for column, (_, r) in flags.items()},
        }
    )
    data_snapshot = _run_report(
        [
            _value_drift(ITEM_POPULARITY, "item_popularity", True),
            _value_drift(CATEGORY, "category_mix", False),
            _value_drift(EVENT_TYPE, "event_type_mix", False),
            _yes_share(IS_NEW_ITEM, DISPLAY_THRESHOLDS["new_item_share"]),
            _yes_share(IS_HEAD_ITEM, DISPLAY_THRESHOLDS["head_share"]),
            _yes_share(IS_NEW_USER, DISPLAY_THRESHOLDS["new_user_share"]),
            _yes_share(IS_TOP_USER, DISPLAY_THRESHOLDS["user_concentration"]),
        ],
        data_cur,
        data_ref,
        numerical=[ITEM_POPULARITY],
        categorical=[CATEGORY, EVENT_TYPE, *flags],
    )
    ud_rows = np.flatnonzero(ud_season)
    ui, uri = _sample(len(cur.ud_count), max_rows, seed, 2), ud_rows[_sample(len(ud_rows), max_rows, seed, 3)]
    users_cur = pd.DataFrame({USER_ACTIVITY: np.log1p(cur.ud_count[ui].astype(np.float64))})
    users_ref = pd.DataFrame({USER_ACTIVITY: np.log1p(ref.ud_count[uri].astype(np.float64))})
    users_snapshot = _run_report(
        [_value_drift(USER_ACTIVITY, "user_activity", True)],
        users_cur,
        users_ref,
        numerical=[USER_ACTIVITY],
        categorical=[],
    )
    scores = {**_drift_scores(data_snapshot), **_drift_scores(users_snapshot)}

    signals: dict[str, Signal] = {}
    b, a = float(users_ref[USER_ACTIVITY].mean()), float(users_cur[USER_ACTIVITY].mean())
    signals["user_activity"] = _signal(
        "user_activity",
        scores[USER_ACTIVITY],
        b,
        a,
        len(users_cur),
        len(users_ref),
        f"mean log1p(events per active user-day) {b:.2f} -> {a:.2f} (about {math.expm1(b):.1f} -> "
        f"{math.expm1(a):.1f} events)",
    )
    b, a = float(data_ref[ITEM_POPULARITY].mean()), float(data_cur[ITEM_POPULARITY].mean())
    signals["item_popularity"] = _signal(
        "item_popularity",
        scores[ITEM_POPULARITY],
        b,
        a,
        len(data_cur),
        len(data_ref),
        f"mean log1p(reference count of the interacted item) {b:.2f} -> {a:.2f}",
    )
    for name, column in (("category_mix", CATEGORY), ("event_type_mix", EVENT_TYPE)):
        mix_before, mix_after = _shares(data_ref[column]), _shares(data_cur[column])
        signals[name] = _signal(
            name,
            scores[column],
            mix_before,
            mix_after,
            len(data_cur),
            len(data_ref),
            f"{column} mix: {_largest_change(mix_before, mix_after)}",
        )

    wording = {
        "user_concentration": (IS_TOP_USER, "share of events by the top 1% users of their day"),
        "head_share": (IS_HEAD_ITEM, f"share of events on the reference's top-10% items ({n_head:,} items)"),
        "new_item_share": (IS_NEW_ITEM, "share of events on items absent from the reference"),
        "new_user_share": (IS_NEW_USER, "share of events by users absent from the reference"),
    }
    for name, (column, text) in wording.items():
        c, r = flags[column]
        b, a = float(r[season].mean()), float(c.mean())
        value = a - b if name == "new_item_share" else abs(a - b)
        signals[name] = _signal(name, value, b, a, cur.n, int(season.sum()), f"{text} {b:.1%} -> {a:.1%}")

    types_before, types_after = _shares(ref.event_type), _shares(cur.event_type)
    vanished = sorted(
        t for t, share in types_before.items() if share >= MISSING_TYPE_MIN_SHARE and t not in types_after
    )
    types_after = {**types_after, **{t: 0.0 for t in vanished}}
    signals["event_type_missing"] = _signal(
        "event_type_missing",
        sum(types_before[t] for t in vanished),
        types_before,
        types_after,
        cur.n,
        ref.n,
        "event types absent today: " + ", ".join(f"{t} ({types_before[t]:.1%} of the reference)" for t in vanished)
        if vanished
        else "no event type with >= 1% of the reference is absent today",
    )
    if matched:
        note = " (reference: " + ", ".join(str(np.datetime64(d, "D")) for d in matched) + ", same weekday)"
        for name in ("user_activity", "item_popularity", "category_mix", "event_type_mix", *wording):
            signals[name] = dataclasses.replace(signals[name], detail=signals[name].detail + note)
    return signals, {"data": data_snapshot, "users": users_snapshot}


def _model_signals(
    model: ServingModel,
    cur: _Events,
    ref: _Events,
    catalog: pd.DataFrame,
    *,
    k: int,
    max_rows: int,
    max_served_users: int,
    seed: int,
) -> tuple[dict[str, Signal], pd.DataFrame, dict[str, Snapshot]]:
    cur_users, ref_users = np.unique(cur.user), np.unique(ref.user)
    n_users = min(len(cur_users), len(ref_users), max_served_users)
    served = serve_batch(model, cur_users[_sample(len(cur_users), n_users, seed, 4)], k)
    served_ref = serve_batch(model, ref_users[_sample(len(ref_users), n_users, seed, 5)], k)

    ref_lookup = sorted_lookup(ref.item_ids)

    def rows(frame: pd.DataFrame, stream: int) -> pd.DataFrame:
        frame = frame.iloc[_sample(len(frame), max_rows, seed, stream)]
        item_row = lookup_rows(ref_lookup, frame[contract.ITEM_ID].to_numpy(np.int64))
        count = np.where(item_row >= 0, ref.item_count[np.maximum(item_row, 0)], 0)
        return pd.DataFrame(
            {
                SCORE: frame[SCORE].to_numpy(np.float64),
                RECOMMENDED_POPULARITY: np.log1p(count.astype(np.float64)),
                FALLBACK: _yes_no(frame[FALLBACK].to_numpy(bool)),
            }
        )

    model_cur, model_ref = rows(served, 6), rows(served_ref, 7)
    n_scored_cur, n_scored_ref = int(model_cur[SCORE].notna().sum()), int(model_ref[SCORE].notna().sum())
    metrics = [
        _value_drift(RECOMMENDED_POPULARITY, "recommended_popularity", True),
        _yes_share(FALLBACK, FALLBACK_DISPLAY_THRESHOLD),
    ]
    numerical = [RECOMMENDED_POPULARITY]
    if n_scored_cur and n_scored_ref:  # Evidently refuses a column without values
        metrics.insert(0, _value_drift(SCORE, "score_distribution", True))
        numerical.insert(0, SCORE)
    columns = [*numerical, FALLBACK]
    snapshot = _run_report(metrics, model_cur[columns], model_ref[columns], numerical=numerical, categorical=[FALLBACK])
    scores = _drift_scores(snapshot)

    signals: dict[str, Signal] = {}
    b, a = model_ref[SCORE].mean(), model_cur[SCORE].mean()
    signals["score_distribution"] = _signal(
        "score_distribution",
        scores.get(SCORE),
        b,
        a,
        n_scored_cur,
        n_scored_ref,
        f"mean served score {b:.3f} -> {a:.3f} (fallback rows excluded)"
        if n_scored_cur and n_scored_ref
        else "no scored (non-fallback) recommendations on one side",
    )
    b, a = float(model_ref[RECOMMENDED_POPULARITY].mean()), float(model_cur[RECOMMENDED_POPULARITY].mean())
    signals["recommended_popularity"] = _signal(
        "recommended_popularity",
        scores[RECOMMENDED_POPULARITY],
        b,
        a,
        len(model_cur),
        len(model_ref),
        f"mean log1p(reference count) of served items {b:.2f} -> {a:.2f}",
    )

    catalog_size = int(catalog[contract.ITEM_ID].nunique()) if not catalog.empty else len(model.item_ids)
    catalog_size = catalog_size or len(model.item_ids)
    b = served_ref[contract.ITEM_ID].nunique() / max(catalog_size, 1)
    a = served[contract.ITEM_ID].nunique() / max(catalog_size, 1)
    signals["catalog_coverage"] = _signal(
        "catalog_coverage",
        abs(a - b) / max(b, EPS),
        b,
        a,
        served[contract.USER_ID].nunique(),
        served_ref[contract.USER_ID].nunique(),
        f"distinct served items / catalog ({catalog_size:,}) {b:.1%} -> {a:.1%} ({n_users:,} users each)",
    )
    return signals, served, {"model": snapshot}


def recall_proxy(
    current: pd.DataFrame, served_yesterday: pd.DataFrame, history: pd.DataFrame, *, k: int
) -> pd.DataFrame:
    """Per-user recall of yesterday's served lists on today's new items.

    Args:
        current (pd.DataFrame): today's interactions (``user_id``, ``item_id``).
        served_yesterday (pd.DataFrame): yesterday's :func:`serve_batch` output; rows with
            ``rank <= k`` count.
        history (pd.DataFrame): interactions the served lists had to exclude (the
            reference window); their (user, item) pairs are not relevant today.
        k (int): list length.

    Returns:
        pd.DataFrame: one row per user served yesterday, active today and with at least
        one new item today: ``user_id``, ``n_relevant`` (``|T_u|``), ``hits`` and
        ``recall`` (``hits / min(k, n_relevant)``), sorted by user.
    """
    pair = [contract.USER_ID, contract.ITEM_ID]
    listed = served_yesterday.loc[served_yesterday[RANK] <= k, pair].drop_duplicates()
    users = np.intersect1d(listed[contract.USER_ID].unique(), current[contract.USER_ID].unique())
    today = current.loc[current[contract.USER_ID].isin(users), pair].drop_duplicates()
    seen = history.loc[history[contract.USER_ID].isin(users), pair].drop_duplicates()
    today = today.merge(seen, on=pair, how="left", indicator=True)
    today = today.loc[today["_merge"] == "left_only", pair]
    today["hit"] = today.merge(listed, on=pair, how="left", indicator=True)["_merge"].eq("both").to_numpy()
    per_user = today.groupby(contract.USER_ID).agg(n_relevant=("hit", "size"), hits=("hit", "sum")).reset_index()
    per_user["hits"] = per_user["hits"].astype(np.int64)
    per_user[RECALL] = per_user["hits"] / np.minimum(k, per_user["n_relevant"])
    return per_user


def _quality_signal(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    served_yesterday: pd.DataFrame | None,
    offline_recall: float | None,
    k: int,
) -> tuple[Signal, dict[str, Snapshot]]:
    if served_yesterday is None or served_yesterday.empty:
        return _signal(
            "quality_proxy", None, offline_recall, None, 0, 0, "no recommendations served yesterday to compare with"
        ), {}
    per_user = recall_proxy(current, served_yesterday, reference, k=k)
    if per_user.empty:
        return _signal(
            "quality_proxy", None, offline_recall, None, 0, 0, "no user served yesterday has new items today"
        ), {}
    from evidently.metrics import MeanValue
    from evidently.tests import gte

    figure_ok = offline_recall is not None and offline_recall > 0
    tests = [gte(DISPLAY_THRESHOLDS["quality_proxy"] * offline_recall)] if offline_recall and figure_ok else []
    snapshot = _run_report(
        [MeanValue(column=RECALL, tests=tests)], per_user[[RECALL]], None, numerical=[RECALL], categorical=[]
    )
    after = float(per_user[RECALL].mean())
    value = after / offline_recall if offline_recall and figure_ok else None
    figure = f"{offline_recall:.3f}" if offline_recall is not None else "none"
    return _signal(
        "quality_proxy",
        value,
        offline_recall,
        after,
        len(per_user),
        0,
        f"recall@{k} of yesterday's lists on today's new items {after:.3f} vs offline {figure} "
        f"({len(per_user):,} users)",
    ), {"quality": snapshot}


def compute_signals(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    catalog: pd.DataFrame,
    *,
    model: ServingModel | None = None,
    served_yesterday: pd.DataFrame | None = None,
    offline_recall: float | None = None,
    k: int = 20,
    max_rows: int = 300_000,
    seed: int = 0,
    max_served_users: int = MAX_SERVED_USERS,
    match_weekday: bool = True,
) -> SignalReport:
    """Compute every signal of :data:`SIGNAL_NAMES` for one day.

    Args:
        current (pd.DataFrame): the day's interactions (``graphrec.contract`` columns).
        reference (pd.DataFrame): the reference window's interactions.
        catalog (pd.DataFrame): ``item_id`` and ``category`` (:func:`graphrec.lake.read_catalog`);
            missing items count as ``"unknown"``.
        model (ServingModel | None): the champion; without it the model signals are
            ``None`` and nothing is served.
        served_yesterday (pd.DataFrame | None): yesterday's ``SignalReport.served``.
        offline_recall (float | None): the champion's offline Recall@k.
        k (int): recommendations per user. (default: ``20``)
        max_rows (int): rows per side in each Evidently report. (default: ``300_000``)
        seed (int): seed of every sample. (default: ``0``)
        max_served_users (int): users served per side. (default: ``20_000``)
        match_weekday (bool): compare the data signals with the reference days of the
            current day's weekday (weekly seasonality), when the reference has at least
            ``MIN_SEASON_EVENTS`` events on it. (default: ``True``)

    Returns:
        SignalReport: the signals (all names; ``value`` ``None`` where not computable),
        today's served recommendations and the Evidently snapshots.

    Raises:
        ValueError: when ``current`` or ``reference`` is empty (nothing to compare).
    """
    if current.empty or reference.empty:
        raise ValueError("compute_signals needs non-empty current and reference interactions")
    cur, ref = _events(current), _events(reference)
    signals, snapshots = _data_signals(cur, ref, catalog, max_rows, seed, match_weekday)
    served = None
    if model is not None:
        model_signals, served, model_snapshots = _model_signals(
            model, cur, ref, catalog, k=k, max_rows=max_rows, max_served_users=max_served_users, seed=seed
        )
        signals.update(model_signals)
        snapshots.update(model_snapshots)
    else:
        for name in ("score_distribution", "catalog_coverage", "recommended_popularity"):
            signals[name] = _signal(name, None, None, None, 0, 0, "no model to serve with")
    signals["quality_proxy"], quality_snapshots = _quality_signal(
        current, reference, served_yesterday, offline_recall, k
    )
    snapshots.update(quality_snapshots)
    log.info("signals: %s", {name: signals[name].value for name in SIGNAL_NAMES})
    return SignalReport({name: signals[name] for name in SIGNAL_NAMES}, served, snapshots)


# I/O adapter -----------------------------------------------------------------------
def write_signal_report(report: SignalReport, out_dir: Path) -> dict[str, str]:
    """Write the report's files atomically into ``out_dir``.

    Writes ``<snapshot>.html`` (Evidently's interactive report) and ``<snapshot>.json``
    (its metrics and tests) per snapshot, ``signals.json`` (``{name: Signal.to_dict()}``)
    and ``served.parquet`` when recommendations were served. Everything is rendered in
    memory before the first file is written, so a rendering failure leaves the directory
    as it was; files of an earlier run that this report does not produce are removed.

    Returns:
        dict[str, str]: ``{file name: path}`` of the files written.
    """
    out_dir = Path(out_dir)
    payloads: dict[str, bytes] = {}
    for name, snapshot in report.snapshots.items():
        payloads[f"{name}.html"] = snapshot.get_html_str(as_iframe=False).encode("utf-8")
        payloads[f"{name}.json"] = snapshot.json().encode("utf-8")
    signals = {name: signal.to_dict() for name, signal in report.signals.items()}
    payloads[SIGNALS_FILE] = (json.dumps(signals, indent=2, allow_nan=False) + "\n").encode("utf-8")

    written: dict[str, str] = {}
    for file, data in payloads.items():
        lake.atomic_write_bytes(out_dir / file, data)
        written[file] = str(out_dir / file)
    if report.served is not None:
        lake.atomic_write_parquet(out_dir / SERVED_FILE, report.served)
        written[SERVED_FILE] = str(out_dir / SERVED_FILE)
    stale = [f"{name}.{ext}" for name in SNAPSHOT_NAMES for ext in ("html", "json")] + [SERVED_FILE]
    for file in stale:
        if file not in written:
            (out_dir / file).unlink(missing_ok=True)
    return written


def read_signals(path: Path) -> dict[str, Signal]:
    """The signals of a ``signals.json`` written by :func:`write_signal_report`."""
    return {name: Signal.from_dict(d) for name, d in json.loads(Path(path).read_text()).items()}
