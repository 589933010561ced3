"""Recognising an input event seen before: CloudEvents makes source + id the event's identity,
so a producer's retry or a re-published record is the same fact and is decided only once.
Another event under an identity still remembered is refused (`ReusedIdentityError`), not taken
for a repeat: it would otherwise vanish without a word."""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta

# How long (event time) an identity is remembered. Retries and re-publications come within
# minutes; a bound keeps the memory in step with the input rate, not the history's length.
DUPLICATE_WINDOW = timedelta(hours=24)


class ReusedIdentityError(ValueError):
    """An input whose source and id name a different event decided within the window."""

    field = "id"

    def __init__(self, event_id: str, source: str) -> None:
        self.reason = (
            f"{event_id!r} from source {source!r} already names a different event decided "
            "in the last 24 hours (source + id identify one event; a retry repeats it "
            "unchanged)"
        )
        super().__init__(self.reason)


class RecentIdentities:
    """The identities of the inputs decided within the last DUPLICATE_WINDOW, each with
    the fingerprint (64 bits) of the event it named.

    A live worker holds a day of its inputs (26 million at 300 a second), so each costs
    what it must and no more: the identity string, one dict slot, and one int that packs
    the moment (microseconds since the epoch) over the fingerprint; and a pointer in the
    list of its minute, by which it is forgotten once the whole minute is out of the window.
    Moments may come out of order (partitions' event clocks differ, a late input): each
    minute has one list whatever the order, and the earliest minute goes first.
    """

    __slots__ = ("_by_minute", "_minutes", "_seen")

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._by_minute: dict[int, list[str]] = {}
        self._minutes: list[int] = []  # a heap of the minutes in _by_minute

    def earlier(self, identity: str, moment: datetime) -> int | None:
        """The fingerprint of the event decided under `identity` within the window before
        `moment`, if any."""
        packed = self._seen.get(identity)
        if packed is None or packed >> _FINGERPRINT_BITS < _micros(moment) - _WINDOW_MICROS:
            return None
        return packed & _FINGERPRINT_MASK

    def remember(self, identity: str, moment: datetime, fingerprint: int) -> None:
        """`identity` was decided at `moment`; identities older than the window go."""
        at = _micros(moment)
        seen, by_minute, minutes = self._seen, self._by_minute, self._minutes
        seen[identity] = at << _FINGERPRINT_BITS | fingerprint
        minute = at // _MINUTE_MICROS
        listed = by_minute.get(minute)
        if listed is None:
            by_minute[minute] = [identity]
            heapq.heappush(minutes, minute)
        else:
            listed.append(identity)
        cutoff = at - _WINDOW_MICROS
        # The minute just noted ends after the cutoff: the loop stops there at the latest.
        while (minutes[0] + 1) * _MINUTE_MICROS <= cutoff:
            for known in by_minute.pop(heapq.heappop(minutes)):
                # Not when decided again since (its moment then is the later one).
                packed = seen.get(known)
                if packed is not None and packed >> _FINGERPRINT_BITS < cutoff:
                    del seen[known]

    def __len__(self) -> int:
        return len(self._seen)


_FINGERPRINT_BITS = 64
_FINGERPRINT_MASK = (1 << _FINGERPRINT_BITS) - 1
_MINUTE_MICROS = 60_000_000
_WINDOW_MICROS = DUPLICATE_WINDOW // timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_MICROSECOND


_ONE_MICROSECOND = timedelta(microseconds=1)
