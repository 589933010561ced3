"""Manual enrollment and lead intake by e-mail (CONTRACT.md §1.1, the seed's Step 3 and 4)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay

INTAKE = "leads-7f3kq@intake.example.com"


@pytest.fixture(scope="module")
def manual(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("manual_enrollment")


@pytest.fixture(scope="module")
def intake(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("lead_intake")


@pytest.mark.parametrize(
    ("time", "contacts"),
    [
        ("2027-07-06T14:00:00Z", ["c-1"]),
        ("2027-07-06T14:10:00Z", ["c-2"]),
        ("2027-07-06T14:20:00Z", ["c-4", "c-5"]),
        ("2027-07-06T14:30:00Z", ["c-6", "c-8"]),
    ],
)
def test_each_way_of_choosing_contacts(manual: Replay, time: str, contacts: list[str]) -> None:
    enrolled = manual.of("enrollment.enrolled", sequence_id="campaign")
    assert sorted(e["data"]["contact_id"] for e in enrolled if e["time"] == time) == contacts
    assert {e["data"]["via"] for e in enrolled} == {"manual"}


def test_a_group_of_line_and_id_in_another_sequence(manual: Replay) -> None:
    enrolled = manual.of("enrollment.enrolled", sequence_id="campaign-2")
    assert sorted(e["data"]["contact_id"] for e in enrolled) == ["c-4", "c-5", "c-7"]
    assert {(e["data"]["via"], e["time"]) for e in enrolled} == {("manual", "2027-07-06T14:40:00Z")}
    sent = manual.of("sms.send", sequence_id="campaign-2")
    assert {e["data"]["from_line"] for e in sent} == {"line-2"}
    assert len(sent) == 3


def test_a_contact_that_lost_its_tag_is_not_enrolled(manual: Replay) -> None:
    manual.none("enrollment.enrolled", contact_id="c-3")
    manual.none("enrollment.rejected", sequence_id="campaign")
    manual.none("enrollment.rejected", sequence_id="campaign-2")
    assert len(manual.of("sms.send", sequence_id="campaign")) == 6


def test_a_manual_request_is_rejected_like_any_enrollment(manual: Replay) -> None:
    assert sorted(manual.contacts("enrollment.enrolled", sequence_id="campaign-long")) == [
        "c-1",
        "c-2",
    ]
    rejected = [
        (e["data"]["sequence_id"], e["data"]["contact_id"], e["data"]["reason"], e["time"])
        for e in manual.of("enrollment.rejected")
    ]
    assert rejected == [
        ("campaign-long", "c-2", "already_enrolled", "2027-07-06T14:50:00Z"),
        ("campaign-broken", "c-1", "sequence_invalid", "2027-07-06T14:55:00Z"),
    ]
    manual.none("sms.send", sequence_id="campaign-broken")


def test_a_lead_email_creates_and_enrolls_a_contact(intake: Replay) -> None:
    created = intake.one("contact.created", phone="+12125550199")
    data = created["data"]
    assert (created["source"], created["time"]) == ("dripstream", "2027-07-06T14:00:00Z")
    assert (data["first_name"], data["last_name"], data["email"]) == (
        "Jo",
        "Park",
        "jo@example.com",
    )
    contact = data["contact_id"]
    enrolled = intake.one("enrollment.enrolled", contact_id=contact)
    assert (enrolled["data"]["sequence_id"], enrolled["data"]["via"], enrolled["time"]) == (
        "web-leads",
        "intake",
        "2027-07-06T14:00:00Z",
    )
    sms = intake.one("sms.send", contact_id=contact)
    assert (sms["data"]["to"], sms["data"]["body"]) == (
        "+12125550199",
        "Hi Jo, thanks for reaching out! Reply STOP to opt out.",
    )
    mail = intake.one("email.send", contact_id=contact)
    assert (mail["data"]["to"], mail["data"]["subject"]) == ("jo@example.com", "Welcome Jo Park")


def test_a_lead_with_only_an_email_is_enrolled_and_its_sms_skipped(intake: Replay) -> None:
    created = intake.one("contact.created", email="lu@example.com")
    assert created["data"].get("phone") is None
    contact = created["data"]["contact_id"]
    assert intake.one("enrollment.enrolled", contact_id=contact)["data"]["via"] == "intake"
    skipped = intake.one("step.skipped", contact_id=contact)
    assert (skipped["data"]["step_id"], skipped["data"]["reason"]) == ("hello", "missing_phone")
    mail = intake.one("email.send", contact_id=contact)
    assert (mail["data"]["to"], mail["data"]["subject"]) == ("lu@example.com", "Welcome Lu Chan")


def test_a_lead_without_phone_or_email_is_rejected_with_a_word(intake: Replay) -> None:
    rejected = intake.one("lead.rejected")
    assert (rejected["data"]["to"], rejected["time"]) == (INTAKE, "2027-07-06T14:20:00Z")
    assert rejected["data"]["reason"]
    assert len(intake.of("contact.created")) == 2
    assert len(intake.of("enrollment.enrolled")) == 2
    assert len({e["data"]["contact_id"] for e in intake.of("contact.created")}) == 2
