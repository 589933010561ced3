"""What every in-memory read model shares: it is fed event by event and applies each event once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from projections.stream import EventKey, OutputEvent


class Projection(ABC):
    """Idempotent by CloudEvents identity: the (source, id) of every applied event is kept, so a
    redelivered event changes nothing. An event without an id cannot be recognised again and
    is applied each time it comes."""

    def __init__(self) -> None:
        self._applied: set[EventKey] = set()
        self._order = 0
        self.latest_time: datetime | None = None

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Apply one decoded CloudEvents JSON object; False when it was applied before.
        Raises MalformedEventError for an object without `type`, `time` and `data`."""
        return self.apply_event(OutputEvent.from_json(event))

    def apply_event(self, event: OutputEvent) -> bool:
        key = event.key
        if key is not None:
            if key in self._applied:
                return False
            self._applied.add(key)
        self._order += 1
        if event.moves_clock and (self.latest_time is None or event.time > self.latest_time):
            # The clock of the history's timeframes: the latest decision. An upstream fact's
            # own `time` may be anything (a CRM clock a year ahead would empty "today").
            self.latest_time = event.time
        self._evolve(event, self._order)
        return True

    @abstractmethod
    def _evolve(self, event: OutputEvent, order: int) -> None:
        """Fold one new event; `order` grows with every applied event (stream order)."""
