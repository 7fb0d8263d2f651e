"""Benchmark: validating one daily partition of N generated interactions (default 1M).

Generates ``--history`` earlier days plus the measured day in the contract's schema
(log-normal user activity, power-law item popularity, uniform timestamps inside the day), curates the history
through the real contract, then times on the measured day:

* baseline: reading the Parquet file with pyarrow (what any consumer pays);
* the file-level read and checks (:func:`validation.reading.read_parquet_checked`);
* the interactions suite (file + row level) in Great Expectations;
* the batch-level frame and suite;
* ``validate_partition`` end to end, without and with Data Docs (a fresh copy of the day
  each time).

Prints rows/second and the ratio to the read baseline, and writes
``benchmarks/results/validation.json``. Run: ``make bench-validation`` or
``.venv/bin/python benchmarks/bench_validation.py --rows 1000000``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from graphrec import contract
from graphrec.lake import day_bounds, partition_name
from graphrec.settings import Settings, ValidationSettings
from ingest.landing import write_partition

RESULTS = Path(__file__).resolve().parent / "results" / "validation.json"
START = dt.date(2025, 1, 1)


def generate_day(ds: dt.date, rows: int, n_users: int, n_items: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, ds.toordinal()])
    start, _ = day_bounds(ds)
    world = np.random.default_rng(seed)  # the same users and items every day
    activity = world.lognormal(0.0, 1.0, size=n_users)
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** 0.9
    users = rng.choice(n_users, size=rows, p=activity / activity.sum())
    items = rng.choice(n_items, size=rows, p=popularity / popularity.sum())
    offsets = np.sort(rng.integers(0, 86_400_000_000, size=rows))
    offsets += np.arange(rows) % 7  # keeps (user, item, ts, type) unique in practice
    frame = pd.DataFrame(
        {
            contract.USER_ID: users.astype(np.int64),
            contract.ITEM_ID: items.astype(np.int64),
            contract.EVENT_TS: start + pd.to_timedelta(offsets, unit="us"),
            contract.EVENT_TYPE: rng.choice(np.array(["view", "click", "purchase"]), size=rows, p=[0.8, 0.15, 0.05]),
            contract.RATING: np.nan,
        }
    )
    frame[contract.EVENT_TS] = frame[contract.EVENT_TS].astype("datetime64[us, UTC]")
    return frame.drop_duplicates(["user_id", "item_id", "event_ts", "event_type"], ignore_index=True)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--history", type=int, default=3, help="earlier days to curate first (batch checks)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from validation.gx_run import run_suites
    from validation.history import load_history
    from validation.partition import validate_partition
    from validation.reading import read_parquet_checked
    from validation.suite import batch_frame, build_batch_suite, build_interactions_suite

    n_users, n_items = max(args.rows // 20, 10), max(args.rows // 50, 10)
    root = Path(tempfile.mkdtemp(prefix="graphrec-bench-"))
    try:
        settings = Settings(home=root / "home", validation=ValidationSettings(data_docs=False))
        days = [START + dt.timedelta(days=i) for i in range(args.history + 1)]
        t = time.perf_counter()
        frames = {ds: generate_day(ds, args.rows, n_users, n_items, args.seed) for ds in days}
        generate_s = time.perf_counter() - t
        now = dt.datetime.combine(days[-1] + dt.timedelta(days=2), dt.time(), tzinfo=dt.UTC)
        for ds in days[:-1]:
            write_partition(settings.landing_dir, ds, frames[ds])
            assert validate_partition(settings, ds, now=now).status == "curated"
        ds = days[-1]
        spare = root / "spare"
        write_partition(spare, ds, frames[ds])
        path = spare / partition_name(ds) / contract.INTERACTIONS_FILE
        rows = pq.ParquetFile(path).metadata.num_rows

        import great_expectations  # noqa: F401  (the one-off import is not part of a run)

        read_s, _ = timed(lambda: pq.read_table(path).to_pandas(), args.repeat)
        checked_s, (frame, _problem) = timed(lambda: read_parquet_checked(path), args.repeat)
        suite = build_interactions_suite(ds, now)
        row_s, _ = timed(lambda: run_suites([(suite, frame)], run_name="bench", run_time=now), args.repeat)
        history = load_history(settings.curated_dir, ds, 7)

        def batch():
            bf = batch_frame(frame, history)
            return run_suites([(build_batch_suite(ds, history, len(frame)), bf)], run_name="bench", run_time=now)

        batch_s, _ = timed(batch, args.repeat)

        def full(docs: bool):
            def run():
                target = settings.landing_dir / partition_name(ds)
                shutil.rmtree(settings.curated_dir / partition_name(ds), ignore_errors=True)
                shutil.copytree(spare / partition_name(ds), target)
                s = Settings(home=settings.home, validation=ValidationSettings(data_docs=docs))
                outcome = validate_partition(s, ds, now=now)
                assert outcome.status == "curated", outcome.message()
                return outcome

            return run

        full_s, _ = timed(full(False), args.repeat)
        docs_s, _ = timed(full(True), args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def row(name: str, seconds: float) -> dict:
        return {
            "step": name,
            "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds),
            "x_read_baseline": round(seconds / read_s, 1),
        }

    steps = [
        row("baseline: pyarrow read to pandas", read_s),
        row("file-level read + checks", checked_s),
        row("interactions suite (GX, file+row level)", row_s),
        row("batch frame + batch suite (GX)", batch_s),
        row("validate_partition, no Data Docs", full_s),
        row("validate_partition, with Data Docs", docs_s),
    ]
    result = {
        "benchmark": "validation",
        "rows": rows,
        "history_days": args.history,
        "repeat": args.repeat,
        "generate_seconds": round(generate_s, 1),
        "steps": steps,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    print(f"validation benchmark: {rows:,} rows, median of {args.repeat}, {os.cpu_count()} CPUs")
    print(f"{'step':45s} {'seconds':>8s} {'rows/s':>12s} {'x read':>7s}")
    for s in steps:
        print(f"{s['step']:45s} {s['seconds']:8.3f} {s['rows_per_s']:12,d} {s['x_read_baseline']:7.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"recorded in {args.out}")
    return result


if __name__ == "__main__":
    main()
