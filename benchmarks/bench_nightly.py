"""The nightly at three sizes: each step's wall time and peak memory, and how the cost grows.

For each size the simulator writes ``--days`` days of a world (no drift), the *backfill*
lands, validates and featurizes every day before the first measured night, and then two
nights run their steps in order through the same functions the DAG's tasks call:
``validate → features → train → train_ranker → canary → publish → drift_check``. The
first night has no champion yet (a full retrain); the second has the first night's
champion when it was promoted (the steady state of a nightly: warm start, canary against
a champion).

Every step runs in its own Python process, as an Airflow task does, so its wall time
includes the process start and the imports, and its peak memory is that process's
maximum resident set (``wait4``'s ``ru_maxrss``). Steps hand each other JSON results,
like XComs.

Sizes (users × items × events a day; 14-day training window, the product's default):

* ``S``: the demo's world, 800 × 500 × 4,000;
* ``M``: 10,000 × 10,000 × 20,000;
* ``L``: 30,000 × 40,000 × 70,000 (about 1M events in the window, Gowalla-sized).

Run ``make bench-nightly`` (all three) or ``python benchmarks/bench_nightly.py --sizes S M``.
Results go to ``benchmarks/results/nightly.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = {
    "S": {"users": 800, "items": 500, "events_per_day": 4_000},
    "M": {"users": 10_000, "items": 10_000, "events_per_day": 20_000},
    "L": {"users": 30_000, "items": 40_000, "events_per_day": 70_000},
}
NIGHT = ("validate", "features", "train", "train_ranker", "canary", "publish", "drift_check")
RESULTS = Path(__file__).resolve().parent / "results" / "nightly.json"


# One step, in a child process ------------------------------------------------------------
def run_step(step: str, ds: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Call what the DAG's task ``step`` calls, with the settings of this process's environment."""
    from graphrec.lake import parse_ds
    from graphrec.settings import get_settings

    settings = get_settings()
    day = parse_ds(ds)
    if step == "backfill":
        from features.materialize import materialize
        from validation import validate_partition

        seconds = {}
        for name in inputs["days"]:
            started = time.perf_counter()
            validate_partition(settings, parse_ds(name)).raise_for_status()
            materialize(settings, parse_ds(name))
            seconds[name] = round(time.perf_counter() - started, 2)
        return {"days": seconds}
    if step == "validate":
        from validation import validate_partition

        return validate_partition(settings, day).raise_for_status().to_dict()
    if step == "features":
        from features.materialize import materialize

        return materialize(settings, day).to_xcom()
    if step == "train":
        from training.retriever import train_retriever

        return train_retriever(
            settings,
            day,
            window_days=settings.training.window_days,
            epochs=settings.training.epochs,
            reason="schedule",
            model=settings.training.model,
        ).to_xcom()
    if step == "train_ranker":
        from training.ranker import train_ranker
        from training.results import RetrieverResult

        trained = RetrieverResult.from_xcom(inputs["train"])
        return train_ranker(settings, day, trained.model_version, window_days=settings.training.window_days).to_xcom()
    if step == "canary":
        import inspect

        from serving.canary import run_canary
        from training.results import RankerResult, RetrieverResult

        ranked = inputs["train_ranker"]
        ranker = RankerResult.from_xcom(ranked) if "model_version" in ranked else None
        # The training task's result is handed over where the canary takes it (and can reuse it).
        handed = {"ranker_result": ranker} if "ranker_result" in inspect.signature(run_canary).parameters else {}
        return run_canary(
            settings,
            day,
            RetrieverResult.from_xcom(inputs["train"]).model_version,
            force=False,
            ranker_version=None if ranker is None else ranker.model_version,
            **handed,
        ).to_xcom()
    if step == "publish":
        from serving.canary_result import CanaryResult
        from serving.publish import publish_model

        decision = CanaryResult.from_xcom(inputs["canary"])
        if not decision.promoted:
            return {"skipped": f"champion kept: {decision.reason}"}
        return publish_model(
            settings, decision.challenger_version, day, ranker_version=decision.ranker_champion_after
        ).to_xcom()
    if step == "drift_check":
        from monitoring.monitor import monitor_day

        return {"status": monitor_day(settings, day).status}
    raise ValueError(f"unknown step {step!r}")


def _child_main(argv: list[str]) -> int:
    step, ds, inputs_path, output_path = argv
    result = run_step(step, ds, json.loads(Path(inputs_path).read_text()))
    Path(output_path).write_text(json.dumps(result, default=str))
    return 0


def spawn(step: str, ds: str, inputs: dict[str, Any], env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Run one step in a fresh interpreter: ``{"seconds", "peak_mb", "result"}``."""
    inputs_path, output_path = workdir / f"{step}-{ds}.in.json", workdir / f"{step}-{ds}.out.json"
    inputs_path.write_text(json.dumps(inputs, default=str))
    log_path = workdir / f"{step}-{ds}.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        child = subprocess.Popen(
            [sys.executable, __file__, "_step", step, ds, str(inputs_path), str(output_path)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"step {step} of {ds} failed (exit {child.returncode}):\n{tail}")
    return {
        "seconds": round(seconds, 2),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "result": json.loads(output_path.read_text()),
    }


# One size ---------------------------------------------------------------------------------
def _summary(step: str, result: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of a step's result worth keeping in the record."""
    keys = {
        "features": ("seconds", "online"),
        "train": (
            "model_version",
            "recall_at_20",
            "popularity_recall_at_20",
            "epochs_run",
            "best_epoch",
            "refit_epochs",
            "warm_start",
            "init_reason",
            "n_train",
            "seconds",
        ),
        "train_ranker": (
            "model_version",
            "ranker_ndcg_at_10",
            "retrieval_ndcg_at_10",
            "popularity_ndcg_at_10",
            "n_rows",
            "proxy_seconds",
            "feature_join_seconds",
            "seconds",
            "skipped",
        ),
        "canary": ("promoted", "reason", "seconds"),
        "publish": ("index_version", "skipped"),
        "drift_check": ("status",),
        "validate": ("status", "n_rows", "rows"),
    }.get(step, ())
    result = {**result, **result.get("evaluation", {})}  # the ranker's metrics sit in its evaluation
    return {k: result[k] for k in keys if k in result}


def bench_size(name: str, days: int, seed: int, keep: bool) -> dict[str, Any]:
    from graphrec.settings import Settings
    from ingest.simulator import SimulationConfig, simulate

    size = SIZES[name]
    home = Path(tempfile.mkdtemp(prefix=f"graphrec-bench-{name}-"))
    workdir = home / "bench"
    workdir.mkdir()
    env = {**os.environ, "GRAPHREC_HOME": str(home), "GRAPHREC_PROFILE": "embedded"}
    settings = Settings(home=home)
    config = SimulationConfig(
        n_users=size["users"],
        n_items=size["items"],
        events_per_day=size["events_per_day"],
        days=days,
        drift_day=None,
        seed=seed,
    )
    print(
        f"\n== {name}: {size['users']:,} users x {size['items']:,} items x {size['events_per_day']:,} events/day, "
        f"{days} days (home {home})",
        flush=True,
    )
    started = time.perf_counter()
    simulate(config, settings.landing_dir)
    out: dict[str, Any] = {**size, "days": days, "simulate_seconds": round(time.perf_counter() - started, 2)}
    print(f"simulate: {out['simulate_seconds']:.1f} s", flush=True)

    all_days = [config.day(i).isoformat() for i in range(1, days + 1)]
    nights, backfill = all_days[-2:], all_days[:-2]
    step = spawn("backfill", backfill[-1], {"days": backfill}, env, workdir)
    out["backfill"] = {
        "seconds": step["seconds"],
        "peak_mb": step["peak_mb"],
        "days": len(backfill),
        "per_day": step["result"]["days"],
    }
    print(
        f"backfill: validate + materialize {len(backfill)} days in {step['seconds']:.1f} s "
        f"({step['seconds'] / len(backfill):.1f} s a day), peak {step['peak_mb']:.0f} MB",
        flush=True,
    )

    out["nights"] = []
    for ds in nights:
        results: dict[str, Any] = {}
        steps: dict[str, Any] = {}
        for task in NIGHT:
            record = spawn(task, ds, results, env, workdir)
            results[task] = record["result"]
            steps[task] = {
                "seconds": record["seconds"],
                "peak_mb": record["peak_mb"],
                "result": _summary(task, record["result"]),
            }
            print(
                f"  {ds} {task:<13} {record['seconds']:8.1f} s  peak {record['peak_mb']:7.0f} MB  "
                f"{json.dumps(_summary(task, record['result']), default=str)[:160]}",
                flush=True,
            )
        total = round(sum(s["seconds"] for s in steps.values()), 2)
        out["nights"].append({"ds": ds, "steps": steps, "seconds": total})
        print(f"  {ds} night: {total:.1f} s", flush=True)
    out["window_events"] = size["events_per_day"] * settings.training.window_days
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return out


def growth(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per pair of consecutive sizes: the ratio of night times against the ratio of events."""
    names = [n for n in SIZES if n in results]
    rows = []
    for small, big in zip(names, names[1:]):
        events = results[big]["window_events"] / results[small]["window_events"]
        for i, (a, b) in enumerate(zip(results[small]["nights"], results[big]["nights"])):
            rows.append(
                {
                    "from": small,
                    "to": big,
                    "night": i + 1,
                    "events_ratio": round(events, 2),
                    "time_ratio": round(b["seconds"] / a["seconds"], 2),
                }
            )
    return rows


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_step":
        return _child_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--days", type=int, default=16, help="simulated days: backfill all but the last two nights")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep each size's GRAPHREC_HOME (printed)")
    args = parser.parse_args()
    record: dict[str, Any] = {"date": dt.date.today().isoformat(), "machine": machine(), "sizes": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.sizes:
        record["sizes"][name] = bench_size(name, args.days, args.seed, args.keep)
        record["growth"] = growth(record["sizes"])
        args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")  # what is done so far survives a stop
    print("\nsize  simulate  backfill/day  night 1  night 2   (seconds)")
    for name, size in record["sizes"].items():
        nights = [n["seconds"] for n in size["nights"]]
        print(
            f"{name:<5} {size['simulate_seconds']:8.1f}  {size['backfill']['seconds'] / size['backfill']['days']:12.1f}  "
            + "  ".join(f"{s:7.1f}" for s in nights)
        )
    for row in record["growth"]:
        print(
            f"{row['from']} -> {row['to']} night {row['night']}: time x{row['time_ratio']} "
            f"for events x{row['events_ratio']} (linear bound x{row['events_ratio'] * 1.2:.2f})"
        )
    print(f"recorded {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
