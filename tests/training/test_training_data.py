"""Unit and data tests of training.data: window, split, id maps, graph, fingerprint."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from training_sim import TINY, curated_world, events

from graphrec import contract, lake
from training.data import build_graph, load_window, temporal_split, window_days_range
from training.ids import IdMap


def test_window_days_range():
    assert window_days_range(dt.date(2025, 1, 3), 3) == [dt.date(2025, 1, 1), dt.date(2025, 1, 2), dt.date(2025, 1, 3)]
    with pytest.raises(ValueError):
        window_days_range(dt.date(2025, 1, 3), 0)


@pytest.mark.parametrize("window_days, expected_days", [(1, 1), (2, 2), (4, 4), (14, 4)])
def test_load_window_reads_the_days_ending_at_ds(tmp_path, window_days, expected_days):
    settings = curated_world(tmp_path, TINY)
    ds = TINY.day(TINY.days)
    window = load_window(settings, ds, window_days)
    assert len(window.days) == expected_days
    assert window.end == ds and window.start == ds - dt.timedelta(days=window_days - 1)
    assert window.data_window == [window.start.isoformat(), ds.isoformat()]
    expected = lake.read_curated(settings.curated_dir, window.days)
    assert len(window.interactions) == len(expected)
    assert list(window.interactions.columns) == list(contract.INTERACTION_COLUMNS)
    days = window.interactions[contract.EVENT_TS].dt.date
    assert days.min() >= window.start and days.max() <= ds


def test_empty_window_has_contract_columns(tmp_path):
    settings = curated_world(tmp_path, TINY)
    window = load_window(settings, dt.date(2030, 1, 1), 3)
    assert window.days == () and window.interactions.empty
    assert list(window.interactions.columns) == list(contract.INTERACTION_COLUMNS)


def test_fingerprint_is_stable_and_tracks_bytes(tmp_path):
    settings = curated_world(tmp_path, TINY)
    ds = TINY.day(TINY.days)
    first = load_window(settings, ds, 3).fingerprint
    assert load_window(settings, ds, 3).fingerprint == first
    assert load_window(settings, ds, 2).fingerprint != first  # different partitions
    users_file = settings.curated_dir / lake.partition_name(ds) / contract.USERS_FILE
    users = pd.read_parquet(users_file)
    lake.atomic_write_parquet(users_file, users.iloc[1:], schema=contract.USERS_SCHEMA)
    assert load_window(settings, ds, 3).fingerprint != first


@pytest.mark.parametrize("holdout_days", [1, 2])
def test_temporal_split_at_midnight(holdout_days):
    frame = events(
        [
            (1, 10, "2025-01-01T12:00:00"),
            (1, 11, "2025-01-02T23:59:59.999999"),
            (2, 10, "2025-01-03T00:00:00"),
            (2, 12, "2025-01-03T18:00:00"),
        ]
    )
    train, holdout = temporal_split(frame, holdout_days)
    cutoff = pd.Timestamp("2025-01-04", tz="UTC") - pd.Timedelta(days=holdout_days)
    assert (train[contract.EVENT_TS] < cutoff).all() and (holdout[contract.EVENT_TS] >= cutoff).all()
    assert len(train) + len(holdout) == len(frame)
    assert len(holdout) == {1: 2, 2: 3}[holdout_days]


def test_temporal_split_with_explicit_end_keeps_an_empty_last_day_empty():
    frame = events([(1, 10, "2025-01-01T12:00:00"), (2, 11, "2025-01-02T12:00:00")])
    train, holdout = temporal_split(frame, 1, end=dt.date(2025, 1, 3))
    assert len(train) == 2 and holdout.empty


def test_id_map_round_trip_and_unknown_ids():
    ids = IdMap.from_values(np.array([30, 10, 20, 10]))
    assert ids.ids.tolist() == [10, 20, 30]
    assert ids.index(np.array([20, 30, 10, 99, 5])).tolist() == [1, 2, 0, -1, -1]
    assert IdMap.from_values(np.array([], dtype=np.int64)).index(np.array([1])).tolist() == [-1]


def test_build_graph_dedups_and_maps_contiguously(tmp_path):
    settings = curated_world(tmp_path, TINY)
    window = load_window(settings, TINY.day(TINY.days), 14)
    train, _ = temporal_split(window.interactions, 1)
    graph = build_graph(train)
    pairs = train[[contract.USER_ID, contract.ITEM_ID]].drop_duplicates()
    assert graph.n_edges == len(pairs) < len(train)
    assert graph.n_users == train[contract.USER_ID].nunique()
    assert graph.n_items == train[contract.ITEM_ID].nunique()
    assert graph.edge_index.shape == (2, graph.n_edges)
    assert graph.edge_index[0].max() == graph.n_users - 1 and graph.edge_index[1].max() == graph.n_items - 1
    back = set(zip(graph.users.ids[graph.edge_index[0]].tolist(), graph.items.ids[graph.edge_index[1]].tolist()))
    assert back == set(map(tuple, pairs.to_numpy().tolist()))
