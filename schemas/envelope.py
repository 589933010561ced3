"""The CloudEvents 1.0 envelope in structured JSON mode: the one wire shape of every event."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from schemas.immutable import immutable

SPECVERSION = "1.0"
ENGINE_SOURCE = "dripstream"
# The facts `effects` learns from the providers and hands the engine as input (an inbound
# text, a carrier's opt-out, a key pressed on a call, an inbound lead e-mail). Not
# ENGINE_SOURCE: the engine passes over its own changes when they come back, and these
# must be decided.
EFFECTS_SOURCE = "dripstream/effects"
# On Kafka, the CloudEvents binding tells structured mode from binary mode by this header;
# without it, a binding-following consumer would take the JSON value for a bare `data`.
# Lists, never changed: aiokafka's record builder takes no tuple.
STRUCTURED_HEADERS: Final = [("content-type", b"application/cloudevents+json")]
# A dead letter is plain JSON, not a CloudEvent.
LETTER_HEADERS: Final = [("content-type", b"application/json")]


@immutable
class CloudEvent:
    """One event. `data` is the JSON object of the type's payload, already validated."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str | None
    data: Mapping[str, Any]
    dataversion: int = 1
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The event's id and source together: CloudEvents makes an id unique only within
        its source, so two systems may both send an "e-1". Outputs are numbered from it.
        An `@` (or `%`) in the id is escaped, so that id `a@b` from `c` and id `a` from
        `b@c` stay two events."""
        return f"{self._escaped_id()}@{self.source}"

    @property
    def copy_identity(self) -> str:
        """The identity of a copy the engine's worker made of a producer's event (one
        partition's copy of a request it fans out): `%copy` after the escaped id, which no
        producer's id gives (each `%` of one is escaped), so a producer's own event under
        the copy's id stays another event."""
        return f"{self._escaped_id()}%copy@{self.source}"

    def _escaped_id(self) -> str:
        event_id = self.id
        if "@" in event_id or "%" in event_id:
            event_id = event_id.replace("%", "%25").replace("@", "%40")
        return event_id

    @property
    def occurrence(self) -> str:
        """The identity and the event's time: what its outputs are numbered from. A repeat
        within a day is the same event and decided once; a producer that reuses an id
        later still gets outputs whose ids do not collide with the first event's (a
        subscriber or the outbox would drop them as repeats). The time has no `@` or `/`,
        so the last `@` of this and the `/` of an output id stay unambiguous."""
        return occurrence_of(self.identity, self.time)

    def fingerprint(self) -> int:
        """What tells a repeat of this event (same content) from another event that
        reuses its identity, in 64 bits. Not the time: a retry may be stamped anew (an API
        client retrying with the same Idempotency-Key). The same in every process (not
        `hash`, which is salted per process): a worker's snapshot keeps the fingerprints
        of the day's inputs for the next process to compare a retry with."""
        content = orjson.dumps([self.type, self.subject, self.data], option=orjson.OPT_SORT_KEYS)
        return int.from_bytes(hashlib.blake2b(content, digest_size=8).digest())

    def to_json(self) -> dict[str, Any]:
        return self._fields(format_time(self.time))

    def _fields(self, time: str | datetime) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": time,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        out["dataversion"] = str(self.dataversion)
        out["datacontenttype"] = "application/json"
        out.update(self.extensions)
        out["data"] = self.data
        return out

    def encode(self) -> bytes:
        # orjson writes a UTC datetime as `format_time` does (Z, microseconds only when
        # there are any), several times faster; this runs for every event published.
        moment = self.time if self.time.tzinfo is UTC else self.time.astimezone(UTC)
        return orjson.dumps(self._fields(moment), option=orjson.OPT_UTC_Z)


def occurrence_of(identity: str, time: datetime) -> str:
    """An event's occurrence (CloudEvent.occurrence) from its identity and time."""
    return f"{identity}@{format_time(time)}"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`; microseconds only when there are any."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    # orjson writes what `isoformat` does, with a Z for +00:00, in well under half its
    # time (a test holds the two together); this runs several times for every output.
    return orjson.dumps(utc, option=orjson.OPT_UTC_Z)[1:-1].decode()


# The times the engine accepts (event times, --until, a sequence's `created`): far enough
# inside datetime's range (years 1 to 9999) that a delay of up to ten years, and the
# deferrals after it, never leave it.
EARLIEST_TIME = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
TIME_RANGE_REASON = "must be between 1900-01-01T00:00:00Z and 9000-12-31T23:59:59Z"
RFC3339_REASON = "must be an RFC 3339 date-time such as 2027-07-02T20:30:00Z"
OFFSET_REASON = "its UTC offset must lie between -23:59 and +23:59"
# RFC 3339's date-time (section 5.6): Python's fromisoformat takes much more (week dates,
# the basic format, missing seconds, a comma), which must not pass for it.
RFC3339_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class TimeOutOfRange(ValueError):  # noqa: N818 - a ValueError, caught as one by most callers
    """A time the engine cannot compute with: outside datetime's range once in UTC, or
    outside [EARLIEST_TIME, LATEST_TIME]."""


def parse_time(text: str) -> datetime:
    """RFC 3339 to an aware UTC datetime; raises ValueError for anything else, including
    TimeOutOfRange for a time that leaves datetime's range in UTC (0001-01-01T00:00:00+01:00)."""
    if RFC3339_SHAPE.fullmatch(text) is None:
        raise ValueError(f"time {text!r} {RFC3339_REASON}")
    if len(text) > 6 and text[-6] in "+-" and text[-3] == ":" and text[-2] > "5":
        # Python reads +05:60 as +06:00; RFC 3339 allows minutes 00-59 only.
        raise ValueError(OFFSET_REASON)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as error:
        if "offset must be a timedelta" in str(error):  # Python's words for +24:00
            raise ValueError(OFFSET_REASON) from None
        raise
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise TimeOutOfRange(f"time {text!r} cannot be expressed in UTC") from None


def parse_event_time(text: str) -> datetime:
    """`parse_time`, for a time the engine will compute with: it must also lie in
    [EARLIEST_TIME, LATEST_TIME], else TimeOutOfRange (a ValueError) with TIME_RANGE_REASON."""
    try:
        moment = parse_time(text)
    except TimeOutOfRange:
        raise TimeOutOfRange(TIME_RANGE_REASON) from None
    if not EARLIEST_TIME <= moment <= LATEST_TIME:
        raise TimeOutOfRange(TIME_RANGE_REASON)
    return moment
