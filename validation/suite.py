"""The Great Expectations suites of the data contract.

Four suites, each a pure function of its arguments (the same arguments always give the
same expectations, so a validation can be reproduced later):

* :func:`build_interactions_suite`: file- and row-level rules for one day's interactions:
  exact column set, ``empty_file`` (at least one row), contract dtypes, non-null keys,
  ids non-negative and inside the configured range,
  ``event_ts`` inside the day and not in the future, known event types, ratings in range,
  no duplicate events.
* :func:`build_batch_suite`: rules over :func:`batch_frame`, compared with the trailing
  curated days (:class:`validation.history.BatchHistory`): row count, share of events by
  never-seen users / on never-seen items, one user or item dominating the batch; ids that
  are placeholder (sentinel) values; and the referential rules (every id listed by the
  partition's users/items file or an earlier day).
* :func:`build_items_suite` and :func:`build_users_suite`: the partition's catalog files.

Every expectation carries ``meta = {"check": <name>, "severity": <severity>}`` with a name
from :mod:`validation.checks`, and ``notes`` that Data Docs show beside it (check name,
severity and description); checks whose severity is ``off`` are left out.

The types are strict on purpose: curated partitions are read together (by Feast's offline
store and the training window), and Parquet readers refuse to merge files whose schemas
differ, for example ``timestamp[ns]`` next to ``timestamp[us]``.

Great Expectations takes seconds to import, so it is imported inside the functions.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from graphrec import contract
from graphrec.lake import day_bounds
from graphrec.settings import ValidationSettings
from validation.checks import CHECKS, Profile, severity_of
from validation.history import BatchHistory
from validation.reading import nullable_ints

if TYPE_CHECKING:
    import great_expectations as gx

INTERACTIONS_SUITE = "interactions"
BATCH_SUITE = "interactions_batch"
ITEMS_SUITE = "items"
USERS_SUITE = "users"
SOURCE_ROWS_SUITE = "source_rows"

DUPLICATE_KEY = [contract.USER_ID, contract.ITEM_ID, contract.EVENT_TS, contract.EVENT_TYPE]
BATCH_COLUMNS = (
    "user_is_new",
    "item_is_new",
    "user_share",
    "item_share",
    "unlisted_user_id",
    "unlisted_item_id",
    "sentinel_user_id",
    "sentinel_item_id",
)


def pandas_dtypes(schema: pa.Schema) -> dict[str, str]:
    """Pandas dtype names that an Arrow schema reads back as (see :func:`validation.reading.nullable_ints`).

    ``{"user_id": "Int64", ..., "event_ts": "datetime64[us, UTC]"}``. String columns come
    back as ``object`` and are checked value by value instead.
    """

    frame = schema.empty_table().to_pandas(ignore_metadata=True, types_mapper=nullable_ints)
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def expected_dtypes() -> dict[str, str]:
    """Pandas dtypes of the interactions contract (:data:`graphrec.contract.INTERACTIONS_SCHEMA`)."""
    return pandas_dtypes(contract.INTERACTIONS_SCHEMA)


def check_notes(check: str, severity: str) -> list[str]:
    """The note Data Docs show beside an expectation: which graphrec check it is, how severe, why.

    A one-item list: GX renders a plain-string note in red, which would read as a failure
    on an expectation that passed.
    """
    return [f"graphrec check `{check}` ({severity}): {CHECKS[check].description}"]


class _Builder:
    """Collects expectations tagged with their check name and effective severity."""

    def __init__(self, config: ValidationSettings, profile: Profile) -> None:
        self.config, self.profile = config, profile
        self.expectations: list[Any] = []

    def add(self, check: str, expectation_cls: Any, **kwargs: Any) -> None:
        severity = severity_of(check, self.config.severity, self.profile)
        if severity != "off":
            self.expectations.append(
                expectation_cls(
                    **kwargs, meta={"check": check, "severity": severity}, notes=check_notes(check, severity)
                )
            )

    def types(self, check: str, dtypes: dict[str, str]) -> None:
        import great_expectations.expectations as gxe

        for column, dtype in dtypes.items():
            if dtype == "object":  # an object column can hold anything: each value must be a str
                self.add(check, gxe.ExpectColumnValuesToBeOfType, column=column, type_="str")
            else:
                self.add(check, gxe.ExpectColumnTypeToBe, column=column, type_=dtype)

    def id_rules(self, prefix: str, column: str) -> None:
        """The range rule of one id column (``prefix``: ``""``, ``items_`` or ``users_``)."""
        import great_expectations.expectations as gxe

        low = self.config.id_min if self.config.id_min > 0 else None  # below 0: *negative_ids says it
        self.add(
            f"{prefix}ids_out_of_range",
            gxe.ExpectColumnValuesToBeBetween,
            column=column,
            min_value=low,
            max_value=self.config.id_max,
        )

    def suite(self, name: str, meta: dict[str, Any]) -> gx.ExpectationSuite:
        import great_expectations as gx

        return gx.ExpectationSuite(name=name, expectations=self.expectations, meta={**meta, "profile": self.profile})


def build_interactions_suite(
    ds: dt.date | None,
    now: dt.datetime | None = None,
    config: ValidationSettings | None = None,
    profile: Profile = "live",
) -> gx.ExpectationSuite:
    """File- and row-level rules for the interactions of day ``ds``.

    Args:
        ds: the partition day; its UTC bounds limit ``event_ts``. ``None`` builds the
            day-independent rules for a whole source file (suite ``source_rows``, without
            ``empty_file`` and ``timestamp_outside_day``).
        now: the validation time; events later than ``now`` plus the configured clock
            tolerance are ``timestamp_in_future``. ``None`` leaves that rule out.
        config: severities and thresholds (defaults when ``None``).
        profile: ``live`` or ``backfill`` (see :mod:`validation.checks`).
    """
    import great_expectations.expectations as gxe

    config = config or ValidationSettings()
    b = _Builder(config, profile)
    b.add(
        "missing_columns",
        gxe.ExpectTableColumnsToMatchSet,
        column_set=list(contract.INTERACTION_COLUMNS),
        exact_match=True,
    )
    if ds is not None:
        b.add("empty_file", gxe.ExpectTableRowCountToBeBetween, min_value=1)
    b.types("wrong_types", expected_dtypes())
    for column in (contract.USER_ID, contract.ITEM_ID):
        b.add("null_ids", gxe.ExpectColumnValuesToNotBeNull, column=column)
        b.add("negative_ids", gxe.ExpectColumnValuesToBeBetween, column=column, min_value=0)
        b.id_rules("", column)
    for column in (contract.EVENT_TS, contract.EVENT_TYPE):
        b.add("null_values", gxe.ExpectColumnValuesToNotBeNull, column=column)
    if ds is not None:
        start, end = day_bounds(ds)
        b.add(
            "timestamp_outside_day",
            gxe.ExpectColumnValuesToBeBetween,
            column=contract.EVENT_TS,
            min_value=start.to_pydatetime(),
            max_value=end.to_pydatetime(),
            strict_max=True,
        )
    if now is not None:
        latest = pd.Timestamp(now).tz_convert("UTC") + pd.Timedelta(seconds=config.future_tolerance_s)
        b.add(
            "timestamp_in_future",
            gxe.ExpectColumnValuesToBeBetween,
            column=contract.EVENT_TS,
            max_value=latest.floor("s").to_pydatetime(),
        )
    b.add(
        "unknown_event_type",
        gxe.ExpectColumnValuesToBeInSet,
        column=contract.EVENT_TYPE,
        value_set=list(contract.EVENT_TYPES),
    )
    b.add(
        "rating_out_of_range",
        gxe.ExpectColumnValuesToBeBetween,
        column=contract.RATING,
        min_value=contract.RATING_MIN,
        max_value=contract.RATING_MAX,
    )
    b.add("duplicate_events", gxe.ExpectCompoundColumnsToBeUnique, column_list=DUPLICATE_KEY)
    if ds is None:
        return b.suite(SOURCE_ROWS_SUITE, {"contract": "graphrec.contract.INTERACTIONS_SCHEMA"})
    return b.suite(INTERACTIONS_SUITE, {"ds": ds.isoformat(), "contract": "graphrec.contract.INTERACTIONS_SCHEMA"})


def build_source_rows_suite(now: dt.datetime | None = None, config: ValidationSettings | None = None):
    """The row-level rules that do not depend on a partition day, for whole source files.

    Loaders run it over a source mapped onto the contract (index = source line number) so
    that bad rows are reported with their line numbers before anything is landed.
    """
    return build_interactions_suite(None, now, config)


def has_integer_ids(frame: pd.DataFrame) -> bool:
    """Whether both id columns exist, once each, as (nullable) int64: what :func:`batch_frame` needs.

    Anything else is a ``missing_columns``/``wrong_types`` failure of the interactions suite.
    """
    columns = list(frame.columns)
    return all(columns.count(c) == 1 and str(frame[c].dtype) in ("Int64", "int64") for c in contract.ID_COLUMNS)


def _exact_ids(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """int64 values (0 where null) and the not-null mask: ids stay exact whatever their size."""
    valid = series.notna().to_numpy(dtype=bool)
    return series.to_numpy(dtype="int64", na_value=0), valid


def _share(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each row's id's share of the batch's rows (0 for null ids: null_ids reports those)."""
    out = np.zeros(len(values), dtype="float64")
    if valid.any():
        codes, _ = pd.factorize(values[valid])
        out[valid] = np.bincount(codes)[codes] / max(len(values), 1)
    return out


def _unlisted(values: np.ndarray, valid: np.ndarray, listed: np.ndarray | None) -> pd.Series:
    """The id where it is not in ``listed``, else null (``listed is None``: nothing to check)."""
    out = pd.array(values, dtype="Int64")
    if listed is None:
        out[:] = pd.NA
    else:
        out[~valid | np.isin(values, listed)] = pd.NA
    return pd.Series(out)


def _sentinels(values: np.ndarray, valid: np.ndarray, known: np.ndarray, candidates: list[int]) -> pd.Series:
    """The id where it is a placeholder that stands apart, else null.

    A candidate (say 2**31 - 1) counts only when it is more than twice every other id of
    its column, in the batch and in the history: among ids below 50,000 it is a
    placeholder, among ids spread over the whole int64 range (hashes) or in a catalog of
    40,000 items (where 2**15 - 1 is just an item) it is not.
    """
    out = pd.array(np.zeros(len(values), dtype=np.int64), dtype="Int64")
    out[:] = pd.NA
    present = [c for c in candidates if valid.any() and np.any(values[valid] == c)]
    for candidate in present:
        others = values[valid & (values != candidate)]
        largest = max(int(others.max()) if len(others) else -1, int(known[known != candidate].max(initial=-1)))
        if candidate > 2 * largest:
            hit = valid & (values == candidate)
            out[hit] = candidate
    return pd.Series(out)


def batch_frame(
    frame: pd.DataFrame,
    history: BatchHistory,
    listed_users: np.ndarray | None = None,
    listed_items: np.ndarray | None = None,
    sentinels: list[int] | tuple[int, ...] = (),
) -> pd.DataFrame:
    """Per-event batch features: is the user / item new, its share of the batch, is it listed,
    is it a placeholder value.

    ``user_share`` of a row is the share of the batch's events made by that row's user,
    so the column's maximum is the share of the most active user. ``unlisted_user_id`` is
    the row's user id when neither ``listed_users`` (the partition's users file) nor the
    history knows it, else null; ``None`` for ``listed_users`` (no users file) leaves it
    null. ``sentinel_user_id`` is the id where it is one of ``sentinels`` standing apart
    from the other ids (:func:`_sentinels`). Ids are compared as int64, exactly (float64
    would merge ids above 2**53).

    Args:
        frame: interactions whose id columns are int64 (see :func:`has_integer_ids`).
        history: the trailing curated days.
        listed_users, listed_items: ids of the partition's users / items file, or ``None``.
        sentinels: placeholder values (``ValidationSettings.sentinel_ids``).
    """
    users, user_ok = _exact_ids(frame[contract.USER_ID])
    items, item_ok = _exact_ids(frame[contract.ITEM_ID])

    def known(listed: np.ndarray | None, earlier: np.ndarray) -> np.ndarray | None:
        return None if listed is None else np.union1d(np.asarray(listed, dtype=np.int64), earlier)

    return pd.DataFrame(
        {
            "user_is_new": (user_ok & ~np.isin(users, history.known_users)).astype("int8"),
            "item_is_new": (item_ok & ~np.isin(items, history.known_items)).astype("int8"),
            "user_share": _share(users, user_ok),
            "item_share": _share(items, item_ok),
            "unlisted_user_id": _unlisted(users, user_ok, known(listed_users, history.known_users)),
            "unlisted_item_id": _unlisted(items, item_ok, known(listed_items, history.known_items)),
            "sentinel_user_id": _sentinels(users, user_ok, history.known_users, list(sentinels)),
            "sentinel_item_id": _sentinels(items, item_ok, history.known_items, list(sentinels)),
        }
    )


def build_batch_suite(
    ds: dt.date,
    history: BatchHistory,
    rows: int,
    config: ValidationSettings | None = None,
    profile: Profile = "live",
    *,
    listed: tuple[bool, bool] = (False, False),
) -> gx.ExpectationSuite:
    """Batch-level rules for day ``ds`` against the trailing curated days.

    Row count and new-id shares need ``config.min_history_days`` earlier curated days;
    the dominance rules need ``config.dominance_min_rows`` rows (one user making 5% of ten
    events is not a bot). Each rule has a warning tier and a blocking tier. ``listed``
    says whether the partition has a readable (users, items) file: the referential rules
    ``unlisted_users`` / ``unlisted_items`` run only then.
    """
    import great_expectations.expectations as gxe

    config = config or ValidationSettings()
    b = _Builder(config, profile)
    for who, has_file in zip(("user", "item"), listed):
        b.add("sentinel_ids", gxe.ExpectColumnValuesToBeNull, column=f"sentinel_{who}_id")
        if has_file:
            b.add(f"unlisted_{who}s", gxe.ExpectColumnValuesToBeNull, column=f"unlisted_{who}_id")
    if history.days >= config.min_history_days:
        low, high = min(history.row_counts), max(history.row_counts)
        for check, ratio in (
            ("row_count_unusual", config.row_count_warn_ratio),
            ("row_count_anomaly", config.row_count_block_ratio),
        ):
            b.add(
                check,
                gxe.ExpectTableRowCountToBeBetween,
                min_value=math.floor(low / ratio),
                max_value=math.ceil(high * ratio),
            )
        for who in ("users", "items"):
            column = f"{who[:-1]}_is_new"
            b.add(
                f"new_{who}_high",
                gxe.ExpectColumnMeanToBeBetween,
                column=column,
                max_value=getattr(config, f"new_{who}_warn"),
            )
            b.add(
                f"new_{who}_flood",
                gxe.ExpectColumnMeanToBeBetween,
                column=column,
                max_value=getattr(config, f"new_{who}_block"),
            )
    if rows >= config.dominance_min_rows:
        for who in ("user", "item"):
            b.add(
                f"{who}_share_high",
                gxe.ExpectColumnMaxToBeBetween,
                column=f"{who}_share",
                max_value=getattr(config, f"{who}_share_warn"),
            )
            b.add(
                f"{who}_dominance",
                gxe.ExpectColumnMaxToBeBetween,
                column=f"{who}_share",
                max_value=getattr(config, f"{who}_share_block"),
            )
    return b.suite(BATCH_SUITE, {"ds": ds.isoformat(), "history": history.describe()})


def build_items_suite(config: ValidationSettings | None = None, profile: Profile = "live") -> gx.ExpectationSuite:
    """Rules for a partition's ``items.parquet``: schema, unique ids, valid categories."""
    import great_expectations.expectations as gxe

    config = config or ValidationSettings()
    b = _Builder(config, profile)
    b.add(
        "items_schema", gxe.ExpectTableColumnsToMatchSet, column_set=list(contract.ITEMS_SCHEMA.names), exact_match=True
    )
    b.types("items_schema", pandas_dtypes(contract.ITEMS_SCHEMA))
    for column in contract.ITEMS_SCHEMA.names:
        b.add("items_null_values", gxe.ExpectColumnValuesToNotBeNull, column=column)
    b.add("items_negative_ids", gxe.ExpectColumnValuesToBeBetween, column=contract.ITEM_ID, min_value=0)
    b.id_rules("items_", contract.ITEM_ID)
    b.add("items_duplicate_ids", gxe.ExpectColumnValuesToBeUnique, column=contract.ITEM_ID)
    if config.categories is not None:
        b.add(
            "items_invalid_category",
            gxe.ExpectColumnValuesToBeInSet,
            column=contract.CATEGORY,
            value_set=list(config.categories),
        )
    else:
        b.add(
            "items_invalid_category",
            gxe.ExpectColumnValuesToMatchRegex,
            column=contract.CATEGORY,
            regex=config.category_pattern,
        )
    return b.suite(ITEMS_SUITE, {"contract": "graphrec.contract.ITEMS_SCHEMA"})


def build_users_suite(config: ValidationSettings | None = None, profile: Profile = "live") -> gx.ExpectationSuite:
    """Rules for a partition's ``users.parquet``: ``user_id`` present, int64, unique, >= 0.

    Other columns (demographics) are allowed.
    """
    import great_expectations.expectations as gxe

    config = config or ValidationSettings()
    b = _Builder(config, profile)
    b.add("users_schema", gxe.ExpectColumnToExist, column=contract.USER_ID)
    b.types("users_schema", pandas_dtypes(contract.USERS_SCHEMA))
    b.add("users_null_ids", gxe.ExpectColumnValuesToNotBeNull, column=contract.USER_ID)
    b.add("users_negative_ids", gxe.ExpectColumnValuesToBeBetween, column=contract.USER_ID, min_value=0)
    b.id_rules("users_", contract.USER_ID)
    b.add("users_duplicate_ids", gxe.ExpectColumnValuesToBeUnique, column=contract.USER_ID)
    return b.suite(USERS_SUITE, {"contract": "graphrec.contract.USERS_SCHEMA"})
