"""The Sequences page: one row per sequence with its settings, the contacts enrolled right now
and the steps those enrollments have still to do."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from projections.base import Projection
from projections.state import Catalog, EnrollmentBook
from projections.stream import OutputEvent


@dataclass(frozen=True, slots=True)
class SequenceRow:
    id: str
    name: str
    created: str | None
    steps: int
    process_on: str | None
    line: str | None
    contacts: int
    remaining_tasks: int
    status: str
    # Why the sequence is `invalid` (the `sequence.defined` problems); empty when active.
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "steps": self.steps,
            "process_on": self.process_on,
            "line": self.line,
            "contacts": self.contacts,
            "remaining_tasks": self.remaining_tasks,
            "status": self.status,
            "problems": list(self.problems),
        }


def sequence_rows(catalog: Catalog, book: EnrollmentBook) -> list[SequenceRow]:
    """Visible (defined, not deleted) sequences sorted by id. `contacts` counts active
    enrollments; `remaining_tasks` sums, over them, the sequence's steps not yet executed or
    skipped."""
    contacts: Counter[str] = Counter()
    remaining: Counter[str] = Counter()
    for enrollment in book.active():
        info = catalog.sequences.get(enrollment.sequence_id)
        contacts[enrollment.sequence_id] += 1
        remaining[enrollment.sequence_id] += enrollment.remaining(info)
    return [
        SequenceRow(
            id=info.sequence_id,
            name=info.name,
            created=info.created,
            steps=info.steps_count,
            process_on=info.process_on,
            line=info.line,
            contacts=contacts[info.sequence_id],
            remaining_tasks=remaining[info.sequence_id],
            status=info.status,
            problems=problems_of(info.problems),
        )
        for info in catalog.visible()
    ]


def problems_of(problems: Iterable[Any]) -> tuple[str, ...]:
    """A definition's problems as text (the engine writes strings; anything else is shown
    as its JSON-ish `str`, so an odd producer's problem is still listed)."""
    return tuple(p if isinstance(p, str) else str(p) for p in problems)


class SequencesList(Projection):
    def __init__(self) -> None:
        super().__init__()
        self.catalog = Catalog()
        self.book = EnrollmentBook()

    def _evolve(self, event: OutputEvent, order: int) -> None:
        self.catalog.evolve(event, order)
        self.book.evolve(event)

    def rows(self) -> list[SequenceRow]:
        return sequence_rows(self.catalog, self.book)
