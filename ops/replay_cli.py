"""`dripstream replay`: the engine offline over a history file (CONTRACT.md §4)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO, Any

from schemas.definitions import DefinitionRejected, load_definition_file
from schemas.envelope import CloudEvent, parse_time
from streams.embedded import RejectedLine, replay

WRITE_CHUNK = 4096  # events per write: few syscalls, bounded memory


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "replay",
        help="run the engine offline over a .jsonl of input events",
        description="Run the engine over input events in file order, fire every timer due up "
        "to --until, and write every decision as CloudEvents JSON lines.",
    )
    parser.add_argument(
        "--sequences", required=True, type=Path, help="sequence definitions (YAML or JSON)"
    )
    parser.add_argument(
        "--events", required=True, type=Path, help="input events, one CloudEvent per line"
    )
    parser.add_argument(
        "--until",
        type=_moment,
        help="fire timers up to this RFC 3339 time (default: the last event's time)",
    )
    parser.add_argument("--out", type=Path, help="write decisions here (default: stdout)")
    parser.add_argument("--dlq", type=Path, help="write rejected lines here, with their reasons")
    parser.set_defaults(handler=run)


def _moment(text: str) -> Any:
    try:
        return parse_time(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from error


def run(args: argparse.Namespace) -> int:
    try:
        definitions = load_definition_file(args.sequences)
    except DefinitionRejected as rejected:
        print(f"dripstream: {args.sequences}: {rejected}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"dripstream: cannot read {args.sequences}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        events_file = args.events.open("rb")
    except OSError as error:
        print(f"dripstream: cannot read {args.events}: {error.strerror}", file=sys.stderr)
        return 2
    out: IO[bytes] = args.out.open("wb") if args.out else sys.stdout.buffer
    dlq: IO[bytes] | None = args.dlq.open("wb") if args.dlq else None
    buffer: list[bytes] = []

    def sink(events: list[CloudEvent]) -> None:
        buffer.extend(event.encode() for event in events)
        if len(buffer) >= WRITE_CHUNK:
            flush()

    def flush() -> None:
        if buffer:
            out.write(b"\n".join(buffer) + b"\n")
            buffer.clear()

    def on_rejected(rejected: RejectedLine) -> None:
        print(f"dripstream: {args.events}: {rejected.message()}", file=sys.stderr)
        if dlq is not None:
            dlq.write(rejected.dead_letter() + b"\n")

    try:
        with events_file:
            stats = replay(definitions, events_file, sink, on_rejected, until=args.until)
        flush()
    finally:
        if args.out:
            out.close()
        else:
            out.flush()
        if dlq is not None:
            dlq.close()
    if stats.beyond_until:
        print(
            f"dripstream: {stats.beyond_until} event(s) after --until were not processed",
            file=sys.stderr,
        )
    if stats.own_changes:
        print(
            f"dripstream: {stats.own_changes} event(s) with source 'dripstream' were the engine's "
            "own changes and were not applied again",
            file=sys.stderr,
        )
    return 1 if stats.rejected else 0
