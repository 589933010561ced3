"""One small helper for engine tests: given definitions, when these inputs, then decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from schemas.definitions import validate_definition_document
from schemas.envelope import CloudEvent, parse_time
from schemas.validation import decode_event
from streams.embedded import RejectedLine, replay

ACCOUNT: dict[str, Any] = {
    "timezone": "America/New_York",
    "opt_out_phrase": "Reply STOP to opt out.",
    "quiet_hours": {"start": "08:00", "end": "21:00"},
    "lines": {"line-1": "+12125550000"},
    "users": {"u-7": {"name": "Sam Lee", "phone": "+12125550007", "email": "sam@example.com"}},
    "ring_groups": {"rg-sales": ["u-7"]},
}


@dataclass
class Outcome:
    events: list[dict[str, Any]]
    rejected: list[RejectedLine] = field(default_factory=list)

    def of(self, kind: str, **data: Any) -> list[dict[str, Any]]:
        return events_of(self.events, kind, **data)

    def one(self, kind: str, **data: Any) -> dict[str, Any]:
        return one_of(self.events, kind, **data)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


# Attributes of the envelope that no data holds: a filter on them would look in `data`, find
# nothing, and make an assertion of "none" hold whatever the engine did. (`subject` is an
# e-mail's data too.)
_ENVELOPE = frozenset({"id", "source", "time", "specversion", "dataversion"})


def events_of(events: list[dict[str, Any]], kind: str, **data: Any) -> list[dict[str, Any]]:
    """The output events of a type whose data has these values."""
    if envelope := _ENVELOPE.intersection(data):
        raise TypeError(f"{sorted(envelope)} are envelope attributes: filter on data keys")
    return [
        e
        for e in events
        if e["type"] == kind and all(e["data"].get(k) == v for k, v in data.items())
    ]


def one_of(events: list[dict[str, Any]], kind: str, **data: Any) -> dict[str, Any]:
    found = events_of(events, kind, **data)
    types = [e["type"] for e in events]
    assert len(found) == 1, f"expected one {kind} {data}, got {len(found)}: {types}"
    return found[0]


def sequence(**settings: Any) -> dict[str, Any]:
    """A valid sequence with overridable settings (every day, open all day)."""
    base: dict[str, Any] = {
        "id": "seq",
        "name": "Test sequence",
        "process_on": "every_day",
        "outbound_line": "line-1",
        "steps": [{"id": "s1", "type": "send_sms", "text": "Hi [FirstName]!"}],
        "triggers": [{"type": "contact_tagged", "tags": ["hot"]}],
    }
    base.update(settings)
    return base


def definitions(
    *sequences: dict[str, Any], account: dict[str, Any] | None = None
) -> dict[str, Any]:
    return validate_definition_document(
        {"account": account if account is not None else ACCOUNT, "sequences": list(sequences)}
    )


_counter = [0]


def event(kind: str, time: str, subject: str | None = None, **data: Any) -> dict[str, Any]:
    _counter[0] += 1
    contact = data.get("contact_id")
    return {
        "specversion": "1.0",
        "id": f"e-{_counter[0]}",
        "source": "test",
        "type": kind,
        "time": time,
        "subject": subject if subject is not None else contact,
        "data": data,
    }


def decide(defs: dict[str, Any], inputs: list[dict[str, Any]], until: str | None = None) -> Outcome:
    lines = [orjson.dumps(e) for e in inputs]
    out: list[CloudEvent] = []
    rejected: list[RejectedLine] = []
    replay(defs, lines, out.extend, rejected.append, until=parse_time(until) if until else None)
    for event in out:
        # Every decision must be a valid event of its published schema.
        decode_event(event.encode())
    return Outcome([orjson.loads(e.encode()) for e in out], rejected)


def load_yaml(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return validate_definition_document(yaml.safe_load(handle))


# The worked scenario: ../shared/scenarios next to the clone when it is there, else the copy
# kept in tests/engine/scenarios (byte-identical; a test compares them when both are there).
SHARED_SCENARIOS = Path(__file__).resolve().parents[3] / "shared" / "scenarios"
LOCAL_SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def welcome_dir() -> Path:
    return SHARED_SCENARIOS if (SHARED_SCENARIOS / "welcome.yaml").exists() else LOCAL_SCENARIOS
