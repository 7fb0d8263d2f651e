"""The ``graphrec`` command line."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from graphrec.settings import get_settings


def _cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import format_summary, run_demo
    from ingest.simulator import SimulationConfig

    settings = get_settings()
    config = SimulationConfig(
        days=args.days, drift_day=args.drift_day, corrupt_day=args.corrupt_day or None, seed=settings.seed
    )
    summary = run_demo(settings, config=config)
    print(format_summary(summary, settings))
    ok = summary["promotions"] >= 1 and summary["index_version"] and summary["drift_retrain_runs"]
    return 0 if ok else 1


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ingest.simulator import SimulationConfig, simulate

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


def _source_load(args: argparse.Namespace, settings):
    if args.source == "movielens":
        from ingest import movielens

        return movielens.load_source(
            movielens.resolve(Path(args.path) if args.path else None, settings.root / "downloads")
        )
    if not args.path:
        raise ValueError(f"`graphrec load {args.source}` needs a path")
    if args.source == "gowalla":
        from ingest import gowalla

        return gowalla.load_source(Path(args.path))
    from ingest import generic

    return generic.load_source(Path(args.path))


def _cmd_load(args: argparse.Namespace) -> int:
    from app.land import BadSourceRows, land_source

    settings = get_settings()
    try:
        load = _source_load(args, settings)
        report = land_source(settings, load, on_bad_rows=args.on_bad_rows, validate=not args.no_validate)
    except BadSourceRows as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.quarantined == 0 else 5


def _cmd_load_movielens(args: argparse.Namespace) -> int:
    args.source = "movielens"
    return _cmd_load(args)


def _cmd_validate(args: argparse.Namespace) -> int:
    from validation import MissingPartition, validate_partition

    try:
        outcome = validate_partition(get_settings(), args.ds, profile=args.profile)
    except (MissingPartition, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(outcome.to_dict(), indent=2) if args.json else outcome.message())
    return 0 if outcome.ok else 4


def _cmd_quarantine(args: argparse.Namespace) -> int:
    from validation import list_quarantined, show_quarantined

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


def _cmd_contract(args: argparse.Namespace) -> int:
    from validation.checks import CHECKS, severity_of, validate_overrides

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


def _cmd_status(args: argparse.Namespace) -> int:
    from app.status import collect_status, format_status

    status = collect_status(get_settings())
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else format_status(status))
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from serving.recommender import NoPublishedIndex, Recommender

    if not 1 <= args.k <= 1000:
        print("error: --k must be between 1 and 1000", file=sys.stderr)
        return 2
    settings = get_settings()
    ranker_features = None
    if settings.ranker_enabled and settings.feast_dir.exists():
        from features.store import online_ranker_features

        ranker_features = functools.partial(online_ranker_features, settings)
    recommender = Recommender(
        settings,
        recent_items_fn=_recent_items_fn(settings),
        ranker_features_fn=ranker_features,
        rerank_candidates=settings.ranker_candidates,
    )
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
    from features.store import online_recent_items

    return lambda user_ids: online_recent_items(settings, user_ids)


def _publication_error(exc: Exception) -> int:
    """Print a publication/rollback/canary failure on stderr; 2 for "no such thing", else 1."""
    print(f"error: {exc}", file=sys.stderr)
    if isinstance(exc, LookupError) or getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
        return 2
    return 1


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def _cmd_versions(args: argparse.Namespace) -> int:
    from serving.publish import list_versions

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


def _cmd_rollback(args: argparse.Namespace) -> int:
    from serving.promotion import rollback

    try:
        result = rollback(get_settings(), args.version)
    except Exception as exc:
        return _publication_error(exc)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print_switch(result)
    return 0


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"share must be between 0 and 1, got {text}")
    return value


def _cmd_canary(args: argparse.Namespace) -> int:
    from serving import promotion

    settings = get_settings()
    try:
        if args.action == "start":
            result = promotion.start_canary(
                settings,
                args.model_version,
                ranker_version=args.ranker_version,
                share=args.share,
                mode=args.mode,
                ds=args.ds,
            )
        elif args.action == "status":
            result = promotion.canary_status(settings)
        elif args.action == "stop":
            result = promotion.stop_canary(settings)
        else:
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


def _cmd_serve(args: argparse.Namespace) -> int:
    import os
    import tempfile

    import uvicorn

    settings = get_settings()
    workers = args.workers or settings.serve_workers
    host, port = args.host or settings.serve_host, args.port or settings.serve_port
    if workers == 1:
        from serving.app import create_app

        uvicorn.run(create_app(settings), host=host, port=port, access_log=not args.no_access_log)
        return 0
    # Several processes: each one builds the app from the environment; their metrics meet
    # in a fresh multiprocess directory that /metrics aggregates.
    run_dir = settings.root / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    from serving.metrics import MULTIPROCESS_ENV

    directory = tempfile.mkdtemp(prefix="prometheus-", dir=run_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[MULTIPROCESS_ENV] = directory
    uvicorn.run(
        "serving.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=not args.no_access_log,
    )
    return 0


def _cmd_mail_sink(args: argparse.Namespace) -> int:
    from monitoring.mailsink import serve_forever

    serve_forever(get_settings())
    return 0


def _cmd_airflow_env(args: argparse.Namespace) -> int:
    import shlex

    from app.airflow_local import airflow_env

    settings = get_settings()
    for key, value in airflow_env(settings, api_port=args.port).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _cmd_services(args: argparse.Namespace) -> int:
    from app.services import COMPONENTS, ServicesError, ServicesStack, run_component, service_secrets

    settings = get_settings()
    try:
        if args.action == "run":
            if args.component not in COMPONENTS:
                print(f"unknown component {args.component!r}; one of: {', '.join(COMPONENTS)}", file=sys.stderr)
                return 2
            return run_component(settings, args.component)
        stack = ServicesStack(settings)
        if args.action == "up":
            print("starting the services stack (PostgreSQL and Redis must be running) ...", flush=True)
            info = stack.up(unpause=not args.paused)
            _print_stack(stack, info)
        elif args.action == "down":
            stopped = stack.down()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.action == "status":
            rows = stack.status()
            for row in rows:
                print(f"  {row['name']:<16} pid {row['pid']:<8} {'up' if row['alive'] else 'DOWN'}  {row['log']}")
            if not rows:
                print("the stack is not up (`make up` starts it)")
            return 0 if rows and all(r["alive"] for r in rows) else 1
        elif args.action == "password":
            given = stack.settings.airflow_admin_password
            path = stack.settings.services_dir / "secrets.json"
            if given is None and not path.exists():
                raise ServicesError(
                    f"no stack was set up under {stack.settings.root} (no {path}); use the GRAPHREC_HOME "
                    "of `make up` (var/stack): source var/stack/services/env.sh"
                )
            print(service_secrets(stack.settings)["admin_password"])
    except ServicesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_stack(stack, info: dict) -> None:
    s = stack.settings
    import shlex

    from app.airflow_local import explicit_settings_env

    env_file = s.services_dir / "env.sh"
    exports = {"GRAPHREC_HOME": str(s.root), **explicit_settings_env(s), "GRAPHREC_PROFILE": "services"}
    env_file.write_text(
        "# source this file to use the stack from a shell\n"
        + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items())
    )
    print(f"""
graphrec services are up ({len(stack.processes())} processes, logs in {stack.log_dir})
  Airflow UI and API   {info["airflow"]}   user {info["airflow_user"]}
                       password: source {env_file}; graphrec services password
                       (generated once into {info["secrets_file"]}, or GRAPHREC_AIRFLOW_ADMIN_PASSWORD)
  MLflow UI            {info["mlflow"]}
  recommendation API   {info["service"]}/docs   (metrics: {info["service"]}/metrics)
  Celery workers       {", ".join(info["celery_workers"]) or "none (LocalExecutor)"}
  nightly DAG          {"paused" if info["dag_paused"] else "unpaused: runs at 02:00 UTC"}; trigger it from the UI
  alert mail           SMTP {s.smtp_host}:{s.smtp_port}, stored under {s.mail_dir}
  this shell           source {env_file}
Stop everything with `make down`.""")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="simulate days and run the nightly DAG on each through Airflow")
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--drift-day", type=int, default=8)
    p.add_argument("--corrupt-day", type=int, default=4, help="day whose partition lands malformed (0: none)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("simulate", help="write simulated daily partitions to landing/")
    p.add_argument("--users", type=int, default=800)
    p.add_argument("--items", type=int, default=500, help="initial catalog size")
    p.add_argument("--events-per-day", type=int, default=4000, help="mean number of events a day")
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--drift-day", type=int, default=8, help="0: no drift")
    p.add_argument("--corrupt-day", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", help="landing directory (default: GRAPHREC_HOME/landing)")
    p.set_defaults(func=_cmd_simulate)

    def load_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--on-bad-rows",
            choices=["fail", "quarantine"],
            default="fail",
            help="fail: land nothing if any row breaks the contract (default); quarantine: land the "
            "good rows and keep the bad ones, by line, under quarantine/sources/",
        )
        p.add_argument("--no-validate", action="store_true", help="land only; the nightly DAG validates")
        p.add_argument("--json", action="store_true")

    p = sub.add_parser("load", help="check a source by line, land it as daily partitions and validate them")
    p.add_argument(
        "source",
        choices=["movielens", "gowalla", "source"],
        help="movielens (ml-100k dir or zip; downloads without a path), gowalla (dir with "
        "train.txt/test.txt), source (a TOML column-mapping config for a CSV/Parquet file)",
    )
    p.add_argument("path", nargs="?")
    load_options(p)
    p.set_defaults(func=_cmd_load)

    p = sub.add_parser("load-movielens", help="same as `graphrec load movielens`")
    p.add_argument("path", nargs="?", help="ml-100k directory or ml-100k.zip (default: download)")
    load_options(p)
    p.set_defaults(func=_cmd_load_movielens)

    p = sub.add_parser("validate", help="validate one landed day (what the DAG's validate task does)")
    p.add_argument("ds", help="YYYY-MM-DD")
    p.add_argument("--profile", choices=["live", "backfill"], default="live")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("quarantine", help="what was rejected and why")
    qsub = p.add_subparsers(dest="action", required=True)
    q = qsub.add_parser("list", help="every quarantined attempt with its reason")
    q.add_argument("--json", action="store_true")
    q = qsub.add_parser("show", help="the full reason of one partition's attempts")
    q.add_argument("partition", help="YYYY-MM-DD, ds=YYYY-MM-DD or ds=YYYY-MM-DD/<attempt>")
    q.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_quarantine)

    p = sub.add_parser("contract", help="the data contract's checks, severities and thresholds")
    p.add_argument("--profile", choices=["live", "backfill"], default="live")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_contract)

    p = sub.add_parser("status", help="champion, published index, drift and lake counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("recommend", help="top-k items for a user from the published index")
    p.add_argument("user_id", type=int)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_recommend)

    p = sub.add_parser("versions", help="published index versions, marking CURRENT and the live CANARY")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_versions)

    p = sub.add_parser("rollback", help="serve an earlier version again and move the champion aliases with it")
    p.add_argument("version", nargs="?", help="vNNNN (default: the newest version older than CURRENT)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_rollback)

    p = sub.add_parser("canary", help="a challenger version served live next to CURRENT")
    csub = p.add_subparsers(dest="action", required=True)
    c = csub.add_parser("start", help="publish a registered model without serving it and start it as the canary")
    c.add_argument("model_version", help="registered retriever version or alias")
    c.add_argument("--ranker-version", help="registered ranker version or alias (default: retrieval only)")
    c.add_argument("--share", type=_share, help="share of users it serves (default: settings.live_canary_share)")
    c.add_argument("--mode", choices=["split", "shadow"], help="default: settings.live_canary_mode")
    c.add_argument("--ds", help="history day YYYY-MM-DD (default: the newest curated partition)")
    c.add_argument("--json", action="store_true")
    for action, text in (
        ("status", "the canary and its version"),
        ("stop", "stop the canary (CURRENT unchanged)"),
        ("promote", "CURRENT and the champion aliases move to the canary; the canary ends"),
    ):
        c = csub.add_parser(action, help=text)
        c.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_canary)

    p = sub.add_parser("serve", help="run the recommendation service")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="processes (default: GRAPHREC_SERVE_WORKERS, 1)")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("mail-sink", help="SMTP server on loopback storing messages as .eml files")
    p.set_defaults(func=_cmd_mail_sink)

    p = sub.add_parser("services", help="the services profile: PostgreSQL, Redis, MLflow server, Airflow on Celery")
    ssub = p.add_subparsers(dest="action", required=True)
    c = ssub.add_parser("up", help="start Airflow, MLflow, Celery workers and the service here (make up)")
    c.add_argument("--paused", action="store_true", help="leave the nightly DAG paused (no scheduled runs)")
    ssub.add_parser("down", help="stop exactly what `up` started (make down)")
    ssub.add_parser("status", help="the processes `up` started and whether they still run")
    ssub.add_parser("password", help="print the Airflow admin password")
    c = ssub.add_parser("run", help="run one component in the foreground (containers)")
    c.add_argument(
        "component",
        help="init, api-server, scheduler, dag-processor, triggerer, celery-worker, mlflow, serve or mail-sink",
    )
    p.set_defaults(func=_cmd_services)

    p = sub.add_parser("airflow-env", help="print the environment that points Airflow at this installation")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=_cmd_airflow_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
