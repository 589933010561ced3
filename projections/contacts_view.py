"""Per contact: the sequences they are or were in, how far each got, and the next step due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.base import Projection
from projections.state import Catalog, ContactCard, Directory, Enrollment, EnrollmentBook
from projections.stream import OutputEvent
from schemas.envelope import format_time


@dataclass(frozen=True, slots=True)
class ContactEnrollment:
    sequence_id: str
    sequence_name: str | None
    enrollment_id: str
    state: str
    reason: str | None
    enrolled_at: datetime
    ended_at: datetime | None
    steps_done: int
    steps_total: int | None
    next_step_id: str | None
    next_due_at: datetime | None
    # Active in a sequence an edit made invalid: the engine holds it (no timer) until an
    # edit puts the sequence right, so no next step or due moment is shown.
    held: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence_id": self.sequence_id,
            "sequence_name": self.sequence_name,
            "enrollment_id": self.enrollment_id,
            "state": self.state,
            "reason": self.reason,
            "enrolled_at": format_time(self.enrolled_at),
            "ended_at": None if self.ended_at is None else format_time(self.ended_at),
            "steps_done": self.steps_done,
            "steps_total": self.steps_total,
            "next_step_id": self.next_step_id,
            "next_due_at": None if self.next_due_at is None else format_time(self.next_due_at),
            "held": self.held,
        }


@dataclass(frozen=True, slots=True)
class ContactSummary:
    contact_id: str
    name: str | None
    phone: str | None
    email: str | None
    enrollments: tuple[ContactEnrollment, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "name": self.name,
            "phone": self.phone,
            "email": self.email,
            "enrollments": [e.to_json() for e in self.enrollments],
        }


def contact_enrollment(enrollment: Enrollment, catalog: Catalog) -> ContactEnrollment:
    info = catalog.sequences.get(enrollment.sequence_id)
    # The definition in force, as for remaining tasks (projections/state.py).
    total = info.steps_count if info is not None else enrollment.steps_total
    held = enrollment.state == "active" and info is not None and info.status == "invalid"
    return ContactEnrollment(
        sequence_id=enrollment.sequence_id,
        sequence_name=info.name if info else None,
        enrollment_id=enrollment.enrollment_id,
        state=enrollment.state,
        reason=enrollment.reason,
        enrolled_at=enrollment.enrolled_at,
        ended_at=enrollment.ended_at,
        steps_done=len(enrollment.steps_done) if info is None else enrollment.passed_of(info),
        steps_total=total,
        # While held, which step comes next is the fixing edit's to say (it may put
        # another step first), so none is shown.
        next_step_id=None if held else enrollment.next_step_id,
        next_due_at=None if held else enrollment.next_due_at,
        held=held,
    )


def contact_summary(
    contact_id: str, card: ContactCard | None, enrollments: list[Enrollment], catalog: Catalog
) -> ContactSummary | None:
    if card is None and not enrollments:
        return None
    return ContactSummary(
        contact_id=contact_id,
        name=card.name if card else None,
        phone=card.phone if card else None,
        email=card.email if card else None,
        enrollments=tuple(contact_enrollment(e, catalog) for e in enrollments),
    )


class ContactsView(Projection):
    def __init__(self) -> None:
        super().__init__()
        self.catalog = Catalog()
        self.book = EnrollmentBook()
        self.directory = Directory()

    def _evolve(self, event: OutputEvent, order: int) -> None:
        self.catalog.evolve(event, order)
        self.book.evolve(event)
        self.directory.evolve(event)

    def contact(self, contact_id: str) -> ContactSummary | None:
        """Enrollments oldest first; None for a contact the stream never mentioned."""
        return contact_summary(
            contact_id,
            self.directory.get(contact_id),
            self.book.of_contact(contact_id),
            self.catalog,
        )
