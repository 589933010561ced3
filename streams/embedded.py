"""The embedded runner: the engine over a local stream of events, no broker, no server.

`replay` is what `dripstream replay` runs: a definition document and a `.jsonl` of input
events in, every decision out, byte-identical from run to run.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from aggregates.duplicates import ReusedIdentityError
from aggregates.engine import DEFINITION_COMMANDS, Engine
from aggregates.sequence import Catalog
from schemas.envelope import ENGINE_SOURCE, CloudEvent
from schemas.registry import EVENT_TYPES
from schemas.validation import EventRejected, decode_event, without_bom
from streams.collector import cycle_collector_paused

Sink = Callable[[list[CloudEvent]], None]
DEFINITIONS_CAUSE = "sequences"
NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


class EngineFailedError(Exception):
    """The engine raised on an input line (a bug): the replay cannot go on past it, as its
    state may be half changed."""

    def __init__(self, line: int, error: Exception) -> None:
        self.error = f"the engine failed on it: {type(error).__name__}: {error}"
        super().__init__(f"line {line}: {self.error}")
        self.line = line


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """An input line that is not a valid input event: kept whole, with why (the dead letter)."""

    line: int
    raw: bytes
    field: str
    reason: str

    def message(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"

    def dead_letter(self, file: str | None = None) -> bytes:
        """One JSON line: `raw` is the line as text (readable, but bytes that are not UTF-8
        become U+FFFD), `raw_base64` the exact bytes, in every record (CONTRACT.md §1);
        `file`, when given (a replay of several files), the file `line` counts in."""
        letter: dict[str, object] = {
            "line": self.line,
            "field": self.field,
            "reason": self.reason,
            "raw": self.raw.decode("utf-8", errors="replace"),
            "raw_base64": base64.b64encode(self.raw).decode("ascii"),
        }
        if file is not None:
            letter["file"] = file
        return orjson.dumps(letter)


@dataclass(slots=True)
class ReplayStats:
    inputs: int = 0
    outputs: int = 0
    rejected: int = 0
    beyond_until: int = 0
    first_beyond_until: int | None = None  # its line number
    beyond_until_earlier: int = 0  # of those, timed at or before --until (after the cut)
    own_changes: int = 0
    first_own_change: int | None = None  # its line number
    watermarks: int = 0  # producers' stream.watermark lines, passed over
    first_watermark: int | None = None  # its line number
    duplicates: int = 0  # repeats of an input already decided (same source and id)
    first_duplicate: int | None = None  # its line number
    late: int = 0  # inputs earlier than one before them in the file
    first_late: int | None = None  # its line number
    active_enrollments: int = 0
    last_time: datetime | None = None  # the latest input time so far

    def count_beyond_until(self, line: int, *, earlier: bool) -> None:
        """One input left undecided, on or after the first line past --until."""
        self.beyond_until += 1
        self.first_beyond_until = self.first_beyond_until or line
        self.beyond_until_earlier += earlier

    def count_input(self, line: int, moment: datetime, duplicates: int) -> None:
        """One input handed to the engine, which has skipped `duplicates` repeats so far."""
        self.inputs += 1
        if duplicates > self.duplicates:
            self.duplicates = duplicates
            self.first_duplicate = self.first_duplicate or line
        elif self.last_time is not None and moment < self.last_time:
            # Said only of an input that was decided: a repeat is skipped, not decided late.
            self.late += 1
            self.first_late = self.first_late or line
        if self.last_time is None or moment > self.last_time:
            self.last_time = moment


def decode_input(raw: bytes, line: int) -> CloudEvent | RejectedLine:
    try:
        # Without its line ending, as a Kafka record holds it: a line cut short gets the
        # same reason here and on the worker's dead-letter topic.
        return decode_event(without_bom(raw.rstrip(b"\r\n"), line), as_input=True)
    except EventRejected as rejected:
        return RejectedLine(line, raw, rejected.field, rejected.reason)


def replay(
    definitions: Mapping[str, Any],
    lines: Iterable[bytes],
    sink: Sink,
    on_rejected: Callable[[RejectedLine], None],
    until: datetime | None = None,
    *,
    close_windows: bool = True,
) -> ReplayStats:
    """`close_windows`: at the end, send the owner notices whose minute is still open (see
    `Engine.close_notice_windows`); off to compare with a live pipeline, whose minute goes on."""
    with cycle_collector_paused():
        return _replay(definitions, lines, sink, on_rejected, until, close_windows)


def _replay(
    definitions: Mapping[str, Any],
    lines: Iterable[bytes],
    sink: Sink,
    on_rejected: Callable[[RejectedLine], None],
    until: datetime | None,
    close_windows: bool,
) -> ReplayStats:
    engine = Engine(Catalog.from_document({"account": definitions.get("account")}))
    stats = ReplayStats()
    defined = False

    def emit(events: list[CloudEvent]) -> None:
        if events:
            stats.outputs += len(events)
            sink(events)

    for number, raw in enumerate(lines, start=1):
        if not raw.strip() or (number == 1 and not without_bom(raw, 1).strip()):
            continue
        decoded = decode_input(raw, number)
        if isinstance(decoded, RejectedLine):
            stats.rejected += 1
            on_rejected(decoded)
            continue
        if EVENT_TYPES[decoded.type].direction == "control":
            # A producer's watermark: it orders a worker's topics, it is no fact to decide.
            stats.watermarks += 1
            stats.first_watermark = stats.first_watermark or number
            continue
        if decoded.source == ENGINE_SOURCE:
            # The engine's own contact changes, e.g. in a dump of the contacts topic: they
            # were applied when they were decided, so applying them again would double them.
            stats.own_changes += 1
            stats.first_own_change = stats.first_own_change or number
            continue
        if until is not None and (stats.beyond_until or decoded.time > until):
            # The history up to --until ends at its first line past it: a later line with
            # an earlier time comes after that point in the stream, as in a full replay,
            # where it is decided late. Checked and counted, not decided.
            stats.count_beyond_until(number, earlier=decoded.time <= until)
            continue
        if not defined:
            emit(engine.define(definitions, decoded.time, DEFINITIONS_CAUSE))
            defined = True
        if decoded.type in DEFINITION_COMMANDS:
            emit(engine.fire_before(decoded.time))
        try:
            decided = engine.handle(decoded)
        except ReusedIdentityError as reused:
            stats.rejected += 1
            on_rejected(RejectedLine(number, raw, reused.field, reused.reason))
            continue
        except Exception as error:
            raise EngineFailedError(number, error) from error
        # Outside the engine's failures: an output that cannot be written (a full disk) is
        # the sink's error, told as such, not a bug of the engine on this line.
        emit(decided)
        stats.count_input(number, decoded.time, engine.duplicates)
    end = until or stats.last_time
    if not defined:
        # No input at all: the definitions still appear in the output (the sequences list
        # is built from it), at --until or, with no time anywhere, at the Unix epoch so the
        # output stays a pure function of the files.
        emit(engine.define(definitions, end or NO_TIME, DEFINITIONS_CAUSE))
    if end is not None:
        emit(engine.advance(end, spill=emit))
        if close_windows:
            emit(engine.close_notice_windows(end))
    stats.active_enrollments = engine.active_enrollments()
    return stats
