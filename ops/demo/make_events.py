"""Write `events.jsonl`: one business day (Tue 2027-10-12, New York) of input for the demo.

Deterministic: the same script always writes the same bytes (a seeded generator picks the
small variations). Run it again after changing the story and commit both files:

    .venv/bin/python ops/demo/make_events.py
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

DAY = date(2027, 10, 12)
ZONE = ZoneInfo("America/New_York")
INTAKE = "leads-bs7q2@intake.example.com"
HERE = Path(__file__).parent
SEED = 20271012

# (first, last, area code, state); numbers are +1 <area> 555-01nn, nn = the contact's index.
PEOPLE: list[tuple[str, str, str, str]] = [
    ("Maya", "Ortiz", "212", "NY"),
    ("Ravi", "Shah", "646", "NY"),
    ("Grace", "Kim", "718", "NY"),
    ("Tom", "Becker", "917", "NY"),
    ("Lucia", "Ferrari", "347", "NY"),
    ("Owen", "Murphy", "516", "NY"),
    ("Hana", "Sato", "201", "NJ"),
    ("Diego", "Alvarez", "203", "CT"),
    ("Nora", "Fitzgerald", "212", "NY"),
    ("Samuel", "Adeyemi", "646", "NY"),
    ("Elena", "Popescu", "718", "NY"),
    ("Marcus", "Bell", "917", "NY"),
    ("Aisha", "Rahman", "347", "NY"),
    ("Peter", "Novak", "516", "NY"),
    ("Chloe", "Dubois", "201", "NJ"),
    ("Jamal", "Carter", "203", "CT"),
    ("Ingrid", "Larsen", "212", "NY"),
    ("Kenji", "Watanabe", "646", "NY"),
    ("Fatima", "Haddad", "718", "NY"),
    ("Liam", "O'Connor", "917", "NY"),
    ("Sofia", "Rossi", "347", "NY"),
    ("Daniel", "Cohen", "516", "NY"),
    ("Amara", "Nwosu", "201", "NJ"),
    ("Victor", "Hugo", "203", "CT"),
    ("Julia", "Wagner", "212", "NY"),
    ("Ethan", "Brooks", "646", "NY"),
    ("Mei", "Chen", "718", "NY"),
    ("Omar", "Farouk", "917", "NY"),
    ("Rosa", "Delgado", "347", "NY"),
    ("Henry", "Walsh", "516", "NY"),
    ("Zara", "Ali", "201", "NJ"),
    ("Lucas", "Martin", "203", "CT"),
    ("Anya", "Petrova", "212", "NY"),
    ("Ben", "Goldberg", "646", "NY"),
    ("Carmen", "Vega", "718", "NY"),
    ("Felix", "Braun", "917", "NY"),
    ("Priscilla", "Owens", "303", "CO"),  # Denver: her day runs two hours behind
    ("Gabriel", "Silva", "415", "CA"),  # San Francisco: three hours behind
    ("Irene", "Costa", "212", "NY"),
    ("Noah", "Fischer", "646", "NY"),
    ("Leila", "Moradi", "718", "NY"),
    ("Patrick", "Doyle", "917", "NY"),
    ("Yuki", "Tanaka", "347", "NY"),
    ("Andre", "Baptiste", "516", "NY"),
    ("Helen", "Park", "201", "NJ"),
    ("Mateo", "Ruiz", "203", "CT"),
    ("Olga", "Ivanova", "212", "NY"),
    ("Kwame", "Mensah", "646", "NY"),
    ("Sarah", "Levine", "718", "NY"),
    ("Tariq", "Aziz", "917", "NY"),
    ("Emma", "Schultz", "347", "NY"),
    ("Rahul", "Mehta", "516", "NY"),
    ("Claire", "Fontaine", "201", "NJ"),
    ("Devon", "Price", "203", "CT"),
    ("Ana", "Lima", "212", "NY"),
    ("George", "Harris", "646", "NY"),
    ("Nadia", "Karim", "718", "NY"),
    ("Isaac", "Stern", "917", "NY"),
    ("Lena", "Vogel", "347", "NY"),
    ("Miguel", "Torres", "516", "NY"),
]

# Out-of-town leads at odd hours for New York: each gets texted in its own business hours.
LATE_OR_EARLY = {36: "17:30", 37: "07:40"}
WEBINAR = (4, 9, 17)  # tagged webinar-2027-10: enrolled by hand in the blitz at 11:00
NO_EMAIL = 12
LANDLINE = 21
HOT = (1, 3, 6, 10, 15)
REPLIED = (0, 2, 5, 8, 13, 16, 19, 24, 27, 31)
STOPPED = 11
# Out of the welcome sequence by 16:00 (replied, opted out, booked, cleaned up): not called.
GONE_BY_FOUR = frozenset((*REPLIED, STOPPED, 22, 23, 24, 27))

REPLIES = [
    "Yes, after 3pm works best",
    "How much would panels cost for a 2-bedroom house?",
    "Who is this?",
    "Thanks! Is there a tax credit?",
    "Call me tomorrow morning please",
    "I rent, does that matter?",
    "Can you send the estimate by email instead",
    "Sounds good",
]


@dataclass
class Day:
    """The events of the day, each at a local time; sorted and numbered when written."""

    events: list[tuple[datetime, int, dict[str, Any]]] = field(default_factory=list)
    bad: list[tuple[datetime, bytes]] = field(default_factory=list)

    def at(self, clock: str) -> datetime:
        hours, minutes, *rest = (int(part) for part in clock.split(":"))
        local = datetime.combine(DAY, time(hours, minutes, rest[0] if rest else 0), ZONE)
        return local.astimezone(UTC)

    def add(self, clock: str | datetime, kind: str, data: dict[str, Any], source: str) -> None:
        moment = self.at(clock) if isinstance(clock, str) else clock
        subject = data.get("contact_id")
        event: dict[str, Any] = {"specversion": "1.0", "source": source, "type": kind}
        event["time"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        if subject is not None:
            event["subject"] = subject
        event["data"] = data
        self.events.append((moment, len(self.events), event))

    def lines(self) -> list[bytes]:
        ordered = sorted(self.events, key=lambda item: (item[0], item[1]))
        out: list[tuple[datetime, bytes]] = []
        for number, (moment, _, fields) in enumerate(ordered, start=1):
            event = {"specversion": "1.0", "id": f"demo-{number:04d}", **fields}
            out.append((moment, orjson.dumps(event)))
        # A bad line goes after the good lines of its moment: the file stays in time order.
        for moment, raw in self.bad:
            index = sum(1 for when, _ in out if when <= moment)
            out.insert(index, (moment, raw))
        return [raw for _, raw in out]


def contact_id(index: int) -> str:
    return f"c-{1001 + index}"


def phone(index: int) -> str:
    return f"+1{PEOPLE[index][2]}55501{index + 10:02d}"


def shifted(moment: datetime, minutes: float) -> datetime:
    return moment + timedelta(minutes=minutes)


def build() -> Day:
    rng = random.Random(SEED)  # noqa: S311 - a fixed seed for a reproducible story
    day = Day()
    created = web_form(day, rng)
    replies(day, rng, created)
    hot_leads(day)
    manual_call(day)
    lead_emails(day)
    appointments(day)
    compliance(day)
    welcome_calls(day, rng, created)
    late_in_the_day(day)
    bad_lines(day)
    return day


def web_form(day: Day, rng: random.Random) -> dict[int, datetime]:
    """Sixty contacts from before opening to the end of the afternoon; when each came."""
    created: dict[int, datetime] = {}
    start = day.at("07:05")
    for index, (first, last, _, state) in enumerate(PEOPLE):
        moment = shifted(start, index * 9 + rng.randint(0, 6))
        if index in LATE_OR_EARLY:
            moment = day.at(LATE_OR_EARLY[index])
        created[index] = moment
        tags = ["web-lead", "sms-consent"]
        if index in WEBINAR:
            tags.append("webinar-2027-10")
        data: dict[str, Any] = {
            "contact_id": contact_id(index),
            "first_name": first,
            "last_name": last,
            "phone": phone(index),
            "email": f"{first.lower()}.{last.lower().replace(chr(39), '')}@mail.example.com",
            "state": state,
            "lead_source": "web-form",
            "tags": tags,
        }
        if index == NO_EMAIL:
            del data["email"]  # the form lets the e-mail be left out: the mail step is skipped
        if index == LANDLINE:
            data["phone"] = "+12125550188"  # the fake Twilio refuses texts to this number
        day.add(moment, "contact.created", data, "crm")
        if rng.random() < 0.7:  # the CRM's qualification rule tags homeowners a bit later
            day.add(
                shifted(moment, rng.randint(2, 20)),
                "contact.tag_added",
                {"contact_id": contact_id(index), "tag": "homeowner"},
                "crm",
            )
    # The CRM fills in a time zone that the phone number does not tell.
    day.add(
        shifted(created[7], 1),
        "contact.updated",
        {"contact_id": contact_id(7), "timezone": "America/New_York"},
        "crm",
    )
    return created


def replies(day: Day, rng: random.Random, created: dict[int, datetime]) -> None:
    """Answers to the first text (sent at 09:00 to the early birds), one STOP among them."""
    opening = day.at("09:00")
    for reply, index in enumerate(REPLIED):
        sent = max(created[index], opening)
        day.add(
            shifted(sent, 4 + rng.randint(0, 30)),
            "message.received",
            {
                "message_id": f"sm-in-{reply + 1}",
                "contact_id": contact_id(index),
                "channel": "sms",
                "body": REPLIES[reply % len(REPLIES)],
            },
            "twilio",
        )
    day.add(
        shifted(max(created[STOPPED], opening), 6),
        "message.received",
        {
            "message_id": "sm-in-stop",
            "contact_id": contact_id(STOPPED),
            "channel": "sms",
            "body": "STOP",
        },
        "twilio",
    )
    day.add(
        "18:42",
        "message.received",
        {
            "message_id": "em-in-1",
            "contact_id": contact_id(14),
            "channel": "email",
            "body": "Thanks for the estimate. Could someone call me Thursday?",
        },
        "sendgrid",
    )
    day.add(
        "19:05",
        "call.completed",
        {
            "call_id": "call-in-1",
            "contact_id": contact_id(20),
            "direction": "inbound",
            "answered": True,
            "talk_time": 95,
            "wait_time": 12,
            "duration": 107,
            "user_id": "u-cara",
        },
        "twilio",
    )


def hot_leads(day: Day) -> None:
    """The sales manager tags five leads hot at once (the blitz throttles them to two a
    minute); their calls are answered or not; webinar attendees are enrolled by hand."""
    for offset, index in enumerate(HOT):
        day.add(
            f"10:30:{offset * 4:02d}",
            "contact.tag_added",
            {"contact_id": contact_id(index), "tag": "hot"},
            "crm",
        )
    for minute, index, answered, talk, disposition in (
        (34, 1, False, 0, None),
        (35, 3, True, 45, "callback_requested"),
        (36, 6, False, 0, None),
        (38, 10, True, 210, "interested"),
        (39, 15, True, 30, "not_interested"),
    ):
        data: dict[str, Any] = {
            "call_id": f"call-blitz-{index}",
            "contact_id": contact_id(index),
            "direction": "outbound",
            "answered": answered,
            "talk_time": talk,
            "wait_time": 8,
            "duration": talk + 20,
            "manual": False,
        }
        if answered:
            data["user_id"] = "u-ana"
        if disposition:
            data["disposition"] = disposition
        day.add(f"10:{minute}:00", "call.completed", data, "twilio")
    day.add(
        "11:00",
        "enrollment.requested",
        {"sequence_id": "hot-blitz", "tag": "webinar-2027-10"},
        "crm",
    )


def manual_call(day: Day) -> None:
    """An agent calls a lead by hand, then marks the contact interested."""
    day.add(
        "12:15",
        "call.completed",
        {
            "call_id": "call-manual-1",
            "contact_id": contact_id(18),
            "direction": "outbound",
            "answered": True,
            "talk_time": 240,
            "wait_time": 5,
            "duration": 250,
            "user_id": "u-ana",
            "manual": True,
            "disposition": "interested",
        },
        "twilio",
    )
    day.add(
        "12:16",
        "contact.disposition_changed",
        {"contact_id": contact_id(18), "disposition": "interested"},
        "crm",
    )


def lead_emails(day: Day) -> None:
    """Two partner leads to the intake address, and one sent to an address nobody owns."""
    day.add(
        "06:52",
        "lead.email_received",
        {
            "to": INTAKE,
            "from": "Solar Leads Network <noreply@partner-leads.example.com>",
            "subject": "New lead: Priya Natarajan",
            "body": "A new lead was submitted.\n\nFirst Name: Priya\nLast Name: Natarajan\n"
            "Phone: (646) 555-0142\nEmail: priya.natarajan@mail.example.com\nState: NY\n"
            "Message: Interested in panels and a home battery.\n",
        },
        "sendgrid",
    )
    day.add(
        "13:10",
        "lead.email_received",
        {
            "to": INTAKE,
            "from": "Green Home Quotes <leads@greenhome.example.com>",
            "subject": "Lead #48213",
            "body": "Name: Walter Brennan\nPhone number: 718-555-0177\n"
            "E-mail: w.brennan@mail.example.com\nState: ny\nComments: Roof faces south.\n",
        },
        "sendgrid",
    )
    day.add(
        "13:40",
        "lead.email_received",
        {
            "to": "leads@intake.example.com",
            "from": "Green Home Quotes <leads@greenhome.example.com>",
            "subject": "Lead #48214",
            "body": "Name: Lost Lead\nPhone: 212-555-0166\n",
        },
        "sendgrid",
    )


def appointments(day: Day) -> None:
    """Site surveys booked; the last one after quiet hours begin."""
    for clock, index, appointment in (
        ("14:00", 0, "apt-501"),
        ("14:20", 27, "apt-502"),
        ("20:05", 24, "apt-503"),
        ("21:30", 8, "apt-504"),
    ):
        day.add(
            clock,
            "appointment.changed",
            {"appointment_id": appointment, "contact_id": contact_id(index), "status": "scheduled"},
            "calendar",
        )


def compliance(day: Day) -> None:
    """Three ways into the do-not-contact cleanup: DNC, a disposition, consent withdrawn."""
    day.add("14:30", "contact.dnc_changed", {"contact_id": contact_id(22), "dnc": True}, "crm")
    day.add(
        "15:10",
        "contact.disposition_changed",
        {"contact_id": contact_id(23), "disposition": "wrong_number"},
        "crm",
    )
    day.add(
        "15:45",
        "contact.tag_removed",
        {"contact_id": contact_id(26), "tag": "sms-consent"},
        "crm",
    )


def welcome_calls(day: Day, rng: random.Random, created: dict[int, datetime]) -> None:
    """How the 16:00 welcome calls went, for the leads still in the welcome sequence."""
    for index in range(len(PEOPLE)):
        if created[index] >= day.at("16:00") or index in GONE_BY_FOUR:
            continue
        answered = rng.random() < 0.3
        talk = rng.randint(40, 400) if answered else 0
        data: dict[str, Any] = {
            "call_id": f"call-welcome-{index}",
            "contact_id": contact_id(index),
            "direction": "outbound",
            "answered": answered,
            "talk_time": talk,
            "wait_time": rng.randint(3, 25),
            "duration": talk + 25,
            "manual": False,
        }
        if answered:
            data["user_id"] = rng.choice(["u-ana", "u-ben", "u-cara"])
            data["disposition"] = rng.choice(["interested", "callback_requested", "not_interested"])
        day.add(shifted(day.at("16:03"), rng.randint(0, 40)), "call.completed", data, "twilio")


def late_in_the_day(day: Day) -> None:
    """A hot tag after the blitz's hours (enrollment refused) and a tag no sequence watches."""
    day.add("17:20", "contact.tag_added", {"contact_id": contact_id(29), "tag": "hot"}, "crm")
    day.add(
        "17:25", "contact.tag_added", {"contact_id": contact_id(33), "tag": "newsletter"}, "crm"
    )


def bad_lines(day: Day) -> None:
    """Two lines a producer got wrong: the demo reports them and goes on."""
    missing_tag = day.at("11:05")
    day.bad.append(
        (
            missing_tag,
            orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": "demo-bad-1",
                    "source": "crm",
                    "type": "contact.tag_added",
                    "time": missing_tag.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "subject": contact_id(5),
                    "data": {"contact_id": contact_id(5)},
                }
            ),
        )
    )
    bad_phone = day.at("15:02")
    day.bad.append(
        (
            bad_phone,
            orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": "demo-bad-2",
                    "source": "crm",
                    "type": "contact.created",
                    "time": bad_phone.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "subject": "c-1999",
                    "data": {"contact_id": "c-1999", "first_name": "Typo", "phone": "212-555-0199"},
                }
            ),
        )
    )


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else HERE / "events.jsonl"
    target.write_bytes(b"".join(line + b"\n" for line in build().lines()))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
