"""The order a worker decides records in, across the co-partitioned input topics.

Kafka orders records within one topic partition only. Partition p of `contacts`,
`messages`, `calls`, … holds the same contacts, so a reply on `messages` and a tag on
`contacts` for one contact must be decided in the order they happened. Under the event
clock, a group (one partition number across all input topics) merges its topics by event
time, and holds a record back while a topic that may still hold something earlier has not
been read that far (a watermark per topic). Under the wall clock, records are decided as
they arrive.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aggregates.engine import DEFINITION_COMMANDS
from schemas.envelope import CloudEvent


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

    @property
    def is_definition(self) -> bool:
        return self.event is not None and self.event.type in DEFINITION_COMMANDS

    @property
    def time(self) -> datetime | None:
        """The event time that orders it; a rejected record has none and goes first."""
        return self.event.time if self.event is not None else None


@dataclass(slots=True)
class GroupBuffer:
    """The records of one partition number, per input topic, in offset order."""

    topics: tuple[str, ...]
    queues: dict[str, deque[Pending]] = field(default_factory=dict)
    seen: dict[str, datetime] = field(default_factory=dict)  # latest event time read per topic
    watermarked: bool = False  # a producer writes watermarks: never guess the end

    def add(self, item: Pending) -> None:
        self.queues.setdefault(item.topic, deque()).append(item)
        moment = item.time
        if moment is not None and (item.topic not in self.seen or moment > self.seen[item.topic]):
            self.seen[item.topic] = moment

    def watermark(self, topic: str, moment: datetime) -> None:
        """Nothing earlier than `moment` follows on this topic (a producer's promise)."""
        self.watermarked = True
        if topic not in self.seen or moment > self.seen[topic]:
            self.seen[topic] = moment

    def complete_until(self) -> datetime | None:
        """The moment up to which every topic of the group has been read, when its queues
        are empty: timers up to it can fire."""
        if any(self.queues.values()) or any(t not in self.seen for t in self.topics):
            return None
        return min(self.seen[t] for t in self.topics)

    def holds_definition(self) -> bool:
        return any(q and q[0].is_definition for q in self.queues.values())

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def arrival_order(self) -> list[Pending]:
        """Everything, topic by topic: the wall clock decides in the order records came."""
        out: list[Pending] = []
        for topic in self.topics:
            queue = self.queues.get(topic)
            if queue:
                out.extend(queue)
                queue.clear()
        return out

    def event_time_order(self, caught_up: set[str]) -> list[Pending]:
        """The records that can be decided now, earliest event time first.

        A record waits while some topic with nothing buffered is not `caught_up` (it may
        hold more) and has not been read up to that record's time.
        """
        out: list[Pending] = []
        rank = {topic: n for n, topic in enumerate(self.topics)}
        while True:
            heads = [q[0] for q in self.queues.values() if q]
            if not heads:
                return out
            # A definition change has no place in the history's time: it takes effect at
            # once (it fires no timer and moves no clock), so it goes before the rest.
            head = min(
                heads,
                key=lambda p: (
                    not p.is_definition,
                    p.time is not None,
                    p.time or _EPOCH,
                    rank.get(p.topic, 0),
                ),
            )
            if (
                not head.is_definition
                and head.time is not None
                and not self._safe(head.time, caught_up)
            ):
                return out
            out.append(self.queues[head.topic].popleft())

    def _safe(self, moment: datetime, caught_up: set[str]) -> bool:
        for topic in self.topics:
            if self.queues.get(topic) or topic in caught_up:
                continue
            seen = self.seen.get(topic)
            if seen is None or seen < moment:
                return False
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
