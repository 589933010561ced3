"""What a worker makes of one input record: its CloudEvent, or why it is refused (to the
dead letters, with its bytes). Beside the schema's checks, the Kafka binding's: a record in
binary mode, a tombstone, a key or partition that is not its contact's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from schemas.envelope import CloudEvent
from schemas.registry import keyed_by_subject, placement_refusal
from schemas.validation import EventRejected, decode_event, without_bom

BINARY_MODE = (
    "is in CloudEvents binary mode (ce_* headers), which is not read: send it in structured"
    " mode, the whole CloudEvent as the JSON value"
)
TOMBSTONE = "has no value (a tombstone): an input record holds one CloudEvent as its value"


class ReadRecord(NamedTuple):
    """An input record read: its event, or the (field, reason) it is refused for."""

    event: CloudEvent | None
    rejection: tuple[str, str] | None
    # What is kept of it: the value without a leading byte order mark when it is stored
    # (a rebuild parses what is stored), the bytes as they came when dead-lettered.
    value: bytes


def read_record(
    record: Any,
    topic: str,
    partition: int,
    partition_count: int,
    partition_of: Callable[[str], int],
) -> ReadRecord:
    """The input `record` of partition `partition` of the input topic `topic` (its name in
    the registry, without the deployment's prefix), of `partition_count` partitions."""
    raw: bytes = record.value or b""
    # A leading byte order mark is passed over, as `replay` and `produce` do.
    body = without_bom(raw, 1)
    if record.headers and _binary_mode(record.headers):
        # Even when its value happens to parse as an event: the binding says the value is
        # the data, and the attributes in the headers would be ignored.
        return ReadRecord(None, ("event", BINARY_MODE), raw)
    try:
        event = decode_event(body, as_input=True)
    except EventRejected as rejected:
        if record.value is None:
            return ReadRecord(None, ("event", TOMBSTONE), raw)
        return ReadRecord(None, (rejected.field, rejected.reason), raw)
    misplaced = placement_refusal(
        event.type, event.subject, topic, record.key
    ) or _partition_refusal(event, partition, partition_count, partition_of)
    if misplaced is not None:
        return ReadRecord(None, misplaced, raw)
    return ReadRecord(event, None, body)


def _binary_mode(headers: Any) -> bool:
    """Whether a record is in Kafka binary mode, its value the bare `data`: by the binding,
    a record with CloudEvent attributes in `ce_*` headers and no structured content type."""
    # Every record our producers write has a header (content-type): the usual one has no
    # `ce_specversion`, and is passed by the first test without building anything.
    if not any(name == "ce_specversion" for name, _ in headers or ()):
        return False
    # Media types are case-insensitive (RFC 6838), and some clients capitalise the name.
    return not any(
        name.lower() == "content-type"
        and bytes(value or b"").lower().startswith(b"application/cloudevents")
        for name, value in headers
    )


def _partition_refusal(
    event: CloudEvent, partition: int, partition_count: int, partition_of: Callable[[str], int]
) -> tuple[str, str] | None:
    """Why a record keyed by its contact is not on that key's partition, or None. A
    producer with another partitioner (librdkafka's default, crc32) splits a contact over
    partition groups that decide apart: a request by tag would miss it, a call would not
    find its enrollment. Refused rather than decided wrong without a word."""
    if event.subject is None or not keyed_by_subject(event.type):
        return None
    belongs = partition_of(event.subject)
    if belongs == partition:
        return None
    return "partition", (
        f"the key {event.subject!r} belongs on partition {belongs} of"
        f" {partition_count}, not {partition}: publish with Kafka's default"
        " partitioner (murmur2 of the key, as the Java client and aiokafka do;"
        " librdkafka clients: partitioner=murmur2_random)"
    )
