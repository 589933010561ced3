"""Telling owners about the contacts a sequence gave them.

The seed: the new owner of a contact is told by SMS, and "more than 20 assignments to one
owner by one sequence within a minute" become one summary message. So the assignments of a
(sequence, owner, UTC minute) gather until the minute is over, and are told then: one notice
each, or one summary for a crowd. The engine keeps the timer that ends the minute. An owner
with an e-mail address and no phone number is told by e-mail (`notify.email`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aggregates.contact import ContactState
from aggregates.decisions import EffectRequested
from aggregates.sequence import Account
from schemas.envelope import format_time

OWNER_SUMMARY_THRESHOLD = 20  # the seed: more than 20 assignments become one summary message
# The seed: users "receive an SMS saying, 'You have been assigned to a group of contacts'".
SUMMARY_BODY = "You have been assigned to a group of contacts"


@dataclass(frozen=True, slots=True)
class Assignment:
    """One contact given to the owner. What the notice says of the contact is taken when it
    is assigned: a worker whose partitions lag closes the minute later, and by then the
    contact's own partition may have read later changes."""

    contact_id: str
    enrollment_id: str  # "" when the enrollment had ended by the time it was recorded
    step_id: str
    effect_id: str  # the step's: the notice is of that run of the step
    at: datetime
    who: str  # name and phone, else the id


Window = tuple[str, str, datetime]  # sequence, owner, the UTC minute the assignments fall in

# How long a minute told is remembered: a day, as the engine remembers an input's identity
# (an input later than that is a known limit of its own, README "Known limits").
TOLD_KEPT = timedelta(days=1)


def describe(contact: ContactState) -> str:
    """The contact as a notice names it: name and phone, else its id."""
    return ", ".join(p for p in (contact.name, contact.phone) if p) or contact.contact_id


def window_of(sequence_id: str, owner_id: str, at: datetime) -> Window:
    return sequence_id, owner_id, at.astimezone(UTC).replace(second=0, microsecond=0)


class OwnerNotices:
    def __init__(self) -> None:
        self._open: dict[Window, list[Assignment]] = {}
        # How many times each recent window was told: an input later than the minute it
        # falls in opens the window again once it was told, and the second telling must not
        # take the first one's event and effect ids.
        self._told: dict[Window, int] = {}
        self._told_order: deque[Window] = deque()

    def __len__(self) -> int:
        return len(self._open)

    def assign(self, window: Window, assignment: Assignment) -> bool:
        """Gather one assignment; True when it opens its window (the caller then sets the
        timer that closes it)."""
        batch = self._open.get(window)
        if batch is None:
            self._open[window] = [assignment]
            return True
        batch.append(assignment)
        return False

    def close(
        self,
        window: Window,
        at: datetime,
        *,
        account: Account,
        line: str | None,
    ) -> list[EffectRequested]:
        """The notices of one window, sent at `at` from the sequence's `line`: nothing if
        the window was closed already. A sequence of owner steps needs no outbound line of
        its own, so without one the notice goes from the account's line of the lowest id
        (the effects' default number, when the account has none): by id, not by the file's
        order, which a worker's stored definitions (PostgreSQL jsonb) do not keep."""
        line = line or min(account.lines, default=None)
        # In time order, then by contact: the order partitions were read in does not show.
        batch = sorted(self._open.pop(window, []), key=lambda a: (a.at, a.contact_id))
        if not batch:
            return []
        told = self._remember_told(window)
        sequence_id, owner_id, minute = window
        minute_text = format_time(minute)
        user = account.users.get(owner_id)
        base: dict[str, object] = {
            "sequence_id": sequence_id,
            "user_id": owner_id,
            "to": owner_id,  # a user (CONTRACT.md §1.2); the number to text goes alongside
            "ring_group_numbers": [user.phone] if user and user.phone else [],
            "from_line": line,
            "from_number": account.lines.get(line) if line else None,
        }
        kind = "notify.sms"
        by_email = user is not None and bool(user.email) and not user.phone
        if user is not None and by_email:
            # An owner with no number to text is told by e-mail rather than not at all.
            kind = "notify.email"
            base["ring_group_emails"] = [user.email]
        if len(batch) > OWNER_SUMMARY_THRESHOLD:
            payload = {
                **base,
                "effect_id": f"fx:{sequence_id}:owner:{owner_id}:{minute_text}:summary"
                + ("" if told == 1 else f":{told}"),
                "step_id": batch[0].step_id,
                "contact_id": batch[0].contact_id,
                "contact_ids": [a.contact_id for a in batch],
                # The seed's words exactly; how many is in contact_ids.
                "body": SUMMARY_BODY,
                **({"subject": "New contacts assigned"} if by_email else {}),
            }
            return [EffectRequested(at, kind, f"user:{owner_id}", payload)]
        notices = []
        for assignment in batch:
            contact_id = assignment.contact_id
            payload = {
                **base,
                "effect_id": f"{assignment.effect_id}:owner-notice",
                "step_id": assignment.step_id,
                "contact_id": contact_id,
                # None would break the schema (a non-empty string when present)
                **({"enrollment_id": assignment.enrollment_id} if assignment.enrollment_id else {}),
                "body": f"You have been assigned a new contact: {assignment.who}.",
                **({"subject": "New contact assigned"} if by_email else {}),
            }
            notices.append(EffectRequested(at, kind, contact_id, payload))
        return notices

    def told(self, window: Window) -> int:
        """How many times the window was told (a day back at most): 1 after its first
        closing, more where late inputs opened it again."""
        return self._told.get(window, 0)

    def _remember_told(self, window: Window) -> int:
        told = self._told.get(window, 0) + 1
        if told == 1:
            self._told_order.append(window)
        self._told[window] = told
        # Windows are told about in time order, give or take late ones: forget from the
        # oldest told while it is more than a day before this one.
        while self._told_order and self._told_order[0][2] < window[2] - TOLD_KEPT:
            del self._told[self._told_order.popleft()]
        return told
