"""Which sequences an input can start or stop: the triggers by type and value, and the
intake addresses.

Every tag added to a contact asks "who listens for this tag?"; with a hundred sequences each
on its own tag, walking every trigger for every tag was most of the time spent on tags. A
trigger that names values (tags, dispositions, statuses) is found by (type, value), one
that names none by its type alone; either way in definition order, which is the order the
sequences are enrolled in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from aggregates.sequence import Sequence, Trigger

Listener = tuple[Sequence, Trigger]


class TriggerIndex:
    def __init__(self, sequences: Iterable[Sequence] = ()) -> None:
        self._by_type: dict[str, list[Listener]] = {}
        self._by_value: dict[tuple[str, str], list[tuple[int, Sequence, Trigger]]] = {}
        self._valueless: dict[str, list[tuple[int, Sequence, Trigger]]] = {}
        self._intake: dict[str, Sequence] = {}
        rank = 0  # the definition order, to merge the two kinds of listener back into it
        for sequence in sequences:
            for trigger in sequence.triggers:
                self._by_type.setdefault(trigger.type, []).append((sequence, trigger))
                entry = (rank, sequence, trigger)
                rank += 1
                if trigger.values:
                    for value in trigger.values:
                        self._by_value.setdefault((trigger.type, value), []).append(entry)
                else:
                    self._valueless.setdefault(trigger.type, []).append(entry)
            address = sequence.intake_address
            if address:
                held = self._intake.get(address)
                if held is None or _holds_before(sequence, held):
                    self._intake[address] = sequence

    def of_type(self, kind: str) -> list[Listener]:
        """Every trigger of one type, whatever values it names."""
        return self._by_type.get(kind, [])

    def listening(self, kind: str, value: str | None) -> list[Listener]:
        """The triggers an input of `kind` carrying `value` sets off, in definition order.
        Without a value (a contact created) every trigger of the type does."""
        if value is None:
            return self.of_type(kind)
        found = self._valueless.get(kind, []) + self._by_value.get((kind, value), [])
        return [(sequence, trigger) for _, sequence, trigger in sorted(found, key=_rank)]

    def intake(self, address: str) -> Sequence | None:
        """The sequence whose intake address this is (already normalised)."""
        return self._intake.get(address)


def _rank(entry: tuple[int, Sequence, Trigger]) -> int:
    return entry[0]


_BEFORE_ANY = datetime.min.replace(tzinfo=UTC)


def _holds_before(one: Sequence, other: Sequence) -> bool:
    """Two sequences given one intake address (in separate definitions: a file's are
    refused): the one created first holds it, then the lower id. Not the order they were
    read in, which a worker adopting stored definitions need not share with the decider."""
    return (one.created or _BEFORE_ANY, one.id) < (other.created or _BEFORE_ANY, other.id)
