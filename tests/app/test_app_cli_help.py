"""The ``graphrec`` parser: every argument is documented, and its bounds are the service's and the settings'."""

from __future__ import annotations

import argparse

import pytest

from app import cli
from serving.schemas import MAX_K


def _arguments(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ("graphrec",)):
    """``(words, action)`` of every argument of every parser, subcommands included (``-h`` left out)."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        yield prefix, action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _arguments(sub, (*prefix, name))


def _name(words: tuple[str, ...], action: argparse.Action) -> str:
    return f"{' '.join(words)} {'/'.join(action.option_strings) or action.dest}"


ARGUMENTS = list(_arguments(cli.build_parser()))
DEFAULTED = [(w, a) for w, a in ARGUMENTS if a.default not in (None, False, argparse.SUPPRESS)]


def test_the_walk_reaches_the_nested_subcommands():
    names = {_name(w, a) for w, a in ARGUMENTS}
    assert {"graphrec recommend --k", "graphrec canary start --share", "graphrec quarantine show partition"} <= names


@pytest.mark.parametrize(("words", "action"), ARGUMENTS, ids=[_name(w, a) for w, a in ARGUMENTS])
def test_every_argument_has_help(words, action):
    assert action.help and action.help.strip(), f"{_name(words, action)} has no help"


@pytest.mark.parametrize(("words", "action"), DEFAULTED, ids=[_name(w, a) for w, a in DEFAULTED])
def test_every_default_is_in_the_help(words, action):
    assert "%(default)s" in action.help or str(action.default) in action.help, _name(words, action)


def test_subcommands_are_listed_with_their_help():
    for words, action in ARGUMENTS:
        if isinstance(action, argparse._SubParsersAction):
            listed = {choice.dest: choice.help for choice in action._choices_actions}
            assert set(listed) == set(action.choices), " ".join(words)
            assert all(listed.values()), f"{' '.join(words)}: a subcommand without help"


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("k", ["0", str(MAX_K + 1), "1000", "-3", "ten"])
def test_recommend_k_outside_the_api_bound_is_a_usage_error(k, capsys):
    err = _usage_error(["recommend", "7", "--k", k], capsys)
    assert "argument --k" in err
    assert f"between 1 and {MAX_K}" in err or "not an integer" in err


def test_recommend_k_error_names_the_bound(capsys):
    err = _usage_error(["recommend", "7", "--k", "101"], capsys)
    assert "argument --k: must be between 1 and 100, got 101" in err


@pytest.mark.parametrize("k", [1, MAX_K])
def test_recommend_k_inside_the_bound_parses(k):
    assert cli.build_parser().parse_args(["recommend", "7", "--k", str(k)]).k == k


def test_the_cli_and_the_route_share_the_k_bound():
    from fastapi import FastAPI

    from serving.routes import recommend_router

    api = FastAPI()
    api.include_router(recommend_router)
    schema = api.openapi()
    params = {p["name"]: p["schema"] for p in schema["paths"]["/recommend/{user_id}"]["get"]["parameters"]}
    assert (params["k"]["minimum"], params["k"]["maximum"]) == (1, MAX_K)


@pytest.mark.parametrize(
    ("argv", "argument"),
    [
        (["recommend", "-1"], "user_id"),
        (["recommend", str(2**63)], "user_id"),
        (["serve", "--port", "0"], "--port"),
        (["serve", "--port", "65536"], "--port"),
        (["serve", "--workers", "0"], "--workers"),
        (["airflow-env", "--port", "70000"], "--port"),
        (["simulate", "--days", "0"], "--days"),
        (["canary", "start", "1", "--share", "nan"], "--share"),
    ],
)
def test_options_mirroring_settings_bounds_refuse_values_outside(argv, argument, capsys):
    assert f"argument {argument}" in _usage_error(argv, capsys)


@pytest.mark.parametrize("share", ["0", "0.25", "1"])
def test_canary_share_inside_zero_one_parses(share):
    assert cli.build_parser().parse_args(["canary", "start", "1", "--share", share]).share == float(share)
