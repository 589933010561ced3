"""`dripstream replay`: the engine offline over a history file (CONTRACT.md §4)."""

from __future__ import annotations

import argparse
import sys
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from ops.atomic_output import WholeOrNothing, all_done
from ops.cli_time import moment
from ops.definition_files import load_or_explain
from ops.replay_inputs import InputFiles
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
        "--events",
        required=True,
        type=Path,
        action="append",
        help="input events, one CloudEvent per line; again for a history kept in several"
        " files, read one after the other in the order given (the engine keeps no state"
        " between runs)",
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
    refusal = _outputs_refusal(args)  # every output checked before anything is opened
    if refusal is not None:
        print(f"dripstream: {refusal}", file=sys.stderr)
        return 2
    try:
        with ExitStack() as files:
            opened = _open(files, args)
            if opened is None:
                return 2
            inputs, out, dlq = opened
            report = _Report(inputs, dlq.stream if dlq else None)
            stats = _replay_said(
                definitions, inputs, out.stream if out else sys.stdout.buffer, report, args
            )
            report.close()
            all_done(out, dlq)  # the run went to its end: the files go in place
    except OSError as error:
        # Writing failed (a full disk, say): said in one line; --out and --dlq are left as
        # they were (ops/atomic_output.py).
        # (a write does not say which file it was: every output the run had is named)
        named = [str(path) for path in (args.out, args.dlq) if path is not None]
        if args.out is None:
            named.insert(0, "the standard output")
        target = error.filename or " or ".join(named)
        print(f"dripstream: cannot write {target}: {error.strerror}", file=sys.stderr)
        return 2
    if stats is None:
        return 1
    for note in _notes(stats, inputs, args):
        print(f"dripstream: {note}", file=sys.stderr)
    return 1 if stats.rejected else 0


def _outputs_refusal(args: argparse.Namespace) -> str | None:
    """Why --out or --dlq cannot be written, or would overwrite an input; None if neither."""
    events: list[Path] = args.events
    return (
        _unwritable("--out", args.out)
        or _unwritable("--dlq", args.dlq)
        or _overlapping(
            {"--out": args.out, "--dlq": args.dlq},
            {
                **{"--events" if len(events) == 1 else f"--events {p}": p for p in events},
                "--sequences": args.sequences,
                "--out": args.out,
            },
        )
    )


def _notes(stats: ReplayStats, inputs: InputFiles, args: argparse.Namespace) -> list[str]:
    """What the run tells on stderr at its end besides the rejected lines: the lines it
    passed over or decided out of order, and why."""
    label, notes = inputs.label, []
    if stats.beyond_until and stats.first_beyond_until is not None:
        earlier = stats.beyond_until_earlier
        notes.append(
            f"{label}{stats.beyond_until} event(s) from the first one after"
            f" --until on (at {inputs.at(stats.first_beyond_until)}) were not processed"
            + (
                f", {earlier} of them timed before --until: the history up to it ends at"
                " its first line past it"
                if earlier
                else ""
            )
        )
    if stats.duplicates and stats.first_duplicate is not None:
        notes.append(
            f"{label}{stats.duplicates} event(s) repeated the source and id of"
            f" one decided before and were skipped (the first at"
            f" {inputs.at(stats.first_duplicate)})"
        )
    if stats.late and stats.first_late is not None:
        notes.append(
            f"{label}{stats.late} event(s) were earlier than an event before"
            f" them (the first at {inputs.at(stats.first_late)}); each was decided in file"
            " order, after the timers already fired"
        )
    if stats.own_changes and stats.first_own_change is not None:
        notes.append(
            f"{label}{stats.own_changes} event(s) with source 'dripstream' (the"
            f" first at {inputs.at(stats.first_own_change)}) were the engine's own contact"
            " changes and were not applied again"
        )
    if stats.watermarks and stats.first_watermark is not None:
        notes.append(
            f"{label}{stats.watermarks} stream.watermark event(s) (the first"
            f" at {inputs.at(stats.first_watermark)}) were passed over: they order a worker's"
            " topics, and a replay goes by the file's order"
        )
    if not stats.inputs and not stats.rejected:
        notes.append(
            "no input event was decided: the output holds the sequence definitions"
            f" only, dated {'--until' if args.until else 'the Unix epoch (no time anywhere)'}"
        )
    return notes


def _open(
    files: ExitStack, args: argparse.Namespace
) -> tuple[InputFiles, WholeOrNothing | None, WholeOrNothing | None] | None:
    """The inputs and outputs of the run, opened; None (said on stderr) when one cannot be."""
    inputs = InputFiles([])
    for path in args.events:
        try:
            inputs.files.append((path, files.enter_context(path.open("rb"))))
        except OSError as error:
            print(f"dripstream: cannot read {path}: {error.strerror}", file=sys.stderr)
            return None
    try:
        out = files.enter_context(WholeOrNothing(args.out)) if args.out else None
        dlq = files.enter_context(WholeOrNothing(args.dlq)) if args.dlq else None
    except OSError as error:
        print(f"dripstream: cannot write {error.filename}: {error.strerror}", file=sys.stderr)
        return None
    return inputs, out, dlq


def _replay_said(
    definitions: dict[str, Any],
    inputs: InputFiles,
    out: IO[bytes],
    report: _Report,
    args: argparse.Namespace,
) -> ReplayStats | None:
    """The replay's stats; None when the engine failed on a line (said on stderr)."""
    try:
        stats = _replay_into(definitions, inputs, out, report, args)
    except EngineFailedError as failed:
        traceback.print_exception(failed.__cause__ or failed, file=sys.stderr)
        print(
            f"dripstream: {inputs.place(failed.line)}: {failed.error}; the replay stopped"
            " there (what was decided before it is written). This is a bug in dripstream:"
            " please report it with that line.",
            file=sys.stderr,
        )
        return None
    out.flush()
    return stats


BAD_LINES_PRINTED = 20  # of the whole run, on stderr; --dlq keeps every one


@dataclass(slots=True)
class _Report:
    """Rejected lines: the first BAD_LINES_PRINTED on stderr (a wrong file would print a line
    for each of its lines), every one to --dlq, by its file and line within it."""

    inputs: InputFiles
    dlq: IO[bytes] | None
    shown: int = 0
    more: int = 0

    def rejected(self, line: RejectedLine) -> None:
        path, number = self.inputs.where(line.line)
        if self.shown < BAD_LINES_PRINTED:
            self.shown += 1
            print(
                f"dripstream: {self.inputs.place(line.line)}: {line.field}: {line.reason}",
                file=sys.stderr,
            )
        else:
            self.more += 1
        if self.dlq is not None:
            several = len(self.inputs.files) > 1
            own = replace(line, line=number)
            self.dlq.write(own.dead_letter(str(path) if several else None) + b"\n")

    def close(self) -> None:
        if self.more:
            kept = (
                " (--dlq keeps them all)"
                if self.dlq is not None
                else " (--dlq FILE keeps them all)"
            )
            print(f"dripstream: {self.more} more bad line(s) not shown{kept}", file=sys.stderr)


def _replay_into(
    definitions: dict[str, Any],
    inputs: InputFiles,
    out: IO[bytes],
    report: _Report,
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

    try:
        return replay(
            definitions,
            inputs.lines(),
            sink,
            report.rejected,
            until=args.until,
            close_windows=not args.leave_windows_open,
        )
    finally:
        # Also when the run dies: what was decided before the error is written, and the
        # error goes on up.
        flush()
