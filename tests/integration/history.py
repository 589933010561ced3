"""A deterministic synthetic history for the pipeline's crash and scale-out tests.

It avoids what is shared across contacts (throttle, round robin, owner notices), whose
outcome depends on the order partitions are read in, so any correct run of the pipeline
must give exactly the decisions of `replay`.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml

from schemas.envelope import format_time, parse_time

DEFINITIONS: dict[str, Any] = {
    "account": {
        "timezone": "America/Chicago",
        "opt_out_phrase": "Reply STOP to opt out.",
        "quiet_hours": {"start": "08:00", "end": "21:00"},
        "lines": {"line-1": "+13125550000"},
        "users": {
            "u-1": {"name": "Ada Agent", "phone": "+13125550001", "email": "ada@example.com"}
        },
        "ring_groups": {"rg-1": ["u-1"]},
    },
    "sequences": [
        {
            "id": "nurture",
            "name": "Nurture",
            "process_on": "business_days",
            "schedule": {"open": "08:00", "close": "18:00"},
            "outbound_line": "line-1",
            "steps": [
                {"id": "hi", "type": "send_sms", "text": "Hi [FirstName]!"},
                {
                    "id": "mail",
                    "type": "email_contact",
                    "subject": "For [FirstName]",
                    "body": "Hello",
                    "delay": {"kind": "default", "amount": 2, "unit": "hours"},
                },
                {
                    "id": "tag",
                    "type": "add_tag",
                    "tag": "nurtured",
                    "delay": {"kind": "default", "amount": 1, "unit": "days"},
                },
                {
                    "id": "again",
                    "type": "send_sms",
                    "text": "Still there, [FirstName]?",
                    "delay": {"kind": "time_of_day", "days": 1, "at": "10:00"},
                },
            ],
            "triggers": [{"type": "contact_tagged", "tags": ["lead"]}],
        },
        {
            "id": "followup",
            "name": "Follow-up",
            "process_on": "every_day",
            "outbound_line": "line-1",
            "remove_on_response": False,
            "steps": [
                {
                    "id": "call",
                    "type": "progressive_dialer",
                    "ring_group": "rg-1",
                    "message": "Press 1",
                    "delay": {"kind": "default", "amount": 30, "unit": "minutes"},
                },
                {"id": "hook", "type": "send_webhook", "url": "https://hooks.example.com/x"},
            ],
            "triggers": [
                {"type": "contact_tagged", "tags": ["nurtured"]},
                {"type": "contact_disposition", "dispositions": ["interested"]},
                {"type": "contact_disposition", "dispositions": ["lost"], "action": "disenroll"},
            ],
        },
    ],
}


def write_history(folder: Path, events: int, contacts: int, seed: int = 7) -> tuple[Path, Path]:
    rnd = random.Random(seed)
    moment = parse_time("2027-09-06T13:00:00Z")
    lines: list[bytes] = []
    known: list[str] = []
    for n in range(events):
        moment += timedelta(seconds=rnd.randint(5, 90))
        if not known or (len(known) < contacts and rnd.random() < 0.3):
            contact = f"c-{len(known)}"
            known.append(contact)
            kind, data = (
                "contact.created",
                {
                    "first_name": f"F{len(known)}",
                    "phone": f"+1312555{len(known) % 10000:04d}",
                    "email": f"p{len(known)}@example.com",
                },
            )
        else:
            contact = rnd.choice(known)
            kind, data = rnd.choices(
                [
                    ("contact.tag_added", {"tag": "lead"}),
                    ("contact.tag_added", {"tag": "other"}),
                    (
                        "message.received",
                        {"message_id": f"m-{n}", "channel": "sms", "body": "ok thanks"},
                    ),
                    ("contact.disposition_changed", {"disposition": "interested"}),
                    ("contact.disposition_changed", {"disposition": "lost"}),
                    ("contact.dnc_changed", {"dnc": rnd.random() < 0.5}),
                    ("contact.opted_out", {"channel": "email"}),
                ],
                weights=[30, 10, 15, 10, 5, 5, 2],
            )[0]
        event = {
            "specversion": "1.0",
            "id": f"h-{n}",
            "source": "crm",
            "type": kind,
            "time": format_time(moment),
            "subject": contact,
            "data": {"contact_id": contact, **data},
        }
        lines.append(orjson.dumps(event))
    definitions = folder / "definitions.yaml"
    definitions.write_text(yaml.safe_dump(DEFINITIONS, sort_keys=False), encoding="utf-8")
    history = folder / "history.jsonl"
    history.write_bytes(b"\n".join(lines) + b"\n")
    return definitions, history
