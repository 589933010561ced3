"""Taking contacts out of a sequence by hand (`enrollment.removal_requested`): the seed's
"Contacts: manage the contacts enrolled in the sequence"."""

from __future__ import annotations

from typing import Any

from tests.engine.helpers import decide, definitions, event, sequence

T0 = "2027-07-06T14:00:00Z"  # a Tuesday, 10:00 in New York
T1 = "2027-07-06T15:00:00Z"
UNTIL = "2027-07-09T00:00:00Z"
# One SMS a day after enrollment: the contact is still enrolled when the request comes.
A_DAY_LATER = [
    {
        "id": "s1",
        "type": "send_sms",
        "text": "x",
        "delay": {"kind": "default", "amount": 1, "unit": "days"},
    }
]


def created(contact: str, tag: str = "hot") -> dict[str, Any]:
    return event("contact.created", T0, contact_id=contact, phone="+12125550101", tags=[tag])


def removal(time: str = T1, subject: str = "sequence:seq", **targets: Any) -> dict[str, Any]:
    return event(
        "enrollment.removal_requested", time, subject=subject, sequence_id="seq", **targets
    )


SEQ = definitions(sequence(steps=A_DAY_LATER, triggers=[{"type": "contact_created"}]))


def test_a_contact_removed_by_hand_is_disenrolled_manual_and_gets_no_more_steps() -> None:
    # given two contacts enrolled, each with a text due a day later
    # when one of them is taken out by id an hour later
    out = decide(
        SEQ, [created("c-1"), created("c-2"), removal(subject="c-1", contact_ids=["c-1"])], UNTIL
    )
    # then that one is disenrolled, reason manual, at the request's time
    gone = out.one("enrollment.disenrolled", contact_id="c-1")
    assert (gone["data"]["reason"], gone["time"]) == ("manual", T1)
    # and only the other one gets its text
    assert [e["data"]["contact_id"] for e in out.of("sms.send")] == ["c-2"]


def test_removal_by_tag_takes_out_the_enrolled_contacts_with_the_tag() -> None:
    inputs = [
        created("c-1", "hot"),
        created("c-2", "cold"),
        created("c-3", "hot"),
        removal(tag="hot"),
    ]
    out = decide(SEQ, inputs, UNTIL)
    removed = sorted(e["data"]["contact_id"] for e in out.of("enrollment.disenrolled"))
    assert removed == ["c-1", "c-3"]
    assert out.one("enrollment.completed")["data"]["contact_id"] == "c-2"


def test_a_contact_not_enrolled_changes_nothing() -> None:
    out = decide(SEQ, [created("c-1"), removal(contact_ids=["c-9"])], UNTIL)
    assert out.of("enrollment.disenrolled") == []
    assert out.of("sequence.command_rejected") == []
    assert out.one("enrollment.completed")["data"]["contact_id"] == "c-1"


def test_a_removal_from_a_sequence_the_engine_does_not_know_is_refused_once() -> None:
    unknown = {"subject": "sequence:nope", "sequence_id": "nope", "tag": "hot"}
    copies = [
        event("enrollment.removal_requested", T1, on_partition=n, **unknown) for n in range(3)
    ]
    out = decide(SEQ, [created("c-1"), *copies], UNTIL)
    # then one refusal says so (not one per partition's copy), and c-1 goes on
    refused = out.one("sequence.command_rejected")["data"]
    assert (refused["command"], refused["reason"]) == (
        "enrollment.removal_requested",
        "unknown_sequence",
    )
    assert out.one("enrollment.completed")["data"]["contact_id"] == "c-1"


def test_a_contact_removed_by_hand_can_be_enrolled_again() -> None:
    again = event(
        "enrollment.requested",
        "2027-07-06T16:00:00Z",
        subject="c-1",
        sequence_id="seq",
        contact_ids=["c-1"],
    )
    out = decide(SEQ, [created("c-1"), removal(contact_ids=["c-1"]), again], UNTIL)
    enrolled = [e["data"]["enrollment_id"] for e in out.of("enrollment.enrolled")]
    assert enrolled == ["seq:c-1:1", "seq:c-1:2"]
    assert len(out.of("sms.send")) == 1
