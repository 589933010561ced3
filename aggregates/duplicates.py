"""Recognising an input event seen before: CloudEvents makes source + id the event's identity,
so a producer's retry or a re-published record is the same fact and is decided only once."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

# How long (event time) an identity is remembered. Retries and re-publications come within
# minutes; a bound keeps the memory in step with the input rate, not the history's length.
DUPLICATE_WINDOW = timedelta(hours=24)


class RecentIdentities:
    """The identities of the inputs decided within the last DUPLICATE_WINDOW."""

    __slots__ = ("_order", "_seen")

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}
        self._order: deque[tuple[datetime, str]] = deque()

    def repeated(self, identity: str, moment: datetime) -> bool:
        """Whether `identity` was decided within the window before `moment`; if not, it is
        remembered as decided at `moment`."""
        seen, order = self._seen, self._order
        first = seen.get(identity)
        cutoff = moment - DUPLICATE_WINDOW
        if first is not None and first >= cutoff:
            return True
        seen[identity] = moment
        order.append((moment, identity))
        while order[0][0] < cutoff:  # the one just appended is not: the loop ends there
            old, known = order.popleft()
            if seen.get(known) == old:
                del seen[known]
        return False

    def __len__(self) -> int:
        return len(self._seen)
