"""The state every read model folds from the output stream: sequence definitions, enrollments,
and what is known of each contact. The in-memory models keep it whole; the PostgreSQL
projection loads the slice a batch touches, folds with these same classes and writes it back,
so both give the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from projections.stream import OutputEvent, integer_of, moment_of, text_of

EnrollmentState = Literal["active", "completed", "disenrolled"]

DONE_STEP_TYPES = frozenset({"step.executed", "step.skipped"})
ENDING_TYPES = frozenset({"enrollment.completed", "enrollment.disenrolled"})
SCHEDULE_TYPES = frozenset({"step.scheduled", "step.deferred"})
# What changes an enrollment, and what tells the directory about a contact.
BOOK_TYPES = frozenset({"enrollment.enrolled"}) | ENDING_TYPES | DONE_STEP_TYPES | SCHEDULE_TYPES
CONTACT_FACT_TYPES = frozenset({"contact.created", "contact.updated"})
DIRECTORY_TYPES = frozenset({"enrollment.enrolled", "enrollment.rejected"}) | CONTACT_FACT_TYPES
CATALOG_TYPES = frozenset({"sequence.defined", "sequence.deleted"})

# Each fold below takes an event's parts (type, data, ...) rather than an OutputEvent, so
# the rebuild can fold raw decoded lines with the very same rules; `evolve` is the
# OutputEvent spelling of the same call.


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
    # The steps' ids in order; None from a stream written before they were published.
    step_ids: list[str] | None = None
    # The whole definition in force (settings, steps, triggers, defaults filled in); None
    # from a stream written before `sequence.defined` carried it.
    definition: dict[str, Any] | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any], order: int, sequence_id: str) -> SequenceInfo:
        problems = data.get("problems")
        triggers = data.get("triggers")
        return cls(
            sequence_id=sequence_id,
            name=text_of(data, "name") or "",
            description=text_of(data, "description"),
            created=text_of(data, "created"),
            steps_count=integer_of(data, "steps_count") or 0,
            process_on=text_of(data, "process_on"),
            line=text_of(data, "line"),
            status=text_of(data, "status") or "active",
            problems=list(problems) if isinstance(problems, list) else [],
            triggers=list(triggers) if isinstance(triggers, list) else [],
            intake_address=text_of(data, "intake_address"),
            account_timezone=text_of(data, "account_timezone"),
            defined_order=order,
            step_ids=_texts(data.get("step_ids")),
            definition=_object(data.get("definition")),
        )


class UnknownSequenceError(LookupError):
    """A sequence the list does not show: never defined, or deleted (`deleted`)."""

    def __init__(self, sequence_id: str, *, deleted: bool) -> None:
        super().__init__(f"unknown sequence {sequence_id!r}" + (": deleted" if deleted else ""))
        self.sequence_id = sequence_id
        self.deleted = deleted


class Catalog:
    """Sequence definitions: a later `sequence.defined` replaces the settings of the same id;
    `sequence.deleted` keeps the definition (its history stays readable) but hides it."""

    def __init__(self, sequences: Iterable[SequenceInfo] = ()) -> None:
        self.sequences: dict[str, SequenceInfo] = {s.sequence_id: s for s in sequences}

    def evolve(self, event: OutputEvent, order: int) -> None:
        self.fold(event.type, event.data, order)

    def fold(self, kind: str, data: Mapping[str, Any], order: int) -> None:
        if kind not in CATALOG_TYPES:
            return
        sequence_id = text_of(data, "sequence_id")
        if sequence_id is None:
            return
        if kind == "sequence.defined":
            self.sequences[sequence_id] = SequenceInfo.from_data(data, order, sequence_id)
        elif sequence_id in self.sequences:
            self.sequences[sequence_id].deleted = True

    def shown(self, sequence_id: str) -> SequenceInfo:
        """The sequence the list shows under this id; UnknownSequenceError for one never
        defined or deleted (the list hides it, so its views do too)."""
        info = self.sequences.get(sequence_id)
        if info is None or info.deleted:
            raise UnknownSequenceError(sequence_id, deleted=info is not None)
        return info

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

    def remaining(self, info: SequenceInfo | None) -> int:
        """Steps not yet done, of the definition in force when it is known: after an edit
        the engine goes on by step id through the new steps, so a step passed that the
        edit removed no longer counts, and the total at enrollment only stands in."""
        if info is None:
            return max((self.steps_total or 0) - len(self.steps_done), 0)
        return max(info.steps_count - self.passed_of(info), 0)

    def passed_of(self, info: SequenceInfo) -> int:
        """How many of the sequence's current steps this enrollment has passed."""
        if info.step_ids is None:
            return len(self.steps_done)
        return sum(1 for step_id in info.step_ids if step_id in self.steps_done)


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
        self.fold(
            event.type, text_of(event.data, "sequence_id"), event.contact_id, event.data, event.time
        )

    def fold(
        self,
        kind: str,
        sequence_id: str | None,
        contact_id: str | None,
        data: Mapping[str, Any],
        time: datetime,
    ) -> None:
        """One event: `sequence_id` is `data.sequence_id`, `contact_id` as `contact_of`."""
        if kind not in BOOK_TYPES or sequence_id is None or contact_id is None:
            return
        if kind == "enrollment.enrolled":
            self._enroll(sequence_id, contact_id, data, time)
            return
        enrollment_id = text_of(data, "enrollment_id") or self._active.get(
            (sequence_id, contact_id)
        )
        enrollment = None if enrollment_id is None else self.enrollments.get(enrollment_id)
        if enrollment is None:
            return
        if kind in DONE_STEP_TYPES:
            step_id = text_of(data, "step_id")
            if step_id is not None:
                # A step an edit took out is not done: an edit that puts it back schedules
                # it again, and it runs then.
                if data.get("reason") != "removed":
                    enrollment.steps_done.add(step_id)
                if enrollment.next_step_id == step_id:
                    enrollment.next_step_id = enrollment.next_due_at = None
        elif kind in SCHEDULE_TYPES:
            if enrollment.state != "active":
                return
            step_id = text_of(data, "step_id")
            if step_id and step_id not in enrollment.steps_done:
                enrollment.next_step_id = step_id
                enrollment.next_due_at = moment_of(
                    data, "due_at" if kind == "step.scheduled" else "to"
                )
        else:
            self._end(enrollment, kind, data, time)

    def _enroll(
        self, sequence_id: str, contact_id: str, data: Mapping[str, Any], time: datetime
    ) -> None:
        pair = (sequence_id, contact_id)
        enrollment_id = text_of(data, "enrollment_id") or (
            f"{sequence_id}:{contact_id}:{self._counts.get(pair, 0) + 1}"
        )
        if enrollment_id not in self.enrollments:
            self._add(
                Enrollment(
                    enrollment_id=enrollment_id,
                    sequence_id=sequence_id,
                    contact_id=contact_id,
                    enrolled_at=time,
                    via=text_of(data, "via"),
                    steps_total=integer_of(data, "steps_total"),
                )
            )

    def _end(
        self, enrollment: Enrollment, kind: str, data: Mapping[str, Any], time: datetime
    ) -> None:
        if enrollment.state != "active":
            return
        completed = kind == "enrollment.completed"
        enrollment.state = "completed" if completed else "disenrolled"
        enrollment.reason = None if completed else text_of(data, "reason")
        enrollment.ended_at = time
        enrollment.next_step_id = enrollment.next_due_at = None
        self._live.discard(enrollment.enrollment_id)
        pair = (enrollment.sequence_id, enrollment.contact_id)
        if self._active.get(pair) == enrollment.enrollment_id:
            del self._active[pair]

    def active(self) -> Iterator[Enrollment]:
        for enrollment_id in self._live:
            yield self.enrollments[enrollment_id]

    def of_sequence(self, sequence_id: str, *, ended: bool = False) -> list[Enrollment]:
        """The sequence's active enrollments (and the ended ones too when `ended`), by
        enrollment time, then contact and enrollment id. A scan: an index by sequence would
        cost every fold (a rebuild's too) for a query only the read models of a file make."""
        chosen = self.enrollments.values() if ended else self.active()
        return sorted(
            (e for e in chosen if e.sequence_id == sequence_id),
            key=lambda e: (e.enrolled_at, e.contact_id, e.enrollment_id),
        )

    def of_contact(self, contact_id: str) -> list[Enrollment]:
        return sorted(
            (self.enrollments[i] for i in self._by_contact.get(contact_id, [])),
            key=lambda e: (e.enrolled_at, e.enrollment_id),
        )


@dataclass(slots=True)
class ContactCard:
    """A contact's name, phone and e-mail, each with the time of the fact that set it: the
    latest fact about a field wins whatever order facts arrive in (the topics the live
    projector reads interleave differently from a file), so both read models agree. Facts
    of the same time are ordered by their values, so they too give one card in any order."""

    contact_id: str
    first_name: str | None = None
    last_name: str | None = None
    # The name shown: the later of the name an enrollment carried (`given_name`) and the
    # one the contact facts' first and last names make, as `resolve_name` chooses.
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    # The latest time of any fact; the only time rows written before the times per field
    # have, so it stands in for each field they hold.
    seen_at: datetime | None = None
    first_name_at: datetime | None = None
    last_name_at: datetime | None = None
    given_name: str | None = None
    given_name_at: datetime | None = None
    phone_at: datetime | None = None
    email_at: datetime | None = None

    def __post_init__(self) -> None:
        # A row written before the times per field has none of them (a card written since
        # has one for each field it holds): its one time stands in for each, and its name,
        # whatever made it, counts as given.
        if self.seen_at is None or any(getattr(self, f + "_at") for f in CARD_FIELDS):
            return
        self.given_name = self.name
        for field_name in CARD_FIELDS:
            if getattr(self, field_name) is not None:
                setattr(self, field_name + "_at", self.seen_at)

    def resolve_name(self) -> None:
        """`name`: the later of the enrollment's name and the facts' first and last names,
        the greater at the same time (a time-less value, never from a stream, the latest)."""
        first, last = self.first_name, self.last_name
        joined = f"{first} {last}" if first and last else (first or last or None)
        given = self.given_name
        if joined is None or given is None:
            self.name = given if joined is None else joined
            return
        first_at, last_at = self.first_name_at, self.last_name_at
        joined_at = (
            first_at if last_at is None else last_at if first_at is None else max(first_at, last_at)
        )
        if (_key(joined_at), joined) < (_key(self.given_name_at), given):
            self.name = given
        else:
            self.name = joined


CARD_FIELDS = ("first_name", "last_name", "given_name", "phone", "email")


def _later(
    value: str | None, held: str | None, held_at: datetime | None, moment: datetime | None
) -> bool:
    """Whether `value` replaces what a field holds: unless the field holds a value of a
    later fact, or of a fact of the same time that sorts after it (so facts of one time
    give one card in any order, and the same fact again changes nothing). A fact without a
    time (never from a stream) is taken as the latest."""
    if value is None:
        return False
    if moment is None or held_at is None:
        return True
    return moment > held_at or (moment == held_at and (held is None or value > held))


_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _key(moment: datetime | None) -> tuple[bool, datetime]:
    """A sort key that puts a time-less value (never from a stream) after every time."""
    return (moment is None, moment or _EARLIEST)


class Directory:
    """What the stream says about each contact: the name, phone and e-mail an enrollment
    carries, updated by `contact.created` / `contact.updated` (from any source: a dump of
    the contacts topic holds the CRM's own facts, which name the contact best)."""

    def __init__(self, cards: Iterable[ContactCard] = ()) -> None:
        self.cards: dict[str, ContactCard] = {c.contact_id: c for c in cards}

    def evolve(self, event: OutputEvent) -> None:
        self.fold(event.type, event.contact_id, event.data, event.time)

    def fold(
        self,
        kind: str,
        contact_id: str | None,
        data: Mapping[str, Any],
        moment: datetime | None = None,
    ) -> None:
        if contact_id is None or kind not in DIRECTORY_TYPES:
            return
        card = self.cards.get(contact_id)
        if card is None:
            card = self.cards[contact_id] = ContactCard(contact_id)
        if moment is not None and (card.seen_at is None or moment > card.seen_at):
            card.seen_at = moment
        # Spelled out field by field: this runs for every enrollment and contact fact of a
        # rebuild, where a generic getattr/setattr version cost twice the time.
        if kind in ("enrollment.enrolled", "enrollment.rejected"):
            name = text_of(data, "contact_name")
            phone = text_of(data, "contact_phone")
            email = text_of(data, "contact_email")
            if _later(name, card.given_name, card.given_name_at, moment):
                card.given_name, card.given_name_at = name, moment or card.given_name_at
                card.resolve_name()
        else:
            phone = text_of(data, "phone")
            email = text_of(data, "email")
            first = text_of(data, "first_name")
            last = text_of(data, "last_name")
            named = False
            if _later(first, card.first_name, card.first_name_at, moment):
                card.first_name, card.first_name_at = first, moment or card.first_name_at
                named = True
            if _later(last, card.last_name, card.last_name_at, moment):
                card.last_name, card.last_name_at = last, moment or card.last_name_at
                named = True
            if named:
                card.resolve_name()
        if _later(phone, card.phone, card.phone_at, moment):
            card.phone, card.phone_at = phone, moment or card.phone_at
        if _later(email, card.email, card.email_at, moment):
            card.email, card.email_at = email, moment or card.email_at

    def get(self, contact_id: str | None) -> ContactCard | None:
        return None if contact_id is None else self.cards.get(contact_id)


def _object(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, dict) else None


def _texts(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [str(item) for item in value]
