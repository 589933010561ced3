"""Command groups (`dripstream sequences ...`) that several modules add subcommands to."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# A string: the class is not subscriptable at run time on Python 3.11.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def get_or_create_group(commands: SubParsers, name: str, *, help: str | None = None) -> SubParsers:
    """The subcommands of group `name`, creating the group on first use, so that modules
    registering `sequences list` and `sequences apply` share one `sequences` command
    whatever order they register in."""
    existing = commands.choices.get(name)
    if existing is not None:
        for action in existing._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
        raise ValueError(f"command {name!r} exists and is not a group of subcommands")
    parser = commands.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
