"""Feast definitions of graphrec: entities, offline sources, feature views and services.

Everything here is declarative: importing this file builds Feast objects and touches no
file, store or network. ``features.store.apply_definitions`` registers them (so does
``feast apply``); the ``features`` package computes the tables behind the sources
(``features.tables``, ``features.snapshots``) and materializes them
(``features.materialize``).

Offline sources are daily snapshots written by ``features.snapshots.build_features``: one
parquet file per partition day in a directory per view, one row per entity, stamped
``event_timestamp`` = the end of that day (the moment the snapshot becomes true). Feast's
DuckDB offline store reads a ``FileSource`` path as a DuckDB file pattern, hence the
``*.parquet`` glob over a view's directory. The paths are relative to the Feast directory
(``${GRAPHREC_HOME}/feast``), so the data stays under ``GRAPHREC_HOME``, not in this
repository: DuckDB would resolve them against the reading process's working directory,
so ``features.store.load_definitions`` makes them absolute under
``settings.feast_dir`` before they are registered. In the services profile it replaces
each view's source by a PostgreSQL table holding the same rows (Feast's PostgreSQL
offline store), which ``build_features`` fills day by day.

Feature views are versioned by Feast on every schema change (``feast apply`` records a
new version); the feature service name carries the contract version the models rely on:
add ``ranker_features_v2`` rather than changing ``v1`` under a trained model.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, Project, ValueType
from feast.data_format import ParquetFormat
from feast.types import Array, Int64, String

project = Project(name="graphrec", description="Graph-based recommendation: user and item features.")

# Entities ---------------------------------------------------------------------------------
user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A person who interacts with items.",
)
item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.INT64,
    description="A recommendable item of the catalog.",
)

# Offline sources (daily snapshot files under the Feast directory) ---------------------------
user_activity_source = FileSource(
    name="user_activity_source",
    path="offline/user_activity/*.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Per-user activity counters, one snapshot per partition day.",
)
item_popularity_source = FileSource(
    name="item_popularity_source",
    path="offline/item_popularity/*.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Per-item popularity counters and category, one snapshot per partition day.",
)
user_recent_items_source = FileSource(
    name="user_recent_items_source",
    path="offline/user_recent_items/*.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Each user's most recent item sequence, one snapshot per partition day.",
)

# Feature views ----------------------------------------------------------------------------
# TTLs: counters over 1- and 7-day windows go stale fast, so a snapshot more than three days
# old is not served to training; a history sequence stays true while the user is inactive.
user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=timedelta(days=3),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="events_1d", dtype=Int64, description="Interactions in the last day."),
        Field(name="events_7d", dtype=Int64, description="Interactions in the last 7 days."),
        Field(name="distinct_items_7d", dtype=Int64, description="Distinct items in the last 7 days."),
        Field(
            name="days_since_last_event",
            dtype=Int64,
            description="Whole days from the user's last interaction to the snapshot time.",
        ),
    ],
    source=user_activity_source,
    online=True,
    tags={"team": "graphrec", "consumer": "ranker"},
)

item_popularity = FeatureView(
    name="item_popularity",
    entities=[item],
    ttl=timedelta(days=3),
    schema=[
        Field(name="item_id", dtype=Int64),
        Field(name="events_1d", dtype=Int64, description="Interactions in the last day."),
        Field(name="events_7d", dtype=Int64, description="Interactions in the last 7 days."),
        Field(name="users_7d", dtype=Int64, description="Distinct users in the last 7 days."),
        Field(name="category", dtype=String, description="Catalog category of the item."),
    ],
    source=item_popularity_source,
    online=True,
    tags={"team": "graphrec", "consumer": "ranker"},
)

user_recent_items = FeatureView(
    name="user_recent_items",
    entities=[user],
    ttl=timedelta(days=30),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(
            name="recent_items",
            dtype=Array(Int64),
            description="The user's last 50 item ids within 30 days, most recent last.",
        ),
        Field(
            name="recent_categories",
            dtype=Array(String),
            description="Categories of recent_items, position by position.",
        ),
        Field(
            name="recent_ts",
            dtype=Array(Int64),
            description="Event times of recent_items (epoch seconds, UTC), position by position.",
        ),
    ],
    source=user_recent_items_source,
    online=True,
    tags={"team": "graphrec", "consumer": "ranker,serving"},
)

# Feature services (versioned contracts of what a model reads) ----------------------------
ranker_features_v1 = FeatureService(
    name="ranker_features_v1",
    features=[user_activity, item_popularity, user_recent_items],
    description="Features of the BST ranker: user activity, item popularity, behaviour sequence.",
    tags={"model": "bst-ranker"},
)
