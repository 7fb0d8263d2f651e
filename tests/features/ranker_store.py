"""What the features tests' shared store holds (``conftest.py``) and how values compare."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ingest.simulator import SimulationConfig

CFG = SimulationConfig(n_users=60, n_items=50, days=4, events_per_day=400, drift_day=None)
DAYS = [CFG.day(i) for i in range(1, CFG.days + 1)]


def same(actual, expected) -> bool:
    """Whether a feature value equals the expected one (``None`` or NaN: missing, either way)."""
    if expected is None or (np.isscalar(expected) and pd.isna(expected)):
        return actual is None or (np.isscalar(actual) and pd.isna(actual))
    if isinstance(expected, list):
        return list(actual) == expected
    return actual == expected
