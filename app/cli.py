"""The ``graphrec`` command line."""

# This module is the parser and the dispatch only; the commands live in app.commands,
# one module per group, each imported when one of its commands runs.
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from app.progress import step
from serving.schemas import MAX_ID, MAX_K


def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The command ``app.commands.<module>.<name>``, imported when it runs."""

    def run(args: argparse.Namespace) -> int:
        # Imported on use, not at the top: `graphrec --help` must not load torch, MLflow or Feast.
        # A command's libraries take seconds to import, so that wait is a progress step too.
        with step(f"loading the libraries of graphrec {args.command}"):
            command = getattr(importlib.import_module(f"app.commands.{module}"), name)
        return command(args)

    run.__qualname__ = f"{module}.{name}"
    return run


def _bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]`` (``high=None``: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def _share(text: str) -> float:
    """An argparse ``type``: a canary share in [0, 1], the bound of ``settings.serve.live_canary_share``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"share must be between 0 and 1, got {text}")
    return value


#: TCP ports, as ``settings.serve.port`` and ``settings.airflow.port`` bound them.
_port = _bounded_int(1, 65535)
_positive = _bounded_int(1)


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphrec",
        description=__doc__,
        epilog="Slow commands report their steps on stderr when it is a terminal; results go to stdout.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")

    p = sub.add_parser("demo", help="simulate days and run the nightly DAG on each through Airflow")
    p.add_argument("--days", type=_positive, default=10, help="days to simulate and run (default: %(default)s)")
    p.add_argument(
        "--drift-day", type=int, default=8, help="day from which the simulated tastes drift (default: %(default)s)"
    )
    p.add_argument(
        "--corrupt-day",
        type=int,
        default=4,
        help="day whose partition lands malformed, 0: none (default: %(default)s)",
    )
    p.set_defaults(func=_command("pipeline", "cmd_demo"))

    p = sub.add_parser("simulate", help="write simulated daily partitions to landing/")
    p.add_argument("--users", type=_positive, default=800, help="simulated users (default: %(default)s)")
    p.add_argument("--items", type=_positive, default=500, help="initial catalog size (default: %(default)s)")
    p.add_argument(
        "--events-per-day", type=_positive, default=4000, help="mean number of events a day (default: %(default)s)"
    )
    p.add_argument("--days", type=_positive, default=10, help="days to simulate (default: %(default)s)")
    p.add_argument(
        "--drift-day", type=int, default=8, help="day from which tastes drift, 0: no drift (default: %(default)s)"
    )
    p.add_argument(
        "--corrupt-day", type=int, default=0, help="day whose partition is malformed, 0: none (default: %(default)s)"
    )
    p.add_argument(
        "--seed", type=int, default=42, help="random seed; the same seed gives the same days (default: %(default)s)"
    )
    p.add_argument("--out", help="landing directory (default: GRAPHREC_HOME/landing)")
    p.set_defaults(func=_command("data", "cmd_simulate"))

    def load_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--on-bad-rows",
            choices=["fail", "quarantine"],
            default="fail",
            help="fail: land nothing if any row breaks the contract; quarantine: land the good rows and keep "
            "the bad ones, by line, under quarantine/sources/ (default: %(default)s)",
        )
        p.add_argument("--no-validate", action="store_true", help="land only and leave validation to the nightly DAG")
        _json_option(p)

    p = sub.add_parser("load", help="check a source by line, land it as daily partitions and validate them")
    p.add_argument(
        "source",
        choices=["movielens", "gowalla", "source"],
        help="movielens (ml-100k dir or zip; downloads without a path), gowalla (dir with "
        "train.txt/test.txt), source (a TOML column-mapping config for a CSV/Parquet file)",
    )
    p.add_argument(
        "path",
        nargs="?",
        help="the source's directory, zip or TOML config (needed for gowalla and source; default for "
        "movielens: download ml-100k)",
    )
    load_options(p)
    p.set_defaults(func=_command("data", "cmd_load"))

    p = sub.add_parser("load-movielens", help="same as `graphrec load movielens`")
    p.add_argument("path", nargs="?", help="ml-100k directory or ml-100k.zip (default: download)")
    load_options(p)
    p.set_defaults(func=_command("data", "cmd_load_movielens"))

    def profile_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--profile",
            choices=["live", "backfill"],
            default="live",
            help="severity profile of the contract: live (a nightly delivery) or backfill (history loaded "
            "at once) (default: %(default)s)",
        )

    p = sub.add_parser("validate", help="validate one landed day (what the DAG's validate task does)")
    p.add_argument("ds", help="the day to validate, YYYY-MM-DD")
    profile_option(p)
    _json_option(p)
    p.set_defaults(func=_command("data", "cmd_validate"))

    p = sub.add_parser("quarantine", help="what was rejected and why")
    qsub = p.add_subparsers(dest="action", required=True, metavar="ACTION", help="one of:")
    q = qsub.add_parser("list", help="every quarantined attempt with its reason")
    _json_option(q)
    q = qsub.add_parser("show", help="the full reason of one partition's attempts")
    q.add_argument("partition", help="YYYY-MM-DD, ds=YYYY-MM-DD or ds=YYYY-MM-DD/<attempt>")
    _json_option(q)
    p.set_defaults(func=_command("data", "cmd_quarantine"))

    p = sub.add_parser("contract", help="the data contract's checks, severities and thresholds")
    profile_option(p)
    _json_option(p)
    p.set_defaults(func=_command("data", "cmd_contract"))

    p = sub.add_parser("status", help="champion, published index, drift and lake counts")
    _json_option(p)
    p.set_defaults(func=_command("pipeline", "cmd_status"))

    p = sub.add_parser("recommend", help="top-k items for a user from the published index, as the service answers")
    p.add_argument("user_id", type=_bounded_int(0, MAX_ID), help="external user id (int64, 0 to 2**63 - 1)")
    p.add_argument(
        "--k",
        type=_bounded_int(1, MAX_K),
        default=10,
        help=f"number of items, 1 to {MAX_K} as on the service's /recommend (default: %(default)s)",
    )
    _json_option(p)
    p.set_defaults(func=_command("recommend", "cmd_recommend"))

    p = sub.add_parser("versions", help="published index versions, marking CURRENT and the live CANARY")
    _json_option(p)
    p.set_defaults(func=_command("publication", "cmd_versions"))

    p = sub.add_parser("rollback", help="serve an earlier version again and move the champion aliases with it")
    p.add_argument("version", nargs="?", help="vNNNN (default: the newest version older than CURRENT)")
    _json_option(p)
    p.set_defaults(func=_command("publication", "cmd_rollback"))

    p = sub.add_parser("canary", help="a challenger version served live next to CURRENT")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION", help="one of:")
    c = csub.add_parser("start", help="publish a registered model without serving it and start it as the canary")
    c.add_argument("model_version", help="registered retriever version or alias")
    c.add_argument("--ranker-version", help="registered ranker version or alias (default: retrieval only)")
    c.add_argument(
        "--share",
        type=_share,
        help="share of users it serves in split mode, 0 to 1 (default: GRAPHREC_SERVE__LIVE_CANARY_SHARE, 0.1)",
    )
    c.add_argument(
        "--mode",
        choices=["split", "shadow"],
        help="split: the share of users gets the canary's answer; shadow: every request is also answered by "
        "the canary, and the champion's answer is served (default: GRAPHREC_SERVE__LIVE_CANARY_MODE, split)",
    )
    c.add_argument("--ds", help="history day YYYY-MM-DD (default: the newest curated partition)")
    _json_option(c)
    for action, text in (
        ("status", "the canary and its version"),
        ("stop", "stop the canary (CURRENT unchanged)"),
        ("promote", "CURRENT and the champion aliases move to the canary; the canary ends"),
    ):
        _json_option(csub.add_parser(action, help=text))
    p.set_defaults(func=_command("publication", "cmd_canary"))

    p = sub.add_parser("serve", help="run the recommendation service")
    p.add_argument("--host", help="address to listen on (default: GRAPHREC_SERVE__HOST, 127.0.0.1)")
    p.add_argument("--port", type=_port, help="port to listen on, 1 to 65535 (default: GRAPHREC_SERVE__PORT, 8000)")
    p.add_argument("--workers", type=_positive, help="processes, at least 1 (default: GRAPHREC_SERVE__WORKERS, 1)")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.set_defaults(func=_command("serve", "cmd_serve"))

    p = sub.add_parser("mail-sink", help="SMTP server on loopback storing messages as .eml files")
    p.set_defaults(func=_command("serve", "cmd_mail_sink"))

    p = sub.add_parser("services", help="the services profile: PostgreSQL, Redis, MLflow server, Airflow on Celery")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION", help="one of:")
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
    p.add_argument(
        "--port",
        type=_port,
        default=8080,
        help="port of the Airflow API server the environment names (default: %(default)s)",
    )
    p.set_defaults(func=_command("services", "cmd_airflow_env"))
    return parser


def main(argv: list[str] | None = None) -> int:
    from graphrec.logs import quiet_libraries

    quiet_libraries()  # the commands' output carries graphrec's lines, not the libraries' import chatter
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
