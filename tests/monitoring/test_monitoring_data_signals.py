"""The data signals (monitoring.data_signals): each reacts to a shift built for it, the
share baselines are leave-one-day-out, and a day is compared with its own weekday.

Shifts are applied to the ordinary day of ``conftest.py``'s simulated lake; every signal
must reach its floor under its shift and stay below it on the ordinary day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from drift_frames import interactions

from graphrec import contract
from monitoring.signals import compute_signals


# Each data signal reacts to a shift built for it ---------------------------------------
def _repeat_events(day, reference, catalog, rng):  # every user four times as active
    return pd.concat([day] * 4, ignore_index=True)


def _bot_burst(day, reference, catalog, rng):  # one user makes 30% of the day's events
    bot = day.sample(n=int(0.43 * len(day)), replace=True, random_state=1).assign(**{contract.USER_ID: 10**6})
    return pd.concat([day, bot], ignore_index=True)


def _least_popular(reference) -> np.ndarray:
    counts = reference[contract.ITEM_ID].value_counts()
    return counts.index[counts.to_numpy() <= np.quantile(counts.to_numpy(), 0.2)].to_numpy()


def _tail_items(day, reference, catalog, rng):  # everyone turns to the reference's rarest items
    return day.assign(**{contract.ITEM_ID: rng.choice(_least_popular(reference), size=len(day))})


def _one_category(day, reference, catalog, rng):  # every event on items of one category
    first = catalog[contract.CATEGORY].iloc[0]
    items = catalog.loc[catalog[contract.CATEGORY] == first, contract.ITEM_ID].to_numpy()
    return day.assign(**{contract.ITEM_ID: rng.choice(items, size=len(day))})


def _new_items(day, reference, catalog, rng):  # 30% of the events on items never seen before
    out = day.copy()
    hit = rng.random(len(out)) < 0.3
    out.loc[hit, contract.ITEM_ID] = 10**6 + rng.integers(0, 50, hit.sum())
    return out


def _new_users(day, reference, catalog, rng):  # 30% of the events by users never seen before
    out = day.copy()
    hit = rng.random(len(out)) < 0.3
    out.loc[hit, contract.USER_ID] = 10**6 + rng.integers(0, 100, hit.sum())
    return out


def _more_clicks(day, reference, catalog, rng):
    out = day.copy()
    out.loc[rng.random(len(out)) < 0.5, contract.EVENT_TYPE] = "click"
    return out


def _no_purchases(day, reference, catalog, rng):
    return day[day[contract.EVENT_TYPE] != "purchase"].reset_index(drop=True)


@pytest.mark.parametrize(
    "name, shift, floor",
    [
        ("user_activity", _repeat_events, 0.5),
        ("user_concentration", _bot_burst, 0.15),
        ("item_popularity", _tail_items, 0.5),
        ("head_share", _tail_items, 0.3),
        ("category_mix", _one_category, 0.3),
        ("new_item_share", _new_items, 0.2),
        ("new_user_share", _new_users, 0.2),
        ("event_type_mix", _more_clicks, 0.2),
        ("event_type_missing", _no_purchases, 0.03),
    ],
)
def test_each_data_signal_reacts_to_its_shift(lake_days, ordinary, name, shift, floor):
    day, reference, catalog = lake_days["ordinary"], lake_days["reference"], lake_days["catalog"]
    report = compute_signals(shift(day, reference, catalog, np.random.default_rng(0)), reference, catalog)
    assert report.signals[name].value >= floor
    assert abs(ordinary.signals[name].value) < floor


def test_event_type_missing_names_the_vanished_type(lake_days):
    day, reference = lake_days["ordinary"], lake_days["reference"]
    signal = compute_signals(_no_purchases(day, reference, None, None), reference, lake_days["catalog"]).signals[
        "event_type_missing"
    ]
    share = float((reference[contract.EVENT_TYPE] == "purchase").mean())
    assert signal.value == pytest.approx(share, abs=1e-5)
    assert signal.before["purchase"] == pytest.approx(share, abs=1e-5)
    assert signal.after["purchase"] == 0.0 and "purchase" in signal.detail
    assert signal.n_current == len(day) - (day[contract.EVENT_TYPE] == "purchase").sum()


def test_new_item_and_user_baselines_are_leave_one_day_out():
    reference = interactions(
        [
            (1, 10, "2025-01-01 10:00", "view"),
            (1, 10, "2025-01-02 10:00", "view"),
            (2, 11, "2025-01-01 11:00", "view"),
            (3, 12, "2025-01-02 12:00", "view"),
        ]
    )  # item 10 and user 1 occur on both days; the rest on one day only
    current = interactions([(1, 10, "2025-01-03 10:00", "view"), (4, 13, "2025-01-03 11:00", "view")])
    report = compute_signals(current, reference, pd.DataFrame())
    assert report.signals["new_item_share"].before == pytest.approx(0.5)
    assert report.signals["new_item_share"].after == pytest.approx(0.5)
    assert report.signals["new_user_share"].before == pytest.approx(0.5)
    single_day = compute_signals(current, reference.iloc[:1], pd.DataFrame())
    assert single_day.signals["new_item_share"].before == 0.0


# Weekly seasonality -------------------------------------------------------------------
def _seasonal_days(first: pd.Timestamp, n_days: int, seed: int = 3) -> list[pd.DataFrame]:
    """Days where every active user makes 1-2 events on weekdays and 4-8 on weekends."""
    rng = np.random.default_rng(seed)
    days = []
    for offset in range(n_days):
        day = first + pd.Timedelta(days=offset)
        weekend = day.dayofweek >= 5
        users = rng.choice(400, size=300, replace=False)
        counts = rng.integers(4, 9, size=300) if weekend else rng.integers(1, 3, size=300)
        n = int(counts.sum())
        days.append(
            pd.DataFrame(
                {
                    contract.USER_ID: np.repeat(users, counts).astype(np.int64),
                    contract.ITEM_ID: rng.integers(0, 100, size=n).astype(np.int64),
                    contract.EVENT_TS: day + pd.to_timedelta(rng.integers(0, 86_400, size=n), unit="s"),
                    contract.EVENT_TYPE: rng.choice(["view", "click"], size=n),
                    contract.RATING: np.full(n, np.nan),
                }
            )
        )
    return days


def test_a_weekend_day_is_compared_with_the_reference_weekends():
    days = _seasonal_days(pd.Timestamp("2025-01-06", tz="UTC"), 15)  # Monday 6th .. Monday 20th
    reference, saturday = pd.concat(days[:12], ignore_index=True), days[12]  # the 18th is a Saturday
    catalog = pd.DataFrame({contract.ITEM_ID: np.arange(100), contract.CATEGORY: ["books"] * 100})
    matched = compute_signals(saturday, reference, catalog)
    unmatched = compute_signals(saturday, reference, catalog, match_weekday=False)
    assert unmatched.signals["user_activity"].value > 1.0  # weekends look like an activity shock
    assert matched.signals["user_activity"].value < 0.3
    assert (
        "2025-01-11" in matched.signals["user_activity"].detail
        and "2025-01-12" not in matched.signals["user_activity"].detail
    )
    # A weekday in a window without its weekday falls back to the whole reference.
    alone = compute_signals(days[14], pd.concat(days[12:14], ignore_index=True), catalog)
    assert "same weekday" not in alone.signals["user_activity"].detail
