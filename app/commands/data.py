"""Data commands: ``simulate``, ``load`` (and ``load-movielens``), ``validate``, ``quarantine``, ``contract``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.land import BadSourceRows, land_source
from app.progress import step
from graphrec.settings import Settings, get_settings
from ingest import generic, gowalla, movielens
from ingest.loading import SourceLoad
from ingest.simulator import SimulationConfig, simulate
from validation import MissingPartition, list_quarantined, show_quarantined, validate_partition
from validation.checks import CHECKS, severity_of, validate_overrides


def cmd_simulate(args: argparse.Namespace) -> int:
    settings = get_settings()
    config = SimulationConfig(
        n_users=args.users,
        n_items=args.items,
        events_per_day=args.events_per_day,
        days=args.days,
        drift_day=args.drift_day or None,
        corrupt_day=args.corrupt_day or None,
        seed=args.seed,
    )
    for path in simulate(config, Path(args.out) if args.out else settings.landing_dir):
        print(path)
    return 0


def _source_load(args: argparse.Namespace, settings: Settings) -> SourceLoad:
    if args.source == "movielens":
        return movielens.load_source(
            movielens.resolve(Path(args.path) if args.path else None, settings.root / "downloads")
        )
    if not args.path:
        raise ValueError(f"`graphrec load {args.source}` needs a path")
    if args.source == "gowalla":
        return gowalla.load_source(Path(args.path))
    return generic.load_source(Path(args.path))


def cmd_load(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        where = f" {args.path}" if args.path else ""
        with step(f"reading the {args.source} source{where}"):
            load = _source_load(args, settings)
        checks = "checking, landing" + ("" if args.no_validate else " and validating")
        with step(f"{checks} {len(load.interactions)} rows"):
            report = land_source(settings, load, on_bad_rows=args.on_bad_rows, validate=not args.no_validate)
    except BadSourceRows as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.quarantined == 0 else 5


def cmd_load_movielens(args: argparse.Namespace) -> int:
    args.source = "movielens"
    return cmd_load(args)


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        with step(f"validating {args.ds} ({args.profile} profile)"):
            outcome = validate_partition(get_settings(), args.ds, profile=args.profile)
    except (MissingPartition, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(outcome.to_dict(), indent=2) if args.json else outcome.message())
    return 0 if outcome.ok else 4


def cmd_quarantine(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.action == "list":
        entries = list_quarantined(settings)
        if args.json:
            print(json.dumps(entries, indent=2, default=str))
        elif not entries:
            print(f"nothing quarantined in {settings.quarantine_dir}")
        for e in [] if args.json else entries:
            later = "  (a corrected partition was accepted since)" if e["day_now_curated"] else ""
            print(f"{e['partition']}/{e['attempt']}  {e['rows']} rows  {e['reason']}{later}")
        return 0
    try:
        shown = show_quarantined(settings, args.partition)
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(shown, indent=2, default=str))
        return 0
    for e in shown:
        print(f"{e['partition']}/{e['attempt']}: {e['rows']} rows, checked {e['checked_at']}")
        print(f"  reason: {e['reason']}")
        print(f"  files:  {e['path']}")
        for line in e["failed"]:
            print(f"  - {line}")
        for line in e["warnings"]:
            print(f"  (warning) {line}")
        for suite, page in (e.get("data_docs") or {}).items():
            print(f"  Data Docs ({suite}): file://{page}")
        if e["day_now_curated"]:
            print("  a corrected partition for this day has been accepted since")
    return 0


def cmd_contract(args: argparse.Namespace) -> int:
    config = get_settings().validation
    validate_overrides(config.severity)
    rows = [
        {
            "check": c.name,
            "level": c.level,
            "default": c.severity,
            "severity": severity_of(c.name, config.severity, args.profile),
            "description": c.description,
        }
        for c in CHECKS.values()
    ]
    if args.json:
        print(json.dumps({"checks": rows, "settings": config.model_dump()}, indent=2))
        return 0
    for r in rows:
        changed = "" if r["severity"] == r["default"] else f" (default {r['default']})"
        print(f"{r['level']:6s} {r['check']:24s} {r['severity']:8s}{changed}  {r['description']}")
    thresholds = {k: v for k, v in config.model_dump().items() if k not in ("severity",)}
    print("thresholds: " + ", ".join(f"{k}={v}" for k, v in thresholds.items()))
    return 0
