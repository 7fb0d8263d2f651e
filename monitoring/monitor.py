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
   ``GRAPHREC_DRIFT_POLICY``) decide with the monitor's state (``reports/drift/state.json``:
   per-day history, the open episode, the last retrain trigger) and saves the new state.

Re-running a day replaces its entry in the state, so a retried task does not count a day
twice. The returned dictionary is JSON-able (it travels through XCom).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from graphrec import lake
from graphrec.settings import Settings

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
DECISION_JSON = "decision.json"
SUMMARY_JSON = "summary.json"
SERVED_FILE = "served.parquet"


def drift_dir(settings: Settings) -> Path:
    """``reports/drift``: one ``ds=YYYY-MM-DD`` directory per monitored day plus ``state.json``."""
    return settings.reports_dir / "drift"


def day_dir(settings: Settings, ds: dt.date) -> Path:
    return drift_dir(settings) / lake.partition_name(ds)


def reference_days(settings: Settings, ds: dt.date, window: tuple[dt.date, dt.date]) -> list[dt.date]:
    """Curated days of ``window`` (inclusive) strictly before ``ds``, oldest first."""
    start, end = window
    end = min(end, ds - dt.timedelta(days=1))
    return [day for day in lake.list_partitions(settings.curated_dir) if start <= day <= end]


def champion_context(settings: Settings) -> dict[str, Any] | None:
    """The serving champion as the monitor needs it, or ``None`` when nothing is published.

    Returns:
        dict: ``bundle`` (:class:`serving.bundle.Bundle`), ``window`` (its training
        window as two dates), ``offline_recall`` (its Recall@20 on its holdout, or None).
    """
    from serving.bundle import BundleError, load_bundle, read_pointer

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
    return {
        "bundle": bundle,
        "window": (lake.parse_ds(window[0]), lake.parse_ds(window[1])),
        "offline_recall": None if recall is None else float(recall),
    }


def monitor_day(
    settings: Settings,
    ds: str | dt.date,
    *,
    policy: Any | None = None,
    model: Any | None = None,
    window: tuple[dt.date, dt.date] | None = None,
    offline_recall: float | None = None,
) -> dict[str, Any]:
    """Monitor one curated day: signals, reports, decision, state (see the module docs).

    Args:
        settings (Settings): the installation.
        ds (str | datetime.date): the day to monitor.
        policy (DriftPolicy | None): the decision policy; default
            ``DriftPolicy.load(settings.drift_policy)``.
        model (ServingModel | None): the champion to judge; default the published one
            (:func:`champion_context`), whose training window and offline recall are used
            unless ``window`` / ``offline_recall`` are given.
        window (tuple[date, date] | None): the reference window (inclusive); default the
            champion's training window, or the ``settings.window_days`` days before ``ds``
            when nothing is published.
        offline_recall (float | None): the champion's offline Recall@k.

    Returns:
        dict: ``ds``, ``status`` (the decision's), ``decision`` (``Decision.to_dict()``),
        ``signals`` (list of signal dicts), ``reference_days``, ``rows_current``,
        ``rows_reference``, ``report_dir``, ``reports`` (name -> path), ``html`` (the
        main HTML report) and ``reason`` (why nothing was judged, else None).
    """
    from monitoring.policy import DriftPolicy, decide, load_state, save_state
    from monitoring.signals import ServingModel, compute_signals, write_signal_report

    day = lake.parse_ds(ds)
    policy = policy or DriftPolicy.load(settings.drift_policy)
    if model is None:
        champion = champion_context(settings)
        if champion is not None:
            model = ServingModel.from_bundle(champion["bundle"])
            window = window or champion["window"]
            offline_recall = champion["offline_recall"] if offline_recall is None else offline_recall
    if window is None:
        window = (day - dt.timedelta(days=settings.window_days), day - dt.timedelta(days=1))
    ref_days = reference_days(settings, day, window)
    out_dir = day_dir(settings, day)
    current = lake.read_curated(settings.curated_dir, [day])
    reference = lake.read_curated(settings.curated_dir, ref_days)
    result: dict[str, Any] = {
        "ds": day.isoformat(),
        "status": "skipped",
        "decision": None,
        "signals": [],
        "reference_days": [d.isoformat() for d in ref_days],
        "rows_current": int(len(current)),
        "rows_reference": int(len(reference)),
        "report_dir": str(out_dir),
        "reports": {},
        "html": None,
        "reason": None,
    }
    if current.empty or reference.empty:
        result["reason"] = (
            f"no curated interactions for {day}"
            if current.empty
            else f"no curated reference days in {window[0]}..{min(window[1], day - dt.timedelta(days=1))}"
        )
        lake.atomic_write_json(out_dir / SUMMARY_JSON, result)
        log.info("drift monitor for %s skipped: %s", day, result["reason"])
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
    paths = write_signal_report(report, out_dir)
    signals = [s.to_dict() for s in report.signals.values()]

    state_path = drift_dir(settings) / STATE_FILE
    decision, state = decide(policy, day, signals, load_state(state_path))
    save_state(state_path, state)
    decision_dict = decision.to_dict()
    lake.atomic_write_json(out_dir / DECISION_JSON, decision_dict)
    html = next((p for name, p in paths.items() if str(p).endswith(".html")), None)
    result.update(status=decision_dict["status"], decision=decision_dict, signals=signals, reports=paths, html=html)
    lake.atomic_write_json(out_dir / SUMMARY_JSON, result)
    log.info("drift monitor for %s: %s", day, decision_dict["status"])
    for line in decision_dict.get("explanation", []):
        log.info("  %s", line)
    return result


def _read_parquet(path: Path):
    if not path.exists():
        return None
    import pandas as pd

    return pd.read_parquet(path)
