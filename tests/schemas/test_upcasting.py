"""Old payloads keep decoding: contact.opted_out v1 comes out as v2."""

from __future__ import annotations

import pytest

from schemas.upcasting import upcast, upcaster
from schemas.validation import EventRejected, decode_event
from tests.schemas.samples import raw_event


def test_a_v1_opt_out_without_channel_decodes_as_v2_for_all_channels() -> None:
    raw = raw_event("contact.opted_out", {"contact_id": "c-1"}, dataversion="1")

    event = decode_event(raw)

    assert event.dataversion == 2
    assert event.data == {"contact_id": "c-1", "channel": "all"}


def test_an_opt_out_without_dataversion_is_read_as_v1() -> None:
    event = decode_event(raw_event("contact.opted_out", {"contact_id": "c-1"}))

    assert (event.dataversion, event.data["channel"]) == (2, "all")


def test_a_v1_opt_out_with_a_channel_keeps_it() -> None:
    raw = raw_event("contact.opted_out", {"contact_id": "c-1", "channel": "email"}, dataversion="1")

    event = decode_event(raw)

    assert (event.dataversion, event.data["channel"]) == (2, "email")


def test_a_v2_opt_out_must_name_its_channel() -> None:
    raw = raw_event("contact.opted_out", {"contact_id": "c-1"}, dataversion="2")

    with pytest.raises(EventRejected, match=r"^data\.channel: is required$"):
        decode_event(raw)


def test_the_upcast_event_encodes_as_v2() -> None:
    event = decode_event(raw_event("contact.opted_out", {"contact_id": "c-1"}))

    again = decode_event(event.encode())

    assert b'"dataversion":"2"' in event.encode()
    assert again == event


def test_an_upcaster_leaves_its_argument_alone() -> None:
    old = {"contact_id": "c-1"}

    new = upcast("contact.opted_out", old, 1)

    assert old == {"contact_id": "c-1"}
    assert new == {"contact_id": "c-1", "channel": "all"}


def test_a_second_upcaster_for_the_same_step_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        upcaster("contact.opted_out", 1)(lambda data: data)
