"""`dripstream sequences list | show | contacts`, `dripstream history` and `dripstream
projections rebuild`: the read models on the command line, built from an output stream file or
read from PostgreSQL."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from ops.cli_groups import SubParsers, get_or_create_group
from ops.cli_time import moment
from ops.history_files import JoinedFiles, joined
from ops.json_out import write_json
from ops.sequence_text import contacts_text, sequence_text
from ops.service_errors import database_problem
from ops.settings import at_least_one, schema_name, whole_number
from ops.text_table import cell, local_time, table
from projections.base import Projection
from projections.contacts_view import ContactsView
from projections.history import (
    TIMEFRAMES,
    HistoryPage,
    HistoryQuery,
    HistoryReport,
    event_types_for,
)
from projections.loading import load_into
from projections.pg_reads import DEFAULT_SCHEMA, PostgresReadModels, for_reading
from projections.pg_tables import OlderLayoutError
from projections.postgres import PostgresProjection
from projections.rebuild import RebuildFailedError
from projections.sequence_contacts import SequenceContactsPage, SequenceContactsQuery, contacts_of
from projections.sequence_detail import SequenceDetail, detail_of
from projections.sequences_list import SequenceRow, SequencesList
from projections.state import UnknownSequenceError
from projections.stream import LineError, Positioned, read_stream

PROG = "dripstream"
SEQUENCE_HEADERS = (
    "ID",
    "NAME",
    "CREATED",
    "STEPS",
    "PROCESS ON",
    "LINE",
    "CONTACTS",
    "REMAINING TASKS",
    "STATUS",
)
HISTORY_HEADERS = ("CONTACT", "ACTION", "EVENT", "TIME")
NO_SOURCE = "no source: give --history FILE, or --database-url / DATABASE_URL for PostgreSQL"
NO_DATABASE = "no PostgreSQL: give --database-url URL or set DATABASE_URL"
REBUILD_BATCH = 2000  # events per transaction with --resume: few round trips, bounded memory


class _ReadFailedError(Exception):
    """The read models could not be built or reached; the message says why (exit 2)."""


def register(commands: SubParsers) -> None:
    sequences = get_or_create_group(
        commands, "sequences", help="sequence definitions and their list"
    )
    add_sequences_list(sequences)
    add_sequences_show(sequences)
    add_sequences_contacts(sequences)
    add_history(commands)
    add_projections_rebuild(
        get_or_create_group(commands, "projections", help="the read models in PostgreSQL")
    )


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--history",
        type=Path,
        action="append",
        metavar="FILE",
        help="build the read models from this output stream (.jsonl: a replay's --out or a "
        "dump of the output topics); again for more files, read in the order given (say, "
        "a replay's output, then the outcomes `dripstream effects --outcomes` wrote); "
        "without it, read PostgreSQL at DATABASE_URL",
    )
    parser.add_argument("--database-url", metavar="URL", help="PostgreSQL (default: $DATABASE_URL)")
    parser.add_argument(
        "--schema",
        type=schema_name,
        default=DEFAULT_SCHEMA,
        help=f"PostgreSQL schema (default: {DEFAULT_SCHEMA})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit", type=whole_number, metavar="N", help="rows to show (default: all)"
    )
    parser.add_argument("--offset", type=whole_number, default=0, metavar="K", help="rows to skip")


def add_sequences_list(sequences: SubParsers) -> None:
    parser = sequences.add_parser(
        "list",
        help="the Sequences page: settings, contacts enrolled, remaining tasks, status",
        description="One row per sequence, sorted by id: contacts = active enrollments, "
        "remaining tasks = steps not yet executed or skipped across them. Deleted sequences "
        "are not listed.",
    )
    _add_source(parser)
    parser.set_defaults(handler=run_sequences_list)


def add_sequences_show(sequences: SubParsers) -> None:
    parser = sequences.add_parser(
        "show",
        help="one sequence: its settings, steps and triggers",
        description="A sequence's id, name, description, created, status and problems, the "
        "contacts enrolled and remaining tasks, then the definition in force: its settings, "
        "each step (its delay in words and its settings) and each trigger (values, action). "
        "With --json, that object with the definition as published. A deleted sequence is "
        "not shown, as the list does not show it.",
    )
    parser.add_argument("sequence_id", metavar="SEQUENCE_ID")
    _add_source(parser)
    parser.set_defaults(handler=run_sequences_show)


def add_sequences_contacts(sequences: SubParsers) -> None:
    parser = sequences.add_parser(
        "contacts",
        help="the contacts enrolled in a sequence, how far each got and the next step due",
        description="One row per active enrollment (per contact): contact id, name, phone, "
        "e-mail, enrolled at, steps done of the steps in force, the next step and when it is "
        "due; ordered by enrolled at, then contact id, with the total count. --all adds the "
        "enrollments that ended, with their state and reason.",
    )
    parser.add_argument("sequence_id", metavar="SEQUENCE_ID")
    _add_source(parser)
    parser.add_argument(
        "--all",
        dest="ended",
        action="store_true",
        help="also the enrollments that completed or were disenrolled",
    )
    _add_paging(parser)
    parser.set_defaults(handler=run_sequences_contacts)


def add_history(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "history",
        help="the Sequence History report of one sequence",
        description="Every output event of a sequence as (contact, action, event, time), "
        "newest first, with the total count after the filters.",
    )
    parser.add_argument("sequence_id", metavar="SEQUENCE_ID")
    _add_source(parser)
    parser.add_argument(
        "--search", metavar="TEXT", help="contact name, id, e-mail or phone (digits match too)"
    )
    parser.add_argument(
        "--type",
        dest="kind",
        type=_kind,
        metavar="KIND",
        help="enrollment, disenrollment, property_update, communication, creation, step; "
        "trigger (enrollment and disenrollment) or action (step, property_update, "
        "communication, creation); or an exact event type",
    )
    parser.add_argument(
        "--timeframe",
        choices=TIMEFRAMES,
        default="all_time",
        help="only rows in this period, counted from --now in --timezone (default: all_time)",
    )
    parser.add_argument(
        "--now",
        type=moment,
        metavar="TIME",
        help="the moment timeframes count from (RFC 3339; default: the time of the latest "
        "decision about a contact in the stream, so the same file gives the same report)",
    )
    parser.add_argument(
        "--timezone",
        type=_zone,
        metavar="ZONE",
        help="the account's time zone for timeframes (default: the sequence's "
        "account_timezone, else UTC)",
    )
    _add_paging(parser)
    parser.set_defaults(handler=run_history)


def add_projections_rebuild(projections: SubParsers) -> None:
    parser = projections.add_parser(
        "rebuild",
        help="load an output stream into the PostgreSQL read models",
        description="Rebuild the read models in PostgreSQL from an output stream. Without "
        "--resume the whole file is loaded in bulk into new tables that replace the old ones "
        "when done (readers see the old read models until then); with --resume the tables "
        "are kept and only the lines past the stored position are applied, in batches.",
    )
    parser.add_argument(
        "--history",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="the output stream (.jsonl); again for more files, read one after the other in "
        "the order given, as the read commands do (they are first joined into one temporary "
        "file in $TMPDIR, which needs room for them; the position counts the lines of all of "
        "them: --resume with the same files, in the same order)",
    )
    parser.add_argument("--database-url", metavar="URL", help="PostgreSQL (default: $DATABASE_URL)")
    parser.add_argument(
        "--schema",
        type=schema_name,
        default=DEFAULT_SCHEMA,
        help=f"PostgreSQL schema of the read models (default: {DEFAULT_SCHEMA})",
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the tables; apply the lines not yet applied"
    )
    parser.add_argument(
        "--batch-size",
        type=at_least_one,
        default=REBUILD_BATCH,
        metavar="N",
        help=f"events per transaction with --resume (default: {REBUILD_BATCH})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        choices=(1, 2),
        default=2,
        help="processes for a bulk load: 2 reads the history in a second one (default: 2)",
    )
    parser.set_defaults(handler=run_rebuild)


# --- argument types ----------------------------------------------------------------------


def _zone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone: {text!r}") from None
    return text


def _kind(text: str) -> str:
    try:
        event_types_for(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


# --- handlers ----------------------------------------------------------------------------


def run_sequences_list(args: argparse.Namespace) -> int:
    try:
        if args.history is not None:
            model = SequencesList()
            errors = _load(args.history, model)
            rows = model.rows()
            if not model.catalog.sequences:
                # An input file given by mistake reads as an empty page: say why.
                _say(_no_definitions(args.history))
        else:
            errors = []
            with _connect(args) as projection:
                rows = projection.sequence_rows()
    except _ReadFailedError as failed:
        _say(str(failed))
        return 2
    if args.json:
        write_json([row.to_json() for row in rows])
    else:
        sys.stdout.write(sequences_text(rows))
    return 1 if errors else 0


def run_sequences_show(args: argparse.Namespace) -> int:
    def from_files(paths: list[Path]) -> tuple[SequenceDetail, list[LineError]]:
        model = SequencesList()
        errors = _load(paths, model)
        return detail_of(model.catalog, model.book, args.sequence_id), errors

    read = _sequence_view(
        args, from_files, lambda projection: projection.sequence_detail(args.sequence_id)
    )
    if read is None:
        return 2
    detail, errors = read
    if args.json:
        write_json(detail.to_json())
    else:
        sys.stdout.write(sequence_text(detail, _without_definition(args.history)))
    return 1 if errors else 0


def run_sequences_contacts(args: argparse.Namespace) -> int:
    query = SequenceContactsQuery(
        sequence_id=args.sequence_id, ended=args.ended, limit=args.limit, offset=args.offset
    )

    def from_files(paths: list[Path]) -> tuple[SequenceContactsPage, list[LineError]]:
        model = ContactsView()
        errors = _load(paths, model)
        return contacts_of(model.catalog, model.book, model.directory, query), errors

    read = _sequence_view(args, from_files, lambda projection: projection.sequence_contacts(query))
    if read is None:
        return 2
    page, errors = read
    if args.json:
        write_json(page.to_json())
    else:
        sys.stdout.write(contacts_text(page, ended=args.ended))
    return 1 if errors else 0


View = TypeVar("View")


def _sequence_view(
    args: argparse.Namespace,
    from_files: Callable[[list[Path]], tuple[View, list[LineError]]],
    from_database: Callable[[PostgresReadModels], View],
) -> tuple[View, list[LineError]] | None:
    """One sequence's view, from the `--history` files or else PostgreSQL, with the files'
    bad lines; None when it could not be read or the sequence is unknown (said on stderr)."""
    try:
        if args.history is not None:
            return from_files(args.history)
        with _connect(args) as projection:
            return from_database(projection), []
    except _ReadFailedError as failed:
        _say(str(failed))
    except UnknownSequenceError as unknown:
        source = "PostgreSQL" if args.history is None else _names(args.history)
        _say(_unknown_sequence(unknown, source, args.history))
    return None


def _no_definitions(paths: list[Path]) -> str:
    return (
        f"{_names(paths)}: no sequence.defined in it; the read models are built from an"
        " output stream (`replay --out`, `topics dump`)"
    )


def _unknown_sequence(
    unknown: UnknownSequenceError, source: str, paths: list[Path] | None = None
) -> str:
    """As `history` says it of a sequence it does not know; a deleted one says so, with
    the command that reads its history from the same source."""
    sequence_id = unknown.sequence_id
    if unknown.deleted:
        files = "".join(f" --history {shlex.quote(str(path))}" for path in paths or [])
        return (
            f"unknown sequence {sequence_id!r}: deleted in {source} (its history stays"
            f" readable: `{PROG} history {shlex.quote(sequence_id)}{files}`)"
        )
    return f"unknown sequence {sequence_id!r}: no such sequence in {source}"


def _without_definition(paths: list[Path] | None) -> str:
    if paths is not None:
        return (
            f"The settings, steps and triggers are not in {_names(paths)}: its"
            " sequence.defined carries no `definition` (written by an engine from before"
            " the definition was published)."
        )
    return (
        "The settings, steps and triggers are not in the read models: the sequence.defined"
        " they hold carries no `definition` (an engine from before it was published), or was"
        f" read before they kept it (`{PROG} projections run --reset` reads the topics again)."
    )


def run_history(args: argparse.Namespace) -> int:
    query = HistoryQuery(
        sequence_id=args.sequence_id,
        search=args.search,
        kind=args.kind,
        timeframe=args.timeframe,
        now=args.now,
        timezone=args.timezone,
        limit=args.limit,
        offset=args.offset,
    )
    try:
        if args.history is not None:
            report = HistoryReport(only=args.sequence_id)
            errors = _load(args.history, report)
            page = report.query(query)
            source = _names(args.history)
        else:
            errors = []
            with _connect(args) as projection:
                page = projection.history(query)
            source = "PostgreSQL"
    except _ReadFailedError as failed:
        _say(str(failed))
        return 2
    if page is None:
        _say(_unknown_sequence(UnknownSequenceError(args.sequence_id, deleted=False), source))
        if args.history is not None and not report.catalog.sequences:
            _say(_no_definitions(args.history))
        return 2
    if args.json:
        write_json(page.to_json())
    else:
        sys.stdout.write(_history_text(page))
    return 1 if errors else 0


def run_rebuild(args: argparse.Namespace) -> int:
    paths: list[Path] = args.history
    with ExitStack() as stack:
        try:
            stream = stack.enter_context(joined(paths))
        except OSError as error:
            where = error.filename or _names(paths)
            if str(where) in {str(path) for path in paths}:
                _say(f"cannot read {where}: {error.strerror}")
            else:  # the joined copy (in $TMPDIR): a full disk, say
                _say(f"cannot join the --history files into {where}: {error.strerror}")
            return 2
        return _rebuild(args, stream)


def _defines_a_sequence(path: Path) -> bool:
    """Whether the stream holds a `sequence.defined` (an output stream starts with them)."""
    with path.open("rb") as lines:
        return any(b'"sequence.defined"' in line for line in lines)


def _rebuild(args: argparse.Namespace, stream: JoinedFiles) -> int:
    path = stream.path
    if not _defines_a_sequence(path):
        # An input file, say: the read models in place would be replaced by empty ones.
        _say(_no_definitions(args.history) + "; the read models were left as they were")
        return 2
    bar = ProgressBar(sum(lines for _, lines in stream.parts), sys.stderr)
    try:
        with _connect(args, NO_DATABASE) as projection:
            if args.resume:
                projection.ensure_schema()
                applied, errors = _apply_in_batches(projection, path, args.batch_size, bar)
            else:
                rebuilt = projection.rebuild(path, progress=bar.update, workers=args.workers)
                applied, errors = rebuilt.applied, list(rebuilt.errors)
            bar.finish()
            position = projection.position()
    except _ReadFailedError as failed:
        bar.stop()
        _say(str(failed))
        return 2
    for problem in errors[:BAD_LINES_SHOWN]:
        _say(problem.describe(*stream.origin(problem.line)))
    if len(errors) > BAD_LINES_SHOWN:
        _say(f"{len(errors) - BAD_LINES_SHOWN:,} more bad lines not shown ({len(errors):,} in all)")
    print(f"{PROG}: {applied} events applied from {_names(args.history)}; position {position}")
    return 1 if errors else 0


def _apply_in_batches(
    projection: PostgresProjection, path: Path, batch_size: int, bar: ProgressBar
) -> tuple[int, list[LineError]]:
    errors: list[LineError] = []
    applied = 0
    batch: list[Positioned] = []
    for item in read_stream(path):
        if isinstance(item, LineError):
            errors.append(item)
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            applied += projection.apply(batch)
            bar.update(item.position)
            batch.clear()
    applied += projection.apply(batch)
    return applied, errors


# --- sources -------------------------------------------------------------------------------


BAD_LINES_SHOWN = 20  # of each file, on stderr; the rest are counted


def _load(paths: list[Path], model: Projection) -> list[LineError]:
    """Every file into `model`, in the order given; the bad lines of each are reported."""
    found: list[LineError] = []
    for path in paths:
        try:
            errors = load_into(path, model)
        except OSError as error:
            raise _ReadFailedError(f"cannot read {path}: {error.strerror}") from None
        for problem in errors[:BAD_LINES_SHOWN]:
            _say(problem.describe(path))
        if len(errors) > BAD_LINES_SHOWN:
            # A wrong kind of file (a pretty-printed JSON, a YAML) is bad on every line.
            _say(
                f"{path}: {len(errors) - BAD_LINES_SHOWN:,} more bad lines not shown"
                f" ({len(errors):,} in all)"
            )
        found.extend(errors)
    return found


def _names(paths: list[Path]) -> str:
    return ", ".join(str(path) for path in paths)


@contextmanager
def _connect(args: argparse.Namespace, missing: str = NO_SOURCE) -> Iterator[PostgresProjection]:
    """A PostgresProjection on an autocommit connection; every failure becomes one message."""
    url: str | None = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        raise _ReadFailedError(missing)
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as error:
        raise _ReadFailedError(database_problem(str(error))) from None
    try:
        with conn:
            for_reading(conn)
            yield PostgresProjection(conn, schema=args.schema)
    except psycopg.errors.UndefinedTable:
        raise _ReadFailedError(
            f"no read models in schema {args.schema!r}: run `{PROG} projections run` (from"
            f" the topics) or `{PROG} projections rebuild` (from a file)"
        ) from None
    except psycopg.errors.UndefinedColumn:
        raise _ReadFailedError(
            f"the read models in schema {args.schema!r} are of an older layout:"
            f" run `{PROG} projections rebuild`"
        ) from None
    except OlderLayoutError as error:
        raise _ReadFailedError(str(error)) from None
    except psycopg.Error as error:
        raise _ReadFailedError(f"PostgreSQL: {error}") from None
    except RebuildFailedError as error:
        raise _ReadFailedError(str(error)) from None


# --- output --------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def sequences_text(rows: Sequence[SequenceRow]) -> str:
    """The table, then one line per problem of each invalid sequence, naming it:
    `welcome-2: invalid: step s1 (send_sms): needs the sequence's outbound_line`."""
    problems = "".join(
        f"{row.id}: {row.status}: {problem}\n" for row in rows for problem in row.problems
    )
    return table(SEQUENCE_HEADERS, [_sequence_cells(row) for row in rows]) + problems


def _sequence_cells(row: SequenceRow) -> list[str]:
    return [
        cell(row.id),
        cell(row.name),
        cell(row.created),
        str(row.steps),
        cell(row.process_on),
        cell(row.line),
        str(row.contacts),
        str(row.remaining_tasks),
        cell(row.status),
    ]


def _history_text(page: HistoryPage) -> str:
    zone = ZoneInfo(page.timezone)
    cells = [
        [
            cell(line.contact),
            line.action,
            line.event,
            local_time(line.time, zone),
        ]
        for line in page.rows
    ]
    return table(HISTORY_HEADERS, cells) + f"Total: {page.total}\n"


class ProgressBar:
    """`[#######.......]  47% 4700/10000 lines` on one line of stderr, redrawn in place."""

    def __init__(self, total: int, stream: IO[str], width: int = 30) -> None:
        self._total = total
        self._stream = stream
        self._width = width
        self._done = 0
        self._drawn = False
        self._finished = False

    def update(self, done: int) -> None:
        self._done = min(done, self._total)
        fraction = self._done / self._total if self._total else 1.0
        filled = int(self._width * fraction)
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(f"\r[{bar}] {fraction:4.0%} {self._done}/{self._total} lines")
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if not self._finished:
            self.update(self._total)
            self.stop()

    def stop(self) -> None:
        """End the bar's line where it stands (after a failure, or when finished)."""
        if self._drawn and not self._finished:
            self._finished = True
            self._stream.write("\n")
