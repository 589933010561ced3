"""The per-sequence minute throttle (CONTRACT.md §3 (d)).

The one mutable piece of the domain: how many step executions each sequence already has in
each UTC minute, and which steps hold those places. Minutes are whole minutes since the
Unix epoch, so a minute is an int to count and compare.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aggregates.full_minutes import FullMinutes
from aggregates.moved_places import MovedPlaces

__all__ = ["MinuteThrottle", "minute_of", "minute_start"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)


def minute_of(moment: datetime) -> int:
    """The UTC minute holding `moment`, as whole minutes since the Unix epoch."""
    if moment.utcoffset() is None:
        raise ValueError(f"moment must be timezone-aware, got {moment!r}")
    return (moment - _EPOCH) // _MINUTE


def minute_start(minute: int) -> datetime:
    """The first instant (UTC) of a minute numbered as by `minute_of`."""
    return _EPOCH + minute * _MINUTE


@dataclass(slots=True)
class _SequenceCounts:
    counts: dict[int, int] = field(default_factory=dict)
    # The minutes without room, for the limit last asked about: a burst of N reservations
    # costs O(N log N), however many places are given back among them.
    full: FullMinutes = field(default_factory=FullMinutes)
    # Every minute counted, as a min-heap (with some since given back, and repeats):
    # `forget_before` pops the minutes that have passed rather than copying the counters,
    # most of which are places held ahead for steps due later.
    minutes: list[int] = field(default_factory=list)
    # Places held by steps that were not deferred, `minute -> {holder: due}`: one of them
    # gives way to a step due earlier (the rest move "in due-time order"). Steps already
    # deferred keep theirs, since a step has one step.deferred.
    movable: dict[int, dict[str, datetime]] = field(default_factory=dict)
    # At least the latest due among `movable`: a step due at or after it displaces nobody,
    # which keeps a burst settled in due order on the fast path.
    movable_latest: datetime | None = None
    # Places of steps the throttle moved past their own minute: a step due later that is
    # moved too goes no earlier than theirs (due-time order), even where a place before
    # them was given back.
    moved: MovedPlaces = field(default_factory=MovedPlaces)


class MinuteThrottle:
    """At most `limit` step executions of one sequence in one UTC minute.

    A step's minute is taken when its due moment is settled (`hold`), not when it runs, so
    its one `step.deferred` can already name where it will run (CONTRACT.md §3: "again
    until it holds still"). A hold is given back when its enrollment ends or the step is
    skipped or moved (`release`), and becomes the execution when the step runs (`take`).

    The places go in due-time order: a step finding its minute full takes the place of a
    step due later that holds one undeferred; that step is then `displaced`, and the
    engine moves it (its one step.deferred, `throttle`).
    """

    __slots__ = ("_held", "_sequences", "displaced")

    def __init__(self) -> None:
        self._sequences: dict[str, _SequenceCounts] = {}
        # holder (an enrollment id) -> (sequence id, minute) it holds: at most one each.
        self._held: dict[str, tuple[str, int]] = {}
        # (holder, sequence id) of the steps whose place went to a step due earlier, in the
        # order it happened: the engine moves each and empties the list.
        self.displaced: list[tuple[str, str]] = []

    def reserve(self, sequence_id: str, due: datetime, limit: int | None) -> datetime:
        """Count one execution of `sequence_id` at `due` and return when it may run.

        That is `due` itself when its UTC minute has room, else the start of the first
        following UTC minute with room (where it is counted). `limit` None = unlimited:
        `due` comes back and nothing is counted.
        """
        if limit is None:
            return due
        state, wanted, minute = self._room(sequence_id, due, limit)
        _count(state, minute)
        return due if minute == wanted else minute_start(minute)

    def first_room(self, sequence_id: str, due: datetime, limit: int | None) -> datetime:
        """When a step of `sequence_id` due at `due` may run, counting nothing: `due` when
        its minute has room (or `limit` is None), else the start of the first minute with
        room."""
        if limit is None:
            return due
        _, wanted, minute = self._room(sequence_id, due, limit)
        return due if minute == wanted else minute_start(minute)

    def hold(
        self,
        holder: str,
        sequence_id: str,
        due: datetime,
        limit: int | None,
        *,
        rank: datetime | None = None,
        movable: bool = False,
    ) -> datetime:
        """`reserve` on behalf of `holder`, giving back what it held before.

        `rank` is the step's due moment, which orders it against the other steps (default
        `due`); a place held for a later one, undeferred, is taken over and its holder
        added to `displaced`. `movable`: the step has no deferral, so if it gets `due`
        itself it may in turn give way to a step due earlier."""
        self.release(holder)
        if limit is None:
            return due
        rank = rank or due
        state, wanted, minute = self._room(sequence_id, due, limit)
        taken = None
        displacing = state.movable_latest is not None and rank < state.movable_latest
        if minute != wanted:
            start = _after_earlier_moves(state, wanted, minute, rank, displacing)
            if start > minute:
                minute = state.full.first_free(start)
            if displacing:
                taken = _later_holder(state, start, minute, rank)
        if taken is None:
            _count(state, minute)
        else:
            minute, victim = taken
            self._unmark(victim, sequence_id, minute)
            del self._held[victim]
            self.displaced.append((victim, sequence_id))
        self._held[holder] = (sequence_id, minute)
        if minute > minute_of(rank):
            state.moved.add(holder, rank, minute)
        if movable and minute == wanted:
            state.movable.setdefault(minute, {})[holder] = rank
            if state.movable_latest is None or rank > state.movable_latest:
                state.movable_latest = rank
        return due if minute == wanted else minute_start(minute)

    def take(self, holder: str, moment: datetime) -> bool:
        """Whether `holder` holds a place in the minute of `moment`: it is then used (the
        execution stays counted). A place held in another minute is given back."""
        held = self._held.pop(holder, None)
        if held is None:
            return False
        self._unmark(holder, *held)
        if held[1] == minute_of(moment):
            return True
        self._give_back(*held)
        return False

    def count_unthrottled(self, sequence_id: str, moment: datetime) -> None:
        """Count an execution of a sequence that has no limit now: an edit may give it one
        within the minute, and that minute's executions so far count against it."""
        state = self._sequences.get(sequence_id)
        if state is None:
            state = self._sequences[sequence_id] = _SequenceCounts()
        _count(state, minute_of(moment))

    def release(self, holder: str) -> None:
        """Give back the place `holder` holds, if any."""
        held = self._held.pop(holder, None)
        if held is not None:
            self._unmark(holder, *held)
            self._give_back(*held)

    def holders(self) -> int:
        return len(self._held)

    def _unmark(self, holder: str, sequence_id: str, minute: int) -> None:
        """`holder` no longer holds a place it could give up, or one it was moved to."""
        state = self._sequences.get(sequence_id)
        if state is None:
            return
        state.moved.remove(holder)
        movable = state.movable.get(minute)
        if movable is None or holder not in movable:
            return
        del movable[holder]
        if not movable:
            del state.movable[minute]
            if not state.movable:
                state.movable_latest = None

    def _give_back(self, sequence_id: str, minute: int) -> None:
        state = self._sequences.get(sequence_id)
        if state is None or minute not in state.counts:
            return  # a minute already forgotten
        left = state.counts[minute] - 1
        if left:
            state.counts[minute] = left
        else:
            del state.counts[minute]
        state.full.given_back(minute, left)

    def _room(
        self, sequence_id: str, due: datetime, limit: int
    ) -> tuple[_SequenceCounts, int, int]:
        if limit < 1:
            raise ValueError(f"throttle limit must be at least 1, got {limit}")
        wanted = minute_of(due)
        state = self._sequences.get(sequence_id)
        if state is None:
            state = self._sequences[sequence_id] = _SequenceCounts()
        if state.full.limit != limit:
            # Which minutes are full depends on the limit (a raised one reopens some).
            state.full.rebuild(state.counts, limit)
        return state, wanted, state.full.first_free(wanted)

    def count(self, sequence_id: str, moment: datetime) -> int:
        """How many executions of `sequence_id` are counted in the UTC minute of `moment`."""
        state = self._sequences.get(sequence_id)
        return 0 if state is None else state.counts.get(minute_of(moment), 0)

    def forget_before(self, moment: datetime) -> None:
        """Drop the counters of the minutes that end at or before `moment`."""
        cutoff = minute_of(moment)
        for sequence_id in list(self._sequences):
            state = self._sequences[sequence_id]
            minutes = state.minutes
            if state.counts and minutes[0] >= cutoff:
                continue  # (a sequence with nothing counted goes below)
            while minutes and minutes[0] < cutoff:
                passed = heapq.heappop(minutes)
                state.counts.pop(passed, None)
                # A movable place is a counted one: its minute is among those counted.
                state.movable.pop(passed, None)
            state.full.forget_before(cutoff)
            if not state.movable:
                state.movable_latest = None
            state.moved.forget_before(cutoff)
            if not state.counts:
                del self._sequences[sequence_id]

    def snapshot(self) -> dict[str, dict[int, int]]:
        """The counters, `sequence id -> {minute since the epoch: executions}`, sorted (to
        look at: the engine is kept whole, by pickling, in streams/snapshots.py)."""
        return {
            sequence_id: dict(sorted(self._sequences[sequence_id].counts.items()))
            for sequence_id in sorted(self._sequences)
        }


def _after_earlier_moves(
    state: _SequenceCounts, wanted: int, room: int, rank: datetime, displacing: bool
) -> int:
    """The first minute a step due at `rank`, moved past `wanted`, may take: not before
    the latest a step due earlier was moved to, so a place given back ahead of those goes
    to no step due after them ("the rest move ... in due-time order").

    The look is needed only when a moved step lies beyond `room` (the first with room from
    `wanted`), or to bound the places a step may take over (`displacing`): a burst settled
    in due order, each step at the end of the queue, passes it by."""
    latest = state.moved.latest
    if latest is None or latest <= wanted or (latest <= room and not displacing):
        return wanted
    behind = state.moved.latest_before(rank)
    return wanted if behind is None else max(wanted, behind)


def _later_holder(
    state: _SequenceCounts, wanted: int, room: int, rank: datetime
) -> tuple[int, str] | None:
    """In the first full minute from `wanted` (before `room`, the first with room) that has
    one, the undeferred holder due latest after `rank` (the last settled of equals)."""
    for minute in sorted(m for m in state.movable if wanted <= m < room):
        victim: tuple[datetime, str] | None = None
        for holder, due in state.movable[minute].items():
            if due > rank and (victim is None or due >= victim[0]):
                victim = (due, holder)
        if victim is not None:
            return minute, victim[1]
    return None


def _count(state: _SequenceCounts, minute: int) -> None:
    counts = state.counts
    count = counts[minute] = counts.get(minute, 0) + 1
    if count == 1:
        heapq.heappush(state.minutes, minute)
    state.full.counted(minute, count)
