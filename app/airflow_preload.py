"""Run an Airflow component after importing the libraries the nightly's tasks use.

On Linux, Airflow 3 runs every task in a process forked from the component that executes
it: a LocalExecutor worker forked from the scheduler, or a Celery prefork child of a
``celery worker``. A task inherits what that process had imported and pays for the rest
itself: Feast, Great Expectations, Evidently and PyTorch Geometric each take seconds to
import, and every task of every run paid for them again (a night of the demo's DAG spent
more time importing than computing). Started through this module, the executing component
imports them once, before it forks anything, like gunicorn's ``--preload``::

    python -m app.airflow_preload scheduler
    python -m app.airflow_preload celery worker --concurrency 2

Only third-party libraries are imported, and none of them starts a thread or opens a
connection on import, so forking afterwards is safe. A library that is not installed is
skipped. ``GRAPHREC_AIRFLOW__PRELOAD=false`` starts the components plainly.
"""

from __future__ import annotations

import importlib
import sys
import time

#: What the tasks of ``dags/graphrec_nightly.py`` import, heaviest first.
TASK_LIBRARIES = (
    "feast",
    "evidently",
    "great_expectations",
    "torch_geometric",
    "torch",
    "mlflow",
    "faiss",
    "pyarrow.parquet",
    "pandas",
    "numpy",
)


def preload(modules: tuple[str, ...] = TASK_LIBRARIES) -> dict[str, float]:
    """Import ``modules``; returns the seconds each took (skipping those not installed)."""
    seconds = {}
    for name in modules:
        started = time.perf_counter()
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        seconds[name] = round(time.perf_counter() - started, 2)
    return seconds


def main(argv: list[str] | None = None) -> int:
    from graphrec.logs import quiet_libraries

    args = list(sys.argv[1:] if argv is None else argv)
    quiet_libraries()  # before the imports: Great Expectations and FAISS log while importing
    took = preload()
    print(
        f"graphrec: preloaded {', '.join(f'{m} {s:.1f} s' for m, s in took.items())} before forking tasks",
        file=sys.stderr,
        flush=True,
    )
    # Airflow last, after the preload (and importing this module stays cheap).
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *args]
    return airflow_main() or 0


if __name__ == "__main__":
    sys.exit(main())
