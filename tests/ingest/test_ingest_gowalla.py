"""The Gowalla (LightGCN split) loader: fast parsing, the contract mapping, and landing it."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.land import BadSourceRows, land_source
from graphrec import contract
from graphrec.lake import list_partitions, read_catalog, read_curated
from graphrec.settings import Settings, ValidationSettings
from ingest import gowalla

GOWALLA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "gowalla"
N_USERS, N_ITEMS, N_TRAIN, N_TEST = 29_858, 40_981, 810_128, 217_242
START = dt.date(2020, 1, 1)


def _settings(home: Path) -> Settings:
    """An isolated installation; no Data Docs (HTML) to keep the tests quick."""
    return Settings(home=home, validation=ValidationSettings(data_docs=False))


@pytest.fixture(scope="module")
def gowalla_dir() -> Path:
    if not ((GOWALLA / "train.txt").is_file() and (GOWALLA / "test.txt").is_file()):
        pytest.skip(f"the shared Gowalla split is not available at {GOWALLA}")
    return GOWALLA


@pytest.fixture(scope="module")
def landed(gowalla_dir, tmp_path_factory):
    """The whole split landed and validated in an isolated installation."""
    settings = _settings(tmp_path_factory.mktemp("gowalla-home"))
    load = gowalla.load_source(gowalla_dir)
    report = land_source(settings, load)
    return settings, load, report


def _pairs(frame: pd.DataFrame) -> np.ndarray:
    """(user, item) rows sorted, for comparing splits regardless of order."""
    pairs = frame[[contract.USER_ID, contract.ITEM_ID]].to_numpy(dtype=np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def test_read_split_is_fast_and_complete(gowalla_dir):
    began = time.perf_counter()
    train, test = gowalla.read_split(gowalla_dir)
    elapsed = time.perf_counter() - began
    assert elapsed < 5, f"read_split took {elapsed:.2f}s"  # about 0.4 s on a laptop-class CPU
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    for frame in (train, test):
        assert list(frame.columns) == [contract.USER_ID, contract.ITEM_ID, "line"]
        assert all(frame[c].dtype == np.int64 for c in frame.columns)
    assert train[contract.USER_ID].nunique() == N_USERS == test[contract.USER_ID].nunique()
    assert len(np.union1d(train[contract.ITEM_ID], test[contract.ITEM_ID])) == N_ITEMS
    # One line per user, in id order: user u is on line u + 1 of both files.
    assert (train["line"] == train[contract.USER_ID] + 1).all()
    assert (test["line"] == test[contract.USER_ID] + 1).all()
    assert not train.merge(test, on=[contract.USER_ID, contract.ITEM_ID]).shape[0]  # disjoint


def test_full_split_lands_without_bad_rows(landed):
    settings, load, report = landed
    assert load.parse_errors == []
    assert len(load.users) == N_USERS and len(load.items) == N_ITEMS
    assert report.bad_rows == 0 and report.bad_rows_report is None
    assert report.quarantined == 0 and report.quarantined_days == []
    assert report.curated == report.partitions == 2
    assert report.rows_landed == report.rows_curated == N_TRAIN + N_TEST
    assert list_partitions(settings.quarantine_dir) == []

    days = list_partitions(settings.curated_dir)
    assert days == [START, START + dt.timedelta(days=1)]
    curated = read_curated(settings.curated_dir, days)
    assert len(curated) == N_TRAIN + N_TEST
    assert curated[contract.USER_ID].nunique() == N_USERS
    assert curated[contract.ITEM_ID].nunique() == N_ITEMS
    assert not curated.duplicated([contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS]).any()
    assert set(curated[contract.EVENT_TYPE]) == {"click"} and curated[contract.RATING].isna().all()
    catalog = read_catalog(settings.curated_dir)
    assert len(catalog) == N_ITEMS and set(catalog[contract.CATEGORY]) == {"poi"}
    users = read_curated(settings.curated_dir, days, contract.USERS_FILE)
    assert users[contract.USER_ID].nunique() == N_USERS


def test_daily_partitions_reproduce_the_benchmark_split(landed, gowalla_dir):
    settings, _, _ = landed
    train, test = gowalla.read_split(gowalla_dir)
    first = read_curated(settings.curated_dir, [START])
    second = read_curated(settings.curated_dir, [START + dt.timedelta(days=1)])
    assert np.array_equal(_pairs(first), _pairs(train))
    assert np.array_equal(_pairs(second), _pairs(test))


def _write_split(folder: Path, train: bytes, test: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_bytes(train)
    (folder / "test.txt").write_bytes(test)
    return folder


def test_synthetic_split_maps_times_lines_items_and_users(tmp_path):
    split = _write_split(tmp_path / "split", b"0 3 1\n1 2\n\n2\n", b"0 2\n1 3 1\n2 0\n")
    load = gowalla.load_source(split, start=dt.date(2024, 5, 1))
    frame = load.interactions
    assert tuple(frame.columns) == contract.INTERACTION_COLUMNS
    assert frame.dtypes.astype(str).tolist() == ["int64", "int64", "datetime64[us, UTC]", "object", "float64"]
    assert frame.index.tolist() == [1, 1, 2, 10_000_001, 10_000_002, 10_000_002, 10_000_003]
    assert frame[contract.ITEM_ID].tolist() == [3, 1, 2, 2, 3, 1, 0]
    day1, day2 = pd.Timestamp("2024-05-01", tz="UTC"), pd.Timestamp("2024-05-02", tz="UTC")
    micros = pd.Timedelta(microseconds=1)
    assert frame[contract.EVENT_TS].tolist() == [
        day1,
        day1 + micros,
        day1 + 2 * micros,
        day2,
        day2 + micros,
        day2 + 2 * micros,
        day2 + 3 * micros,
    ]
    assert set(frame[contract.EVENT_TYPE]) == {"click"} and frame[contract.RATING].isna().all()
    # User 2 has no training items (line 4 is just its id) but is a user of the source.
    assert load.users[contract.USER_ID].tolist() == [0, 1, 2]
    items = load.items.set_index(contract.ITEM_ID)
    assert items.index.tolist() == [0, 1, 2, 3] and set(items[contract.CATEGORY]) == {"poi"}
    assert items.loc[0, contract.FIRST_SEEN_TS] == day2 + 3 * micros
    assert items.loc[1, contract.FIRST_SEEN_TS] == day1 + micros
    assert load.parse_errors == [] and "10000000 + line" in load.file


def test_malformed_lines_are_reported_with_their_file_and_line(tmp_path):
    split = _write_split(tmp_path / "split", b"0 1 2\n1 2\n12 abc 7\n3 4\n", b"0 3\n1 \xff 1\n3 1\n")
    with pytest.raises(gowalla.GowallaFormatError, match=r"train\.txt line 3.*test\.txt line 2"):
        gowalla.read_split(split)

    load = gowalla.load_source(split)
    assert [(e["line"], e["check"], e["value"]) for e in load.parse_errors][0] == (3, "unparseable_row", "12 abc 7")
    assert load.parse_errors[1]["line"] == 10_000_002 and "test.txt line 2" in load.parse_errors[1]["message"]
    assert 3 not in load.interactions.index and 10_000_002 not in load.interactions.index

    settings = _settings(tmp_path / "home")
    with pytest.raises(BadSourceRows, match=r"unparseable_row: 2 row\(s\) at line\(s\) 3, 10000002"):
        land_source(settings, load)
    assert list_partitions(settings.landing_dir) == []

    report = land_source(settings, load, on_bad_rows="quarantine")
    assert report.bad_rows == 2 and report.rows_landed == len(load.interactions) == 6
    bad = pd.read_csv(report.bad_rows_report)
    assert bad[["line", "check"]].values.tolist() == [[3, "unparseable_row"], [10_000_002, "unparseable_row"]]
    assert report.curated == 2 and report.quarantined == 0


def test_value_problems_are_left_to_the_contract(tmp_path):
    # Line 2 has a negative item id, line 3 repeats item 5: both parse, so the loader keeps
    # them and land_source reports them by line; the repeat shares its first occurrence's time.
    split = _write_split(tmp_path / "split", b"0 1 2\n1 -4\n2 5 5\n", b"0 3\n1 3\n2 6\n")
    load = gowalla.load_source(split)
    repeats = load.interactions.loc[3, contract.EVENT_TS]
    assert len(repeats) == 2 and repeats.nunique() == 1
    assert -4 not in load.items[contract.ITEM_ID].tolist()

    report = land_source(_settings(tmp_path / "home"), load, on_bad_rows="quarantine")
    bad = pd.read_csv(report.bad_rows_report)
    assert bad[["line", "check"]].values.tolist() == [[2, "negative_ids"], [3, "duplicate_events"]]
    assert report.rows_landed == 2 + 3 and report.quarantined == 0


def test_a_directory_without_the_split_is_refused(tmp_path):
    (tmp_path / "train.txt").write_text("0 1\n")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        gowalla.load_source(tmp_path)
