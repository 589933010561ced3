"""The registry of event types agrees with the contract, the schema files and the upcasters."""

from __future__ import annotations

import pytest

from schemas import checking
from schemas.registry import DLQ_TOPIC, EVENT_TYPES, placement_refusal, topic_for
from schemas.upcasting import registered_upcasters
from schemas.validation import data_schema_path
from tests.schemas.samples import SAMPLES


def test_every_type_has_a_sample_and_every_sample_a_type() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_version_of_every_type_has_a_schema_file(event_type: str) -> None:
    info = EVENT_TYPES[event_type]

    for version in range(1, info.version + 1):
        assert checking.schema_exists(data_schema_path(event_type, version))
    assert not checking.schema_exists(data_schema_path(event_type, info.version + 1))


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_old_version_has_an_upcaster_to_the_next(event_type: str) -> None:
    upcasters = registered_upcasters()

    for version in range(1, EVENT_TYPES[event_type].version):
        assert (event_type, version) in upcasters


@pytest.mark.parametrize(
    ("event_type", "topic"),
    [
        ("contact.created", "contacts"),
        ("contact.opted_out", "contacts"),
        ("call.completed", "calls"),
        ("message.received", "messages"),
        ("appointment.changed", "appointments"),
        ("lead.email_received", "intake"),
        ("enrollment.requested", "commands"),
        ("enrollment.removal_requested", "commands"),
        ("sequence.applied", "commands"),
        ("sequence.delete_requested", "commands"),
        ("sequence.copy_requested", "commands"),
        ("enrollment.enrolled", "decisions"),
        ("step.deferred", "decisions"),
        ("sequence.defined", "decisions"),
        ("sequence.deleted", "decisions"),
        ("sequence.command_rejected", "decisions"),
        ("lead.rejected", "decisions"),
        ("sms.send", "effects"),
        ("notify.email", "effects"),
        ("power_dialer.added", "contacts"),
        ("power_dialer.removed", "contacts"),
        ("effect.sent", "outcomes"),
        ("dialer.key_pressed", "outcomes"),
    ],
)
def test_topics_follow_the_contract(event_type: str, topic: str) -> None:
    assert topic_for(event_type) == topic


def test_directions_and_the_dead_letter_topic() -> None:
    directions = {info.direction for info in EVENT_TYPES.values()}

    assert directions == {"input", "output", "command", "outcome", "control"}
    assert EVENT_TYPES["stream.watermark"].direction == "control"
    assert EVENT_TYPES["enrollment.requested"].direction == "input"
    assert EVENT_TYPES["sequence.applied"].direction == "command"
    assert EVENT_TYPES["effect.failed"].direction == "outcome"
    assert DLQ_TOPIC == "dlq"


def test_an_unknown_type_has_no_topic() -> None:
    with pytest.raises(KeyError):
        topic_for("foo.bar")


def test_an_input_belongs_on_its_types_topic_keyed_by_its_subject() -> None:
    assert placement_refusal("contact.tag_added", "c-1", "contacts", b"c-1") is None
    assert placement_refusal("power_dialer.added", "c-1", "contacts", b"c-1") is None
    # a watermark goes to every partition of every input topic, without a key
    assert placement_refusal("stream.watermark", None, "calls", None) is None
    # no subject, nothing to hold the key to (a lead e-mail may come keyed by its address)
    assert placement_refusal("lead.email_received", None, "intake", b"in@x.example") is None
    # re-keyed by the worker to its contact's partition, and definitions go by the store
    assert placement_refusal("lead.email_received", "m-1", "intake", b"in@x.example") is None
    assert placement_refusal("sequence.applied", "sequence:w", "commands", b"sequences") is None
    assert placement_refusal("message.received", "c-1", "contacts", b"c-1") == (
        "type",
        "'message.received' belongs on the 'messages' topic, not 'contacts'",
    )
    field, reason = placement_refusal("call.completed", "c-1", "calls", b"\xff") or ("", "")
    assert field == "key"
    assert reason.endswith("the record has the key '\ufffd'")
