"""The drift decision policy: from daily signals to watch, episodes, one email and retraining.

Every monitored day :mod:`monitoring.signals` reports a list of signals (effect sizes:
larger = more drift, except ``quality_proxy`` where low is bad). :func:`decide` turns
them into a :class:`Decision` under a :class:`DriftPolicy` and the :class:`MonitorState`
carried from day to day:

* A signal is **drifted** when its value reaches its threshold (``value >= threshold``,
  or ``value <= below`` for "low is bad" signals) with enough samples on both sides.
* A drifted **hard** signal counts at once; a drifted **soft** signal counts once it has
  been drifted on ``persistence_days`` consecutive monitored days, or at once if it
  reaches ``immediate_at``. Until then it is on **watch**. Counted signals have *fired*.
* The first day with a fired signal opens an **episode** (``drift-YYYY-MM-DD``), which
  sends exactly one email. The episode stays open while signals drift and closes after
  ``clear_days`` consecutive monitored days with no drifted signal; a later drift opens
  a new episode (and a new email).
* Retraining is triggered when an episode opens, when a new signal fires in an open
  episode, or when a trigger wanted earlier was held back by the cooldown and the
  episode still has fired signals once it ends; never twice within ``cooldown_days``.

Streaks count *monitored* days: a day the monitor did not run breaks nothing, a monitored
day where the signal was measured and not drifted resets it, and a day where the signal
was not measurable (too few samples, no value) is skipped. The history is keyed by day,
so re-running a day replaces its entry: the decision is the same and actions already
taken for it (the email, the retraining trigger) are not repeated.

:func:`decide` is pure; :func:`load_state` / :func:`save_state` are the file edges.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: The signals :mod:`monitoring.signals` produces, with their group. Only these names are
#: accepted in a policy file.
SIGNAL_GROUPS: dict[str, str] = {
    "user_activity": "data",
    "user_concentration": "data",
    "item_popularity": "data",
    "head_share": "data",
    "category_mix": "data",
    "new_item_share": "data",
    "new_user_share": "data",
    "event_type_mix": "data",
    "event_type_missing": "data",
    "score_distribution": "model",
    "catalog_coverage": "model",
    "recommended_popularity": "model",
    "quality_proxy": "quality",
}

DEFAULT_POLICY_PATH = Path(__file__).with_name("drift_policy.yaml")
#: Days of history kept in the state (streaks need only a few; the rest helps debugging).
HISTORY_DAYS = 90

Status = Literal["ok", "watch", "alert", "ongoing", "recovering", "closed"]


class PolicyError(ValueError):
    """A drift policy file or mapping that cannot be used, with every problem listed."""


class SignalRule(BaseModel):
    """How one signal counts. See ``drift_policy.yaml`` for the meaning of each key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    kind: Literal["soft", "hard"] = "soft"
    threshold: float | None = Field(None, gt=0, description="Drifted when value >= threshold.")
    below: float | None = Field(None, ge=0, description="Drifted when value <= below (low is bad).")
    min_samples: int = Field(0, ge=0, description="n_current and n_reference must both reach it.")
    min_reference_samples: int | None = Field(
        None, ge=0, description="For n_reference instead of min_samples (0 for signals with no reference sample)."
    )
    immediate_at: float | None = Field(None, ge=0, description="Soft only: fires at once at or beyond it.")
    why: str = ""

    @model_validator(mode="after")
    def _one_threshold(self) -> SignalRule:
        if (self.threshold is None) == (self.below is None):
            raise ValueError("set exactly one of `threshold` (drifted when value >= it) or `below` (value <= it)")
        if self.immediate_at is not None:
            if self.kind == "hard":
                raise ValueError("`immediate_at` applies to soft signals only: hard signals fire at once")
            if not self.reaches(self.immediate_at):
                raise ValueError(f"`immediate_at` {self.immediate_at} is not beyond the threshold {self.limit}")
        return self

    @property
    def direction(self) -> Literal["above", "below"]:
        return "above" if self.threshold is not None else "below"

    @property
    def limit(self) -> float:
        """The threshold value, whichever direction."""
        return float(self.threshold) if self.threshold is not None else float(self.below or 0.0)

    def reaches(self, value: float, limit: float | None = None) -> bool:
        """Whether ``value`` is at or beyond ``limit`` (default: the threshold)."""
        limit = self.limit if limit is None else limit
        return value >= limit if self.direction == "above" else value <= limit

    def ratio(self, value: float) -> float:
        """Effect relative to the threshold: value/threshold, or threshold/value for ``below``."""
        num, den = (value, self.limit) if self.direction == "above" else (self.limit, value)
        return num / den if den > 0 else (math.inf if num > 0 else 1.0)


class DriftPolicy(BaseModel):
    """The drift decision policy: one :class:`SignalRule` per signal and the global windows.

    Args:
        persistence_days (int): consecutive monitored days a soft signal must be drifted
            before it counts. Default: ``2``.
        cooldown_days (int): days after a triggered retrain during which no other retrain
            is triggered. Default: ``3``.
        clear_days (int): consecutive monitored days with no drifted signal that close an
            episode. Default: ``2``.
        digest (bool): also send a daily digest email. Default: ``False``.
        signals (dict[str, SignalRule]): rules by signal name (names of :data:`SIGNAL_GROUPS`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    persistence_days: int = Field(2, ge=1)
    cooldown_days: int = Field(3, ge=0)
    clear_days: int = Field(2, ge=1)
    digest: bool = False
    signals: dict[str, SignalRule] = Field(default_factory=dict)

    @field_validator("signals", mode="before")
    @classmethod
    def _known_names(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(SIGNAL_GROUPS))
            if unknown:
                raise ValueError(f"unknown signal(s) {unknown}; known: {sorted(SIGNAL_GROUPS)}")
        return value

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, *, source: str = "drift policy") -> DriftPolicy:
        """Validate a mapping (no defaults merged in), raising :class:`PolicyError`."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise PolicyError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            problems = [
                f"  {'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
                + (f" (got {err['input']!r})" if err["type"] not in ("missing", "value_error") else "")
                for err in exc.errors()
            ]
            raise PolicyError(f"{source}: invalid drift policy:\n" + "\n".join(problems)) from None

    @classmethod
    def load(cls, path: str | Path | None = None) -> DriftPolicy:
        """Read the packaged default policy, then the overrides of ``path`` if given.

        A policy file needs only the keys it changes: ``signals: {head_share: {threshold:
        0.08}}`` keeps every other setting of ``drift_policy.yaml``. A rule that switches
        between ``threshold`` and ``below`` drops the other one.

        Raises:
            PolicyError: the file is not a mapping, names an unknown signal or key, or has
                a bad kind, a negative threshold or window, etc. (every problem listed).
            FileNotFoundError: ``path`` does not exist.
        """
        data = _read_yaml(DEFAULT_POLICY_PATH)
        source = str(DEFAULT_POLICY_PATH)
        if path is not None:
            overrides = _read_yaml(Path(path))
            if not isinstance(overrides, Mapping):
                raise PolicyError(f"{path}: expected a mapping at the top level, got {type(overrides).__name__}")
            data, source = _merge(data, overrides), str(path)
        return cls.from_mapping(data, source=source)

    def rule(self, name: str) -> SignalRule | None:
        return self.signals.get(name)


def _read_yaml(path: Path) -> Any:
    import yaml

    with open(path, encoding="utf-8") as fh:
        try:
            return yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{path}: not valid YAML: {exc}") from None


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**base, **{k: v for k, v in overrides.items() if k != "signals"}}
    signals = {name: dict(rule or {}) for name, rule in (base.get("signals") or {}).items()}
    override_signals = overrides.get("signals") or {}
    if not isinstance(override_signals, Mapping):
        return merged | {"signals": override_signals}  # let validation report it
    for name, rule in override_signals.items():
        if not isinstance(rule, Mapping):
            signals[name] = rule
            continue
        current = signals.get(name, {})
        if "below" in rule:
            current.pop("threshold", None)
        if "threshold" in rule:
            current.pop("below", None)
        signals[name] = current | dict(rule)
    return merged | {"signals": signals}


# --- state ---------------------------------------------------------------------------


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


def load_state(path: str | Path) -> MonitorState:
    """Read the state file; a missing file is a fresh state."""
    import json

    path = Path(path)
    if not path.exists():
        return MonitorState()
    return MonitorState.from_dict(json.loads(path.read_text(encoding="utf-8")))


def save_state(path: str | Path, state: MonitorState) -> None:
    """Write the state file atomically (a reader never sees half of it)."""
    from graphrec.lake import atomic_write_json

    atomic_write_json(Path(path), state.to_dict())


# --- decision ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How one signal counted today; ``line`` is its explanation."""

    name: str
    group: str | None
    kind: str | None
    metric: str | None
    value: float | None
    threshold: float | None
    direction: str | None
    state: str  # fired | watch | ok | insufficient | skipped | disabled | unknown | missing
    streak: int
    ratio: float | None
    before: Any
    after: Any
    line: str

    @property
    def drifted(self) -> bool:
        return self.state in ("fired", "watch")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["ratio"] is not None and not math.isfinite(data["ratio"]):
            data["ratio"] = None
        return data


@dataclasses.dataclass(frozen=True)
class Decision:
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

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("ds", "cooldown_until", "episode_since"):
            data[key] = data[key].isoformat() if data[key] else None
        data["verdicts"] = [v.to_dict() for v in self.verdicts]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a decision from :meth:`to_dict` (for example after an XCom round trip)."""
        values = dict(data)
        for key in ("ds", "cooldown_until", "episode_since"):
            values[key] = _as_date(values[key]) if values.get(key) else None
        values["verdicts"] = [Verdict(**v) for v in values.get("verdicts") or []]
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})


def decide(
    policy: DriftPolicy, ds: dt.date | str, signals: Iterable[Mapping[str, Any]], state: MonitorState
) -> tuple[Decision, MonitorState]:
    """Decide what the day's signals mean, given the state before it. Pure: no I/O.

    Args:
        policy (DriftPolicy): thresholds, kinds and windows.
        ds (date | str): the monitored day.
        signals (list[dict]): the day's signals (``name``, ``group``, ``metric``,
            ``value``, ``before``, ``after``, ``n_current``, ``n_reference``, ``detail``).
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

    verdicts = _evaluate(policy, signals, history, past_days)
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
        counted = ", ".join(_compare(by_name[n]) for n in sorted(fired, key=lambda n: -(by_name[n].ratio or 0.0)))
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


def _evaluate(
    policy: DriftPolicy, signals: Iterable[Mapping[str, Any]], history: Mapping[str, Any], past_days: list[str]
) -> list[Verdict]:
    verdicts: list[Verdict] = []
    seen: set[str] = set()
    for signal in signals:
        name = str(signal["name"])
        if name in seen:
            raise ValueError(f"signal {name!r} reported twice")
        seen.add(name)
        verdicts.append(_verdict(policy, signal, history, past_days))
    for name, rule in policy.signals.items():
        if rule.enabled and name not in seen:
            verdicts.append(
                Verdict(
                    name=name,
                    group=SIGNAL_GROUPS[name],
                    kind=rule.kind,
                    metric=None,
                    value=None,
                    threshold=rule.limit,
                    direction=rule.direction,
                    state="missing",
                    streak=0,
                    ratio=None,
                    before=None,
                    after=None,
                    line=f"{name}: not reported by the monitor today",
                )
            )
    return verdicts


def _verdict(
    policy: DriftPolicy, signal: Mapping[str, Any], history: Mapping[str, Any], past_days: list[str]
) -> Verdict:
    name = str(signal["name"])
    value = signal.get("value")
    value = None if value is None or not math.isfinite(float(value)) else float(value)
    rule = policy.rule(name)
    group = signal.get("group") or SIGNAL_GROUPS.get(name)
    base: dict[str, Any] = dict(
        name=name,
        group=group,
        metric=signal.get("metric"),
        value=value,
        before=signal.get("before"),
        after=signal.get("after"),
    )
    if rule is None:
        return Verdict(
            **base,
            kind=None,
            threshold=None,
            direction=None,
            state="unknown",
            streak=0,
            ratio=None,
            line=f"{name}: not in the drift policy, ignored (value {_num(value)})",
        )
    base |= dict(kind=rule.kind, threshold=rule.limit, direction=rule.direction)
    head = f"{name} ({group}, {rule.kind})"

    def verdict(state: str, line: str, streak: int = 0) -> Verdict:
        ratio = rule.ratio(value) if value is not None else None
        return Verdict(**base, state=state, streak=streak, ratio=ratio, line=f"{head}: {line}")

    if not rule.enabled:
        return verdict("disabled", f"value {_num(value)}; disabled in the policy, not counted")
    n_current, n_reference = int(signal.get("n_current") or 0), int(signal.get("n_reference") or 0)
    min_reference = rule.min_samples if rule.min_reference_samples is None else rule.min_reference_samples
    if n_current < rule.min_samples or n_reference < min_reference:
        needs = (
            f"{rule.min_samples} each"
            if min_reference == rule.min_samples
            else (f"{rule.min_samples} current, {min_reference} reference")
        )
        return verdict(
            "insufficient",
            f"insufficient samples (current {n_current}, reference {n_reference}; needs {needs}), not counted",
        )
    if value is None:
        detail = f" ({signal['detail']})" if signal.get("detail") else ""
        return verdict("skipped", f"not computable today{detail}, skipped")
    compared = _compare_rule(rule, value)
    if not rule.reaches(value):
        return verdict("ok", f"{compared}: within range")
    if rule.kind == "hard":
        return verdict("fired", f"{compared}: FIRED (hard signals count on the first drifted day)", 1)
    streak = 1
    for day in past_days:
        record = history[day]
        if name not in record.get("observed", ()):
            continue
        if name not in record.get("drifted", ()):
            break
        streak += 1
    needed = policy.persistence_days
    if rule.immediate_at is not None and rule.reaches(value, rule.immediate_at):
        return verdict("fired", f"{compared}, beyond immediate_at {_num(rule.immediate_at)}: FIRED at once", streak)
    if streak >= needed:
        return verdict("fired", f"{compared}, drifted {streak} monitored days in a row (needs {needed}): FIRED", streak)
    return verdict(
        "watch", f"{compared}, drifted {streak} of {needed} monitored days needed: WATCH, not counted yet", streak
    )


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


def _compare_rule(rule: SignalRule, value: float) -> str:
    if rule.direction == "above":
        op = ">=" if value >= rule.limit else "<"
        return f"{_num(value)} {op} threshold {_num(rule.limit)}"
    op = "<=" if value <= rule.limit else ">"
    return f"{_num(value)} {op} threshold {_num(rule.limit)} (low is bad)"


def _compare(verdict: Verdict) -> str:
    op = ">=" if verdict.direction == "above" else "<="
    return f"{verdict.name} {_num(verdict.value)} {op} {_num(verdict.threshold)}"


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


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
