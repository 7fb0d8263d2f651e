"""Run the contract's suites with Great Expectations 1.x and write Data Docs.

The GX 1.x object chain is: a data context → a pandas data source → a dataframe asset →
a whole-dataframe batch definition; an ``ExpectationSuite`` and that batch definition form
a ``ValidationDefinition``; a ``Checkpoint`` runs it with ``batch_parameters={"dataframe":
frame}`` and its ``UpdateDataDocsAction`` renders the result as an HTML page.

Data Docs pages take their layout and status icons from CDN stylesheets; without internet
they are unstyled and an expectation's pass/fail icon is empty. Every page therefore also
inlines :data:`OFFLINE_STYLES` (GX's ``data_docs_custom_styles.css``), which writes
"passed" or "failed" beside each icon in colour. ``reports/validation/index.html``
(:mod:`validation.report_page`) is the overview that needs no internet at all.

Each call builds its own ephemeral context configured in code: suites and definitions in
memory, GX's progress bars off (they would flood Airflow task logs). With a ``docs_dir``
the validation results are kept as JSON under ``docs_dir/../gx_results`` and the Data Docs
site under ``docs_dir``, so its ``index.html`` lists every run so far; the page of one run
is ``validations/<suite>/<run name>/<run time>/<batch>.html``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from graphrec.lake import atomic_write_bytes
from validation.failures import failures_from_result
from validation.suite import build_interactions_suite

log = logging.getLogger(__name__)

# SUMMARY gives counts and a few unexpected values without materializing every row index;
# COMPLETE (used for source files) also gives the index of every unexpected row.
SUMMARY = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
COMPLETE = {"result_format": "COMPLETE"}

#: GX inlines a ``data_docs_custom_styles.css`` found in a page view's ``custom_styles_directory``
#: into every page it renders. Font Awesome, which draws the status icons, comes from a CDN.
OFFLINE_STYLES = """/* graphrec: each expectation's status in words, also without the CDN stylesheets */
.fa-check-circle.text-success::after { content: " passed"; }
.fa-times.text-danger::after { content: " failed"; }
i.fas::after { font-family: system-ui, sans-serif; font-style: normal; font-weight: 600; }
.text-success { color: #116329; }
.text-danger { color: #a40e26; }
"""
STYLES_FILE = "data_docs_custom_styles.css"


def _styles_dir(docs_dir: Path) -> Path:
    """A directory holding :data:`OFFLINE_STYLES` as GX's custom styles file (rewritten when it differs)."""
    styles_dir = docs_dir.parent / "data_docs_styles"
    path = styles_dir / STYLES_FILE
    if not path.is_file() or path.read_text() != OFFLINE_STYLES:
        atomic_write_bytes(path, OFFLINE_STYLES.encode())
    return styles_dir


@dataclasses.dataclass
class SuiteRun:
    """One suite's result and, when Data Docs are on, its HTML page."""

    suite: str
    result: Any
    page: Path | None = None


def _context(docs_dir: Path | None):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    if docs_dir is not None:
        results_dir = docs_dir.parent / "gx_results"
        config.stores["validation_results_store"] = {
            "class_name": "ValidationResultsStore",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(results_dir)},
        }
        # Set per section: GX looks for custom styles only under a context's plugins
        # directory, which it also appends to sys.path on every context.
        styles = {"custom_styles_directory": str(_styles_dir(docs_dir))}
        config.data_docs_sites = {
            "graphrec": {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "site_section_builders": {"expectations": styles, "validations": styles},
            }
        }
    return gx.get_context(mode="ephemeral", project_config=config)


def _page(docs_dir: Path, suite: str, run_name: str, run_time: dt.datetime) -> Path | None:
    """The Data Docs page GX rendered for one suite in one run (GX does not return it)."""
    stamp = run_time.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    pages = sorted((docs_dir / "validations" / suite / run_name / stamp).glob("*.html"))
    return pages[0] if pages else None


def run_suites(
    batches: list[tuple[Any, pd.DataFrame]],
    *,
    run_name: str,
    run_time: dt.datetime,
    docs_dir: Path | None = None,
    result_format: dict[str, Any] | None = None,
) -> list[SuiteRun]:
    """Validate each ``(suite, frame)`` pair in one fresh GX context.

    Args:
        batches: the suites (unsaved ``gx.ExpectationSuite`` values, not modified) and the
            frames they check.
        run_name: names the run in Data Docs, e.g. ``ds=2025-01-01``.
        run_time: when the run happened (UTC); part of each page's path.
        docs_dir: the Data Docs site; ``None`` renders nothing.
        result_format: GX result format (default :data:`SUMMARY`).

    Returns:
        list[SuiteRun]: in the order of ``batches``.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    context = _context(docs_dir)
    source = context.data_sources.add_pandas("graphrec")
    runs = []
    for suite, frame in batches:
        batch_definition = source.add_dataframe_asset(suite.name).add_batch_definition_whole_dataframe("partition")
        # Add a copy: adding assigns ids, and the caller's suite stays a pure value.
        stored = context.suites.add(
            gx.ExpectationSuite(name=suite.name, expectations=suite.expectation_configurations, meta=dict(suite.meta))
        )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"validate_{suite.name}", data=batch_definition, suite=stored)
        )
        actions = [gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")] if docs_dir is not None else []
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"checkpoint_{suite.name}",
                validation_definitions=[definition],
                actions=actions,
                result_format=result_format or SUMMARY,
            )
        )
        outcome = checkpoint.run(
            batch_parameters={"dataframe": frame},
            run_id=RunIdentifier(run_name=run_name, run_time=run_time),
        )
        (result,) = outcome.run_results.values()
        result = result["validation_result"] if isinstance(result, dict) else result
        runs.append(
            SuiteRun(
                suite=suite.name,
                result=result,
                page=_page(docs_dir, suite.name, run_name, run_time) if docs_dir else None,
            )
        )
    return runs


def validate_interactions(
    frame: pd.DataFrame,
    ds: dt.date,
    now: dt.datetime | None = None,
    config: Any = None,
) -> list[dict[str, Any]]:
    """Check one day's interactions against the file- and row-level suite, without Data Docs.

    Args:
        frame: the interactions of partition ``ds``.
        ds: the partition day.
        now: validation time for ``timestamp_in_future`` (``None`` leaves that rule out).
        config: a :class:`graphrec.settings.ValidationSettings` (defaults when ``None``).

    Returns:
        list[dict]: failure records (see :mod:`validation.failures`); empty means valid.
    """

    run_time = now or dt.datetime.now(dt.UTC)
    (run,) = run_suites([(build_interactions_suite(ds, now, config), frame)], run_name=f"ds={ds}", run_time=run_time)
    return failures_from_result(run.result, columns=frame.columns)
