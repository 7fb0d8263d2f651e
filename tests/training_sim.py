"""Shared test helper: a small simulated world whose partitions sit in ``curated/``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from graphrec import contract
from graphrec.settings import Settings
from ingest.simulator import SimulationConfig, simulate

# Tiny: enough for data/metric tests.
TINY = SimulationConfig(n_users=120, n_items=80, days=4, events_per_day=600, drift_day=None)
# Small but with enough collaborative signal that LightGCN clearly beats popularity.
SMALL = SimulationConfig(n_users=400, n_items=300, days=6, events_per_day=3000, drift_day=None)


def curated_world(home: Path, cfg: SimulationConfig, **overrides) -> Settings:
    """Simulate ``cfg`` into landing and move every partition whole into curated.

    (Validation, which normally does the move, is another package's job.)
    """
    settings = Settings(home=home, **overrides)
    simulate(cfg, settings.landing_dir)
    settings.curated_dir.mkdir(parents=True, exist_ok=True)
    for part in sorted(settings.landing_dir.iterdir()):
        os.replace(part, settings.curated_dir / part.name)
    return settings


def events(rows: list[tuple[int, int, str]]) -> pd.DataFrame:
    """An interactions frame in the contract's columns from ``(user, item, iso time)`` rows."""
    return pd.DataFrame(
        {
            contract.USER_ID: np.array([r[0] for r in rows], dtype=np.int64),
            contract.ITEM_ID: np.array([r[1] for r in rows], dtype=np.int64),
            contract.EVENT_TS: pd.to_datetime([r[2] for r in rows], utc=True, format="ISO8601"),
            contract.EVENT_TYPE: "view",
            contract.RATING: np.nan,
        }
    )
