"""The generic source's configuration: clear errors for bad files, the example is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ingest.generic_config import SourceConfig, SourceConfigError, read_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[source]\nname = "s"\npath = "e.csv"\n[columns]\nuser_id = "u"\nitem_id = "i"\nevent_ts = "t"\n'
            'price = "p"\n[defaults]\nevent_type = "click"\n',
            r"\[columns\]: .*unknown contract column\(s\) \['price'\]",
        ),
        (
            '[source]\nname = "s"\n[columns]\nuser_id = "u"\nitem_id = "i"\nevent_ts = "t"\n'
            '[defaults]\nevent_type = "click"\n',
            r"\[source\] path: Field required",
        ),
        (
            '[source]\nname = "s"\npath = "e.csv"\n[columns]\nuser_id = "u"\nitem_id = "i"\nevent_ts = "t"\n'
            '[timestamps]\nunit = "s"\nformat = "%Y"\n[defaults]\nevent_type = "click"\n',
            r"\[timestamps\]: .*either unit .* or format .*not both",
        ),
        (
            '[source]\nname = "s"\npath = "e.csv"\n[columns]\nuser_id = "u"\nitem_id = "i"\nevent_ts = "t"\n',
            r"map \[columns\]\.event_type .* or set \[defaults\]\.event_type",
        ),
        (
            '[source]\nname = "s"\npath = "e.csv"\n[columns]\nuser_id = "u"\nitem_id = "i"\nevent_ts = "t"\n'
            '[defaults]\nevent_type = "click"\n[event_types]\ncart = "basket"\n',
            r"\[event_types\]: .*not contract event types",
        ),
        (
            '[source]\nname = "My Shop"\npath = "e.csv"\n[columns]\nuser_id = "u"\nitem_id = "i"\nevent_ts = "t"\n'
            '[defaults]\nevent_type = "click"\n',
            r"\[source\] name: String should match pattern",
        ),
        (
            '[source]\nname = "s"\npath = "e.dat"\n[columns]\nuser_id = "u"\nitem_id = "i"\nevent_ts = "t"\n'
            '[defaults]\nevent_type = "click"\n',
            r"\[source\]: .*cannot tell the format of 'e\.dat'.*set format",
        ),
        ('[source\nname = "s"\n', r"not valid TOML"),
    ],
    ids=[
        "unknown-contract-column",
        "missing-path",
        "unit-and-format",
        "no-event-type",
        "bad-event-type-mapping",
        "bad-name",
        "unknown-suffix",
        "not-toml",
    ],
)
def test_a_bad_configuration_gives_a_clear_error(tmp_path, toml, expected):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(SourceConfigError, match=expected) as caught:
        read_config(path)
    assert isinstance(caught.value, ValueError) and str(path) in str(caught.value)


def test_a_configuration_built_in_code_is_validated_too():
    with pytest.raises(ValidationError, match="unknown contract column"):
        SourceConfig.model_validate(
            {
                "source": {"name": "s", "path": "e.csv"},
                "columns": {"user_id": "u", "item_id": "i", "event_ts": "t", "userid": "x"},
                "defaults": {"event_type": "click"},
            }
        )


def test_the_example_configuration_is_valid():
    config = read_config(REPO / "examples" / "source.example.toml")
    assert config.source.name == "shop-events" and config.source.path == REPO / "examples" / "events.csv"
    assert config.columns.mapping() == {
        "user_id": "customer_id",
        "item_id": "sku",
        "event_ts": "ts",
        "event_type": "action",
        "rating": "stars",
    }
    assert config.timestamps.unit == "s" and config.event_types["add_to_cart"] == "click"
