"""The foreground servers: ``serve`` (the recommendation service) and ``mail-sink`` (loopback SMTP)."""

from __future__ import annotations

import argparse
import os
import tempfile

import uvicorn

from graphrec.settings import get_settings
from monitoring.mailsink import serve_forever
from serving.app import create_app
from serving.metrics import MULTIPROCESS_ENV


def cmd_serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    workers = args.workers or settings.serve.workers
    host, port = args.host or settings.serve.host, args.port or settings.serve.port
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, access_log=not args.no_access_log)
        return 0
    # Several processes: each one builds the app from the environment; their metrics meet
    # in a fresh multiprocess directory that /metrics aggregates.
    run_dir = settings.root / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
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


def cmd_mail_sink(args: argparse.Namespace) -> int:
    serve_forever(get_settings())
    return 0
