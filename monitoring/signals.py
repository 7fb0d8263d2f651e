"""The recommender's drift signals of one day, computed with Evidently 0.7 reports.

:func:`compute_signals` measures the thirteen effect sizes declared in
:mod:`monitoring.signal_table` -- each says *what* moved and *by how much*, never whether
to act (that is :mod:`monitoring.policy`'s job) -- and returns them with the Evidently
snapshots behind them and the recommendations it served:

* the data signals (:mod:`monitoring.data_signals`): the day's interactions against the
  reference window, compared with the reference days of the same weekday;
* the model signals (:mod:`monitoring.model_signals`): what the champion serves today's
  users against what it serves the reference window's users;
* the quality proxy (:mod:`monitoring.quality_signal`): yesterday's served lists against
  today's interactions, relative to the champion's offline Recall@k.

Distances are Evidently ``ValueDrift`` scores with fixed methods
(:mod:`monitoring.evidently_metrics`) on seeded samples of at most ``max_rows`` rows per
side (distances are stable at that size); shares are exact, counted on all rows. The
files are written by :func:`monitoring.report_files.write_signal_report`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import pandas as pd

from monitoring.data_signals import data_signals
from monitoring.events import event_table
from monitoring.model_signals import model_signals
from monitoring.offline_serving import ServingModel
from monitoring.quality_signal import quality_signal
from monitoring.signal_table import SIGNAL_NAMES, SIGNALS
from monitoring.signal_values import Signal, measured

if TYPE_CHECKING:  # pragma: no cover - typing only
    from evidently.core.report import Snapshot

log = logging.getLogger(__name__)

MAX_SERVED_USERS = 20_000  # users served per side for the model signals


@dataclasses.dataclass
class SignalReport:
    """The signals of one day and the Evidently reports behind them.

    Args:
        signals: every name of :data:`~monitoring.signal_table.SIGNAL_NAMES`, in that order.
        served: today's served recommendations
            (:func:`~monitoring.offline_serving.serve_batch` columns), for tomorrow's
            ``served_yesterday``; ``None`` without a model.
        snapshots: Evidently snapshots by name: ``data`` (per event), ``users`` (per
            user-day), ``model`` (per served recommendation, with a model) and ``quality``
            (per overlap user, with ``served_yesterday``).
    """

    signals: dict[str, Signal]
    served: pd.DataFrame | None
    snapshots: dict[str, Snapshot]


def compute_signals(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    catalog: pd.DataFrame,
    *,
    model: ServingModel | None = None,
    served_yesterday: pd.DataFrame | None = None,
    offline_recall: float | None = None,
    k: int = 20,
    max_rows: int = 300_000,
    seed: int = 0,
    max_served_users: int = MAX_SERVED_USERS,
    match_weekday: bool = True,
) -> SignalReport:
    """Compute every signal of :data:`~monitoring.signal_table.SIGNAL_NAMES` for one day.

    Args:
        current (pd.DataFrame): the day's interactions (``graphrec.contract`` columns).
        reference (pd.DataFrame): the reference window's interactions.
        catalog (pd.DataFrame): ``item_id`` and ``category`` (:func:`graphrec.lake.read_catalog`);
            missing items count as ``"unknown"``.
        model (ServingModel | None): the champion; without it the model signals are
            ``None`` and nothing is served.
        served_yesterday (pd.DataFrame | None): yesterday's ``SignalReport.served``.
        offline_recall (float | None): the champion's offline Recall@k.
        k (int): recommendations per user. (default: ``20``)
        max_rows (int): rows per side in each Evidently report. (default: ``300_000``)
        seed (int): seed of every sample. (default: ``0``)
        max_served_users (int): users served per side. (default: ``20_000``)
        match_weekday (bool): compare the data signals with the reference days of the
            current day's weekday (weekly seasonality), when the reference has at least
            :data:`~monitoring.data_signals.MIN_SEASON_EVENTS` events on it. (default: ``True``)

    Returns:
        SignalReport: the signals (all names; ``value`` ``None`` where not computable),
        today's served recommendations and the Evidently snapshots.

    Raises:
        ValueError: when ``current`` or ``reference`` is empty (nothing to compare).
    """
    if current.empty or reference.empty:
        raise ValueError("compute_signals needs non-empty current and reference interactions")
    cur, ref = event_table(current), event_table(reference)
    signals, snapshots = data_signals(cur, ref, catalog, max_rows=max_rows, seed=seed, match_weekday=match_weekday)
    served = None
    if model is not None:
        by_model, served, model_snapshots = model_signals(
            model, cur, ref, catalog, k=k, max_rows=max_rows, max_served_users=max_served_users, seed=seed
        )
        signals.update(by_model)
        snapshots.update(model_snapshots)
    else:
        for spec in SIGNALS:
            if spec.group == "model":
                signals[spec.name] = measured(spec.name, None, None, None, 0, 0, "no model to serve with")
    signals["quality_proxy"], quality_snapshots = quality_signal(
        current, reference, served_yesterday, offline_recall, k
    )
    snapshots.update(quality_snapshots)
    log.info("signals: %s", {name: signals[name].value for name in SIGNAL_NAMES})
    return SignalReport({name: signals[name] for name in SIGNAL_NAMES}, served, snapshots)
