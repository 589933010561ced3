"""`dripstream replay`: the engine offline over a history file (CONTRACT.md §4)."""

from __future__ import annotations

import argparse
import sys
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from ops.cli_time import moment
from ops.definition_files import load_or_explain
from schemas.envelope import CloudEvent
from streams.embedded import EngineFailedError, RejectedLine, ReplayStats, replay

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
        type=moment,
        help="fire timers up to this RFC 3339 time (default: the last event's time)",
    )
    parser.add_argument("--out", type=Path, help="write decisions here (default: stdout)")
    parser.add_argument("--dlq", type=Path, help="write rejected lines here, with their reasons")
    parser.add_argument(
        "--leave-windows-open",
        action="store_true",
        help="do not send at the end the owner notices whose minute is still open (as a live"
        " worker, whose minute goes on: to compare with the pipeline's output)",
    )
    parser.set_defaults(handler=run)


def _unwritable(option: str, path: Path | None) -> str | None:
    """Why `path` cannot be written, when that can be told without opening it: opening
    empties it, and a refused run leaves every file as it was."""
    if path is None:
        return None
    if path.is_dir():
        return f"cannot write {path} ({option}): is a directory"
    folder = path.parent
    if not folder.is_dir():
        problem = "no such directory" if not folder.exists() else "not a directory"
        return f"cannot write {path} ({option}): {problem}: {folder}"
    return None


def _overlapping(outputs: dict[str, Path | None], others: dict[str, Path | None]) -> str | None:
    """An output that is another file of the run (`--out` the events file, say): opening
    it for writing would empty it before it is read, or mix two outputs in one file."""
    for option, path in outputs.items():
        for other, named in others.items():
            if path is None or named is None or other == option:
                continue
            same = path.resolve() == named.resolve() or (
                path.exists() and named.exists() and path.samefile(named)
            )
            if same:
                return f"{option} {path} names the same file as {other}: nothing was written"
    return None


def run(args: argparse.Namespace) -> int:
    definitions = load_or_explain(args.sequences)
    if definitions is None:
        return 2
    # Every output checked before anything is opened or processed.
    refusal = (
        _unwritable("--out", args.out)
        or _unwritable("--dlq", args.dlq)
        or _overlapping(
            {"--out": args.out, "--dlq": args.dlq},
            {"--events": args.events, "--sequences": args.sequences, "--out": args.out},
        )
    )
    if refusal is not None:
        print(f"dripstream: {refusal}", file=sys.stderr)
        return 2
    with ExitStack() as files:
        try:
            events_file = files.enter_context(args.events.open("rb"))
        except OSError as error:
            print(f"dripstream: cannot read {args.events}: {error.strerror}", file=sys.stderr)
            return 2
        try:
            out = files.enter_context(args.out.open("wb")) if args.out else sys.stdout.buffer
            dlq = files.enter_context(args.dlq.open("wb")) if args.dlq else None
        except OSError as error:
            print(f"dripstream: cannot write {error.filename}: {error.strerror}", file=sys.stderr)
            return 2
        try:
            stats = _replay_into(definitions, events_file, out, dlq, args)
        except EngineFailedError as failed:
            traceback.print_exception(failed.__cause__ or failed, file=sys.stderr)
            print(
                f"dripstream: {args.events}: {failed}; the replay stopped there (what was decided"
                " before it is written). This is a bug in dripstream: please report it with"
                " that line.",
                file=sys.stderr,
            )
            return 1
        finally:
            if not args.out:
                out.flush()
    if stats.beyond_until:
        print(
            f"dripstream: {stats.beyond_until} event(s) from the first one after --until on"
            " were not processed",
            file=sys.stderr,
        )
    if stats.duplicates:
        print(
            f"dripstream: {args.events}: {stats.duplicates} event(s) repeated the source and id"
            f" of one decided before and were skipped (the first at line {stats.first_duplicate})",
            file=sys.stderr,
        )
    if stats.late:
        print(
            f"dripstream: {args.events}: {stats.late} event(s) were earlier than an event before"
            f" them (the first at line {stats.first_late}); each was decided in file order, after"
            " the timers already fired",
            file=sys.stderr,
        )
    if stats.own_changes:
        print(
            f"dripstream: {args.events}: {stats.own_changes} event(s) with source 'dripstream' (the"
            f" first at line {stats.first_own_change}) were the engine's own contact changes and"
            " were not applied again",
            file=sys.stderr,
        )
    return 1 if stats.rejected else 0


def _replay_into(
    definitions: dict[str, Any],
    events_file: IO[bytes],
    out: IO[bytes],
    dlq: IO[bytes] | None,
    args: argparse.Namespace,
) -> ReplayStats:
    buffer: list[bytes] = []

    def sink(events: list[CloudEvent]) -> None:
        buffer.extend(event.encode() for event in events)
        if len(buffer) >= WRITE_CHUNK:
            flush()

    def flush() -> None:
        if buffer:
            # Cleared before the write: a write that failed is not tried again below.
            chunk = b"\n".join(buffer) + b"\n"
            buffer.clear()
            out.write(chunk)

    def on_rejected(rejected: RejectedLine) -> None:
        print(f"dripstream: {args.events}: {rejected.message()}", file=sys.stderr)
        if dlq is not None:
            dlq.write(rejected.dead_letter() + b"\n")

    try:
        return replay(
            definitions,
            events_file,
            sink,
            on_rejected,
            until=args.until,
            close_windows=not args.leave_windows_open,
        )
    finally:
        # Also when the run dies: what was decided before the error is written, and the
        # error goes on up.
        flush()
