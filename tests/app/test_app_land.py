"""Data sources: the simulator's determinism and drift scenario, and the MovieLens 100K loader."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from app.land import BadSourceRows, land_source
from graphrec import contract
from graphrec.lake import list_partitions, partition_name, read_catalog, read_curated
from graphrec.settings import Settings, ValidationSettings
from ingest import movielens
from ingest.simulator import SimulationConfig, simulate

ML100K = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ml-100k"
SMALL = SimulationConfig(n_users=200, n_items=120, days=6, events_per_day=800, drift_day=5, drift_new_items=30)


def _digest(landing: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(landing.rglob("*.parquet")):
        digest.update(str(path.relative_to(landing)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    simulate(SMALL, tmp_path / "a")
    simulate(SMALL, tmp_path / "b")
    simulate(SimulationConfig(**{**SMALL.__dict__, "seed": 43}), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_partitions_follow_the_contract(tmp_path):
    simulate(SMALL, tmp_path)
    days = list_partitions(tmp_path)
    assert days == [SMALL.day(i) for i in range(1, SMALL.days + 1)]
    for ds in days:
        frame = pd.read_parquet(tmp_path / partition_name(ds) / contract.INTERACTIONS_FILE)
        assert tuple(frame.columns) == contract.INTERACTION_COLUMNS
        assert str(frame[contract.EVENT_TS].dtype) == "datetime64[us, UTC]"
        assert (frame[contract.EVENT_TS].dt.date == ds).all()
        assert set(frame[contract.EVENT_TYPE]) <= set(contract.EVENT_TYPES)


def test_drift_scenario_shifts_category_and_adds_items(tmp_path):
    simulate(SMALL, tmp_path)
    items = pd.concat(pd.read_parquet(p) for p in sorted(tmp_path.glob("ds=*/items.parquet")))
    new_items = items[items[contract.FIRST_SEEN_TS].dt.date == SMALL.day(SMALL.drift_day)]
    assert len(new_items) == SMALL.drift_new_items

    def category_share(index: int) -> float:
        frame = pd.read_parquet(tmp_path / partition_name(SMALL.day(index)) / contract.INTERACTIONS_FILE)
        merged = frame.merge(items, on=contract.ITEM_ID)
        drift_category = new_items[contract.CATEGORY].iloc[0]
        return float((merged[contract.CATEGORY] == drift_category).mean())

    before, after = category_share(SMALL.drift_day - 1), category_share(SMALL.drift_day)
    assert after > before * 1.5
    day_after = pd.read_parquet(tmp_path / partition_name(SMALL.day(SMALL.drift_day)) / contract.INTERACTIONS_FILE)
    assert day_after[contract.ITEM_ID].isin(new_items[contract.ITEM_ID]).mean() > 0.05


def test_corrupt_day_is_malformed_and_others_are_not(tmp_path):
    simulate(SimulationConfig(**{**SMALL.__dict__, "corrupt_day": 2}), tmp_path)
    bad = pd.read_parquet(tmp_path / partition_name(SMALL.day(2)) / contract.INTERACTIONS_FILE)
    assert bad[contract.USER_ID].isna().any()
    assert (~bad[contract.EVENT_TYPE].isin(contract.EVENT_TYPES)).any()
    good = pd.read_parquet(tmp_path / partition_name(SMALL.day(3)) / contract.INTERACTIONS_FILE)
    assert good[contract.USER_ID].notna().all()


@pytest.fixture(scope="module")
def ml100k_dir():
    if not (ML100K / "u.data").exists():
        pytest.skip("shared MovieLens 100K not available")
    return ML100K


@pytest.mark.parametrize("as_zip", [False, True])
def test_movielens_loader_maps_the_contract(ml100k_dir, tmp_path, as_zip):
    source = ml100k_dir
    if as_zip:
        source = tmp_path / "ml-100k.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for name in ("u.data", "u.item", "u.user"):
                archive.write(ml100k_dir / name, f"ml-100k/{name}")
    interactions, items, users = movielens.load(source)
    assert len(interactions) == 100_000
    assert interactions[contract.USER_ID].nunique() == 943 and len(users) == 943
    assert interactions[contract.ITEM_ID].nunique() == 1682 == len(items)
    assert interactions[contract.RATING].between(1, 5).all()
    assert (interactions[contract.EVENT_TYPE] == "rating").all()
    assert interactions[contract.EVENT_TS].min() >= pd.Timestamp("1997-09-19", tz="UTC")
    assert items[contract.CATEGORY].notna().all()


def test_movielens_loads_through_the_contract_with_nothing_quarantined(ml100k_dir, tmp_path):
    """Acceptance: every row passes the row rules, every daily partition is curated, and
    the counts match the dataset's README (100,000 ratings, 943 users, 1,682 items)."""
    settings = Settings(home=tmp_path / "home", validation=ValidationSettings(data_docs=False))
    report = land_source(settings, movielens.load_source(ml100k_dir))

    assert report.bad_rows == 0 and report.bad_rows_report is None
    assert report.quarantined == 0 and report.curated == report.partitions > 200
    assert report.rows_curated == 100_000
    days = list_partitions(settings.curated_dir)
    curated = read_curated(settings.curated_dir, days)
    assert len(curated) == 100_000
    assert curated[contract.USER_ID].nunique() == 943
    assert curated[contract.ITEM_ID].nunique() == 1682 == len(read_catalog(settings.curated_dir))
    assert not (settings.quarantine_dir).exists() or not list(settings.quarantine_dir.rglob("_reason.json"))
    # A historical dump breaks live-feed batch expectations (new users rate dozens of films
    # on their first day): under the backfill profile those are warnings, reported.
    assert report.warnings_by_check.get("new_users_high", 0) > 0
    sample = pd.read_parquet(settings.curated_dir / partition_name(days[10]) / contract.INTERACTIONS_FILE)
    assert (sample[contract.EVENT_TS].dt.date == days[10]).all()


def test_movielens_bad_rows_are_reported_by_line_and_nothing_lands(ml100k_dir, tmp_path):
    source = tmp_path / "ml"
    shutil.copytree(ml100k_dir, source)
    # The 300 earliest ratings (a few days), so that landing them stays quick.
    lines = sorted((source / "u.data").read_text().splitlines(), key=lambda line: int(line.split("\t")[3]))[:300]
    lines[9] = "-5\t" + lines[9].split("\t", 1)[1]  # line 10: negative user id
    lines[19] = "abc\tdef"  # line 20: not four numbers
    lines[29] = lines[29].rsplit("\t", 2)[0] + "\t9\t" + lines[29].rsplit("\t", 1)[1]  # line 30: rating 9
    (source / "u.data").write_text("\n".join(lines) + "\n")
    settings = Settings(home=tmp_path / "home", validation=ValidationSettings(data_docs=False))

    with pytest.raises(BadSourceRows) as excinfo:
        land_source(settings, movielens.load_source(source))
    message = str(excinfo.value)
    for fragment in (
        "line(s) 10",
        "line(s) 20",
        "line(s) 30",
        "negative_ids",
        "unparseable_row",
        "rating_out_of_range",
    ):
        assert fragment in message
    assert not settings.landing_dir.exists() and not settings.curated_dir.exists()
    (report,) = settings.quarantine_dir.glob("sources/movielens-100k/*/bad_rows.csv")
    bad = pd.read_csv(report)
    assert sorted(zip(bad["line"], bad["check"])) == [
        (10, "negative_ids"),
        (20, "unparseable_row"),
        (30, "rating_out_of_range"),
    ]

    # The same source with the quarantine policy: the 297 good rows land and are curated.
    landed = land_source(settings, movielens.load_source(source), on_bad_rows="quarantine")
    assert landed.rows_landed == 297 and landed.bad_rows == 3 and landed.quarantined == 0
    assert len(read_curated(settings.curated_dir, list_partitions(settings.curated_dir))) == 297


def test_movielens_rejects_a_path_that_is_not_the_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither"):
        movielens.load(tmp_path / "notes.txt")


def test_movielens_directory_copy_works_from_any_path(ml100k_dir, tmp_path):
    copy = tmp_path / "anywhere"
    shutil.copytree(ml100k_dir, copy)
    interactions, _, _ = movielens.load(copy)
    assert len(interactions) == 100_000
