"""Given/when/then: an input decided once (CloudEvents identity), a contact created once, and
owner notices not lost at the end of a finite input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from aggregates.duplicates import DUPLICATE_WINDOW
from schemas.envelope import CloudEvent, format_time, parse_time
from streams.embedded import RejectedLine, replay
from tests.engine.helpers import decide, definitions, event, sequence

T0 = "2027-07-06T14:00:10Z"  # a Tuesday, 10:00:10 in New York
OWNER_STEP = [{"id": "own", "type": "change_owner", "owner_id": "u-7"}]
DAY = {"kind": "default", "amount": 1, "unit": "days"}


def created(contact: str = "c-1", time: str = T0, **profile: Any) -> dict[str, Any]:
    fields = {"first_name": "Ana", "phone": "+12125550101", **profile}
    return event("contact.created", time, contact_id=contact, **fields)


def tagged(contact: str = "c-1", time: str = T0) -> dict[str, Any]:
    return event("contact.tag_added", time, contact_id=contact, tag="hot")


def test_the_owner_of_the_last_minute_is_told_at_the_end_of_the_input() -> None:
    # given one contact given an owner by the last input of the file (default --until)
    out = decide(definitions(sequence(steps=OWNER_STEP)), [created(), tagged()])
    # then the owner's SMS is there, at the end of the input, not lost with the minute
    notice = out.one("notify.sms")
    assert notice["data"]["to"] == "u-7"
    assert notice["time"] == T0
    assert "Ana" in notice["data"]["body"]


def test_a_crowd_in_the_last_minute_still_becomes_one_summary() -> None:
    inputs = [created(f"c-{i}") for i in range(25)] + [tagged(f"c-{i}") for i in range(25)]
    out = decide(definitions(sequence(steps=OWNER_STEP)), inputs)
    (summary,) = out.of("notify.sms")
    assert summary["data"]["body"] == "You have been assigned to a group of contacts"
    assert len(summary["data"]["contact_ids"]) == 25


def test_within_until_the_notice_comes_when_its_minute_ends() -> None:
    out = decide(
        definitions(sequence(steps=OWNER_STEP)),
        [created(), tagged()],
        until="2027-07-06T14:05:00Z",
    )
    assert out.one("notify.sms")["time"] == "2027-07-06T14:01:00Z"


def test_a_late_input_that_opens_a_told_minute_again_gets_ids_of_its_own() -> None:
    # given c-1 given to u-7 at 14:00:10 (u-7 told at 14:01), then to u-8 upstream at 14:05
    moved = event("contact.updated", "2027-07-06T14:05:00Z", contact_id="c-1", owner_id="u-8")
    # when a late request (stamped 14:00:30) enrolls c-1 again into that minute
    late = event(
        "enrollment.requested", "2027-07-06T14:00:30Z", "c-1",
        sequence_id="seq", contact_ids=["c-1"],
    )  # fmt: skip
    out = decide(definitions(sequence(steps=OWNER_STEP)), [created(), tagged(), moved, late])
    # then u-7 is told of each assignment, under event and effect ids of its own
    notices = out.of("notify.sms")
    assert [n["data"]["enrollment_id"] for n in notices] == ["seq:c-1:1", "seq:c-1:2"]
    assert len({e["id"] for e in out.events}) == len(out.events)
    assert len({n["data"]["effect_id"] for n in notices}) == 2


def test_windows_left_open_for_a_comparison_with_a_live_pipeline() -> None:
    defs = definitions(sequence(steps=OWNER_STEP))
    lines = [orjson.dumps(e) for e in (created(), tagged())]
    got: list[CloudEvent] = []
    rejected: list[RejectedLine] = []
    replay(defs, lines, got.extend, rejected.append, close_windows=False)
    assert [e.type for e in got if e.type == "notify.sms"] == []
    assert any(e.type == "contact.updated" for e in got)


def test_the_same_event_twice_is_decided_once() -> None:
    # given a producer that sent the same event (source and id) twice
    first = created()
    out_once = decide(definitions(sequence(triggers=[{"type": "contact_created"}])), [first])
    out_twice = decide(
        definitions(sequence(triggers=[{"type": "contact_created"}])), [first, dict(first)]
    )
    # then the second changes nothing, and no output id is used twice
    assert [e["type"] for e in out_twice.events] == [e["type"] for e in out_once.events]
    ids = [e["id"] for e in out_twice.events]
    assert len(ids) == len(set(ids))


def test_the_replay_says_which_line_was_a_repeat() -> None:
    defs = definitions(sequence())
    first = created()
    lines = [orjson.dumps(e) for e in (first, tagged(), first)]
    stats = replay(defs, lines, lambda _: None, lambda _: None)
    assert (stats.duplicates, stats.first_duplicate) == (1, 3)


def test_an_id_seen_longer_ago_than_the_window_is_a_new_event() -> None:
    first = created()
    later = parse_time(T0) + DUPLICATE_WINDOW + timedelta(seconds=1)
    again = {**first, "time": format_time(later)}
    seq = sequence(
        triggers=[{"type": "contact_tagged", "tags": ["hot"]}],
        steps=[{"id": "s1", "type": "send_sms", "text": "x"}],
    )
    out = decide(definitions(seq), [first, tagged(), again, tagged(time=format_time(later))])
    # the second tag (a new event) enrolls again: the first enrollment completed at once
    assert len(out.of("enrollment.enrolled")) == 2
    assert len(out.of("sms.send")) == 2


def test_a_contact_created_twice_joins_creation_sequences_once() -> None:
    # given a sequence that enrolls new contacts
    seq = sequence(triggers=[{"type": "contact_created"}])
    # when the same contact is created again by another system, after completing it
    again = {**created(first_name="Ann", tags=["vip"]), "source": "web-forms"}
    out = decide(definitions(seq), [created(), again])
    # then it is enrolled once, and the second creation updated it
    assert len(out.of("enrollment.enrolled")) == 1
    assert out.of("enrollment.rejected") == []


def test_tags_new_in_a_repeated_creation_still_fire_tag_triggers() -> None:
    seq = sequence(triggers=[{"type": "contact_tagged", "tags": ["vip"]}])
    again = {**created(tags=["vip"]), "source": "web-forms"}
    out = decide(definitions(seq), [created(), again])
    assert out.one("enrollment.enrolled")["data"]["via"] == "contact_tagged"


def test_a_disposition_set_by_an_update_fires_disposition_triggers() -> None:
    seq = sequence(
        triggers=[
            {"type": "contact_disposition", "dispositions": ["interested"], "action": "enroll"}
        ]
    )
    update = event("contact.updated", T0, contact_id="c-1", disposition="interested")
    out = decide(definitions(seq), [created(), update])
    assert out.one("enrollment.enrolled")["data"]["via"] == "contact_disposition"
    # and the same disposition again changes nothing
    again = event("contact.updated", T0, contact_id="c-1", disposition="interested")
    assert decide(definitions(seq), [created(), update, again]).of("enrollment.rejected") == []


def test_a_lead_mailed_to_the_intake_address_with_a_display_name_is_taken() -> None:
    seq = sequence(intake_address="leads-1@intake.example.com", triggers=[])
    mail = event(
        "lead.email_received",
        T0,
        subject="intake",
        to='"Leads, Inc" <Leads-1@Intake.Example.com>',
        body="First Name: Jo\nPhone: (212) 555-0199",
    )
    out = decide(definitions(seq), [mail])
    assert out.of("lead.rejected") == []
    assert out.one("enrollment.enrolled")["data"]["via"] == "intake"


@pytest.mark.parametrize(
    "to",
    [
        "Bob Agent <bob@agency.example>, Leads <leads-1@intake.example.com>",
        "bob@agency.example; leads-1@intake.example.com",
        "leads-1+zillow@intake.example.com",
    ],
    ids=["two-addresses", "semicolon", "plus-tag"],
)
def test_a_lead_reaches_the_sequence_through_any_address_it_was_sent_to(to: str) -> None:
    seq = sequence(intake_address="leads-1@intake.example.com", triggers=[])
    mail = event(
        "lead.email_received", T0, subject="intake", to=to, body="Name: Jo\nPhone: 212-555-0199"
    )
    out = decide(definitions(seq), [mail])
    assert out.of("lead.rejected") == []
    assert out.one("enrollment.enrolled")["data"]["via"] == "intake"


def test_a_lead_to_no_intake_address_names_every_address_it_tried() -> None:
    seq = sequence(intake_address="leads-1@intake.example.com", triggers=[])
    to = "bob@agency.example, ann+x@agency.example"
    mail = event("lead.email_received", T0, subject="intake", to=to, body="Phone: 212-555-0199")
    rejected = decide(definitions(seq), [mail]).one("lead.rejected")["data"]
    assert rejected["reason"] == (
        "no sequence has any of the intake addresses"
        " bob@agency.example, ann+x@agency.example, ann@agency.example"
    )


def test_a_rejection_names_the_contact_like_an_enrollment() -> None:
    seq = sequence(steps=[{"id": "s1", "type": "send_sms", "text": "x", "delay": DAY}])
    out = decide(definitions(seq), [created(), tagged(), tagged()])
    rejected = out.one("enrollment.rejected")["data"]
    assert rejected["reason"] == "already_enrolled"
    assert (rejected["contact_name"], rejected["contact_phone"]) == ("Ana", "+12125550101")


def test_an_at_sign_in_an_id_or_a_source_does_not_make_two_events_one() -> None:
    # given two inputs whose id and source would read alike if joined by "@"
    one = {**tagged("c-1"), "id": "e1@crm", "source": "web"}
    other = {**tagged("c-2"), "id": "e1", "source": "crm@web"}
    # when both are replayed
    out = decide(definitions(sequence()), [created("c-1"), created("c-2"), one, other])
    # then both are decided, and their outputs' ids differ
    enrolled = out.of("enrollment.enrolled")
    assert sorted(e["data"]["contact_id"] for e in enrolled) == ["c-1", "c-2"]
    assert len({e["id"] for e in out.events}) == len(out.events)


def test_until_ends_the_history_at_its_first_line_past_it() -> None:
    # given a step due at 14:30 and, after a line at 15:00, a reply dated 14:20
    seq = sequence(
        steps=[
            {
                "id": "s1",
                "type": "send_sms",
                "text": "x",
                "delay": {"kind": "default", "amount": 30, "unit": "minutes"},
            }
        ],
        remove_on_response=True,
    )
    later = event("contact.updated", "2027-07-06T15:00:10Z", contact_id="c-1", state="NY")
    reply = event(
        "message.received",
        "2027-07-06T14:20:10Z",
        contact_id="c-1",
        message_id="m-1",
        channel="sms",
        body="hi",
    )
    inputs = [created(), tagged(), later, reply]
    full = decide(definitions(seq), inputs)
    # when the same file is replayed up to 14:45, before the line at 15:00
    cut = decide(definitions(seq), inputs, until="2027-07-06T14:45:00Z")
    # then the cut is the full run up to 14:45: the SMS went at 14:30, the late reply is
    # not decided (in the full run it comes after 15:00, too late to stop the SMS)
    assert full.one("sms.send")["time"] == "2027-07-06T14:30:10Z"
    before = [e for e in full.events if e["time"] <= "2027-07-06T14:45:00Z"]
    assert cut.events == before
