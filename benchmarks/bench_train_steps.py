"""The retriever's full retrain under a few training schedules: wall time and holdout quality.

A full retrain (no champion to start from) is what the nightly's most expensive night
runs: early stopping on the validation split, then the refit on the whole window for the
epochs it chose (``training.retriever``). Its cost is epochs x steps x one propagation
over the whole graph, so two settings decide it: ``max_steps_per_epoch`` (the batch grows
on large graphs so that an epoch takes at most this many steps) and ``patience`` (how
many evaluations without progress early stopping waits). This benchmark runs the
product's own pieces (``validation_split``, ``build_graph``, ``train_lightgcn`` with the
settings' :func:`training.retriever.train_config`, ``evaluate_embeddings``) on the
simulator's worlds of ``bench_nightly`` for each schedule and prints, per schedule: the
early-stopping phase (epochs run, best epoch, validation curve, seconds), the refit's
seconds, and the holdout Recall@20 / NDCG@20 next to popularity's.

Run ``make bench-train-steps`` or ``python benchmarks/bench_train_steps.py --sizes M L --steps 128 64 32 --patience 3``.
Results go to ``benchmarks/results/train_steps.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_nightly import SIZES  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "train_steps.json"


def world(name: str, days: int, seed: int, home: Path):
    """The simulated window of the nightly's first measured night: ``(train, holdout)``."""
    import pandas as pd

    from graphrec import lake
    from ingest.simulator import SimulationConfig, simulate
    from training.data import temporal_split

    size = SIZES[name]
    config = SimulationConfig(
        n_users=size["users"],
        n_items=size["items"],
        events_per_day=size["events_per_day"],
        days=days,
        drift_day=None,
        seed=seed,
    )
    simulate(config, home / "landing")
    ds = config.day(days - 1)  # bench_nightly's first night
    window = [ds - dt.timedelta(days=offset) for offset in range(13, -1, -1)]  # the default 14-day window
    frame = pd.concat(
        [pd.read_parquet(home / "landing" / lake.partition_name(day) / "interactions.parquet") for day in window],
        ignore_index=True,
    )
    return temporal_split(frame, 1, end=ds)


def run_schedule(train, holdout, steps: int, patience: int, seed: int, home: Path) -> dict[str, Any]:
    from graphrec.settings import Settings
    from training.data import build_graph, validation_split
    from training.metrics import build_ranking_task, evaluate_embeddings, popularity_model
    from training.retriever import train_config
    from training.train import train_lightgcn

    settings = Settings(home=home, seed=seed, training={"max_steps_per_epoch": steps, "patience": patience})
    config = train_config(settings)
    fit, validation = validation_split(train, settings.training.validation_fraction, settings.seed)
    val_task, task = build_ranking_task(fit, validation), build_ranking_task(train, holdout)

    def evaluate(embeddings):
        return {"recall_at_20": evaluate_embeddings(embeddings, val_task, 20).recall}

    started = time.perf_counter()
    stopped = train_lightgcn(build_graph(fit), config, evaluate, progress=False)
    early_seconds = time.perf_counter() - started
    started = time.perf_counter()
    refit = train_lightgcn(
        build_graph(train), dataclasses.replace(config, epochs=stopped.best_epoch, patience=0), progress=False
    )
    refit_seconds = time.perf_counter() - started
    final = evaluate_embeddings(refit.embeddings, task, 20)
    popularity = evaluate_embeddings(popularity_model(train), task, 20)
    return {
        "max_steps_per_epoch": steps,
        "patience": patience,
        "eval_every": config.eval_every,
        "epochs_run": stopped.epochs_run,
        "best_epoch": stopped.best_epoch,
        "validation_curve": [(epoch, round(values["recall_at_20"], 4)) for epoch, values in stopped.evaluations],
        "early_stopping_seconds": round(early_seconds, 1),
        "refit_seconds": round(refit_seconds, 1),
        "seconds": round(early_seconds + refit_seconds, 1),
        "recall_at_20": round(final.recall, 6),
        "ndcg_at_20": round(final.ndcg, 6),
        "popularity_recall_at_20": round(popularity.recall, 6),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["M", "L"], choices=sorted(SIZES))
    parser.add_argument("--steps", nargs="+", type=int, default=[128, 64, 32])
    parser.add_argument("--patience", nargs="+", type=int, default=[3])
    parser.add_argument("--days", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    record: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "sizes": {},
    }
    for name in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"graphrec-bench-steps-{name}-") as home:
            train, holdout = world(name, args.days, args.seed, Path(home))
            print(f"\n== {name}: {len(train):,} training events, {len(holdout):,} holdout events", flush=True)
            rows = record["sizes"][name] = []
            for patience in args.patience:
                for steps in args.steps:
                    row = run_schedule(train, holdout, steps, patience, args.seed, Path(home))
                    rows.append(row)
                    print(
                        f"  steps {steps:>4} patience {patience}: {row['epochs_run']:>2} epochs (best "
                        f"{row['best_epoch']}) {row['early_stopping_seconds']:6.1f} s + refit "
                        f"{row['refit_seconds']:6.1f} s = {row['seconds']:6.1f} s; Recall@20 "
                        f"{row['recall_at_20']:.4f} NDCG@20 {row['ndcg_at_20']:.4f} (popularity "
                        f"{row['popularity_recall_at_20']:.4f}); validation {row['validation_curve']}",
                        flush=True,
                    )
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
