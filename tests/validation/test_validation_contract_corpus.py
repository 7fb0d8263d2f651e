"""The contract's corpus of malformed partitions, severities, idempotency and the records.

Each malformed partition is built by the test from a valid simulated day, landed on top
of four curated days (so that batch-level checks have a history), and must be quarantined
with exactly the named blocking check(s), byte-identical, leaving ``curated/`` untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from graphrec import contract
from graphrec.lake import partition_name, sha256_file
from graphrec.settings import Settings, ValidationSettings
from ingest.simulator import SimulationConfig, simulate
from validation.checks import CHECKS, severity_of
from validation.partition import validate_partition
from validation.quarantine import list_quarantined, show_quarantined

CFG = SimulationConfig(n_users=300, n_items=200, days=5, events_per_day=1500, drift_day=None)
DAY = CFG.day(5)
HISTORY = [CFG.day(i) for i in range(1, 5)]
# "now" for the corpus: noon of the day being validated, so the future check can bite.
NOON = dt.datetime.combine(DAY, dt.time(12), tzinfo=dt.UTC)
AFTER = NOON + dt.timedelta(days=2)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A home with days 1-4 curated and day 5 landed (valid), validated once."""
    home = tmp_path_factory.mktemp("template") / "home"
    settings = Settings(home=home, validation=ValidationSettings(data_docs=False))
    simulate(CFG, settings.landing_dir)
    for ds in HISTORY:
        assert validate_partition(settings, ds, now=AFTER).status == "curated"
    return home


@pytest.fixture
def settings(template, tmp_path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(template, home)
    return Settings(home=home, validation=ValidationSettings(data_docs=False))


def tree(directory: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(directory).as_posix(): (sha256_file(p), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def day_dir(settings: Settings) -> Path:
    return settings.landing_dir / partition_name(DAY)


def frame_of(settings: Settings, file: str = contract.INTERACTIONS_FILE) -> pd.DataFrame:
    return pd.read_parquet(day_dir(settings) / file)


def rewrite(settings: Settings, frame: pd.DataFrame | pa.Table, file: str = contract.INTERACTIONS_FILE) -> None:
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, day_dir(settings) / file)


# One function per failure kind: each corrupts the landed day-5 partition in place. -------
def missing_file(s):
    (day_dir(s) / contract.INTERACTIONS_FILE).unlink()


def empty_bytes(s):
    (day_dir(s) / contract.INTERACTIONS_FILE).write_bytes(b"")


def zero_rows(s):
    rewrite(s, pa.Table.from_pandas(frame_of(s).iloc[:0], schema=contract.INTERACTIONS_SCHEMA, preserve_index=False))


def csv_text(s):
    (day_dir(s) / contract.INTERACTIONS_FILE).write_bytes(frame_of(s).to_csv(index=False).encode())


def truncated(s):
    path = day_dir(s) / contract.INTERACTIONS_FILE
    path.write_bytes(path.read_bytes()[:-200])


def latin1_text(s):
    table = pa.Table.from_pandas(frame_of(s), schema=contract.INTERACTIONS_SCHEMA, preserve_index=False)
    types = [t.replace("click", "cl\u00efck").encode("latin-1") for t in table.column(contract.EVENT_TYPE).to_pylist()]
    rewrite(s, table.set_column(3, contract.EVENT_TYPE, pa.array(types, pa.binary())))


def missing_column(s):
    rewrite(s, frame_of(s).drop(columns=[contract.RATING]))


def extra_column(s):
    rewrite(s, frame_of(s).assign(session_id="abc"))


def int32_ids(s):
    rewrite(s, frame_of(s).astype({contract.ITEM_ID: "int32"}))


def null_ids(s):
    table = pa.Table.from_pandas(frame_of(s), schema=contract.INTERACTIONS_SCHEMA, preserve_index=False)
    users = table.column(contract.USER_ID).to_pylist()
    users[:5] = [None] * 5
    # Still int64 in the file (nullable): the only problem is the nulls.
    schema = contract.INTERACTIONS_SCHEMA.set(0, pa.field(contract.USER_ID, pa.int64(), nullable=True))
    rewrite(s, table.set_column(0, pa.field(contract.USER_ID, pa.int64()), pa.array(users, pa.int64())).cast(schema))


def negative_ids(s):
    f = frame_of(s)
    f.loc[f.index[:3], contract.ITEM_ID] = -1
    rewrite(s, f)


def null_event_type(s):
    f = frame_of(s)
    f.loc[f.index[:4], contract.EVENT_TYPE] = None
    rewrite(s, f)


def outside_day(s):
    f = frame_of(s)
    f.loc[f.index[:6], contract.EVENT_TS] -= pd.Timedelta(days=2)
    rewrite(s, f)


def in_future(s):
    f = frame_of(s)
    late = f.index[f[contract.EVENT_TS] > pd.Timestamp(NOON) + pd.Timedelta(hours=1)]
    assert len(late) > 10
    rewrite(s, f)  # unchanged: validated at NOON, the afternoon's events lie in the future


def unknown_type(s):
    f = frame_of(s)
    f.loc[f.index[:7], contract.EVENT_TYPE] = "teleport"
    rewrite(s, f)


def bad_rating(s):
    f = frame_of(s)
    f.loc[f.index[:2], contract.RATING] = 11.0
    rewrite(s, f)


def duplicates(s):
    f = frame_of(s)
    rewrite(s, pd.concat([f, f.iloc[:20]], ignore_index=True).sort_values(contract.EVENT_TS, kind="stable"))


def row_count_collapse(s):
    rewrite(s, frame_of(s).iloc[:100])


def row_count_flood(s):
    f = frame_of(s)
    copies = [
        f.assign(
            **{contract.EVENT_TS: (f[contract.EVENT_TS] + pd.Timedelta(microseconds=k)).astype("datetime64[us, UTC]")}
        )
        for k in range(8)
    ]
    rewrite(s, pd.concat(copies, ignore_index=True))


def new_user_flood(s):
    f = frame_of(s)
    n = int(len(f) * 0.6)
    f.loc[f.index[:n], contract.USER_ID] = np.arange(100_000, 100_000 + n)
    rewrite(s, f)
    # The new users are listed in the users file, as a real feed would list them.
    users = pd.DataFrame({contract.USER_ID: np.unique(f[contract.USER_ID])})
    rewrite(s, users, contract.USERS_FILE)


def new_item_flood(s):
    f = frame_of(s)
    n = int(len(f) * 0.6)
    f.loc[f.index[:n], contract.ITEM_ID] = np.arange(500_000, 500_000 + n)
    rewrite(s, f)
    items = pd.DataFrame(
        {
            contract.ITEM_ID: np.arange(500_000, 500_000 + n),
            contract.CATEGORY: "books",
            contract.FIRST_SEEN_TS: pd.Timestamp(DAY.isoformat(), tz="UTC"),
        }
    ).astype({contract.FIRST_SEEN_TS: "datetime64[us, UTC]"})
    old = pq.read_table(day_dir(s) / contract.ITEMS_FILE)
    new = pa.Table.from_pandas(items, schema=contract.ITEMS_SCHEMA, preserve_index=False)
    rewrite(s, pa.concat_tables([old, new]), contract.ITEMS_FILE)


def _concentrate(s, column: str, share: float) -> None:
    """Give ``share`` of the day's events to one existing user or item (times kept unique)."""
    f = frame_of(s)
    n = int(len(f) * share)
    f.loc[f.index[:n], column] = int(f[column].iloc[-1])
    f.loc[f.index[:n], contract.EVENT_TS] += pd.to_timedelta(np.arange(n), unit="us")
    rewrite(s, f)


def bot_user(s):
    _concentrate(s, contract.USER_ID, 0.12)


def hot_item(s):
    _concentrate(s, contract.ITEM_ID, 0.45)


def items_dupes(s):
    items = pq.read_table(day_dir(s) / contract.ITEMS_FILE)
    extra = pa.Table.from_pandas(
        pd.DataFrame(
            {
                contract.ITEM_ID: [3, 3],
                contract.CATEGORY: ["books", "music"],
                contract.FIRST_SEEN_TS: pd.Timestamp(DAY.isoformat(), tz="UTC"),
            }
        ).astype({contract.FIRST_SEEN_TS: "datetime64[us, UTC]"}),
        schema=contract.ITEMS_SCHEMA,
        preserve_index=False,
    )
    rewrite(s, pa.concat_tables([items, extra]) if items.num_rows else extra, contract.ITEMS_FILE)


def items_bad_category(s):
    items = pd.DataFrame(
        {
            contract.ITEM_ID: [9001, 9002],
            contract.CATEGORY: ["books", "???"],
            contract.FIRST_SEEN_TS: pd.Timestamp(DAY.isoformat(), tz="UTC"),
        }
    )
    rewrite(
        s,
        pa.Table.from_pandas(
            items.astype({contract.FIRST_SEEN_TS: "datetime64[us, UTC]"}),
            schema=contract.ITEMS_SCHEMA,
            preserve_index=False,
        ),
        contract.ITEMS_FILE,
    )


def items_huge_ids(s):
    items = pq.read_table(day_dir(s) / contract.ITEMS_FILE)
    extra = pa.Table.from_pandas(
        pd.DataFrame(
            {
                contract.ITEM_ID: [2**60],
                contract.CATEGORY: ["books"],
                contract.FIRST_SEEN_TS: pd.Timestamp(DAY.isoformat(), tz="UTC"),
            }
        ).astype({contract.FIRST_SEEN_TS: "datetime64[us, UTC]"}),
        schema=contract.ITEMS_SCHEMA,
        preserve_index=False,
    )
    rewrite(s, pa.concat_tables([items, extra]) if items.num_rows else extra, contract.ITEMS_FILE)


def items_garbage(s):
    (day_dir(s) / contract.ITEMS_FILE).write_bytes(b"item_id,category\n1,books\n")


def users_dupes(s):
    users = frame_of(s, contract.USERS_FILE)
    rewrite(s, pd.concat([users, users.iloc[:3]], ignore_index=True), contract.USERS_FILE)


def text_user_ids(s):
    """Ids written as text (``"u149"``) by an upstream system."""
    f = frame_of(s)
    rewrite(s, f.assign(**{contract.USER_ID: "u" + f[contract.USER_ID].astype(str)}))


def text_item_ids(s):
    f = frame_of(s)
    rewrite(s, f.assign(**{contract.ITEM_ID: f[contract.ITEM_ID].astype(str)}))


def _give_rows(s, column: str, value: int, share: float, *, list_it: bool = True) -> None:
    """Set ``column`` to ``value`` on ``share`` of the rows (times kept unique); list the id
    in the partition's users file so that only the value itself is wrong."""
    f = frame_of(s)
    n = max(1, int(len(f) * share))
    rows = f.index[:: len(f) // n][:n]
    f.loc[rows, column] = value
    f.loc[rows, contract.EVENT_TS] += pd.to_timedelta(np.arange(n), unit="us")
    rewrite(s, f)
    if list_it and column == contract.USER_ID:
        users = frame_of(s, contract.USERS_FILE)
        rewrite(
            s, pd.concat([users, pd.DataFrame({contract.USER_ID: [value]})], ignore_index=True), contract.USERS_FILE
        )


def int64_max_users_5pct(s):
    _give_rows(s, contract.USER_ID, 2**63 - 1, 0.05)


def int64_max_users_2pct(s):
    _give_rows(s, contract.USER_ID, 2**63 - 1, 0.02)


def int32_max_users_2pct(s):
    """A sentinel inside the valid range: INT32_MAX as a placeholder user."""
    _give_rows(s, contract.USER_ID, 2**31 - 1, 0.02)


def ids_above_2_53(s):
    f = frame_of(s)
    f.loc[f.index[:2], contract.ITEM_ID] = [2**53, 2**53 + 1]
    rewrite(s, f)


def unlisted_users(s):
    """Interactions by users that the partition's users file does not list (nor any earlier day)."""
    f = frame_of(s)
    f.loc[f.index[:5], contract.USER_ID] = np.arange(700_000, 700_005)
    rewrite(s, f)


def unlisted_items(s):
    """Interactions on items that no items file (this day's or an earlier day's) lists."""
    f = frame_of(s)
    f.loc[f.index[:5], contract.ITEM_ID] = np.arange(800_000, 800_005)
    rewrite(s, f)


def nanosecond_timestamps(s):
    """Valid values, but written as ``timestamp[ns, UTC]`` (pandas' default unit)."""
    f = frame_of(s)
    rewrite(s, f.astype({contract.EVENT_TS: "datetime64[ns, UTC]"}))


CORPUS: list[tuple[Callable[[Settings], None], set[str]]] = [
    (missing_file, {"missing_file"}),
    (empty_bytes, {"empty_file"}),
    (zero_rows, {"empty_file"}),
    (csv_text, {"wrong_format"}),
    (truncated, {"corrupt_file"}),
    (latin1_text, {"wrong_encoding"}),
    (missing_column, {"missing_columns"}),
    (extra_column, {"extra_columns"}),
    (int32_ids, {"wrong_types"}),
    (null_ids, {"null_ids"}),
    (negative_ids, {"negative_ids"}),
    (null_event_type, {"null_values"}),
    (outside_day, {"timestamp_outside_day"}),
    (in_future, {"timestamp_in_future"}),
    (unknown_type, {"unknown_event_type"}),
    (bad_rating, {"rating_out_of_range"}),
    (duplicates, {"duplicate_events"}),
    (row_count_collapse, {"row_count_anomaly"}),
    (row_count_flood, {"row_count_anomaly"}),
    (new_user_flood, {"new_users_flood"}),
    (new_item_flood, {"new_items_flood"}),
    (bot_user, {"user_dominance"}),
    (hot_item, {"item_dominance"}),
    (items_dupes, {"items_duplicate_ids"}),
    (items_bad_category, {"items_invalid_category"}),
    (items_huge_ids, {"items_ids_out_of_range"}),
    (items_garbage, {"items_unreadable"}),
    (users_dupes, {"users_duplicate_ids"}),
    (text_user_ids, {"wrong_types"}),
    (text_item_ids, {"wrong_types"}),
    (int64_max_users_5pct, {"ids_out_of_range", "users_ids_out_of_range"}),
    (int64_max_users_2pct, {"ids_out_of_range", "users_ids_out_of_range"}),
    (int32_max_users_2pct, {"sentinel_ids"}),
    (ids_above_2_53, {"ids_out_of_range"}),
    (nanosecond_timestamps, {"wrong_types"}),
]


def test_the_corpus_covers_every_blocking_check_kind():
    covered = set().union(*(checks for _, checks in CORPUS))
    assert len(CORPUS) >= 15
    expected = {name for name, check in CHECKS.items() if check.severity == "blocking"}
    # Null/negative ids and schema problems of the users file share their code path with
    # the interactions file; they are covered in test_validation_suite.py.
    # check_error is what a check that cannot be evaluated gives: no data triggers it (the
    # fuzzing tests assert so); test_a_check_that_crashes_quarantines_the_day_intact forces it.
    assert expected - covered <= {
        "check_error",
        "items_schema",
        "items_null_values",
        "items_negative_ids",
        "users_unreadable",
        "users_schema",
        "users_null_ids",
        "users_negative_ids",
    }


@pytest.mark.parametrize(("corrupt", "checks"), CORPUS, ids=[c.__name__ for c, _ in CORPUS])
def test_malformed_partition_is_quarantined_with_its_named_reason(settings, corrupt, checks):
    corrupt(settings)
    landed = day_dir(settings)
    raw = tree(landed)
    raw_digests = {name: digest for name, (digest, _) in raw.items()}
    curated_before = tree(settings.curated_dir)

    outcome = validate_partition(settings, DAY, now=NOON if corrupt is in_future else AFTER)

    assert outcome.status == "quarantined", outcome.message()
    assert {f["check"] for f in outcome.failed} == checks, outcome.message()
    assert all(f["severity"] == "blocking" for f in outcome.failed)
    # Nothing lost: the landed files are in quarantine, byte for byte, next to the reason.
    assert not landed.exists()
    kept = {p.name: sha256_file(p) for p in outcome.path.iterdir() if p.name != "_reason.json"}
    assert kept == raw_digests
    # curated/ is untouched (same files, same bytes, same modification times).
    assert tree(settings.curated_dir) == curated_before
    reason = json.loads(outcome.reason_path.read_text())
    assert set(reason["checks"]) == checks and reason["reason"] == ", ".join(sorted(checks))
    assert reason["files"] == raw_digests
    assert reason["counts"]["blocking"] == len(outcome.failed)
    for failure in reason["failed"]:
        assert failure["check"] in checks
        # Each record says what was observed: counts, a sample, an observed value or an error.
        assert (
            failure["unexpected_count"]
            or failure["observed_value"] is not None
            or failure["error"]
            or failure["details"]
        ), failure


def test_warning_level_problem_is_accepted_and_reported(settings):
    # 35% of events on never-seen items: above the warning threshold, below the block.
    f = frame_of(settings)
    n = int(len(f) * 0.35)
    f.loc[f.index[:n], contract.ITEM_ID] = np.arange(700_000, 700_000 + n) % 90 + 700_000
    rewrite(settings, f)

    outcome = validate_partition(settings, DAY, now=AFTER)

    assert outcome.status == "curated", outcome.message()
    # The new items are not in the items file either: the referential check warns too.
    assert sorted(w["check"] for w in outcome.warnings) == ["new_items_high", "unlisted_items"]
    (high,) = [w for w in outcome.warnings if w["check"] == "new_items_high"]
    assert high["observed_value"] == pytest.approx(n / len(f), abs=1e-3)
    assert "new_items_high" in outcome.message()
    summary = outcome.to_dict()
    assert summary["warning_checks"] == ["new_items_high", "unlisted_items"] and summary["failed_checks"] == []
    record = json.loads(outcome.record_path.read_text())
    assert record["status"] == "curated" and record["warning_checks"] == ["new_items_high", "unlisted_items"]

    from app.status import collect_status, format_status

    status = collect_status(settings)
    (latest,) = [v for v in status["validation"]["recent"] if v["ds"] == DAY.isoformat()]
    assert latest["warning_checks"] == ["new_items_high", "unlisted_items"]
    assert "new_items_high" in format_status(status)


def test_severity_is_configuration(settings):
    duplicates(settings)
    relaxed = Settings(
        home=settings.home, validation=ValidationSettings(data_docs=False, severity={"duplicate_events": "warning"})
    )
    outcome = validate_partition(relaxed, DAY, now=AFTER)
    assert outcome.status == "curated"
    assert [w["check"] for w in outcome.warnings] == ["duplicate_events"]

    with pytest.raises(ValueError, match="unknown check"):
        validate_partition(
            Settings(home=settings.home, validation=ValidationSettings(severity={"no_such_check": "off"})), DAY
        )


def test_check_set_to_off_is_not_evaluated(settings):
    unknown_type(settings)
    off = Settings(
        home=settings.home, validation=ValidationSettings(data_docs=False, severity={"unknown_event_type": "off"})
    )
    assert validate_partition(off, DAY, now=AFTER).status == "curated"


def test_backfill_profile_turns_batch_blocks_into_warnings(settings):
    bot_user(settings)
    outcome = validate_partition(settings, DAY, now=AFTER, profile="backfill")
    assert outcome.status == "curated"
    assert {"user_dominance", "user_share_high"} <= {w["check"] for w in outcome.warnings}
    assert severity_of("user_dominance", {}, "backfill") == "warning"
    assert severity_of("duplicate_events", {}, "backfill") == "blocking"


def test_corrected_partition_is_accepted_and_quarantine_history_kept(settings):
    original = {p.name: p.read_bytes() for p in day_dir(settings).iterdir()}
    unknown_type(settings)
    rejected = validate_partition(settings, DAY, now=AFTER)
    assert rejected.status == "quarantined"

    # The corrected batch is re-delivered.
    day_dir(settings).mkdir(parents=True)
    for name, data in original.items():
        (day_dir(settings) / name).write_bytes(data)
    accepted = validate_partition(settings, DAY, now=AFTER)

    assert accepted.status == "curated"
    assert rejected.reason_path.exists()
    (entry,) = list_quarantined(settings)
    assert entry["checks"] == ["unknown_event_type"] and entry["day_now_curated"] is True
    (shown,) = show_quarantined(settings, DAY.isoformat())
    assert shown["reason_file"]["failed"][0]["check"] == "unknown_event_type"
    assert shown["reason_file"]["failed"][0]["unexpected_count"] == 7
    with pytest.raises(LookupError, match="nothing quarantined"):
        show_quarantined(settings, HISTORY[0].isoformat())


def test_same_day_twice_is_idempotent_in_curated_and_feast_offline(settings):
    from features.snapshots import build_features, read_offline

    original = {p.name: p.read_bytes() for p in day_dir(settings).iterdir()}
    first = validate_partition(settings, DAY, now=AFTER)
    build_features(settings, DAY)
    curated = {n: d for n, (d, _) in tree(settings.curated_dir).items()}
    offline = {view: read_offline(settings, view) for view in ("user_activity", "item_popularity")}

    # The same day is delivered and processed again.
    day_dir(settings).mkdir(parents=True)
    for name, data in original.items():
        (day_dir(settings) / name).write_bytes(data)
    second = validate_partition(settings, DAY, now=AFTER)
    build_features(settings, DAY)
    third = validate_partition(settings, DAY, now=AFTER)  # nothing landed: a no-op

    assert first.status == second.status == "curated" and second.replaced_previous
    assert third.status == "already_curated"
    assert first.checksums == second.checksums == third.checksums
    assert {n: d for n, (d, _) in tree(settings.curated_dir).items()} == curated
    for view, before in offline.items():
        after = read_offline(settings, view)
        key = [c for c in after.columns if c.endswith("_id")] + ["event_timestamp"]
        assert not after.duplicated(key).any()
        pd.testing.assert_frame_equal(after, before)


def test_data_docs_are_written_and_linked(settings):
    with_docs = Settings(home=settings.home, validation=ValidationSettings(data_docs=True))
    outcome = validate_partition(with_docs, DAY, now=AFTER)
    assert set(outcome.data_docs) == {"interactions", "interactions_batch", "items", "users"}
    for page in outcome.data_docs.values():
        html = Path(page).read_text()
        assert Path(page).is_relative_to(with_docs.data_docs_dir) and "<html" in html.lower()
    assert (with_docs.data_docs_dir / "index.html").is_file()
    assert f"file://{outcome.data_docs['interactions']}" in outcome.message()


def test_nanosecond_timestamps_are_refused_with_the_fix_in_the_reason(settings):
    """Kept strict (curated files must share one Parquet schema); the reason says how to fix the writer."""
    nanosecond_timestamps(settings)
    outcome = validate_partition(settings, DAY, now=AFTER)
    assert outcome.status == "quarantined"
    (failure,) = [f for f in outcome.failed if f["column"] == contract.EVENT_TS]
    assert "datetime64[ns, UTC]" in str(failure["observed_value"])
    assert "timestamp[us" in failure["hint"] and "coerce_timestamps" in failure["hint"]
    assert failure["hint"] in outcome.message()


def test_text_ids_name_the_column_and_say_how_to_fix(settings):
    text_user_ids(settings)
    outcome = validate_partition(settings, DAY, now=AFTER)
    (failure,) = outcome.failed
    assert failure["check"] == "wrong_types" and failure["column"] == contract.USER_ID
    assert "int64" in failure["hint"]


@pytest.mark.parametrize("severity", ["default", "blocking"])
@pytest.mark.parametrize(("corrupt", "check"), [(unlisted_users, "unlisted_users"), (unlisted_items, "unlisted_items")])
def test_unlisted_ids_warn_by_default_and_block_when_configured(settings, corrupt, check, severity):
    if severity != "default":
        settings = settings.updated({"validation.severity": {check: severity}})
    corrupt(settings)

    outcome = validate_partition(settings, DAY, now=AFTER)

    if severity == "default":
        assert outcome.status == "curated", outcome.message()
        (failure,) = [f for f in outcome.warnings if f["check"] == check]
    else:
        assert outcome.status == "quarantined", outcome.message()
        (failure,) = outcome.failed
        assert failure["check"] == check
    assert failure["unexpected_count"] == 5
    assert failure["unexpected_sample"] and set(failure["unexpected_sample"]) <= set(range(700_000, 800_005))


def test_a_check_that_crashes_quarantines_the_day_intact(settings, monkeypatch):
    """The safety net: should a check ever raise, the day is quarantined unchanged, with the error."""
    import validation.partition

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug in a check")

    monkeypatch.setattr(validation.partition, "run_suites", broken)
    raw = {name: digest for name, (digest, _) in tree(day_dir(settings)).items()}
    curated_before = tree(settings.curated_dir)

    outcome = validate_partition(settings, DAY, now=AFTER)

    assert outcome.status == "quarantined"
    (failure,) = outcome.failed
    assert failure["check"] == "check_error" and "RuntimeError: simulated bug in a check" in failure["error"]
    assert {p.name: sha256_file(p) for p in outcome.path.iterdir() if p.name != "_reason.json"} == raw
    assert tree(settings.curated_dir) == curated_before


def test_check_error_blocks_whatever_the_configuration_says(settings, monkeypatch):
    import validation.partition

    monkeypatch.setattr(validation.partition, "run_suites", lambda *a, **k: 1 / 0)
    relaxed = settings.updated({"validation.severity": {"check_error": "off"}})
    assert validate_partition(relaxed, DAY, now=AFTER).status == "quarantined"
