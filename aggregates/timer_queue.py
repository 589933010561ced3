"""The engine's timers: when each enrollment's next step is due, and when each minute of
owner notices closes.

Timers are kept in one heap per input partition (a worker pushing a history through several
partitions by event time fires each partition's timers by that partition's own clock), and
owner notices in a heap of their own, as they span contacts and partitions. A replay has
one partition. A timer is never removed from its heap: rescheduling or ending an
enrollment makes its old entry stale, and a stale entry is skipped when it comes up.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import NamedTuple

NOTICES = -1  # the heap of owner notices

# Whose step timers a call means: one partition's (worker --clock event, where each fires by
# its own clock, owner notices waiting for the others), a set of partitions' (the wall
# clock: the partitions one worker decided for, owner notices with them), or every one.
Partitions = int | frozenset[int] | None


@cache
def alone(partition: int) -> frozenset[int]:
    """One partition's timers on the wall clock (where a lone int means its event clock)."""
    return frozenset((partition,))


class Timer(NamedTuple):
    """A heap entry; compared as a tuple (due, then the unique token), which is fast."""

    due: datetime
    token: int
    kind: str  # "step" or "notify"
    key: tuple[str, ...]  # (contact, sequence) for a step; (sequence, owner, minute) else


class TimerQueue:
    def __init__(self, partition_of: Callable[[str], int] | None = None) -> None:
        self._heaps: dict[int, list[Timer]] = {}
        self._partition_of = partition_of
        self._token = 0
        self._live: dict[str, int] = {}  # enrollment id -> token of its live step timer

    def __len__(self) -> int:
        """Entries in the heaps, stale ones included."""
        return sum(len(heap) for heap in self._heaps.values())

    def live_steps(self) -> int:
        return len(self._live)

    def live(self) -> int:
        """The timers that will fire: each enrollment's current step, and the notices."""
        return len(self._live) + len(self._heaps.get(NOTICES, ()))

    def schedule_step(
        self, due: datetime, contact_id: str, sequence_id: str, enrollment_id: str
    ) -> None:
        """Set the enrollment's timer; its earlier one, if any, goes stale."""
        partition = self._partition_of(contact_id) if self._partition_of else 0
        self._live[enrollment_id] = self._push(partition, due, "step", (contact_id, sequence_id))

    def schedule_notices(self, due: datetime, key: tuple[str, ...]) -> None:
        self._push(NOTICES, due, "notify", key)

    def cancel(self, enrollment_id: str) -> None:
        self._live.pop(enrollment_id, None)

    def is_current(self, timer: Timer, enrollment_id: str) -> bool:
        """Whether this step timer is still the enrollment's (not cancelled, not moved)."""
        return self._live.get(enrollment_id) == timer.token

    def pop_due(
        self,
        limit: datetime,
        *,
        inclusive: bool,
        partition: Partitions,
        notices_limit: datetime | None = None,
    ) -> Timer | None:
        """The earliest timer due by `limit` (of `partition` and the notices), taken off its
        heap; None when there is none. With one partition, the notices are held to
        `notices_limit` (None: they wait)."""
        earliest: list[Timer] | None = None
        notices_bound = notices_limit if isinstance(partition, int) else limit
        for number, heap in self._numbered_heaps(partition):
            if not heap:
                continue
            bound = notices_bound if number == NOTICES else limit
            due = heap[0].due
            if bound is None or due > bound or (due == bound and not inclusive):
                continue
            if earliest is None or heap[0] < earliest[0]:
                earliest = heap
        return heapq.heappop(earliest) if earliest is not None else None

    def next_due(self, partition: Partitions = None) -> datetime | None:
        heads = [heap[0].due for heap in self._heaps_of(partition) if heap]
        return min(heads) if heads else None

    def due_by(self, moment: datetime, partition: Partitions = None) -> int:
        """How many steps are due at or before `moment` and have not fired yet (owner
        notices aside). Walks only the top of each heap: below an entry due later,
        everything is due later still. (A metric's question, asked a few times a second:
        the live tokens are gathered then, not kept beside every timer set.)"""
        due: list[int] = []
        for number, heap in self._numbered_heaps(partition):
            below = [0] if heap and number != NOTICES else []
            while below:
                index = below.pop()
                if heap[index].due > moment:
                    continue
                due.append(heap[index].token)
                below.extend(child for child in (2 * index + 1, 2 * index + 2) if child < len(heap))
        if not due:
            return 0
        live = set(self._live.values())
        return sum(1 for token in due if token in live)

    def take_notices(self) -> list[Timer]:
        """Every owner-notice timer, in time order, off the queue."""
        return sorted(self._heaps.pop(NOTICES, []))

    def _heaps_of(self, partition: Partitions) -> list[list[Timer]]:
        return [heap for _, heap in self._numbered_heaps(partition)]

    def _numbered_heaps(self, partition: Partitions) -> list[tuple[int, list[Timer]]]:
        if partition is None:
            return list(self._heaps.items())
        if isinstance(partition, int):
            return [
                (partition, self._heaps.setdefault(partition, [])),
                (NOTICES, self._heaps.setdefault(NOTICES, [])),
            ]
        chosen = [(number, heap) for number, heap in self._heaps.items() if number in partition]
        return [*chosen, (NOTICES, self._heaps.setdefault(NOTICES, []))]

    def _push(self, heap: int, due: datetime, kind: str, key: tuple[str, ...]) -> int:
        self._token += 1
        heapq.heappush(self._heaps.setdefault(heap, []), Timer(due, self._token, kind, key))
        return self._token
