"""What the drift policy remembers from one monitored day to the next.

:class:`MonitorState` is the per-day history (which signals were measured, drifted and
counted, and the state before each day, so a re-run of a day starts from the same
place), the open :class:`Episode` and the day of the last triggered retrain. It is plain
data with a JSON form; :func:`monitoring.policy.decide` computes the next one and
:mod:`monitoring.policy_files` stores it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass
class Episode:
    """An open drift episode: from the first fired signal until ``clear_days`` quiet days."""

    id: str
    opened: str  # ISO day
    signals: list[str]  # every signal that fired during the episode
    severity: str  # "critical" once a hard signal fired, else "warning"
    email_sent: bool
    last_drifted: str  # ISO day
    retrain_pending: bool = False  # a trigger was wanted but held back by the cooldown

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Episode:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclasses.dataclass
class MonitorState:
    """What the policy remembers between days (JSON-able through :meth:`to_dict`).

    Attributes:
        history (dict): per ISO day, ``{"observed": [...], "drifted": [...], "fired":
            [...], "prior": {...}}``: the signals measured with enough samples, those
            drifted, those counted, and the episode/trigger state before that day (so a
            re-run of the day starts from the same place).
        episode (Episode | None): the open episode.
        last_trigger (str | None): ISO day of the last triggered retrain.
    """

    history: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    episode: Episode | None = None
    last_trigger: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "history": {day: self.history[day] for day in sorted(self.history)},
            "episode": dataclasses.asdict(self.episode) if self.episode else None,
            "last_trigger": self.last_trigger,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorState:
        episode = data.get("episode")
        return cls(
            history={str(k): dict(v) for k, v in (data.get("history") or {}).items()},
            episode=Episode.from_dict(episode) if episode else None,
            last_trigger=data.get("last_trigger"),
        )
