"""Partition validation end to end on real files: curate, quarantine, re-run, re-land."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from graphrec import contract
from graphrec.lake import list_partitions, partition_name, read_curated, sha256_file
from graphrec.settings import Settings
from ingest.landing import write_partition
from ingest.simulator import SimulationConfig, simulate

# Submodules, not the package: under pytest's default import mode tests/validation/ can
# shadow the package namespace (see test_public_api_imports_outside_the_repository).
from validation.outcome import MissingPartition, PartitionRejected, ValidationOutcome
from validation.partition import validate_partition
from validation.quarantine import list_quarantined

CFG = SimulationConfig(n_users=120, n_items=80, days=4, events_per_day=600, drift_day=None, corrupt_day=3)
GOOD, CORRUPT = CFG.day(1), CFG.day(3)


@pytest.fixture
def settings(tmp_path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    simulate(CFG, settings.landing_dir)
    return settings


def digests(directory: Path) -> dict[str, str]:
    """sha256 of every file in a directory tree, by relative path."""
    return {p.relative_to(directory).as_posix(): sha256_file(p) for p in directory.rglob("*") if p.is_file()}


def tree(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file with its digest and modification time, to prove nothing was touched."""
    if not directory.exists():
        return {}
    return {
        p.relative_to(directory).as_posix(): (sha256_file(p), p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file()
    }


def land(settings: Settings, ds: dt.date, frame: pd.DataFrame) -> Path:
    """Land a hand-written day as an upstream system would: schema not enforced."""
    return write_partition(settings.landing_dir, ds, frame, enforce_schema=False)


def good_frame(settings: Settings, ds: dt.date = GOOD) -> pd.DataFrame:
    return pd.read_parquet(settings.landing_dir / partition_name(ds) / contract.INTERACTIONS_FILE)


def test_valid_partition_moves_to_curated_byte_identical(settings):
    landed = settings.landing_dir / partition_name(GOOD)
    before = digests(landed)
    rows = len(good_frame(settings))

    outcome = validate_partition(settings, GOOD)

    assert outcome.status == "curated" and outcome.ok
    assert outcome.rows == rows > 0
    assert outcome.failed == [] and outcome.reason_path is None
    assert outcome.path == settings.curated_dir / partition_name(GOOD)
    assert not landed.exists()
    assert digests(outcome.path) == before == outcome.checksums
    assert set(before) == {contract.INTERACTIONS_FILE, contract.ITEMS_FILE, contract.USERS_FILE}
    assert list_partitions(settings.curated_dir) == [GOOD]
    assert len(read_curated(settings.curated_dir, [GOOD])) == rows
    assert not settings.quarantine_dir.exists()
    assert outcome.raise_for_status() is outcome
    json.dumps(outcome.to_dict())


def test_simulated_corrupt_day_is_quarantined_byte_identical(settings):
    validate_partition(settings, GOOD)
    curated_before = tree(settings.curated_dir)
    landed = settings.landing_dir / partition_name(CORRUPT)
    before = digests(landed)

    outcome = validate_partition(settings, CORRUPT)

    assert outcome.status == "quarantined" and not outcome.ok
    assert not landed.exists()
    assert outcome.path.parent == settings.quarantine_dir / partition_name(CORRUPT)
    assert outcome.path.name.endswith("Z") and len(outcome.path.name) == len("20250101T020000Z")
    files = digests(outcome.path)
    reason_file = files.pop("_reason.json")
    assert reason_file and files == before == outcome.checksums
    assert tree(settings.curated_dir) == curated_before
    assert list_partitions(settings.curated_dir) == [GOOD]

    reason = json.loads(outcome.reason_path.read_text())
    assert outcome.reason_path == outcome.path / "_reason.json"
    assert reason["ds"] == CORRUPT.isoformat() and reason["rows"] == outcome.rows > 0
    assert reason["files"] == before and reason["checked_at"]
    named = {(f["expectation"], f["column"]): f for f in reason["failed"]}
    for expected in [
        ("expect_column_values_to_not_be_null", "user_id"),
        ("expect_column_values_to_be_between", "event_ts"),
        ("expect_column_values_to_be_in_set", "event_type"),
    ]:
        assert named[expected]["unexpected_count"] > 0
        assert named[expected]["unexpected_sample"]
    assert "bogus" in named[("expect_column_values_to_be_in_set", "event_type")]["unexpected_sample"]

    with pytest.raises(PartitionRejected) as excinfo:
        outcome.raise_for_status()
    message = str(excinfo.value)
    assert str(outcome.path) in message
    for failure in reason["failed"]:
        assert f"{failure['check']} [{failure['expectation']}({failure['column'] or 'table'})]" in message
    null_users = named[("expect_column_values_to_not_be_null", "user_id")]["unexpected_count"]
    assert f"null_ids [expect_column_values_to_not_be_null(user_id)]: {null_users} unexpected" in message
    assert reason["checks"] == ["null_ids", "timestamp_outside_day", "unknown_event_type", "wrong_types"]
    assert reason["reason"] == ", ".join(reason["checks"])


def _rename_item(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={contract.ITEM_ID: "itemId"})


def _drop_event_type(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[contract.EVENT_TYPE])


def _string_user_ids(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(user_id=frame[contract.USER_ID].astype(str))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_rename_item, ("expect_table_columns_to_match_set", None)),
        (_drop_event_type, ("expect_table_columns_to_match_set", None)),
        (_string_user_ids, ("expect_column_type_to_be", "user_id")),
    ],
)
def test_hand_written_malformed_day_is_quarantined(settings, change, expected):
    ds = CFG.day(2)
    landed = land(settings, ds, change(good_frame(settings, ds)))
    before = digests(landed)

    outcome = validate_partition(settings, ds)

    assert outcome.status == "quarantined"
    assert {k: v for k, v in digests(outcome.path).items() if k != "_reason.json"} == before
    reason = json.loads(outcome.reason_path.read_text())
    assert expected in {(f["expectation"], f["column"]) for f in reason["failed"]}
    assert not (settings.curated_dir / partition_name(ds)).exists()
    with pytest.raises(PartitionRejected, match=expected[0]):
        outcome.raise_for_status()


@pytest.mark.parametrize(
    ("garbage", "check"),
    [
        (b"", "empty_file"),
        (b"user_id,item_id\n1,2\n" * 20, "wrong_format"),
        (b"PAR1" + b"\xff" * 64 + b"PAR1", "corrupt_file"),
    ],
)
def test_unreadable_file_is_quarantined_without_gx(settings, garbage, check):
    ds = CFG.day(2)
    landed = settings.landing_dir / partition_name(ds)
    (landed / contract.INTERACTIONS_FILE).write_bytes(garbage)
    before = digests(landed)

    outcome = validate_partition(settings, ds)

    assert outcome.status == "quarantined" and outcome.rows == 0
    assert {k: v for k, v in digests(outcome.path).items() if k != "_reason.json"} == before
    assert sha256_file(outcome.path / contract.INTERACTIONS_FILE) == before[contract.INTERACTIONS_FILE]
    reason = json.loads(outcome.reason_path.read_text())
    assert reason["checks"] == [check] and reason["reason"] == check
    assert [f["expectation"] for f in reason["failed"]] == ["readable_parquet"]
    with pytest.raises(PartitionRejected, match=check):
        outcome.raise_for_status()


def test_missing_interactions_file_is_quarantined(settings):
    ds = CFG.day(2)
    (settings.landing_dir / partition_name(ds) / contract.INTERACTIONS_FILE).unlink()
    outcome = validate_partition(settings, ds)
    assert outcome.status == "quarantined"
    reason = json.loads(outcome.reason_path.read_text())
    assert reason["checks"] == ["missing_file"]
    assert "interactions.parquet: file is missing" in reason["failed"][0]["error"]


def test_rerun_of_a_curated_day_is_a_no_op(settings):
    first = validate_partition(settings, GOOD)
    before = tree(settings.root)

    again = validate_partition(settings, GOOD.isoformat())

    assert again.status == "already_curated" and again.ok
    assert again.path == first.path and again.rows == first.rows
    assert again.checksums == first.checksums
    assert tree(settings.root) == before
    again.raise_for_status()


def test_missing_partition_raises(settings):
    with pytest.raises(MissingPartition, match="2031-05-06") as excinfo:
        validate_partition(settings, dt.date(2031, 5, 6))
    assert isinstance(excinfo.value, LookupError)


def test_validating_a_quarantined_day_again_says_it_was_quarantined(settings):
    first = validate_partition(settings, CORRUPT)
    assert first.status == "quarantined"

    with pytest.raises(MissingPartition) as excinfo:
        validate_partition(settings, CORRUPT)

    message = str(excinfo.value)
    assert f"{partition_name(CORRUPT)} was quarantined" in message
    assert first.checked_at.isoformat(timespec="seconds") in message  # when
    for check in {f["check"] for f in first.failed}:  # why
        assert check in message
    assert str(first.path) in message  # where the files are
    assert str(settings.landing_dir / partition_name(CORRUPT)) in message  # how to re-land
    assert "graphrec validate" in message


def test_relanded_valid_day_replaces_curated(settings):
    validate_partition(settings, GOOD)
    curated = settings.curated_dir / partition_name(GOOD)
    old = digests(curated)
    full = pd.read_parquet(curated / contract.INTERACTIONS_FILE)
    new_frame = full.iloc[: len(full) // 2]  # a corrected re-delivery with fewer rows
    landed = land(settings, GOOD, new_frame)
    new = digests(landed)
    assert new != old

    outcome = validate_partition(settings, GOOD)

    assert outcome.status == "curated" and outcome.replaced_previous
    assert outcome.rows == len(new_frame)
    assert digests(curated) == new
    assert not landed.exists()
    assert sorted(p.name for p in settings.curated_dir.iterdir()) == [partition_name(GOOD)]


def test_relanded_invalid_day_leaves_curated_alone(settings):
    validate_partition(settings, GOOD)
    curated_before = tree(settings.curated_dir)
    bad = pd.read_parquet(settings.curated_dir / partition_name(GOOD) / contract.INTERACTIONS_FILE)
    bad.loc[bad.index[:2], contract.EVENT_TYPE] = "teleport"
    land(settings, GOOD, bad)

    outcome = validate_partition(settings, GOOD)

    assert outcome.status == "quarantined"
    assert tree(settings.curated_dir) == curated_before


def test_each_rejected_attempt_is_kept_and_listed(settings):
    assert list_quarantined(settings) == []
    first = validate_partition(settings, CORRUPT)
    # The same bad batch is delivered again (same files, so the same received-at stamp).
    first_files = [p for p in first.path.iterdir() if p.name != "_reason.json"]
    landed = settings.landing_dir / partition_name(CORRUPT)
    landed.mkdir(parents=True)
    for p in first_files:
        (landed / p.name).write_bytes(p.read_bytes())
    second = validate_partition(settings, CORRUPT)

    assert second.status == "quarantined" and second.path != first.path
    assert first.reason_path.exists() and second.reason_path.exists()
    listed = list_quarantined(settings)
    assert [e["attempt"] for e in listed] == sorted([first.path.name, second.path.name])
    for entry in listed:
        assert entry["ds"] == CORRUPT.isoformat()
        assert "null_ids" in entry["checks"] and entry["reason"] == ", ".join(entry["checks"])
        assert any(
            line.startswith("null_ids [expect_column_values_to_not_be_null(user_id)]") for line in entry["failed"]
        )
        assert entry["day_now_curated"] is False


def test_whole_simulated_run_curates_all_but_the_corrupt_day(settings):
    outcomes = [validate_partition(settings, CFG.day(i)) for i in range(1, CFG.days + 1)]
    assert [o.status for o in outcomes] == ["curated", "curated", "quarantined", "curated"]
    assert list_partitions(settings.curated_dir) == [CFG.day(1), CFG.day(2), CFG.day(4)]
    assert list_partitions(settings.landing_dir) == []
    assert all(isinstance(o, ValidationOutcome) for o in outcomes)


def test_public_api_imports_outside_the_repository(tmp_path):
    """The DAG does ``from validation import validate_partition`` in a task process."""
    code = (
        "import validation; "
        "from validation import MissingPartition, PartitionRejected, ValidationOutcome, "
        "build_interactions_suite, list_quarantined, validate_partition; "
        "import sys; assert 'great_expectations' not in sys.modules, 'GX imported eagerly'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, (
        "the installed `validation` package does not expose its API; an editable install made "
        "before validation/__init__.py existed maps it as a namespace package: re-run "
        f"`pip install -e . --no-deps`.\n{done.stderr[-2000:]}"
    )
