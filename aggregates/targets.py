"""Who an `enrollment.requested` names: contact ids, and tags or lines to look up.

Read by the engine, which knows its contacts. A Kafka worker sends such a request to every
partition first (streams/routing.py), and each partition's engine picks its own contacts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.envelope import CloudEvent

# A worker sends a request naming several contacts, a tag or a line to every input
# partition, each copy marked with its partition: the engine reading the copy decides it
# for that partition's contacts only, in that partition's own order of events.
ON_PARTITION = "on_partition"
# The requests a worker copies so (when they name contacts by tag, line or group), each
# decided per partition.
TARGETED_COMMANDS = frozenset({"enrollment.requested", "enrollment.removal_requested"})


def input_identity(event: CloudEvent) -> str:
    """What tells an input from every other (CloudEvent.identity), a worker's copies apart:
    its copy of request `r1` for partition 0 has the id `r1/p0`, and a producer's own event
    `r1/p0` must not be refused for reusing the copy's id (nor the copy for reusing its)."""
    copy = event.type in TARGETED_COMMANDS and ON_PARTITION in event.data
    return event.copy_identity if copy else event.identity


@dataclass(frozen=True, slots=True)
class Targets:
    contact_ids: tuple[str, ...]  # named directly, in request order
    selectors: tuple[tuple[str | None, str | None], ...]  # (tag, line) pairs to look up


def targets_of(data: Mapping[str, Any]) -> Targets:
    """contact_ids[], tag, line_id and contact_group[] (items: a contact id, or an object
    with one of contact_id / tag / line_id). A string is always a contact id: a contact id
    may hold a colon, so no `tag:` prefix can mark a tag."""
    ids = [str(c) for c in data.get("contact_ids") or ()]
    selectors: list[tuple[str | None, str | None]] = []
    if data.get("tag"):
        selectors.append((str(data["tag"]), None))
    if data.get("line_id"):
        selectors.append((None, str(data["line_id"])))
    for item in data.get("contact_group") or ():
        if isinstance(item, str):
            ids.append(item)
        elif isinstance(item, Mapping):
            if item.get("contact_id"):
                ids.append(str(item["contact_id"]))
            elif item.get("tag"):
                selectors.append((str(item["tag"]), None))
            elif item.get("line_id"):
                selectors.append((None, str(item["line_id"])))
    return Targets(tuple(dict.fromkeys(ids)), tuple(selectors))


def request_subject(sequence_id: str, data: Mapping[str, Any]) -> str:
    """The subject (and so the Kafka key) of a request naming contacts: the contact's id
    when it names one contact by id and nothing else, so it is decided in that contact's
    partition as it lands; else `sequence:<id>`, and the worker copies it to every
    partition (streams/routing.py `needs_fan_out` is the other side of this rule). Not an
    empty id: the data's check then names `contact_ids[0]`, not the envelope's subject."""
    ids = data.get("contact_ids")
    others = [key for key in data if key not in ("contact_ids", "sequence_id")]
    if isinstance(ids, list) and len(ids) == 1 and not others and ids[0]:
        return str(ids[0])
    return f"sequence:{sequence_id}"
