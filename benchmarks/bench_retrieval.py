"""Benchmark: retrieval quality and time on the Gowalla LightGCN split (the paper's protocol).

Also runs on MovieLens 100K (``--dataset movielens``: each user's latest 20% of ratings
held out) and on the repository's simulator (``--dataset simulator``: last day held out).

All-ranking evaluation (score every item, mask the user's training items, rank the rest),
Recall@20 and NDCG@20 averaged over every test user, by the same code the product uses
(:func:`training.metrics.evaluate_scorer`). Models:

* ``popularity``: training-set item counts;
* ``gfcf``: the closed-form graph filter (:mod:`training.gfcf`), no training;
* ``lightgcn``: the product's trainer (:func:`training.train.train_lightgcn`), 3 layers,
  64 dimensions, with ``--loss bpr`` (the paper's) or ``--loss softmax`` (full softmax
  over the items, :mod:`training.losses`), evaluated every ``--eval-every`` epochs until
  ``--minutes`` of wall time or ``--epochs`` are used up. Evaluating on the test split
  while training reproduces the paper's (and its official code's) reporting; the
  product's nightly training early-stops on a validation split instead;
* ``mf``: MF-BPR, the same trainer with 0 propagation layers and the BPR loss.

For each evaluation point it prints the elapsed wall time (data loading included), the
epoch, Recall@20 and NDCG@20, and at the end the time at which each model first reached
each ``--levels`` Recall@20. Figures go to ``benchmarks/results/retrieval_<dataset>.json``.

Run: ``make bench-retrieval`` (all four models on Gowalla, the README's figures), or
``.venv/bin/python benchmarks/bench_retrieval.py --models popularity gfcf lightgcn``
(``--data PATH`` for a Gowalla split elsewhere, ``--dataset movielens|simulator``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
K = 20


def load(args: argparse.Namespace):
    """``(train, test, graph, task)`` of ``args.dataset`` (:func:`training.distributed.load_split`)."""
    from training.data import build_graph
    from training.distributed import load_split
    from training.metrics import build_ranking_task

    split = argparse.Namespace(**{**vars(args), "data": args.dataset, "path": args.data})
    train, test = load_split(split)
    train, test = train[["user_id", "item_id"]], test[["user_id", "item_id"]]
    return train, test, build_graph(train), build_ranking_task(train, test)


def main(argv: list[str] | None = None) -> dict:
    from training.distributed import add_split_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        choices=["gowalla", "movielens", "simulator"],
        default="gowalla",
        help="gowalla: the LightGCN paper's split; movielens: ML-100K, each user's latest "
        "--test-fraction held out; simulator: the repository's simulator, last day held out",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset path (gowalla: directory with train.txt and test.txt; movielens: ml-100k "
        "directory or zip); default: ../shared/datasets/<dataset>",
    )
    add_split_arguments(parser, users=2000, items=1000, days=10, events=8000)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["popularity", "gfcf", "lightgcn"],
        choices=["popularity", "gfcf", "lightgcn", "mf"],
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-time budget per trained model")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument(
        "--loss", choices=["bpr", "softmax"], default="bpr", help="training objective of lightgcn/mf (training.losses)"
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help="L2 strength (default: the loss's, training.losses.DEFAULT_WEIGHT_DECAY)",
    )
    parser.add_argument("--temperature", type=float, default=0.1, help="softmax loss temperature")
    parser.add_argument("--lr-decay", type=float, default=1.0, help="learning rate x this after every epoch")
    parser.add_argument(
        "--item-l2-degree-power",
        type=float,
        default=0.0,
        help="softmax loss: weigh each item's L2 by its degree ** this (averaging 1 over the items)",
    )
    parser.add_argument(
        "--init-std",
        type=float,
        default=0.1,
        help="normal init of the embeddings (the official code's 0.1); 0 keeps PyG's Xavier init",
    )
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--gfcf-k", type=int, default=256)
    parser.add_argument("--gfcf-alpha", type=float, default=0.3)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.10, 0.15, 0.17, 0.18, 0.183])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for training (default: the trainer's choice, one thread below 1M edges)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from training.gfcf import fit_gfcf
    from training.losses import DEFAULT_WEIGHT_DECAY
    from training.metrics import evaluate_embeddings, evaluate_scorer, popularity_model
    from training.train import train_lightgcn
    from training.train_config import TrainConfig

    started = time.perf_counter()
    train, test, graph, task = load(args)
    load_s = time.perf_counter() - started
    print(
        f"{args.dataset}: {graph.n_users} users, {graph.n_items} items, {graph.n_edges} train edges, "
        f"{len(test)} test interactions, {task.n_users} test users; loaded in {load_s:.1f} s",
        flush=True,
    )
    results: dict[str, dict] = {}

    def record(model: str, t0: float, epoch: int, metrics) -> dict:
        point = {
            "seconds": round(load_s + time.perf_counter() - t0, 1),
            "epoch": epoch,
            "recall_at_20": round(metrics.recall, 4),
            "ndcg_at_20": round(metrics.ndcg, 4),
        }
        results.setdefault(model, {"points": []})["points"].append(point)
        print(
            f"{model:10s} {point['seconds']:8.1f} s  epoch {epoch:4d}  Recall@20 {metrics.recall:.4f}  "
            f"NDCG@20 {metrics.ndcg:.4f}",
            flush=True,
        )
        return point

    for model in args.models:
        t0 = time.perf_counter()
        if model == "popularity":
            record(model, t0, 0, evaluate_embeddings(popularity_model(train), task, K))
        elif model == "gfcf":
            fitted = fit_gfcf(
                graph.edge_index[0],
                graph.edge_index[1],
                graph.n_users,
                graph.n_items,
                k=args.gfcf_k,
                alpha=args.gfcf_alpha,
                user_ids=graph.users.ids,
                item_ids=graph.items.ids,
                seed=args.seed,
            )
            print(f"gfcf fitted (svds k={args.gfcf_k}) in {fitted.fit_seconds:.1f} s", flush=True)
            record(
                model, t0, 0, evaluate_scorer(fitted.score, fitted.user_ids, fitted.item_ids, task, K, batch_size=512)
            )
        else:
            layers, loss = (0, "bpr") if model == "mf" else (args.layers, args.loss)  # mf is MF-BPR
            decay = DEFAULT_WEIGHT_DECAY[loss] if args.weight_decay is None else args.weight_decay
            deadline = t0 + args.minutes * 60

            def evaluate(embeddings, _model=model, _t0=t0, _deadline=deadline):
                metrics = evaluate_embeddings(embeddings, task, K)
                epoch = len(results.get(_model, {}).get("points", [])) * args.eval_every + args.eval_every
                record(_model, _t0, epoch, metrics)
                if time.perf_counter() > _deadline:
                    raise TimeoutError
                return metrics.as_dict()

            config = TrainConfig(
                epochs=args.epochs,
                embedding_dim=args.dim,
                num_layers=layers,
                learning_rate=args.lr,
                batch_size=args.batch_size,
                weight_decay=decay,
                loss=loss,
                init_std=args.init_std or None,
                temperature=args.temperature,
                lr_decay=args.lr_decay,
                item_l2_degree_power=args.item_l2_degree_power,
                seed=args.seed,
                eval_every=args.eval_every,
                num_threads=args.threads,
            )
            try:
                train_lightgcn(graph, config, evaluate=evaluate)
            except TimeoutError:
                print(f"{model}: stopped at the {args.minutes:g}-minute budget", flush=True)
            results[model]["config"] = {k: v for k, v in vars(config).items()}
        points = results[model]["points"]
        results[model]["time_to_recall"] = {
            f"{level:g}": next((p["seconds"] for p in points if p["recall_at_20"] >= level), None)
            for level in args.levels
        }
        best = max(points, key=lambda p: p["recall_at_20"])
        results[model]["best"] = best

    print(
        "\nmodel       best Recall@20  NDCG@20   at      time to Recall@20 " + " / ".join(f"{x:g}" for x in args.levels)
    )
    for model, res in results.items():
        best = res["best"]
        reach = " / ".join("-" if v is None else f"{v:.0f} s" for v in res["time_to_recall"].values())
        print(
            f"{model:10s}  {best['recall_at_20']:.4f}          {best['ndcg_at_20']:.4f}    {best['seconds']:7.1f} s  {reach}"
        )
    payload = {
        "benchmark": "retrieval",
        "dataset": args.dataset,
        "data": str(args.data),
        "k": K,
        "protocol": "all-ranking, training items masked, mean over all test users",
        "load_seconds": round(load_s, 1),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": results,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    out = args.out or RESULTS / f"retrieval_{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"recorded in {out}")
    return payload


if __name__ == "__main__":
    main()
