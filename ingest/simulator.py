"""A deterministic event simulator with a drift scenario.

Users have latent tastes, items have a category, latent factors and Zipf-like
popularity. Each day a random set of users interacts with items drawn from a
softmax over ``zipf_weight * log(popularity) + taste * <user, item>``, so the data
has collaborative structure a graph model can learn and a popularity baseline cannot.
Small worlds compute that softmax for every active user; large ones draw from it exactly
by rejection from the popularity distribution, without the user x item matrix.

From ``drift_day`` on, one category's popularity jumps and a wave of new items in
that category appears. The same configuration and seed always give the same bytes.

Further hooks, all off by default (so an existing configuration gives the bytes it
always gave), let :mod:`ingest.scenarios` build drift scenarios: weekly
seasonality and per-day popularity noise, and one knob per kind of drift (popularity
re-drawn, a category ramping up, a wave of new items, bot users, a broken event feed).
Each hook draws from its own random stream, so days before a hook's start day are
identical to those of the same configuration without it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from graphrec import contract
from ingest.landing import write_partition

CATEGORIES = ("books", "music", "movies", "games", "sports", "garden", "kitchen", "toys", "fashion", "travel")
EVENT_TYPE_P = {"view": 0.80, "click": 0.15, "purchase": 0.05}


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """Parameters of a simulated world.

    Args:
        n_users: number of users.
        n_items: number of items in the initial catalog.
        n_categories: number of item categories (at most ``len(CATEGORIES)``).
        days: number of daily partitions to produce.
        start: the first day (UTC).
        events_per_day: mean number of interactions per day.
        latent_dim: dimension of the hidden user/item factors.
        taste_strength: weight of the user-item affinity in the choice logits, for a catalog
            of up to ``taste_reference_items`` items (see :attr:`taste`).
        taste_reference_items: a larger catalog sharpens taste in step with its popularity
            spread: the weight becomes ``taste_strength * ln(n_items) / ln(taste_reference_items)``
            (``0``: never scaled). The Zipf term's range grows like ``ln(n_items)``; with a fixed
            weight, a 40,000-item world had no personal signal left (ranking by taste alone
            reached Recall@20 0.003 against popularity's 0.088), unlike real catalogs.
        zipf_exponent: exponent of the Zipf popularity ``rank ** -a``.
        drift_day: 1-based day on which drift starts, or ``None`` for no drift.
        drift_category: index of the category whose popularity jumps.
        drift_boost: multiplicative popularity boost of that category.
        drift_new_items: number of new items (in the drift category) appearing on ``drift_day``.
        corrupt_day: 1-based day whose partition is written malformed (to exercise
            quarantine), or ``None``.
        seed: random seed.
        weekend_volume: multiplier of ``events_per_day`` on Saturdays and Sundays.
        weekday_tilt: amplitude of a weekly log-popularity tilt ``tilt * cos(2 pi (w / 7 - c / C))``
            for weekday ``w`` and category ``c``: each category peaks on its own weekday.
        popularity_noise: standard deviation of a per-day ``N(0, s)`` perturbation of every
            item's log-popularity (seeded per day).
        shift_day: 1-based day from which item popularity is re-drawn (the Zipf ranks of the
            initial catalog are reversed: the tail becomes the head), or ``None``.
        ramp_day: 1-based day from which ``drift_category``'s popularity ramps up linearly in
            log space, reaching ``drift_boost`` after ``ramp_days`` days, or ``None``.
        ramp_days: length of that ramp in days.
        wave_day: 1-based day on which ``wave_items`` new items of all categories appear, with
            buzz (popular from the first day), or ``None``.
        wave_items: number of items in that wave.
        bot_day: 1-based day from which ``bot_users`` new users (ids ``n_users ...``) add events
            on ``bot_items`` items, for ``bot_days`` days, or ``None``.
        bot_days: number of days the bots are active.
        bot_users: number of bot users.
        bot_items: number of items the bots hit (drawn once from the initial catalog).
        bot_share: the bots' share of each of those days' events.
        broken_feed_day: 1-based day from which every event is written as a ``"view"`` (an
            upstream bug that drops clicks and purchases but still passes the schema), or ``None``.
    """

    n_users: int = 800
    n_items: int = 500
    n_categories: int = 8
    days: int = 10
    start: dt.date = dt.date(2025, 1, 1)
    events_per_day: int = 4000
    latent_dim: int = 8
    taste_strength: float = 3.0
    taste_reference_items: int = 500
    zipf_exponent: float = 0.8
    drift_day: int | None = 8
    drift_category: int = 0
    drift_boost: float = 3.0
    drift_new_items: int = 80
    corrupt_day: int | None = None
    seed: int = 42
    weekend_volume: float = 1.0
    weekday_tilt: float = 0.0
    popularity_noise: float = 0.0
    shift_day: int | None = None
    ramp_day: int | None = None
    ramp_days: int = 7
    wave_day: int | None = None
    wave_items: int = 0
    bot_day: int | None = None
    bot_days: int = 3
    bot_users: int = 5
    bot_items: int = 10
    bot_share: float = 0.3
    broken_feed_day: int | None = None

    @property
    def taste(self) -> float:
        """The weight of the user-item affinity in the logits (``taste_strength``, scaled to the catalog)."""
        if self.taste_reference_items <= 1 or self.n_items <= self.taste_reference_items:
            return self.taste_strength
        return self.taste_strength * float(np.log(self.n_items) / np.log(self.taste_reference_items))

    def day(self, index: int) -> dt.date:
        """The date of 1-based day ``index``."""
        return self.start + dt.timedelta(days=index - 1)


@dataclasses.dataclass
class _World:
    user_factors: np.ndarray
    user_activity: np.ndarray
    item_factors: np.ndarray
    item_category: np.ndarray
    item_log_pop: np.ndarray
    item_first_day: np.ndarray  # 1-based day on which each item appears
    item_shift_log_pop: np.ndarray | None = None  # popularity from ``shift_day`` on


def _build_world(cfg: SimulationConfig) -> _World:
    if not 1 <= cfg.n_categories <= len(CATEGORIES):
        raise ValueError(f"n_categories must be in 1..{len(CATEGORIES)}")
    rng = np.random.default_rng([cfg.seed, 0])
    n_new = cfg.drift_new_items if cfg.drift_day is not None else 0
    n_total = cfg.n_items + n_new
    # Users lean towards a category: a category direction added to their factors.
    cat_dirs = rng.normal(size=(cfg.n_categories, cfg.latent_dim))
    user_cat = rng.integers(0, cfg.n_categories, size=cfg.n_users)
    user_factors = rng.normal(size=(cfg.n_users, cfg.latent_dim)) * 0.6 + cat_dirs[user_cat]
    user_activity = rng.lognormal(mean=0.0, sigma=0.8, size=cfg.n_users)
    item_category = rng.integers(0, cfg.n_categories, size=n_total)
    if n_new:
        item_category[cfg.n_items :] = cfg.drift_category
    item_factors = rng.normal(size=(n_total, cfg.latent_dim)) * 0.6 + cat_dirs[item_category]
    # Equal-norm item factors: affinity decides by direction, not by a few long vectors.
    item_factors *= np.sqrt(cfg.latent_dim) / np.linalg.norm(item_factors, axis=1, keepdims=True)
    ranks = rng.permutation(n_total) + 1
    item_log_pop = -cfg.zipf_exponent * np.log(ranks)
    item_first_day = np.ones(n_total, dtype=np.int64)
    if n_new:
        item_first_day[cfg.n_items :] = cfg.drift_day
        # New items arrive with buzz: popular from the first day.
        item_log_pop[cfg.n_items :] = -cfg.zipf_exponent * np.log(rng.integers(10, 200, size=n_new))
    norm = np.sqrt(cfg.latent_dim)
    world = _World(user_factors / norm, user_activity, item_factors / norm, item_category, item_log_pop, item_first_day)
    if cfg.shift_day is not None:
        # Reversed ranks: the former tail becomes the head (later items keep their buzz).
        world.item_shift_log_pop = -cfg.zipf_exponent * np.log(n_total + 1 - ranks)
    if cfg.wave_day is not None and cfg.wave_items > 0:
        _add_wave(cfg, world, cat_dirs)
    return world


def _add_wave(cfg: SimulationConfig, world: _World, cat_dirs: np.ndarray) -> None:
    """Append ``cfg.wave_items`` buzzing items of random categories, first seen on ``cfg.wave_day``."""
    rng = np.random.default_rng([cfg.seed, 0, 1])  # own stream: the initial world is unchanged
    category = rng.integers(0, cfg.n_categories, size=cfg.wave_items)
    factors = rng.normal(size=(cfg.wave_items, cfg.latent_dim)) * 0.6 + cat_dirs[category]
    factors /= np.linalg.norm(factors, axis=1, keepdims=True)  # unit norm, like the catalog's
    # Buzz: Zipf ranks among the catalog's top quarter, so the wave's share of traffic
    # (about 30% for a wave of a fifth of the catalog) hardly depends on the catalog size.
    log_pop = -cfg.zipf_exponent * np.log(rng.integers(2, cfg.n_items // 4 + 2, size=cfg.wave_items))
    world.item_factors = np.concatenate([world.item_factors, factors])
    world.item_category = np.concatenate([world.item_category, category])
    world.item_log_pop = np.concatenate([world.item_log_pop, log_pop])
    world.item_first_day = np.concatenate([world.item_first_day, np.full(cfg.wave_items, cfg.wave_day)])
    if world.item_shift_log_pop is not None:
        world.item_shift_log_pop = np.concatenate([world.item_shift_log_pop, log_pop])


def _day_log_pop(cfg: SimulationConfig, world: _World, index: int) -> np.ndarray:
    """Every item's log-popularity on day ``index``: base, drift, weekly tilt and noise."""
    shifted = world.item_shift_log_pop if cfg.shift_day is not None and index >= cfg.shift_day else None
    log_pop = (world.item_log_pop if shifted is None else shifted).copy()
    in_category = world.item_category == cfg.drift_category
    if cfg.drift_day is not None and index >= cfg.drift_day:
        log_pop[in_category] += np.log(cfg.drift_boost)
    if cfg.ramp_day is not None and index >= cfg.ramp_day:
        progress = min(1.0, (index - cfg.ramp_day + 1) / cfg.ramp_days)
        log_pop[in_category] += progress * np.log(cfg.drift_boost)
    if cfg.weekday_tilt:
        weekday = cfg.day(index).weekday()
        phase = 2 * np.pi * (weekday / 7 - np.arange(cfg.n_categories) / cfg.n_categories)
        log_pop += cfg.weekday_tilt * np.cos(phase)[world.item_category]
    if cfg.popularity_noise:
        noise = np.random.default_rng([cfg.seed, index, 3])
        log_pop += noise.normal(0.0, cfg.popularity_noise, size=len(log_pop))
    return log_pop


def _volume(cfg: SimulationConfig, index: int) -> float:
    """Mean number of events on day ``index``."""
    weekend = cfg.day(index).weekday() >= 5
    return cfg.events_per_day * (cfg.weekend_volume if weekend else 1.0)


#: Up to this many (active user x available item) cells a day's choices come from the
#: dense per-user softmax; above it, from :func:`_pick_by_rejection` (same distribution).
_DENSE_LIMIT = 50_000_000

#: Proposals the rejection sampler draws per round: bounds its memory (about 200 bytes each).
_PROPOSALS_PER_ROUND = 1 << 19


def _pick(
    cfg: SimulationConfig,
    world: _World,
    users: np.ndarray,
    available: np.ndarray,
    log_pop: np.ndarray,
    row: np.ndarray,
    draws: np.ndarray,
) -> np.ndarray:
    """Positions in ``available`` chosen by inverse-CDF draws from each user's softmax."""
    logits = log_pop[None, :] + cfg.taste * (world.user_factors[users] @ world.item_factors[available].T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    cdf = np.cumsum(probs, axis=1)
    return np.minimum((cdf[row] < draws[:, None]).sum(axis=1), len(available) - 1)


def _pick_by_rejection(
    cfg: SimulationConfig,
    world: _World,
    users: np.ndarray,
    available: np.ndarray,
    log_pop: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    r"""Positions in ``available``, one per event, drawn from its user's softmax by rejection.

    The target for user :math:`u` is :math:`q_u(i) \propto \exp(\ell_i + s \langle u, i \rangle)`
    with log-popularity :math:`\ell` and taste strength :math:`s`. Proposals come from the
    popularity distribution :math:`p(i) \propto \exp(\ell_i)`, a binary search in one shared
    CDF, instead of one softmax over all items per user. By Cauchy-Schwarz
    :math:`|\langle u, i \rangle| \le \|u\| \max_j \|j\| = b_u`, so
    :math:`q_u(i) / p(i) \propto \exp(s \langle u, i \rangle) \le \exp(|s| b_u)`, and accepting a
    proposal :math:`i` with probability :math:`\exp(s \langle u, i \rangle - |s| b_u)` gives an
    exact draw from :math:`q_u` (von Neumann's rejection sampling). Item factors are unit-norm,
    but the bound uses their measured maximum norm so it stays exact for any catalog.

    Each pending event gets ``k`` proposals a round and keeps its first accepted one, which is
    the same as proposing one at a time; ``k`` grows as events are settled, so a round always
    draws about :data:`_PROPOSALS_PER_ROUND` proposals. The bound is loose (a user's taste is
    rarely aligned with a popular item), yet at 30,000 users x 40,000 items (taste weight 5.1)
    about 7% of proposals are accepted: some 15 proposals of ``latent_dim`` multiply-adds per
    event, and a few rounds settle a day of 70,000 events.

    Args:
        cfg: the world's configuration (only :attr:`SimulationConfig.taste` is read).
        world: the world (user and item factors).
        users: the user of each event.
        available: ids of the items on sale today.
        log_pop: their log-popularity today, aligned with ``available``.
        rng: the generator of the proposals and acceptance draws.

    Returns:
        An int64 array of positions in ``available``, aligned with ``users``.
    """
    cdf = np.cumsum(np.exp(log_pop - log_pop.max()))
    item_factors = world.item_factors[available]
    user_factors = world.user_factors[users]
    max_item_norm = np.linalg.norm(item_factors, axis=1).max()
    bound = abs(cfg.taste) * max_item_norm * np.linalg.norm(user_factors, axis=1)
    picked = np.empty(len(users), dtype=np.int64)
    pending = np.arange(len(users))
    while len(pending):
        k = max(1, _PROPOSALS_PER_ROUND // len(pending))
        event = np.repeat(pending, k)  # k consecutive proposals per pending event
        proposal = np.minimum(np.searchsorted(cdf, rng.random(len(event)) * cdf[-1], side="right"), len(cdf) - 1)
        affinity = np.einsum("ij,ij->i", user_factors[event], item_factors[proposal])
        accept = rng.random(len(event)) < np.exp(cfg.taste * affinity - bound[event])
        accept, proposal = accept.reshape(-1, k), proposal.reshape(-1, k)
        settled = accept.any(axis=1)
        first = accept[settled].argmax(axis=1)
        picked[pending[settled]] = proposal[settled, first]
        pending = pending[~settled]
    return picked


def _simulate_day(cfg: SimulationConfig, world: _World, index: int) -> pd.DataFrame:
    rng = np.random.default_rng([cfg.seed, index])
    available = np.flatnonzero(world.item_first_day <= index)
    log_pop = _day_log_pop(cfg, world, index)[available]

    n_events = int(rng.poisson(_volume(cfg, index)))
    activity = world.user_activity / world.user_activity.sum()
    users = np.sort(rng.choice(cfg.n_users, size=n_events, p=activity))
    uniq, counts = np.unique(users, return_counts=True)

    # Drawn on both paths, so the day's users, timestamps and event types do not depend on the path.
    draws = rng.random(n_events)
    if len(uniq) * len(available) <= _DENSE_LIMIT:
        row = np.repeat(np.arange(len(uniq)), counts)
        picked = _pick(cfg, world, uniq, available, log_pop, row, draws)
    else:  # large worlds: exact draws without the user x item matrix, from their own stream
        sampler = np.random.default_rng([cfg.seed, index, 5])
        picked = _pick_by_rejection(cfg, world, users, available, log_pop, sampler)
    items = available[picked]

    start = pd.Timestamp(cfg.day(index).isoformat(), tz="UTC")
    offsets_us = np.sort(rng.integers(0, 86_400_000_000, size=n_events))
    event_types = rng.choice(list(EVENT_TYPE_P), size=n_events, p=list(EVENT_TYPE_P.values()))
    order = rng.permutation(n_events)  # users visit in random order through the day
    frame = pd.DataFrame(
        {
            contract.USER_ID: users[order].astype(np.int64),
            contract.ITEM_ID: items[order].astype(np.int64),
            contract.EVENT_TS: start + pd.to_timedelta(offsets_us, unit="us"),
            contract.EVENT_TYPE: event_types,
            contract.RATING: np.full(n_events, np.nan),
        }
    )
    if cfg.bot_day is not None and cfg.bot_day <= index < cfg.bot_day + cfg.bot_days:
        frame = _with_bots(cfg, frame, index)
    if cfg.broken_feed_day is not None and index >= cfg.broken_feed_day:
        frame[contract.EVENT_TYPE] = "view"
    return frame


def _with_bots(cfg: SimulationConfig, frame: pd.DataFrame, index: int) -> pd.DataFrame:
    """Add bot events, ``cfg.bot_share`` of the day's total, spread over the day."""
    if not 0.0 <= cfg.bot_share < 1.0:
        raise ValueError("bot_share must be in [0, 1)")
    targets = np.random.default_rng([cfg.seed, 0, 2]).choice(cfg.n_items, size=cfg.bot_items, replace=False)
    rng = np.random.default_rng([cfg.seed, index, 4])
    n_bot = round(len(frame) * cfg.bot_share / (1.0 - cfg.bot_share))
    start = pd.Timestamp(cfg.day(index).isoformat(), tz="UTC")
    bots = pd.DataFrame(
        {
            contract.USER_ID: cfg.n_users + rng.integers(0, cfg.bot_users, size=n_bot),
            contract.ITEM_ID: targets[rng.integers(0, cfg.bot_items, size=n_bot)].astype(np.int64),
            contract.EVENT_TS: start + pd.to_timedelta(rng.integers(0, 86_400_000_000, size=n_bot), unit="us"),
            contract.EVENT_TYPE: rng.choice(list(EVENT_TYPE_P), size=n_bot, p=list(EVENT_TYPE_P.values())),
            contract.RATING: np.full(n_bot, np.nan),
        }
    )
    merged = pd.concat([frame, bots], ignore_index=True)
    return merged.sort_values(contract.EVENT_TS, kind="stable", ignore_index=True)


def _corrupt(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Malform a batch the way upstream systems do: null keys, stray timestamps, unknown types."""
    bad = frame.copy()
    n = len(bad)
    idx = rng.choice(n, size=max(3, n // 50), replace=False)
    bad[contract.USER_ID] = bad[contract.USER_ID].astype("Int64")
    bad.loc[idx[: len(idx) // 3], contract.USER_ID] = pd.NA
    bad.loc[idx[len(idx) // 3 : 2 * len(idx) // 3], contract.EVENT_TS] -= pd.Timedelta(days=3)
    bad.loc[idx[2 * len(idx) // 3 :], contract.EVENT_TYPE] = "bogus"
    return bad


def simulate(cfg: SimulationConfig, landing_dir: Path) -> list[Path]:
    """Write ``cfg.days`` daily partitions into ``landing_dir`` and return their directories."""
    world = _build_world(cfg)
    written = []
    for index in range(1, cfg.days + 1):
        ds = cfg.day(index)
        interactions = _simulate_day(cfg, world, index)
        new_items = np.flatnonzero(world.item_first_day == index)
        items = pd.DataFrame(
            {
                contract.ITEM_ID: new_items.astype(np.int64),
                contract.CATEGORY: [CATEGORIES[c] for c in world.item_category[new_items]],
                contract.FIRST_SEEN_TS: pd.Timestamp(ds.isoformat(), tz="UTC"),
            }
        )
        users = pd.DataFrame({contract.USER_ID: np.unique(interactions[contract.USER_ID]).astype(np.int64)})
        corrupt = cfg.corrupt_day is not None and index == cfg.corrupt_day
        if corrupt:
            interactions = _corrupt(interactions, np.random.default_rng([cfg.seed, index, 1]))
        written.append(write_partition(landing_dir, ds, interactions, items, users, enforce_schema=not corrupt))
    return written
