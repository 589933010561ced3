"""Records a worker passes on instead of deciding: requests and leads that belong to other
partitions, and dead letters."""

from __future__ import annotations

import functools
from collections.abc import Callable

from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from aggregates.intake import LeadProblem, contact_id_for_lead, parse_lead_email
from aggregates.targets import ON_PARTITION, TARGETED_COMMANDS
from schemas.dead_letters import RejectedRecord
from schemas.envelope import CloudEvent
from schemas.registry import DLQ_TOPIC
from streams.ordering import Pending
from streams.store import OutboxRow

PartitionOf = Callable[[str], int]


@functools.lru_cache(maxsize=65536)
def kafka_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2 of the key) gives `key`. Cached:
    the worker checks it for every keyed input, murmur2 is pure Python, and a contact's
    records come again and again."""
    return int((murmur2(key.encode()) & 0x7FFFFFFF) % max(1, partitions))


def fans_out(event: CloudEvent) -> bool:
    """An enrollment or removal request that goes to every partition before it is decided."""
    return event.type in TARGETED_COMMANDS and needs_fan_out(event)


def needs_fan_out(event: CloudEvent) -> bool:
    """An enrollment (or removal) request is decided where it lands when it names exactly
    the one contact it is keyed by, or is one partition's copy of a fanned-out request;
    anything else goes to every partition first."""
    data = event.data
    if ON_PARTITION in data:
        return False
    ids = [str(c) for c in data.get("contact_ids") or ()]
    selectors = bool(data.get("tag") or data.get("line_id") or data.get("contact_group"))
    return selectors or len(ids) != 1 or event.subject != ids[0]


def fan_out(event: CloudEvent, partitions: int, partition_of: PartitionOf) -> list[OutboxRow]:
    """One copy of the request per partition of `commands`, marked with it: the copy is
    decided in its partition, for that partition's contacts, with what that partition
    knows of them by then. (Choosing the contacts here, from what this worker has seen,
    missed those of partitions it had not read up to the request yet.)"""
    rows = []
    for partition in range(max(1, partitions)):
        key = _key_on(partition, partition_of)
        request = CloudEvent(
            id=f"{event.id}/p{partition}",
            source=event.source,
            type=event.type,
            time=event.time,
            subject=key,
            data={**event.data, ON_PARTITION: partition},
        )
        rows.append(
            OutboxRow(f"fan:{event.occurrence}/p{partition}", "commands", key, request.encode())
        )
    return rows


def _key_on(partition: int, partition_of: PartitionOf) -> str:
    """A record key the producer's partitioner sends to `partition` (the relay publishes by
    key): the first of `fan-out:<partition>:<n>` that lands there."""
    n = 0
    while partition_of(key := f"fan-out:{partition}:{n}") != partition:
        n += 1
    return key


def lead_destination(event: CloudEvent) -> str | None:
    """The contact a lead e-mail will create, so it can be decided in that contact's
    partition; None when the lead is refused (it is decided where it landed)."""
    data = event.data
    lead = parse_lead_email(
        subject=data.get("subject"), body=str(data["body"]), sender=data.get("from")
    )
    if isinstance(lead, LeadProblem):
        return None
    return contact_id_for_lead(lead)


def rerouted_lead(event: CloudEvent, contact_id: str) -> OutboxRow:
    routed = CloudEvent(
        id=event.id,
        source=event.source,
        type=event.type,
        time=event.time,
        subject=contact_id,
        data=event.data,
    )
    return OutboxRow(f"route:{event.occurrence}", "intake", contact_id, routed.encode())


def dead_letter(item: Pending) -> OutboxRow:
    """The rejected record as its `dlq` letter (schemas/dead_letters.py), to the outbox."""
    field, reason = item.rejection or ("event", "rejected")
    rejected = RejectedRecord(
        item.topic, item.partition, item.offset, item.key, item.raw, field, reason, item.headers
    )
    return OutboxRow(rejected.letter_id, DLQ_TOPIC, rejected.text_key, rejected.letter())
