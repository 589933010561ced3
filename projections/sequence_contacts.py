"""The contacts enrolled in one sequence: each enrollment with what is known of its contact,
how far it got and the next step due (the contact view's ContactEnrollment, seen from the
sequence). Active enrollments by default; the ended ones too on request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from projections.contacts_view import ContactEnrollment, contact_enrollment
from projections.history import resolve_zone
from projections.state import (
    Catalog,
    ContactCard,
    Directory,
    Enrollment,
    EnrollmentBook,
    SequenceInfo,
)


@dataclass(frozen=True, slots=True)
class SequenceContactsQuery:
    sequence_id: str
    ended: bool = False  # the completed and disenrolled enrollments too
    limit: int | None = None  # None: every row
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SequenceContact:
    contact_id: str
    name: str | None
    phone: str | None
    email: str | None
    enrollment: ContactEnrollment

    def to_json(self) -> dict[str, Any]:
        enrollment = self.enrollment.to_json()
        # The page names its sequence once.
        del enrollment["sequence_id"], enrollment["sequence_name"]
        return {
            "contact_id": self.contact_id,
            "name": self.name,
            "phone": self.phone,
            "email": self.email,
            **enrollment,
        }


@dataclass(frozen=True, slots=True)
class SequenceContactsPage:
    sequence_id: str
    total: int  # the rows before limit and offset
    rows: tuple[SequenceContact, ...]
    timezone: str  # the account's zone, for times shown as text (as in the history)

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence_id": self.sequence_id,
            "total": self.total,
            "rows": [row.to_json() for row in self.rows],
        }


def contacts_page(
    query: SequenceContactsQuery,
    info: SequenceInfo,
    total: int,
    enrollments: Iterable[tuple[Enrollment, ContactCard | None]],
) -> SequenceContactsPage:
    """The page of `enrollments` (already in order, limited) with their contacts' cards."""
    catalog = Catalog([info])
    return SequenceContactsPage(
        sequence_id=query.sequence_id,
        total=total,
        rows=tuple(
            SequenceContact(
                contact_id=enrollment.contact_id,
                name=card.name if card else None,
                phone=card.phone if card else None,
                email=card.email if card else None,
                enrollment=contact_enrollment(enrollment, catalog),
            )
            for enrollment, card in enrollments
        ),
        timezone=resolve_zone(None, info.account_timezone).key,
    )


def contacts_of(
    catalog: Catalog, book: EnrollmentBook, directory: Directory, query: SequenceContactsQuery
) -> SequenceContactsPage:
    """The page from the in-memory folds; UnknownSequenceError for a sequence the list does
    not show (never defined, or deleted)."""
    info = catalog.shown(query.sequence_id)
    enrollments = book.of_sequence(query.sequence_id, ended=query.ended)
    chosen = enrollments[query.offset :]
    if query.limit is not None:
        chosen = chosen[: query.limit]
    return contacts_page(
        query, info, len(enrollments), ((e, directory.get(e.contact_id)) for e in chosen)
    )
