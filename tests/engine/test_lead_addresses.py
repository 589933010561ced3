"""A lead e-mail about a person dripstream already knows: it is that contact, and the DNC or
opt-out on its number or address binds it (a form must not undo a STOP)."""

from __future__ import annotations

from typing import Any

import orjson

from aggregates.engine import Engine
from schemas.envelope import CloudEvent, parse_time
from schemas.validation import decode_event
from tests.engine.helpers import Outcome, decide, definitions, event, sequence

T0 = "2027-07-06T14:00:00Z"  # a Tuesday, 10:00 in New York
INTAKE = "leads-1@intake.example.com"
SEQ = sequence(
    intake_address=INTAKE,
    triggers=[],
    steps=[
        {"id": "s1", "type": "send_sms", "text": "Hi [FirstName]"},
        {"id": "s2", "type": "email_contact", "subject": "Hello", "body": "."},
    ],
)


def crm(kind: str, contact: str, **data: Any) -> dict[str, Any]:
    return event(kind, T0, contact_id=contact, **data)


def lead(body: str) -> dict[str, Any]:
    return event("lead.email_received", T0, subject="intake", to=INTAKE, body=body)


def decide_(*inputs: dict[str, Any]) -> Outcome:
    return decide(definitions(SEQ), list(inputs))


def test_a_lead_with_a_known_email_is_that_contact() -> None:
    out = decide_(
        crm("contact.created", "c-1", first_name="Jo", email="Jo@Example.com", owner_id="u-7"),
        lead("First Name: Jo\nLast Name: Park\nEmail: jo@example.com\nPhone: 212-555-0199"),
    )
    assert out.of("contact.created") == []  # the engine made no contact of its own
    assert out.one("contact.updated")["data"]["contact_id"] == "c-1"
    assert out.one("enrollment.enrolled")["data"]["contact_id"] == "c-1"
    assert out.one("sms.send")["data"]["to"] == "+12125550199"


def test_a_lead_without_an_email_is_the_contact_with_its_phone() -> None:
    out = decide_(
        crm("contact.created", "c-1", first_name="Jo", phone="+12125550199"),
        crm("contact.dnc_changed", "c-1", dnc=True),
        lead("First Name: Jo\nPhone: (212) 555-0199"),
    )
    assert out.one("enrollment.enrolled")["data"]["contact_id"] == "c-1"
    assert out.of("sms.send") == []
    assert {e["data"]["reason"] for e in out.of("step.skipped")} == {"dnc"}


def test_a_new_lead_on_a_number_that_said_stop_is_opted_out_too() -> None:
    # given a number that opted out of SMS, known as another contact with its own address
    out = decide_(
        crm("contact.created", "c-1", first_name="Jo", phone="+12125550199", email="a@b.example"),
        crm("contact.opted_out", "c-1", channel="sms"),
        # when a lead with a new e-mail (a new contact) brings that number back
        lead("First Name: Jo\nEmail: jo@example.com\nPhone: 212-555-0199"),
    )
    # then the lead is opted out as the engine's own change, before it is enrolled
    created = out.one("contact.created")["data"]["contact_id"]
    opted = out.one("contact.opted_out", contact_id=created)
    assert (opted["source"], opted["data"]["channel"]) == ("dripstream", "sms")
    assert out.one("enrollment.rejected")["data"]["reason"] == "opted_out"
    assert out.of("sms.send") == []


def test_a_lead_on_a_dnc_number_is_put_on_dnc_and_not_called_or_texted() -> None:
    out = decide_(
        crm("contact.created", "c-1", first_name="Jo", phone="+12125550199", email="a@b.example"),
        crm("contact.dnc_changed", "c-1", dnc=True),
        lead("First Name: Ann\nEmail: ann@example.com\nPhone: 212-555-0199"),
    )
    created = out.one("contact.created")["data"]["contact_id"]
    assert out.one("contact.dnc_changed", contact_id=created)["data"]["dnc"] is True
    assert out.of("sms.send") == []
    assert out.of("email.send") == []


def test_a_number_shared_with_a_reachable_contact_binds_nothing() -> None:
    out = decide_(
        crm("contact.created", "c-1", first_name="Jo", phone="+12125550199"),
        lead("First Name: Ann\nEmail: ann@example.com\nPhone: 212-555-0199"),
    )
    assert out.of("contact.dnc_changed") == []
    assert out.of("contact.opted_out") == []
    assert out.one("sms.send")["data"]["to"] == "+12125550199"


def test_a_lead_with_an_address_is_the_contact_with_its_number_and_none() -> None:
    # the same person mailed first with a phone only, then with an e-mail too: one contact
    out = decide_(
        lead("First Name: Jo\nPhone: 212-555-0199"),
        lead("First Name: Jo\nEmail: jo@example.com\nPhone: 212-555-0199"),
    )
    created = out.one("contact.created")["data"]["contact_id"]
    assert out.one("contact.updated")["data"]["contact_id"] == created
    assert out.one("contact.updated")["data"]["email"] == "jo@example.com"
    assert {e["data"]["contact_id"] for e in out.of("enrollment.enrolled")} == {created}


def test_an_email_opt_out_of_a_contact_sharing_the_address_binds_the_lead() -> None:
    # given two contacts on one address (spelt two ways), one of them opted out of e-mail
    out = decide_(
        crm("contact.created", "c-1", first_name="Jo", email="jo@example.com"),
        crm("contact.created", "c-2", first_name="Jo", email="JO@example.com"),
        crm("contact.opted_out", "c-2", channel="email"),
        # when a lead with that address comes in
        lead("First Name: Jo\nEmail: jo@example.com"),
    )
    # then the lead (c-1) is opted out of e-mail too, before it is enrolled
    assert out.one("contact.opted_out", contact_id="c-1")["data"]["channel"] == "email"
    assert out.one("enrollment.rejected")["data"]["reason"] == "opted_out"


def test_a_lead_joins_its_intake_sequence_once_though_it_listens_to_contact_created() -> None:
    seq = {**SEQ, "triggers": [{"type": "contact_created"}]}
    out = decide(definitions(seq), [lead("First Name: Jo\nEmail: jo@example.com")])
    assert out.one("enrollment.enrolled")["data"]["via"] == "intake"
    assert out.of("enrollment.rejected") == []


def test_a_copy_does_not_take_the_intake_address() -> None:
    copy = event(
        "sequence.copy_requested", T0, subject="sequences", sequence_id="seq", new_id="seq-b"
    )
    out = decide(definitions(SEQ), [copy, lead("First Name: Jo\nEmail: jo@example.com")])
    assert out.one("sequence.defined", sequence_id="seq-b")["data"]["intake_address"] is None
    assert out.one("enrollment.enrolled")["data"]["sequence_id"] == "seq"


# --- on Kafka: a lead is matched within the partition it is decided in -------------------


def _on_partitions(home: str, crm_partition: int, lead_partition: int) -> list[CloudEvent]:
    """The CRM contact c-1 (on DNC) in `crm_partition`; a lead with c-1's e-mail and
    number, decided in `lead_partition`, the partition its own id falls in."""

    def partition_of(contact_id: str) -> int:
        return crm_partition if contact_id == "c-1" else lead_partition

    engine = Engine(partition_of=partition_of)
    engine.define(definitions(SEQ), parse_time(T0), "defs")
    given = crm("contact.created", "c-1", first_name="Jo", email=home, phone="+12125550199")
    outputs = engine.handle(decode_event(orjson.dumps(given)), partition=crm_partition)
    dnc = crm("contact.dnc_changed", "c-1", dnc=True)
    outputs += engine.handle(decode_event(orjson.dumps(dnc)), partition=crm_partition)
    mail = lead(f"First Name: Jo\nEmail: {home}\nPhone: 212-555-0199")
    return outputs + engine.handle(decode_event(orjson.dumps(mail)), partition=lead_partition)


def test_on_kafka_a_lead_is_its_known_contact_when_both_share_a_partition() -> None:
    outputs = _on_partitions("jo@example.com", crm_partition=3, lead_partition=3)
    [enrolled] = [e for e in outputs if e.type == "enrollment.enrolled"]
    assert enrolled.data["contact_id"] == "c-1"


def test_on_kafka_a_lead_whose_known_contact_is_elsewhere_is_a_contact_of_its_own() -> None:
    # One worker may hold both partitions now and not after a rebalance, when each partition's
    # stored inputs are decided again: the answer must not depend on who holds what.
    outputs = _on_partitions("jo@example.com", crm_partition=1, lead_partition=3)
    [enrolled] = [e for e in outputs if e.type == "enrollment.enrolled"]
    assert enrolled.data["contact_id"].startswith("lead-")
    assert not any(e.type == "contact.dnc_changed" and e.source == "dripstream" for e in outputs)
    assert not any(e.subject == "c-1" and e.source == "dripstream" for e in outputs)
