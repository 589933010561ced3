"""The minutes a throttled sequence has no room left in, as runs of consecutive minutes.

The throttle asks "the first minute from m with room" for every step it places. A burst of
N steps at L a minute fills N/L minutes in a row; walking them one by one for each step is
O(N²/L), and a place given back in the middle (a step moved past the close of day, its
enrollment ended) must not send every later search back to the start. Runs answer with one
bisection and change with one insertion or deletion, whichever minute fills or frees.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(slots=True)
class FullMinutes:
    """Minutes (as counted by `minute_of`) holding at least `limit` executions: each run
    of them is `[starts[i], ends[i])`, sorted, apart (a run ends before the next starts
    with a free minute between). `limit` 0: not built for any limit yet."""

    limit: int = 0
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    def rebuild(self, counts: Mapping[int, int], limit: int) -> None:
        """The runs of `counts` for `limit` (a new limit makes other minutes full)."""
        self.limit = limit
        self.starts, self.ends = [], []
        for minute in sorted(m for m, n in counts.items() if n >= limit):
            if self.ends and self.ends[-1] == minute:
                self.ends[-1] = minute + 1
            else:
                self.starts.append(minute)
                self.ends.append(minute + 1)

    def first_free(self, minute: int) -> int:
        """The first minute from `minute` on that is not full."""
        at = bisect.bisect_right(self.starts, minute) - 1
        if at >= 0 and minute < self.ends[at]:
            return self.ends[at]
        return minute

    def counted(self, minute: int, count: int) -> None:
        """`minute` now holds `count` executions, one more than before."""
        if count == self.limit:
            self._fill(minute)

    def given_back(self, minute: int, count: int) -> None:
        """`minute` now holds `count` executions, one fewer than before."""
        if count == self.limit - 1:
            self._free(minute)

    def forget_before(self, cutoff: int) -> None:
        """Minutes before `cutoff` are no longer counted (so none of them is full)."""
        drop = bisect.bisect_right(self.ends, cutoff)
        del self.starts[:drop], self.ends[:drop]
        if self.starts and self.starts[0] < cutoff:
            self.starts[0] = cutoff

    def _fill(self, minute: int) -> None:
        starts, ends = self.starts, self.ends
        at = bisect.bisect_right(starts, minute)
        after_left = at > 0 and ends[at - 1] == minute
        before_right = at < len(starts) and starts[at] == minute + 1
        if after_left and before_right:
            ends[at - 1] = ends[at]
            del starts[at], ends[at]
        elif after_left:
            ends[at - 1] = minute + 1
        elif before_right:
            starts[at] = minute
        else:
            starts.insert(at, minute)
            ends.insert(at, minute + 1)

    def _free(self, minute: int) -> None:
        starts, ends = self.starts, self.ends
        at = bisect.bisect_right(starts, minute) - 1
        if at < 0 or minute >= ends[at]:
            return  # not held as full (a minute forgotten, or counted before the runs)
        start, end = starts[at], ends[at]
        if start == minute and end == minute + 1:
            del starts[at], ends[at]
        elif start == minute:
            starts[at] = minute + 1
        elif end == minute + 1:
            ends[at] = minute
        else:
            ends[at] = minute
            starts.insert(at + 1, minute + 1)
            ends.insert(at + 1, end)
