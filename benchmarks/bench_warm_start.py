"""Benchmark: a warm-started nightly retrain of the LightGCN retriever against a full one.

For each dataset a champion is trained from scratch on the window ending at day ``d``
(the product's :func:`training.retriever.train_retriever`, MLflow and registry included,
in a throw-away home) and aliased ``champion``. Then, for each following day, the same
function trains

* ``full``: from scratch (``full_retrain=True``), early stopping on the validation split
  every ``eval_every`` epochs with ``patience``, then the refit on the whole window;
* ``warm``: warm-started from the champion's layer-0 embeddings (the product's default
  night), evaluated every ``warm_start_eval_every`` epochs with ``warm_start_patience``,
  refit from the champion for the chosen epochs;
* the variants (``--sim-variants``, ``--ml-variants``): ``warm_no_refit`` (the
  early-stopped fit-part embeddings, no refit), ``warm_patience2`` (patience 2),
  ``warm_full_rate`` (the full learning rate instead of ``warm_start_learning_rate_factor``)
  and ``full_other_seed`` (a full retrain with another seed: how far two equally good full
  retrains differ).

Every model is scored on the day's holdout by the product's evaluation; ``delta`` is the
canary's paired bootstrap of the per-user Recall@20 differences (warm minus full,
:func:`serving.canary_bootstrap.paired_bootstrap_ci`) and ``within_tolerance`` says whether its
lower bound clears ``-settings.canary.tolerance``, the canary's no-regression rule.
``seconds`` is the whole ``train_retriever`` call (window loading, both fits, MLflow);
``epochs`` the early-stopping epochs plus the refit's. The warm model becomes the next
day's champion (a chain of warm starts, as the nightly runs between full retrains).

Datasets: the simulator (``--sim-*``, default 5,000 users x 5,000 items x 10,000 events
a day, 15 days, the product's 14-day window with a 1-day holdout) and MovieLens 100K
replayed daily (``--ml-*``: a 120-day window with a 14-day holdout, because one day of
ML-100K holds only a few hundred ratings and few of its raters come back: even so a
holdout has only 50-70 users with history, so its figures are noisy; the champion's
day 1998-01-31, then ``--ml-nights`` days).

Run: ``.venv/bin/python benchmarks/bench_warm_start.py`` (about 10 minutes on 2 busy cores);
``--datasets movielens`` alone takes about three. Results: ``benchmarks/results/warm_start.json``
(written after each dataset).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "warm_start.json"
SUMMARY_FIELDS = (
    "model_version",
    "recall_at_20",
    "ndcg_at_20",
    "epochs_run",
    "best_epoch",
    "refit_epochs",
    "stopped_early",
    "warm_start",
    "warm_start_from",
    "init_reason",
    "n_users",
    "n_items",
    "n_train",
    "n_eval_users",
    "seconds",
)
#: Extra runs per night: (settings changed, full_retrain).
VARIANTS = {
    "warm_no_refit": ({"training.refit": False}, False),
    "warm_patience2": ({"training.warm_start_patience": 2}, False),
    "warm_full_rate": ({"training.warm_start_learning_rate_factor": 1.0}, False),
    "full_other_seed": ({"seed": 43}, True),  # the yardstick: how far two full retrains differ
}


def simulator_home(home: Path, args: argparse.Namespace):
    """Settings over a simulated world whose partitions sit in ``curated/``; returns (settings, days)."""
    from graphrec.settings import Settings
    from ingest.simulator import SimulationConfig, simulate

    cfg = SimulationConfig(
        n_users=args.sim_users,
        n_items=args.sim_items,
        days=args.sim_days,
        events_per_day=args.sim_events,
        drift_day=None,
    )
    settings = Settings(home=home)
    simulate(cfg, settings.landing_dir)
    settings.curated_dir.mkdir(parents=True, exist_ok=True)
    for part in sorted(settings.landing_dir.iterdir()):  # validation's move, without validating
        os.replace(part, settings.curated_dir / part.name)
    first = min(args.sim_days - args.sim_nights, settings.training.window_days)
    return settings, [cfg.day(first + n) for n in range(args.sim_nights + 1)]


def movielens_home(home: Path, args: argparse.Namespace):
    """Settings over ML-100K written as one curated partition per UTC day; returns (settings, days)."""
    from graphrec import lake
    from graphrec.settings import Settings
    from ingest import movielens
    from ingest.landing import split_by_day, write_partition

    settings = Settings(home=home, training={"window_days": args.ml_window, "holdout_days": args.ml_holdout})
    interactions, _, _ = movielens.load(args.ml_data)
    for ds, frame in split_by_day(interactions).items():
        write_partition(settings.curated_dir, ds, frame)
    days = lake.list_partitions(settings.curated_dir)
    first = days[0] + dt.timedelta(days=args.ml_window - 1 + args.ml_offset)
    return settings, [first + dt.timedelta(days=n) for n in range(args.ml_nights + 1)]


def _short(result) -> dict[str, Any]:
    """The record's fields of a :class:`training.results.RetrieverResult` (JSON-safe)."""
    summary = result.to_xcom()
    out = {name: summary.get(name) for name in SUMMARY_FIELDS}
    out["epochs"] = (summary.get("epochs_run") or 0) + (summary.get("refit_epochs") or 0)
    return out


def paired_delta(settings, ds: dt.date, warm_version: int, full_version: int) -> dict[str, Any]:
    """The canary's paired bootstrap of per-user Recall@20, warm minus full, on ``ds``'s holdout."""
    from serving.canary_bootstrap import paired_bootstrap_ci
    from training import registry
    from training.data import load_window, temporal_split
    from training.metrics import build_ranking_task, evaluate_embeddings

    window = load_window(settings, ds, settings.training.window_days)
    train, holdout = temporal_split(window.interactions, settings.training.holdout_days, end=window.end)
    task = build_ranking_task(train, holdout)
    warm, full = (
        evaluate_embeddings(registry.load_model_embeddings(settings, v), task) for v in (warm_version, full_version)
    )
    interval = paired_bootstrap_ci(
        warm.recall_per_user,
        full.recall_per_user,
        confidence=settings.canary.confidence,
        n_resamples=settings.canary.bootstrap_samples,
        seed=settings.seed,
    )
    return {
        **interval.as_dict(),
        "within_tolerance": bool(interval.low >= -settings.canary.tolerance),
        "tolerance": settings.canary.tolerance,
    }


def run_dataset(name: str, settings, days: list[dt.date], variants: list[str]) -> dict[str, Any]:
    from training import registry
    from training.retriever import train_retriever

    started = time.perf_counter()
    champion = train_retriever(settings, days[0], reason="benchmark")
    registry.set_alias(settings, registry.CHAMPION, champion.model_version)
    print(
        f"{name}: champion v{champion.model_version} on {days[0]}: recall@20 {champion.recall_at_20:.4f}, "
        f"{_short(champion)['epochs']} epochs, {champion.seconds:.1f} s",
        flush=True,
    )
    nights = []
    for ds in days[1:]:
        runs = {
            "full": train_retriever(settings, ds, reason="benchmark", full_retrain=True),
            "warm": train_retriever(settings, ds, reason="benchmark"),
        }
        for variant in variants:
            changes, full_retrain = VARIANTS[variant]
            runs[variant] = train_retriever(
                settings.updated(changes), ds, reason="benchmark", full_retrain=full_retrain
            )
        night = {
            "ds": ds.isoformat(),
            "runs": {label: _short(s) for label, s in runs.items()},
            "delta_recall_at_20": {
                label: paired_delta(settings, ds, s.model_version, runs["full"].model_version)
                for label, s in runs.items()
                if label != "full"
            },
        }
        for label, run in night["runs"].items():
            delta = night["delta_recall_at_20"].get(label)
            print(
                f"{name} {ds} {label:>15}: recall@20 {run['recall_at_20']:.4f}  ndcg@20 {run['ndcg_at_20']:.4f}  "
                f"epochs {run['epochs_run']}+{run['refit_epochs']}  {run['seconds']:6.1f} s"
                + (
                    f"  delta {delta['mean']:+.4f} [{delta['ci_low']:+.4f}, {delta['ci_high']:+.4f}]"
                    f" {'ok' if delta['within_tolerance'] else 'OUT'}"
                    if delta
                    else ""
                ),
                flush=True,
            )
        nights.append(night)
        registry.set_alias(settings, registry.CHAMPION, runs["warm"].model_version)  # the warm chain goes on
    return {
        "window_days": settings.training.window_days,
        "holdout_days": settings.training.holdout_days,
        "champion": {"ds": days[0].isoformat(), **_short(champion)},
        "nights": nights,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=["simulator", "movielens"], default=["movielens", "simulator"])
    parser.add_argument(
        "--sim-variants", nargs="*", choices=sorted(VARIANTS), default=["warm_no_refit", "warm_full_rate"]
    )
    parser.add_argument("--ml-variants", nargs="*", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    parser.add_argument("--sim-users", type=int, default=5_000)
    parser.add_argument("--sim-items", type=int, default=5_000)
    parser.add_argument("--sim-events", type=int, default=10_000, help="simulated events a day")
    parser.add_argument("--sim-days", type=int, default=15)
    parser.add_argument("--sim-nights", type=int, default=1, help="warm-vs-full nights after the champion's day")
    parser.add_argument("--ml-data", type=Path, default=ROOT.parent / "shared" / "datasets" / "ml-100k")
    parser.add_argument("--ml-window", type=int, default=120)
    parser.add_argument("--ml-holdout", type=int, default=14)
    parser.add_argument(
        "--ml-offset", type=int, default=14, help="the champion's day: this many days after the first full window"
    )
    parser.add_argument("--ml-nights", type=int, default=3)
    parser.add_argument("--home", type=Path, default=None, help="working directory (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    base = args.home or Path(tempfile.mkdtemp(prefix="bench-warm-start-"))
    results: dict[str, Any] = {
        "benchmark": "warm_start",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "datasets": {},
    }
    try:
        for name in args.datasets:
            started = time.perf_counter()
            home = base / name
            settings, days = (simulator_home if name == "simulator" else movielens_home)(home, args)
            print(
                f"{name}: data ready in {time.perf_counter() - started:.1f} s; days {days[0]}..{days[-1]}", flush=True
            )
            variants = args.sim_variants if name == "simulator" else args.ml_variants
            results["datasets"][name] = run_dataset(name, settings, days, variants)
            if name == "simulator":
                results["datasets"][name]["world"] = {
                    "users": args.sim_users,
                    "items": args.sim_items,
                    "events_per_day": args.sim_events,
                    "days": args.sim_days,
                }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")  # after each dataset
            print(f"wrote {args.out}", flush=True)
    finally:
        if args.home is None:
            shutil.rmtree(base, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
