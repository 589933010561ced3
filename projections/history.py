"""The Sequence History report: every output event of one sequence as a row (contact, action,
event, time), newest first, with the search, event-type and timeframe filters and the total.

The pieces that decide what a row says and which rows a filter keeps live here as plain
functions, so the PostgreSQL projection stores the same rows and filters the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from projections.base import Projection
from projections.search_text import SEPARATOR, fold
from projections.state import Catalog, ContactCard, Directory
from projections.stream import OutputEvent, text_of
from schemas.envelope import format_time

ENROLLMENT_TYPES = frozenset({"enrollment.enrolled", "enrollment.rejected"})
DISENROLLMENT_TYPES = frozenset({"enrollment.disenrolled", "enrollment.completed"})
STEP_TYPES = frozenset({"step.scheduled", "step.deferred", "step.executed", "step.skipped"})
COMMUNICATION_TYPES = frozenset(
    {
        "sms.send",
        "mms.send",
        "email.send",
        "call.dial",
        "voicemail.drop",
        "notify.sms",
        "notify.email",
    }
)
# What a provider answered, when the contact was not (or may not have been) reached: a
# send that went through adds no row, its command's row says it. A status adds a row only
# when it is one of NOT_REACHED (providers' own words: Twilio's message and call statuses,
# SendGrid's events).
OUTCOME_TYPES = frozenset({"effect.failed", "effect.unknown", "effect.status_changed"})
# A key on a dialer call: the contact's (they answered, and said what they want), or on a
# preview call an agent's.
KEY_PRESSED = "dialer.key_pressed"
_KEY_MEANINGS = {
    "connect": "put through to an agent",
    "callback": "asked to be called back",
    "opt_out": "asked not to be contacted again",
}
NOT_REACHED = {
    "failed": "failed",
    "undelivered": "undelivered",
    "busy": "busy",
    "no-answer": "not answered",
    "canceled": "canceled",
    "bounce": "bounced",
    "dropped": "dropped",
}
# Contact facts count only when the engine made them (a step or an intake), never the CRM's.
PROPERTY_UPDATE_TYPES = frozenset(
    {
        "contact.tag_added",
        "contact.tag_removed",
        "contact.disposition_changed",
        "contact.dnc_changed",
        "contact.updated",
        "contact.opted_out",
        "contact.opted_in",
        "power_dialer.added",
        "power_dialer.removed",
    }
)
CREATION_TYPES = frozenset({"contact.created", "lead.rejected"})
ENGINE_ONLY_TYPES = PROPERTY_UPDATE_TYPES | {"contact.created"}

# The report's kinds of row (the seed's enrollment, disenrollment, property updates,
# communication and creation, and the steps' own rows): each row is of exactly one.
EVENT_KINDS: dict[str, frozenset[str]] = {
    "enrollment": ENROLLMENT_TYPES,
    "disenrollment": DISENROLLMENT_TYPES,
    "property_update": PROPERTY_UPDATE_TYPES,
    "communication": COMMUNICATION_TYPES | OUTCOME_TYPES | {KEY_PRESSED},
    "creation": CREATION_TYPES,
    "step": STEP_TYPES | {"webhook.post"},
}
# The seed's "trigger and action events": what triggers (and exits) did to an enrollment,
# and what the sequence's steps and intake did. Each is a union of kinds above.
UNION_KINDS: dict[str, frozenset[str]] = {
    "trigger": ENROLLMENT_TYPES | DISENROLLMENT_TYPES,
    "action": frozenset().union(
        *(EVENT_KINDS[k] for k in ("step", "property_update", "communication", "creation"))
    ),
}
HISTORY_TYPES: frozenset[str] = frozenset().union(*EVENT_KINDS.values())

TIMEFRAMES = (
    "today",
    "yesterday",
    "last_7_days",
    "last_30_days",
    "this_month",
    "last_month",
    "all_time",
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- what a row says -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A stored row: the contact's name and phone are looked up when the report is read, so
    the report shows what is known of the contact now. `position` orders the rows of one
    time (`history_rank`)."""

    position: int
    event_source: str
    event_id: str | None
    sequence_id: str
    contact_id: str | None
    type: str
    action: str
    event: str
    time: datetime


# Bits of a rank: the hash of the event's cause, then its number among the cause's outputs.
_NUMBER_BITS = 23
_CAUSE_BITS = 63 - _NUMBER_BITS


def history_rank(source: str, event_id: str | None) -> int:
    """Where an event's row goes among the rows of its time, newest first: a number that
    depends on the event alone, so a file, a rebuild and a live projector (which reads the
    output topics' partitions interleaved in no fixed order) page the same rows alike.

    The engine's outputs are ``<cause>/<n>`` in the order it wrote them: a cause's later
    output ranks higher (newest-written first: the step scheduled next above the text sent
    above the step executed). Causes, and events of other sources, rank by a hash of their
    source and id: in no meaningful order, but in the same one everywhere."""
    if event_id is None:
        return 0
    cause, _, number = event_id.rpartition("/")
    # At most 7 digits: the engine's numbers fit the rank's bits (and an id of any length
    # from elsewhere costs no long conversion).
    if not (cause and number.isdigit() and number.isascii() and len(number) <= 7):
        cause, number = event_id, "0"
    digest = hashlib.blake2b(f"{source}\x00{cause}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest) >> (64 - _CAUSE_BITS)) << _NUMBER_BITS | min(
        int(number), (1 << _NUMBER_BITS) - 1
    )


def history_entry(event: OutputEvent, catalog: Catalog) -> HistoryEntry | None:
    """The row an output event adds to its sequence's history, or None when it adds none."""
    row = history_row(
        event.type,
        event.by_engine,
        event.data,
        text_of(event.data, "sequence_id"),
        event.contact_id,
        catalog,
    )
    if row is None:
        return None
    sequence_id, contact_id, action, cause = row
    return HistoryEntry(
        position=history_rank(event.source, event.id),
        event_source=event.source,
        event_id=event.id,
        sequence_id=sequence_id,
        contact_id=contact_id,
        type=event.type,
        action=action,
        event=cause,
        time=event.time,
    )


def history_row(
    kind: str,
    by_engine: bool,
    data: Mapping[str, Any],
    sequence_id: str | None,
    contact_id: str | None,
    catalog: Catalog,
) -> tuple[str, str | None, str, str] | None:
    """(sequence_id, contact_id, action, event) of the row an event adds, from its parts
    (`sequence_id` is `data.sequence_id`, `contact_id` as `contact_of`); None for no row."""
    if kind not in HISTORY_TYPES:
        return None
    if kind in ENGINE_ONLY_TYPES and not by_engine:
        return None
    if kind == "lead.rejected":
        if sequence_id is None:
            address = text_of(data, "to")
            sequence_id = catalog.by_intake(address) if address else None
        contact_id = None
    if kind == "effect.status_changed" and text_of(data, "status") not in NOT_REACHED:
        return None
    if sequence_id is None:
        return None
    cause = (text_of(data, "via") if kind == "enrollment.enrolled" else None) or kind
    return sequence_id, contact_id, describe(kind, data), cause


_PLAIN_ACTIONS = {
    "enrollment.enrolled": "Enrolled",
    "enrollment.completed": "Completed",
    "sms.send": "SMS sent",
    "mms.send": "MMS sent",
    "email.send": "Email sent",
    "voicemail.drop": "Voicemail dropped",
    "webhook.post": "Webhook posted",
    "notify.sms": "SMS notification sent",
    "notify.email": "Email notification sent",
    "contact.created": "Contact created",
    "power_dialer.added": "Added to power dialer",
    "power_dialer.removed": "Removed from power dialer",
}
_DETAILED_ACTIONS = {
    "enrollment.rejected": ("Rejected", "reason"),
    "enrollment.disenrolled": ("Disenrolled", "reason"),
    "lead.rejected": ("Lead rejected", "reason"),
    "contact.tag_added": ("Tag added", "tag"),
    "contact.tag_removed": ("Tag removed", "tag"),
    "contact.disposition_changed": ("Disposition changed", "disposition"),
}
_STEP_ACTIONS = {
    "step.scheduled": ("scheduled", None),
    "step.deferred": ("deferred", "reason"),
    "step.executed": ("executed", None),
    "step.skipped": ("skipped", "reason"),
}
# The effect an outcome answers, by its command's type (`effect_type`).
_EFFECT_LABELS = {
    "sms.send": "SMS",
    "mms.send": "MMS",
    "email.send": "Email",
    "call.dial": "Call",
    "voicemail.drop": "Voicemail",
    "webhook.post": "Webhook",
    "notify.sms": "SMS notification",
    "notify.email": "Email notification",
    "power_dialer.added": "Power dialer add",
    "power_dialer.removed": "Power dialer removal",
}
_UPDATE_LABELS = {
    "owner_id": "Owner changed",
    "line_id": "Line added",
    "lead_source": "Lead source changed",
}
_BOOKKEEPING = frozenset({"contact_id", "sequence_id", "enrollment_id", "step_id", "effect_id"})


def describe(kind: str, data: Mapping[str, Any]) -> str:
    """A short phrase for the report from an event's type and data: "Enrolled",
    "Disenrolled: responded", "Step s2 deferred (outside_hours)", "Tag added: hot"."""
    if kind in _PLAIN_ACTIONS:
        return _PLAIN_ACTIONS[kind]
    if kind in _DETAILED_ACTIONS:
        label, field = _DETAILED_ACTIONS[kind]
        detail = text_of(data, field)
        return f"{label}: {detail}" if detail else label
    if kind in _STEP_ACTIONS:
        verb, why = _STEP_ACTIONS[kind]
        step_id = text_of(data, "step_id")
        phrase = f"Step {step_id} {verb}" if step_id else f"Step {verb}"
        detail = text_of(data, why) if why else None
        return f"{phrase} ({detail})" if detail else phrase
    if kind == "call.dial":
        mode = text_of(data, "mode")
        return f"Call dialed ({mode})" if mode else "Call dialed"
    if kind == "contact.dnc_changed":
        return "Marked DNC" if data.get("dnc") is True else "DNC removed"
    if kind in ("contact.opted_out", "contact.opted_in"):
        label = "Opted out" if kind == "contact.opted_out" else "Opted in"
        return f"{label} ({text_of(data, 'channel') or 'all'})"
    if kind == "contact.updated":
        return _describe_update(data) or "Contact updated"
    if kind in OUTCOME_TYPES:
        return _describe_outcome(kind, data)
    if kind == KEY_PRESSED:
        digit = text_of(data, "digit") or "?"
        if text_of(data, "mode") == "preview":
            # An agent's key: the contact's phone has not rung yet.
            return f"Agent took the call: pressed {digit} (put through to the contact)"
        meaning = _KEY_MEANINGS.get(text_of(data, "action") or "")
        pressed = f"Call answered: pressed {digit}"
        return f"{pressed} ({meaning})" if meaning else pressed
    return kind


def _describe_outcome(kind: str, data: Mapping[str, Any]) -> str:
    """The row of a provider's answer: "SMS failed: <reason>", "Call not answered"."""
    effect_type = text_of(data, "effect_type")
    label = _EFFECT_LABELS.get(effect_type or "", effect_type or "Effect")
    if kind == "effect.status_changed":
        status = text_of(data, "status") or ""
        return f"{label} {NOT_REACHED.get(status, status)}"
    phrase = f"{label} failed" if kind == "effect.failed" else f"{label} outcome unknown"
    reason = text_of(data, "reason")
    return f"{phrase}: {reason}" if reason else phrase


def _describe_update(data: Any) -> str:
    changes = [
        f"{_UPDATE_LABELS.get(key, f'{key} changed')}: {value}"
        for key, value in data.items()
        if key not in _BOOKKEEPING and value is not None
    ]
    return "; ".join(changes)


# --- which rows a filter keeps -------------------------------------------------------------


def event_types_for(kind: str) -> frozenset[str]:
    """The CloudEvent types an `--type` value selects: a kind of the report, or one exact type."""
    if kind in EVENT_KINDS:
        return EVENT_KINDS[kind]
    if kind in UNION_KINDS:
        return UNION_KINDS[kind]
    if kind in HISTORY_TYPES:
        return frozenset({kind})
    known = ", ".join(sorted({*EVENT_KINDS, *UNION_KINDS}))
    raise ValueError(f"unknown event type {kind!r}: use one of {known}, or a history event type")


def resolve_zone(explicit: str | None, account: str | None) -> ZoneInfo:
    """The account's zone: the one asked for, else the sequence's `account_timezone`, else UTC."""
    if explicit is not None:
        try:
            return ZoneInfo(explicit)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {explicit!r}") from None
    if account is not None:
        try:
            return ZoneInfo(account)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def time_window(
    timeframe: str, now: datetime, zone: ZoneInfo
) -> tuple[datetime | None, datetime | None]:
    """[start, end) in UTC for a timeframe, in whole local days of `zone` around `now`'s local
    date. `last_7_days` is the 7 local days ending today inclusive (`last_30_days` alike)."""
    if timeframe == "all_time":
        return None, None
    today = now.astimezone(zone).date()
    tomorrow = today + timedelta(days=1)
    month = today.replace(day=1)
    bounds: dict[str, tuple[date, date]] = {
        "today": (today, tomorrow),
        "yesterday": (today - timedelta(days=1), today),
        "last_7_days": (today - timedelta(days=6), tomorrow),
        "last_30_days": (today - timedelta(days=29), tomorrow),
        "this_month": (month, _next_month(month)),
        "last_month": ((month - timedelta(days=1)).replace(day=1), month),
    }
    if timeframe not in bounds:
        raise ValueError(f"unknown timeframe {timeframe!r}: use one of {', '.join(TIMEFRAMES)}")
    start, end = bounds[timeframe]
    return _midnight(start, zone), _midnight(end, zone)


def _next_month(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    # Where midnight falls in a DST gap, fold=0 maps it to the instant the day begins.
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


_PHONE_LIKE = re.compile(r"[0-9+().\-\s]+")
_NON_DIGITS = re.compile(r"[^0-9]")


def digits_of(text: str) -> str:
    return _NON_DIGITS.sub("", text)


@dataclass(frozen=True, slots=True)
class SearchTerms:
    """`text` matches name, id, phone or e-mail, case-insensitively; `digits` is set when the
    text looks like a phone number, and matches the digits of the phone ("(720) 555-0142")."""

    text: str
    digits: str
    # As typed (stripped): PostgreSQL folds it with lower() to match contact ids, as it
    # folds the stored ids (under ICU where it has it: pg_tables `folding`).
    typed: str
    # As names, phones and e-mails are folded (search_text): accents and case aside.
    folded: str

    @classmethod
    def parse(cls, text: str) -> SearchTerms | None:
        wanted = text.strip().lower()
        if not wanted:
            return None
        digits = digits_of(wanted) if _PHONE_LIKE.fullmatch(wanted) else ""
        return cls(wanted, digits, text.strip(), fold(text.strip()).replace(SEPARATOR, " "))


def contact_matches(terms: SearchTerms, contact_id: str | None, card: ContactCard | None) -> bool:
    if contact_id is None:
        return False
    if terms.text in contact_id.lower():
        return True
    if card is None:
        return False
    if any(terms.folded in fold(f) for f in (card.name, card.phone, card.email) if f):
        return True
    return bool(terms.digits and card.phone and terms.digits in digits_of(card.phone))


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    sequence_id: str
    search: str | None = None
    kind: str | None = None
    timeframe: str = "all_time"
    now: datetime | None = None
    timezone: str | None = None
    limit: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        if self.timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {self.timeframe!r}")
        if self.kind is not None:
            event_types_for(self.kind)
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must not be negative")
        if self.offset < 0:
            raise ValueError("offset must not be negative")

    @property
    def types(self) -> frozenset[str] | None:
        return None if self.kind is None else event_types_for(self.kind)

    @property
    def terms(self) -> SearchTerms | None:
        return None if self.search is None else SearchTerms.parse(self.search)


@dataclass(frozen=True, slots=True)
class HistoryLine:
    contact_id: str | None
    contact_name: str | None
    contact_phone: str | None
    action: str
    event: str
    type: str
    time: datetime

    @property
    def contact(self) -> str | None:
        """The report's contact column: `Name (id) +phone`, as much of it as is known."""
        return contact_label(self.contact_id, self.contact_name, self.contact_phone)

    def to_json(self) -> dict[str, Any]:
        return {
            "contact": self.contact,
            "contact_id": self.contact_id,
            "contact_name": self.contact_name,
            "contact_phone": self.contact_phone,
            "action": self.action,
            "event": self.event,
            "type": self.type,
            "time": format_time(self.time),
        }


def contact_label(contact_id: str | None, name: str | None, phone: str | None) -> str | None:
    """`Maya Ortiz (c-100) +17205550142`, `c-100 +17205550142`, `c-100`; None for a row of
    no contact (a rejected lead)."""
    if contact_id is None:
        return None
    text = f"{name} ({contact_id})" if name else contact_id
    return f"{text} {phone}" if phone else text


@dataclass(frozen=True, slots=True)
class HistoryPage:
    sequence_id: str
    total: int
    rows: tuple[HistoryLine, ...]
    timezone: str
    # The window the timeframe chose: the moment it counts from (`--now`, else the latest
    # decision) and [start, end) in UTC, None for all time; said with the page so a
    # `today` read later can be told apart and asked again.
    timeframe: str = "all_time"
    now: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence_id": self.sequence_id,
            "total": self.total,
            "rows": [row.to_json() for row in self.rows],
            "timezone": self.timezone,
            "timeframe": self.timeframe,
            "now": _time_or_none(self.now),
            "from": _time_or_none(self.start),
            "to": _time_or_none(self.end),
        }


def _time_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def history_line(entry: HistoryEntry, card: ContactCard | None) -> HistoryLine:
    return HistoryLine(
        contact_id=entry.contact_id,
        contact_name=card.name if card else None,
        contact_phone=card.phone if card else None,
        action=entry.action,
        event=entry.event,
        type=entry.type,
        time=entry.time,
    )


class HistoryReport(Projection):
    def __init__(self, only: str | None = None) -> None:
        """`only`: keep the rows of that sequence alone (a file's report asks for one, and
        the rows of all of them took about 0.7 KB an output line)."""
        super().__init__()
        self.catalog = Catalog()
        self.directory = Directory()
        self._entries: defaultdict[str, list[HistoryEntry]] = defaultdict(list)
        self._only = only

    def _evolve(self, event: OutputEvent, order: int) -> None:
        self.catalog.evolve(event, order)
        self.directory.evolve(event)
        entry = history_entry(event, self.catalog)
        if entry is not None and self._only in (None, entry.sequence_id):
            self._entries[entry.sequence_id].append(entry)

    def knows(self, sequence_id: str) -> bool:
        return sequence_id in self.catalog.sequences or sequence_id in self._entries

    def query(self, query: HistoryQuery) -> HistoryPage | None:
        """The page of rows the query asks for; None for a sequence never seen in the stream.
        Without `now` the timeframe is taken relative to the latest event time applied."""
        if self._only not in (None, query.sequence_id):
            raise ValueError(f"this report keeps the rows of {self._only!r} alone")
        if not self.knows(query.sequence_id):
            return None
        info = self.catalog.sequences.get(query.sequence_id)
        zone = resolve_zone(query.timezone, info.account_timezone if info else None)
        now = query.now or self.latest_time or EPOCH
        start, end = time_window(query.timeframe, now, zone)
        types, terms = query.types, query.terms
        kept = [
            entry
            for entry in self._entries.get(query.sequence_id, [])
            if (types is None or entry.type in types)
            and (start is None or start <= entry.time)
            and (end is None or entry.time < end)
            and (
                terms is None
                or contact_matches(terms, entry.contact_id, self.directory.get(entry.contact_id))
            )
        ]
        kept.sort(key=lambda e: (e.time, e.position), reverse=True)
        stop = None if query.limit is None else query.offset + query.limit
        return HistoryPage(
            sequence_id=query.sequence_id,
            total=len(kept),
            rows=tuple(
                history_line(entry, self.directory.get(entry.contact_id))
                for entry in kept[query.offset : stop]
            ),
            timezone=zone.key,
            timeframe=query.timeframe,
            now=now,
            start=start,
            end=end,
        )
