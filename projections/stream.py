"""The output stream as the read models see it: CloudEvents JSON lines, parsed leniently.

Read models must keep working while the event schemas grow, so this layer checks only what
a projection needs (a JSON object with `type`, `time` and an object `data`) and leaves the
full validation to schemas/.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import orjson

from schemas.envelope import (
    ENGINE_SOURCE,
    TIME_RANGE_REASON,
    TimeOutOfRange,
    parse_event_time,
)
from schemas.validation import UTF8_BOM

_Item = TypeVar("_Item")

EventKey = tuple[str, str]

# The topics (without the prefix) the read models are built from: the decisions, the effect
# commands, the contact facts (the engine's own changes and the CRM's, which name the
# contacts) and what the providers answered (a send that failed is in the history).
# `projections run` follows them; `topics dump` writes them to a file.
READ_MODEL_TOPICS = ("decisions", "effects", "contacts", "outcomes")


@lru_cache(maxsize=1 << 16)
def parse_moment(text: str) -> datetime:
    """`parse_event_time`, remembered: an output stream names the same instants again and
    again (every output of one input shares its time), and parsing is a large part of a
    rebuild. Held to the engine's range: a timeframe a day or a month past a time near the
    calendar's edge would leave what a datetime can hold."""
    return parse_event_time(text)


# The rules for reading a field, shared by OutputEvent and the rebuild's raw-dict path so
# both read every event the same way.


def text_of(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and value != "" else None


def integer_of(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def moment_of(data: Mapping[str, Any], name: str) -> datetime | None:
    value = text_of(data, name)
    if value is None:
        return None
    try:
        return parse_moment(value)
    except ValueError:
        return None


def contact_of(data: Mapping[str, Any], subject: str | None) -> str | None:
    """`data.contact_id`, else the subject unless it names a sequence."""
    found = text_of(data, "contact_id")
    if found is not None:
        return found
    if subject and not subject.startswith("sequence:"):
        return subject
    return None


class MalformedEventError(ValueError):
    """A record that is not a JSON object with `type`, `time` and `data`."""


@dataclass(frozen=True, slots=True)
class OutputEvent:
    id: str | None
    source: str
    type: str
    time: datetime
    subject: str | None
    data: Mapping[str, Any]

    @classmethod
    def from_json(cls, obj: object) -> OutputEvent:
        # dict first: orjson gives dicts, and the Mapping ABC check is slow on a hot path.
        if not isinstance(obj, dict | Mapping):
            raise MalformedEventError("not a JSON object")
        kind = obj.get("type")
        if not isinstance(kind, str) or not kind:
            raise MalformedEventError("type: is required (a non-empty string)")
        raw_time = obj.get("time")
        if not isinstance(raw_time, str):
            raise MalformedEventError("time: is required (an RFC 3339 string)")
        try:
            moment = parse_moment(raw_time)
        except TimeOutOfRange:
            raise MalformedEventError(f"time: {raw_time!r} {TIME_RANGE_REASON}") from None
        except ValueError:
            raise MalformedEventError(f"time: {raw_time!r} is not RFC 3339") from None
        data = obj.get("data")
        if not isinstance(data, dict | Mapping):
            raise MalformedEventError("data: is required (a JSON object)")
        event_id = obj.get("id")
        source = obj.get("source")
        subject = obj.get("subject")
        return cls(
            id=event_id if isinstance(event_id, str) else None,
            source=source if isinstance(source, str) else "",
            type=kind,
            time=moment,
            subject=subject if isinstance(subject, str) else None,
            data=data,
        )

    @property
    def key(self) -> EventKey | None:
        """CloudEvents identity (source, id); None when the record carries no id."""
        return None if self.id is None else (self.source, self.id)

    @property
    def by_engine(self) -> bool:
        return self.source == ENGINE_SOURCE

    @property
    def moves_clock(self) -> bool:
        return moves_clock(self.source, self.type)

    def text(self, name: str) -> str | None:
        return text_of(self.data, name)

    def moment(self, name: str) -> datetime | None:
        return moment_of(self.data, name)

    @property
    def contact_id(self) -> str | None:
        return contact_of(self.data, self.subject)


@dataclass(frozen=True, slots=True)
class Consumed:
    """An output event read from a Kafka topic, with where it was read; `event` is None for
    a record that is not an output event (it still moves the topic's position)."""

    topic: str
    partition: int
    offset: int
    event: OutputEvent | None


@dataclass(frozen=True, slots=True)
class Positioned:
    """An event and its place in the stream (the 1-based line number of a file)."""

    position: int
    event: OutputEvent


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    reason: str

    def describe(self, path: Path | str, line: int | None = None) -> str:
        """`path:line: reason`; `line` when the file's own numbering differs (joined files)."""
        return f"{path}:{self.line if line is None else line}: {self.reason}"


def decode_line(raw: bytes | str) -> OutputEvent:
    if isinstance(raw, bytes):
        if raw.startswith(UTF8_BOM):
            # A file saved by an editor that writes a byte order mark (or files joined, each
            # with one): its first event is not lost to it, as `replay` reads an input file.
            raw = raw[len(UTF8_BOM) :]
        raw = without_nul(raw)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedEventError(f"not JSON ({exc})") from None
    return OutputEvent.from_json(obj)


NUL_ESCAPE = b"\\u0000"
REPLACEMENT_ESCAPE = b"\\ufffd"


def without_nul(raw: bytes) -> bytes:
    """A JSON line with each NUL character (`\\u0000`) read as U+FFFD: PostgreSQL's text
    holds none, and one in a CRM's contact fact on `contacts` (which the engine refused, but
    the topic still carries) would stop every write of the read models for good."""
    return raw.replace(NUL_ESCAPE, REPLACEMENT_ESCAPE) if NUL_ESCAPE in raw else raw


def read_stream(path: Path | str) -> Iterator[Positioned | LineError]:
    """Every non-blank line of a `.jsonl` file, in order, as an event or the reason it is not."""
    with Path(path).open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                yield Positioned(number, decode_line(raw))
            except MalformedEventError as exc:
                yield LineError(number, str(exc))


def count_lines(path: Path | str) -> int:
    """Lines in a file, counted in chunks (for a progress bar, without decoding anything)."""
    total = 0
    last = b"\n"
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            total += chunk.count(b"\n")
            last = chunk[-1:]
    return total if last == b"\n" else total + 1


def moves_clock(source: str, kind: str) -> bool:
    """Whether an event's time moves the timeframes' clock: a decision about the contacts,
    not a definition (`sequence.*` carry when someone applied them, on a live system
    today's date, whatever the history's time), nor a provider's answer (`effect.*`,
    `dialer.*`: the wall clock's time, even for a history pushed through `--clock event`),
    nor an upstream fact (a CRM clock a year ahead would empty "today")."""
    return source == ENGINE_SOURCE and not kind.startswith(_NOT_DECISIONS)


_NOT_DECISIONS = ("sequence.", "effect.", "dialer.")


def merged_by_time(
    items: Iterable[_Item], partition_of: Callable[[_Item], Hashable], order: Callable[[_Item], Any]
) -> list[_Item]:
    """Records of several partitions as one stream: each partition's records stay in the
    order they were written (`items` gives them so), and among the partitions the earliest
    `order` (time first) goes next. A plain sort by time would put a late input's decisions
    (timed before the ones written ahead of them: a disenrollment before its enrollment)
    ahead of what they follow."""
    partitions: dict[Hashable, list[_Item]] = {}
    for item in items:
        partitions.setdefault(partition_of(item), []).append(item)
    # heapq.merge takes the least of the heads and never reorders an input.
    return list(heapq.merge(*partitions.values(), key=order))
