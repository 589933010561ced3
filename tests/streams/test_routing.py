"""Dead letters on the `dlq` topic say why as the `replay --dlq` file does."""

from __future__ import annotations

import orjson
import pytest
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from aggregates.targets import ON_PARTITION
from schemas.registry import DLQ_TOPIC
from schemas.validation import EventRejected, decode_event
from streams.embedded import RejectedLine, decode_input
from streams.ordering import Pending
from streams.relay import record_key
from streams.routing import dead_letter, fan_out, needs_fan_out

MISSING_CONTACT = (
    b'{"specversion":"1.0","id":"bad-1","source":"crm","type":"contact.tag_added",'
    b'"time":"2028-03-02T22:41:30Z","subject":"c-200","data":{"tag":"hot"}}'
)


def _rejected(raw: bytes) -> EventRejected:
    with pytest.raises(EventRejected) as caught:
        decode_event(raw)
    return caught.value


def test_a_dead_letter_names_the_field_apart_from_the_bare_reason() -> None:
    # given a record the worker rejects
    rejected = _rejected(MISSING_CONTACT)
    item = Pending(
        "p.contacts", 3, 17, b"c-200", MISSING_CONTACT, None, (rejected.field, rejected.reason)
    )
    # when it becomes a dead letter
    row = dead_letter(item)
    letter = orjson.loads(row.value)
    # then the reason is the bare one, the field has its own key, the record is whole
    assert row.topic == DLQ_TOPIC
    assert row.key == "c-200"
    assert letter["field"] == "data.contact_id"
    assert letter["reason"] == "is required"
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("p.contacts", 3, 17)
    assert bytes.fromhex(letter["value_hex"]) == MISSING_CONTACT


@pytest.mark.parametrize("key", [b"\xff\xfe\x00k", b"c-200", "José".encode(), b"", None])
def test_a_dead_letter_is_keyed_by_the_refused_records_exact_key_bytes(key: bytes | None) -> None:
    # given a record under a key that is not UTF-8 and holds a NUL (the outbox's text column
    # holds it with U+FFFD in place), or a plain one
    rejected = _rejected(MISSING_CONTACT)
    row = dead_letter(
        Pending("p.contacts", 0, 19, key, MISSING_CONTACT, None, (rejected.field, rejected.reason))
    )
    # when the relay publishes its outbox row
    published = record_key(row)
    # then under the record's own key, so it lands where the record's partitioner put it
    assert published == key
    assert record_key(row._replace(topic="decisions", key="c-1")) == b"c-1"


def test_the_topic_and_the_replay_file_give_the_same_field_and_reason() -> None:
    rejected = _rejected(MISSING_CONTACT)
    on_topic = orjson.loads(
        dead_letter(
            Pending(
                "p.contacts", 0, 0, None, MISSING_CONTACT, None, (rejected.field, rejected.reason)
            )
        ).value
    )
    in_file = orjson.loads(
        RejectedLine(1, MISSING_CONTACT, rejected.field, rejected.reason).dead_letter()
    )
    assert (on_topic["field"], on_topic["reason"]) == (in_file["field"], in_file["reason"])


def test_a_request_by_line_goes_to_every_partition_marked_with_it() -> None:
    # given a request by line, and three partitions
    request = decode_event(
        b'{"specversion":"1.0","id":"g-3","source":"admin","type":"enrollment.requested",'
        b'"time":"2027-07-06T14:40:00Z","subject":"campaign-2",'
        b'"data":{"sequence_id":"campaign-2","line_id":"line-2"}}'
    )
    assert needs_fan_out(request)
    # when it is fanned out
    rows = fan_out(request, 3, partition_of)
    copies = [decode_event(row.value) for row in rows]
    # then each partition gets one copy, keyed to land there, which is not fanned out again
    assert [partition_of(row.key or "") for row in rows] == [0, 1, 2]
    assert [copy.data[ON_PARTITION] for copy in copies] == [0, 1, 2]
    assert all(copy.data["line_id"] == "line-2" for copy in copies)
    assert not any(needs_fan_out(copy) for copy in copies)
    assert len({row.event_id for row in rows}) == 3


def partition_of(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % 3


def test_a_line_cut_short_gets_the_same_reason_in_a_file_as_on_the_topic() -> None:
    cut = MISSING_CONTACT[:60]
    in_file = decode_input(cut + b"\n", 2)  # a file's line keeps its ending
    on_topic = _rejected(cut)  # a Kafka record holds no line ending
    assert isinstance(in_file, RejectedLine)
    assert (in_file.field, in_file.reason) == (on_topic.field, on_topic.reason)
    assert in_file.raw == cut + b"\n"  # the dead letter keeps the bytes as read
