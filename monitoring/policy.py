"""The drift decision: from a day's signals to watch, episodes, one email and retraining.

Every monitored day :mod:`monitoring.signals` reports the thirteen signals (effect
sizes: larger = more drift, except ``quality_proxy`` where low is bad). :func:`decide`
turns them into a :class:`Decision` under a :class:`~monitoring.policy_rules.DriftPolicy`
and the :class:`~monitoring.policy_state.MonitorState` carried from day to day:

* Each signal gets a :class:`~monitoring.verdicts.Verdict`: **drifted** when its value
  reaches its threshold with enough samples; a drifted **hard** signal counts at once,
  a drifted **soft** one once it has been drifted on ``persistence_days`` consecutive
  monitored days (or reaches ``immediate_at``), and is on **watch** until then. Counted
  signals have *fired*. (Streaks and the other rules: :mod:`monitoring.verdicts`.)
* The first day with a fired signal opens an **episode** (``drift-YYYY-MM-DD``), which
  sends exactly one email. The episode stays open while signals drift and closes after
  ``clear_days`` consecutive monitored days with no drifted signal; a later drift opens
  a new episode (and a new email).
* Retraining is triggered when an episode opens, when a new signal fires in an open
  episode, or when a trigger wanted earlier was held back by the cooldown and the
  episode still has fired signals once it ends; never twice within ``cooldown_days``.

The history is keyed by day, so re-running a day replaces its entry: the decision is
the same and actions already taken for it (the email, the retraining trigger) are not
repeated.

:func:`decide` is pure: no files, no mail, no MLflow. The policy and the state are read
and written by :mod:`monitoring.policy_files`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from graphrec.handoff import Handoff
from monitoring.policy_rules import DriftPolicy
from monitoring.policy_state import Episode, MonitorState
from monitoring.signal_values import Signal
from monitoring.verdicts import Verdict, evaluate_signals

#: Days of history kept in the state (streaks need only a few; the rest helps debugging).
HISTORY_DAYS = 90

Status = Literal["ok", "watch", "alert", "ongoing", "recovering", "closed"]


@dataclasses.dataclass(frozen=True)
class Decision(Handoff):
    """The day's verdict: status, what counted, and the actions to take.

    Attributes:
        ds: the monitored day.
        status: ``ok`` (nothing drifted), ``watch`` (soft drift, not yet persistent),
            ``alert`` (an episode opens today), ``ongoing`` (open episode, still
            drifting), ``recovering`` (open episode, quiet today) or ``closed``.
        fired: signals that count today (persistent soft, immediate soft, hard).
        watch: drifted signals that do not count yet.
        insufficient: signals skipped for sample size.
        severity: ``critical`` if a hard signal fired, ``warning`` if only soft ones,
            ``None`` if nothing fired.
        main_signal: the fired signal furthest beyond its threshold (value/threshold, or
            threshold/value for ``below`` signals); among the hard ones if any fired.
        send_email: send the episode email (only on the day an episode opens, once).
        trigger_retrain: trigger a retraining run (see the module docstring).
        retrain_reason: why, naming the day, severity and fired signals (when triggered).
        cooldown_until: the day from which retraining may be triggered again, while a
            cooldown runs (``None`` otherwise).
        episode_id, episode_since: the open (or just closed) episode and its first day.
        explanation: one line per signal: value vs threshold, kind, streak, counted or not.
        summary: one line for the run log.
        verdicts: the per-signal details behind ``explanation`` (for emails and reports).
    """

    ds: dt.date
    status: Status
    fired: list[str]
    watch: list[str]
    insufficient: list[str]
    severity: str | None
    main_signal: str | None
    send_email: bool
    trigger_retrain: bool
    retrain_reason: str | None
    cooldown_until: dt.date | None
    episode_id: str | None
    episode_since: dt.date | None
    explanation: list[str]
    summary: str
    verdicts: list[Verdict]

    def verdict(self, name: str) -> Verdict | None:
        return next((v for v in self.verdicts if v.name == name), None)

    def to_xcom(self) -> dict[str, Any]:
        """The decision as JSON-able data: dates as ISO strings, verdicts as dicts (an
        infinite ratio as ``None``). ``decision.json`` holds it; XCom carries it."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("ds", "cooldown_until", "episode_since"):
            data[key] = data[key].isoformat() if data[key] else None
        data["verdicts"] = [v.to_dict() for v in self.verdicts]
        return data

    @classmethod
    def from_xcom(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a decision from :meth:`to_xcom` (for example after an XCom round trip)."""
        values = dict(data)
        for key in ("ds", "cooldown_until", "episode_since"):
            values[key] = _as_date(values[key]) if values.get(key) else None
        values["verdicts"] = [Verdict(**v) for v in values.get("verdicts") or []]
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})


def decide(
    policy: DriftPolicy, ds: dt.date | str, signals: Iterable[Signal], state: MonitorState
) -> tuple[Decision, MonitorState]:
    """Decide what the day's signals mean, given the state before it. Pure: no I/O.

    Args:
        policy (DriftPolicy): thresholds, kinds and windows.
        ds (date | str): the monitored day.
        signals (Iterable[Signal]): the day's signals.
        state (MonitorState): the state saved after the previous decision (not modified).

    Returns:
        tuple: the :class:`Decision` and the new :class:`MonitorState` to save.
    """
    ds = _as_date(ds)
    key = ds.isoformat()
    later = sorted(day for day in state.history if day > key)
    past_days = sorted((day for day in state.history if day < key), reverse=True)
    history = state.history

    # The state before this day: saved with the day on a re-run, else the one now.
    if key in history and "prior" in history[key]:
        prior = history[key]["prior"]
    elif later and "prior" in history[later[0]]:
        prior = history[later[0]]["prior"]
    else:
        prior = _snapshot(state.episode, state.last_trigger)
    episode = Episode.from_dict(prior["episode"]) if prior["episode"] else None
    last_trigger = prior["last_trigger"]

    verdicts = evaluate_signals(policy, signals, history, past_days)
    fired = [v.name for v in verdicts if v.state == "fired"]
    watch = [v.name for v in verdicts if v.state == "watch"]
    insufficient = [v.name for v in verdicts if v.state == "insufficient"]
    observed = [v.name for v in verdicts if v.state in ("fired", "watch", "ok")]
    drifted = fired + watch
    by_name = {v.name: v for v in verdicts}
    severity: str | None = None
    if fired:
        severity = "critical" if any(by_name[n].kind == "hard" for n in fired) else "warning"
    # The subject pairs severity with the main signal, so a critical day names a hard signal.
    main_signal = max(fired, key=lambda n: (by_name[n].kind == "hard", by_name[n].ratio or 0.0), default=None)

    # Episode.
    status: Status
    opened = False
    new_signals: list[str] = []
    closed_episode: Episode | None = None
    if episode is None:
        if fired:
            episode = Episode(f"drift-{key}", key, sorted(fired), severity or "warning", True, key)
            status, opened = "alert", True
        else:
            status = "watch" if watch else "ok"
    elif drifted:
        new_signals = sorted(set(fired) - set(episode.signals))
        episode.signals = sorted(set(episode.signals) | set(fired))
        episode.last_drifted = key
        if severity == "critical":
            episode.severity = "critical"
        status = "ongoing"
    elif _quiet_days(observed, drifted, history, past_days) >= policy.clear_days:
        status, closed_episode, episode = "closed", episode, None
    else:
        status = "recovering"

    # Retraining, held back by the cooldown.
    cause = None
    if episode is not None:
        if opened:
            cause = f"episode {episode.id} opened"
        elif new_signals:
            cause = f"new in episode {episode.id}: {', '.join(new_signals)}"
        elif episode.retrain_pending and fired:
            cause = f"cooldown over, episode {episode.id} still drifting"
    cooling_until = _cooldown_end(last_trigger, policy.cooldown_days)
    trigger = cause is not None and (cooling_until is None or ds >= cooling_until)
    held_back = cause is not None and not trigger
    if episode is not None and cause is not None:
        episode.retrain_pending = held_back
    if trigger:
        last_trigger = key
        cooling_until = _cooldown_end(key, policy.cooldown_days)
    cooldown_until = cooling_until if cooling_until is not None and cooling_until > ds else None
    reason = None
    if trigger:
        counted = ", ".join(by_name[n].comparison() for n in sorted(fired, key=lambda n: -(by_name[n].ratio or 0.0)))
        reason = f"drift on {key}, {severity}: {counted}; {cause}"

    # Actions already taken by an earlier run of this day are not repeated.
    notes: list[str] = []
    send_email = opened
    if later:
        notes.append(
            f"re-run of {key} after later days (up to {later[-1]}) were decided: "
            "the state after them is kept and no action is repeated"
        )
        send_email = trigger = False
    else:
        done = state.episode
        if opened and done is not None and done.id == f"drift-{key}" and done.email_sent:
            notes.append(f"re-run of {key}: the email for {done.id} was already sent")
            send_email = False
        if trigger and state.last_trigger == key:
            notes.append(f"re-run of {key}: retraining was already triggered for this day")
            trigger = False

    shown = episode or closed_episode
    decision = Decision(
        ds=ds,
        status=status,
        fired=fired,
        watch=watch,
        insufficient=insufficient,
        severity=severity,
        main_signal=main_signal,
        send_email=send_email,
        trigger_retrain=trigger,
        retrain_reason=reason if trigger else None,
        cooldown_until=cooldown_until,
        episode_id=shown.id if shown else None,
        episode_since=_as_date(shown.opened) if shown else None,
        explanation=[v.line for v in verdicts] + notes,
        summary="",
        verdicts=verdicts,
    )
    decision = dataclasses.replace(decision, summary=_summary(decision, held_back))

    record: dict[str, Any] = {"observed": observed, "drifted": drifted, "fired": fired, "prior": copy.deepcopy(prior)}
    if later:  # keep the later days' state; only this day's facts change
        new_state = MonitorState({**history, key: record}, copy.deepcopy(state.episode), state.last_trigger)
    else:
        oldest = (ds - dt.timedelta(days=HISTORY_DAYS)).isoformat()
        kept = {day: rec for day, rec in history.items() if oldest <= day < key}
        new_state = MonitorState({**kept, key: record}, episode, last_trigger)
    return decision, new_state


def _quiet_days(observed: list[str], drifted: list[str], history: Mapping[str, Any], past_days: list[str]) -> int:
    """Consecutive monitored days up to today that measured signals and found none drifted."""
    if drifted:
        return 0
    quiet = 1 if observed else 0
    for day in past_days:
        record = history[day]
        if record.get("drifted"):
            break
        if record.get("observed"):
            quiet += 1
    return quiet


def _summary(decision: Decision, held_back: bool) -> str:
    parts = [f"{decision.ds}: {decision.status}"]
    if decision.status == "alert":
        parts.append(f"episode {decision.episode_id} opened ({decision.severity}, main signal {decision.main_signal})")
    elif decision.status in ("ongoing", "recovering", "closed"):
        parts.append(f"episode {decision.episode_id} since {decision.episode_since}")
    if decision.fired:
        parts.append(f"fired: {', '.join(decision.fired)}")
    if decision.watch:
        parts.append(f"watch: {', '.join(decision.watch)}")
    if decision.send_email:
        parts.append("email sent")
    if decision.trigger_retrain:
        parts.append("retraining triggered")
    elif held_back:
        parts.append(f"retraining held back by the cooldown until {decision.cooldown_until}")
    return "; ".join(parts)


def _cooldown_end(last_trigger: str | None, cooldown_days: int) -> dt.date | None:
    return None if last_trigger is None else _as_date(last_trigger) + dt.timedelta(days=cooldown_days)


def _snapshot(episode: Episode | None, last_trigger: str | None) -> dict[str, Any]:
    return {"episode": dataclasses.asdict(episode) if episode else None, "last_trigger": last_trigger}


def _as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value).removeprefix("ds=")[:10])
