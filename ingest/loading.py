"""What every loader returns: a source mapped onto the data contract, before landing.

Every loader (:mod:`ingest.movielens`, :mod:`ingest.gowalla`, :mod:`ingest.generic`)
returns a :class:`SourceLoad`: interactions in the contract's schema indexed by source line
number, the rows it could not parse (as bad-row records with line numbers, see
:mod:`ingest.bad_rows`), and items and users. Landing it through the contract's checks is
:func:`app.land.land_source`'s job: loaders land data, they do not validate it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from graphrec import contract


@dataclasses.dataclass
class SourceLoad:
    """A source mapped onto the contract, before landing.

    Attributes:
        name: short source name (``movielens-100k``, ``gowalla``, ...), used in paths.
        path: where it was read from.
        interactions: contract columns and dtypes; index = line number in the source file.
        parse_errors: bad-row records (``line, check, column, value, message``) of rows
            that could not be parsed at all; those rows are not in ``interactions``.
        items: catalog rows (``item_id, category, first_seen_ts``).
        users: ``user_id`` of every user.
        file: the source file that line numbers refer to.
    """

    name: str
    path: Path
    interactions: pd.DataFrame
    parse_errors: list[dict[str, Any]]
    items: pd.DataFrame
    users: pd.DataFrame
    file: str = ""


def catalog_from_events(interactions: pd.DataFrame, category: str) -> pd.DataFrame:
    """One catalog row per item seen in ``interactions``: ``category`` and the first event time.

    Negative item ids are left out: they are reported on their interaction rows, and a
    catalog without them lets the good rows land under ``on_bad_rows="quarantine"``.
    """
    valid = interactions[interactions[contract.ITEM_ID] >= 0]
    first_seen = valid.groupby(contract.ITEM_ID, sort=True)[contract.EVENT_TS].min()
    items = pd.DataFrame(
        {
            contract.ITEM_ID: first_seen.index.to_numpy(dtype="int64"),
            contract.CATEGORY: category,
            contract.FIRST_SEEN_TS: first_seen.array,
        }
    )
    items[contract.FIRST_SEEN_TS] = items[contract.FIRST_SEEN_TS].astype("datetime64[us, UTC]")
    return items
