"""Benchmark: the daily drift signals (:mod:`monitoring.signals`) at production size.

Generates a world of ``--users`` users and ``--items`` items (log-normal user activity,
power-law item popularity, ten categories), ``--reference-days`` reference days and one
current day of ``--events-per-day`` interactions each, and a random ``--dim``-dimensional
:class:`~monitoring.offline_serving.ServingModel` whose seen sets are the reference's pairs.
``served_yesterday`` is served beforehand (not timed). Then times, in one fresh process:

* ``import evidently`` (paid once per task process);
* :func:`~monitoring.signals.compute_signals` with the model, yesterday's lists and an
  offline recall, and its main parts (serving both user samples, the Evidently reports);
* :func:`~monitoring.report_files.write_signal_report` into a temporary directory.

``--repeat`` runs the measured pair again (warm). Prints the figures and each signal's
value; with ``--out`` also writes them as JSON. Run:
``.venv/bin/python benchmarks/bench_signals.py`` (defaults: 100k users, 40k items, 64
dims, 3 × 1M reference events, 1M current events).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from graphrec import contract
from graphrec.lake import day_bounds
from ingest.simulator import CATEGORIES
from monitoring.offline_serving import ServingModel, serve_batch
from monitoring.report_files import write_signal_report
from monitoring.signals import MAX_SERVED_USERS, compute_signals
from serving.history import popularity_order, seen_from_pairs

START = dt.date(2025, 1, 1)
EVENT_TYPES = np.array(["view", "click", "purchase"])


def generate_day(ds: dt.date, rows: int, n_users: int, n_items: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, ds.toordinal()])
    world = np.random.default_rng(seed)  # the same users and items every day
    activity = world.lognormal(0.0, 1.0, size=n_users)
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** 0.9
    start, _ = day_bounds(ds)
    return pd.DataFrame(
        {
            contract.USER_ID: rng.choice(n_users, size=rows, p=activity / activity.sum()).astype(np.int64),
            contract.ITEM_ID: rng.choice(n_items, size=rows, p=popularity / popularity.sum()).astype(np.int64),
            contract.EVENT_TS: start + pd.to_timedelta(np.sort(rng.integers(0, 86_400_000_000, size=rows)), unit="us"),
            contract.EVENT_TYPE: rng.choice(EVENT_TYPES, size=rows, p=[0.8, 0.15, 0.05]),
            contract.RATING: np.full(rows, np.nan),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--events-per-day", type=int, default=1_000_000)
    parser.add_argument("--reference-days", type=int, default=3)
    parser.add_argument("--max-served-users", type=int, default=MAX_SERVED_USERS)
    parser.add_argument("--max-rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=1, help="measured runs (the first one is cold)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()

    t0 = time.perf_counter()
    days = [START + dt.timedelta(days=i) for i in range(args.reference_days + 1)]
    frames = [generate_day(d, args.events_per_day, args.users, args.items, args.seed) for d in days]
    reference, current = pd.concat(frames[:-1], ignore_index=True), frames[-1]
    catalog = pd.DataFrame(
        {
            contract.ITEM_ID: np.arange(args.items, dtype=np.int64),
            contract.CATEGORY: np.array(CATEGORIES)[np.arange(args.items) % len(CATEGORIES)],
        }
    )
    rng = np.random.default_rng(args.seed)
    model = ServingModel(
        user_ids=np.arange(args.users, dtype=np.int64),
        user_emb=rng.standard_normal((args.users, args.dim), dtype=np.float32),
        item_ids=np.arange(args.items, dtype=np.int64),
        item_emb=rng.standard_normal((args.items, args.dim), dtype=np.float32),
        seen=seen_from_pairs(reference),
        popular=popularity_order(reference),
    )
    yesterday_users = np.unique(frames[-2][contract.USER_ID])
    served_yesterday = serve_batch(
        model, rng.choice(yesterday_users, min(len(yesterday_users), args.max_served_users), replace=False)
    )
    generate_s = time.perf_counter() - t0
    print(
        f"generated {len(current):,} current + {len(reference):,} reference events, "
        f"{args.users:,} users x {args.items:,} items x {args.dim} dims in {generate_s:.1f} s"
    )

    t0 = time.perf_counter()
    import evidently  # noqa: F401  (timed on its own: paid once per process)

    import_s = time.perf_counter() - t0
    print(f"import evidently: {import_s:.2f} s")

    runs = []
    for run in range(args.repeat):
        t0 = time.perf_counter()
        report = compute_signals(
            current,
            reference,
            catalog,
            model=model,
            served_yesterday=served_yesterday,
            offline_recall=0.05,
            max_rows=args.max_rows,
            seed=args.seed,
            max_served_users=args.max_served_users,
        )
        compute_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            written = write_signal_report(report, Path(tmp))
            write_s = time.perf_counter() - t0
            sizes = {name: os.path.getsize(path) for name, path in written.items()}
        runs.append(
            {"compute_s": round(compute_s, 2), "write_s": round(write_s, 2), "total_s": round(compute_s + write_s, 2)}
        )
        print(
            f"run {run + 1}: compute_signals {compute_s:.2f} s + write_signal_report {write_s:.2f} s = "
            f"{compute_s + write_s:.2f} s" + (" (cold: evidently imported just before)" if run == 0 else "")
        )

    t0 = time.perf_counter()
    users = np.unique(current[contract.USER_ID])
    serve_batch(model, users[: args.max_served_users])
    serve_s = time.perf_counter() - t0
    print(
        f"  of which serving {min(len(users), args.max_served_users):,} users once: {serve_s:.2f} s "
        "(compute_signals serves two such samples)"
    )
    print(f"  files: {', '.join(f'{name} {size / 1e6:.1f} MB' for name, size in sizes.items())}")
    for name, signal in report.signals.items():
        value = "None" if signal.value is None else f"{signal.value:.4f}"
        print(f"  {name:24s} {value:>8s}  {signal.detail}")

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "benchmark": "signals",
                    "users": args.users,
                    "items": args.items,
                    "dim": args.dim,
                    "events_current": len(current),
                    "events_reference": len(reference),
                    "max_served_users": args.max_served_users,
                    "max_rows": args.max_rows,
                    "cpu_count": os.cpu_count(),
                    "python": platform.python_version(),
                    "import_evidently_s": round(import_s, 2),
                    "runs": runs,
                    "serve_once_s": round(serve_s, 2),
                    "files_bytes": sizes,
                    "signals": {name: s.value for name, s in report.signals.items()},
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
