"""The order a worker decides records in, across the co-partitioned input topics.

Kafka orders records within one topic partition only. Partition p of `contacts`,
`messages`, `calls`, … holds the same contacts, so a reply on `messages` and a tag on
`contacts` for one contact must be decided in the order they happened. Under the event
clock, a group (one partition number across all input topics) merges its topics by event
time, and holds a record back while a topic that may still hold something earlier has not
been read that far (a watermark per topic). Records of one moment go in the order their
producer published them when it says so (`dripstream produce`'s position header), else
topic by topic. Under the wall clock, records are decided as they arrive.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from aggregates.engine import DEFINITION_COMMANDS
from schemas.envelope import ENGINE_SOURCE, CloudEvent

# Where a producer put a record among everything it published: (run, line). Lines order
# the records of one run across topics; records of one moment from different runs go run
# by run, and those of a producer that does not say (UNPLACED) after them, topic by topic.
Position = tuple[int, int]
UNPLACED: Position = (2**63, 0)
# How far a topic has been read: the latest event time, then the position at it.
Mark = tuple[datetime, int, int]
# The header saying it: b"<run>:<line>", a run being when the producer started (µs since
# the epoch, so a later run of the same producer comes after) and a line its place in it.
POSITION_HEADER: Final = "dripstream-position"


def position_header(run: int, line: int) -> tuple[str, bytes]:
    return (POSITION_HEADER, f"{run}:{line}".encode())


def position_of(headers: Iterable[tuple[str, bytes]] | None) -> Position:
    """The producer's position of a record, or UNPLACED: it only breaks ties of event
    time, so a header that does not parse is passed over rather than refused."""
    for name, value in headers or ():
        if name == POSITION_HEADER:
            run, _, line = bytes(value or b"").partition(b":")
            # Beyond 2**63 - 1 a place is not one PostgreSQL can record with the position
            # (streams/store.py, ReadTo): passed over as any header that does not parse.
            if run.isdigit() and line.isdigit() and max(int(run), int(line)) < UNPLACED[0]:
                return (int(run), int(line))
    return UNPLACED


@dataclass(frozen=True, slots=True)
class Pending:
    """One record read from Kafka, decoded, waiting for its turn."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes
    event: CloudEvent | None  # None: rejected (see `rejection`)
    rejection: tuple[str, str] | None = None  # (field, reason)
    position: Position = UNPLACED
    headers: tuple[tuple[str, bytes], ...] = ()  # kept for a rejected record's letter only

    @property
    def is_definition(self) -> bool:
        return self.event is not None and self.event.type in DEFINITION_COMMANDS

    @property
    def time(self) -> datetime | None:
        """The event time that orders it. A rejected record has none and goes first, and
        so does the engine's own contact change written back to `contacts`: it decides
        nothing (it was applied when decided), and given its time, with no producer's place,
        it would sort after the producer's records of that moment and hold back those
        behind it on its topic while other topics' went ahead of them."""
        event = self.event
        if event is None or event.source == ENGINE_SOURCE:
            return None
        return event.time


@dataclass(slots=True)
class GroupBuffer:
    """The records of one partition number, per input topic, in offset order."""

    topics: tuple[str, ...]
    queues: dict[str, deque[Pending]] = field(default_factory=dict)
    seen: dict[str, Mark] = field(default_factory=dict)  # how far each topic has been read
    watermarked: bool = False  # a producer writes watermarks: never guess the end
    # How far each topic has been read counting only what was decided (and the watermarks
    # before it): recorded with the topic's position, it is where a restart resumes, whose
    # reading starts after that position (a watermark it passed is not read again).
    settled: dict[str, Mark] = field(default_factory=dict)
    # Watermarks read behind records still queued: (offset, mark), settled once those go.
    marks_behind: dict[str, deque[tuple[int, Mark]]] = field(default_factory=dict)
    rank: dict[str, int] = field(init=False)  # ties of time and position: topic by topic

    def __post_init__(self) -> None:
        self.rank = {topic: n for n, topic in enumerate(self.topics)}

    def add(self, item: Pending) -> None:
        self.queues.setdefault(item.topic, deque()).append(item)
        if item.time is not None:
            self._read_to(item.topic, (item.time, *item.position))

    def watermark(
        self, topic: str, moment: datetime, position: Position = UNPLACED, offset: int = -1
    ) -> None:
        """Nothing earlier than `moment` follows on this topic, nor anything its producer
        published before `position` (a producer's promise), read at `offset`."""
        self.watermarked = True
        mark = (moment, *position)
        self._read_to(topic, mark)
        if self.queues.get(topic):
            self.marks_behind.setdefault(topic, deque()).append((offset, mark))
        else:
            _raise(self.settled, topic, mark)

    def resume(self, topic: str, mark: Mark, watermarked: bool) -> None:
        """Read up to `mark` already, as recorded with the topic's position: a restart
        goes on from there rather than waiting for a watermark it will not read again."""
        _raise(self.seen, topic, mark)
        _raise(self.settled, topic, mark)
        self.watermarked = self.watermarked or watermarked

    def _read_to(self, topic: str, mark: Mark) -> None:
        _raise(self.seen, topic, mark)

    def _taken(self, item: Pending) -> Pending:
        """`item`, just taken off its queue to be decided: what was read up to it is settled,
        and so are the watermarks read before the next record queued."""
        topic = item.topic
        if item.time is not None:
            _raise(self.settled, topic, (item.time, *item.position))
        behind, queue = self.marks_behind.get(topic), self.queues.get(topic)
        while behind and (not queue or queue[0].offset > behind[0][0]):
            _raise(self.settled, topic, behind.popleft()[1])
        return item

    def complete_until(self) -> datetime | None:
        """The moment up to which every topic of the group has been read, when its queues
        are empty: timers up to it can fire."""
        if any(self.queues.values()) or any(t not in self.seen for t in self.topics):
            return None
        return min(self.seen[t][0] for t in self.topics)

    def holds_definition(self) -> bool:
        return any(q and q[0].is_definition for q in self.queues.values())

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def arrival_order(self) -> list[Pending]:
        """Everything, topic by topic: the wall clock decides in the order records came."""
        out: list[Pending] = []
        for topic in self.topics:
            queue = self.queues.get(topic)
            while queue:
                out.append(self._taken(queue.popleft()))
        return out

    def event_time_order(self, caught_up: set[str]) -> list[Pending]:
        """The records that can be decided now, earliest event time first.

        A record waits while some topic with nothing buffered is not `caught_up` (it may
        hold more) and has not been read up to that record's time (and, at that very time,
        up to its producer's position: a tie goes in the order it was published).
        """
        out: list[Pending] = []
        while (head := self._head()) is not None:
            if (
                not head.is_definition
                and head.time is not None
                and self._behind((head.time, *head.position), caught_up)
            ):
                break
            out.append(self._taken(self.queues[head.topic].popleft()))
        return out

    def held_back(self, caught_up: set[str]) -> tuple[datetime, list[str]] | None:
        """What `event_time_order` is waiting for, after it has run: the time of the
        earliest record held, and the topics not read up to it; None when nothing waits."""
        head = self._head()
        if head is None or head.time is None:
            return None
        behind = self._behind((head.time, *head.position), caught_up)
        return (head.time, behind) if behind else None

    def _head(self) -> Pending | None:
        """The record that goes next, if it may. A definition change has no place in the
        history's time: it takes effect at once (it fires no timer and moves no clock), so
        it goes before the rest, and so does a rejected record (no time)."""
        heads = [q[0] for q in self.queues.values() if q]
        if not heads:
            return None
        return min(
            heads,
            key=lambda p: (
                not p.is_definition,
                p.time is not None,
                p.time or _EPOCH,
                p.position,
                self.rank.get(p.topic, 0),
            ),
        )

    def _behind(self, mark: Mark, caught_up: set[str]) -> list[str]:
        """The topics that may still hold something before `mark`: nothing buffered, not
        `caught_up`, and not read up to it."""
        behind = []
        for topic in self.topics:
            if self.queues.get(topic) or topic in caught_up:
                continue
            seen = self.seen.get(topic)
            if seen is None or not _read_past(seen, mark):
                behind.append(topic)
        return behind


def _raise(marks: dict[str, Mark], topic: str, mark: Mark) -> None:
    if topic not in marks or mark > marks[topic]:
        marks[topic] = mark


def _read_past(seen: Mark, mark: Mark) -> bool:
    """Whether a topic read up to `seen` holds nothing more before `mark`. At the same time,
    lines count within one run only: a later run, or a producer that gives no position,
    may add records of that time anywhere, as before positions (a wait for a line of
    another run would wait for ever: no watermark of that run may come)."""
    if seen[0] != mark[0]:
        return seen[0] > mark[0]
    if seen[1] == mark[1] and mark[1] != UNPLACED[0]:
        return seen[2] >= mark[2]
    return True


_EPOCH = datetime.min.replace(tzinfo=UTC)
_INSTANT = timedelta(microseconds=1)  # the finest step of a datetime: "just before"


def timers_until(
    complete: datetime | None, *, finished: bool, clock: datetime | None
) -> datetime | None:
    """How far (inclusive) a group's timers may fire under the event clock, or None.

    `complete`: the group is read up to that moment (`GroupBuffer.complete_until`), yet an
    input of that very moment may come next, and an input goes before a timer due at the
    same instant (CONTRACT.md §3): the timers before it fire. Once the input has gone quiet
    (`finished`), its end is the history's end, as in a replay: up to and including it,
    or, with no group position known, up to the engine's `clock` for the group.
    """
    if complete is not None:
        return complete if finished else complete - _INSTANT
    return clock if finished else None
