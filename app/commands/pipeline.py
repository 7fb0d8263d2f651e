"""Pipeline commands: ``demo`` (simulated days through the nightly DAG) and ``status`` (what it produced)."""

from __future__ import annotations

import argparse
import json

from app.demo import format_summary, run_demo
from app.progress import step
from app.status import collect_status, format_status
from graphrec.settings import get_settings
from ingest.simulator import SimulationConfig


def cmd_demo(args: argparse.Namespace) -> int:
    settings = get_settings()
    config = SimulationConfig(
        days=args.days, drift_day=args.drift_day, corrupt_day=args.corrupt_day or None, seed=settings.seed
    )
    summary = run_demo(settings, config=config)
    print(format_summary(summary, settings))
    ok = summary["promotions"] >= 1 and summary["index_version"] and summary["drift_retrain_runs"]
    return 0 if ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    with step("reading the lake, the published index's checksums and the model registry"):
        status = collect_status(get_settings())
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else format_status(status))
    return 0
