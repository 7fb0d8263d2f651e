"""The data contract shared by every stage: column names, types and value sets."""

from __future__ import annotations

import pyarrow as pa

USER_ID = "user_id"
ITEM_ID = "item_id"
ID_COLUMNS = (USER_ID, ITEM_ID)
EVENT_TS = "event_ts"
EVENT_TYPE = "event_type"
RATING = "rating"
CATEGORY = "category"
FIRST_SEEN_TS = "first_seen_ts"
UNKNOWN_CATEGORY = "unknown"
"""The category of an item whose source gives none (and of items a feature table does not know)."""

EVENT_TYPES = ("view", "click", "purchase", "rating")
RATING_MIN, RATING_MAX = 0.5, 5.0

INTERACTIONS_SCHEMA = pa.schema(
    [
        pa.field(USER_ID, pa.int64(), nullable=False),
        pa.field(ITEM_ID, pa.int64(), nullable=False),
        pa.field(EVENT_TS, pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field(EVENT_TYPE, pa.string(), nullable=False),
        pa.field(RATING, pa.float64(), nullable=True),
    ]
)
INTERACTION_COLUMNS = tuple(INTERACTIONS_SCHEMA.names)

ITEMS_SCHEMA = pa.schema(
    [
        pa.field(ITEM_ID, pa.int64(), nullable=False),
        pa.field(CATEGORY, pa.string(), nullable=False),
        pa.field(FIRST_SEEN_TS, pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

USERS_SCHEMA = pa.schema([pa.field(USER_ID, pa.int64(), nullable=False)])

# File names inside one daily partition directory (landing/ds=YYYY-MM-DD/...).
INTERACTIONS_FILE = "interactions.parquet"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
