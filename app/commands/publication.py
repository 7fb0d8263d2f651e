"""Publication commands: ``versions``, ``rollback`` and ``canary`` over the published index versions."""

from __future__ import annotations

import argparse
import json
import sys

from app.progress import step
from graphrec.settings import get_settings
from serving import promotion
from serving.versions import list_versions


def _publication_error(exc: Exception) -> int:
    """Print a publication/rollback/canary failure on stderr; 2 for "no such thing", else 1."""
    print(f"error: {exc}", file=sys.stderr)
    if isinstance(exc, LookupError) or getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
        return 2
    return 1


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def cmd_versions(args: argparse.Namespace) -> int:
    try:
        versions = list_versions(get_settings())
    except Exception as exc:  # an unreadable CURRENT or CANARY
        return _publication_error(exc)
    if args.json:
        print(json.dumps(versions, indent=2, default=str))
        return 0
    if not versions:
        print(f"nothing published under {get_settings().indexes_dir}")
        return 0
    print("   version  model  ranker  ds          created              recall@20  ndcg@20  index (ANN recall@k)")
    for v in versions:
        mark = "*" if v.get("current") else "c" if v.get("canary") else " "
        if "error" in v:
            print(f" {mark} {v['index_version']}  unreadable: {v['error']}")
            continue
        metrics = v.get("metrics") or {}
        ann = v.get("index_recall_at_k")
        check = f"{ann:.3f}@{v.get('index_recall_k')}" if ann is not None else "-"
        print(
            f" {mark} {v['index_version']:8s} {_fmt(v.get('model_version')):>5s}  {_fmt(v.get('ranker_version')):>6s}  "
            f"{_fmt(v.get('ds')):10s}  {(v.get('created_at') or '-')[:19]:19s}  "
            f"{_fmt(metrics.get('recall_at_20')):>9s}  "
            f"{_fmt(metrics.get('ndcg_at_20')):>7s}  {v.get('index_type') or '-'} ({check})"
        )
    print("(* CURRENT, c CANARY)")
    return 0


def _print_switch(result: dict) -> None:
    print(
        f"CURRENT: {result['previous_version']} -> {result['index_version']} "
        f"(model {result['model_version']}, ranker {result['ranker_version']})"
    )
    for model, move in result["champions"].items():
        print(f"champion {model}: {move['from']} -> {move['to']}")
    for note in result["notes"]:
        print(f"note: {note}")
    if result.get("canary"):
        print(f"note: the live canary {result['canary']['version']} is still running")


def cmd_rollback(args: argparse.Namespace) -> int:
    try:
        with step(f"rolling back to {args.version or 'the previous version'}: CURRENT and the champion aliases"):
            result = promotion.rollback(get_settings(), args.version)
    except Exception as exc:
        return _publication_error(exc)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print_switch(result)
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        if args.action == "start":
            ranker = f" with ranker {args.ranker_version}" if args.ranker_version else ""
            with step(f"publishing model {args.model_version}{ranker} as the live canary"):
                result = promotion.start_canary(
                    settings,
                    args.model_version,
                    ranker_version=args.ranker_version,
                    share=args.share,
                    mode=args.mode,
                    ds=args.ds,
                )
        elif args.action == "status":
            with step("reading the live canary and verifying its and CURRENT's checksums"):
                result = promotion.canary_status(settings)
        elif args.action == "stop":
            result = promotion.stop_canary(settings)
        else:
            with step("promoting the live canary: CURRENT and the champion aliases"):
                result = promotion.promote_canary(settings)
    except Exception as exc:
        return _publication_error(exc)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif args.action == "start":
        spec, out = result["canary"], result["published"]
        print(
            f"live canary {spec['version']} ({spec['mode']}, share {spec['share']:g}): "
            f"model {out['model_version']}, ranker {out['ranker_version']}"
        )
        if result["replaced"]:
            print(f"note: replaced the canary {result['replaced']['version']}")
    elif args.action == "status":
        spec = result["canary"]
        current = result["current"] or {}
        print(
            f"CURRENT: {current.get('index_version')} (model {current.get('model_version')}, "
            f"ranker {current.get('ranker_version')})"
        )
        if spec is None:
            print("no live canary")
        else:
            version = result["version"] or {}
            verified = "ok" if version.get("verified") else "FAILS VERIFICATION"
            print(
                f"CANARY:  {spec['version']} (model {version.get('model_version')}, ranker "
                f"{version.get('ranker_version')}), {spec['mode']}, share {spec['share']:g}, "
                f"since {spec['started_at']}, checksums {verified}"
            )
    elif args.action == "stop":
        stopped = result["stopped"]
        print(
            f"stopped the live canary {stopped['version']}"
            if stopped
            else "removed an unreadable CANARY file"
            if result["cleared"]
            else "no live canary was running"
        )
    else:
        print(f"promoted the live canary {result['promoted']['version']}")
        _print_switch(result)
    return 0
