"""The configuration of a generic source: a TOML file validated by pydantic models.

The configuration (see ``examples/source.example.toml``) names the file, maps contract
columns to source columns and says how to read timestamps and event types::

    [source]
    name = "shop-events"          # used in paths: a-z, 0-9, '-' and '_'
    path = "events.csv"           # relative to the configuration file
    format = "csv"                # csv | parquet (default: from the suffix; .csv.gz is gzip)

    [columns]                     # contract column = source column
    user_id = "customer_id"
    item_id = "sku"
    event_ts = "ts"
    event_type = "action"         # or [defaults].event_type
    rating = "stars"              # optional

    [timestamps]
    unit = "s"                    # numeric epochs (s, ms, us, ns), or
    # format = "%Y-%m-%d %H:%M:%S"  strptime format; neither: ISO 8601 text
    timezone = "UTC"              # applied to timestamps without a UTC offset

    [event_types]                 # optional source value -> contract value
    add_to_cart = "click"

An optional ``[items]`` table reads an item catalog (``path``, ``item_id``, ``category``
and the same file options). :func:`read_config` reads and validates a file; a
:class:`SourceConfig` built in code is validated the same way. Loading the source it
describes is :func:`ingest.generic.load_source`'s job.
"""

from __future__ import annotations

import codecs
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graphrec import contract

_SUFFIX_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


class SourceConfigError(ValueError):
    """A source configuration that cannot be read or does not describe a loadable source."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileOptions(_Section):
    """Where a file is and how to read it (shared by ``[source]`` and ``[items]``)."""

    path: Path = Field(description="The file; relative paths are relative to the configuration file.")
    format: Literal["csv", "parquet"] | None = Field(None, description="Default: from the file suffix.")
    delimiter: str | None = Field(None, description="CSV field delimiter (default ',' or tab for .tsv).")
    quotechar: str = Field('"', description="CSV quote character.")
    encoding: str = Field("utf-8", description="CSV text encoding.")
    header: bool = Field(True, description="The first CSV line holds the column names.")
    names: list[str] | None = Field(None, description="Column names of a CSV file without a header line.")

    @field_validator("delimiter", "quotechar")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"must be a single character, got {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(f"unknown text encoding {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _resolve_format(self) -> FileOptions:
        suffixes = [s.lower() for s in self.path.suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes = suffixes[:-1]
        suffix = suffixes[-1] if suffixes else ""
        if self.format is None:
            if suffix not in _SUFFIX_FORMATS:
                raise ValueError(
                    f'cannot tell the format of {str(self.path)!r} from its suffix; set format = "csv" or "parquet"'
                )
            self.format = _SUFFIX_FORMATS[suffix]  # type: ignore[assignment]
        if self.delimiter is None:
            self.delimiter = "\t" if suffix == ".tsv" else ","
        if self.format == "csv" and not self.header and not self.names:
            raise ValueError("a CSV file without a header line (header = false) needs its column names: names = [...]")
        if self.header and self.names:
            raise ValueError("names is for CSV files without a header line: set header = false or drop names")
        return self


class SourceSection(FileOptions):
    """``[source]``: the interactions file."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Source name, used in paths.")


class ColumnsSection(_Section):
    """``[columns]``: contract column = source column."""

    user_id: str
    item_id: str
    event_ts: str
    event_type: str | None = None
    rating: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _contract_columns_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(contract.INTERACTION_COLUMNS))
            if unknown:
                raise ValueError(
                    f"unknown contract column(s) {unknown}: [columns] maps contract columns "
                    f"({', '.join(contract.INTERACTION_COLUMNS)}) to source columns"
                )
        return data

    @model_validator(mode="after")
    def _distinct_sources(self) -> ColumnsSection:
        used: dict[str, str] = {}
        for target, source in self.mapping().items():
            if source in used:
                raise ValueError(f"source column {source!r} is mapped to both {used[source]} and {target}")
            used[source] = target
        return self

    def mapping(self) -> dict[str, str]:
        """``{contract column: source column}`` for the mapped columns."""
        return {c: getattr(self, c) for c in contract.INTERACTION_COLUMNS if getattr(self, c) is not None}


class TimestampsSection(_Section):
    """``[timestamps]``: how to read ``event_ts``."""

    unit: Literal["s", "ms", "us", "ns"] | None = Field(None, description="Unit of numeric epoch timestamps.")
    format: str | None = Field(None, description="strptime format of text timestamps (default: ISO 8601).")
    timezone: str = Field("UTC", description="IANA time zone of timestamps without a UTC offset.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'UTC' or 'Europe/Paris')") from exc
        return value

    @model_validator(mode="after")
    def _unit_or_format(self) -> TimestampsSection:
        if self.unit is not None and self.format is not None:
            raise ValueError("give either unit (numeric epochs) or format (text timestamps), not both")
        return self


class DefaultsSection(_Section):
    """``[defaults]``: values for contract columns the source does not have."""

    event_type: str | None = None

    @field_validator("event_type")
    @classmethod
    def _contract_event_type(cls, value: str | None) -> str | None:
        if value is not None and value not in contract.EVENT_TYPES:
            raise ValueError(f"{value!r} is not a contract event type {contract.EVENT_TYPES}")
        return value


class ItemsSection(FileOptions):
    """``[items]``: an optional item catalog file."""

    item_id: str = Field(description="Column of the item id.")
    category: str | None = Field(None, description=f"Column of the category (default {contract.UNKNOWN_CATEGORY!r}).")


class SourceConfig(_Section):
    """A generic source: the file, the column mapping and how to read values.

    Build it from a TOML file with :func:`read_config` (relative paths are then relative
    to that file) or directly (relative paths are relative to the working directory).
    """

    source: SourceSection
    columns: ColumnsSection
    timestamps: TimestampsSection = Field(default_factory=TimestampsSection)
    defaults: DefaultsSection = Field(default_factory=DefaultsSection)
    event_types: dict[str, str] = Field(default_factory=dict, description="Source event type -> contract event type.")
    items: ItemsSection | None = None

    @field_validator("event_types")
    @classmethod
    def _maps_to_contract(cls, value: dict[str, str]) -> dict[str, str]:
        wrong = {k: v for k, v in value.items() if v not in contract.EVENT_TYPES}
        if wrong:
            raise ValueError(f"mapped to values that are not contract event types {contract.EVENT_TYPES}: {wrong}")
        return value

    @model_validator(mode="after")
    def _event_type_source(self) -> SourceConfig:
        if self.columns.event_type is None and self.defaults.event_type is None:
            raise ValueError("no event type: map [columns].event_type to a source column or set [defaults].event_type")
        return self


def _describe(error: ValidationError) -> str:
    """One line per problem: ``[section] key: message``."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        where = f"[{loc[0]}]" + (f" {'.'.join(loc[1:])}" if len(loc) > 1 else "") if loc else "configuration"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def read_config(path: Path) -> SourceConfig:
    """Read and validate a TOML source configuration.

    Args:
        path: the ``.toml`` file; relative file paths in it are resolved against its directory.

    Returns:
        SourceConfig: the validated configuration, with absolute file paths.

    Raises:
        SourceConfigError: the file is missing, not TOML, or not a valid configuration;
            the message lists every problem by section and key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SourceConfigError(f"source configuration {path} does not exist") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SourceConfigError(f"source configuration {path} is not valid TOML: {exc}") from exc
    try:
        config = SourceConfig.model_validate(data)
    except ValidationError as exc:
        raise SourceConfigError(f"invalid source configuration {path}:\n{_describe(exc)}") from exc
    base = path.resolve().parent
    for section in (config.source, config.items):
        if section is not None and not section.path.is_absolute():
            section.path = base / section.path
    return config
