"""Effect commands as the processor reads them: the CloudEvent, its effect id and its fields.

The engine has validated these events before writing them; this module checks again only
what a send needs, so a malformed command fails with the field named instead of a KeyError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from effects.ports import EffectId
from schemas.envelope import CloudEvent, parse_time

SMS_SEND = "sms.send"
MMS_SEND = "mms.send"
EMAIL_SEND = "email.send"
CALL_DIAL = "call.dial"
VOICEMAIL_DROP = "voicemail.drop"
WEBHOOK_POST = "webhook.post"
NOTIFY_SMS = "notify.sms"
NOTIFY_EMAIL = "notify.email"
POWER_DIALER_ADDED = "power_dialer.added"
POWER_DIALER_REMOVED = "power_dialer.removed"

# What each type needs in `data`, beyond effect_id (the context fields are optional here:
# a notification to a user may concern no enrollment).
# (from_number is checked when planning: a default number may stand in for it).
REQUIRED: dict[str, tuple[str, ...]] = {
    SMS_SEND: ("to", "body"),
    MMS_SEND: ("to", "media_url"),  # a picture may go without words
    EMAIL_SEND: ("to", "subject", "body"),
    CALL_DIAL: ("to", "mode"),
    VOICEMAIL_DROP: ("to", "recording_url"),
    WEBHOOK_POST: ("url",),
    NOTIFY_SMS: ("body",),
    NOTIFY_EMAIL: ("subject", "body"),
    POWER_DIALER_ADDED: ("user_id", "contact_id"),
    POWER_DIALER_REMOVED: ("contact_id",),
}

EFFECT_TYPES = frozenset(REQUIRED)
CONTEXT_FIELDS = ("sequence_id", "contact_id", "enrollment_id", "step_id")


class CommandRejected(ValueError):  # noqa: N818 - named like schemas EventRejected
    """A command the processor cannot carry out; `field` is like `data.to`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EffectCommand:
    event: CloudEvent
    effect_id: EffectId

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def data(self) -> Mapping[str, Any]:
        return self.event.data

    @property
    def contact_id(self) -> str | None:
        value = self.data.get("contact_id")
        return value if isinstance(value, str) else None

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or not value:
            raise CommandRejected(f"data.{key}", "must be a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.data.get(key)
        return value if isinstance(value, str) and value else None

    @property
    def send_before(self) -> datetime | None:
        return send_before_of(self.data)

    def context(self) -> dict[str, Any]:
        """The fields every outcome repeats, so consumers need not join on effect_id."""
        out: dict[str, Any] = {"effect_type": self.type}
        for key in CONTEXT_FIELDS:
            if key in self.data:
                out[key] = self.data[key]
        return out


def send_before_of(data: Mapping[str, Any]) -> datetime | None:
    """The moment the contact's quiet hours close (the engine's `send_before` on a text,
    call or voicemail): later, it must not go out. Checked by `read_command`."""
    value = data.get("send_before")
    return parse_time(value) if isinstance(value, str) else None


def effect_id_of(event: CloudEvent) -> EffectId:
    value = event.data.get("effect_id")
    if not isinstance(value, str) or not value:
        raise CommandRejected("data.effect_id", "is required")
    return EffectId(value)


# What a missing field means where the engine leaves it empty on purpose: the history shows it.
WHY_MISSING = {
    (POWER_DIALER_ADDED, "user_id"): "no user: the step names none and the contact has no owner"
}


def read_command(event: CloudEvent) -> EffectCommand:
    """The command, or CommandRejected naming the first missing or malformed field."""
    if event.type not in EFFECT_TYPES:
        raise CommandRejected("type", f"{event.type!r} is not an effect command")
    command = EffectCommand(event=event, effect_id=effect_id_of(event))
    for key in REQUIRED[event.type]:
        value = command.data.get(key)
        if value is None or value == "":
            raise CommandRejected(f"data.{key}", WHY_MISSING.get((event.type, key), "is required"))
    if event.type == CALL_DIAL:
        if command.data["mode"] not in {"progressive", "preview"}:
            raise CommandRejected("data.mode", "must be progressive or preview")
        numbers = command.data.get("ring_group_numbers", [])
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            raise CommandRejected("data.ring_group_numbers", "must be a list of E.164 numbers")
    if event.type == WEBHOOK_POST and not isinstance(command.data.get("url"), str):
        raise CommandRejected("data.url", "must be a string")
    deadline = command.data.get("send_before")
    if deadline is not None and not _is_time(deadline):
        raise CommandRejected("data.send_before", "must be an RFC 3339 time")
    return command


def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_time(value)
    except ValueError:
        return False
    return True


def decode_command(raw: bytes | str) -> CloudEvent:
    """Parse one structured-mode CloudEvent (a Kafka value or a .jsonl line)."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise CommandRejected("event", f"not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise CommandRejected("event", "must be a JSON object")
    for key in ("id", "source", "type", "time"):
        if not isinstance(document.get(key), str):
            raise CommandRejected(key, "is required")
    data = document.get("data")
    if not isinstance(data, dict):
        raise CommandRejected("data", "must be an object")
    try:
        moment = parse_time(document["time"])
    except ValueError as error:
        raise CommandRejected("time", str(error)) from None
    subject = document.get("subject")
    try:
        version = int(document.get("dataversion", 1))
    except (TypeError, ValueError):
        raise CommandRejected("dataversion", "must be an integer") from None
    return CloudEvent(
        id=document["id"],
        source=document["source"],
        type=document["type"],
        time=moment,
        subject=subject if isinstance(subject, str) else None,
        data=data,
        dataversion=version,
    )
