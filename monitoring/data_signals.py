"""The data signals: the day's interactions against the reference window.

Nine signals of :mod:`monitoring.signal_table` (group ``data``), from two Evidently
reports -- ``data`` (one row per event) and ``users`` (one row per user-day) -- and exact
counts:

* distances (Evidently ``ValueDrift``, on seeded samples of at most ``max_rows`` rows per
  side; ``value``, ``before``, ``after`` and the sizes describe that sample):
  ``user_activity`` (``log1p`` of events per active user-day), ``item_popularity``
  (``log1p`` of the reference count of each event's item), ``category_mix`` and
  ``event_type_mix``;
* shares, counted with numpy on all rows and shown in the ``data`` report as per-event
  ``yes``/``no`` columns (``is_top_user``, ``is_head_item``, ``is_new_item``,
  ``is_new_user``): ``user_concentration``, ``head_share``, ``new_item_share`` (keeps its
  sign: negative means fewer new items than usual) and ``new_user_share``;
* ``event_type_missing``: the reference share of the event types (at least 1% of the
  reference) absent today, on all events of the whole window.

**Baselines ("before") of the share signals**, measured inside the reference so that a
normal day scores about zero:

* ``user_concentration``: the reference's events made by the top 1% users *of their own
  day* (at least one user per day), pooled over the reference days (an event-weighted
  mean of the daily shares);
* ``new_item_share`` / ``new_user_share``: leave-one-day-out -- the reference's events on
  items (by users) that occur on only one reference day, i.e. that would have been new
  on that day against the other reference days. With a single reference day there is no
  such baseline and ``before`` is 0. The comparison window is one day shorter than the
  current day's, so ``before`` leans slightly high.

**Weekly seasonality.** Weekends and weekdays differ (volume per user, category mix),
so a single day compared with a whole window drifts every Saturday. With
``match_weekday`` the signals compare the day with the reference days of its own weekday,
when the reference has at least ``MIN_SEASON_EVENTS`` events on them (a 14-day window has
two of each); which items and users are known, their reference counts and the head
still come from the whole window, and ``event_type_missing`` uses the whole window. With
a shorter window the whole reference is used. The signals' ``detail`` names the matched
days.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from graphrec import contract
from monitoring.events import EventTable, sample_rows
from monitoring.evidently_metrics import drift_scores, run_report, value_drift, yes_no, yes_share
from monitoring.signal_table import SPECS
from monitoring.signal_values import Signal, measured
from training.ids import RowLookup, positions

if TYPE_CHECKING:  # pragma: no cover - typing only
    from evidently.core.report import Snapshot

HEAD_ITEM_FRACTION = 0.10  # head_share: the reference's top 10% items by count
MISSING_TYPE_MIN_SHARE = 0.01  # event_type_missing: only types with >= 1% of the reference
MIN_SEASON_EVENTS = 1_000  # weekday matching needs this many reference events on the weekday

# Report columns
ITEM_POPULARITY, CATEGORY, EVENT_TYPE = "item_popularity", contract.CATEGORY, contract.EVENT_TYPE
IS_NEW_ITEM, IS_HEAD_ITEM, IS_NEW_USER, IS_TOP_USER = "is_new_item", "is_head_item", "is_new_user", "is_top_user"
USER_ACTIVITY = "user_activity"


def _categories(catalog: pd.DataFrame, items: np.ndarray) -> np.ndarray:
    if catalog.empty or contract.CATEGORY not in catalog:
        return np.full(len(items), contract.UNKNOWN_CATEGORY, dtype=object)
    by_item = catalog.drop_duplicates(contract.ITEM_ID, keep="last")
    rows = RowLookup.of(by_item[contract.ITEM_ID].to_numpy(np.int64)).rows_of(items)
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


def _season_masks(cur: EventTable, ref: EventTable, min_events: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Reference events and user-days on the current day's weekday(s), if there are enough.

    Returns ``(event mask, user-day mask, matched days)``; all ``True`` (and no days) when
    the reference has fewer than ``min_events`` events on those weekdays.
    """
    weekdays = np.unique((cur.day + 3) % 7)  # 1970-01-01 was a Thursday: (day + 3) % 7 == 0 on Mondays
    events = np.isin((ref.day + 3) % 7, weekdays)
    if events.sum() < min_events:
        return np.ones(ref.n, bool), np.ones(len(ref.ud_count), bool), []
    return events, np.isin((ref.ud_day + 3) % 7, weekdays), sorted(np.unique(ref.day[events]).tolist())


def data_signals(
    cur: EventTable, ref: EventTable, catalog: pd.DataFrame, *, max_rows: int, seed: int, match_weekday: bool = True
) -> tuple[dict[str, Signal], dict[str, Snapshot]]:
    """The data signals of ``cur`` (the day) against ``ref`` (the reference window).

    Args:
        cur (EventTable): the day's interactions.
        ref (EventTable): the reference window's interactions.
        catalog (pd.DataFrame): ``item_id`` and ``category``; items missing from it (or
            an empty catalog) count as :data:`graphrec.contract.UNKNOWN_CATEGORY`.
        max_rows (int): rows per side in each Evidently report.
        seed (int): seed of the report samples.
        match_weekday (bool): compare with the reference days of the day's weekday
            (module docstring). Default: ``True``.

    Returns:
        tuple: ``{name: Signal}`` of the nine data signals and the ``data`` and ``users``
        Evidently snapshots.
    """
    cur_item_row = RowLookup.of(ref.item_ids).rows_of(cur.item)
    known_item = cur_item_row >= 0
    cur_ref_count = np.where(known_item, ref.item_count[np.maximum(cur_item_row, 0)], 0)

    n_head = max(1, int(HEAD_ITEM_FRACTION * len(ref.item_ids)))
    head = np.zeros(len(ref.item_ids), bool)
    head[np.lexsort((ref.item_ids, -ref.item_count))[:n_head]] = True
    cur_head = known_item & head[np.maximum(cur_item_row, 0)]
    cur_new_user = positions(np.unique(ref.user), cur.user) < 0
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
    ci, ri = sample_rows(cur.n, max_rows, seed, 0), season_rows[sample_rows(len(season_rows), max_rows, seed, 1)]
    data_cur = pd.DataFrame(
        {
            ITEM_POPULARITY: np.log1p(cur_ref_count[ci].astype(np.float64)),
            CATEGORY: _categories(catalog, cur.item[ci]),
            EVENT_TYPE: cur.event_type.to_numpy(dtype=object)[ci],
            **{column: yes_no(c[ci]) for column, (c, _) in flags.items()},
        }
    )
    data_ref = pd.DataFrame(
        {
            ITEM_POPULARITY: np.log1p(ref.item_count[ref.item_codes[ri]].astype(np.float64)),
            CATEGORY: _categories(catalog, ref.item[ri]),
            EVENT_TYPE: ref.event_type.to_numpy(dtype=object)[ri],
            **{column: yes_no(r[ri]) for column, (_, r) in flags.items()},
        }
    )
    data_snapshot = run_report(
        [
            value_drift(ITEM_POPULARITY, "item_popularity", True),
            value_drift(CATEGORY, "category_mix", False),
            value_drift(EVENT_TYPE, "event_type_mix", False),
            yes_share(IS_NEW_ITEM, SPECS["new_item_share"].display_threshold),
            yes_share(IS_HEAD_ITEM, SPECS["head_share"].display_threshold),
            yes_share(IS_NEW_USER, SPECS["new_user_share"].display_threshold),
            yes_share(IS_TOP_USER, SPECS["user_concentration"].display_threshold),
        ],
        data_cur,
        data_ref,
        numerical=[ITEM_POPULARITY],
        categorical=[CATEGORY, EVENT_TYPE, *flags],
    )
    ud_rows = np.flatnonzero(ud_season)
    ui, uri = sample_rows(len(cur.ud_count), max_rows, seed, 2), ud_rows[sample_rows(len(ud_rows), max_rows, seed, 3)]
    users_cur = pd.DataFrame({USER_ACTIVITY: np.log1p(cur.ud_count[ui].astype(np.float64))})
    users_ref = pd.DataFrame({USER_ACTIVITY: np.log1p(ref.ud_count[uri].astype(np.float64))})
    users_snapshot = run_report(
        [value_drift(USER_ACTIVITY, "user_activity", True)],
        users_cur,
        users_ref,
        numerical=[USER_ACTIVITY],
        categorical=[],
    )
    scores = {**drift_scores(data_snapshot), **drift_scores(users_snapshot)}

    signals: dict[str, Signal] = {}
    b, a = float(users_ref[USER_ACTIVITY].mean()), float(users_cur[USER_ACTIVITY].mean())
    signals["user_activity"] = measured(
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
    signals["item_popularity"] = measured(
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
        signals[name] = measured(
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
        value = a - b if SPECS[name].metric == "share_diff" else abs(a - b)  # new_item_share keeps its sign
        signals[name] = measured(name, value, b, a, cur.n, int(season.sum()), f"{text} {b:.1%} -> {a:.1%}")

    types_before, types_after = _shares(ref.event_type), _shares(cur.event_type)
    vanished = sorted(
        t for t, share in types_before.items() if share >= MISSING_TYPE_MIN_SHARE and t not in types_after
    )
    types_after = {**types_after, **{t: 0.0 for t in vanished}}
    signals["event_type_missing"] = measured(
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
