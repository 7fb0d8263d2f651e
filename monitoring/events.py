"""Interactions as the drift signals read them: arrays, per-user-day and per-item tables.

:func:`event_table` turns one interactions frame (the day, or the reference window) into
an :class:`EventTable` computed once and shared by every signal: which user-day and item
each event belongs to, events per user-day and per item, which users and items occur on
only one day (the leave-one-day-out baselines of ``new_item_share`` / ``new_user_share``)
and which users are among their day's most active (``user_concentration``).
:func:`sample_rows` draws the seeded samples the Evidently reports run on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from graphrec import contract

TOP_USER_FRACTION = 0.01  # user_concentration: the day's top 1% most active users


@dataclasses.dataclass(frozen=True)
class EventTable:
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


def event_table(frame: pd.DataFrame) -> EventTable:
    """The :class:`EventTable` of an interactions frame (``graphrec.contract`` columns).

    The top users of a day are its ``max(1, floor(TOP_USER_FRACTION * active users))``
    most active ones (ties: smaller user id first).
    """
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
    return EventTable(
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


def sample_rows(n: int, max_rows: int, seed: int, stream: int) -> np.ndarray:
    """Sorted row positions of a seeded sample of at most ``max_rows`` of ``n`` rows.

    ``stream`` tells the samples of one run apart (each report side draws its own).
    """
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, stream]).choice(n, size=max_rows, replace=False))
