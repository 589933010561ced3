"""Sequence definitions: settings, steps, triggers and the problems that make one invalid.

Input is a definition document already checked by `schemas.definitions` (its shape is
right); what is left here is whether the sequence can run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from typing import Any, Literal

from aggregates.calendar import Calendar, DailyWindow
from aggregates.intake_addresses import intake_address, own_intake_address
from aggregates.templating import misspelled_shortcodes, unknown_shortcodes, with_opt_out
from schemas.definitions import AUTO_INTAKE, DEFAULT_OPT_OUT_PHRASE, DEFAULT_TIMEZONE
from schemas.envelope import parse_time

ProcessOn = Literal["every_day", "business_days"]
TriggerAction = Literal["enroll", "disenroll"]

STEP_TYPES = frozenset(
    {
        "progressive_dialer",
        "preview_dialer",
        "power_dialer",
        "send_sms",
        "send_mms",
        "sms_ring_group",
        "add_tag",
        "remove_tag",
        "change_disposition",
        "mark_dnc",
        "change_owner",
        "send_webhook",
        "email_contact",
        "email_ring_group",
        "ringless_voicemail",
        "round_robin_owner",
        "add_line",
        "change_lead_source",
        "remove_from_power_dialer",
    }
)
# Steps that reach the contact: skipped for DNC (CONTRACT.md §2).
CONTACT_FACING = frozenset(
    {
        "send_sms",
        "send_mms",
        "email_contact",
        "progressive_dialer",
        "preview_dialer",
        "power_dialer",
        "ringless_voicemail",
    }
)
# Contact-facing by phone: under the account's quiet hours (CONTRACT.md §3 c).
VOICE_OR_TEXT = CONTACT_FACING - {"email_contact"}
# Steps that give a contact an owner, who is told (owner notices batch across contacts).
_OWNER_STEPS = frozenset({"change_owner", "round_robin_owner"})
NEEDS_LINE = frozenset({"send_sms", "send_mms", "sms_ring_group"})
NEEDS_RING_GROUP = frozenset(
    {"progressive_dialer", "preview_dialer", "sms_ring_group", "email_ring_group"}
)
TEXT_KEYS = ("text", "body", "subject", "message")

TRIGGER_VALUE_KEYS = {
    "contact_disposition": "dispositions",
    "call_disposition": "dispositions",
    "contact_tagged": "tags",
    "tag_removed": "tags",
    "appointment": "statuses",
    "dnc_changed": "on",
}


@dataclass(frozen=True, slots=True)
class Delay:
    kind: Literal["none", "default", "time_of_day"] = "none"
    amount: int = 0
    unit: Literal["minutes", "hours", "days"] = "minutes"
    days: int = 0
    at: time | None = None

    def seconds(self) -> int:
        per_unit = {"minutes": 60, "hours": 3600, "days": 86400}[self.unit]
        return self.amount * per_unit


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    type: str
    delay: Delay
    settings: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)


@dataclass(frozen=True, slots=True)
class Trigger:
    type: str
    action: TriggerAction = "enroll"
    values: frozenset[str] = frozenset()
    metric: str | None = None
    seconds: int | None = None


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Account:
    timezone: str = DEFAULT_TIMEZONE
    opt_out_phrase: str | None = DEFAULT_OPT_OUT_PHRASE
    quiet_hours: DailyWindow | None = None
    lines: Mapping[str, str] = field(default_factory=dict)
    users: Mapping[str, User] = field(default_factory=dict)
    ring_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    intake_domain: str | None = None
    # The seed: ringless voicemail is "only for verified accounts". True unless the file
    # says otherwise, so a file written to the contract alone keeps its voicemail steps.
    ringless_voicemail_verified: bool = True

    def user_name(self, user_id: str | None) -> str | None:
        user = self.users.get(user_id) if user_id else None
        return user.name if user else None


@dataclass(frozen=True, slots=True)
class Sequence:
    id: str
    name: str
    description: str | None
    process_on: ProcessOn
    run_on_holidays: bool
    schedule_timezone: str | None
    open_hours: DailyWindow | None
    enroll_only_within_hours: bool
    prevent_enrollment_if_communicated: bool
    outbound_line: str | None
    throttle_per_minute: int | None
    remove_on_response: bool
    remove_on_manual_call: bool
    remove_on_opt_out: bool
    intake_address: str | None
    created: datetime | None
    steps: tuple[Step, ...]
    triggers: tuple[Trigger, ...]
    problems: tuple[str, ...]
    calendar: Calendar
    definition: Mapping[str, Any]

    @property
    def status(self) -> Literal["active", "invalid"]:
        return "invalid" if self.problems else "active"

    @property
    def spans_contacts(self) -> bool:
        """Whether one contact's steps depend on other contacts' steps: a throttle's places
        in a minute, a round robin's turns, an owner's notices (more than 20 in a minute are
        one summary). Engines that each decide some of the contacts would each keep their
        own, and decide otherwise than one engine deciding all."""
        return bool(self.throttle_per_minute) or any(
            step.type in _OWNER_STEPS for step in self.steps
        )

    def copied(self, new_id: str, new_name: str | None) -> Sequence:
        definition = {**self.definition, "id": new_id, "name": new_name or f"{self.name} (copy)"}
        definition.pop("created", None)
        # An address belongs to one sequence; `auto` sets the copy one of its own.
        auto = definition.get("intake_address") == AUTO_INTAKE
        if not auto:
            definition.pop("intake_address", None)
        return replace(
            self,
            id=new_id,
            name=str(definition["name"]),
            intake_address=(
                own_intake_address(new_id, self.intake_address.partition("@")[2])
                if auto and self.intake_address
                else None
            ),
            created=None,
            definition=definition,
        )


def _intake_address_of(doc: Mapping[str, Any], account: Account) -> str | None:
    written = doc.get("intake_address")
    if not written:
        return None
    if written == AUTO_INTAKE:
        domain = account.intake_domain
        return own_intake_address(str(doc["id"]), domain) if domain else None
    return intake_address(str(written))


def parse_clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _window(spec: Mapping[str, Any] | None, start: str, end: str) -> DailyWindow | None:
    if not spec or spec.get(start) is None or spec.get(end) is None:
        return None
    return DailyWindow(parse_clock(str(spec[start])), parse_clock(str(spec[end])))


def _open_hours(schedule: Mapping[str, Any]) -> tuple[DailyWindow | None, tuple[str, ...]]:
    """The schedule's [open, close), or the problem that makes the sequence unable to run:
    hours that close at or before they open (overnight hours are not supported: a night's
    hours after midnight would fall on the next day, another processing day or not)."""
    opens, closes = schedule.get("open"), schedule.get("close")
    if (
        opens is not None
        and closes is not None
        and parse_clock(str(closes)) <= parse_clock(str(opens))
    ):
        return None, (
            f"schedule: close ({closes}) must be after open ({opens})"
            + ("; hours past midnight are not supported" if str(closes) < str(opens) else ""),
        )
    return _window(schedule, "open", "close"), ()


def build_account(doc: Mapping[str, Any] | None) -> Account:
    doc = doc or {}
    users = {
        str(uid): User(
            id=str(uid), name=info.get("name"), phone=info.get("phone"), email=info.get("email")
        )
        for uid, info in (doc.get("users") or {}).items()
    }
    ring_groups = {
        str(gid): tuple(members) for gid, members in (doc.get("ring_groups") or {}).items()
    }
    return Account(
        timezone=str(doc.get("timezone") or DEFAULT_TIMEZONE),
        opt_out_phrase=doc.get("opt_out_phrase") or DEFAULT_OPT_OUT_PHRASE,
        quiet_hours=_window(doc.get("quiet_hours"), "start", "end"),
        lines={str(k): str(v) for k, v in (doc.get("lines") or {}).items()},
        users=users,
        ring_groups=ring_groups,
        intake_domain=str(doc["intake_domain"]).lower() if doc.get("intake_domain") else None,
        ringless_voicemail_verified=doc.get("ringless_voicemail_verified") is not False,
    )


def _delay(spec: Mapping[str, Any] | None) -> Delay:
    if not spec:
        return Delay()
    kind = spec.get("kind", "none")
    if kind == "default":
        return Delay(
            kind="default", amount=int(spec.get("amount", 0)), unit=spec.get("unit", "minutes")
        )
    if kind == "time_of_day":
        return Delay(
            kind="time_of_day", days=int(spec.get("days", 0)), at=parse_clock(str(spec["at"]))
        )
    return Delay()


def _trigger(spec: Mapping[str, Any]) -> Trigger:
    kind = str(spec["type"])
    raw = spec.get(TRIGGER_VALUE_KEYS.get(kind, ""), ())
    values = frozenset([raw] if isinstance(raw, str) else [str(v) for v in raw or ()])
    if kind == "call_duration":
        return Trigger(
            type=kind,
            action="disenroll",
            metric=str(spec.get("metric", "duration")),
            seconds=int(spec.get("seconds", 0)),
        )
    action: TriggerAction = "disenroll" if spec.get("action") == "disenroll" else "enroll"
    return Trigger(type=kind, action=action, values=values)


def _step(spec: Mapping[str, Any]) -> Step:
    settings = {k: v for k, v in spec.items() if k not in ("id", "type", "delay")}
    return Step(
        id=str(spec["id"]),
        type=str(spec["type"]),
        delay=_delay(spec.get("delay")),
        settings=settings,
    )


def problems_of(
    sequence_doc: Mapping[str, Any], steps: tuple[Step, ...], account: Account
) -> tuple[str, ...]:
    """What keeps a well-formed sequence from running; empty means `active`.

    A line, ring group or user is checked against the account only when the account defines
    some of that kind: a file without `lines` (or `ring_groups`, `users`) names them for
    systems outside dripstream, and the engine passes the ids on as they are.
    """
    problems: list[str] = []
    if sequence_doc.get("intake_address") == AUTO_INTAKE and not account.intake_domain:
        problems.append("intake_address: auto needs the account's intake_domain")
    line = sequence_doc.get("outbound_line")
    if line and account.lines and str(line) not in account.lines:
        problems.append(f"outbound_line: unknown line {str(line)!r}")
    for number, trigger in enumerate(sequence_doc.get("triggers") or (), start=1):
        if trigger.get("type") == "call_duration" and trigger.get("action", "disenroll") != (
            "disenroll"
        ):
            # CONTRACT.md §2: a call_duration trigger disenrolls; taking `enroll` silently
            # would leave the author believing long calls enroll.
            problems.append(f"trigger {number} (call_duration): action must be disenroll")
    for step in steps:
        where = f"step {step.id} ({step.type})"
        added_line = step.get("line_id") if step.type == "add_line" else None
        if added_line and account.lines and str(added_line) not in account.lines:
            problems.append(f"{where}: unknown line {str(added_line)!r} in line_id")
        if step.type not in STEP_TYPES:
            problems.append(f"{where}: unknown step type")
        if step.type in NEEDS_LINE and not line:
            problems.append(f"{where}: needs the sequence's outbound_line")
        if step.type in NEEDS_RING_GROUP and not step.get("ring_group"):
            problems.append(f"{where}: needs a ring_group")
        if step.type == "ringless_voicemail" and not account.ringless_voicemail_verified:
            problems.append(
                f"{where}: the account is not verified for ringless voicemail"
                " (account.ringless_voicemail_verified)"
            )
        problems.extend(f"{where}: {problem}" for problem in _unknown_references(step, account))
        for key in TEXT_KEYS:
            text = step.get(key)
            if isinstance(text, str):
                problems.extend(
                    f"{where}: unknown shortcode [{code}] in {key}"
                    for code in unknown_shortcodes(text)
                )
                problems.extend(
                    f"{where}: {written} in {key} is no shortcode: write {meant}"
                    for written, meant in misspelled_shortcodes(text)
                )
        if step.type in _WORDS_SENT and not str(step.get(_WORDS_SENT[step.type], "")).strip():
            problems.append(f"{where}: {_WORDS_SENT[step.type]} is empty")
        problems.extend(f"{where}: {problem}" for problem in _text_too_long(step, account))
        if step.type == "send_webhook" and not str(step.get("url", "")).startswith(
            ("http://", "https://")
        ):
            problems.append(f"{where}: url must be http(s)")
    return tuple(problems)


# Twilio refuses a message body over 1,600 characters (error 21617): a text that long before
# any shortcode is filled in would fail at every send.
SMS_BODY_LIMIT = 1600
_TEXTED_TO_CONTACT = frozenset({"send_sms", "send_mms"})


def _text_too_long(step: Step, account: Account) -> list[str]:
    text = step.get("text")
    if step.type not in NEEDS_LINE or not isinstance(text, str):
        return []
    body = with_opt_out(text, account.opt_out_phrase) if step.type in _TEXTED_TO_CONTACT else text
    if len(body) <= SMS_BODY_LIMIT:
        return []
    what = "with the opt-out phrase " if body != text else ""
    return [f"text is {len(body)} characters {what}(an SMS holds at most {SMS_BODY_LIMIT})"]


# What a message step sends: empty, only the opt-out phrase or a blank e-mail would go.
# A picture MMS may go without words (its `media_url` is what it sends), so it is not here.
_WORDS_SENT = {
    "send_sms": "text",
    "sms_ring_group": "text",
    "email_contact": "body",
    "email_ring_group": "body",
}

# Steps that name the account's users: a contact's owner (who is told), a power dialer's.
_USER_SETTINGS = {
    "change_owner": "owner_id",
    "round_robin_owner": "owners",
    "power_dialer": "user_id",
    "remove_from_power_dialer": "user_id",
}


def _unknown_references(step: Step, account: Account) -> list[str]:
    """The step's ring group and users that the account does not define, or leaves empty."""
    problems: list[str] = []
    group = step.get("ring_group") if step.type in NEEDS_RING_GROUP else None
    if group and account.ring_groups:
        members = account.ring_groups.get(str(group))
        if members is None:
            problems.append(f"unknown ring group {str(group)!r} in ring_group")
        elif not members:
            problems.append(f"ring group {str(group)!r} has no members")
        elif account.users and not any(member in account.users for member in members):
            problems.append(f"ring group {str(group)!r} has no member among the account's users")
        elif account.users:
            # Texted or called: a member with a number must be there; mailed: an address.
            known = [account.users[m] for m in members if m in account.users]
            if step.type == "email_ring_group" and not any(u.email for u in known):
                problems.append(f"ring group {str(group)!r} has no member with an e-mail")
            elif step.type != "email_ring_group" and not any(u.phone for u in known):
                problems.append(f"ring group {str(group)!r} has no member with a phone")
            problems.extend(
                f"unknown user {member!r} in ring group {str(group)!r}"
                for member in members
                if member not in account.users
            )
    key = _USER_SETTINGS.get(step.type)
    if key is not None and account.users:
        problems.extend(
            f"unknown user {user!r} in {key}"
            for user in _users_named(step, key)
            if user not in account.users
        )
    return problems


def _users_named(step: Step, key: str) -> list[str]:
    """The user ids a step's setting names: one (`owner_id`, `user_id`) or a list."""
    value = step.get(key)
    named = value if isinstance(value, list | tuple) else [value] if value else []
    return [str(user) for user in named]


def unreached_members(sequence: Sequence, account: Account) -> list[str]:
    """Ring-group members a step of the sequence cannot reach: a texted or called group's
    member without a phone, a mailed group's without an e-mail. The step still reaches the
    others, so this is no problem of the sequence; the author is told (a warning) rather
    than learning it from a member who never heard. A group that reaches nobody is left to
    problems_of, which makes the sequence invalid."""
    missing: dict[tuple[str, str, str], list[str]] = {}
    for step in sequence.steps:
        if step.type not in NEEDS_RING_GROUP:
            continue
        group = str(step.get("ring_group") or "")
        means = "e-mail" if step.type == "email_ring_group" else "phone"
        users = [
            (m, account.users[m]) for m in account.ring_groups.get(group, ()) if m in account.users
        ]
        unreached = [m for m, u in users if not (u.email if means == "e-mail" else u.phone)]
        if len(unreached) == len(users):
            continue  # nobody reached: a problem of the sequence already (problems_of)
        for member in unreached:
            missing.setdefault((group, member, means), []).append(f"step {step.id} ({step.type})")
    return [
        f"sequence {sequence.id!r}: ring group {group!r} member {member!r} has no {means},"
        f" so {' and '.join(steps)} will not reach them"
        for (group, member, means), steps in missing.items()
    ]


def untold_owners(sequence: Sequence, account: Account) -> list[str]:
    """Users an owner step gives contacts to who cannot be told of them: no phone to text,
    no e-mail to mail (the seed: the new owner is told). The contacts are still given."""
    untold: dict[str, list[str]] = {}
    for step in sequence.steps:
        if step.type not in _OWNER_STEPS:
            continue
        for owner in dict.fromkeys(_users_named(step, _USER_SETTINGS[step.type])):
            user = account.users.get(owner)
            if user is not None and not user.phone and not user.email:
                untold.setdefault(owner, []).append(f"step {step.id} ({step.type})")
    return [
        f"sequence {sequence.id!r}: user {owner!r} has no phone or e-mail, so"
        f" {' and '.join(steps)} cannot tell them of the contacts they are given"
        for owner, steps in untold.items()
    ]


def build_sequence(doc: Mapping[str, Any], account: Account) -> Sequence:
    steps = tuple(_step(s) for s in doc.get("steps") or ())
    schedule = doc.get("schedule") or {}
    process_on: ProcessOn = "every_day" if doc.get("process_on") == "every_day" else "business_days"
    open_hours, hours_problems = _open_hours(schedule)
    problems = hours_problems + problems_of(doc, steps, account)
    quiet = account.quiet_hours
    if (
        open_hours is not None
        and quiet is not None
        and any(step.type in VOICE_OR_TEXT for step in steps)
        and not open_hours.meets(quiet)
    ):
        problems += (
            "schedule: open hours never meet the account's quiet hours,"
            " so no call or text could go out",
        )
    created = doc.get("created")
    return Sequence(
        id=str(doc["id"]),
        name=str(doc.get("name", doc["id"])),
        description=doc.get("description"),
        process_on=process_on,
        run_on_holidays=bool(doc.get("run_on_holidays", False)),
        schedule_timezone=schedule.get("timezone"),
        open_hours=open_hours,
        enroll_only_within_hours=bool(schedule.get("enroll_only_within_hours", False)),
        prevent_enrollment_if_communicated=bool(
            doc.get("prevent_enrollment_if_communicated", False)
        ),
        outbound_line=doc.get("outbound_line"),
        throttle_per_minute=doc.get("throttle_per_minute"),
        remove_on_response=bool(doc.get("remove_on_response", True)),
        remove_on_manual_call=bool(doc.get("remove_on_manual_call", True)),
        remove_on_opt_out=bool(doc.get("remove_on_opt_out", True)),
        intake_address=_intake_address_of(doc, account),
        created=parse_time(created) if isinstance(created, str) else None,
        steps=steps,
        triggers=tuple(_trigger(t) for t in doc.get("triggers") or ()),
        problems=problems,
        calendar=Calendar(
            process_on=process_on,
            run_on_holidays=bool(doc.get("run_on_holidays", False)),
            open_hours=open_hours,
            quiet_hours=account.quiet_hours,
        ),
        definition=dict(doc),
    )


@dataclass(frozen=True, slots=True)
class Catalog:
    """The account and its sequences, in definition order."""

    account: Account
    sequences: Mapping[str, Sequence]

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Catalog:
        account = build_account(doc.get("account"))
        sequences = {}
        for spec in doc.get("sequences") or ():
            sequence = build_sequence(spec, account)
            sequences[sequence.id] = sequence
        return cls(account=account, sequences=sequences)
