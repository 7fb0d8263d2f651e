"""Benchmark: serving cost of the BST ranker for one request (one user, 200 candidates).

On one torch thread, a :class:`training.bst.BST` of default sizes (random weights: the
cost does not depend on them) over a vocabulary of 40,981 items and 20 categories scores
200 candidate rows of one user whose feature list holds 50 recent items (a full 20-item
sequence). The rows are a DataFrame shaped as serving builds it: the user's features
broadcast to every row (one list object repeated), each candidate with its own item
features and retrieval score. A second frame repeats the test with 200 equal but distinct
list objects (what a feature-store client that copies lists per row hands over); the
encoder recognises both as one history.

Timed over ``--repeats`` requests after ``--warmup``, the cases taking turns:

* ``encode``: :func:`training.encode`, frame to tensors;
* ``forward``: :func:`training.predict`, tensors to probabilities;
* ``total``: encode + forward + the argsort that orders the candidates;
* ``baseline``: the retrieval score alone, the argsort of the frame's ``retrieval_score``;
* ``serving_*``: the path the service takes (``features.online.OnlineFeatures``
  hands over arrays, not a frame): :func:`training.encode_candidates` of the same
  rows as :class:`training.CandidateFeatures`, then
  :meth:`training.RequestScorer.shared` (the history's keys and values computed once,
  traced by TorchScript). Its probabilities are checked against ``predict``'s first.

Median, p95 and p99 in milliseconds go to ``benchmarks/results/ranker_cost.json``.

Run: ``.venv/bin/python benchmarks/bench_ranker_cost.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
N_ITEMS = 40_981
N_CATEGORIES = 20
HISTORY = 50
CANDIDATES = 200


def request_frame(rng: np.random.Generator, *, shared: bool) -> pd.DataFrame:
    """200 candidate rows of one user at one time, as serving builds them.

    Args:
        rng: draws the history, the candidates and their features.
        shared: the user's sequence cells hold one list object per column (broadcast),
            else a distinct copy per row.
    """
    from features.ranker_columns import (
        EVENT_TIMESTAMP,
        ITEM_CATEGORY,
        ITEM_COUNTERS,
        ITEM_ID,
        RECENT_CATEGORIES,
        RECENT_ITEMS,
        RECENT_TS,
        RETRIEVAL_SCORE,
        USER_COUNTERS,
        USER_ID,
    )

    now = pd.Timestamp("2024-06-01 12:00:00", tz="UTC")
    categories = [f"cat_{k:02d}" for k in range(N_CATEGORIES)]
    history = rng.choice(N_ITEMS, HISTORY, replace=False).tolist()
    history_categories = [categories[i % N_CATEGORIES] for i in history]
    ages = np.sort(rng.integers(60, 30 * 86_400, HISTORY))[::-1]  # oldest first, most recent last
    history_ts = (int(now.timestamp()) - ages).tolist()
    candidates = rng.choice(N_ITEMS, CANDIDATES, replace=False)

    def repeat(value: list) -> list:
        return [value] * CANDIDATES if shared else [list(value) for _ in range(CANDIDATES)]

    user_counters = {name: [int(v)] * CANDIDATES for name, v in zip(USER_COUNTERS, (3, 17, 12, 0))}
    item_counters = {name: rng.integers(0, 500, CANDIDATES) for name in ITEM_COUNTERS}
    return pd.DataFrame(
        {
            USER_ID: np.full(CANDIDATES, 7, dtype=np.int64),
            ITEM_ID: candidates.astype(np.int64),
            EVENT_TIMESTAMP: [now] * CANDIDATES,
            **user_counters,
            **item_counters,
            ITEM_CATEGORY: [categories[i % N_CATEGORIES] for i in candidates],
            RECENT_ITEMS: repeat(history),
            RECENT_CATEGORIES: repeat(history_categories),
            RECENT_TS: repeat(history_ts),
            RETRIEVAL_SCORE: rng.normal(size=CANDIDATES),
        }
    )


def request_features(frame: pd.DataFrame):
    """The same rows as :class:`features.ranker_columns.CandidateFeatures` (what the service's reader returns)."""
    from features.ranker_columns import (
        EVENT_TIMESTAMP,
        ITEM_CATEGORY,
        ITEM_COUNTERS,
        ITEM_ID,
        RECENT_CATEGORIES,
        RECENT_ITEMS,
        RECENT_TS,
        USER_COUNTERS,
        USER_ID,
        CandidateFeatures,
    )

    first = frame.iloc[0]
    return CandidateFeatures(
        user_id=int(first[USER_ID]),
        time=pd.Timestamp(first[EVENT_TIMESTAMP]),
        item_ids=frame[ITEM_ID].to_numpy(np.int64),
        user_counters=np.array([first[c] for c in USER_COUNTERS], dtype=np.float64),
        item_counters=frame[list(ITEM_COUNTERS)].to_numpy(np.float64),
        item_category=frame[ITEM_CATEGORY].to_numpy(object),
        recent_items=first[RECENT_ITEMS],
        recent_categories=first[RECENT_CATEGORIES],
        recent_ts=first[RECENT_TS],
    )


def timings(cases: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, np.ndarray]:
    """Milliseconds of ``repeats`` calls of each case after ``warmup`` untimed ones.

    The cases take turns within each repetition, so that all of them see the same machine
    (a shared 2-core box's load changes over a run; timed one after the other, a later
    case could look slower than the sum of its parts).
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    out = {name: np.empty(repeats) for name in cases}
    for k in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter_ns()
            fn()
            out[name][k] = (time.perf_counter_ns() - start) / 1e6
    return out


def summary(ms: np.ndarray) -> dict[str, float]:
    """Median, p95 and p99 in milliseconds (4 decimals)."""
    return {
        "median_ms": round(float(np.median(ms)), 4),
        "p95_ms": round(float(np.percentile(ms, 95)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "ranker_cost.json")
    args = parser.parse_args(argv)
    if args.repeats < 500:
        parser.error("--repeats must be >= 500 for a stable p99")

    import torch

    from features.ranker_columns import RETRIEVAL_SCORE
    from training.bst import build_bst
    from training.bst_encoding import encode, encode_candidates
    from training.bst_fit import predict
    from training.bst_scorer import RequestScorer
    from training.bst_vocab import Vocabulary

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    categories = [f"cat_{k:02d}" for k in range(N_CATEGORIES)]
    vocab = Vocabulary.build(np.arange(N_ITEMS), categories)
    model = build_bst(vocab, seed=args.seed).eval()
    frames = {"shared": request_frame(rng, shared=True), "copied": request_frame(rng, shared=False)}
    batch = encode(frames["shared"], vocab, model.seq_len)
    assert int((batch.seq_age > 0).sum(dim=1).min()) == model.seq_len, "the sequence must be full"

    def total(frame: pd.DataFrame) -> np.ndarray:
        return np.argsort(-predict(model, encode(frame, vocab, model.seq_len)), kind="stable")

    features = request_features(frames["shared"])
    scores = frames["shared"][RETRIEVAL_SCORE].to_numpy(np.float64)
    scorer = RequestScorer(model)
    serving_batch = encode_candidates(features, scores, vocab, model.seq_len)
    np.testing.assert_allclose(scorer.shared(serving_batch), predict(model, batch), rtol=0, atol=1e-6)

    def serving_total() -> np.ndarray:
        return np.argsort(-scorer.shared(encode_candidates(features, scores, vocab, model.seq_len)), kind="stable")

    def baseline(frame: pd.DataFrame) -> np.ndarray:
        return np.argsort(-frame[RETRIEVAL_SCORE].to_numpy(dtype=np.float64), kind="stable")

    cases: dict[str, Callable[[], object]] = {
        "encode": lambda: encode(frames["shared"], vocab, model.seq_len),
        "forward": lambda: predict(model, batch),
        "total": lambda: total(frames["shared"]),
        "encode_copied_lists": lambda: encode(frames["copied"], vocab, model.seq_len),
        "total_copied_lists": lambda: total(frames["copied"]),
        "baseline_retrieval_argsort": lambda: baseline(frames["shared"]),
        "serving_encode": lambda: encode_candidates(features, scores, vocab, model.seq_len),
        "serving_forward": lambda: scorer.shared(serving_batch),
        "serving_total": serving_total,
    }
    load_before = os.getloadavg()
    results = {name: summary(ms) for name, ms in timings(cases, args.warmup, args.repeats).items()}

    print(
        f"BST ranker, {CANDIDATES} candidates of one user, {HISTORY}-item history, seq_len {model.seq_len}, "
        f"dim {model.dim}, {vocab.n_items - 2} items; 1 torch thread, {args.repeats} repeats"
    )
    print(f"{'':28s} {'median':>9s} {'p95':>9s} {'p99':>9s}   (ms)")
    for name, res in results.items():
        print(f"{name:28s} {res['median_ms']:9.3f} {res['p95_ms']:9.3f} {res['p99_ms']:9.3f}")
    extra = results["total"]["median_ms"] - results["baseline_retrieval_argsort"]["median_ms"]
    ratio = results["total"]["median_ms"] / results["baseline_retrieval_argsort"]["median_ms"]
    print(f"ranking 200 rows by BST instead of the retrieval score alone: +{extra:.3f} ms median ({ratio:.0f}x)")
    speedup = results["total"]["median_ms"] / results["serving_total"]["median_ms"]
    print(f"the serving path (arrays, shared history, traced) vs the frame path: {speedup:.1f}x less time (median)")

    payload = {
        "benchmark": "ranker_cost",
        "setup": {
            "candidates": CANDIDATES,
            "history": HISTORY,
            "n_items": N_ITEMS,
            "n_categories": N_CATEGORIES,
            "model": model.config(),
            "torch_threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "seed": args.seed,
        },
        "results": results,
        "extra_ms_over_baseline_median": round(extra, 4),
        "frame_path_over_serving_path_median": round(speedup, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "load_average_1_5_15_min_before": [round(x, 2) for x in load_before],
        },
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"recorded in {args.out}")
    return payload


if __name__ == "__main__":
    main()
