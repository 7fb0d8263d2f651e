"""The generic CSV / Parquet source: configuration, mapping, line numbers and bad rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.land import BadSourceRows, land_source
from graphrec import contract
from graphrec.lake import list_partitions, read_catalog, read_curated
from graphrec.settings import Settings, ValidationSettings
from ingest import generic

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
[source]
name = "shop-events"
path = "data/events.csv"
{source_extra}

[columns]
user_id = "customer_id"
item_id = "sku"
event_ts = "ts"
event_type = "action"
rating = "stars"

[timestamps]
{timestamps}

[defaults]
event_type = "click"

[event_types]
add_to_cart = "click"
checkout = "purchase"
{extra}
"""


def _settings(home: Path) -> Settings:
    """An isolated installation; no Data Docs (HTML) to keep the tests quick."""
    return Settings(home=home, validation=ValidationSettings(data_docs=False))


def _source(
    tmp_path: Path, csv: bytes, *, timestamps: str = 'unit = "s"', source_extra: str = "", extra: str = ""
) -> Path:
    """Write ``data/events.csv`` and a configuration next to ``data/`` that points at it."""
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "events.csv").write_bytes(csv)
    config = tmp_path / "source.toml"
    config.write_text(CONFIG.format(timestamps=timestamps, source_extra=source_extra, extra=extra))
    return config


GOOD_CSV = (
    b"customer_id,sku,ts,action,stars,note\n"
    b"1,10,1709287200,view,,plain\n"  # 2024-03-01 10:00:00 UTC
    b'2,11,1709287260,add_to_cart,4.5,"with, comma"\n'
    b'3,12,1709287320,,,"a note\n'  # a quoted field over lines 4-5
    b'over two lines"\n'
    b" 4 , 13 ,1709373600,checkout,5,\n"  # 2024-03-02; spaces around values
)


def test_csv_with_a_mapping_loads_and_lands(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "catalog.csv").write_text("sku,department\n10,garden\n11,kitchen\n13,\n99,toys\n")
    config_path = _source(
        tmp_path, GOOD_CSV, extra='[items]\npath = "data/catalog.csv"\nitem_id = "sku"\ncategory = "department"\n'
    )
    config = generic.read_config(config_path)
    assert config.source.path == tmp_path / "data" / "events.csv" and config.source.format == "csv"
    load = generic.load_source(config_path)

    frame = load.interactions
    assert load.parse_errors == [] and load.name == "shop-events" and load.file == "events.csv"
    assert tuple(frame.columns) == contract.INTERACTION_COLUMNS
    assert frame.dtypes.astype(str).tolist() == ["int64", "int64", "datetime64[us, UTC]", "object", "float64"]
    assert frame.index.tolist() == [2, 3, 4, 6]  # the multi-line record starts on line 4
    assert frame[contract.USER_ID].tolist() == [1, 2, 3, 4] and frame[contract.ITEM_ID].tolist() == [10, 11, 12, 13]
    assert frame[contract.EVENT_TYPE].tolist() == ["view", "click", "click", "purchase"]
    np.testing.assert_array_equal(frame[contract.RATING].to_numpy(), [np.nan, 4.5, np.nan, 5.0])
    assert frame[contract.EVENT_TS].iloc[0] == pd.Timestamp("2024-03-01 10:00:00", tz="UTC")
    categories = dict(zip(load.items[contract.ITEM_ID], load.items[contract.CATEGORY]))
    assert categories == {10: "garden", 11: "kitchen", 12: "unknown", 13: "unknown"}  # 99 has no events
    assert load.users[contract.USER_ID].tolist() == [1, 2, 3, 4]

    settings = _settings(tmp_path / "home")
    report = land_source(settings, load)
    assert report.bad_rows == 0 and report.curated == 2 and report.quarantined == 0
    days = list_partitions(settings.curated_dir)
    assert days == [dt.date(2024, 3, 1), dt.date(2024, 3, 2)]
    assert len(read_curated(settings.curated_dir, days)) == 4
    assert read_catalog(settings.curated_dir)[contract.CATEGORY].tolist() == ["garden", "kitchen", "unknown", "unknown"]


BAD_CSV = (
    b"customer_id,sku,ts,action,stars\n"
    b"1,10,2024-03-01T10:00:00Z,view,\n"  # 2 good
    b"2,11,2024-03-01T10:05:00+01:00,add_to_cart,4.5\n"  # 3 good
    b"3,12\n"  # 4 wrong field count
    b"4,abc,2024-03-01T10:15:00Z,view,\n"  # 5 item id is not an integer
    b"5,13,yesterday,view,\n"  # 6 timestamp does not parse
    b"6,14,2024-03-01T10:25:00Z,caf\xe9,\n"  # 7 a latin-1 byte in a utf-8 file
    b"-7,15,2024-03-01T10:30:00Z,view,\n"  # 8 negative id (the contract's check)
    b"8,16,2024-03-01T10:35:00Z,teleport,\n"  # 9 unknown event type (the contract's check)
    b"1,10,2024-03-01T10:00:00Z,view,\n"  # 10 duplicate of line 2 (the contract's check)
    b"\n"  # 11 blank: not a row
    b"9,17,2024-03-02T08:00:00Z,checkout,5\n"  # 12 good
)
BAD_LINES = [
    (4, "wrong_field_count"),
    (5, "not_an_integer"),
    (6, "unparseable_timestamp"),
    (7, "invalid_encoding"),
    (8, "negative_ids"),
    (9, "unknown_event_type"),
    (10, "duplicate_events"),
]


def test_bad_rows_fail_the_load_by_line_and_land_nothing(tmp_path):
    load = generic.load_source(_source(tmp_path, BAD_CSV, timestamps=""))
    assert sorted((e["line"], e["check"]) for e in load.parse_errors) == BAD_LINES[:4]
    assert load.interactions.index.tolist() == [2, 3, 8, 9, 10, 12]
    assert load.interactions.loc[9, contract.EVENT_TYPE] == "teleport"  # kept for the contract to report

    settings = _settings(tmp_path / "home")
    with pytest.raises(BadSourceRows) as caught:
        land_source(settings, load)
    message = str(caught.value)
    assert "7 bad row(s)" in message and "nothing was landed" in message
    for line, check in BAD_LINES:
        assert f"{check}: 1 row(s) at line(s) {line} " in message
    assert list_partitions(settings.landing_dir) == [] and list_partitions(settings.curated_dir) == []


def test_bad_rows_are_quarantined_and_the_good_rows_land(tmp_path):
    load = generic.load_source(_source(tmp_path, BAD_CSV, timestamps=""))
    settings = _settings(tmp_path / "home")
    report = land_source(settings, load, on_bad_rows="quarantine")
    bad = pd.read_csv(report.bad_rows_report)
    assert list(bad[["line", "check"]].itertuples(index=False, name=None)) == BAD_LINES
    assert bad.loc[bad["check"] == "invalid_encoding", "value"].item() == "6,14,2024-03-01T10:25:00Z,caf\\xe9,"
    assert bad.loc[bad["check"] == "duplicate_events", "message"].item() == "duplicate of line 2"
    assert report.rows_landed == 3 and report.curated == 2 and report.quarantined == 0
    curated = read_curated(settings.curated_dir, list_partitions(settings.curated_dir))
    assert sorted(curated[contract.USER_ID]) == [1, 2, 9]
    second = curated.set_index(contract.USER_ID).loc[2]
    assert second[contract.EVENT_TS] == pd.Timestamp("2024-03-01 09:05:00", tz="UTC")
    assert second[contract.EVENT_TYPE] == "click" and second[contract.RATING] == 4.5


def test_malformed_quoting_is_reported_and_later_lines_keep_their_numbers(tmp_path):
    csv = (
        b"customer_id,sku,ts,action,stars\n"
        b"1,10,1709287200,view,\n"
        b'2,"11"x,1709287260,view,\n'  # 3: text after a closing quote
        b'3,12,1709287320,"two\n'  # 4-5: a quoted field spanning lines, wrong field count
        b'lines"\n'
        b"4,13,1709287380,view,\n"
    )  # 6
    load = generic.load_source(_source(tmp_path, csv))
    assert [(e["line"], e["check"]) for e in load.parse_errors] == [(3, "unparseable_row"), (4, "wrong_field_count")]
    assert load.interactions.index.tolist() == [2, 6]


def test_missing_values_and_numbers_that_do_not_parse(tmp_path):
    csv = (
        b"customer_id,sku,ts,action,stars\n"
        b",10,1709287200,view,\n"  # 2 missing user id
        b"2,11,,view,\n"  # 3 missing timestamp
        b"3,1.5,1709287200,view,\n"  # 4 not an integer
        b"4,99999999999999999999,1709287200,view,\n"  # 5 out of int64
        b"5,12,1709287200,view,lots\n"  # 6 rating is not a number
        b"6,9223372036854775807,1709287200.5,,NaN\n"
    )  # 7 good: int64 max, fractional epoch, NaN rating
    load = generic.load_source(_source(tmp_path, csv))
    assert [(e["line"], e["check"], e["column"]) for e in load.parse_errors] == [
        (2, "missing_value", "user_id"),
        (3, "missing_value", "event_ts"),
        (4, "not_an_integer", "item_id"),
        (5, "not_an_integer", "item_id"),
        (6, "not_a_number", "rating"),
    ]
    row = load.interactions.loc[7]
    assert row[contract.ITEM_ID] == 2**63 - 1 and np.isnan(row[contract.RATING])
    assert row[contract.EVENT_TS] == pd.Timestamp("2024-03-01 10:00:00.5", tz="UTC")
    assert row[contract.EVENT_TYPE] == "click"  # [defaults]


def test_headerless_tsv_with_a_strptime_format_in_a_time_zone(tmp_path):
    (tmp_path / "log.tsv").write_text("7\t70\t01/03/2024 11:00\n8\t80\t01/07/2024 12:30\n")
    config = generic.SourceConfig.model_validate(
        {
            "source": {
                "name": "log",
                "path": str(tmp_path / "log.tsv"),
                "header": False,
                "names": ["user", "item", "when"],
            },
            "columns": {"user_id": "user", "item_id": "item", "event_ts": "when"},
            "timestamps": {"format": "%d/%m/%Y %H:%M", "timezone": "Europe/Paris"},
            "defaults": {"event_type": "view"},
        }
    )
    assert config.source.format == "csv" and config.source.delimiter == "\t"
    load = generic.load_source(config)
    assert load.interactions.index.tolist() == [1, 2]  # no header: the first row is line 1
    assert load.interactions[contract.EVENT_TS].tolist() == [
        pd.Timestamp("2024-03-01 10:00", tz="UTC"),
        pd.Timestamp("2024-07-01 10:30", tz="UTC"),
    ]


def test_iso_timestamps_without_offset_use_the_configured_time_zone(tmp_path):
    csv = (
        b"customer_id,sku,ts,action,stars\n"
        b"1,10,2024-03-01 11:00:00,view,\n"
        b"2,11,2024-03-01T11:00:00+00:00,view,\n"
        b"3,12,2024-03-31T02:30:00,view,\n"
    )  # skipped by the switch to summer time in Paris
    load = generic.load_source(_source(tmp_path, csv, timestamps='timezone = "Europe/Paris"'))
    assert load.interactions[contract.EVENT_TS].tolist() == [
        pd.Timestamp("2024-03-01 10:00", tz="UTC"),
        pd.Timestamp("2024-03-01 11:00", tz="UTC"),
    ]
    assert [(e["line"], e["check"]) for e in load.parse_errors] == [(4, "unparseable_timestamp")]


def test_parquet_source_with_a_mapping(tmp_path):
    events = pd.DataFrame(
        {
            "uid": pd.array([1, 2, None, 4], dtype="Int64"),
            "product": [10, 11, 12, 10],
            "ts_ms": np.array([1_709_287_200_000, 1_709_287_260_000, 1_709_287_320_000, 1_709_373_600_000]),
            "kind": ["view", "cart", "view", None],
        }
    )
    events.to_parquet(tmp_path / "events.parquet")
    (tmp_path / "source.toml").write_text(
        '[source]\nname = "pq-events"\npath = "events.parquet"\n'
        '[columns]\nuser_id = "uid"\nitem_id = "product"\nevent_ts = "ts_ms"\nevent_type = "kind"\n'
        '[timestamps]\nunit = "ms"\n[defaults]\nevent_type = "view"\n[event_types]\ncart = "click"\n'
    )
    load = generic.load_source(tmp_path / "source.toml")
    assert load.file == "events.parquet (1-based row numbers)"
    assert [(e["line"], e["check"], e["column"]) for e in load.parse_errors] == [(3, "missing_value", "user_id")]
    frame = load.interactions
    assert frame.index.tolist() == [1, 2, 4]
    assert frame[contract.EVENT_TYPE].tolist() == ["view", "click", "view"]
    assert frame[contract.EVENT_TS].tolist() == [
        pd.Timestamp("2024-03-01 10:00", tz="UTC"),
        pd.Timestamp("2024-03-01 10:01", tz="UTC"),
        pd.Timestamp("2024-03-02 10:00", tz="UTC"),
    ]
    assert str(frame[contract.EVENT_TS].dtype) == "datetime64[us, UTC]"

    settings = _settings(tmp_path / "home")
    report = land_source(settings, load, on_bad_rows="quarantine")
    assert pd.read_csv(report.bad_rows_report)[["line", "check"]].values.tolist() == [[3, "missing_value"]]
    assert report.rows_landed == 3 and report.curated == 2


def test_parquet_datetime_column_is_localised(tmp_path):
    pd.DataFrame(
        {
            "u": [1, 2],
            "i": [5, 6],
            "at": pd.to_datetime(["2024-03-01 11:00", "2024-07-01 12:00"]),
        }
    ).to_parquet(tmp_path / "events.pq")
    config = generic.SourceConfig.model_validate(
        {
            "source": {"name": "pq", "path": str(tmp_path / "events.pq")},
            "columns": {"user_id": "u", "item_id": "i", "event_ts": "at"},
            "timestamps": {"timezone": "Europe/Paris"},
            "defaults": {"event_type": "purchase"},
        }
    )
    load = generic.load_source(config)
    assert load.interactions[contract.EVENT_TS].tolist() == [
        pd.Timestamp("2024-03-01 10:00", tz="UTC"),
        pd.Timestamp("2024-07-01 10:00", tz="UTC"),
    ]


def test_a_mapping_that_does_not_match_the_file_names_the_columns(tmp_path):
    config = _source(tmp_path, b"customer_id,sku,time,action,stars\n1,2,3,view,\n")
    with pytest.raises(generic.SourceConfigError, match=r"\['ts'\] .* not in the header \(line 1\)"):
        generic.load_source(config)
    (tmp_path / "data" / "events.csv").unlink()
    with pytest.raises(FileNotFoundError, match="events.csv"):
        generic.load_source(config)


def test_numeric_timestamps_need_a_unit(tmp_path):
    pd.DataFrame({"u": [1], "i": [2], "t": [1_709_287_200]}).to_parquet(tmp_path / "e.parquet")
    config = generic.SourceConfig.model_validate(
        {
            "source": {"name": "s", "path": str(tmp_path / "e.parquet")},
            "columns": {"user_id": "u", "item_id": "i", "event_ts": "t"},
            "defaults": {"event_type": "click"},
        }
    )
    with pytest.raises(generic.SourceConfigError, match=r"set \[timestamps\]\.unit"):
        generic.load_source(config)
