"""The daily drift monitor: signals, Evidently reports, the policy's decision, its state.

:func:`monitor_day` is what the nightly DAG runs after publication. For day ``ds`` it

1. finds the serving champion (the published bundle ``CURRENT`` points to) and the
   *reference window* it was trained on (its manifest's ``data_window``, cut before
   ``ds``);
2. computes the recommender's drift signals (:func:`monitoring.signals.compute_signals`):
   data signals of the day's curated interactions against the reference window, model
   signals of what the champion serves today's active users against what it serves the
   reference window's users, and the quality proxy (yesterday's served top-k against
   today's interactions, relative to the champion's offline Recall@k);
3. writes the day's Evidently reports (HTML + JSON per signal group), the signals, the
   served recommendations (tomorrow's quality proxy reads them) and the decision under
   ``reports/drift/ds=YYYY-MM-DD/``;
4. lets the policy (:mod:`monitoring.policy`, ``monitoring/drift_policy.yaml`` or
   ``GRAPHREC_DRIFT__POLICY``) decide with the monitor's state (``reports/drift/state.json``:
   per-day history, the open episode, the last retrain trigger) and saves the new state.

Re-running a day replaces its entry in the state, so a retried task does not count a day
twice. The result is a :class:`MonitorResult`; the DAG hands it to the alert and retrain
tasks through XCom (:meth:`~graphrec.handoff.Handoff.to_xcom`), and the day's
``summary.json`` holds the same form.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path

import pandas as pd

from graphrec import lake
from graphrec.handoff import Handoff
from graphrec.settings import Settings
from monitoring.offline_serving import ServingModel
from monitoring.policy import Decision, decide
from monitoring.policy_files import load_policy, load_state, save_state
from monitoring.policy_rules import DriftPolicy
from monitoring.report_files import SERVED_FILE, ReportHeader, write_signal_report
from monitoring.signal_values import Signal
from monitoring.signals import compute_signals
from serving.bundle import Bundle, load_bundle
from serving.layout import BundleError, read_pointer

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
DECISION_JSON = "decision.json"
SUMMARY_JSON = "summary.json"


@dataclasses.dataclass(frozen=True)
class MonitorResult(Handoff):
    """One monitored day: what was compared, the signals, the decision and the reports.

    Args:
        ds (date): the monitored day.
        status (str): the decision's status, or ``"skipped"`` when nothing was judged.
        decision (Decision | None): the policy's decision (``None`` when skipped).
        signals (list[Signal]): the day's signals (empty when skipped).
        reference_days (list[date]): the curated days compared with.
        rows_current (int): the day's interactions.
        rows_reference (int): the reference days' interactions.
        report_dir (Path): ``reports/drift/ds=YYYY-MM-DD``.
        reports (dict[str, Path]): the files written, by name (``data.html``,
            ``signals.json``...).
        html (Path | None): the main HTML report (the first one written).
        reason (str | None): why nothing was judged, else ``None``.
    """

    ds: dt.date
    status: str
    decision: Decision | None
    signals: list[Signal]
    reference_days: list[dt.date]
    rows_current: int
    rows_reference: int
    report_dir: Path
    reports: dict[str, Path]
    html: Path | None
    reason: str | None


@dataclasses.dataclass(frozen=True)
class Champion:
    """The serving champion as the monitor needs it.

    Args:
        bundle (Bundle): the published version ``CURRENT`` points to.
        window (tuple[date, date]): its training window (inclusive).
        offline_recall (float | None): its Recall@20 on its holdout.
    """

    bundle: Bundle
    window: tuple[dt.date, dt.date]
    offline_recall: float | None


def drift_dir(settings: Settings) -> Path:
    """``reports/drift``: one ``ds=YYYY-MM-DD`` directory per monitored day plus ``state.json``."""
    return settings.reports_dir / "drift"


def day_dir(settings: Settings, ds: dt.date) -> Path:
    """``reports/drift/ds=YYYY-MM-DD``: the reports, signals, served lists and decision of ``ds``."""
    return drift_dir(settings) / lake.partition_name(ds)


def reference_days(settings: Settings, ds: dt.date, window: tuple[dt.date, dt.date]) -> list[dt.date]:
    """Curated days of ``window`` (inclusive) strictly before ``ds``, oldest first."""
    start, end = window
    end = min(end, ds - dt.timedelta(days=1))
    return [day for day in lake.list_partitions(settings.curated_dir) if start <= day <= end]


def champion_context(settings: Settings) -> Champion | None:
    """The serving champion, or ``None`` when nothing usable is published."""
    try:
        version = read_pointer(settings.indexes_dir)
        if version is None:
            return None
        bundle = load_bundle(settings.indexes_dir / version, verify=False)
    except BundleError as exc:
        log.warning("drift monitor: no usable published champion (%s); model signals skipped", exc)
        return None
    window = bundle.manifest.get("data_window") or [bundle.manifest["ds"], bundle.manifest["ds"]]
    recall = (bundle.manifest.get("metrics") or {}).get("recall_at_20")
    return Champion(
        bundle=bundle,
        window=(lake.parse_ds(window[0]), lake.parse_ds(window[1])),
        offline_recall=None if recall is None else float(recall),
    )


def monitor_day(
    settings: Settings,
    ds: str | dt.date,
    *,
    policy: DriftPolicy | None = None,
    model: ServingModel | None = None,
    window: tuple[dt.date, dt.date] | None = None,
    offline_recall: float | None = None,
) -> MonitorResult:
    """Monitor one curated day: signals, reports, decision, state (see the module docs).

    Args:
        settings (Settings): the installation.
        ds (str | datetime.date): the day to monitor.
        policy (DriftPolicy | None): the decision policy; default
            ``load_policy(settings.drift.policy)``.
        model (ServingModel | None): the champion to judge; default the published one
            (:func:`champion_context`), whose training window and offline recall are used
            unless ``window`` / ``offline_recall`` are given.
        window (tuple[date, date] | None): the reference window (inclusive); default the
            champion's training window, or the ``settings.training.window_days`` days before ``ds``
            when nothing is published.
        offline_recall (float | None): the champion's offline Recall@k.

    Returns:
        MonitorResult: the day's result; also written to the day's ``summary.json``.
    """
    day = lake.parse_ds(ds)
    policy_file = settings.drift.policy if policy is None else None  # the reports' header names the file applied
    policy = policy or load_policy(settings.drift.policy)
    if model is None:
        champion = champion_context(settings)
        if champion is not None:
            model = ServingModel.from_bundle(champion.bundle)
            window = window or champion.window
            offline_recall = champion.offline_recall if offline_recall is None else offline_recall
    if window is None:
        window = (day - dt.timedelta(days=settings.training.window_days), day - dt.timedelta(days=1))
    ref_days = reference_days(settings, day, window)
    out_dir = day_dir(settings, day)
    current = lake.read_curated(settings.curated_dir, [day])
    reference = lake.read_curated(settings.curated_dir, ref_days)
    base = MonitorResult(
        ds=day,
        status="skipped",
        decision=None,
        signals=[],
        reference_days=ref_days,
        rows_current=int(len(current)),
        rows_reference=int(len(reference)),
        report_dir=out_dir,
        reports={},
        html=None,
        reason=None,
    )
    if current.empty or reference.empty:
        result = dataclasses.replace(
            base,
            reason=f"no curated interactions for {day}"
            if current.empty
            else f"no curated reference days in {window[0]}..{min(window[1], day - dt.timedelta(days=1))}",
        )
        lake.atomic_write_json(out_dir / SUMMARY_JSON, result.to_xcom())
        log.info("drift monitor for %s skipped: %s", day, result.reason)
        return result

    yesterday = day_dir(settings, day - dt.timedelta(days=1)) / SERVED_FILE
    served_yesterday = _read_parquet(yesterday)
    report = compute_signals(
        current,
        reference,
        lake.read_catalog(settings.curated_dir, until=day),
        model=model,
        served_yesterday=served_yesterday,
        offline_recall=offline_recall,
        k=20,
    )
    signals = list(report.signals.values())

    state_path = drift_dir(settings) / STATE_FILE
    decision, state = decide(policy, day, signals, load_state(state_path))
    header = ReportHeader(decision, policy, ref_days, window=window, policy_file=policy_file)
    paths = write_signal_report(report, out_dir, header)  # the reports open with the decision and why
    save_state(state_path, state)
    lake.atomic_write_json(out_dir / DECISION_JSON, decision.to_xcom())
    html = next((path for path in paths.values() if path.suffix == ".html"), None)
    result = dataclasses.replace(
        base, status=decision.status, decision=decision, signals=signals, reports=paths, html=html
    )
    lake.atomic_write_json(out_dir / SUMMARY_JSON, result.to_xcom())
    log.info("drift monitor for %s: %s", day, decision.status)
    for line in decision.explanation:
        log.info("  %s", line)
    return result


def _read_parquet(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None
