"""Bytes in, a checked CloudEvent out: the one gate every event passes before the domain sees
it. A refusal names the field (`data.contact_id: is required`) so a dead letter explains itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from fastjsonschema import JsonSchemaValueException

from schemas import checking
from schemas.definitions import (
    ID_REASON,
    DefinitionRejected,
    is_plain_id,
    validate_definition_document,
)
from schemas.envelope import (
    EARLIEST_TIME,
    LATEST_TIME,
    RFC3339_REASON,
    RFC3339_SHAPE,
    TIME_RANGE_REASON,
    CloudEvent,
    TimeOutOfRange,
    parse_event_time,
)
from schemas.registry import EVENT_TYPES, input_refusal, source_refusal
from schemas.upcasting import upcast

# Attributes the CloudEvent dataclass holds itself; the rest of the envelope are extensions.
# `datacontenttype` is always JSON here, so it is checked and then not kept.
_ENVELOPE_KEYS = frozenset(
    [
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "dataversion",
        "datacontenttype",
        "data",
    ]
)

# Inputs about one contact: Kafka keys them by `subject`, which must then be that contact.
_CONTACT_SCOPED = frozenset(
    {
        "contact.created",
        "contact.updated",
        "contact.tag_added",
        "contact.tag_removed",
        "contact.disposition_changed",
        "contact.dnc_changed",
        "contact.opted_out",
        "contact.opted_in",
        "call.completed",
        "message.received",
        "appointment.changed",
    }
)

# Types whose data carries a contact's `timezone` and `email`.
_ZONED = frozenset({"contact.created", "contact.updated"})

ENVELOPE_SCHEMA = "cloudevent.schema.json"

_FIRST_YEAR, _LAST_YEAR = f"{EARLIEST_TIME.year:04d}", f"{LATEST_TIME.year:04d}"

# The envelope schema's patterns, for _envelope_is_plain.
_DATAVERSION = re.compile(r"[1-9][0-9]{0,8}")
_JSON_CONTENT = re.compile(r"application/json(;.*)?")

# Compiled once at import: every decode needs it. `time` is checked by _event_time instead.
_check_envelope = checking.compiled(ENVELOPE_SCHEMA, formats=False)

DataCheck = Callable[[Any], Any]


class EventRejected(ValueError):  # noqa: N818 - the name is fixed by DEVELOPERS.md
    """An event that cannot be accepted; `field` is a dotted path into the event."""

    def __init__(self, field: str, reason: str) -> None:
        field = printable(field)
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[EventRejected], tuple[str, str]]:
        return (type(self), (self.field, self.reason))


# Control characters and the marks that turn text around: a key of an event's data holding
# them, named on a terminal, could clear it or forge a report line of its own.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(field: str) -> str:
    """A field path as it can be shown: what cannot be is written as its escape (\\x1b)."""
    if _UNPRINTABLE.search(field) is None:
        return field
    return _UNPRINTABLE.sub(lambda found: found[0].encode("unicode_escape").decode(), field)


UTF8_BOM = b"\xef\xbb\xbf"
_NUL_ESCAPE_TEXT = "\\u0000"
_NUL_ESCAPE = _NUL_ESCAPE_TEXT.encode()


def without_bom(raw: bytes, line: int) -> bytes:
    """A file's first line without the byte order mark some editors write (RFC 8259 lets a
    parser ignore it): the first event of a file saved on Windows is not lost to it."""
    return raw[len(UTF8_BOM) :] if line == 1 and raw.startswith(UTF8_BOM) else raw


def decode_event(raw: bytes | str, *, as_input: bool = False, stored: bool = False) -> CloudEvent:
    """Parse and check one structured-mode CloudEvent; its data comes out at the current version.

    Raises EventRejected naming the first field at fault. `as_input`: an event the engine
    is to decide, so an output type is refused as soon as the type is known (before its
    data is checked: "an output, not an input" says more than a field it lacks).
    `stored`: an input decided and stored already, replayed as it was (see decode_stored):
    the checks of what the JSON text holds (NUL, a key written twice) are passed over.
    """
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        unwritable = checking.unwritable_in_text(raw)
        if unwritable is not None:
            raise EventRejected(*unwritable) from None
        raise EventRejected("event", f"not valid JSON: {_json_problem(raw, exc)}") from None
    # JSON can only carry a NUL escaped; the walk runs for the rare event that has the escape.
    if not stored and (
        (_NUL_ESCAPE in raw) if isinstance(raw, bytes) else (_NUL_ESCAPE_TEXT in raw)
    ):
        where = checking.first_nul(envelope)
        if where is not None:
            raise EventRejected(where, checking.NUL_REASON)
    # Nesting is counted only for the rare line with many brackets: with no more than the
    # limit of them, no value can nest deeper.
    brackets = (
        raw.count(b"{") + raw.count(b"[")
        if isinstance(raw, bytes)
        else raw.count("{") + raw.count("[")
    )
    if brackets > checking.DEPTH_LIMIT and isinstance(envelope, dict):
        for key, value in envelope.items():
            if checking.too_deep(value):
                raise EventRejected(str(key), checking.DEPTH_REASON)
    if not stored and (repeated := checking.repeated_key(raw, envelope)) is not None:
        raise EventRejected("event", f"the key {repeated!r} appears twice in one object")
    if not _envelope_is_plain(envelope):
        try:
            _check_envelope(envelope)
        except JsonSchemaValueException as exc:
            path, reason = checking.explain(exc)
            raise EventRejected(path or "event", reason) from None
    time = _event_time(envelope["time"])

    event_type: str = envelope["type"]
    info = EVENT_TYPES.get(event_type)
    if info is None:
        raise EventRejected("type", f"unknown event type {event_type!r}")
    if as_input and (refusal := input_refusal(event_type, envelope["source"])) is not None:
        raise EventRejected("type", refusal)
    if as_input and (refusal := source_refusal(event_type, envelope["source"])) is not None:
        raise EventRejected("source", refusal)
    version = _claimed_version(envelope)
    if version > info.version:
        raise EventRejected(
            "dataversion",
            f"unsupported version {version} of {event_type} (current is {info.version})",
        )

    try:
        data = _data_check(event_type, version)(envelope["data"])
    except JsonSchemaValueException as exc:
        path, reason = checking.explain(exc)
        raise EventRejected(f"data.{path}" if path else "data", reason) from None
    if version != info.version:
        data = upcast(event_type, data, version)

    subject = envelope.get("subject")
    if event_type in _CONTACT_SCOPED and subject != data["contact_id"]:
        # Without it the record has no key on Kafka, and the contact's facts would be
        # spread over partitions that different workers decide (CONTRACT.md §1).
        reason = "is required: the contact id" if subject is None else "must equal data.contact_id"
        raise EventRejected("subject", reason)
    if event_type in _ZONED:
        _check_contact_fields(data)
    return _event_of(envelope, time, data, info.version)


def _claimed_version(envelope: dict[str, Any]) -> int:
    version_text = envelope.get("dataversion")
    return 1 if version_text is None else int(version_text)


def _event_of(envelope: dict[str, Any], time: datetime, data: Any, version: int) -> CloudEvent:
    """The CloudEvent of a read envelope, its data at `version` (the current one)."""
    extensions = (
        {}
        if envelope.keys() <= _ENVELOPE_KEYS
        else {key: value for key, value in envelope.items() if key not in _ENVELOPE_KEYS}
    )
    # Positional: a third quicker than keywords for this frozen dataclass.
    return CloudEvent(
        envelope["id"],  # id
        envelope["source"],  # source
        envelope["type"],  # type
        time,  # time
        envelope.get("subject"),  # subject
        data,  # data
        version,  # dataversion
        extensions,  # extensions
    )


def _check_contact_fields(data: dict[str, Any]) -> None:
    """What the JSON Schema cannot say about a contact's fields."""
    zone = data.get("timezone")
    if zone is not None and not checking.is_iana_zone(zone):
        raise EventRejected("data.timezone", f"unknown IANA time zone {zone!r}")
    # Empty is no address; anything else must be one, not a list or a header break.
    email = data.get("email")
    if email and not checking.is_one_address(email):
        raise EventRejected("data.email", checking.ADDRESS_REASON)


def decode_stored(raw: bytes) -> CloudEvent:
    """An input decided and stored already, replayed as it was: today's checks fill in a
    definition's defaults and upcast old versions, but one added since it was decided
    must not stop a rebuild (its decisions are published). Refused by a rule of today,
    it is read as it stands, its time as Python reads it (an offset of +05:60 as +06:00,
    as when it was decided)."""
    try:
        return decode_event(raw, stored=True)
    except EventRejected:
        envelope = orjson.loads(raw)
    info = EVENT_TYPES[envelope["type"]]
    version = _claimed_version(envelope)
    data = envelope["data"]
    if version != info.version:
        data = upcast(envelope["type"], data, version)
    text = envelope["time"]
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return _event_of(envelope, moment.astimezone(UTC), data, info.version)


def _envelope_is_plain(envelope: Any) -> bool:
    """A quick yes for the usual well-formed envelope, three times cheaper than the schema.

    It never says yes where cloudevent.schema.json says no (a property test holds it to
    that); on a no the schema runs and names the fault, so a no is always safe.
    """
    if type(envelope) is not dict:
        return False
    get = envelope.get
    if get("specversion") != "1.0" or type(get("data")) is not dict:
        return False
    for key in ("id", "source", "type", "time"):
        value = get(key)
        if type(value) is not str or not value:
            return False
    subject = get("subject", "-")
    version = get("dataversion", "1")
    content_type = get("datacontenttype", "application/json")
    data_schema = get("dataschema", "-")
    return (
        type(subject) is str
        and subject != ""
        and type(version) is str
        and _DATAVERSION.fullmatch(version) is not None
        and type(content_type) is str
        and _JSON_CONTENT.fullmatch(content_type) is not None
        and type(data_schema) is str
        and data_schema != ""
    )


def _event_time(text: str) -> datetime:
    # The envelope schema's `format: date-time`, checked here: one strict regex for the shape,
    # then parse_event_time for the values (a 30 February fails there) and for the range the
    # engine can compute delays in.
    if RFC3339_SHAPE.fullmatch(text) is None:
        raise EventRejected("time", RFC3339_REASON)
    try:
        if text[-1] == "Z" and text[10] == "T":
            # The common case, 3x quicker than parse_event_time, which it agrees with: the
            # range runs from a year's start to a year's end, so in UTC it is a matter of
            # the year, four digits by the pattern.
            moment = datetime.fromisoformat(text)
            if not _FIRST_YEAR <= text[:4] <= _LAST_YEAR:
                raise TimeOutOfRange(TIME_RANGE_REASON)
            return moment
        return parse_event_time(text)
    except TimeOutOfRange:
        raise EventRejected("time", TIME_RANGE_REASON) from None
    except ValueError as exc:
        if text[17:19] == "60":
            # RFC 3339 allows a leap second; Python's datetime cannot hold one.
            raise EventRejected("time", LEAP_SECOND_REASON) from None
        raise EventRejected("time", f"{RFC3339_REASON}: {exc}") from None


LEAP_SECOND_REASON = (
    "is a leap second (:60), which RFC 3339 allows but the engine cannot represent: send"
    " :59 (or the next second's :00)"
)


def _json_problem(raw: bytes | str, error: orjson.JSONDecodeError) -> str:
    """orjson's reason, except for bytes that are not UTF-8, where it speaks of surrogates,
    and for text in UTF-16 (what Windows PowerShell's `>` writes), which it reads as junk."""
    if isinstance(raw, bytes):
        if _looks_utf16(raw):
            return "not UTF-8: the text looks like UTF-16 (save the file as UTF-8)"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"not valid UTF-8 (byte {bad.start + 1}: {bad.reason})"
    return str(error)


def _looks_utf16(raw: bytes) -> bool:
    """A UTF-16 byte order mark, or a NUL beside every ASCII character of a JSON start
    (a line after the first of a UTF-16 file begins with the newline's other byte; the
    last may be that byte alone)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    head = raw.lstrip(b"\x00")[:8]
    if not head.strip() and b"\x00" in raw:
        return True
    return len(head) >= 4 and head[:1] == b"{" and head[1::2].count(0) == len(head[1::2])


def encode_event(event: CloudEvent) -> bytes:
    """The structured-mode JSON bytes of an event (the Kafka record value, a `.jsonl` line)."""
    return event.encode()


def data_schema_path(event_type: str, version: int) -> str:
    """Where the JSON Schema of a type's data at a version lives, under schemas/json/."""
    return f"events/{event_type}.v{version}.schema.json"


_DATA_CHECKS: dict[tuple[str, int], DataCheck] = {}


def _data_check(event_type: str, version: int) -> DataCheck:
    """The check of one type's data at one version, built on first use and then reused.

    It returns the data (the same object, or for a definition a copy with defaults) and raises
    fastjsonschema's JsonSchemaValueException or EventRejected.
    """
    check = _DATA_CHECKS.get((event_type, version))
    if check is None:
        if event_type == "sequence.applied":
            check = _definition_check
        elif event_type == "sequence.copy_requested":
            check = partial(_copy_check, checking.compiled(data_schema_path(event_type, version)))
        else:
            check = checking.compiled(data_schema_path(event_type, version))
        _DATA_CHECKS[(event_type, version)] = check
    return check


def _copy_check(schema_check: DataCheck, data: Any) -> Any:
    # The copy's id is a sequence id as a file's is: Python's `\s` in the schema's pattern
    # lets U+FEFF and control characters by, which a file's check refuses.
    checked = schema_check(data)
    if not is_plain_id(checked["new_id"]):
        raise EventRejected("data.new_id", ID_REASON)
    return checked


def _definition_check(data: Any) -> Any:
    # A published definition document gets the same checks (and defaults) as a file.
    try:
        return validate_definition_document(data)
    except DefinitionRejected as exc:
        where = exc.location
        raise EventRejected(f"data.{where}" if where else "data", exc.reason) from None
