"""A CSV or Parquet export mapped onto the interactions contract by a TOML configuration.

:func:`load_source` is the generic source's loader: it reads the configuration
(:mod:`ingest.generic_config`, the TOML format), the file (:mod:`ingest.generic_files`:
line numbers, unreadable records) and maps its values onto the contract
(:mod:`ingest.generic_mapping`: values that do not parse). An optional ``[items]``
table reads an item catalog; without it every item's category is ``"unknown"``. Either
way an item's ``first_seen_ts`` is its first event, and only items with events are kept.

Line numbers (the index of the mapped interactions and the ``line`` of every bad-row
record) are 1-based physical line numbers of the CSV file as a text editor shows them
(the header is line 1, a record whose quoted field spans several lines has the line where
it starts); for Parquet they are 1-based row numbers. Rows that cannot be parsed are
returned as parse errors with their line number and left out of the interactions; rows
that parse but break the contract are kept, so that :func:`app.land.land_source` reports
them by line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from graphrec import contract
from ingest.generic_config import (
    ColumnsSection,
    DefaultsSection,
    FileOptions,
    ItemsSection,
    SourceConfig,
    SourceConfigError,
    SourceSection,
    TimestampsSection,
    read_config,
)
from ingest.generic_files import read_file
from ingest.generic_mapping import map_interactions, parse_integers, text_values
from ingest.loading import SourceLoad, catalog_from_events


def _catalog(items: ItemsSection) -> pd.Series:
    """The item catalog: category by item id.

    Raises:
        SourceConfigError: a catalog row without an integer id (named by line), or an id
            listed twice with different categories.
    """
    wanted = [items.item_id] + ([items.category] if items.category else [])
    raw, errors = read_file(items, wanted)
    ids, missing, invalid = parse_integers(raw[items.item_id])
    lines = [e["line"] for e in errors] + raw.index[missing | invalid].tolist()
    if lines:
        shown = ", ".join(str(n) for n in sorted(lines)[:20])
        raise SourceConfigError(
            f"item catalog {items.path}: {len(lines)} row(s) without a readable item id at line(s) {shown}"
        )
    categories = text_values(raw[items.category]) if items.category else np.full(len(raw), "", dtype=object)
    categories[categories == ""] = contract.UNKNOWN_CATEGORY
    catalog = pd.DataFrame({"item_id": ids, "category": categories}, index=raw.index)
    catalog = catalog.drop_duplicates()
    conflicting = catalog["item_id"][catalog["item_id"].duplicated(keep=False)]
    if len(conflicting):
        raise SourceConfigError(
            f"item catalog {items.path}: item id(s) {sorted(set(conflicting))[:20]} have more "
            f"than one category (lines {conflicting.index.tolist()[:20]})"
        )
    return pd.Series(catalog["category"].to_numpy(), index=catalog["item_id"].to_numpy())


def load_source(config: SourceConfig | Path) -> SourceLoad:
    """Map a CSV or Parquet source onto the contract as its configuration says.

    Args:
        config: a validated :class:`SourceConfig` or the path of its TOML file.

    Returns:
        SourceLoad: interactions indexed by source line (CSV) or row number (Parquet);
        unparseable rows as parse errors; items (category from the catalog or
        ``"unknown"``, first seen at their first event) and users of the parsed rows.

    Raises:
        SourceConfigError: the configuration is invalid or does not match the file (a
            mapped column is absent, numeric timestamps without a unit...).
        FileNotFoundError: the source or catalog file does not exist.
    """
    if not isinstance(config, SourceConfig):
        config = read_config(Path(config))
    source = config.source
    mapping = config.columns.mapping()
    raw, errors = read_file(source, list(mapping.values()))
    interactions, value_errors = map_interactions(raw, config)
    errors = sorted(errors + value_errors, key=lambda e: e["line"])
    items = catalog_from_events(interactions, contract.UNKNOWN_CATEGORY)
    if config.items is not None:
        categories = _catalog(config.items)
        items[contract.CATEGORY] = (
            items[contract.ITEM_ID].map(categories).fillna(contract.UNKNOWN_CATEGORY).astype(object)
        )
    users = pd.DataFrame({contract.USER_ID: np.unique(interactions[contract.USER_ID].to_numpy())}, dtype="int64")
    file = source.path.name if source.format == "csv" else f"{source.path.name} (1-based row numbers)"
    return SourceLoad(
        name=source.name,
        path=source.path,
        interactions=interactions,
        parse_errors=errors,
        items=items,
        users=users,
        file=file,
    )


# The configuration's names are re-exported: ``from ingest import generic`` is the source's API.
__all__ = [
    "ColumnsSection",
    "DefaultsSection",
    "FileOptions",
    "ItemsSection",
    "SourceConfig",
    "SourceConfigError",
    "SourceSection",
    "TimestampsSection",
    "load_source",
    "read_config",
]
