"""Run an expectation suite over an in-memory frame with Great Expectations 1.x.

The GX 1.x object chain is: an ephemeral data context → a pandas data source → a
dataframe asset → a whole-dataframe batch definition; an ``ExpectationSuite`` and that
batch definition together form a ``ValidationDefinition``, which runs with
``batch_parameters={"dataframe": frame}``. Each call builds its own ephemeral context, so
calls share no state and nothing is written to disk.

The context is configured in code: in-memory stores, no data docs site, and GX's progress
bars (tqdm, on stderr) switched off, since they would flood Airflow task logs.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pandas as pd

from validation.failures import failures_from_result
from validation.suite import build_interactions_suite

if TYPE_CHECKING:
    import great_expectations as gx

# SUMMARY gives counts and a few unexpected values without materializing every row index.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}


def run_suite(frame: pd.DataFrame, suite: gx.ExpectationSuite) -> Any:
    """Validate ``frame`` against ``suite`` in a fresh ephemeral GX context.

    Args:
        frame (pandas.DataFrame): the data, as read from the partition.
        suite (great_expectations.ExpectationSuite): an unsaved suite (it is added to the
            new context; the caller's object is not modified).

    Returns:
        great_expectations.core.ExpectationSuiteValidationResult: GX's full result.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),  # in memory, no data docs site
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    batch_definition = (
        context.data_sources.add_pandas("graphrec")
        .add_dataframe_asset(suite.name)
        .add_batch_definition_whole_dataframe("whole_partition")
    )
    # Add a copy: adding assigns ids, and the caller's suite stays a pure value.
    copy = gx.ExpectationSuite(name=suite.name, expectations=suite.expectation_configurations, meta=dict(suite.meta))
    stored = context.suites.add(copy)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"validate_{suite.name}", data=batch_definition, suite=stored)
    )
    return definition.run(batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT)


def validate_interactions(frame: pd.DataFrame, ds: dt.date) -> list[dict[str, Any]]:
    """Check one day's interactions against the contract suite.

    Args:
        frame (pandas.DataFrame): the interactions of partition ``ds``.
        ds (datetime.date): the partition day.

    Returns:
        list[dict]: failure records (see :mod:`validation.failures`); empty means valid.
    """
    return failures_from_result(run_suite(frame, build_interactions_suite(ds)))
