"""The state every read model folds from the output stream: sequence definitions, enrollments,
and what is known of each contact. The in-memory models keep it whole; the PostgreSQL
projection loads the slice a batch touches, folds with these same classes and writes it back,
so both give the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from projections.stream import OutputEvent

EnrollmentState = Literal["active", "completed", "disenrolled"]

DONE_STEP_TYPES = frozenset({"step.executed", "step.skipped"})
ENDING_TYPES = frozenset({"enrollment.completed", "enrollment.disenrolled"})
SCHEDULE_TYPES = frozenset({"step.scheduled", "step.deferred"})
# What changes an enrollment, and what tells the directory about a contact.
BOOK_TYPES = frozenset({"enrollment.enrolled"}) | ENDING_TYPES | DONE_STEP_TYPES | SCHEDULE_TYPES
CONTACT_FACT_TYPES = frozenset({"contact.created", "contact.updated"})
DIRECTORY_TYPES = frozenset({"enrollment.enrolled"}) | CONTACT_FACT_TYPES


@dataclass(slots=True)
class SequenceInfo:
    sequence_id: str
    name: str
    description: str | None
    created: str | None
    steps_count: int
    process_on: str | None
    line: str | None
    status: str
    problems: list[Any]
    triggers: list[Any]
    intake_address: str | None
    account_timezone: str | None
    defined_order: int
    deleted: bool = False

    @classmethod
    def from_event(cls, event: OutputEvent, order: int, sequence_id: str) -> SequenceInfo:
        problems = event.data.get("problems")
        triggers = event.data.get("triggers")
        return cls(
            sequence_id=sequence_id,
            name=event.text("name") or "",
            description=event.text("description"),
            created=event.text("created"),
            steps_count=event.integer("steps_count") or 0,
            process_on=event.text("process_on"),
            line=event.text("line"),
            status=event.text("status") or "active",
            problems=list(problems) if isinstance(problems, list) else [],
            triggers=list(triggers) if isinstance(triggers, list) else [],
            intake_address=event.text("intake_address"),
            account_timezone=event.text("account_timezone"),
            defined_order=order,
        )


class Catalog:
    """Sequence definitions: a later `sequence.defined` replaces the settings of the same id;
    `sequence.deleted` keeps the definition (its history stays readable) but hides it."""

    def __init__(self, sequences: Iterable[SequenceInfo] = ()) -> None:
        self.sequences: dict[str, SequenceInfo] = {s.sequence_id: s for s in sequences}

    def evolve(self, event: OutputEvent, order: int) -> None:
        sequence_id = event.text("sequence_id")
        if sequence_id is None:
            return
        if event.type == "sequence.defined":
            self.sequences[sequence_id] = SequenceInfo.from_event(event, order, sequence_id)
        elif event.type == "sequence.deleted" and sequence_id in self.sequences:
            self.sequences[sequence_id].deleted = True

    def visible(self) -> list[SequenceInfo]:
        return sorted(
            (s for s in self.sequences.values() if not s.deleted), key=lambda s: s.sequence_id
        )

    def by_intake(self, address: str) -> str | None:
        """The sequence most recently defined with this intake address."""
        owners = [s for s in self.sequences.values() if s.intake_address == address]
        if not owners:
            return None
        return max(owners, key=lambda s: s.defined_order).sequence_id


@dataclass(slots=True)
class Enrollment:
    enrollment_id: str
    sequence_id: str
    contact_id: str
    enrolled_at: datetime
    via: str | None
    steps_total: int | None
    state: EnrollmentState = "active"
    reason: str | None = None
    ended_at: datetime | None = None
    steps_done: set[str] = field(default_factory=set)
    next_step_id: str | None = None
    next_due_at: datetime | None = None

    def remaining(self, steps_count: int) -> int:
        """Steps not yet done; `steps_count` (the sequence's) stands in for an unknown total."""
        total = self.steps_total if self.steps_total is not None else steps_count
        return max(total - len(self.steps_done), 0)


class EnrollmentBook:
    """Enrollments by id, folded from enrollment.* and step.* events. An event that names no
    enrollment_id applies to the contact's active enrollment in that sequence."""

    def __init__(self, enrollments: Iterable[Enrollment] = ()) -> None:
        self.enrollments: dict[str, Enrollment] = {}
        self._live: set[str] = set()  # ids of the active enrollments
        self._active: dict[tuple[str, str], str] = {}  # the pair's latest active enrollment
        self._counts: dict[tuple[str, str], int] = {}
        self._by_contact: dict[str, list[str]] = {}
        for enrollment in sorted(enrollments, key=lambda e: e.enrolled_at):
            self._add(enrollment)

    def _add(self, enrollment: Enrollment) -> None:
        pair = (enrollment.sequence_id, enrollment.contact_id)
        self.enrollments[enrollment.enrollment_id] = enrollment
        self._counts[pair] = self._counts.get(pair, 0) + 1
        self._by_contact.setdefault(enrollment.contact_id, []).append(enrollment.enrollment_id)
        if enrollment.state == "active":
            self._live.add(enrollment.enrollment_id)
            self._active[pair] = enrollment.enrollment_id

    def evolve(self, event: OutputEvent) -> None:
        if event.type not in BOOK_TYPES:
            return
        sequence_id = event.text("sequence_id")
        contact_id = event.contact_id
        if sequence_id is None or contact_id is None:
            return
        pair = (sequence_id, contact_id)
        if event.type == "enrollment.enrolled":
            enrollment_id = event.text("enrollment_id") or (
                f"{sequence_id}:{contact_id}:{self._counts.get(pair, 0) + 1}"
            )
            if enrollment_id not in self.enrollments:
                self._add(
                    Enrollment(
                        enrollment_id=enrollment_id,
                        sequence_id=sequence_id,
                        contact_id=contact_id,
                        enrolled_at=event.time,
                        via=event.text("via"),
                        steps_total=event.integer("steps_total"),
                    )
                )
            return
        enrollment = self._resolve(event, pair)
        if enrollment is None:
            return
        if event.type in ENDING_TYPES:
            self._end(enrollment, event)
        elif event.type in DONE_STEP_TYPES:
            step_id = event.text("step_id")
            if step_id is not None:
                enrollment.steps_done.add(step_id)
                if enrollment.next_step_id == step_id:
                    enrollment.next_step_id = enrollment.next_due_at = None
        elif event.type in SCHEDULE_TYPES:
            step_id = event.text("step_id")
            due = event.moment("due_at" if event.type == "step.scheduled" else "to")
            if enrollment.state == "active" and step_id and step_id not in enrollment.steps_done:
                enrollment.next_step_id, enrollment.next_due_at = step_id, due

    def _resolve(self, event: OutputEvent, pair: tuple[str, str]) -> Enrollment | None:
        enrollment_id = event.text("enrollment_id") or self._active.get(pair)
        return None if enrollment_id is None else self.enrollments.get(enrollment_id)

    def _end(self, enrollment: Enrollment, event: OutputEvent) -> None:
        if enrollment.state != "active":
            return
        completed = event.type == "enrollment.completed"
        enrollment.state = "completed" if completed else "disenrolled"
        enrollment.reason = None if completed else event.text("reason")
        enrollment.ended_at = event.time
        enrollment.next_step_id = enrollment.next_due_at = None
        self._live.discard(enrollment.enrollment_id)
        pair = (enrollment.sequence_id, enrollment.contact_id)
        if self._active.get(pair) == enrollment.enrollment_id:
            del self._active[pair]

    def active(self) -> Iterator[Enrollment]:
        for enrollment_id in self._live:
            yield self.enrollments[enrollment_id]

    def of_contact(self, contact_id: str) -> list[Enrollment]:
        return sorted(
            (self.enrollments[i] for i in self._by_contact.get(contact_id, [])),
            key=lambda e: (e.enrolled_at, e.enrollment_id),
        )


@dataclass(slots=True)
class ContactCard:
    contact_id: str
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None


class Directory:
    """What the stream says about each contact: the name, phone and e-mail an enrollment
    carries, updated by `contact.created` / `contact.updated` (from any source: a dump of
    the contacts topic holds the CRM's own facts, which name the contact best)."""

    def __init__(self, cards: Iterable[ContactCard] = ()) -> None:
        self.cards: dict[str, ContactCard] = {c.contact_id: c for c in cards}

    def evolve(self, event: OutputEvent) -> None:
        if event.type == "enrollment.enrolled":
            self._learn(event, name="contact_name", phone="contact_phone", email="contact_email")
        elif event.type in CONTACT_FACT_TYPES:
            card = self._learn(event, name=None, phone="phone", email="email")
            if card is None:
                return
            first, last = event.text("first_name"), event.text("last_name")
            if first is None and last is None:
                return
            card.first_name = first or card.first_name
            card.last_name = last or card.last_name
            card.name = " ".join(p for p in (card.first_name, card.last_name) if p) or None

    def _learn(
        self, event: OutputEvent, *, name: str | None, phone: str, email: str
    ) -> ContactCard | None:
        contact_id = event.contact_id
        if contact_id is None:
            return None
        card = self.cards.setdefault(contact_id, ContactCard(contact_id))
        if name is not None:
            card.name = event.text(name) or card.name
        card.phone = event.text(phone) or card.phone
        card.email = event.text(email) or card.email
        return card

    def get(self, contact_id: str | None) -> ContactCard | None:
        return None if contact_id is None else self.cards.get(contact_id)
