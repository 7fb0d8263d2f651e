"""Data drift of one day's interactions against the days before it, with Evidently.

Raw interaction columns (ids and timestamps) do not drift in a way a distribution test
can see, so each interaction is first described by a few features that expose the
kinds of drift a recommender cares about (:func:`interaction_features`):

============================  ============  ==============================================
column                        type          drifts when...
============================  ============  ==============================================
``category``                  categorical   demand moves between item categories
``item_popularity``           numerical     users turn to items that were rare (or absent)
                                            in the reference period: ``log1p(count)``
``is_new_item``               categorical   a wave of unseen items arrives (cold start)
``event_type``                categorical   the funnel changes (views vs clicks vs buys)
``hour``                      numerical     traffic moves through the day (UTC)
``user_daily_events``         numerical     users become more or less active
============================  ============  ==============================================

:func:`check_drift` compares the features of day ``ds`` (the *current* data) with the
``reference_days`` curated days before it (the *reference*: roughly what the serving
model was trained on) in an Evidently ``DataDriftPreset`` report.

Methods are fixed rather than left to Evidently's automatic choice, whose statistical
tests switch from p-values to distances with the sample size (so the same shift would be
judged differently on a quiet and a busy day): the normed Wasserstein distance for
numerical columns and the Jensen-Shannon distance for categorical columns, each flagging
a column at a score of ``COLUMN_DRIFT_THRESHOLD`` or more. The day counts as drifted when
the share of drifted columns reaches ``settings.drift_share_threshold`` (Evidently's
``DriftedColumnsCount`` share; Evidently 0.7 has no dataset-level drift flag).

Calibration on the default simulator (``SimulationConfig()``: 10 days, drift from day 8)
with 7 reference days, seeds 1..8 and 42: on days 2..7 the scores stay below 0.1 except
``user_daily_events`` (up to ~0.16 on 3 of 54 days: a few heavy users dominate its
row-weighted distribution), so at most 1/6 of the columns drift; on day 8 ``category``
(0.21..0.30), ``is_new_item`` (0.30..0.39) and ``item_popularity`` (0.69..1.30) drift, a
share of exactly 3/6 = 0.5. The share moves in steps of 1/6, so any threshold in
(1/3, 1/2] means "at least three of the six columns drifted" and decides the same.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from graphrec import contract, lake
from graphrec.settings import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    from evidently.core.report import Snapshot

log = logging.getLogger(__name__)

# Feature columns -----------------------------------------------------------------
CATEGORY = contract.CATEGORY
ITEM_POPULARITY = "item_popularity"
IS_NEW_ITEM = "is_new_item"
EVENT_TYPE = contract.EVENT_TYPE
HOUR = "hour"
USER_DAILY_EVENTS = "user_daily_events"

CATEGORICAL_FEATURES = (CATEGORY, IS_NEW_ITEM, EVENT_TYPE)
NUMERICAL_FEATURES = (ITEM_POPULARITY, HOUR, USER_DAILY_EVENTS)
FEATURE_COLUMNS = (CATEGORY, ITEM_POPULARITY, IS_NEW_ITEM, EVENT_TYPE, HOUR, USER_DAILY_EVENTS)

UNKNOWN_CATEGORY = "unknown"
NEW, KNOWN = "yes", "no"

# Drift methods (Evidently stat-test names) and the per-column threshold -------------
NUMERICAL_METHOD = "wasserstein"  # Wasserstein distance / reference std ("normed")
CATEGORICAL_METHOD = "jensenshannon"  # Jensen-Shannon distance of the category frequencies
COLUMN_DRIFT_THRESHOLD = 0.1  # both are distances: a score >= threshold is drift

# Files written per day under settings.reports_dir / "drift" / "ds=YYYY-MM-DD".
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
SUMMARY_JSON = "summary.json"


# Pure transforms -------------------------------------------------------------------
def item_counts(interactions: pd.DataFrame) -> pd.Series:
    """Number of interactions per item.

    Args:
        interactions (pd.DataFrame): interactions with an ``item_id`` column.

    Returns:
        pd.Series: counts indexed by ``item_id`` (empty for no interactions).
    """
    if interactions.empty:
        return pd.Series(dtype="int64", name="count")
    return interactions[contract.ITEM_ID].value_counts()


def interaction_features(
    interactions: pd.DataFrame,
    catalog: pd.DataFrame,
    reference_item_counts: pd.Series,
) -> pd.DataFrame:
    """Describe each interaction by features whose distributions reveal drift.

    Args:
        interactions (pd.DataFrame): rows in the interactions contract (``user_id``,
            ``item_id``, ``event_ts`` in UTC, ``event_type``, ...), one or more days.
        catalog (pd.DataFrame): items with ``item_id`` and ``category`` (for example
            :func:`graphrec.lake.read_catalog`). Items missing from it get the category
            ``"unknown"``.
        reference_item_counts (pd.Series): interactions per ``item_id`` in the reference
            period (:func:`item_counts`). Items absent from it are *new*.

    Returns:
        pd.DataFrame: one row per interaction, in input order, with the columns of
        ``FEATURE_COLUMNS``: ``category`` (str), ``item_popularity`` (float,
        ``log1p`` of the reference count, 0 for new items), ``is_new_item`` (``"yes"`` or
        ``"no"``), ``event_type`` (str), ``hour`` (int, UTC hour of ``event_ts``) and
        ``user_daily_events`` (int, the user's interactions on that UTC day).
    """
    frame = interactions.reset_index(drop=True)
    items = frame[contract.ITEM_ID]

    if catalog.empty or contract.CATEGORY not in catalog:
        category = pd.Series(UNKNOWN_CATEGORY, index=frame.index)
    else:
        by_item = catalog.drop_duplicates(contract.ITEM_ID, keep="last").set_index(contract.ITEM_ID)
        category = items.map(by_item[contract.CATEGORY]).fillna(UNKNOWN_CATEGORY).astype(str)

    counts = items.map(reference_item_counts).fillna(0).to_numpy(dtype="float64")

    event_ts = pd.to_datetime(frame[contract.EVENT_TS], utc=True)
    day = event_ts.dt.floor("D")
    user_daily_events = frame.groupby([frame[contract.USER_ID], day])[contract.USER_ID].transform("size")

    return pd.DataFrame(
        {
            CATEGORY: category.to_numpy(dtype=object),
            ITEM_POPULARITY: np.log1p(counts),
            IS_NEW_ITEM: np.where(counts == 0, NEW, KNOWN).astype(object),
            EVENT_TYPE: frame[contract.EVENT_TYPE].astype(str).to_numpy(dtype=object),
            HOUR: event_ts.dt.hour.to_numpy(dtype="int64"),
            USER_DAILY_EVENTS: user_daily_events.to_numpy(dtype="int64"),
        }
    )


def summarize_report(report: dict[str, Any]) -> dict[str, Any]:
    """Extract the drift decision inputs from an Evidently snapshot dictionary.

    ``Snapshot.dict()`` holds ``metrics`` (each with ``config.type``, ``config`` and
    ``value``) and, with ``include_tests=True``, ``tests``. The preset yields one
    ``DriftedColumnsCount`` metric (``value = {"count", "share"}``) and one
    ``ValueDrift`` metric per column (``value`` = the score). Whether a column drifted
    is read from its ``ValueDrift`` test (status ``FAIL``), which is Evidently's own
    comparison of the score with the method's threshold.

    Args:
        report (dict): ``Snapshot.dict()`` of a report run with ``include_tests=True``.

    Returns:
        dict: ``share`` (float), ``count`` (int), ``columns`` (``{column: {"score",
        "method", "threshold", "drifted"}}``) and ``drifted_columns`` (sorted by score,
        highest first).

    Raises:
        ValueError: if the report lacks the drift-count metric or a column's drift test.
    """
    share = count = None
    columns: dict[str, dict[str, Any]] = {}
    for metric in report.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            count = int(metric["value"]["count"])
        elif kind.endswith(":ValueDrift"):
            columns[config["column"]] = {
                "score": float(metric["value"]),
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "drifted": None,
            }
    if share is None:
        raise ValueError("the report has no DriftedColumnsCount metric")

    for test in report.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if str(params.get("type", "")).endswith(":ValueDrift") and params.get("column") in columns:
            columns[params["column"]]["drifted"] = test["status"] == "FAIL"
    missing = sorted(name for name, info in columns.items() if info["drifted"] is None)
    if missing:
        raise ValueError(f"the report has no drift test for columns {missing} (run it with include_tests=True)")

    drifted = sorted((name for name, info in columns.items() if info["drifted"]), key=lambda c: -columns[c]["score"])
    if len(drifted) != count:
        log.warning("Evidently counted %d drifted columns but its column tests flag %d", count, len(drifted))
    return {"share": share, "count": count, "columns": columns, "drifted_columns": drifted}


# Evidently -------------------------------------------------------------------------
def run_drift_report(current: pd.DataFrame, reference: pd.DataFrame, *, drift_share: float) -> Snapshot:
    """Run Evidently's data drift preset on feature frames with fixed types and methods.

    Args:
        current (pd.DataFrame): features of the day under test (:func:`interaction_features`).
        reference (pd.DataFrame): features of the reference period.
        drift_share (float): share of drifted columns at which the dataset counts as
            drifted; recorded in the report and its ``DriftedColumnsCount`` test.

    Returns:
        evidently.core.report.Snapshot: the computed report (``.dict()``, ``.json()``,
        ``.get_html_str(as_iframe=False)``).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=list(NUMERICAL_FEATURES),
        categorical_columns=list(CATEGORICAL_FEATURES),
    )
    preset = DataDriftPreset(
        columns=list(FEATURE_COLUMNS),
        drift_share=drift_share,
        num_method=NUMERICAL_METHOD,
        cat_method=CATEGORICAL_METHOD,
        num_threshold=COLUMN_DRIFT_THRESHOLD,
        cat_threshold=COLUMN_DRIFT_THRESHOLD,
    )
    report = Report([preset], include_tests=True)
    return report.run(
        current_data=Dataset.from_pandas(current[list(FEATURE_COLUMNS)], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[list(FEATURE_COLUMNS)], data_definition=definition),
    )


# I/O adapter -----------------------------------------------------------------------
def reference_window(settings: Settings, ds: dt.date, reference_days: int) -> list[dt.date]:
    """Curated days in ``[ds - reference_days, ds)``, oldest first (gaps stay gaps)."""
    start = ds - dt.timedelta(days=reference_days)
    return [day for day in lake.list_partitions(settings.curated_dir) if start <= day < ds]


def report_dir(settings: Settings, ds: str | dt.date) -> Path:
    """Directory of a day's drift report: ``reports/drift/ds=YYYY-MM-DD``."""
    return settings.reports_dir / "drift" / lake.partition_name(lake.parse_ds(ds))


def check_drift(settings: Settings, ds: str | dt.date, *, reference_days: int = 7) -> dict[str, Any]:
    """Check one curated day for data drift against the days before it.

    Reads the curated interactions of ``ds`` and of the curated days in
    ``[ds - reference_days, ds)``, computes :func:`interaction_features` for both (item
    popularity and novelty relative to the reference), runs :func:`run_drift_report` and
    writes, atomically, under ``settings.reports_dir / "drift" / "ds=YYYY-MM-DD"``:
    ``report.html`` (Evidently's interactive report), ``report.json`` (its metrics and
    tests) and ``summary.json`` (the returned dictionary). Reruns overwrite them.

    Without current data or without any reference day (the first day of the lake) there
    is nothing to compare: the result says why in ``reason``, ``drifted`` is False and
    only ``summary.json`` is written (stale report files of an earlier run are removed).

    Args:
        settings (Settings): installation settings (``curated_dir``, ``reports_dir``,
            ``drift_share_threshold``).
        ds (str | datetime.date): the day to check, ``YYYY-MM-DD`` or a date.
        reference_days (int): length of the reference window in days. Default: 7.

    Returns:
        dict: JSON-able result with ``ds``, ``drifted`` (share >= threshold), ``share``,
        ``threshold``, ``drifted_columns`` (highest score first), ``column_scores``
        (``{column: score}``), ``column_methods``, ``column_thresholds``, ``html``,
        ``json`` and ``summary`` (paths as strings, ``html``/``json`` None when skipped),
        ``reference_days`` (ISO dates), ``rows_current``, ``rows_reference`` and
        ``reason`` (None when a report was made).
    """
    if reference_days < 1:
        raise ValueError(f"reference_days must be at least 1, got {reference_days}")
    day = lake.parse_ds(ds)
    threshold = float(settings.drift_share_threshold)
    out_dir = report_dir(settings, day)
    ref_days = reference_window(settings, day, reference_days)

    current = lake.read_curated(settings.curated_dir, [day])
    reference = lake.read_curated(settings.curated_dir, ref_days)
    result: dict[str, Any] = {
        "ds": day.isoformat(),
        "drifted": False,
        "share": None,
        "threshold": threshold,
        "drifted_columns": [],
        "column_scores": {},
        "column_methods": {},
        "column_thresholds": {},
        "html": None,
        "json": None,
        "summary": str(out_dir / SUMMARY_JSON),
        "reference_days": [d.isoformat() for d in ref_days],
        "rows_current": int(len(current)),
        "rows_reference": int(len(reference)),
        "reason": None,
    }

    if current.empty or reference.empty:
        if current.empty:
            result["reason"] = f"no curated interactions for {day} (partition missing or quarantined)"
        else:
            start = day - dt.timedelta(days=reference_days)
            result["reason"] = (
                f"no curated reference data in [{start}, {day}): nothing to compare against "
                "(first day of the lake?)"
            )
        for stale in (REPORT_HTML, REPORT_JSON):
            (out_dir / stale).unlink(missing_ok=True)
        lake.atomic_write_json(out_dir / SUMMARY_JSON, result)
        log.info("drift check for %s skipped: %s", day, result["reason"])
        return result

    catalog = lake.read_catalog(settings.curated_dir, until=day)
    counts = item_counts(reference)
    snapshot = run_drift_report(
        interaction_features(current, catalog, counts),
        interaction_features(reference, catalog, counts),
        drift_share=threshold,
    )
    summary = summarize_report(snapshot.dict())

    html_path, json_path = out_dir / REPORT_HTML, out_dir / REPORT_JSON
    lake.atomic_write_bytes(html_path, snapshot.get_html_str(as_iframe=False).encode("utf-8"))
    lake.atomic_write_bytes(json_path, snapshot.json().encode("utf-8"))

    columns = summary["columns"]
    result.update(
        drifted=bool(summary["share"] >= threshold),
        share=summary["share"],
        drifted_columns=summary["drifted_columns"],
        column_scores={name: info["score"] for name, info in columns.items()},
        column_methods={name: info["method"] for name, info in columns.items()},
        column_thresholds={name: info["threshold"] for name, info in columns.items()},
        html=str(html_path),
        json=str(json_path),
    )
    lake.atomic_write_json(out_dir / SUMMARY_JSON, result)
    log.info(
        "drift check for %s: share %.2f (threshold %.2f), drifted columns %s",
        day,
        result["share"],
        threshold,
        result["drifted_columns"],
    )
    return result
