"""The model signals: what the champion serves today's users against the reference's users.

Today's active users and the reference window's active users are served with the same
:class:`~monitoring.offline_serving.ServingModel`, each a seeded sample of the same size:
``min(active users today, active users in the reference, max_served_users)`` (2 × 20,000
users × 40,000 items take a few seconds). Equal sizes make the catalog coverages
comparable. One Evidently report, ``model`` (one row per served recommendation, sampled
to ``max_rows`` per side), carries the distances:

* ``score_distribution``: the served retrieval scores (fallback rows have none);
* ``recommended_popularity``: ``log1p`` of the reference count of the served items;
* ``catalog_coverage`` (exact): distinct served items / catalog size, where the catalog
  size is the number of distinct items in ``catalog`` (the model's item count when the
  catalog is empty); the value is the relative change.

The report also shows the share of fallback rows (users unknown to the model), marked at
``FALLBACK_DISPLAY_THRESHOLD``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from graphrec import contract
from monitoring.events import EventTable, sample_rows
from monitoring.evidently_metrics import drift_scores, run_report, value_drift, yes_no, yes_share
from monitoring.offline_serving import FALLBACK, SCORE, ServingModel, serve_batch
from monitoring.signal_values import Signal, measured
from training.ids import RowLookup

if TYPE_CHECKING:  # pragma: no cover - typing only
    from evidently.core.report import Snapshot

FALLBACK_DISPLAY_THRESHOLD = 0.05  # the model report's mark on the share of fallback rows
RECOMMENDED_POPULARITY = "recommended_popularity"  # report column
EPS = 1e-9


def model_signals(
    model: ServingModel,
    cur: EventTable,
    ref: EventTable,
    catalog: pd.DataFrame,
    *,
    k: int,
    max_rows: int,
    max_served_users: int,
    seed: int,
) -> tuple[dict[str, Signal], pd.DataFrame, dict[str, Snapshot]]:
    """The model signals of ``model`` on the users of ``cur`` against those of ``ref``.

    Args:
        model (ServingModel): the champion.
        cur (EventTable): the day's interactions (whose users are served).
        ref (EventTable): the reference window's interactions (whose users are served,
            and whose item counts give the served items' popularity).
        catalog (pd.DataFrame): ``item_id`` (the catalog size of ``catalog_coverage``).
        k (int): recommendations per user.
        max_rows (int): served rows per side in the Evidently report.
        max_served_users (int): users served per side, at most.
        seed (int): seed of the user and row samples.

    Returns:
        tuple: ``{name: Signal}`` of the three model signals, today's served
        recommendations (:func:`~monitoring.offline_serving.serve_batch` columns) and the
        ``model`` Evidently snapshot.
    """
    cur_users, ref_users = np.unique(cur.user), np.unique(ref.user)
    n_users = min(len(cur_users), len(ref_users), max_served_users)
    served = serve_batch(model, cur_users[sample_rows(len(cur_users), n_users, seed, 4)], k)
    served_ref = serve_batch(model, ref_users[sample_rows(len(ref_users), n_users, seed, 5)], k)

    ref_lookup = RowLookup.of(ref.item_ids)

    def rows(frame: pd.DataFrame, stream: int) -> pd.DataFrame:
        frame = frame.iloc[sample_rows(len(frame), max_rows, seed, stream)]
        item_row = ref_lookup.rows_of(frame[contract.ITEM_ID].to_numpy(np.int64))
        count = np.where(item_row >= 0, ref.item_count[np.maximum(item_row, 0)], 0)
        return pd.DataFrame(
            {
                SCORE: frame[SCORE].to_numpy(np.float64),
                RECOMMENDED_POPULARITY: np.log1p(count.astype(np.float64)),
                FALLBACK: yes_no(frame[FALLBACK].to_numpy(bool)),
            }
        )

    model_cur, model_ref = rows(served, 6), rows(served_ref, 7)
    n_scored_cur, n_scored_ref = int(model_cur[SCORE].notna().sum()), int(model_ref[SCORE].notna().sum())
    metrics = [
        value_drift(RECOMMENDED_POPULARITY, "recommended_popularity", True),
        yes_share(FALLBACK, FALLBACK_DISPLAY_THRESHOLD),
    ]
    numerical = [RECOMMENDED_POPULARITY]
    if n_scored_cur and n_scored_ref:  # Evidently refuses a column without values
        metrics.insert(0, value_drift(SCORE, "score_distribution", True))
        numerical.insert(0, SCORE)
    columns = [*numerical, FALLBACK]
    snapshot = run_report(metrics, model_cur[columns], model_ref[columns], numerical=numerical, categorical=[FALLBACK])
    scores = drift_scores(snapshot)

    signals: dict[str, Signal] = {}
    b, a = model_ref[SCORE].mean(), model_cur[SCORE].mean()
    signals["score_distribution"] = measured(
        "score_distribution",
        scores.get(SCORE),
        b,
        a,
        n_scored_cur,
        n_scored_ref,
        f"mean served score {b:.3f} -> {a:.3f} (fallback rows excluded)"
        if n_scored_cur and n_scored_ref
        else "no scored (non-fallback) recommendations on one side",
    )
    b, a = float(model_ref[RECOMMENDED_POPULARITY].mean()), float(model_cur[RECOMMENDED_POPULARITY].mean())
    signals["recommended_popularity"] = measured(
        "recommended_popularity",
        scores[RECOMMENDED_POPULARITY],
        b,
        a,
        len(model_cur),
        len(model_ref),
        f"mean log1p(reference count) of served items {b:.2f} -> {a:.2f}",
    )

    catalog_size = int(catalog[contract.ITEM_ID].nunique()) if not catalog.empty else len(model.item_ids)
    catalog_size = catalog_size or len(model.item_ids)
    b = served_ref[contract.ITEM_ID].nunique() / max(catalog_size, 1)
    a = served[contract.ITEM_ID].nunique() / max(catalog_size, 1)
    signals["catalog_coverage"] = measured(
        "catalog_coverage",
        abs(a - b) / max(b, EPS),
        b,
        a,
        served[contract.USER_ID].nunique(),
        served_ref[contract.USER_ID].nunique(),
        f"distinct served items / catalog ({catalog_size:,}) {b:.1%} -> {a:.1%} ({n_users:,} users each)",
    )
    return signals, served, {"model": snapshot}
