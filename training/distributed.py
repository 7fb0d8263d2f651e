"""Train LightGCN in one process or under ``torchrun`` (DDP, gloo on CPU) and score it.

The same command runs one process, or several under ``torchrun``, so the two compare
directly::

    python -m training.distributed --data simulator --epochs 30
    torchrun --standalone --nproc_per_node 2 -m training.distributed --data simulator --epochs 30
    torchrun --standalone --nproc_per_node 2 -m training.distributed --data movielens \\
        --path ../shared/datasets/ml-100k --out ddp.json

Every rank loads the same data and builds the same graph; only gradients and a few
flags travel between them (:func:`training.train.train_lightgcn`). Rank 0 then scores
the final embeddings on the test split with the product's all-ranking evaluation
(:func:`training.metrics.evaluate_embeddings`: Recall@20 and NDCG@20, training items
masked) next to the popularity baseline, prints one line and, with ``--out``, writes
the figures as JSON. The test split never steers training (no early stopping here).

Data (``--data``):

* ``simulator``: the repository's simulator (:mod:`ingest.simulator`, no
  drift), its last day held out; ``--sim-*`` size it;
* ``movielens``: MovieLens 100K (``--path``: the ``ml-100k`` directory or zip), split by
  ``--split``: ``temporal`` holds out each user's latest ``--test-fraction`` of ratings
  (:func:`training.data.validation_split`), ``random`` a seeded random share of them;
* ``gowalla``: the LightGCN paper's split (``--path``: the directory with ``train.txt``
  and ``test.txt``, :func:`ingest.gowalla.read_split`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch.distributed as dist

from graphrec import lake
from graphrec.lake import atomic_write_json
from graphrec.settings import PROJECT_ROOT
from ingest import movielens
from ingest.gowalla import read_split
from ingest.simulator import SimulationConfig, simulate
from training.data import build_graph, temporal_split, validation_split
from training.losses import DEFAULT_WEIGHT_DECAY
from training.metrics import build_ranking_task, evaluate_embeddings, popularity_model
from training.train import default_threads, train_lightgcn
from training.train_config import TrainConfig

DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"
DEFAULT_PATHS = {"movielens": DATASETS / "ml-100k", "gowalla": DATASETS / "gowalla"}


def load_split(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, test)`` interactions (``user_id``, ``item_id``...) of ``args.data``."""
    if args.data == "simulator":
        cfg = SimulationConfig(
            n_users=args.sim_users,
            n_items=args.sim_items,
            days=args.sim_days,
            events_per_day=args.sim_events,
            drift_day=None,
        )
        with tempfile.TemporaryDirectory() as tmp:
            simulate(cfg, Path(tmp))
            frame = lake.read_curated(Path(tmp), [cfg.day(i) for i in range(1, cfg.days + 1)])
        return temporal_split(frame, 1, end=cfg.day(cfg.days))
    path = args.path or DEFAULT_PATHS[args.data]
    if args.data == "gowalla":
        return read_split(path)
    frame, _, _ = movielens.load(path)
    if args.split == "temporal":
        return validation_split(frame, args.test_fraction, args.seed)
    test = np.random.default_rng(args.seed).random(len(frame)) < args.test_fraction
    return frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)


def add_split_arguments(
    parser: argparse.ArgumentParser, users: int = 400, items: int = 300, days: int = 6, events: int = 3000
) -> None:
    """The options :func:`load_split` reads besides the dataset and its path (the simulator's
    size defaults to ``users``, ``items``, ``days`` and ``events`` per day)."""
    parser.add_argument("--split", choices=["temporal", "random"], default="temporal", help="movielens split")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="movielens test share")
    parser.add_argument("--sim-users", type=int, default=users)
    parser.add_argument("--sim-items", type=int, default=items)
    parser.add_argument("--sim-days", type=int, default=days)
    parser.add_argument("--sim-events", type=int, default=events, help="simulated events per day")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["simulator", "movielens", "gowalla"], default="simulator")
    parser.add_argument("--path", type=Path, default=None, help="dataset path (movielens, gowalla)")
    add_split_arguments(parser)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=2048, help="global batch, shared among the ranks")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--loss", choices=["bpr", "softmax"], default="bpr", help="training objective")
    parser.add_argument("--weight-decay", type=float, default=None, help="L2 strength (default: the loss's)")
    parser.add_argument("--init-std", type=float, default=None, help="normal init std (default: PyG's Xavier)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per rank (default: the trainer's)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON (rank 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Run the command; returns rank 0's figures (``None`` on the other ranks)."""
    args = parse_args(argv)
    started = time.perf_counter()
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torchrun sets WORLD_SIZE, RANK, MASTER_*
    if launched and not dist.is_initialized():
        dist.init_process_group("gloo")
    try:
        world_size = dist.get_world_size() if dist.is_initialized() else 1
        rank = dist.get_rank() if dist.is_initialized() else 0
        if rank == 0:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        train, test = load_split(args)
        graph = build_graph(train)
        config = TrainConfig(
            epochs=args.epochs,
            embedding_dim=args.dim,
            num_layers=args.layers,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            loss=args.loss,
            weight_decay=DEFAULT_WEIGHT_DECAY[args.loss] if args.weight_decay is None else args.weight_decay,
            init_std=args.init_std,
            seed=args.seed,
            num_threads=args.threads,
        )
        result = train_lightgcn(graph, config, checkpoint_dir=args.checkpoint_dir, resume=args.resume)
        if rank != 0:
            return None
        task = build_ranking_task(train, test)
        model = evaluate_embeddings(result.embeddings, task)
        popularity = evaluate_embeddings(popularity_model(train), task)
        figures = {
            "data": args.data,
            "world_size": world_size,
            "threads_per_rank": args.threads or default_threads(graph.n_edges, world_size),
            "n_users": graph.n_users,
            "n_items": graph.n_items,
            "n_edges": graph.n_edges,
            "n_test_users": task.n_users,
            "recall_at_20": model.recall,
            "ndcg_at_20": model.ndcg,
            "popularity_recall_at_20": popularity.recall,
            "popularity_ndcg_at_20": popularity.ndcg,
            "train_seconds": result.seconds,
            "seconds": time.perf_counter() - started,
            "losses": result.losses,
            "config": dataclasses.asdict(config),
        }
        print(
            f"{args.data}: {world_size} process(es) x {figures['threads_per_rank']} thread(s), "
            f"{graph.n_edges} edges, {result.epochs_run} epochs: Recall@20 {model.recall:.4f} "
            f"NDCG@20 {model.ndcg:.4f} (popularity {popularity.recall:.4f} / {popularity.ndcg:.4f}), "
            f"training {result.seconds:.1f} s, total {figures['seconds']:.1f} s",
            flush=True,
        )
        if args.out is not None:
            atomic_write_json(args.out, figures)
        return figures
    finally:
        if launched and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
