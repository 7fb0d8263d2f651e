"""Data contracts for landed partitions: Great Expectations suites, validation, quarantine.

``validate_partition(settings, ds)`` reads ``landing/ds=YYYY-MM-DD/``, runs the contract
(file-, row- and batch-level checks on the interactions, plus the items and users files;
the named checks and their severities are in :mod:`validation.checks`), writes Data Docs,
and moves the whole directory to ``curated/`` (no blocking failure; warnings are recorded)
or, byte-identical with a ``_reason.json``, to ``quarantine/``.

Importing this package is cheap: Great Expectations is imported only when a suite is
built or run.
"""

from validation.checks import CHECKS, severity_of
from validation.outcome import MissingPartition, PartitionRejected, QuarantinedPartition, ValidationOutcome
from validation.partition import validate_partition
from validation.quarantine import list_quarantined, show_quarantined
from validation.suite import build_interactions_suite

__all__ = [
    "CHECKS",
    "MissingPartition",
    "PartitionRejected",
    "QuarantinedPartition",
    "ValidationOutcome",
    "build_interactions_suite",
    "list_quarantined",
    "severity_of",
    "show_quarantined",
    "validate_partition",
]
