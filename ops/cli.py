"""The `dripstream` command line: one parser, each command group registered by its module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrars() -> list[Register]:
    # Imported here, not at module level, so `dripstream --help` stays fast and nothing
    # connects or loads heavy clients at import time.
    from ops import (  # noqa: PLC0415 - lazy on purpose, see above
        api_cli,
        demo_cli,
        effects_cli,
        kafka_cli,
        readmodel_cli,
        replay_cli,
    )

    registrars: list[Register] = [
        replay_cli.register,
        readmodel_cli.register,
        kafka_cli.register,
        effects_cli.register,
        api_cli.register,
        demo_cli.register,
    ]
    return registrars


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dripstream",
        description="Event-sourced engine for outreach sequences.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
