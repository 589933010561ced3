"""Dead letters on the `dlq` topic say why as the `replay --dlq` file does."""

from __future__ import annotations

import orjson
import pytest

from schemas.registry import DLQ_TOPIC
from schemas.validation import EventRejected, decode_event
from streams.embedded import RejectedLine
from streams.ordering import Pending
from streams.routing import dead_letter

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
