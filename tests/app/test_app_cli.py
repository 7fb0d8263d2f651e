"""The ``graphrec`` dispatcher: fast to start, and every subcommand reaches its implementation."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from app import cli

HEAVY = ("torch", "mlflow", "feast", "great_expectations", "evidently", "faiss", "airflow", "fastapi")


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """``(words, func)`` of every parser that runs something, subcommands included."""
    func = parser.get_default("func")
    if func is not None:
        yield prefix, func
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))


COMMANDS = sorted(_commands(cli.build_parser()), key=lambda c: c[0])


def test_help_loads_no_heavy_library():
    code = (
        "import sys\nfrom app import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: graphrec" in done.stdout
    assert done.stderr.strip() == "", f"`graphrec --help` imported {done.stderr.strip()}"


@pytest.mark.parametrize(("words", "func"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_every_command_reaches_a_function_of_app_commands(words, func):
    module, name = func.__qualname__.split(".")
    target = getattr(importlib.import_module(f"app.commands.{module}"), name)
    assert callable(target), f"graphrec {' '.join(words)}: app.commands.{module}.{name}"


def test_every_command_module_is_used():
    used = {func.__qualname__.split(".")[0] for _, func in COMMANDS}
    assert used == {"data", "pipeline", "publication", "recommend", "serve", "services"}


@pytest.mark.parametrize("share", ["-0.1", "1.5", "x"])
def test_canary_share_outside_zero_one_is_a_usage_error(share, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["canary", "start", "1", "--share", share])
    assert exit_info.value.code == 2
    assert "--share" in capsys.readouterr().err
