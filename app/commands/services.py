"""Services commands: ``services`` (up, down, status, password, run) and ``airflow-env``."""

from __future__ import annotations

import argparse
import shlex
import sys

from app.airflow_local import airflow_env, explicit_settings_env
from app.services import COMPONENTS, ServicesError, run_component, service_secrets
from app.stack import ServicesStack
from graphrec.settings import get_settings


def cmd_airflow_env(args: argparse.Namespace) -> int:
    settings = get_settings()
    for key, value in airflow_env(settings, api_port=args.port).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_services(args: argparse.Namespace) -> int:
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
            given = stack.settings.airflow.admin_password
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


def _print_stack(stack: ServicesStack, info: dict) -> None:
    s = stack.settings
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
                       (generated once into {info["secrets_file"]}, or GRAPHREC_AIRFLOW__ADMIN_PASSWORD)
  MLflow UI            {info["mlflow"]}
  recommendation API   {info["service"]}/docs   (metrics: {info["service"]}/metrics)
  Celery workers       {", ".join(info["celery_workers"]) or "none (LocalExecutor)"}
  nightly DAG          {"paused" if info["dag_paused"] else "unpaused: runs at 02:00 UTC"}; trigger it from the UI
  alert mail           SMTP {s.alerts.smtp_host}:{s.alerts.smtp_port}, stored under {s.mail_dir}
  this shell           source {env_file}
Stop everything with `make down`.""")
