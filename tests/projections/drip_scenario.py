"""A small scenario replayed through the engine for the sequence views (`sequences show`,
`sequences contacts`): one sequence with every kind of setting, contacts enrolled at two
moments and one taken out, a sequence deleted, and one nobody is in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.engine.helpers import decide, definitions, event, sequence

ENROLLED_FIRST = "2028-03-01T15:00:00Z"  # a Wednesday, 10:00 in New York
ENROLLED_NEXT = "2028-03-01T15:05:00Z"
TAKEN_OUT = "2028-03-01T15:30:00Z"
UNTIL = "2028-03-01T16:00:00Z"  # every s1 done, every s2 still due

DRIP: dict[str, Any] = sequence(
    id="drip",
    name="Drip",
    description="Two touches and a tag",
    process_on="business_days",
    schedule={"timezone": "America/New_York", "open": "09:00", "close": "17:00"},
    throttle_per_minute=30,
    intake_address="drip-leads@intake.example.com",
    steps=[
        {"id": "s1", "type": "send_sms", "text": "Hi [FirstName]!"},
        {
            "id": "s2",
            "type": "email_contact",
            "delay": {"kind": "default", "amount": 2, "unit": "hours"},
            "subject": "Hello",
            "body": "Line one\nLine two",
        },
        {
            "id": "s3",
            "type": "add_tag",
            "delay": {"kind": "time_of_day", "days": 1, "at": "10:00"},
            "tag": "dripped",
        },
    ],
    triggers=[
        {"type": "contact_tagged", "tags": ["hot", "warm"]},
        {"type": "contact_disposition", "dispositions": ["won"], "action": "disenroll"},
        {"type": "call_duration", "metric": "talk_time", "seconds": 60},
    ],
)
CONTACTS = {
    "c-1": ("Ann", "Lee", "+12125550101", "ann@example.com"),
    "c-2": ("Bob", "Ray", "+12125550102", None),
    "c-3": ("Cy", "Fox", "+12125550103", "cy@example.com"),
}


def drip_outputs(*later: dict[str, Any]) -> list[dict[str, Any]]:
    """What the engine decides: c-2 enrolled first, c-1 and c-3 at the same moment next
    (so contact id orders them), c-3 then disenrolled by its `won` disposition; then the
    `later` inputs."""
    defs = definitions(
        DRIP,
        sequence(id="gone", name="Gone", triggers=[]),
        sequence(id="idle", name="Idle", triggers=[]),
    )
    inputs = [
        event(
            "contact.created",
            "2028-03-01T14:00:00Z",
            contact_id=contact_id,
            first_name=first,
            last_name=last,
            phone=phone,
            **({"email": email} if email else {}),
        )
        for contact_id, (first, last, phone, email) in CONTACTS.items()
    ]
    inputs += [
        event("contact.tag_added", ENROLLED_FIRST, contact_id="c-2", tag="hot"),
        event("contact.tag_added", ENROLLED_NEXT, contact_id="c-3", tag="warm"),
        event("contact.tag_added", ENROLLED_NEXT, contact_id="c-1", tag="hot"),
        event("contact.disposition_changed", TAKEN_OUT, contact_id="c-3", disposition="won"),
        event("sequence.delete_requested", TAKEN_OUT, subject="sequence:gone", sequence_id="gone"),
        *later,
    ]
    return decide(defs, inputs, until=UNTIL).events


def without_definitions(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same stream as an engine from before `sequence.defined` carried the definition
    wrote it."""
    return [
        {**e, "data": {k: v for k, v in e["data"].items() if k != "definition"}}
        if e["type"] == "sequence.defined"
        else e
        for e in events
    ]


def write(events: list[dict[str, Any]], path: Path) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path
