"""Recognising an input event seen before: CloudEvents makes source + id the event's identity,
so a producer's retry or a re-published record is the same fact and is decided only once.
Another event under an identity still remembered is refused (`ReusedIdentityError`), not taken
for a repeat: it would otherwise vanish without a word."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

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
    the fingerprint of the event it named."""

    __slots__ = ("_order", "_seen")

    def __init__(self) -> None:
        self._seen: dict[str, tuple[datetime, int]] = {}
        self._order: deque[tuple[datetime, str]] = deque()

    def earlier(self, identity: str, moment: datetime) -> int | None:
        """The fingerprint of the event decided under `identity` within the window before
        `moment`, if any."""
        seen = self._seen.get(identity)
        if seen is None or seen[0] < moment - DUPLICATE_WINDOW:
            return None
        return seen[1]

    def remember(self, identity: str, moment: datetime, fingerprint: int) -> None:
        """`identity` was decided at `moment`; identities older than the window go."""
        seen, order = self._seen, self._order
        seen[identity] = (moment, fingerprint)
        order.append((moment, identity))
        cutoff = moment - DUPLICATE_WINDOW
        while order[0][0] < cutoff:  # the one just appended is not: the loop ends there
            old, known = order.popleft()
            if seen[known][0] == old:
                del seen[known]

    def __len__(self) -> int:
        return len(self._seen)
