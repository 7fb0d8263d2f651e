"""Historical (training) features: point-in-time rows of the ranker's feature service.

:func:`historical_ranker_features` joins labelled or candidate rows with the offline
snapshots (:mod:`features.snapshots`) through Feast's ``get_historical_features``; the
online reader (:mod:`features.online`) gives the same columns from the online store.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.store import RANKER_SERVICE, feature_store
from features.tables import EVENT_TIMESTAMP, OFFLINE_SCHEMAS
from graphrec.settings import Settings

_ROW = "graphrec_row"
"""The row number :func:`historical_ranker_features` joins Feast's answer back on."""


def historical_ranker_features(settings: Settings, rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time features of ``ranker_features_v1`` for labelled or candidate rows.

    Each row gets, per view, the latest snapshot stamped at or before its
    ``event_timestamp`` (and within the view's TTL). A snapshot stamped ``t`` summarises
    events strictly before ``t``, so no value can come from the row's moment or later.

    Each view is joined once per distinct ``(entity key, event_timestamp)`` of the rows,
    not once per row: the ranker's rows are candidate lists, hundreds of items per user
    and moment, so a user's features would otherwise be looked up hundreds of times (at
    2M evaluation rows: 20k user lookups instead of 2M). Feast returns rows in no
    particular order, so each lookup is numbered before the join and put back in its
    place after it; only the entity columns go to Feast, the caller's other columns are
    kept as they are.

    Args:
        settings (Settings): the installation (its Feast store, definitions applied).
        rows (pd.DataFrame): ``user_id``, ``item_id``, ``event_timestamp`` (UTC) and any
            other columns, which are kept.

    Returns:
        pd.DataFrame: ``rows`` in their order with one column per feature of the service,
        ``<view>__<feature>`` in the service's order (the ranker's
        :data:`features.ranker_columns.FEATURE_COLUMNS`); a view with no snapshot in reach
        (an unknown key, or every snapshot older than the TTL) leaves its columns missing.
    """
    frame = rows.reset_index(drop=True).copy()
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    store = feature_store(settings)
    service = store.get_feature_service(RANKER_SERVICE)
    names = [f"{p.name}__{f.name}" for p in service.feature_view_projections for f in p.features]
    if len(frame) == 0:
        return frame.assign(**{name: pd.Series(dtype=object) for name in names})
    for projection in service.feature_view_projections:
        key = OFFLINE_SCHEMAS[projection.name].names[0]
        columns = [f"{projection.name}__{f.name}" for f in projection.features]
        lookups, where = _distinct_lookups(frame, key)
        joined = store.get_historical_features(
            entity_df=lookups,
            features=[f"{projection.name}:{f.name}" for f in projection.features],
            full_feature_names=True,
        ).to_df()
        # Each lookup comes back once, in any order (a row number seen twice fails here); a
        # lookup that a store dropped would come back with missing values.
        joined = joined.set_index(_ROW).reindex(pd.RangeIndex(len(lookups)))
        for name in columns:
            frame[name] = joined[name].to_numpy()[where]
    return frame


def _distinct_lookups(frame: pd.DataFrame, key: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The distinct ``(key, event_timestamp)`` of ``frame``, numbered, and each row's lookup."""
    codes, uniques = pd.MultiIndex.from_frame(frame[[key, EVENT_TIMESTAMP]]).factorize()
    lookups = uniques.to_frame(index=False, name=[key, EVENT_TIMESTAMP])
    lookups[_ROW] = np.arange(len(lookups))
    return lookups, codes
