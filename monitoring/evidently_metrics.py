"""The Evidently 0.7 side of the drift signals: which metrics, how they run, what they scored.

Distances are Evidently ``ValueDrift`` scores with fixed methods: ``"wasserstein"``
(Wasserstein distance divided by the reference's standard deviation) for numerical
columns and ``"jensenshannon"`` (natural log) for categorical ones. Exact shares appear
in the reports as per-row ``yes``/``no`` columns under ``CategoryCount`` metrics.

The reports show measurements only, no verdict: they run without Evidently's tests
(``include_tests=False``), the metrics carry no tests, and the "Data drift detected /
not detected" that ``ValueDrift`` writes at its own threshold is removed (the method and
the score stay). Whether a signal counts depends on more than a threshold - its kind,
how many monitored days in a row it has drifted, ``immediate_at``, the sample sizes and
the open episode - so only the drift policy (:mod:`monitoring.policy`) can judge it, and
an Evidently test at the same threshold would still mark FAIL a soft signal the policy
only watches. The policy's verdicts head every report instead
(:func:`monitoring.report_files.write_signal_report`).

Evidently is imported inside the functions: it takes seconds to import, and only the
monitor task computes signals (:mod:`monitoring.policy` and the emails never need it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from monitoring.signal_table import SPECS

if TYPE_CHECKING:  # pragma: no cover - typing only
    from evidently.core.report import Snapshot

NUMERICAL_METHOD = "wasserstein"  # Evidently stat-test names
CATEGORICAL_METHOD = "jensenshannon"
YES, NO = "yes", "no"

# The verdict ValueDrift's counter opens with (evidently/metrics/column_statistics.py).
_DRIFT_VERDICT = re.compile(r"^Data drift (?:not )?detected\.\s*")


def yes_no(flags: np.ndarray) -> np.ndarray:
    """``"yes"``/``"no"`` labels of boolean flags (the share columns of the reports)."""
    return np.where(flags, YES, NO).astype(object)


def value_drift(column: str, signal: str, numerical: bool):
    """The ``ValueDrift`` score of ``column`` for ``signal`` (method by column type)."""
    from evidently.metrics import ValueDrift  # heavy import: only when a report is built

    method = NUMERICAL_METHOD if numerical else CATEGORICAL_METHOD
    # The threshold only sets Evidently's internal drift flag, which the reports do not show.
    return ValueDrift(column=column, method=method, threshold=SPECS[signal].display_threshold)


def yes_share(column: str, threshold: float | None = None):
    """Count and share of ``"yes"`` in a flag column, current and reference.

    ``threshold`` is ignored: the reports carry no pass/fail marks (module docstring).
    """
    from evidently.metrics import CategoryCount  # heavy import: only when a report is built

    return CategoryCount(column=column, category=YES, tests=[], share_tests=[])


def mean_at_least(column: str, floor: float | None = None):
    """The ``MeanValue`` of ``column``.

    ``floor`` is ignored: the reports carry no pass/fail marks (module docstring).
    """
    from evidently.metrics import MeanValue  # heavy import: only when a report is built

    return MeanValue(column=column, tests=[])


def run_report(
    metrics: list,
    current: pd.DataFrame,
    reference: pd.DataFrame | None,
    *,
    numerical: list[str],
    categorical: list[str],
) -> Snapshot:
    """Run an Evidently report of ``metrics`` on ``current`` against ``reference``: no tests,
    no drift verdicts (see the module docstring)."""
    from evidently import DataDefinition, Dataset, Report  # heavy import: only when a report is built

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    snapshot = Report(metrics, include_tests=False).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=None if reference is None else Dataset.from_pandas(reference, data_definition=definition),
    )
    without_drift_verdicts(snapshot)
    return snapshot


def without_drift_verdicts(snapshot: Snapshot) -> Snapshot:
    """Remove the "Data drift detected" / "not detected" that ``ValueDrift`` counters open
    with, in place (the HTML and the JSON render from the same widgets). Returns ``snapshot``."""
    # Evidently 0.7 has no option for it; the widgets are the snapshot's rendered state.
    for widget in getattr(snapshot, "_widgets", None) or []:
        for counter in (widget.params or {}).get("counters") or []:
            label = counter.get("label")
            if isinstance(label, str) and _DRIFT_VERDICT.match(label):
                counter["label"] = _DRIFT_VERDICT.sub("", label)
    return snapshot


def drift_scores(snapshot: Snapshot) -> dict[str, float]:
    """``{column: score}`` of the snapshot's ``ValueDrift`` metrics."""
    return {
        metric["config"]["column"]: float(metric["value"])
        for metric in snapshot.dict().get("metrics", [])
        if str(metric.get("config", {}).get("type", "")).endswith(":ValueDrift")
    }
