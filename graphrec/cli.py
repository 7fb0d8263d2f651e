"""The ``graphrec`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from graphrec.settings import get_settings


def _cmd_demo(args: argparse.Namespace) -> int:
    from graphrec.demo import format_summary, run_demo
    from graphrec.sources.simulator import SimulationConfig

    settings = get_settings()
    config = SimulationConfig(
        days=args.days, drift_day=args.drift_day, corrupt_day=args.corrupt_day or None, seed=settings.seed
    )
    summary = run_demo(settings, config=config)
    print(format_summary(summary, settings))
    ok = summary["promotions"] >= 1 and summary["index_version"] and summary["drift_retrain_runs"]
    return 0 if ok else 1


def _cmd_simulate(args: argparse.Namespace) -> int:
    from graphrec.sources.simulator import SimulationConfig, simulate

    settings = get_settings()
    config = SimulationConfig(
        days=args.days, drift_day=args.drift_day or None, corrupt_day=args.corrupt_day or None, seed=args.seed
    )
    for path in simulate(config, Path(args.out) if args.out else settings.landing_dir):
        print(path)
    return 0


def _cmd_load_movielens(args: argparse.Namespace) -> int:
    from graphrec.sources import movielens

    settings = get_settings()
    written = movielens.land(Path(args.path) if args.path else None, settings.landing_dir)
    print(f"landed {len(written)} daily partitions of MovieLens 100K in {settings.landing_dir}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from graphrec.status import collect_status, format_status

    status = collect_status(get_settings())
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else format_status(status))
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from serving.recommender import NoPublishedIndex, Recommender

    if not 1 <= args.k <= 1000:
        print("error: --k must be between 1 and 1000", file=sys.stderr)
        return 2
    settings = get_settings()
    recommender = Recommender(settings, recent_items_fn=_recent_items_fn(settings))
    try:
        rec = recommender.recommend(args.user_id, args.k)
    except NoPublishedIndex as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    payload = rec.model_dump() if hasattr(rec, "model_dump") else rec.__dict__
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        flag = f" (fallback: {payload.get('fallback_reason')})" if payload.get("fallback") else ""
        print(f"user {args.user_id}, index {payload['index_version']}, model v{payload['model_version']}{flag}")
        for rank, item in enumerate(payload["items"], 1):
            print(f"{rank:3d}. item {item['item_id']}  score {item['score']:.4f}")
    return 0


def _recent_items_fn(settings):
    """Exclude what the Feast online store knows the user saw after the index was built.

    Only needed when curated days exist beyond the published index's day; opening the
    Feast store costs seconds, so a CLI call skips it when the index is up to date.
    """
    from graphrec.lake import list_partitions, parse_ds
    from serving.publish import current_version

    version = current_version(settings)
    curated = list_partitions(settings.curated_dir)
    if version and curated:
        manifest = json.loads((settings.indexes_dir / version / "manifest.json").read_text())
        if manifest.get("ds") and parse_ds(manifest["ds"]) >= curated[-1]:
            return None
    from graphrec.features import online_recent_items

    return lambda user_ids: online_recent_items(settings, user_ids)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from serving.app import create_app

    settings = get_settings()
    uvicorn.run(create_app(settings), host=args.host or settings.serve_host, port=args.port or settings.serve_port)
    return 0


def _cmd_mail_sink(args: argparse.Namespace) -> int:
    from monitoring.mailsink import serve_forever

    serve_forever(get_settings())
    return 0


def _cmd_airflow_env(args: argparse.Namespace) -> int:
    import shlex

    from graphrec.airflow_local import airflow_env

    settings = get_settings()
    for key, value in airflow_env(settings, api_port=args.port).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="simulate days and run the nightly DAG on each through Airflow")
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--drift-day", type=int, default=8)
    p.add_argument("--corrupt-day", type=int, default=4, help="day whose partition lands malformed (0: none)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("simulate", help="write simulated daily partitions to landing/")
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--drift-day", type=int, default=8, help="0: no drift")
    p.add_argument("--corrupt-day", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", help="landing directory (default: GRAPHREC_HOME/landing)")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("load-movielens", help="land MovieLens 100K as daily partitions")
    p.add_argument("path", nargs="?", help="ml-100k directory or ml-100k.zip (default: download)")
    p.set_defaults(func=_cmd_load_movielens)

    p = sub.add_parser("status", help="champion, published index, drift and lake counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("recommend", help="top-k items for a user from the published index")
    p.add_argument("user_id", type=int)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_recommend)

    p = sub.add_parser("serve", help="run the recommendation service")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("mail-sink", help="SMTP server on loopback storing messages as .eml files")
    p.set_defaults(func=_cmd_mail_sink)

    p = sub.add_parser("airflow-env", help="print the environment that points Airflow at this installation")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=_cmd_airflow_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
