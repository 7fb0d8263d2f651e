"""The Great Expectations suite that one day's interactions must pass.

The suite is a pure function of the partition day: the same ``ds`` always gives the
same expectations, so a validation result can be reproduced later from the day alone.
It encodes :mod:`graphrec.contract`:

* the columns are exactly ``INTERACTION_COLUMNS`` (any order) and each column has the
  pandas dtype that the contract's Arrow type reads back as (``int64`` ids, a
  ``datetime64[us, UTC]`` time, ``float64`` rating); ``event_type`` holds strings;
* the keys ``user_id``, ``item_id``, ``event_ts`` and ``event_type`` are never null;
* ids are non-negative;
* every ``event_ts`` falls inside the day, ``[ds 00:00 UTC, ds+1 00:00 UTC)``;
* ``event_type`` is one of ``EVENT_TYPES``;
* a present ``rating`` lies in ``[RATING_MIN, RATING_MAX]`` (null ratings are allowed:
  column map expectations in GX 1.x skip nulls, NaN included);
* the partition has at least one row.

The types are strict on purpose: curated partitions are read together (by Feast's
offline store and the training window), and Parquet readers refuse to merge files whose
schemas differ, for example ``timestamp[ns]`` next to ``timestamp[us]``.

Great Expectations takes seconds to import, so it is imported inside the function.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from graphrec import contract
from graphrec.lake import day_bounds

if TYPE_CHECKING:
    import great_expectations as gx

SUITE_PREFIX = "interactions"


def expected_dtypes() -> dict[str, str]:
    """Pandas dtype names that the contract's Arrow schema reads back as.

    Derived from :data:`graphrec.contract.INTERACTIONS_SCHEMA` so that the suite can never
    drift from the contract: ``{"user_id": "int64", ..., "event_ts": "datetime64[us, UTC]"}``.
    String columns come back as ``object`` and are checked value by value instead.
    """
    frame = contract.INTERACTIONS_SCHEMA.empty_table().to_pandas(ignore_metadata=True)
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def suite_name(ds: dt.date) -> str:
    """Name of the suite for one day, e.g. ``interactions_2025-01-01``."""
    return f"{SUITE_PREFIX}_{ds.isoformat()}"


def build_interactions_suite(ds: dt.date) -> gx.ExpectationSuite:
    """Build the expectation suite for the interactions partition of day ``ds``.

    Args:
        ds (datetime.date): the partition day; its UTC bounds limit ``event_ts``.

    Returns:
        great_expectations.ExpectationSuite: an unsaved suite named ``interactions_<ds>``
        (add it to a data context before running it).
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe

    start, end = day_bounds(ds)
    dtypes = expected_dtypes()
    expectations: list = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(contract.INTERACTION_COLUMNS), exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ]
    for column, dtype in dtypes.items():
        if dtype == "object":
            # An object column can hold anything: check that each value is a string.
            expectations.append(gxe.ExpectColumnValuesToBeOfType(column=column, type_="str"))
        else:
            expectations.append(gxe.ExpectColumnTypeToBe(column=column, type_=dtype))
    for column in (contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS, contract.EVENT_TYPE):
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
    for column in (contract.USER_ID, contract.ITEM_ID):
        expectations.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0))
    expectations += [
        gxe.ExpectColumnValuesToBeBetween(
            column=contract.EVENT_TS,
            min_value=start.to_pydatetime(),
            max_value=end.to_pydatetime(),
            strict_max=True,
        ),
        gxe.ExpectColumnValuesToBeInSet(column=contract.EVENT_TYPE, value_set=list(contract.EVENT_TYPES)),
        gxe.ExpectColumnValuesToBeBetween(
            column=contract.RATING, min_value=contract.RATING_MIN, max_value=contract.RATING_MAX
        ),
    ]
    return gx.ExpectationSuite(
        name=suite_name(ds),
        expectations=expectations,
        meta={"ds": ds.isoformat(), "contract": "graphrec.contract.INTERACTIONS_SCHEMA"},
    )
