"""The Evidently 0.7 side of the drift signals: which metrics, how they run, what they scored.

Distances are Evidently ``ValueDrift`` scores with fixed methods: ``"wasserstein"``
(Wasserstein distance divided by the reference's standard deviation) for numerical
columns and ``"jensenshannon"`` (natural log) for categorical ones. Exact shares appear
in the reports as per-row ``yes``/``no`` columns under ``CategoryCount`` metrics. The
marks the reports draw come from the signal table's ``display_threshold``
(:mod:`monitoring.signal_table`); they are display only, the policy decides.

Evidently is imported inside the functions: it takes seconds to import, and only the
monitor task computes signals (:mod:`monitoring.policy` and the emails never need it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from monitoring.signal_table import SPECS

if TYPE_CHECKING:  # pragma: no cover - typing only
    from evidently.core.report import Snapshot

NUMERICAL_METHOD = "wasserstein"  # Evidently stat-test names
CATEGORICAL_METHOD = "jensenshannon"
YES, NO = "yes", "no"


def yes_no(flags: np.ndarray) -> np.ndarray:
    """``"yes"``/``"no"`` labels of boolean flags (the share columns of the reports)."""
    return np.where(flags, YES, NO).astype(object)


def value_drift(column: str, signal: str, numerical: bool):
    """The ``ValueDrift`` metric of ``column``, marked at ``signal``'s display threshold."""
    from evidently.metrics import ValueDrift  # heavy import: only when a report is built

    method = NUMERICAL_METHOD if numerical else CATEGORICAL_METHOD
    return ValueDrift(column=column, method=method, threshold=SPECS[signal].display_threshold)


def yes_share(column: str, threshold: float):
    """Share of ``"yes"`` in a flag column, marked where it moves ``threshold`` from the reference."""
    from evidently.metrics import CategoryCount  # heavy import: only when a report is built
    from evidently.tests import Reference, eq

    return CategoryCount(column=column, category=YES, tests=[], share_tests=[eq(Reference(absolute=threshold))])


def mean_at_least(column: str, floor: float | None):
    """The ``MeanValue`` of ``column``, marked where it falls below ``floor`` (no mark when ``None``)."""
    from evidently.metrics import MeanValue  # heavy import: only when a report is built
    from evidently.tests import gte

    return MeanValue(column=column, tests=[] if floor is None else [gte(floor)])


def run_report(
    metrics: list,
    current: pd.DataFrame,
    reference: pd.DataFrame | None,
    *,
    numerical: list[str],
    categorical: list[str],
) -> Snapshot:
    """Run an Evidently report (with its tests) on ``current`` against ``reference``."""
    from evidently import DataDefinition, Dataset, Report  # heavy import: only when a report is built

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    return Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=None if reference is None else Dataset.from_pandas(reference, data_definition=definition),
    )


def drift_scores(snapshot: Snapshot) -> dict[str, float]:
    """``{column: score}`` of the snapshot's ``ValueDrift`` metrics."""
    return {
        metric["config"]["column"]: float(metric["value"])
        for metric in snapshot.dict().get("metrics", [])
        if str(metric.get("config", {}).get("type", "")).endswith(":ValueDrift")
    }
