"""The quality proxy: did yesterday's served lists predict today's interactions?

For each user who got recommendations yesterday (``served_yesterday``) and is active
today, the relevant set ``T_u`` is today's distinct items minus the items the user
interacted with in the reference (what the served list had to exclude, as in
:mod:`training.metrics`); the user's recall is ``|T_u ∩ top_k| / min(k, |T_u|)`` (the
offline Recall@k whenever ``|T_u| <= k``, the usual case for one day). The signal's
``after`` is the mean over users with a non-empty ``T_u``, ``before`` the champion's
offline Recall@k, and ``value = after / before``: low means the served model collapsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from graphrec import contract
from monitoring.evidently_metrics import mean_at_least, run_report
from monitoring.offline_serving import RANK
from monitoring.signal_table import SPECS
from monitoring.signal_values import Signal, measured

if TYPE_CHECKING:  # pragma: no cover - typing only
    from evidently.core.report import Snapshot

RECALL = "recall"  # report column


def recall_proxy(
    current: pd.DataFrame, served_yesterday: pd.DataFrame, history: pd.DataFrame, *, k: int
) -> pd.DataFrame:
    """Per-user recall of yesterday's served lists on today's new items.

    Args:
        current (pd.DataFrame): today's interactions (``user_id``, ``item_id``).
        served_yesterday (pd.DataFrame): yesterday's :func:`~monitoring.offline_serving.serve_batch` output; rows with
            ``rank <= k`` count.
        history (pd.DataFrame): interactions the served lists had to exclude (the
            reference window); their (user, item) pairs are not relevant today.
        k (int): list length.

    Returns:
        pd.DataFrame: one row per user served yesterday, active today and with at least
        one new item today: ``user_id``, ``n_relevant`` (``|T_u|``), ``hits`` and
        ``recall`` (``hits / min(k, n_relevant)``), sorted by user.
    """
    pair = [contract.USER_ID, contract.ITEM_ID]
    listed = served_yesterday.loc[served_yesterday[RANK] <= k, pair].drop_duplicates()
    users = np.intersect1d(listed[contract.USER_ID].unique(), current[contract.USER_ID].unique())
    today = current.loc[current[contract.USER_ID].isin(users), pair].drop_duplicates()
    seen = history.loc[history[contract.USER_ID].isin(users), pair].drop_duplicates()
    today = today.merge(seen, on=pair, how="left", indicator=True)
    today = today.loc[today["_merge"] == "left_only", pair]
    today["hit"] = today.merge(listed, on=pair, how="left", indicator=True)["_merge"].eq("both").to_numpy()
    per_user = today.groupby(contract.USER_ID).agg(n_relevant=("hit", "size"), hits=("hit", "sum")).reset_index()
    per_user["hits"] = per_user["hits"].astype(np.int64)
    per_user[RECALL] = per_user["hits"] / np.minimum(k, per_user["n_relevant"])
    return per_user


def quality_signal(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    served_yesterday: pd.DataFrame | None,
    offline_recall: float | None,
    k: int,
) -> tuple[Signal, dict[str, Snapshot]]:
    """The ``quality_proxy`` signal and its ``quality`` Evidently snapshot (none without users).

    Args:
        current (pd.DataFrame): today's interactions.
        reference (pd.DataFrame): the reference window's interactions (what the served
            lists had to exclude).
        served_yesterday (pd.DataFrame | None): yesterday's served recommendations.
        offline_recall (float | None): the champion's offline Recall@k; the value is
            ``None`` without a positive figure.
        k (int): list length.
    """
    if served_yesterday is None or served_yesterday.empty:
        return measured(
            "quality_proxy", None, offline_recall, None, 0, 0, "no recommendations served yesterday to compare with"
        ), {}
    per_user = recall_proxy(current, served_yesterday, reference, k=k)
    if per_user.empty:
        return measured(
            "quality_proxy", None, offline_recall, None, 0, 0, "no user served yesterday has new items today"
        ), {}
    figure_ok = offline_recall is not None and offline_recall > 0
    floor = SPECS["quality_proxy"].display_threshold * offline_recall if offline_recall and figure_ok else None
    snapshot = run_report([mean_at_least(RECALL, floor)], per_user[[RECALL]], None, numerical=[RECALL], categorical=[])
    after = float(per_user[RECALL].mean())
    value = after / offline_recall if offline_recall and figure_ok else None
    figure = f"{offline_recall:.3f}" if offline_recall is not None else "none"
    return measured(
        "quality_proxy",
        value,
        offline_recall,
        after,
        len(per_user),
        0,
        f"recall@{k} of yesterday's lists on today's new items {after:.3f} vs offline {figure} "
        f"({len(per_user):,} users)",
    ), {"quality": snapshot}
