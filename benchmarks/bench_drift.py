"""Benchmark: the drift loop on the simulator's six scenarios, plus the monitor at 1M events.

For each scenario of :mod:`ingest.scenarios` (``stable``, ``popularity_shift``,
``category_drift``, ``new_items``, ``bot_burst``, ``broken_feed``; same world, weekly
seasonality and noise, drift from ``--drift-day``) the product's own code runs day by day:

1. the scenario's partitions are written to the lake (straight into ``curated/``:
   validation is not under test here);
2. a LightGCN champion is trained on the first ``--window`` days
   (:func:`training.retriever.train_retriever`, MLflow) and published (FAISS bundle);
3. every later day goes through :func:`monitoring.monitor.monitor_day` (signals, Evidently
   reports, the drift policy with its state); when the decision asks for an email it is
   sent through Airflow's SMTP notifier to a real SMTP server on loopback
   (:mod:`monitoring.mailsink`), and when it asks for a retrain the retrain runs as the
   drift-triggered DAG run would: a retriever on ``drift_retrain_window_days`` days,
   the canary gate against the champion, publication if promoted.

Nightly (scheduled) retrains are not run here, so the reference window only moves when
a drift retrain is promoted: a harder setting for false alarms than production.

Reported per scenario: the drift start, the first alert (an episode opening), the
detection delay in days, false alerts (episodes opened before the drift starts), days with
fired signals before the drift, emails received by the SMTP server, retrains triggered and
promoted, and the monitor's time per day. The ``--events`` run times the monitor on one
day of that many events (default 1,000,000) against a 3x larger reference with a random
100,000-user x 40,000-item x 64-dimension champion (Evidently is already imported by then;
importing it in a fresh task process adds ~3 s).

Run: ``make bench-drift`` or ``.venv/bin/python benchmarks/bench_drift.py``; results go
to ``benchmarks/results/drift.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from ingest.scenarios import SCENARIOS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, default=ROOT / "var" / "bench-drift")
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    p.add_argument("--days", type=int, default=44, help="simulated days per scenario")
    p.add_argument("--window", type=int, default=14, help="the champion's training window (days)")
    p.add_argument("--drift-day", type=int, default=29, help="1-based day the drift starts")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--events", type=int, default=1_000_000, help="events of the monitor timing day (0: skip)")
    p.add_argument("--policy", type=Path, default=None, help="drift policy YAML (default: the packaged one)")
    p.add_argument("--out", type=Path, default=RESULTS / "drift.json")
    return p.parse_args(argv)


def bench_settings(home: Path, args: argparse.Namespace):
    from graphrec.settings import Settings

    return Settings(
        home=home,
        training={"window_days": args.window, "epochs": args.epochs},
        ranker={"enabled": False},
        drift={"policy": args.policy},
    )


def retrain(settings, ds: dt.date, reason: str) -> dict:
    """What the drift-triggered DAG run does for the retriever: train, canary, publish if promoted."""
    from serving.canary import run_canary
    from serving.publish import publish_model
    from training.retriever import train_retriever

    trained = train_retriever(
        settings,
        ds,
        window_days=settings.drift.retrain_window_days,
        reason=reason,
        model="lightgcn",
        tags={"trigger": "drift"},
    )
    decision = run_canary(settings, ds, trained.model_version)
    if decision.promoted:
        publish_model(settings, decision.challenger_version, ds)
    return {"version": trained.model_version, "promoted": decision.promoted, "reason": decision.reason}


def run_scenario(name: str, args: argparse.Namespace, smtp_port: int, mail_dir: Path) -> dict:
    from ingest.scenarios import scenario, simulate_scenario
    from monitoring.drift_alerts import send_episode_alert
    from monitoring.monitor import monitor_day
    from serving.publish import publish_model
    from training import registry
    from training.retriever import train_retriever

    sc = scenario(name, days=args.days, drift_day=args.drift_day)
    home = args.home / name
    shutil.rmtree(home, ignore_errors=True)
    settings = bench_settings(home, args)
    simulate_scenario(sc, settings.curated_dir)

    started = time.perf_counter()
    first = sc.config.day(args.window)
    trained = train_retriever(settings, first, window_days=args.window, reason="benchmark", model="lightgcn")
    registry.set_alias(settings, registry.CHAMPION, trained.model_version)
    publish_model(settings, trained.model_version, first)
    setup_s = time.perf_counter() - started

    days, monitor_s, retrains = [], [], []
    before = len(list(mail_dir.glob("*.eml")))
    for index in range(args.window + 1, args.days + 1):
        ds = sc.config.day(index)
        t = time.perf_counter()
        result = monitor_day(settings, ds)
        monitor_s.append(time.perf_counter() - t)
        decision = result.decision  # None when the day was skipped
        email, retrains_now = bool(decision and decision.send_email), bool(decision and decision.trigger_retrain)
        fired, watch = (decision.fired, decision.watch) if decision else ([], [])
        if email:
            send_episode_alert(decision, result.signals, settings, report_path=result.html or result.report_dir)
        if retrains_now:
            retrains.append({"day": index, **retrain(settings, ds, decision.retrain_reason)})
        days.append(
            {
                "day": index,
                "ds": ds.isoformat(),
                "drifting": sc.drifting(index),
                "status": decision.status if decision else None,
                "fired": fired,
                "watch": watch,
                "retrain": retrains_now,
                "email": email,
            }
        )
        print(
            f"  {name:<17} day {index:>2} {'DRIFT' if sc.drifting(index) else '     '} "
            f"{decision.status if decision else '-':<10} "
            f"fired={','.join(fired) or '-'} watch={','.join(watch) or '-'}"
            f"{' EMAIL' if email else ''}{' RETRAIN' if retrains_now else ''}",
            flush=True,
        )
    emails = len(list(mail_dir.glob("*.eml"))) - before

    start = sc.drift_start
    alerts = [d for d in days if d["status"] == "alert"]
    pre = [d for d in days if start is None or d["day"] < start]
    false_alerts = [d["day"] for d in alerts if start is None or d["day"] < start]
    detected = next((d["day"] for d in alerts if start is not None and d["day"] >= start), None)
    return {
        "scenario": name,
        "description": sc.description,
        "gradual": sc.gradual,
        "drift_start": start,
        "drift_end": sc.drift_end,
        "monitored_days": len(days),
        "stable_days_monitored": len(pre),
        "first_alert": detected,
        "delay_days": None if detected is None or start is None else detected - start,
        "false_alerts": len(false_alerts),
        "false_alert_days": false_alerts,
        "fired_days_before_drift": sum(1 for d in pre if d["fired"]),
        "episodes": len(alerts),
        "emails": emails,
        "retrains": len(retrains),
        "retrains_promoted": sum(r["promoted"] for r in retrains),
        "retrain_log": retrains,
        "min_days_between_retrains": min((b["day"] - a["day"] for a, b in zip(retrains, retrains[1:])), default=None),
        "monitor_s_median": round(sorted(monitor_s)[len(monitor_s) // 2], 2),
        "setup_s": round(setup_s, 1),
        "days": days,
    }


def time_monitor(
    args: argparse.Namespace, n_users: int = 100_000, n_items: int = 40_000, dim: int = 64, reference_days: int = 3
) -> dict:
    """:func:`monitoring.monitor.monitor_day` on one day of ``args.events`` events.

    The lake holds ``reference_days`` days of as many events before it (the champion's
    window) from a synthetic world of ``n_users`` x ``n_items`` (``bench_signals``'s
    generator); the champion is a random ``dim``-dimensional model of that size whose
    seen sets are the reference's pairs; yesterday's served lists are on disk (so the
    quality proxy runs). Timed: reading the lake, the signals and their Evidently reports,
    writing them, the policy and its state, in a process that has imported Evidently.
    """
    import numpy as np
    import pandas as pd

    from graphrec import contract
    from ingest.landing import write_partition
    from ingest.simulator import CATEGORIES
    from monitoring.monitor import day_dir, monitor_day
    from monitoring.offline_serving import ServingModel, serve_batch
    from monitoring.report_files import SERVED_FILE
    from serving.history import popularity_order, seen_from_pairs

    sys.path.insert(0, str(HERE))
    from bench_signals import START, generate_day

    home = args.home / "monitor-1m"
    shutil.rmtree(home, ignore_errors=True)
    settings = bench_settings(home, args)
    days = [START + dt.timedelta(days=i) for i in range(reference_days + 1)]
    frames = []
    for index, day in enumerate(days):
        frame = generate_day(day, args.events, n_users, n_items, 0)
        items = pd.DataFrame(
            {contract.ITEM_ID: np.arange(n_items, dtype=np.int64) if index == 0 else np.array([], dtype=np.int64)}
        )
        items[contract.CATEGORY] = np.array(CATEGORIES)[items[contract.ITEM_ID].to_numpy() % len(CATEGORIES)]
        items[contract.FIRST_SEEN_TS] = pd.Timestamp(day.isoformat(), tz="UTC")
        users = pd.DataFrame({contract.USER_ID: np.unique(frame[contract.USER_ID]).astype(np.int64)})
        write_partition(settings.curated_dir, day, frame, items, users)
        frames.append(frame)
    reference = pd.concat(frames[:-1], ignore_index=True)
    rng = np.random.default_rng(0)
    model = ServingModel(
        user_ids=np.arange(n_users, dtype=np.int64),
        user_emb=rng.standard_normal((n_users, dim), dtype=np.float32),
        item_ids=np.arange(n_items, dtype=np.int64),
        item_emb=rng.standard_normal((n_items, dim), dtype=np.float32),
        seen=seen_from_pairs(reference),
        popular=popularity_order(reference),
    )
    yesterday_users = np.unique(frames[-2][contract.USER_ID])
    served = serve_batch(model, rng.choice(yesterday_users, min(len(yesterday_users), 20_000), replace=False))
    out = day_dir(settings, days[-2]) / SERVED_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    served.to_parquet(out)
    del frames, reference

    started = time.perf_counter()
    import evidently  # noqa: F401  (once per task process)

    import_s = time.perf_counter() - started
    started = time.perf_counter()
    result = monitor_day(settings, days[-1], model=model, window=(days[0], days[-2]), offline_recall=0.05)
    seconds = time.perf_counter() - started
    timing = {
        "events_current": result.rows_current,
        "events_reference": result.rows_reference,
        "users": n_users,
        "items": n_items,
        "dim": dim,
        "import_evidently_s": round(import_s, 2),
        "monitor_day_s": round(seconds, 2),
        "status": result.status,
    }
    print(
        f"monitor_day on {result.rows_current:,} events (reference {result.rows_reference:,}, "
        f"{n_users:,} users x {n_items:,} items x {dim}): {seconds:.1f} s (+ import evidently {import_s:.1f} s); "
        f"status {result.status}",
        flush=True,
    )
    return timing


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from monitoring.mailsink import MailSink

    args.home = args.home.resolve()
    args.home.mkdir(parents=True, exist_ok=True)
    mail_dir = args.home / "mail"
    shutil.rmtree(mail_dir, ignore_errors=True)
    results = []
    with MailSink(mail_dir, port=0) as sink:
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": sink.port,
                "extra": {"disable_tls": True, "disable_ssl": True},
            }
        )
        for name in args.scenarios:
            print(f"scenario {name}", flush=True)
            results.append(run_scenario(name, args, sink.port, mail_dir))
    timing = time_monitor(args) if args.events else None
    print()
    print(
        f"{'scenario':<17} {'start':>5} {'alert':>5} {'delay':>5} {'false':>5} {'emails':>6} {'retrains':>8} {'s/day':>6}"
    )
    for r in results:
        print(
            f"{r['scenario']:<17} {r['drift_start'] or '-':>5} {r['first_alert'] or '-':>5} "
            f"{'-' if r['delay_days'] is None else r['delay_days']:>5} {r['false_alerts']:>5} {r['emails']:>6} "
            f"{r['retrains']:>8} {r['monitor_s_median']:>6}"
        )
    record = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "days": args.days,
        "window": args.window,
        "drift_day": args.drift_day,
        "scenarios": results,
        "monitor_1m": timing,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
