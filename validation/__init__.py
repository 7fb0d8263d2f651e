"""Data contracts for landed partitions: a Great Expectations suite, validation, quarantine.

``validate_partition(settings, ds)`` reads ``landing/ds=YYYY-MM-DD/``, checks its
interactions against :func:`build_interactions_suite` and moves the whole directory to
``curated/`` (valid) or, byte-identical with a ``_reason.json``, to ``quarantine/``.

Importing this package is cheap: Great Expectations is imported only when a suite is
built or run.
"""

from validation.outcome import MissingPartition, PartitionRejected, ValidationOutcome
from validation.partition import validate_partition
from validation.quarantine import list_quarantined
from validation.suite import build_interactions_suite

__all__ = [
    "MissingPartition",
    "PartitionRejected",
    "ValidationOutcome",
    "build_interactions_suite",
    "list_quarantined",
    "validate_partition",
]
