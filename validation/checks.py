"""The catalog of named checks that make up the data contract, with default severities.

Every failure the contract can report carries one of these names, so that a quarantine
reason, a run summary and a test can say *which* rule a batch broke. A check is either

* ``blocking``: the partition is quarantined (it never reaches ``curated/``), or
* ``warning``: the partition is accepted, and the problem is recorded in the validation
  record, the task log, the run summary and ``graphrec status``, or
* ``off``: not evaluated.

Defaults are below; ``GRAPHREC_VALIDATION__SEVERITY='{"<check>": "warning"}'`` overrides
one. Batch-level checks have two tiers: a soft threshold (check name ending in
``_high``/``_unusual``, a warning) and a hard one (a block). Historical backfills
(loaders of published datasets) use the ``backfill`` profile, in which batch-level checks
can only warn: a research dump's days are not a live feed's days (MovieLens users rate
dozens of films in their first session), while file- and row-level rules hold as always.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

Level = Literal["file", "row", "batch", "items", "users"]
Severity = Literal["blocking", "warning", "off"]
Profile = Literal["live", "backfill"]
PROFILES: tuple[Profile, ...] = ("live", "backfill")


@dataclasses.dataclass(frozen=True)
class Check:
    """One named rule of the contract."""

    name: str
    level: Level
    severity: Severity
    description: str


_CHECKS = (
    # File level: the interactions file itself.
    Check("missing_file", "file", "blocking", "interactions.parquet is not in the partition"),
    Check("empty_file", "file", "blocking", "the file has no bytes or no rows"),
    Check("wrong_format", "file", "blocking", "the file is not Parquet (e.g. CSV or JSON text)"),
    Check("corrupt_file", "file", "blocking", "Parquet that cannot be read (truncated or damaged)"),
    Check("wrong_encoding", "file", "blocking", "text values that are not valid UTF-8"),
    Check(
        "check_error", "file", "blocking", "a check could not be evaluated on this data (the reason names the error)"
    ),
    Check("missing_columns", "file", "blocking", "a contract column is absent"),
    Check("extra_columns", "file", "blocking", "a column the contract does not define"),
    Check("wrong_types", "file", "blocking", "a column's type differs from the contract"),
    # Row level.
    Check("null_ids", "row", "blocking", "user_id or item_id is null"),
    Check("negative_ids", "row", "blocking", "user_id or item_id is negative"),
    Check("ids_out_of_range", "row", "blocking", "user_id or item_id outside [id_min, id_max] (default [0, 2**53))"),
    Check(
        "sentinel_ids",
        "row",
        "blocking",
        "an id equal to a placeholder (sentinel_ids, e.g. 2**31-1) and more than twice every other id of its column",
    ),
    # Referential: only where the partition has the file. Warnings by default, because an
    # earlier day in quarantine that introduced an item would otherwise block every later
    # day that uses it; set them to blocking where the catalog feed is authoritative.
    Check("unlisted_users", "row", "warning", "a user_id that neither users.parquet nor an earlier day lists"),
    Check("unlisted_items", "row", "warning", "an item_id that neither items.parquet nor an earlier day lists"),
    Check("null_values", "row", "blocking", "event_ts or event_type is null"),
    Check("timestamp_outside_day", "row", "blocking", "event_ts outside the partition's UTC day"),
    Check("timestamp_in_future", "row", "blocking", "event_ts later than the validation time"),
    Check("unknown_event_type", "row", "blocking", "event_type outside the contract's set"),
    Check("rating_out_of_range", "row", "blocking", "rating outside [RATING_MIN, RATING_MAX]"),
    Check("duplicate_events", "row", "blocking", "the same (user, item, timestamp, type) more than once"),
    # Batch level: against the trailing curated days.
    Check("row_count_unusual", "batch", "warning", "row count outside the trailing days' range by the warn ratio"),
    Check("row_count_anomaly", "batch", "blocking", "row count far outside the trailing days' range"),
    Check("new_users_high", "batch", "warning", "share of events by never-seen users above the warn threshold"),
    Check("new_users_flood", "batch", "blocking", "share of events by never-seen users above the block threshold"),
    Check("new_items_high", "batch", "warning", "share of events on never-seen items above the warn threshold"),
    Check("new_items_flood", "batch", "blocking", "share of events on never-seen items above the block threshold"),
    Check("user_share_high", "batch", "warning", "one user's share of the batch above the warn threshold"),
    Check("user_dominance", "batch", "blocking", "one user dominates the batch (bot-like traffic)"),
    Check("item_share_high", "batch", "warning", "one item's share of the batch above the warn threshold"),
    Check("item_dominance", "batch", "blocking", "one item dominates the batch"),
    # The items and users files of the partition.
    Check("items_unreadable", "items", "blocking", "items.parquet cannot be read as Parquet"),
    Check("items_schema", "items", "blocking", "items columns or types differ from the contract"),
    Check("items_null_values", "items", "blocking", "null item_id, category or first_seen_ts"),
    Check("items_negative_ids", "items", "blocking", "negative item_id"),
    Check("items_ids_out_of_range", "items", "blocking", "item_id outside [id_min, id_max]"),
    Check("items_duplicate_ids", "items", "blocking", "an item_id appears twice"),
    Check("items_invalid_category", "items", "blocking", "category not allowed (set or pattern)"),
    Check("users_unreadable", "users", "blocking", "users.parquet cannot be read as Parquet"),
    Check("users_schema", "users", "blocking", "users file lacks user_id or has the wrong type"),
    Check("users_null_ids", "users", "blocking", "null user_id"),
    Check("users_negative_ids", "users", "blocking", "negative user_id"),
    Check("users_ids_out_of_range", "users", "blocking", "user_id outside [id_min, id_max]"),
    Check("users_duplicate_ids", "users", "blocking", "a user_id appears twice"),
)

CHECKS: dict[str, Check] = {c.name: c for c in _CHECKS}


def severity_of(name: str, overrides: Mapping[str, str] | None = None, profile: Profile = "live") -> Severity:
    """The effective severity of check ``name``.

    Args:
        name: a key of :data:`CHECKS`.
        overrides: ``{check: severity}`` from configuration (unknown names are rejected
            by :func:`validate_overrides`).
        profile: ``"backfill"`` caps batch-level checks at ``warning``.
    """
    check = CHECKS[name]
    severity = (overrides or {}).get(name, check.severity)
    if profile == "backfill" and check.level == "batch" and severity == "blocking":
        return "warning"
    return severity  # type: ignore[return-value]


def validate_overrides(overrides: Mapping[str, str]) -> None:
    """Reject severity overrides that name no check, with the list of valid names."""
    unknown = sorted(set(overrides) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) in validation severity overrides: {unknown}; known: {sorted(CHECKS)}")
