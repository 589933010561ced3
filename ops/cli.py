"""The `dripstream` command line: one parser, each command group registered by its module."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import signal
import sys
from collections.abc import Callable, Sequence

from ops.service_errors import machine_problem, service_problem

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# Which modules register each command. Only those of the command being run are imported,
# so `dripstream replay` does not load aiohttp, psycopg and the provider SDKs first (that
# was a second of start-up on every call). A test checks this table against what the
# modules register.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "replay": ("ops.replay_cli",),
    "sequences": ("ops.readmodel_cli", "ops.kafka_cli", "ops.sequence_commands_cli"),
    "history": ("ops.readmodel_cli",),
    "projections": ("ops.readmodel_cli", "ops.projector_cli"),
    "worker": ("ops.kafka_cli",),
    "produce": ("ops.kafka_cli",),
    "topics": ("ops.topics_cli",),
    "effects": ("ops.effects_cli",),
    "api": ("ops.api_cli",),
    "demo": ("ops.demo_cli",),
}


def _registrars(modules: Sequence[str]) -> list[Register]:
    # Imported here, not at module level, so nothing connects or loads heavy clients at
    # import time.
    return [importlib.import_module(name).register for name in modules]


def all_modules() -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for names in COMMAND_MODULES.values() for name in names))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with only `command`'s when it is a known one."""
    parser = argparse.ArgumentParser(
        prog="dripstream",
        description="Event-sourced engine for outreach sequences.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars(COMMAND_MODULES.get(command or "", all_modules())):
        register(commands)
    return parser


def _terminated(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        # Tables on a terminal whose encoding lacks a name's letters show a stand-in rather
        # than end the command (JSON goes out as UTF-8: ops/json_out.py; stderr keeps
        # Python's escapes).
        sys.stdout.reconfigure(errors="replace")
    if argv is None:
        # SIGTERM ends a command as Ctrl-C does, unwinding (a replay's --out is then left as
        # it was, not beside a partial file); the services install their own handlers.
        signal.signal(signal.SIGTERM, _terminated)
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(arguments[0] if arguments else None)
    args = parser.parse_args(arguments)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (`| head`): what it did not read is not an error. Python
        # would otherwise complain again while flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        # Ctrl-C: the services stop on their own signal handlers; a command in the middle
        # of its work ends here, its file outputs left as they were (ops/atomic_output.py).
        print("dripstream: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        problem = service_problem(
            error,
            bootstrap=getattr(args, "bootstrap", None),
            database_url=getattr(args, "database_url", None),
        ) or machine_problem(error)
        if problem is None:
            raise
        print(f"dripstream: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
