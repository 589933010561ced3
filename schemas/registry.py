"""Every event type on the wire: its current data version, its topic and its direction.

Topics are named without the configurable `dripstream.` prefix (CONTRACT.md §5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from schemas.envelope import ENGINE_SOURCE

Direction = Literal["input", "output", "command", "outcome", "control"]

DLQ_TOPIC = "dlq"
# CONTRACT.md §5, without the prefix. The inputs are keyed by contact id and co-partitioned:
# they must all have the same partition count.
INPUT_TOPICS = ("contacts", "calls", "messages", "appointments", "intake", "commands")
OUTPUT_TOPICS = ("decisions", "effects", "outcomes", DLQ_TOPIC)


@dataclass(frozen=True, slots=True)
class EventTypeInfo:
    """`version` is the current version of the type's data; older ones are upcast to it."""

    type: str
    version: int
    topic: str
    direction: Direction


def _table() -> dict[str, EventTypeInfo]:
    rows: list[tuple[str, int, str, Direction]] = [
        # Inputs (§1.1). The engine also writes the contact.* ones back to `contacts`.
        ("contact.created", 1, "contacts", "input"),
        ("contact.updated", 1, "contacts", "input"),
        ("contact.tag_added", 1, "contacts", "input"),
        ("contact.tag_removed", 1, "contacts", "input"),
        ("contact.disposition_changed", 1, "contacts", "input"),
        ("contact.dnc_changed", 1, "contacts", "input"),
        ("contact.opted_out", 2, "contacts", "input"),
        ("contact.opted_in", 1, "contacts", "input"),
        ("call.completed", 1, "calls", "input"),
        ("message.received", 1, "messages", "input"),
        ("appointment.changed", 1, "appointments", "input"),
        ("lead.email_received", 1, "intake", "input"),
        ("enrollment.requested", 1, "commands", "input"),
        ("enrollment.removal_requested", 1, "commands", "input"),
        # Commands about the definitions.
        ("sequence.applied", 1, "commands", "command"),
        ("sequence.delete_requested", 1, "commands", "command"),
        ("sequence.copy_requested", 1, "commands", "command"),
        # Decisions (§1.2 and DEVELOPERS.md's additions).
        ("enrollment.enrolled", 1, "decisions", "output"),
        ("enrollment.rejected", 1, "decisions", "output"),
        ("enrollment.disenrolled", 1, "decisions", "output"),
        ("enrollment.completed", 1, "decisions", "output"),
        ("step.scheduled", 1, "decisions", "output"),
        ("step.deferred", 1, "decisions", "output"),
        ("step.executed", 1, "decisions", "output"),
        ("step.skipped", 1, "decisions", "output"),
        ("sequence.defined", 1, "decisions", "output"),
        ("sequence.deleted", 1, "decisions", "output"),
        ("sequence.command_rejected", 1, "decisions", "output"),
        ("lead.rejected", 1, "decisions", "output"),
        # Effect commands.
        ("sms.send", 1, "effects", "output"),
        ("mms.send", 1, "effects", "output"),
        ("email.send", 1, "effects", "output"),
        ("call.dial", 1, "effects", "output"),
        ("voicemail.drop", 1, "effects", "output"),
        ("webhook.post", 1, "effects", "output"),
        ("notify.sms", 1, "effects", "output"),
        ("notify.email", 1, "effects", "output"),
        # Contact changes only the engine makes.
        ("power_dialer.added", 1, "contacts", "output"),
        ("power_dialer.removed", 1, "contacts", "output"),
        # Stream control: written to every input topic partition by `dripstream produce`.
        ("stream.watermark", 1, "contacts", "control"),
        # What providers answered (written by effects/).
        ("effect.sent", 1, "outcomes", "outcome"),
        ("effect.failed", 1, "outcomes", "outcome"),
        ("effect.unknown", 1, "outcomes", "outcome"),
        ("effect.status_changed", 1, "outcomes", "outcome"),
        ("dialer.key_pressed", 1, "outcomes", "outcome"),
    ]
    return {name: EventTypeInfo(name, version, topic, way) for name, version, topic, way in rows}


EVENT_TYPES: Mapping[str, EventTypeInfo] = MappingProxyType(_table())
# Looked up for every output: a plain dict, not the read-only mapping.
_TOPICS = {kind: info.topic for kind, info in EVENT_TYPES.items()}


def topic_for(event_type: str) -> str:
    """The topic (without prefix) an event of this type is written to (CONTRACT.md §5). A
    type this table lacks is a bug between its writer and the table: a KeyError, not a
    guess at a topic."""
    return _TOPICS[event_type]


def input_refusal(event_type: str, source: str) -> str | None:
    """Why an event of this type and source is no input the engine decides on, or None.

    Decisions, effect commands and outcomes are what the engine and the effect processors
    write: taken as input, a forged `sms.send` would be carried out. The engine's own contact
    changes (source `dripstream`) come back on `contacts` and are passed over, not refused.
    """
    info = EVENT_TYPES.get(event_type)
    if info is None or info.direction in ("input", "command", "control"):
        return None
    if source == ENGINE_SOURCE and info.topic in INPUT_TOPICS:
        return None
    writer = "the effect processors" if info.direction == "outcome" else "the engine"
    return f"{event_type!r} is an output of {writer}, not an input"


def source_refusal(event_type: str, source: str) -> str | None:
    """Why an input's `source` cannot be taken, or None. `dripstream` marks the engine's own
    contact changes coming back on `contacts`, which the engine passes over: any other input
    under it would be passed over too, without a word, so it is refused instead."""
    if source != ENGINE_SOURCE:
        return None
    info = EVENT_TYPES.get(event_type)
    if info is None or info.topic == "contacts":
        return None
    return (
        f"{ENGINE_SOURCE!r} is the engine's own source, for the contact changes it writes back;"
        f" a {event_type} from upstream needs a source of its own"
    )


# Inputs the worker re-keys itself, wherever they landed: a lead goes to its contact's
# partition.
_KEYED_ANYHOW = frozenset({"lead.email_received"})


def keyed_by_subject(event_type: str) -> bool:
    """Whether an input of this type must be keyed by its subject (the contact) and so sit on
    that key's partition. Sequence commands reach every worker through the store; a lead is
    re-keyed by the worker, wherever it landed."""
    info = EVENT_TYPES.get(event_type)
    return info is not None and info.direction == "input" and event_type not in _KEYED_ANYHOW


def placement_refusal(
    event_type: str, subject: str | None, topic: str, key: bytes | None
) -> tuple[str, str] | None:
    """Why an input read from `topic` (no prefix) with record `key` does not belong there,
    as (field, reason), or None (CONTRACT.md §5: inputs on their type's topic, keyed by
    their subject, the contact id). Decided elsewhere, it would split a contact's facts
    over partitions that different workers decide, in no reliable order."""
    info = EVENT_TYPES.get(event_type)
    if info is None or info.direction == "control":
        return None  # a watermark goes to every partition of every input topic
    if info.topic != topic:
        return "type", f"{event_type!r} belongs on the {info.topic!r} topic, not {topic!r}"
    if subject is not None and keyed_by_subject(event_type) and key != subject.encode():
        shown = "no key" if key is None else f"the key {key.decode('utf-8', 'replace')!r}"
        return "key", (
            f"must be the subject {subject!r}, so that a contact's records share a"
            f" partition; the record has {shown}"
        )
    return None
