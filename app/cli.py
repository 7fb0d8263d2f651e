"""The ``graphrec`` command line."""

# This module is the parser and the dispatch only; the commands live in app.commands,
# one module per group, each imported when one of its commands runs.
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable


def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The command ``app.commands.<module>.<name>``, imported when it runs."""

    def run(args: argparse.Namespace) -> int:
        # Imported on use, not at the top: `graphrec --help` must not load torch, MLflow or Feast.
        return getattr(importlib.import_module(f"app.commands.{module}"), name)(args)

    run.__qualname__ = f"{module}.{name}"
    return run


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"share must be between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="simulate days and run the nightly DAG on each through Airflow")
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--drift-day", type=int, default=8)
    p.add_argument("--corrupt-day", type=int, default=4, help="day whose partition lands malformed (0: none)")
    p.set_defaults(func=_command("pipeline", "cmd_demo"))

    p = sub.add_parser("simulate", help="write simulated daily partitions to landing/")
    p.add_argument("--users", type=int, default=800)
    p.add_argument("--items", type=int, default=500, help="initial catalog size")
    p.add_argument("--events-per-day", type=int, default=4000, help="mean number of events a day")
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--drift-day", type=int, default=8, help="0: no drift")
    p.add_argument("--corrupt-day", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", help="landing directory (default: GRAPHREC_HOME/landing)")
    p.set_defaults(func=_command("data", "cmd_simulate"))

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
    p.set_defaults(func=_command("data", "cmd_load"))

    p = sub.add_parser("load-movielens", help="same as `graphrec load movielens`")
    p.add_argument("path", nargs="?", help="ml-100k directory or ml-100k.zip (default: download)")
    load_options(p)
    p.set_defaults(func=_command("data", "cmd_load_movielens"))

    p = sub.add_parser("validate", help="validate one landed day (what the DAG's validate task does)")
    p.add_argument("ds", help="YYYY-MM-DD")
    p.add_argument("--profile", choices=["live", "backfill"], default="live")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("data", "cmd_validate"))

    p = sub.add_parser("quarantine", help="what was rejected and why")
    qsub = p.add_subparsers(dest="action", required=True)
    q = qsub.add_parser("list", help="every quarantined attempt with its reason")
    q.add_argument("--json", action="store_true")
    q = qsub.add_parser("show", help="the full reason of one partition's attempts")
    q.add_argument("partition", help="YYYY-MM-DD, ds=YYYY-MM-DD or ds=YYYY-MM-DD/<attempt>")
    q.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("data", "cmd_quarantine"))

    p = sub.add_parser("contract", help="the data contract's checks, severities and thresholds")
    p.add_argument("--profile", choices=["live", "backfill"], default="live")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("data", "cmd_contract"))

    p = sub.add_parser("status", help="champion, published index, drift and lake counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("pipeline", "cmd_status"))

    p = sub.add_parser("recommend", help="top-k items for a user from the published index")
    p.add_argument("user_id", type=int)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("recommend", "cmd_recommend"))

    p = sub.add_parser("versions", help="published index versions, marking CURRENT and the live CANARY")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("publication", "cmd_versions"))

    p = sub.add_parser("rollback", help="serve an earlier version again and move the champion aliases with it")
    p.add_argument("version", nargs="?", help="vNNNN (default: the newest version older than CURRENT)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("publication", "cmd_rollback"))

    p = sub.add_parser("canary", help="a challenger version served live next to CURRENT")
    csub = p.add_subparsers(dest="action", required=True)
    c = csub.add_parser("start", help="publish a registered model without serving it and start it as the canary")
    c.add_argument("model_version", help="registered retriever version or alias")
    c.add_argument("--ranker-version", help="registered ranker version or alias (default: retrieval only)")
    c.add_argument("--share", type=_share, help="share of users it serves (default: settings.serve.live_canary_share)")
    c.add_argument("--mode", choices=["split", "shadow"], help="default: settings.serve.live_canary_mode")
    c.add_argument("--ds", help="history day YYYY-MM-DD (default: the newest curated partition)")
    c.add_argument("--json", action="store_true")
    for action, text in (
        ("status", "the canary and its version"),
        ("stop", "stop the canary (CURRENT unchanged)"),
        ("promote", "CURRENT and the champion aliases move to the canary; the canary ends"),
    ):
        c = csub.add_parser(action, help=text)
        c.add_argument("--json", action="store_true")
    p.set_defaults(func=_command("publication", "cmd_canary"))

    p = sub.add_parser("serve", help="run the recommendation service")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="processes (default: GRAPHREC_SERVE__WORKERS, 1)")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.set_defaults(func=_command("serve", "cmd_serve"))

    p = sub.add_parser("mail-sink", help="SMTP server on loopback storing messages as .eml files")
    p.set_defaults(func=_command("serve", "cmd_mail_sink"))

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
    p.set_defaults(func=_command("services", "cmd_services"))

    p = sub.add_parser("airflow-env", help="print the environment that points Airflow at this installation")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=_command("services", "cmd_airflow_env"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
