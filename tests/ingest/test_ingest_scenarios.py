"""Drift scenarios: determinism, each drift visible from its day on and absent before, and
the simulator's existing configurations unchanged by the scenario hooks."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from pathlib import Path

import pandas as pd
import pytest

from graphrec import contract
from graphrec.lake import list_partitions, partition_name, read_catalog, read_curated
from ingest import simulator
from ingest.scenarios import SCENARIOS, Scenario, scenario, simulate_scenario
from ingest.simulator import SimulationConfig, simulate

# Ten days from Wednesday 2025-01-01: a weekend on days 4-5, drift from Tuesday (day 7).
SIZE = {"days": 10, "drift_day": 7, "n_users": 300, "n_items": 200, "events_per_day": 1500}
DRIFT = SIZE["drift_day"]
DRIFTING = tuple(name for name in SCENARIOS if name != "stable")


def _partition_digest(part: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(part.glob("*.parquet")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _content_digest(landing: Path) -> str:
    """Digest of what the partitions hold (dtypes and values), not of Parquet's bytes, so
    that a new pyarrow writing other metadata does not change it."""
    digest = hashlib.sha256()
    for path in sorted(landing.rglob("*.parquet")):
        frame = pd.read_parquet(path)
        digest.update(str(path.relative_to(landing)).encode())
        digest.update(repr(list(frame.dtypes.astype(str).items())).encode())
        digest.update(frame.to_csv(index=False).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def lakes(tmp_path_factory) -> dict[str, tuple[Scenario, Path]]:
    """Every scenario written once, straight into its own curated-like directory."""
    out = {}
    for name in SCENARIOS:
        sc = scenario(name, **SIZE)
        lake = tmp_path_factory.mktemp(name)
        simulate_scenario(sc, lake)
        out[name] = (sc, lake)
    return out


def _day(lakes, name: str, index: int) -> pd.DataFrame:
    sc, lake = lakes[name]
    return read_curated(lake, [sc.config.day(index)])


def _category_mix(lakes, name: str, index: int) -> pd.Series:
    sc, lake = lakes[name]
    category = read_catalog(lake).set_index(contract.ITEM_ID)[contract.CATEGORY]
    return _day(lakes, name, index)[contract.ITEM_ID].map(category).value_counts(normalize=True)


def _tvd(a: pd.Series, b: pd.Series) -> float:
    return float(a.sub(b, fill_value=0.0).abs().sum() / 2)


# --- the existing simulator is unchanged ------------------------------------------------

# Content digests of simulate(config) written by ingest/simulator.py as it was
# before the scenario hooks were added (computed with _content_digest on that code, then
# pasted here). Any change to the default code path changes them.
UNCHANGED = {
    "default": (SimulationConfig(days=3), None, "4545c5a738e0a6e016ff01276d1a8dab61840591b9db3b7d9bded86d3bb87ad8"),
    "drift_and_corrupt": (
        SimulationConfig(
            n_users=200, n_items=120, days=6, events_per_day=800, drift_day=5, drift_new_items=30, corrupt_day=2
        ),
        None,
        "777b46b49a5899ffe80b3d626f8e7f8e42d935f0cb9493ed3fdc3472b70867da",
    ),
    "no_drift": (
        SimulationConfig(n_users=120, n_items=80, days=4, events_per_day=600, drift_day=None),
        None,
        "4b4a368997596f4b31e354a439bf15b005eb7028aebfa746ee5af04a87dc46c1",
    ),
    "rejection": (  # the large-world path (exact rejection sampling), forced by a tiny dense limit
        SimulationConfig(n_users=100, n_items=60, days=3, events_per_day=500, drift_day=2, drift_new_items=20),
        2000,
        "e0c8d62bb9cf8cf2cbc18da19e79db59f2b24c1d01ec888f287e52ccf2069e20",
    ),
}


@pytest.mark.parametrize("case", sorted(UNCHANGED))
def test_existing_configurations_give_the_same_data(case, tmp_path, monkeypatch):
    config, dense_limit, expected = UNCHANGED[case]
    if dense_limit is not None:
        monkeypatch.setattr(simulator, "_DENSE_LIMIT", dense_limit)
    simulate(config, tmp_path)
    assert _content_digest(tmp_path) == expected


def test_scenario_hooks_are_off_by_default():
    cfg = SimulationConfig()
    assert (cfg.weekend_volume, cfg.weekday_tilt, cfg.popularity_noise) == (1.0, 0.0, 0.0)
    assert cfg.shift_day is cfg.ramp_day is cfg.wave_day is cfg.bot_day is cfg.broken_feed_day is None


# --- the API -----------------------------------------------------------------------------


def test_names_and_errors():
    assert SCENARIOS == ("stable", "popularity_shift", "category_drift", "new_items", "bot_burst", "broken_feed")
    with pytest.raises(ValueError, match="popularity_shift.*broken_feed"):
        scenario("sudden_death")
    with pytest.raises(ValueError, match="drift_day"):
        scenario("bot_burst", days=10, drift_day=11)
    with pytest.raises(ValueError, match="drift_day"):
        scenario("bot_burst", days=10, drift_day=1)


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_metadata(name):
    sc = scenario(name, **SIZE)
    assert sc.name == name and sc.description
    assert sc.config.drift_day is None  # the simulator's old drift is not part of any scenario
    assert sc.gradual == (name == "category_drift")
    if name == "stable":
        assert sc.drift_start is None and not any(sc.drifting(i) for i in range(1, SIZE["days"] + 1))
        return
    assert sc.drift_start == DRIFT
    labels = [sc.drifting(i) for i in range(1, SIZE["days"] + 1)]
    if name == "bot_burst":
        assert sc.drift_end == DRIFT + 2
        assert labels == [False] * (DRIFT - 1) + [True] * 3 + [False]
    else:
        assert sc.drift_end is None
        assert labels == [False] * (DRIFT - 1) + [True] * (SIZE["days"] - DRIFT + 1)


@pytest.mark.parametrize("name", SCENARIOS)
def test_same_scenario_same_bytes(name, lakes, tmp_path):
    sc, lake = lakes[name]
    simulate_scenario(scenario(name, **SIZE), tmp_path)
    for ds in list_partitions(lake):
        assert _partition_digest(tmp_path / partition_name(ds)) == _partition_digest(lake / partition_name(ds))


def test_other_seed_other_bytes(lakes, tmp_path):
    sc, lake = lakes["stable"]
    simulate_scenario(scenario("stable", **{**SIZE, "seed": 43}), tmp_path)
    first = partition_name(sc.config.day(1))
    assert _partition_digest(tmp_path / first) != _partition_digest(lake / first)


@pytest.mark.parametrize("name", SCENARIOS)
def test_partitions_follow_the_contract(name, lakes):
    sc, lake = lakes[name]
    assert list_partitions(lake) == [sc.config.day(i) for i in range(1, SIZE["days"] + 1)]
    for index in range(1, SIZE["days"] + 1):
        frame = _day(lakes, name, index)
        assert tuple(frame.columns) == contract.INTERACTION_COLUMNS
        assert (frame[contract.EVENT_TS].dt.date == sc.config.day(index)).all()
        assert frame[contract.EVENT_TS].is_monotonic_increasing
        assert set(frame[contract.EVENT_TYPE]) <= set(contract.EVENT_TYPES)


# --- each drift where intended, and nowhere before it -------------------------------------


@pytest.mark.parametrize("name", DRIFTING)
def test_no_drift_before_the_drift_day(name, lakes):
    """Before the drift day a scenario's partitions are stable's, byte for byte."""
    _, lake = lakes[name]
    _, stable = lakes["stable"]
    days = list_partitions(lake)
    for ds in days[: DRIFT - 1]:
        assert _partition_digest(lake / partition_name(ds)) == _partition_digest(stable / partition_name(ds))
    drift_day = partition_name(days[DRIFT - 1])
    assert _partition_digest(lake / drift_day) != _partition_digest(stable / drift_day)


def test_stable_has_weekly_seasonality_and_no_drift(lakes, tmp_path):
    sc, _ = lakes["stable"]
    volume = {i: len(_day(lakes, "stable", i)) for i in range(1, SIZE["days"] + 1)}
    weekend = [i for i in volume if sc.config.day(i).weekday() >= 5]
    assert weekend == [4, 5]
    weekdays = [i for i in volume if i not in weekend]
    assert min(volume[i] for i in weekend) > 1.15 * max(volume[i] for i in weekdays)

    # The weekday tilt: the same world without it, same draws, has fewer "books" (category
    # 0, peaking on Mondays) on Monday (day 6) and more on Thursday (day 2).
    simulate(dataclasses.replace(sc.config, weekday_tilt=0.0), tmp_path)
    category = read_catalog(tmp_path).set_index(contract.ITEM_ID)[contract.CATEGORY]

    def books(frame: pd.DataFrame) -> float:
        return float((frame[contract.ITEM_ID].map(category) == "books").mean())

    def flat_day(index: int) -> pd.DataFrame:
        return read_curated(tmp_path, [sc.config.day(index)])

    assert books(_day(lakes, "stable", 6)) > books(flat_day(6)) + 0.01
    assert books(_day(lakes, "stable", 2)) < books(flat_day(2)) - 0.01

    # No change beyond the tilt: the same weekday a week apart has nearly the same mix,
    # while a drifted category mix is far from its pre-drift self.
    for index in (1, 2, 3):
        assert _tvd(_category_mix(lakes, "stable", index), _category_mix(lakes, "stable", index + 7)) < 0.07
    assert _tvd(_category_mix(lakes, "category_drift", 3), _category_mix(lakes, "category_drift", 10)) > 0.1


def test_popularity_noise_is_small_and_redrawn_daily():
    """A week apart (same weekday tilt) log-popularities differ by two N(0, 0.05) draws."""
    cfg = scenario("stable", **SIZE).config
    world = simulator._build_world(cfg)
    diff = simulator._day_log_pop(cfg, world, 8) - simulator._day_log_pop(cfg, world, 1)
    assert 0.06 < diff.std() < 0.085  # sqrt(2) * 0.05 = 0.071
    assert abs(diff.mean()) < 0.02


def test_popularity_shift_moves_traffic_off_the_head(lakes):
    pre = pd.concat([_day(lakes, "popularity_shift", i) for i in range(1, DRIFT)])
    head = pre[contract.ITEM_ID].value_counts().index[: SIZE["n_items"] // 10]

    def head_share(index: int) -> float:
        return float(_day(lakes, "popularity_shift", index)[contract.ITEM_ID].isin(head).mean())

    before = [head_share(i) for i in range(1, DRIFT)]
    after = [head_share(i) for i in range(DRIFT, SIZE["days"] + 1)]
    assert min(before) > 0.35
    assert max(after) < min(before) / 3


def test_category_drift_ramps_up(lakes):
    """The boosted category's share over stable's on the same day (same draws) grows."""
    lift = [
        _category_mix(lakes, "category_drift", i).get("books", 0.0)
        - _category_mix(lakes, "stable", i).get("books", 0.0)
        for i in range(DRIFT, SIZE["days"] + 1)
    ]
    assert 0.0 < lift[0] < 0.05  # day 1 of the ramp: barely visible
    assert lift[2] > 0.03  # day 3: clearly visible
    assert all(b > a - 0.02 for a, b in itertools.pairwise(lift))  # monotone, up to noise
    assert lift[-1] > lift[0] + 0.05


def test_new_items_take_a_share_of_traffic(lakes):
    sc, lake = lakes["new_items"]
    catalog = read_catalog(lake)
    new = catalog[catalog[contract.FIRST_SEEN_TS].dt.date == sc.config.day(DRIFT)]
    assert len(new) == SIZE["n_items"] // 5
    assert new[contract.CATEGORY].nunique() >= 4  # across categories, not one
    assert len(catalog) == SIZE["n_items"] + len(new)
    for index in range(1, SIZE["days"] + 1):
        share = _day(lakes, "new_items", index)[contract.ITEM_ID].isin(new[contract.ITEM_ID]).mean()
        assert share > 0.15 if index >= DRIFT else share == 0.0


def test_bot_burst_concentrates_events_on_a_few_users(lakes):
    sc, _ = lakes["bot_burst"]

    def top5_share(frame: pd.DataFrame) -> float:
        return float(frame[contract.USER_ID].value_counts().iloc[:5].sum() / len(frame))

    for index in range(1, SIZE["days"] + 1):
        frame = _day(lakes, "bot_burst", index)
        bots = frame[frame[contract.USER_ID] >= SIZE["n_users"]]
        if sc.drifting(index):
            assert top5_share(frame) > 0.25
            assert bots[contract.USER_ID].nunique() == 5
            assert bots[contract.ITEM_ID].nunique() <= 10
            assert 0.25 < len(bots) / len(frame) < 0.35
        else:
            assert top5_share(frame) < 0.15
            assert bots.empty


def test_broken_feed_collapses_event_types(lakes):
    for index in range(1, SIZE["days"] + 1):
        frame = _day(lakes, "broken_feed", index)
        types = set(frame[contract.EVENT_TYPE])
        if index < DRIFT:
            assert types == {"view", "click", "purchase"}
        else:
            assert types == {"view"}
            # Everything else is the undisturbed day: only the event types broke.
            columns = [c for c in contract.INTERACTION_COLUMNS if c != contract.EVENT_TYPE]
            pd.testing.assert_frame_equal(frame[columns], _day(lakes, "stable", index)[columns])
