"""Benchmark: two-stage quality on MovieLens 100K with a temporal split (the README's ranker table).

Runs the product's own code path end to end on a fresh installation directory:

1. MovieLens 100K is landed and validated as daily partitions (``ingest``);
2. Feast feature snapshots are built for every day and the definitions applied;
3. the nightly retriever (``training.retriever.train_retriever``, LightGCN by default) is
   trained on every day before the holdout and registered in MLflow;
4. the BST ranker (``training.ranker.train_ranker``) is trained on Feast point-in-time
   rows and evaluated, and everything is logged to MLflow.

**Split.** A global time cut: the holdout is the last ``--holdout-days`` days (by default
the smallest number of final days holding at least ``--holdout-share`` of the ratings),
everything before is training. Evaluated users have history before the cut and at least
one new item after it; lists are made at the cut with features as of the cut.

**Protocol.** For each evaluated user the retriever proposes its top ``--candidates``
unseen items; *retrieval* keeps its order, *retrieval + BST* re-ranks the same list by
the ranker's probability, *popularity* lists the most popular unseen items. HR@10 and
NDCG@10 are computed against all of the user's holdout items (a relevant item outside the
candidates is a miss for both stages), AUC over all candidate rows.

Run: ``.venv/bin/python benchmarks/bench_ranker.py [--data PATH]`` (default
``../shared/datasets/ml-100k``, or the ml-100k directory/zip anywhere).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def default_data() -> Path:
    base = ROOT.parent / "shared" / "datasets" / "ml-100k"
    return base / "ml-100k" if (base / "ml-100k" / "u.data").exists() else base


def holdout_days_for(days: list[dt.date], counts: list[int], share: float) -> int:
    """The fewest final days holding at least ``share`` of the events."""
    total, running = sum(counts), 0
    for n, count in enumerate(reversed(counts), start=1):
        running += count
        if running >= share * total:
            return n
    return len(days) - 1


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="ml-100k directory or zip")
    parser.add_argument("--home", type=Path, default=None, help="installation directory (default: a temporary one)")
    parser.add_argument("--holdout-share", type=float, default=0.2)
    parser.add_argument("--holdout-days", type=int, default=None)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--model", default="lightgcn", choices=["lightgcn", "mf", "gfcf"])
    parser.add_argument("--epochs", type=int, default=60, help="retriever epochs (early-stopped)")
    parser.add_argument("--ranker-epochs", type=int, default=10)
    parser.add_argument("--cuts", type=int, default=12, help="holdout replays the ranker learns from")
    parser.add_argument("--cut-every", type=int, default=7, help="days between replays")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS / "ranker_movielens.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("feast", "mlflow", "alembic", "great_expectations", "py.warnings", "validation.partition"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from app.land import land_source
    from features.snapshots import build_features
    from features.store import apply_definitions
    from graphrec import lake
    from graphrec.settings import Settings, ValidationSettings
    from ingest import movielens
    from training.ranker import train_ranker
    from training.retriever import train_retriever

    home = args.home or Path(tempfile.mkdtemp(prefix="graphrec-bench-ranker-"))
    timings: dict[str, float] = {}
    started = time.perf_counter()
    base = Settings(home=home, seed=args.seed, validation=ValidationSettings(data_docs=False))
    if not lake.list_partitions(base.curated_dir):  # a reused --home keeps its validated lake
        land_source(base, movielens.load_source(args.data or default_data()), validate=True)
    timings["land_and_validate"] = time.perf_counter() - started
    days = lake.list_partitions(base.curated_dir)
    counts = [len(lake.read_curated(base.curated_dir, [d])) for d in days]
    holdout_days = args.holdout_days or holdout_days_for(days, counts, args.holdout_share)
    ds = days[-1]
    window_days = (ds - days[0]).days + 1
    settings = Settings(
        home=home,
        seed=args.seed,
        validation=base.validation,
        training={"holdout_days": holdout_days, "window_days": window_days, "epochs": args.epochs, "model": args.model},
        ranker={
            "candidates": args.candidates,
            "epochs": args.ranker_epochs,
            "cuts": args.cuts,
            "cut_every_days": args.cut_every,
        },
    )
    print(
        f"movielens: {sum(counts)} ratings over {len(days)} days {days[0]}..{ds}; holdout = last {holdout_days} days "
        f"({sum(counts[-holdout_days:])} ratings)",
        flush=True,
    )

    t0 = time.perf_counter()
    for day in days:
        build_features(settings, day)
    apply_definitions(settings)
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    retriever = train_retriever(settings, ds, window_days=window_days, reason="benchmark")
    timings["retriever"] = time.perf_counter() - t0
    print(
        f"retriever v{retriever.model_version} ({retriever.model}): Recall@20 {retriever.recall_at_20:.4f} "
        f"in {timings['retriever']:.1f} s",
        flush=True,
    )

    t0 = time.perf_counter()
    ranked = train_ranker(settings, ds, retriever.model_version, window_days=window_days, reason="benchmark")
    timings["ranker"] = time.perf_counter() - t0
    k = settings.ranker.k
    evaluation = ranked.evaluation

    rows = [("popularity", "popularity_"), ("retrieval", "retrieval_"), ("retrieval + BST", "ranker_")]
    print(
        f"\nMovieLens 100K, temporal split, {evaluation['n_eval_users']} evaluated users, "
        f"{args.candidates} candidates per user\n"
    )
    print(f"{'list':18s} HR@{k:<5d} NDCG@{k}")
    for name, prefix in rows:
        print(f"{name:18s} {evaluation[f'{prefix}hr_at_{k}']:.4f}  {evaluation[f'{prefix}ndcg_at_{k}']:.4f}")
    print(
        f"ranker AUC over the candidates: {evaluation['ranker_auc']:.4f}; ranker trained on {ranked.n_rows} rows "
        f"({ranked.n_positives} positives) in {timings['ranker']:.1f} s"
    )
    payload = {
        "benchmark": "ranker",
        "dataset": "movielens-100k",
        "split": "global temporal",
        "holdout_days": holdout_days,
        "candidates": args.candidates,
        "k": k,
        "retriever": retriever.to_xcom(),
        "ranker": ranked.to_xcom(),
        "timings_s": {k2: round(v, 1) for k2, v in timings.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(payload, indent=2, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)) + "\n"
    )
    print(f"recorded in {args.out}")
    return payload


if __name__ == "__main__":
    main()
