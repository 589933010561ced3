"""A synthetic, deterministic history for the replay benchmark (issue 3): an account with 100
sequences and a time-ordered `.jsonl` of input CloudEvents about 100,000 contacts.

The same arguments always give the same bytes: every choice comes from `random.Random`
seeded with `--seed`. Events are written as they are drawn, so a history of any length
needs only the generator's small per-contact bookkeeping in memory.

    .venv/bin/python -m bench.generate_history --events 1000000 --out-dir bench/out
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

START = datetime(2027, 3, 1, 13, 0, 0, tzinfo=UTC)
SPAN = timedelta(days=30)
DEFAULT_OUT = Path(__file__).resolve().parent / "out"
WRITE_BATCH = 2048  # lines per write
# Night in the US (01:00-08:00 New York) is quiet: gaps between events there are longer.
QUIET_HOURS_UTC = (5, 12)
QUIET_GAP, BUSY_GAP = 4.0, 0.7

# The mix of input types, in percent of the valid events (the realistic mix).
MIX: dict[str, float] = {
    "contact.created": 10,
    "contact.tag_added": 25,
    "contact.updated": 10,
    "contact.disposition_changed": 8,
    "call.completed": 15,
    "message.received": 15,
    "appointment.changed": 5,
    "contact.dnc_changed": 2,
    "contact.opted_out|opted_in": 2,
    "enrollment.requested": 3,
    "lead.email_received": 2,
    "contact.tag_removed": 3,
}

# US area codes by the single zone their numbers map to (907 spans several: no zone).
AREA_CODES: dict[str, tuple[int, ...]] = {
    "America/New_York": (212, 347, 718, 305, 404, 617, 202, 850),
    "America/Chicago": (312, 214, 713, 612, 504),
    "America/Denver": (303, 720, 801, 505),
    "America/Phoenix": (602, 480, 520),
    "America/Los_Angeles": (213, 415, 206, 503, 702),
    "Pacific/Honolulu": (808,),
    "": (907,),
}
ZONE_WEIGHTS: dict[str, float] = {
    "America/New_York": 45,
    "America/Chicago": 25,
    "America/Denver": 8,
    "America/Phoenix": 5,
    "America/Los_Angeles": 15,
    "Pacific/Honolulu": 1,
    "": 1,
}
EXPLICIT_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
)
SCHEDULE_ZONES = EXPLICIT_ZONES[:5]

FIRST_NAMES = (
    "Maya", "Ravi", "Sofia", "Liam", "Olivia", "Noah", "Emma", "Mateo", "Ava", "Ethan",
    "Isabella", "Lucas", "Mia", "Aiden", "Chloe", "Jamal", "Priya", "Wei", "Fatima", "Diego",
    "Hannah", "Omar", "Grace", "Kenji", "Zoe", "Andre", "Leah", "Marcus", "Nina", "Tomas",
)  # fmt: skip
LAST_NAMES = (
    "Ortiz", "Patel", "Nguyen", "Smith", "Johnson", "Garcia", "Brown", "Lee", "Martinez",
    "Davis", "Lopez", "Wilson", "Anderson", "Thomas", "Kim", "Chen", "Jackson", "White",
    "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "Hall", "Rivera",
)  # fmt: skip
STATES = ("NY", "FL", "GA", "MA", "IL", "TX", "MN", "CO", "AZ", "CA", "WA", "OR", "NV", "HI")
DOMAINS = ("example.com", "example.org", "mail.example.net", "inbox.example.com")
LEAD_SOURCES = ("website", "facebook", "google_ads", "referral", "zillow", "walk_in", "import")

PRODUCTS = ("solar", "roof", "hvac", "windows", "insurance", "mortgage", "auto", "dental",
            "gym", "legal")  # fmt: skip
STAGES = ("new", "hot", "quote", "no-show", "reactivate", "webinar")
NOISE_TAGS = (
    "vip", "spanish", "newsletter", "imported-2026", "partner", "student", "veteran",
    "homeowner", "renter", "do-not-mail", "trade-show", "cash-buyer", "bilingual", "b2b",
)  # fmt: skip
DISPOSITIONS = ("interested", "callback", "not_interested", "no_answer", "voicemail",
                "appointment_set", "sold", "bad_number")  # fmt: skip
SMS_REPLIES = (
    "Yes, please call me", "Who is this?", "What's the price?", "Can we talk tomorrow?",
    "Not right now, thanks", "Sounds good", "Is this still available?", "ok", "Call me at 5",
    "Stop texting me please",
)  # fmt: skip
EMAIL_REPLIES = (
    "Thanks for reaching out, send me a quote.",
    "Please remove me from your list.",
    "I'm interested, what are the next steps?",
    "Out of office until Monday.",
)
OPT_OUT_BODIES = ("STOP", "stop", "Stop ", "UNSUBSCRIBE", "quit", "STOPALL")
OPT_IN_BODIES = ("START", "start", "UNSTOP", "Yes")

# How many sequences carry each trigger type besides their own contact_tagged trigger.
EXTRA_TRIGGERS: dict[str, int] = {
    "contact_created": 1,
    "appointment": 3,
    "contact_disposition": 5,
    "call_disposition": 5,
    "call_duration": 10,
    "dnc_changed": 2,
    "tag_removed": 6,
}
TRIGGER_TYPES = ("contact_tagged", *EXTRA_TRIGGERS)
INVALID_SEQUENCES = 2  # loaded with status invalid: nobody is enrolled (sequence_invalid)

STEP_WEIGHTS: dict[str, float] = {
    "send_sms": 30, "email_contact": 14, "progressive_dialer": 7, "preview_dialer": 4,
    "power_dialer": 3, "send_mms": 3, "sms_ring_group": 4, "email_ring_group": 3,
    "add_tag": 6, "remove_tag": 3, "change_disposition": 3, "change_owner": 2,
    "round_robin_owner": 2, "send_webhook": 5, "ringless_voicemail": 3, "add_line": 1,
    "change_lead_source": 1, "remove_from_power_dialer": 2,
}  # fmt: skip
SMS_TEXTS = (
    "Hi [FirstName], thanks for your interest! When is a good time to talk?",
    "[FirstName], this is [AgentName]. Any questions about your quote?",
    "Quick reminder, [FirstName]: your consultation slot is still open.",
    "Hi [FirstName]! Reply with a good time and [AgentName] will call you.",
    "Last chance this month, [FirstName] - want us to hold your spot?",
)


@dataclass(frozen=True, slots=True)
class HistorySpec:
    """What to generate; the same spec always gives the same files."""

    events: int = 1_000_000
    sequences: int = 100
    contacts: int = 100_000
    seed: int = 3
    bad_every: int = 0  # 0: no invalid lines; K: every K-th line is invalid

    def name(self) -> str:
        bad = f"-bad{self.bad_every}" if self.bad_every else ""
        return f"history-{self.events}-q{self.sequences}-c{self.contacts}-s{self.seed}{bad}"


@dataclass(frozen=True, slots=True)
class HistoryFiles:
    sequences: Path
    events: Path
    summary: Path


@dataclass
class _Vocabulary:
    """What the event stream needs to know about the definitions it goes with."""

    sequence_ids: list[str]
    intake_addresses: list[str]
    trigger_tags: list[str]  # tags some contact_tagged trigger listens for
    other_tags: list[str]  # tags no trigger listens for
    removed_tags: list[str]  # tags some tag_removed trigger listens for
    users: list[str]


# ---- definitions ----------------------------------------------------------------------------


def _phone(rng: random.Random, zone: str | None = None) -> str:
    if zone is None:
        zone = rng.choices(list(ZONE_WEIGHTS), weights=list(ZONE_WEIGHTS.values()))[0]
    area = rng.choice(AREA_CODES[zone])
    return f"+1{area}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"


def _account(rng: random.Random) -> dict[str, Any]:
    lines = {f"line-{n}": _phone(rng, zone) for n, zone in enumerate(list(AREA_CODES)[:6], 1)}
    users = {}
    for n in range(1, 13):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        users[f"u-{n}"] = {
            "name": f"{first} {last}",
            "phone": _phone(rng, "America/New_York"),
            "email": f"{first.lower()}.{last.lower()}@agency.example.com",
        }
    return {
        "timezone": "America/New_York",
        "opt_out_phrase": "Reply STOP to opt out.",
        "quiet_hours": {"start": "08:00", "end": "21:00"},
        "lines": lines,
        "users": users,
        "ring_groups": {
            "rg-sales": ["u-1", "u-2", "u-3", "u-4"],
            "rg-support": ["u-5", "u-6", "u-7"],
            "rg-closers": ["u-8", "u-9", "u-10"],
            "rg-all": list(users),
        },
    }


def _delay(rng: random.Random, first: bool) -> dict[str, Any] | None:
    roll = rng.random()
    if first:
        if roll < 0.6:
            return None if rng.random() < 0.5 else {"kind": "none"}
        return {"kind": "default", "amount": rng.randint(1, 30), "unit": "minutes"}
    if roll < 0.10:
        return {"kind": "none"}
    if roll < 0.40:
        return {"kind": "default", "amount": rng.randint(5, 90), "unit": "minutes"}
    if roll < 0.70:
        return {"kind": "default", "amount": rng.randint(1, 12), "unit": "hours"}
    if roll < 0.85:
        return {"kind": "default", "amount": rng.randint(1, 3), "unit": "days"}
    at = f"{rng.randint(9, 16):02d}:{rng.choice((0, 15, 30, 45)):02d}"
    return {"kind": "time_of_day", "days": rng.randint(0, 2), "at": at}


def _step(rng: random.Random, number: int, kind: str, later_tags: list[str]) -> dict[str, Any]:
    step: dict[str, Any] = {"id": f"s{number}", "type": kind}
    delay = _delay(rng, first=number == 1)
    if delay is not None:
        step["delay"] = delay
    group = rng.choice(("rg-sales", "rg-support", "rg-closers", "rg-all"))
    if kind == "send_sms":
        step["text"] = rng.choice(SMS_TEXTS)
    elif kind == "send_mms":
        step["text"] = "[FirstName], here is the brochure we talked about."
        step["media_url"] = f"https://cdn.example.com/media/brochure-{rng.randint(1, 9)}.jpg"
    elif kind == "email_contact":
        step["subject"] = "Your quote, [FirstName]"
        step["body"] = "Hi [FirstName],\n\n[AgentName] prepared your quote.\nCall us any time."
    elif kind in ("progressive_dialer", "preview_dialer"):
        step["ring_group"] = group
        step["message"] = "New lead [FirstName] [LastName] from [State]. To connect, press 1."
    elif kind == "power_dialer":
        if rng.random() < 0.5:
            step["user_id"] = f"u-{rng.randint(1, 12)}"
    elif kind == "remove_from_power_dialer":
        if rng.random() < 0.3:
            step["user_id"] = f"u-{rng.randint(1, 12)}"
    elif kind == "sms_ring_group":
        step["ring_group"] = group
        step["text"] = "Heads up: [FirstName] [LastName] ([Phone]) needs a call."
    elif kind == "email_ring_group":
        step["ring_group"] = group
        step["subject"] = "Lead update: [FirstName] [LastName]"
        step["body"] = "[FirstName] from [State] is in the sequence. Phone: [Phone]"
    elif kind == "add_tag":
        # Now and then a tag that starts a later sequence: chains only go forward, no loops.
        chain = later_tags and rng.random() < 0.3
        step["tag"] = rng.choice(later_tags) if chain else rng.choice(NOISE_TAGS)
    elif kind == "remove_tag":
        step["tag"] = rng.choice(NOISE_TAGS)
    elif kind == "change_disposition":
        step["disposition"] = rng.choice(("contacted", "nurture", "follow_up"))
    elif kind == "change_owner":
        step["owner_id"] = f"u-{rng.randint(1, 12)}"
    elif kind == "round_robin_owner":
        step["owners"] = [f"u-{n}" for n in sorted(rng.sample(range(1, 13), rng.randint(2, 5)))]
    elif kind == "send_webhook":
        step["url"] = f"https://hooks.example.com/crm/{rng.randint(100, 999)}"
    elif kind == "ringless_voicemail":
        step["recording_url"] = f"https://cdn.example.com/vm/intro-{rng.randint(1, 5)}.mp3"
    elif kind == "add_line":
        step["line_id"] = f"line-{rng.randint(1, 6)}"
    elif kind == "change_lead_source":
        step["lead_source"] = rng.choice(LEAD_SOURCES)
    return step


def _trigger(rng: random.Random, kind: str, tag: str, tags: list[str], nth: int) -> dict[str, Any]:
    """A trigger of `kind`; `nth` (its rank among the account's triggers of that kind) spreads
    the values, so that each disposition or status starts about one sequence."""
    trigger: dict[str, Any] = {"type": kind}
    if kind == "contact_tagged":
        trigger["tags"] = [tag]
    elif kind in ("contact_disposition", "call_disposition"):
        offset = 0 if kind == "contact_disposition" else 3
        trigger["dispositions"] = [DISPOSITIONS[(nth + offset) % len(DISPOSITIONS)]]
        trigger["action"] = "disenroll" if nth == 4 else "enroll"
    elif kind == "call_duration":
        trigger["metric"] = rng.choice(("talk_time", "wait_time", "duration"))
        trigger["seconds"] = rng.choice((30, 60, 120, 300))
    elif kind == "dnc_changed":
        trigger["on"] = "removed" if nth % 2 == 0 else ["added"]
    elif kind == "appointment":
        trigger["statuses"] = [("scheduled", "shown", "canceled")[nth % 3]]
    elif kind == "tag_removed":
        trigger["tags"] = [rng.choice(tags)]  # e.g. a lead that lost its "hot" tag
    return trigger


def build_definitions(spec: HistorySpec) -> dict[str, Any]:
    """The account and `spec.sequences` sequences, as a definition document."""
    rng = random.Random(f"dripstream-bench:{spec.seed}:definitions")
    account = _account(rng)
    topics = [f"{product}-{stage}" for product in PRODUCTS for stage in STAGES]
    # Every sequence listens for its own tag; later sequences' tags are what add_tag chains to.
    own_tags = [
        topics[i % len(topics)] + ("" if i < len(topics) else f"-{i}")
        for i in range(spec.sequences)
    ]
    step_kinds, step_weights = list(STEP_WEIGHTS), list(STEP_WEIGHTS.values())
    # Every sequence starts on its own tag; the other seven trigger types are spread over a
    # few sequences each, as in a real account (one "every new contact" sequence, ...).
    extras: list[list[tuple[str, int]]] = [[] for _ in range(spec.sequences)]
    order = list(range(spec.sequences))
    rng.shuffle(order)
    slots = [(kind, nth) for kind, count in EXTRA_TRIGGERS.items() for nth in range(count)]
    for position, slot in enumerate(slots):
        extras[order[position % spec.sequences]].append(slot)
    sequences = []
    for index in range(spec.sequences):
        product, stage = topics[index % len(topics)].split("-", 1)
        sequence_id = f"seq-{index:03d}-{own_tags[index]}"
        sequence: dict[str, Any] = {
            "id": sequence_id,
            "name": f"{product.title()} {stage} follow-up #{index}",
            "description": f"Automated {stage} outreach for {product} leads",
            "process_on": "business_days" if rng.random() < 0.6 else "every_day",
        }
        if sequence["process_on"] == "business_days" and rng.random() < 0.2:
            sequence["run_on_holidays"] = True
        if rng.random() < 0.75:
            schedule: dict[str, Any] = {
                "open": rng.choice(("07:00", "08:00", "09:00", "10:00")),
                "close": rng.choice(("17:00", "18:00", "19:00", "20:00", "21:00")),
            }
            if rng.random() < 0.8:
                schedule["timezone"] = rng.choice(SCHEDULE_ZONES)
            if rng.random() < 0.1:
                schedule["enroll_only_within_hours"] = True
            sequence["schedule"] = schedule
        if rng.random() < 0.15:
            sequence["prevent_enrollment_if_communicated"] = True
        sequence["outbound_line"] = f"line-{rng.randint(1, 6)}"
        sequence["throttle_per_minute"] = None if rng.random() < 0.4 else rng.randint(30, 600)
        sequence["remove_on_response"] = rng.random() < 0.85
        sequence["remove_on_manual_call"] = rng.random() < 0.7
        sequence["remove_on_opt_out"] = rng.random() < 0.95
        if index % 7 == 3:
            sequence["intake_address"] = f"leads-{product}-{index:03d}@intake.example.com"
        if rng.random() < 0.3:
            sequence["created"] = f"2027-0{rng.randint(1, 2)}-{rng.randint(10, 28)}T15:00:00Z"
        count = rng.randint(2, 8)
        kinds = ["send_sms" if rng.random() < 0.7 else "email_contact"]
        kinds += rng.choices(step_kinds, weights=step_weights, k=count - 1)
        later = own_tags[index + 1 :]
        sequence["steps"] = [_step(rng, n, kind, later) for n, kind in enumerate(kinds, 1)]
        triggers = [_trigger(rng, "contact_tagged", own_tags[index], own_tags, 0)]
        triggers += [
            _trigger(rng, kind, own_tags[index], own_tags, nth) for kind, nth in extras[index]
        ]
        sequence["triggers"] = triggers
        sequences.append(sequence)
    # Two that parse but cannot run: an SMS with no line, and a misspelt shortcode.
    for broken in sequences[-INVALID_SEQUENCES:]:
        broken["name"] += " (broken)"
    sequences[-1]["outbound_line"] = None
    sequences[-1]["steps"][0] = {"id": "s1", "type": "send_sms", "text": "Hi [FirstName]!"}
    if INVALID_SEQUENCES > 1:
        sequences[-2]["steps"][0] = {"id": "s1", "type": "send_sms", "text": "Hi [Frist]!"}
    return {"account": account, "sequences": sequences}


def _vocabulary(definitions: dict[str, Any]) -> _Vocabulary:
    trigger_tags: dict[str, None] = {}
    removed_tags: dict[str, None] = {}
    for sequence in definitions["sequences"]:
        for trigger in sequence["triggers"]:
            if trigger["type"] == "contact_tagged":
                trigger_tags.update(dict.fromkeys(trigger["tags"]))
            elif trigger["type"] == "tag_removed":
                removed_tags.update(dict.fromkeys(trigger["tags"]))
    return _Vocabulary(
        sequence_ids=[s["id"] for s in definitions["sequences"]],
        intake_addresses=[
            s["intake_address"] for s in definitions["sequences"] if s.get("intake_address")
        ],
        trigger_tags=list(trigger_tags),
        other_tags=[*NOISE_TAGS, *(f"{p}-{s}-2026" for p in PRODUCTS for s in ("old", "archived"))],
        removed_tags=list(removed_tags) or list(trigger_tags),
        users=sorted(definitions["account"]["users"]),
    )


# ---- events ---------------------------------------------------------------------------------


@dataclass
class _Stream:
    """The running state of one history: its clock, its contacts and its counters."""

    spec: HistorySpec
    words: _Vocabulary
    rng: random.Random
    created: int = 0
    serial: int = 0
    seconds: float = 0.0
    mean_gap: float = 1.0
    _stamp_second: int = -1
    _stamp: str = ""
    lost_tags: dict[int, str] = field(default_factory=dict)  # contact -> a trigger tag it lost

    def time(self) -> str:
        """This event's time; then the clock moves on by a random gap, long at night."""
        second = int(self.seconds)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = (START + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")
        hour = int(self.seconds // 3600 + START.hour) % 24
        factor = QUIET_GAP if QUIET_HOURS_UTC[0] <= hour < QUIET_HOURS_UTC[1] else BUSY_GAP
        self.seconds += self.rng.expovariate(1.0) * self.mean_gap * factor
        return self._stamp

    def contact(self) -> int:
        """A known contact: new leads are busier than old ones."""
        if self.rng.random() < 0.6:
            return max(0, self.created - 1 - int(self.rng.expovariate(1 / 400)))
        return self.rng.randrange(self.created)


def _contact_id(index: int) -> str:
    return f"c-{index:06d}"


def _envelope(
    stream: _Stream, kind: str, source: str, subject: str | None, data: dict[str, Any]
) -> dict[str, Any]:
    stream.serial += 1
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"h-{stream.serial}",
        "source": source,
        "type": kind,
        "time": stream.time(),
    }
    if subject is not None:
        event["subject"] = subject
    event["data"] = data
    return event


def _person(rng: random.Random, index: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    zone = rng.choices(list(ZONE_WEIGHTS), weights=list(ZONE_WEIGHTS.values()))[0]
    person: dict[str, Any] = {"first_name": first, "last_name": last}
    if rng.random() < 0.95:
        person["phone"] = _phone(rng, zone)
    if rng.random() < 0.8:
        person["email"] = f"{first.lower()}.{last.lower()}{index}@{rng.choice(DOMAINS)}"
    if rng.random() < 0.2:
        person["timezone"] = rng.choice(EXPLICIT_ZONES)
    person["state"] = rng.choice(STATES)
    return person


def _contact_created(stream: _Stream) -> dict[str, Any]:
    rng, index = stream.rng, stream.created
    stream.created += 1
    data: dict[str, Any] = {"contact_id": _contact_id(index), **_person(rng, index)}
    data["lead_source"] = rng.choice(LEAD_SOURCES)
    if rng.random() < 0.7:
        data["owner_id"] = rng.choice(stream.words.users)
    if rng.random() < 0.5:
        data["line_id"] = f"line-{rng.randint(1, 6)}"
    roll = rng.random()
    if roll < 0.15:
        data["tags"] = [rng.choice(stream.words.trigger_tags)]
    elif roll < 0.35:
        data["tags"] = rng.sample(stream.words.other_tags, rng.randint(1, 2))
    if rng.random() < 0.1:
        data["tracking_number"] = _phone(rng, "America/New_York")
    return _envelope(stream, "contact.created", "crm", data["contact_id"], data)


def _tag_added(stream: _Stream) -> dict[str, Any]:
    rng, index = stream.rng, stream.contact()
    matching = rng.random() < 0.5
    tag = rng.choice(stream.words.trigger_tags if matching else stream.words.other_tags)
    if matching and rng.random() < 0.2:
        stream.lost_tags[index] = tag
    contact_id = _contact_id(index)
    return _envelope(
        stream, "contact.tag_added", "crm", contact_id, {"contact_id": contact_id, "tag": tag}
    )


def _tag_removed(stream: _Stream) -> dict[str, Any]:
    rng, index = stream.rng, stream.contact()
    roll = rng.random()
    if roll < 0.4:
        tag = rng.choice(stream.words.removed_tags)
    elif roll < 0.7 and index in stream.lost_tags:
        tag = stream.lost_tags.pop(index)
    else:
        tag = rng.choice(stream.words.other_tags)
    contact_id = _contact_id(index)
    return _envelope(
        stream, "contact.tag_removed", "crm", contact_id, {"contact_id": contact_id, "tag": tag}
    )


def _contact_updated(stream: _Stream) -> dict[str, Any]:
    rng, index = stream.rng, stream.contact()
    contact_id = _contact_id(index)
    data: dict[str, Any] = {"contact_id": contact_id}
    for key in rng.sample(
        ("owner_id", "state", "email", "lead_source", "timezone", "phone", "last_name"),
        rng.randint(1, 3),
    ):
        if key == "owner_id":
            data[key] = rng.choice(stream.words.users)
        elif key == "state":
            data[key] = rng.choice(STATES)
        elif key == "email":
            data[key] = f"contact{index}.{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"
        elif key == "lead_source":
            data[key] = rng.choice(LEAD_SOURCES)
        elif key == "timezone":
            data[key] = rng.choice(EXPLICIT_ZONES)
        elif key == "phone":
            data[key] = _phone(rng)
        else:
            data[key] = rng.choice(LAST_NAMES)
    return _envelope(stream, "contact.updated", "crm", contact_id, data)


def _disposition_changed(stream: _Stream) -> dict[str, Any]:
    contact_id = _contact_id(stream.contact())
    data = {"contact_id": contact_id, "disposition": stream.rng.choice(DISPOSITIONS)}
    return _envelope(stream, "contact.disposition_changed", "crm", contact_id, data)


def _call_completed(stream: _Stream) -> dict[str, Any]:
    rng = stream.rng
    contact_id = _contact_id(stream.contact())
    inbound = rng.random() < 0.3
    answered = rng.random() < (0.9 if inbound else 0.45)
    talk = rng.randint(5, 900) if answered else 0
    wait = rng.randint(0, 60)
    data: dict[str, Any] = {
        "call_id": f"call-{stream.serial + 1}",
        "contact_id": contact_id,
        "direction": "inbound" if inbound else "outbound",
        "answered": answered,
        "talk_time": talk,
        "wait_time": wait,
        "duration": talk + wait + rng.randint(0, 30),
        "user_id": rng.choice(stream.words.users),
    }
    if not inbound:
        data["manual"] = rng.random() < 0.5
    if rng.random() < 0.6:
        data["disposition"] = rng.choice(DISPOSITIONS)
    return _envelope(stream, "call.completed", "phone-system", contact_id, data)


def _message_received(stream: _Stream) -> dict[str, Any]:
    rng = stream.rng
    contact_id = _contact_id(stream.contact())
    channel = "sms" if rng.random() < 0.75 else "email"
    roll = rng.random()
    if channel == "sms" and roll < 0.03:
        body: str | None = rng.choice(OPT_OUT_BODIES)
    elif channel == "sms" and roll < 0.04:
        body = rng.choice(OPT_IN_BODIES)
    elif roll < 0.05:
        body = None
    else:
        body = rng.choice(SMS_REPLIES if channel == "sms" else EMAIL_REPLIES)
    data = {
        "message_id": f"m-{stream.serial + 1}",
        "contact_id": contact_id,
        "channel": channel,
        "body": body,
    }
    return _envelope(
        stream,
        "message.received",
        "sms-gateway" if channel == "sms" else "mailbox",
        contact_id,
        data,
    )


def _appointment_changed(stream: _Stream) -> dict[str, Any]:
    rng = stream.rng
    contact_id = _contact_id(stream.contact())
    status = rng.choices(("scheduled", "shown", "canceled"), weights=(50, 30, 20))[0]
    data = {
        "appointment_id": f"a-{rng.randrange(stream.created * 2 + 1)}",
        "contact_id": contact_id,
        "status": status,
    }
    return _envelope(stream, "appointment.changed", "calendar", contact_id, data)


def _dnc_changed(stream: _Stream) -> dict[str, Any]:
    contact_id = _contact_id(stream.contact())
    data = {"contact_id": contact_id, "dnc": stream.rng.random() < 0.65}
    return _envelope(stream, "contact.dnc_changed", "crm", contact_id, data)


def _opt_change(stream: _Stream) -> dict[str, Any]:
    rng = stream.rng
    contact_id = _contact_id(stream.contact())
    kind = "contact.opted_out" if rng.random() < 0.6 else "contact.opted_in"
    data: dict[str, Any] = {"contact_id": contact_id}
    if rng.random() < 0.7:  # without a channel: a v1 payload, upcast to channel "all"
        data["channel"] = rng.choice(("sms", "email", "all"))
    return _envelope(stream, kind, "compliance", contact_id, data)


def _enrollment_requested(stream: _Stream) -> dict[str, Any]:
    rng = stream.rng
    ids = sorted({_contact_id(stream.contact()) for _ in range(rng.randint(1, 5))})
    data = {"sequence_id": rng.choice(stream.words.sequence_ids), "contact_ids": ids}
    return _envelope(stream, "enrollment.requested", "ui", None, data)


def _lead_email(stream: _Stream) -> dict[str, Any]:
    rng = stream.rng
    serial = stream.serial + 1
    person = _person(rng, 900_000 + serial)
    lines = [f"First Name: {person['first_name']}", f"Last Name: {person['last_name']}"]
    roll = rng.random()
    if roll < 0.85 and "phone" in person:
        digits = person["phone"][2:]
        spelled = rng.choice(
            (
                f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
                f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
                person["phone"],
            )
        )
        lines.append(f"Phone: {spelled}")
    if roll < 0.6 or (0.85 <= roll < 0.9):
        lines.append(f"Email: {person.get('email') or f'lead{serial}@example.com'}")
    lines.append(f"State: {person['state']}")
    if rng.random() < 0.5:
        lines.append(f"Message: I'd like a quote for {rng.choice(PRODUCTS)}.")
    if rng.random() < 0.3:
        lines.append(f"Zip: {rng.randint(10000, 99999)}")
    data = {
        "to": rng.choice(stream.words.intake_addresses),
        "from": "forms@webforms.example.com",
        "subject": "New lead from your website form",
        "body": "\n".join(lines),
        "message_id": f"mail-{serial}",
    }
    return _envelope(stream, "lead.email_received", "mail-intake", None, data)


_MAKERS = {
    "contact.created": _contact_created,
    "contact.tag_added": _tag_added,
    "contact.updated": _contact_updated,
    "contact.disposition_changed": _disposition_changed,
    "call.completed": _call_completed,
    "message.received": _message_received,
    "appointment.changed": _appointment_changed,
    "contact.dnc_changed": _dnc_changed,
    "contact.opted_out|opted_in": _opt_change,
    "enrollment.requested": _enrollment_requested,
    "lead.email_received": _lead_email,
    "contact.tag_removed": _tag_removed,
}


def _bad_line(stream: _Stream, number: int) -> bytes:
    """One invalid line, of a kind that rotates: the replay must report it and go on."""
    rng = stream.rng
    stamp = stream._stamp or START.strftime("%Y-%m-%dT%H:%M:%SZ")
    kind = (number // max(stream.spec.bad_every, 1)) % 5
    base = {"specversion": "1.0", "id": f"bad-{number}", "source": "crm", "time": stamp}
    if kind == 0:
        return (
            b'{"specversion": "1.0", "id": "bad-'
            + str(number).encode()
            + b'", "type": "contact.tag_'
        )
    if kind == 1:
        event = {**base, "type": "contact.tag_added", "subject": "c-000000", "data": {"tag": "hot"}}
    elif kind == 2:
        event = {**base, "type": "contact.teleported", "data": {"contact_id": "c-000000"}}
    elif kind == 3:
        event = {
            **base,
            "time": "yesterday",
            "type": "contact.dnc_changed",
            "data": {"contact_id": "c-000000", "dnc": True},
        }
    else:
        phone = f"555-{rng.randint(1000, 9999)}"
        event = {
            **base,
            "type": "contact.created",
            "subject": "c-000001",
            "data": {"contact_id": "c-000001", "phone": phone},
        }
    return orjson.dumps(event)


def _mean_gap_factor() -> float:
    """The average gap factor per event, so that `--events` spread over about SPAN."""
    quiet = QUIET_HOURS_UTC[1] - QUIET_HOURS_UTC[0]
    events_per_day = quiet / QUIET_GAP + (24 - quiet) / BUSY_GAP
    return 24 / events_per_day


def iter_history(spec: HistorySpec, definitions: dict[str, Any] | None = None) -> Iterator[bytes]:
    """The history's lines (without newlines), drawn one at a time."""
    if spec.bad_every == 1:
        raise ValueError("bad_every is 0 (no invalid lines) or at least 2")
    definitions = definitions if definitions is not None else build_definitions(spec)
    rng = random.Random(f"dripstream-bench:{spec.seed}:events")
    stream = _Stream(spec=spec, words=_vocabulary(definitions), rng=rng)
    cumulative = list(itertools.accumulate(MIX.values()))
    stream.mean_gap = SPAN.total_seconds() / max(spec.events, 1) / _mean_gap_factor()
    kinds = list(MIX)
    number = 0
    for _ in range(spec.events):
        number += 1
        if spec.bad_every and number % spec.bad_every == 0:
            yield _bad_line(stream, number)
            number += 1
        if stream.created == 0:
            kind = "contact.created"
        else:
            kind = rng.choices(kinds, cum_weights=cumulative)[0]
            while kind == "contact.created" and stream.created >= spec.contacts:
                kind = rng.choices(kinds, cum_weights=cumulative)[0]
        yield orjson.dumps(_MAKERS[kind](stream))


def write_history(
    spec: HistorySpec, out_dir: Path = DEFAULT_OUT, name: str | None = None
) -> HistoryFiles:
    """Write `<name>.sequences.json`, `<name>.events.jsonl` and `<name>.summary.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or spec.name()
    files = HistoryFiles(
        sequences=out_dir / f"{name}.sequences.json",
        events=out_dir / f"{name}.events.jsonl",
        summary=out_dir / f"{name}.summary.json",
    )
    definitions = build_definitions(spec)
    files.sequences.write_bytes(orjson.dumps(definitions, option=orjson.OPT_INDENT_2) + b"\n")
    counts: Counter[str] = Counter()
    lines = bad = 0
    first = last = None
    batch: list[bytes] = []
    partial = files.events.with_suffix(".jsonl.partial")
    with partial.open("wb") as handle:
        for line in iter_history(spec, definitions):
            lines += 1
            if spec.bad_every and lines % spec.bad_every == 0:
                bad += 1
            else:
                # The type and time sit at fixed places in the generator's own output.
                kind = line.split(b'"type":"', 1)[1].split(b'"', 1)[0].decode()
                counts[kind] += 1
                stamp = line.split(b'"time":"', 1)[1][:20].decode()
                first = first or stamp
                last = stamp
            batch.append(line)
            if len(batch) >= WRITE_BATCH:
                handle.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            handle.write(b"\n".join(batch) + b"\n")
    partial.replace(files.events)  # a half-written history never looks complete
    summary = {
        "spec": {
            "events": spec.events,
            "sequences": spec.sequences,
            "contacts": spec.contacts,
            "seed": spec.seed,
            "bad_every": spec.bad_every,
        },
        "lines": lines,
        "bad_lines": bad,
        "contacts_created": counts["contact.created"],
        "first_time": first,
        "last_time": last,
        "types": dict(sorted(counts.items())),
    }
    files.summary.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="valid input events (default 1,000,000)"
    )
    parser.add_argument(
        "--sequences", type=int, default=100, help="sequences in the definition file"
    )
    parser.add_argument("--contacts", type=int, default=100_000, help="at most this many contacts")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--bad-every", type=int, default=0, metavar="K", help="make every K-th line invalid"
    )
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--name", help="file name prefix (default: from the arguments)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.sequences < len(TRIGGER_TYPES) or args.contacts < 1:
        parser.error(f"need --events >= 1, --sequences >= {len(TRIGGER_TYPES)}, --contacts >= 1")
    if args.bad_every < 0 or args.bad_every == 1:
        parser.error("--bad-every is 0 (none) or at least 2")
    spec = HistorySpec(args.events, args.sequences, args.contacts, args.seed, args.bad_every)
    files = write_history(spec, args.out_dir, args.name)
    print(files.sequences)
    print(files.events)
    print(files.summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
