"""The simulator's two samplers: the dense softmax for small worlds, rejection for large ones.

Both must draw each event's item from the same per-user softmax
``log_pop[i] + taste * <user, item>`` (``taste``: ``taste_strength`` scaled to the catalog); the small worlds the README and the
scenario tests use must keep the dense path, and so their bytes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from app import cli
from graphrec import contract
from graphrec import settings as settings_module
from graphrec.lake import list_partitions, partition_name
from ingest import simulator
from ingest.simulator import SimulationConfig

SMALL = SimulationConfig(n_users=60, n_items=50, days=4, events_per_day=600, drift_day=3, drift_new_items=10)


def _softmax(cfg: SimulationConfig, world, user: int, available: np.ndarray, log_pop: np.ndarray) -> np.ndarray:
    logits = log_pop + cfg.taste * world.item_factors[available] @ world.user_factors[user]
    probs = np.exp(logits - logits.max())
    return probs / probs.sum()


def _total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


@pytest.mark.parametrize(("taste_strength", "reference"), [(3.0, 500), (8.0, 500), (-2.0, 500), (3.0, 8)])
def test_rejection_draws_from_the_dense_softmax(taste_strength, reference):
    cfg = dataclasses.replace(SMALL, taste_strength=taste_strength, taste_reference_items=reference)
    world = simulator._build_world(cfg)
    index = cfg.drift_day  # the drifted category is boosted and the new items are on sale
    available = np.flatnonzero(world.item_first_day <= index)
    log_pop = simulator._day_log_pop(cfg, world, index)[available]
    draws = 200_000
    # At this many draws over 60 items the empirical total variation is about 0.005; a
    # sampler that forgets the taste term (checked below) is 0.15 to 0.8 off.
    bound = 0.02
    for user in (0, 7, 31):
        exact = _softmax(cfg, world, user, available, log_pop)
        users = np.full(draws, user)
        rng = np.random.default_rng([user, 1])
        picked = simulator._pick_by_rejection(cfg, world, users, available, log_pop, rng)
        empirical = np.bincount(picked, minlength=len(available)) / draws
        assert _total_variation(empirical, exact) < bound

        no_taste = dataclasses.replace(cfg, taste_strength=0.0)
        wrong = simulator._pick_by_rejection(no_taste, world, users, available, log_pop, rng)
        assert _total_variation(np.bincount(wrong, minlength=len(available)) / draws, exact) > 5 * bound


def test_taste_sharpens_with_the_catalog_beyond_the_reference_size():
    assert SMALL.taste == SMALL.taste_strength == 3.0
    at_reference = dataclasses.replace(SMALL, n_items=500)
    assert at_reference.taste == 3.0  # the demo's world and everything smaller keep their bytes
    large = dataclasses.replace(SMALL, n_items=40_000)
    assert large.taste == pytest.approx(3.0 * np.log(40_000) / np.log(500))  # about 5.1
    assert dataclasses.replace(large, taste_reference_items=0).taste == 3.0
    # The scaled weight is what both samplers use.
    world = simulator._build_world(dataclasses.replace(SMALL, taste_reference_items=8))
    cfg = dataclasses.replace(SMALL, taste_reference_items=8)
    available = np.arange(SMALL.n_items)
    log_pop = simulator._day_log_pop(cfg, world, 1)[available]
    rng = np.random.default_rng(0)
    users = np.zeros(50_000, dtype=np.int64)
    scaled = np.bincount(simulator._pick_by_rejection(cfg, world, users, available, log_pop, rng), minlength=50)
    assert _total_variation(scaled / len(users), _softmax(cfg, world, 0, available, log_pop)) < 0.03


def _days(cfg: SimulationConfig) -> list[pd.DataFrame]:
    world = simulator._build_world(cfg)
    return [simulator._simulate_day(cfg, world, index) for index in range(1, cfg.days + 1)]


def test_rejection_path_is_deterministic_and_changes_only_items(monkeypatch):
    dense = _days(SMALL)
    monkeypatch.setattr(simulator, "_DENSE_LIMIT", 0)
    first, second = _days(SMALL), _days(SMALL)
    for a, b, d in zip(first, second, dense):
        pd.testing.assert_frame_equal(a, b)
        # Its own random stream: users, timestamps and event types are those of the dense path.
        pd.testing.assert_frame_equal(a.drop(columns=contract.ITEM_ID), d.drop(columns=contract.ITEM_ID))
        assert not a[contract.ITEM_ID].equals(d[contract.ITEM_ID])
        assert a[contract.ITEM_ID].isin(np.arange(SMALL.n_items + SMALL.drift_new_items)).all()


def test_default_world_takes_the_dense_path(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the default world must not use the rejection sampler")

    monkeypatch.setattr(simulator, "_pick_by_rejection", refuse)
    assert len(_days(SimulationConfig())) == SimulationConfig().days


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path / "home"))
    settings_module.get_settings.cache_clear()
    yield settings_module.get_settings()
    settings_module.get_settings.cache_clear()


def test_cli_simulate_sets_the_world_size(home, tmp_path):
    out = tmp_path / "landing"
    argv = ["simulate", "--users", "50", "--items", "40", "--events-per-day", "300", "--days", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    days = list_partitions(out)
    assert len(days) == 2
    for ds in days:
        frame = pd.read_parquet(out / partition_name(ds) / contract.INTERACTIONS_FILE)
        assert len(frame) > 0
        assert frame[contract.USER_ID].max() < 50 and frame[contract.ITEM_ID].max() < 40


def test_cli_simulate_defaults_are_the_config_defaults():
    args = cli.build_parser().parse_args(["simulate"])
    default = SimulationConfig()
    assert (args.users, args.items, args.events_per_day) == (default.n_users, default.n_items, default.events_per_day)
