"""The places of steps a throttle moved past their own minute, asked "the latest minute held
by a step due before this moment" each time another step is moved.

They are kept in due order, cut into blocks of at most `2 * BLOCK` with each block's latest
minute beside it, so the question is one bisection and a `max` over the blocks before the
moment plus part of one block. Over one sorted list it was a `max` over every place due
earlier: a dense history holds tens of thousands of them, and at 1M inputs that `max` had
grown to a seventh of a replay's time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["BLOCK", "MovedPlaces"]

BLOCK = 128  # a block is split in two once it holds twice this many places

_Key = tuple[datetime, str]  # (due, holder): the order of the places


@dataclass(slots=True)
class MovedPlaces:
    """By holder, and in due order with the minutes alongside. `latest` is at least the
    latest minute held (None when no place is), so a caller may skip the question when a
    moment lies beyond every place. `block`: the size blocks are cut to (a test cuts them
    small, to split and empty many)."""

    by_holder: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    latest: int | None = None
    block: int = BLOCK
    _keys: list[list[_Key]] = field(default_factory=list)  # sorted within and across blocks
    _minutes: list[list[int]] = field(default_factory=list)  # each key's minute
    _firsts: list[_Key] = field(default_factory=list)  # each block's first key
    _maxes: list[int] = field(default_factory=list)  # each block's latest minute
    _mins: list[int] = field(default_factory=list)  # each block's earliest minute

    def add(self, holder: str, due: datetime, minute: int) -> None:
        self.remove(holder)
        self.by_holder[holder] = (due, minute)
        if self.latest is None or minute > self.latest:
            self.latest = minute
        key = (due, holder)
        if not self._keys:
            self._keys, self._minutes = [[key]], [[minute]]
            self._firsts, self._maxes, self._mins = [key], [minute], [minute]
            return
        block = max(bisect.bisect_right(self._firsts, key) - 1, 0)
        keys, minutes = self._keys[block], self._minutes[block]
        at = bisect.bisect(keys, key)
        keys.insert(at, key)
        minutes.insert(at, minute)
        if at == 0:
            self._firsts[block] = key
        self._maxes[block] = max(self._maxes[block], minute)
        self._mins[block] = min(self._mins[block], minute)
        if len(keys) > 2 * self.block:
            self._split(block)

    def remove(self, holder: str) -> None:
        held = self.by_holder.pop(holder, None)
        if held is None:
            return
        key = (held[0], holder)
        block = bisect.bisect_right(self._firsts, key) - 1
        keys, minutes = self._keys[block], self._minutes[block]
        at = bisect.bisect_left(keys, key)
        minute = minutes[at]
        del keys[at], minutes[at]
        if not keys:
            del self._keys[block], self._minutes[block], self._firsts[block]
            del self._maxes[block], self._mins[block]
        else:
            if at == 0:
                self._firsts[block] = keys[0]
            if minute == self._maxes[block]:
                self._maxes[block] = max(minutes)
            if minute == self._mins[block]:
                self._mins[block] = min(minutes)
        if not self.by_holder:
            self.latest = None

    def latest_before(self, due: datetime) -> int | None:
        """The latest minute held by a step due before `due`, or None."""
        key = (due, "")  # "" sorts before every holder: those due at `due` are not before it
        block = bisect.bisect_left(self._firsts, key) - 1
        if block < 0:
            return None
        count = bisect.bisect_left(self._keys[block], key)
        within = max(self._minutes[block][:count])  # count >= 1: the block's first is before
        return max(within, *self._maxes[:block]) if block else within

    def forget_before(self, cutoff: int) -> None:
        """Drop the places in minutes before `cutoff` (they have passed)."""
        if not self._mins or min(self._mins) >= cutoff:
            return
        kept = [
            (key, minute)
            for keys, minutes in zip(self._keys, self._minutes, strict=True)
            for key, minute in zip(keys, minutes, strict=True)
            if minute >= cutoff
        ]
        self.by_holder = {holder: (due, minute) for (due, holder), minute in kept}
        self._keys, self._minutes, self._firsts, self._maxes, self._mins = [], [], [], [], []
        for start in range(0, len(kept), self.block):
            chunk = kept[start : start + self.block]
            minutes = [minute for _, minute in chunk]
            self._keys.append([key for key, _ in chunk])
            self._minutes.append(minutes)
            self._firsts.append(chunk[0][0])
            self._maxes.append(max(minutes))
            self._mins.append(min(minutes))
        if not self.by_holder:
            self.latest = None

    def _split(self, block: int) -> None:
        keys, minutes = self._keys[block], self._minutes[block]
        half = len(keys) // 2
        self._keys[block : block + 1] = [keys[:half], keys[half:]]
        self._minutes[block : block + 1] = [minutes[:half], minutes[half:]]
        self._firsts[block : block + 1] = [keys[0], keys[half]]
        self._maxes[block : block + 1] = [max(minutes[:half]), max(minutes[half:])]
        self._mins[block : block + 1] = [min(minutes[:half]), min(minutes[half:])]
