"""Benchmark: the recommendation service under load, on loopback, at a Gowalla-sized catalog.

Setup (once per ``--home``; ``--reuse`` keeps an existing one) runs the product's own
pipeline steps on a simulated lake sized like Gowalla (29,858 users, 40,981 items,
64-dimensional embeddings): curated partitions → Feast features (offline + SQLite online
store) → LightGCN retriever → BST ranker → ``publish_model`` of the pair. The service is
then started as users start it (``graphrec serve --workers 2``: two processes, FAISS and
torch on one thread each, four handler threads each) and driven by `Locust
<https://locust.io>`_ (``benchmarks/locustfile.py``, run from its own virtualenv) at
increasing request rates, ``/recommend/{user_id}?k=20`` for known users: retrieval of 100
candidates, Feast online features, BST re-ranking.

Phases, each ``--duration`` seconds:

* ``steady@R`` for every rate ``R`` in ``--rates``;
* ``swap@R``: at ``--event-rate``, a new version of the pair is published (the same
  ``publish_model`` the DAG calls, in this process) in the middle of the phase; the
  service must hot-swap without a failed request;
* ``outage@R``: at ``--event-rate``, the Feast online store is stopped for the middle
  third of the phase (its SQLite file is emptied in place, so reads fail as with a dead
  server, and then written back); answers must stay 200s, degraded to retrieval
  order, and re-ranking must come back after it is restored.

Locust reports p50/p95/p99 latency, throughput and failures per phase; the service's own
``/metrics`` adds how many answers were re-ranked or degraded. Results go to
``benchmarks/results/load.json``.

Run: ``make bench-load`` (creates ``.venv-load`` with the pinned Locust of
``benchmarks/requirements-load.txt``), or
``.venv/bin/python benchmarks/bench_load.py --locust .venv-load/bin/locust``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, default=ROOT / "var" / "bench-load", help="GRAPHREC_HOME of the benchmark")
    p.add_argument("--reuse", action="store_true", help="keep an existing setup under --home")
    p.add_argument("--users", type=int, default=29_858)
    p.add_argument("--items", type=int, default=40_981)
    p.add_argument("--days", type=int, default=8)
    p.add_argument("--events-per-day", type=int, default=60_000)
    p.add_argument("--epochs", type=int, default=4, help="retriever epochs (quality is not the point here)")
    p.add_argument("--rates", type=int, nargs="+", default=[50, 100, 200, 300])
    p.add_argument("--event-rate", type=int, default=200, help="rate of the swap and outage phases")
    p.add_argument("--duration", type=int, default=30, help="seconds per phase")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--workers", type=int, default=2, help="service processes (graphrec serve --workers)")
    p.add_argument("--locust", default=str(ROOT / ".venv-load" / "bin" / "locust"))
    p.add_argument("--no-ranker", action="store_true", help="retrieval only")
    p.add_argument("--out", type=Path, default=RESULTS / "load.json")
    return p.parse_args(argv)


# Setup ---------------------------------------------------------------------------------
def bench_settings(args: argparse.Namespace):
    from graphrec.settings import Settings

    return Settings(
        home=args.home,
        training={
            "embedding_dim": 64,
            "window_days": args.days,
            "epochs": args.epochs,
            "batch_size": 65_536,
            "patience": 0,
            "refit": False,
        },
        ranker={"enabled": not args.no_ranker, "cuts": 1, "max_users": 1_000, "epochs": 3},
    )


def setup(args: argparse.Namespace) -> dict:
    """Simulated lake → features → retriever → ranker → published pair (the product's code)."""
    from features.materialize import materialize
    from graphrec import lake
    from ingest.simulator import SimulationConfig, simulate
    from serving.publish import publish_model
    from training import registry
    from training.ranker import train_ranker
    from training.retriever import train_retriever

    settings = bench_settings(args)
    timings = {}
    if not args.reuse and args.home.exists():
        shutil.rmtree(args.home)
    if args.reuse and (settings.indexes_dir / "CURRENT").exists():
        return {"reused": True}
    started = time.perf_counter()
    cfg = SimulationConfig(
        n_users=args.users,
        n_items=args.items,
        n_categories=10,
        days=args.days,
        events_per_day=args.events_per_day,
        drift_day=None,
    )
    simulate(cfg, settings.curated_dir)
    days = lake.list_partitions(settings.curated_dir)
    timings["simulate_s"] = time.perf_counter() - started
    ds = days[-1]
    started = time.perf_counter()
    for day in days:
        materialize(settings, day)
    timings["features_s"] = time.perf_counter() - started
    started = time.perf_counter()
    trained = train_retriever(settings, ds, model="lightgcn", reason="benchmark")
    timings["retriever_s"] = time.perf_counter() - started
    ranker_version = None
    if not args.no_ranker:
        started = time.perf_counter()
        ranked = train_ranker(settings, ds, trained.model_version, reason="benchmark")
        ranker_version = ranked.model_version
        registry.set_alias(settings, registry.CHAMPION, ranker_version, model=settings.mlflow.ranker_model_name)
        timings["ranker_s"] = time.perf_counter() - started
    registry.set_alias(settings, registry.CHAMPION, trained.model_version)
    started = time.perf_counter()
    published = publish_model(settings, trained.model_version, ds, ranker_version=ranker_version)
    timings["publish_s"] = time.perf_counter() - started
    return {
        "reused": False,
        "ds": ds.isoformat(),
        "model_version": trained.model_version,
        "ranker_version": ranker_version,
        "index_version": published.index_version,
        "n_interactions": int(sum(len(lake.read_curated(settings.curated_dir, [d])) for d in days)),
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }


# Service -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(args: argparse.Namespace, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "GRAPHREC_HOME": str(args.home),
        "GRAPHREC_RANKER__ENABLED": str(not args.no_ranker).lower(),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("the service did not become ready in 120 s")


def scrape(port: int) -> dict[str, float]:
    """The service's counters that the benchmark reports (sums over labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "graphrec_degraded_total":
                out[f"degraded_{sample.labels['source']}"] = (
                    out.get(f"degraded_{sample.labels['source']}", 0) + sample.value
                )
            elif sample.name == "graphrec_requests_total" and sample.labels.get("endpoint") == "/recommend/{user_id}":
                out["requests"] = out.get("requests", 0) + sample.value
            elif (
                sample.name == "graphrec_request_duration_seconds_bucket"
                and sample.labels.get("endpoint") == "/recommend/{user_id}"
            ):
                key = f"le_{sample.labels['le']}"
                out[key] = out.get(key, 0) + sample.value
    return out


def service_percentiles(before: dict, after: dict, quantiles=(0.5, 0.95, 0.99)) -> dict:
    """Upper bounds of the service's own latency quantiles in a phase, from its histogram.

    ``graphrec_request_duration_seconds`` is measured around the whole ASGI call (routing,
    validation, the model, serialisation) inside the service; Locust's figures add the
    client, the sockets and waiting for a CPU. The histogram's buckets give bounds: "p99
    ≤ 12.5 ms" means 99 % of answers took at most 12.5 ms in the service.
    """
    bounds = sorted((float(k[3:]), after.get(k, 0) - before.get(k, 0)) for k in after if k.startswith("le_"))
    total = bounds[-1][1] if bounds else 0
    out = {}
    for q in quantiles:
        bound = next((b for b, count in bounds if total and count >= q * total), None)
        out[f"service_p{round(q * 100)}_ms_at_most"] = None if bound is None else round(bound * 1000, 1)
    return out


def warm_up(port: int, users: list[int], k: int, n: int = 200) -> None:
    for user in users[:n]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/recommend/{user}?k={k}", timeout=10) as resp:
            resp.read()


# Load phases -----------------------------------------------------------------------------
def run_locust(args: argparse.Namespace, port: int, rate: int, name: str, users_file: Path, workdir: Path) -> dict:
    prefix = workdir / name
    env = {**os.environ, "BENCH_USERS": str(users_file), "BENCH_K": str(args.k)}
    cmd = [
        args.locust,
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "--host",
        f"http://127.0.0.1:{port}",
        "-u",
        str(rate),
        "-r",
        str(rate),
        "-t",
        f"{args.duration}s",
        "--csv",
        str(prefix),
        "--only-summary",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
    ]
    subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL)
    with open(f"{prefix}_stats.csv") as fh:
        row = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    requests, failures = int(row["Request Count"]), int(row["Failure Count"])
    return {
        "phase": name,
        "target_rps": rate,
        "requests": requests,
        "failures": failures,
        "throughput_rps": round(requests / args.duration, 1),
        "p50_ms": float(row["50%"]),
        "p95_ms": float(row["95%"]),
        "p99_ms": float(row["99%"]),
        "max_ms": float(row["Max Response Time"]),
    }


def online_store_file(settings) -> Path:
    return settings.feast_dir / "online_store.db"


def outage(path: Path, start_after: float, length: float, log: list[str]) -> threading.Thread:
    """Take the SQLite online store down for ``length`` seconds, then restore it.

    The service keeps its SQLite connection open, so moving the file away would not be
    noticed; instead the file is emptied in place (its content saved aside), so every read
    fails as with a dead server, and written back afterwards.
    """

    def run() -> None:
        time.sleep(start_after)
        backup = path.with_suffix(".db.away")
        shutil.copyfile(path, backup)
        os.truncate(path, 0)
        log.append(f"online store down at +{start_after:.0f} s")
        time.sleep(length)
        shutil.copyfile(backup, path)
        backup.unlink()
        log.append(f"online store restored at +{start_after + length:.0f} s")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.locust).exists():
        print(f"Locust not found at {args.locust}: run `make bench-load`, or pass --locust", file=sys.stderr)
        return 2
    args.home = args.home.resolve()
    info = setup(args)
    print("setup:", json.dumps(info))
    settings = bench_settings(args)
    from serving.bundle import load_bundle
    from serving.layout import read_pointer

    bundle = load_bundle(settings.indexes_dir / read_pointer(settings.indexes_dir))
    users = bundle.user_ids.tolist()
    workdir = args.home / "load"
    workdir.mkdir(parents=True, exist_ok=True)
    users_file = workdir / "users.txt"
    users_file.write_text("\n".join(map(str, users)) + "\n")
    catalog = {
        "n_items": int(bundle.index.ntotal),
        "dim": int(bundle.index.d),
        "n_users": len(users),
        "index_type": bundle.manifest.get("index_type"),
        "ranker": bundle.ranker is not None,
    }
    print("catalog:", json.dumps(catalog))
    port = args.port or free_port()
    service = start_service(args, port)
    results, events = [], []
    try:
        warm_up(port, users, args.k)
        for rate in args.rates:
            before = scrape(port)
            result = run_locust(args, port, rate, f"steady@{rate}", users_file, workdir)
            after = scrape(port)
            results.append({**result, **_delta(before, after), **service_percentiles(before, after)})
            print(_line(results[-1]), flush=True)

        # swap: publish the next version of the same pair in the middle of the phase
        from serving.publish import publish_model

        def publish_later() -> None:
            time.sleep(args.duration / 3)
            t = time.perf_counter()
            out = publish_model(
                settings, bundle.model_version, bundle.manifest["ds"], ranker_version=bundle.ranker_version
            )
            events.append(
                f"published {out.index_version} at +{args.duration / 3:.0f} s in {time.perf_counter() - t:.1f} s"
            )

        before = scrape(port)
        thread = threading.Thread(target=publish_later, daemon=True)
        thread.start()
        result = run_locust(args, port, args.event_rate, f"swap@{args.event_rate}", users_file, workdir)
        thread.join()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            served = json.loads(resp.read())["index_version"]
        after = scrape(port)
        results.append(
            {**result, **_delta(before, after), **service_percentiles(before, after), "served_after": served}
        )
        print(_line(results[-1]), flush=True)

        before = scrape(port)
        stopper = outage(online_store_file(settings), args.duration / 3, args.duration / 3, events)
        result = run_locust(args, port, args.event_rate, f"outage@{args.event_rate}", users_file, workdir)
        stopper.join()
        after = scrape(port)
        results.append({**result, **_delta(before, after), **service_percentiles(before, after)})
        print(_line(results[-1]), flush=True)
        time.sleep(31)  # the recommender retries a failed source after 30 s
        warm_up(port, users[1000:], args.k, n=50)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/recommend/{users[0]}?k={args.k}", timeout=10) as resp:
            events.append(f"after restore: reranked={json.loads(resp.read())['reranked']}")
    finally:
        service.send_signal(signal.SIGINT)
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
    for event in events:
        print("event:", event)
    record = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "setup": info,
        "catalog": catalog,
        "workers": args.workers,
        "k": args.k,
        "duration_s": args.duration,
        "phases": results,
        "events": events,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["failures"] == 0 for r in results) else 1


def _delta(before: dict, after: dict) -> dict:
    keys = set(before) | set(after)
    return {
        k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(keys) if k != "requests" and not k.startswith("le_")
    }


def _line(r: dict) -> str:
    extra = " ".join(f"{k}={v}" for k, v in r.items() if k.startswith("degraded_") or k == "served_after")
    service = "/".join(str(r.get(f"service_p{q}_ms_at_most")) for q in (50, 95, 99))
    return (
        f"{r['phase']:<12} target {r['target_rps']:>4} rps  got {r['throughput_rps']:>6.1f} rps  "
        f"p50 {r['p50_ms']:>5.1f} ms  p95 {r['p95_ms']:>5.1f} ms  p99 {r['p99_ms']:>5.1f} ms  "
        f"max {r['max_ms']:>6.1f} ms  failures {r['failures']}  in service p50/p95/p99 <= {service} ms  {extra}"
    )


if __name__ == "__main__":
    sys.exit(main())
