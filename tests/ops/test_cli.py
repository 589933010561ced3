"""The command line loads only the modules of the command being run, and refuses files it
cannot use before it does anything."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from ops.cli import COMMAND_MODULES, build_parser, main


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the parser has no subcommands")


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    try:
        return set(_commands(parser))
    except AssertionError:
        return set()


def test_the_table_names_every_command_the_modules_register() -> None:
    assert set(_commands(build_parser())) == set(COMMAND_MODULES)


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_a_command_parsed_alone_has_everything_it_has_in_the_full_parser(command: str) -> None:
    full = _commands(build_parser())[command]
    alone = _commands(build_parser(command))[command]
    assert _subcommands(alone) == _subcommands(full)
    assert {a.dest for a in alone._actions} == {a.dest for a in full._actions}


def test_an_unknown_command_gets_the_full_list_in_its_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser("nonsense").parse_args(["nonsense"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'nonsense'" in error
    assert all(command in error for command in COMMAND_MODULES)


def test_replay_does_not_import_the_servers_and_clients() -> None:
    probe = (
        "import sys\n"
        "from ops.cli import build_parser\n"
        "build_parser('replay')\n"
        "print(' '.join(sorted(m for m in ('aiohttp', 'psycopg', 'twilio', 'sendgrid', "
        "'aiokafka') if m in sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.split()
    assert loaded == []


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--commands", "{tmp}/none.jsonl"], "cannot read {tmp}/none.jsonl (--commands): No such"),
        (["--commands", "{tmp}"], "cannot read {tmp} (--commands): Is a directory"),
        (
            ["--commands", "{tmp}/c.jsonl", "--outcomes", "{tmp}/no/dir"],
            "cannot write {tmp}/no/dir (--outcomes): No such file",
        ),
    ],
)
def test_effects_over_files_it_cannot_use_says_so_before_carrying_out_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], said: str
) -> None:
    (tmp_path / "c.jsonl").write_bytes(b"")
    arguments = [part.format(tmp=tmp_path) for part in extra]
    assert main(["effects", *arguments]) == 2
    assert f"dripstream effects: {said.format(tmp=tmp_path)}" in capsys.readouterr().err


def _options_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                found += _options_without_help(command, f"{path} {name}")
        elif action.option_strings and action.help is None:
            found.append(f"{path} {action.option_strings[0]}")
    return found


def test_every_option_of_every_command_says_what_it_does() -> None:
    # docs/cli.md sends readers to `--help` for "every option with a line on each"
    assert _options_without_help(build_parser(), "dripstream") == []
