"""Which sequences an input sets off: by trigger type and value, in definition order."""

from __future__ import annotations

from typing import Any

from aggregates.sequence import Sequence, build_account, build_sequence
from aggregates.trigger_index import TriggerIndex

ACCOUNT = build_account({"timezone": "America/New_York"})


def _sequence(sequence_id: str, *triggers: dict[str, Any], intake: str | None = None) -> Sequence:
    doc: dict[str, Any] = {
        "id": sequence_id,
        "name": sequence_id,
        "steps": [{"id": "t", "type": "add_tag", "delay": {"kind": "none"}, "tag": "x"}],
        "triggers": list(triggers),
    }
    if intake:
        doc["intake_address"] = intake
    return build_sequence(doc, ACCOUNT)


def _ids(found: list[tuple[Sequence, Any]]) -> list[str]:
    return [sequence.id for sequence, _ in found]


def test_a_tag_reaches_only_the_sequences_listening_for_it_in_definition_order() -> None:
    index = TriggerIndex(
        [
            _sequence("a", {"type": "contact_tagged", "tags": ["hot"]}),
            _sequence("b", {"type": "contact_tagged", "tags": ["cold"]}),
            _sequence("c", {"type": "contact_tagged", "tags": ["cold", "hot"]}),
        ]
    )
    assert _ids(index.listening("contact_tagged", "hot")) == ["a", "c"]
    assert _ids(index.listening("contact_tagged", "cold")) == ["b", "c"]
    assert index.listening("contact_tagged", "warm") == []


def test_a_trigger_naming_no_values_hears_every_value_in_its_place_in_the_order() -> None:
    index = TriggerIndex(
        [
            _sequence("named-first", {"type": "appointment", "statuses": ["shown"]}),
            _sequence("any", {"type": "appointment"}),
            _sequence("named-last", {"type": "appointment", "statuses": ["shown"]}),
        ]
    )
    assert _ids(index.listening("appointment", "shown")) == ["named-first", "any", "named-last"]
    assert _ids(index.listening("appointment", "canceled")) == ["any"]


def test_an_input_without_a_value_sets_off_every_trigger_of_its_type() -> None:
    index = TriggerIndex(
        [
            _sequence("a", {"type": "contact_created"}),
            _sequence("b", {"type": "contact_tagged", "tags": ["hot"]}),
            _sequence("c", {"type": "contact_created"}),
        ]
    )
    assert _ids(index.listening("contact_created", None)) == ["a", "c"]
    assert _ids(index.of_type("contact_tagged")) == ["b"]


def test_intake_addresses_name_their_sequence() -> None:
    index = TriggerIndex([_sequence("leads", intake="leads@intake.example.com"), _sequence("x")])
    found = index.intake("leads@intake.example.com")
    assert found is not None
    assert found.id == "leads"
    assert index.intake("other@intake.example.com") is None
