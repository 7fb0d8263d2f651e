"""Named, deterministic drift scenarios for benchmarking and testing the drift monitor.

Every scenario is the same simulated world with weekly seasonality (``x1.3`` events on
Saturdays and Sundays, a mild category tilt that repeats every week) and day-to-day noise
(Poisson volume, ``N(0, 0.05)`` on each item's log-popularity, seeded per day). ``stable``
has nothing more; each other scenario adds one kind of drift from ``drift_start`` on:

========================  ==========  =====================================================
name                      kind        what changes from the drift day
========================  ==========  =====================================================
``stable``                none        nothing: only seasonality and noise
``popularity_shift``      sudden      Zipf ranks reversed: the former tail becomes the head
``category_drift``        gradual     one category's log-boost ramps 0 -> log(4) over 7 days
``new_items``             sudden      20% more items, all categories, popular immediately
``bot_burst``             sudden      5 new users add 30% of the events on 10 items, 3 days
``broken_feed``           sudden      every event is written as ``"view"`` (still valid)
========================  ==========  =====================================================

Each drift hook draws from its own random stream, so a scenario's partitions before
``drift_start`` are byte-identical to ``stable``'s (same seed and sizes): a monitor that
alerts before the drift day is raising a false alarm. Example::

    sc = scenario("category_drift", days=30, drift_day=15)
    simulate_scenario(sc, settings.landing_dir)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ingest.simulator import SimulationConfig, simulate

SCENARIOS: tuple[str, ...] = (
    "stable",
    "popularity_shift",
    "category_drift",
    "new_items",
    "bot_burst",
    "broken_feed",
)

_BOT_DAYS = 3
_RAMP_DAYS = 7

_DESCRIPTIONS = {
    "stable": "No drift: weekly seasonality and day-to-day noise only.",
    "popularity_shift": "Sudden: item popularity re-drawn, the former long tail becomes the head.",
    "category_drift": (
        f"Gradual: one category's popularity ramps up linearly in log space to x4 over {_RAMP_DAYS} days."
    ),
    "new_items": "Sudden: a wave of new items (20% of the catalog) across categories, popular at once.",
    "bot_burst": f"Sudden, {_BOT_DAYS} days: 5 bot users generate 30% of the events on 10 items.",
    "broken_feed": "Sudden: an upstream bug writes every click and purchase as a view.",
}


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named simulated world and where its drift lies.

    Args:
        name: one of :data:`SCENARIOS`.
        config: the simulator configuration (``drift_day`` is ``None``; the scenario's
            own hooks are set).
        drift_start: 1-based day on which drift starts, ``None`` for ``stable``.
        drift_end: last 1-based drifting day, ``None`` if drift lasts to the end
            (``bot_burst`` stops after a few days).
        gradual: ``True`` when the drift builds up over days (``category_drift``).
        description: one line for reports.
    """

    name: str
    config: SimulationConfig
    drift_start: int | None
    drift_end: int | None
    gradual: bool
    description: str

    def drifting(self, index: int) -> bool:
        """Whether 1-based day ``index`` is a drifted day (the label a monitor should match)."""
        if self.drift_start is None or index < self.drift_start:
            return False
        return self.drift_end is None or index <= self.drift_end


def scenario(
    name: str,
    *,
    days: int = 37,
    drift_day: int = 22,
    n_users: int = 800,
    n_items: int = 500,
    events_per_day: int = 4000,
    seed: int = 42,
) -> Scenario:
    """Build the named scenario.

    Args:
        name: one of :data:`SCENARIOS`.
        days: number of daily partitions (default 37: three weeks of reference, then drift).
        drift_day: 1-based day on which drift starts (ignored by ``stable``); at least 2 so
            there is a reference, at most ``days``.
        n_users: number of (human) users.
        n_items: number of items in the initial catalog.
        events_per_day: mean number of organic events on a weekday.
        seed: random seed; the same scenario and seed always give the same bytes.

    Raises:
        ValueError: for an unknown name or a drift day outside ``2..days``.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
    if not 2 <= drift_day <= days:
        raise ValueError(f"drift_day must be in 2..{days}, got {drift_day}")
    hooks: dict[str, dict[str, Any]] = {
        "stable": {},
        "popularity_shift": {"shift_day": drift_day},
        "category_drift": {"ramp_day": drift_day, "ramp_days": _RAMP_DAYS, "drift_boost": 4.0, "drift_category": 0},
        "new_items": {"wave_day": drift_day, "wave_items": max(1, n_items // 5)},
        "bot_burst": {"bot_day": drift_day, "bot_days": _BOT_DAYS, "bot_users": 5, "bot_items": 10, "bot_share": 0.3},
        "broken_feed": {"broken_feed_day": drift_day},
    }
    # Seasonality and noise shared by all scenarios; the old drift_day hook is off.
    base = SimulationConfig(
        n_users=n_users,
        n_items=n_items,
        days=days,
        events_per_day=events_per_day,
        seed=seed,
        drift_day=None,
        weekend_volume=1.3,
        weekday_tilt=0.15,
        popularity_noise=0.05,
    )
    config = dataclasses.replace(base, **hooks[name])
    start = None if name == "stable" else drift_day
    end = min(days, drift_day + _BOT_DAYS - 1) if name == "bot_burst" else None
    return Scenario(name, config, start, end, name == "category_drift", _DESCRIPTIONS[name])


def simulate_scenario(sc: Scenario, landing_dir: Path) -> list[Path]:
    """Write the scenario's daily partitions into ``landing_dir`` (as :func:`simulate` does)."""
    return simulate(sc.config, landing_dir)
