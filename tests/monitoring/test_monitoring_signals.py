"""Drift signals (monitoring.signals) and batch serving (monitoring.offline_serving).

Unit tests on hand-built frames and models, behavioural tests on the simulated lake of
``conftest.py`` (days 1..3 are the reference, day 4 an ordinary day, day 5 the drift day):
every signal must stay small on an ordinary day and react to a shift built to move it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from graphrec import contract, lake
from monitoring import signals
from monitoring.offline_serving import ServingModel, serve_batch
from monitoring.signals import Signal, SignalReport, compute_signals, recall_proxy, write_signal_report
from serving.history import SeenSets, popularity_order, seen_from_pairs

K = 20


# Fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lake_days(drift_world) -> dict[str, pd.DataFrame]:
    cfg, curated = drift_world.config, drift_world.settings.curated_dir
    read = lambda days: lake.read_curated(curated, [cfg.day(d) for d in days])  # noqa: E731
    return {
        "reference": read([1, 2, 3]),
        "ordinary": read([4]),
        "drift": read([cfg.drift_day]),
        "catalog": lake.read_catalog(curated),
    }


@pytest.fixture(scope="module")
def model(lake_days) -> ServingModel:
    """A random model over the simulated ids, with the reference as its published history."""
    rng = np.random.default_rng(7)
    n_users = int(lake_days["reference"][contract.USER_ID].max()) + 1
    items = lake_days["catalog"][contract.ITEM_ID].to_numpy(np.int64)
    return ServingModel(
        user_ids=np.arange(n_users, dtype=np.int64),
        user_emb=rng.standard_normal((n_users, 8), dtype=np.float32),
        item_ids=items,
        item_emb=rng.standard_normal((len(items), 8), dtype=np.float32),
        seen=seen_from_pairs(lake_days["reference"]),
        popular=popularity_order(lake_days["reference"]),
    )


@pytest.fixture(scope="module")
def ordinary(lake_days, model) -> SignalReport:
    return compute_signals(lake_days["ordinary"], lake_days["reference"], lake_days["catalog"], model=model)


@pytest.fixture(scope="module")
def drifted(lake_days, model) -> SignalReport:
    return compute_signals(lake_days["drift"], lake_days["reference"], lake_days["catalog"], model=model)


def _interactions(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS, contract.EVENT_TYPE])
    frame[contract.EVENT_TS] = pd.to_datetime(frame[contract.EVENT_TS], utc=True)
    frame[contract.RATING] = np.nan
    return frame


# The contract -------------------------------------------------------------------------
def test_every_signal_is_reported_in_order_with_its_group_and_metric(ordinary):
    assert tuple(ordinary.signals) == signals.SIGNAL_NAMES
    for name, signal in ordinary.signals.items():
        assert (signal.name, signal.group, signal.metric) == (
            name,
            signals.SIGNAL_GROUPS[name],
            signals.SIGNAL_METRICS[name],
        )
        assert signal.detail
    assert set(ordinary.snapshots) == {"data", "users", "model"}


def test_signals_round_trip_through_dicts_and_json(ordinary):
    for signal in ordinary.signals.values():
        assert Signal.from_dict(signal.to_dict()) == signal
        assert Signal.from_dict(json.loads(json.dumps(signal.to_dict(), allow_nan=False))) == signal


def test_without_model_or_history_the_model_and_quality_signals_are_none(lake_days):
    report = compute_signals(lake_days["ordinary"], lake_days["reference"], lake_days["catalog"])
    for name in ("score_distribution", "catalog_coverage", "recommended_popularity", "quality_proxy"):
        assert report.signals[name].value is None
    assert report.served is None and set(report.snapshots) == {"data", "users"}


def test_empty_inputs_are_refused(lake_days):
    with pytest.raises(ValueError, match="non-empty"):
        compute_signals(lake_days["ordinary"].iloc[:0], lake_days["reference"], lake_days["catalog"])


# An ordinary day scores low; the simulated drift day moves the item signals -------------
@pytest.mark.parametrize(
    "name, bound",
    [
        ("user_activity", 0.15),
        ("user_concentration", 0.03),
        ("item_popularity", 0.1),
        ("head_share", 0.05),
        ("category_mix", 0.1),
        ("new_item_share", 0.03),
        ("new_user_share", 0.03),
        ("event_type_mix", 0.05),
        ("event_type_missing", 0.0),
        ("score_distribution", 0.1),
        ("catalog_coverage", 0.1),
        ("recommended_popularity", 0.1),
    ],
)
def test_an_ordinary_day_scores_low(ordinary, name, bound):
    assert abs(ordinary.signals[name].value) <= bound


@pytest.mark.parametrize(
    "name, floor", [("item_popularity", 0.5), ("category_mix", 0.2), ("new_item_share", 0.2), ("head_share", 0.1)]
)
def test_the_simulated_drift_day_moves_the_item_signals(drifted, ordinary, name, floor):
    assert drifted.signals[name].value >= floor > ordinary.signals[name].value


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
    reference = _interactions(
        [
            (1, 10, "2025-01-01 10:00", "view"),
            (1, 10, "2025-01-02 10:00", "view"),
            (2, 11, "2025-01-01 11:00", "view"),
            (3, 12, "2025-01-02 12:00", "view"),
        ]
    )  # item 10 and user 1 occur on both days; the rest on one day only
    current = _interactions([(1, 10, "2025-01-03 10:00", "view"), (4, 13, "2025-01-03 11:00", "view")])
    report = compute_signals(current, reference, pd.DataFrame())
    assert report.signals["new_item_share"].before == pytest.approx(0.5)
    assert report.signals["new_item_share"].after == pytest.approx(0.5)
    assert report.signals["new_user_share"].before == pytest.approx(0.5)
    single_day = compute_signals(current, reference.iloc[:1], pd.DataFrame())
    assert single_day.signals["new_item_share"].before == 0.0


# Model signals ------------------------------------------------------------------------
def test_a_wave_of_unknown_users_collapses_coverage_and_lifts_served_popularity(lake_days, model, ordinary):
    day = lake_days["ordinary"].assign(**{contract.USER_ID: lambda f: f[contract.USER_ID] + 10**6})
    report = compute_signals(day, lake_days["reference"], lake_days["catalog"], model=model)
    assert report.served[signals.FALLBACK].all()
    assert report.signals["catalog_coverage"].value >= 0.5 > ordinary.signals["catalog_coverage"].value
    assert report.signals["recommended_popularity"].value >= 0.5
    assert report.signals["score_distribution"].value is None  # no scored rows today


def test_score_distribution_reacts_when_todays_users_score_differently(lake_days, model):
    boosted = np.arange(len(model.user_ids)) % 2 == 0
    emb = model.user_emb.copy()
    emb[boosted] *= 4.0
    louder = ServingModel(model.user_ids, emb, model.item_ids, model.item_emb, model.seen, model.popular)
    day = lake_days["ordinary"]
    day = day[day[contract.USER_ID].isin(model.user_ids[boosted])]
    report = compute_signals(day, lake_days["reference"], lake_days["catalog"], model=louder)
    assert report.signals["score_distribution"].value >= 0.5


def test_served_users_are_equal_seeded_samples(lake_days, model):
    kwargs = dict(model=model, max_served_users=50, seed=3)
    first = compute_signals(lake_days["ordinary"], lake_days["reference"], lake_days["catalog"], **kwargs)
    again = compute_signals(lake_days["ordinary"], lake_days["reference"], lake_days["catalog"], **kwargs)
    coverage = first.signals["catalog_coverage"]
    assert coverage.n_current == coverage.n_reference == 50
    assert first.served[contract.USER_ID].nunique() == 50
    pd.testing.assert_frame_equal(first.served, again.served)
    assert first.signals == again.signals


# Quality proxy ------------------------------------------------------------------------
QUALITY_REFERENCE = _interactions(
    [
        (1, 30, "2025-01-01 10:00", "view"),
        (2, 11, "2025-01-01 10:00", "view"),
        (3, 40, "2025-01-01 10:00", "view"),
        (4, 41, "2025-01-01 10:00", "view"),
        (5, 42, "2025-01-01 10:00", "view"),
    ]
)
QUALITY_CURRENT = _interactions(
    [
        (1, 10, "2025-01-02 09:00", "view"),
        (1, 20, "2025-01-02 09:05", "click"),  # 1 hit of T = {10, 20}
        (1, 30, "2025-01-02 09:10", "view"),  # seen in the reference: not relevant
        (1, 10, "2025-01-02 09:15", "purchase"),  # a repeat counts once
        (2, 11, "2025-01-02 09:00", "view"),  # only a history item: user 2 has no relevant items
        (4, 10, "2025-01-02 09:00", "view"),  # not served yesterday
        *[(5, item, "2025-01-02 10:00", "view") for item in (16, 17, 18, 19)],  # 3 hits of 4, k = 3
    ]
)
SERVED_YESTERDAY = pd.DataFrame(
    {
        contract.USER_ID: np.repeat([1, 2, 3, 5], 3),
        signals.RANK: np.tile([1, 2, 3], 4),
        contract.ITEM_ID: [10, 11, 12, 10, 11, 12, 13, 14, 15, 16, 17, 18],
        signals.SCORE: 1.0,
        signals.FALLBACK: False,
    }
)


def test_recall_proxy_counts_hits_on_todays_new_items():
    per_user = recall_proxy(QUALITY_CURRENT, SERVED_YESTERDAY, QUALITY_REFERENCE, k=3)
    assert per_user[contract.USER_ID].tolist() == [1, 5]
    assert per_user["n_relevant"].tolist() == [2, 4]
    assert per_user["hits"].tolist() == [1, 3]
    assert per_user[signals.RECALL].tolist() == [0.5, 1.0]  # 1 / min(3, 2), 3 / min(3, 4)


@pytest.mark.parametrize("offline, value", [(0.25, 3.0), (None, None)])
def test_quality_proxy_is_the_ratio_to_the_offline_recall(offline, value):
    report = compute_signals(
        QUALITY_CURRENT,
        QUALITY_REFERENCE,
        pd.DataFrame(),
        served_yesterday=SERVED_YESTERDAY,
        offline_recall=offline,
        k=3,
    )
    signal = report.signals["quality_proxy"]
    assert signal.value == value
    assert (signal.before, signal.after, signal.n_current) == (offline, 0.75, 2)
    assert "quality" in report.snapshots


def test_yesterdays_shorter_lists_only_count_up_to_k():
    report = compute_signals(
        QUALITY_CURRENT, QUALITY_REFERENCE, pd.DataFrame(), served_yesterday=SERVED_YESTERDAY, offline_recall=0.5, k=1
    )
    # k = 1: user 1 keeps [10] (hit, T = 2 -> 1 / 1); user 5 keeps [16] (hit -> 1 / 1)
    assert report.signals["quality_proxy"].after == 1.0


# Evidently does the distances; samples are seeded --------------------------------------
def test_distances_are_evidentlys_fixed_method_scores(ordinary, lake_days):
    report_json = ordinary.snapshots["data"].dict()
    drift = {m["config"]["column"]: m for m in report_json["metrics"] if m["config"]["type"].endswith(":ValueDrift")}
    assert drift["item_popularity"]["config"]["method"] == "wasserstein"
    assert drift["category"]["config"]["method"] == "jensenshannon"
    assert ordinary.signals["item_popularity"].value == pytest.approx(float(drift["item_popularity"]["value"]))
    # and it is the normed Wasserstein distance of log1p(reference count) (no sampling at this size)
    reference, day = lake_days["reference"], lake_days["ordinary"]
    counts = reference[contract.ITEM_ID].value_counts()
    ref_pop = np.log1p(reference[contract.ITEM_ID].map(counts).to_numpy(float))
    cur_pop = np.log1p(day[contract.ITEM_ID].map(counts).fillna(0).to_numpy(float))
    expected = stats.wasserstein_distance(ref_pop, cur_pop) / np.std(ref_pop)
    assert ordinary.signals["item_popularity"].value == pytest.approx(expected, rel=1e-6)


def test_reports_are_sampled_to_max_rows_and_shares_stay_exact(lake_days):
    day, reference, catalog = lake_days["ordinary"], lake_days["reference"], lake_days["catalog"]
    full = compute_signals(day, reference, catalog)
    sampled = compute_signals(day, reference, catalog, max_rows=500, seed=1)
    assert sampled.signals == compute_signals(day, reference, catalog, max_rows=500, seed=1).signals
    assert (sampled.signals["item_popularity"].n_current, sampled.signals["item_popularity"].n_reference) == (500, 500)
    assert sampled.signals["head_share"].n_current == len(day)
    assert sampled.signals["head_share"] == full.signals["head_share"]
    assert sampled.signals["item_popularity"].value != full.signals["item_popularity"].value


# serve_batch --------------------------------------------------------------------------
def _toy_model(n_users=40, n_items=1000, dim=8, seen_per_user=30, seed=0) -> ServingModel:
    rng = np.random.default_rng(seed)
    users = np.arange(n_users, dtype=np.int64) * 7 + 3  # ids are not row numbers
    items = rng.permutation(n_items).astype(np.int64) + 100
    pairs = pd.DataFrame(
        {
            contract.USER_ID: np.repeat(users, seen_per_user),
            contract.ITEM_ID: rng.choice(items, size=n_users * seen_per_user),
        }
    )
    return ServingModel(
        users,
        rng.standard_normal((n_users, dim), dtype=np.float32),
        items,
        rng.standard_normal((n_items, dim), dtype=np.float32),
        seen_from_pairs(pairs),
        rng.permutation(items),
    )


@pytest.mark.parametrize("n_items, block, k", [(1000, 16, 10), (1000, 256, 10), (37, 256, 5), (1000, 8, 1)])
def test_serve_batch_matches_brute_force_top_k_without_seen_items(n_items, block, k):
    model = _toy_model(n_items=n_items)
    served = serve_batch(model, model.user_ids, k=k, batch_size=16, block=block)
    assert not served[signals.FALLBACK].any()
    for row, user in enumerate(model.user_ids):
        scores = model.item_emb @ model.user_emb[row]
        seen = np.isin(model.item_ids, model.seen.items_for(user))
        scores[seen] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        got = served[served[contract.USER_ID] == user]
        assert got[signals.RANK].tolist() == list(range(1, k + 1))
        np.testing.assert_array_equal(got[contract.ITEM_ID].to_numpy(), model.item_ids[top])
        np.testing.assert_allclose(got[signals.SCORE].to_numpy(), scores[top], rtol=1e-5)
        assert not np.isin(got[contract.ITEM_ID], model.seen.items_for(user)).any()


def test_a_user_who_saw_almost_everything_gets_the_rest():
    model = _toy_model(n_users=1, n_items=30, seen_per_user=0)
    seen_items = np.sort(model.item_ids[:27])
    model = ServingModel(
        model.user_ids,
        model.user_emb,
        model.item_ids,
        model.item_emb,
        SeenSets(model.user_ids, np.array([0, 27]), seen_items),
        model.popular,
    )
    served = serve_batch(model, model.user_ids, k=10)
    assert sorted(served[contract.ITEM_ID]) == sorted(model.item_ids[27:])
    assert served[signals.RANK].tolist() == [1, 2, 3]


def test_unknown_users_get_the_most_popular_unseen_items_as_fallback():
    model = _toy_model()
    unknown, other = 999_999, 888_888
    seen = SeenSets(np.array([other, unknown]), np.array([0, 0, 2]), np.sort(model.popular[[0, 2]]))
    model = ServingModel(model.user_ids, model.user_emb, model.item_ids, model.item_emb, seen, model.popular)
    served = serve_batch(model, [unknown, int(model.user_ids[0]), unknown, other], k=5)
    assert served[contract.USER_ID].drop_duplicates().tolist() == [unknown, int(model.user_ids[0]), other]
    fallback = served[served[contract.USER_ID] == unknown]
    assert fallback[signals.FALLBACK].all() and fallback[signals.SCORE].isna().all()
    assert fallback[contract.ITEM_ID].tolist() == model.popular[[1, 3, 4, 5, 6]].tolist()
    assert served.loc[served[contract.USER_ID] == other, contract.ITEM_ID].tolist() == model.popular[:5].tolist()
    assert not served.loc[served[contract.USER_ID] == model.user_ids[0], signals.FALLBACK].any()


def test_serving_model_from_a_bundle_reconstructs_item_vectors_from_the_index(tmp_path):
    from serving.bundle import Bundle, _lookup
    from serving.index import build_index

    toy = _toy_model()
    bundle = Bundle(
        version="v0001",
        path=tmp_path,
        manifest={},
        index=build_index(toy.item_emb),
        item_ids=toy.item_ids,
        user_ids=toy.user_ids,
        user_emb=toy.user_emb,
        seen=toy.seen,
        popular=toy.popular,
        user_lookup=_lookup(toy.user_ids),
    )
    model = ServingModel.from_bundle(bundle)
    np.testing.assert_array_equal(model.item_emb, toy.item_emb)
    pd.testing.assert_frame_equal(serve_batch(model, toy.user_ids[:5]), serve_batch(toy, toy.user_ids[:5]))


# write_signal_report ------------------------------------------------------------------
def test_write_signal_report_writes_parseable_files_and_removes_stale_ones(ordinary, lake_days, tmp_path):
    written = write_signal_report(ordinary, tmp_path)
    expected = {f"{name}.{ext}" for name in ("data", "users", "model") for ext in ("html", "json")}
    assert set(written) == expected | {signals.SIGNALS_FILE, signals.SERVED_FILE}
    for name in ("data", "users", "model"):
        assert json.loads(Path(written[f"{name}.json"]).read_text())["metrics"]
        assert "<html" in Path(written[f"{name}.html"]).read_text()[:2000].lower()
    assert signals.read_signals(Path(written[signals.SIGNALS_FILE])) == ordinary.signals
    pd.testing.assert_frame_equal(pd.read_parquet(written[signals.SERVED_FILE]), ordinary.served)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left

    without_model = compute_signals(lake_days["ordinary"], lake_days["reference"], lake_days["catalog"])
    write_signal_report(without_model, tmp_path)
    assert not (tmp_path / "model.html").exists() and not (tmp_path / signals.SERVED_FILE).exists()


def test_a_report_that_fails_to_render_writes_nothing(ordinary, tmp_path):
    class Broken:
        def get_html_str(self, as_iframe: bool = False) -> str:
            raise RuntimeError("boom")

    report = SignalReport(ordinary.signals, ordinary.served, {**ordinary.snapshots, "quality": Broken()})
    with pytest.raises(RuntimeError, match="boom"):
        write_signal_report(report, tmp_path / "out")
    assert not (tmp_path / "out").exists()


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
