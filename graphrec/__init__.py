"""graphrec: workflow-orchestrated MLOps for graph-based recommendation."""

__version__ = "0.1.0"
