"""Given/when/then tests of who is enrolled, rejected and removed (CONTRACT.md §1-2)."""

from __future__ import annotations

from typing import Any

import pytest

from aggregates.engine import Engine
from schemas.envelope import parse_time
from tests.engine.helpers import ACCOUNT, decide, definitions, event, sequence

T0 = "2027-07-06T14:00:00Z"  # a Tuesday, 10:00 in New York
T1 = "2027-07-06T14:05:00Z"
T2 = "2027-07-06T14:10:00Z"
# One SMS a day after enrollment: keeps the contact enrolled while the test goes on.
A_DAY_LATER = [
    {
        "id": "s1",
        "type": "send_sms",
        "text": "x",
        "delay": {"kind": "default", "amount": 1, "unit": "days"},
    }
]


def created(contact: str = "c-1", time: str = T0, **profile: object) -> dict[str, object]:
    fields = {"first_name": "Ana", "phone": "+12125550101", "email": "ana@example.com", **profile}
    return event("contact.created", time, contact_id=contact, **fields)


def tagged(tag: str = "hot", contact: str = "c-1", time: str = T0) -> dict[str, object]:
    return event("contact.tag_added", time, contact_id=contact, tag=tag)


def test_a_matching_tag_enrolls_via_the_trigger_and_texts_at_once() -> None:
    out = decide(definitions(sequence()), [created(), tagged()])
    assert out.one("enrollment.enrolled")["data"]["via"] == "contact_tagged"
    assert out.one("sms.send")["data"]["body"] == "Hi Ana! Reply STOP to opt out."
    assert out.one("enrollment.completed")["time"] == T0


def test_a_tag_the_trigger_does_not_name_enrolls_nobody() -> None:
    out = decide(definitions(sequence()), [created(), tagged("cold")])
    assert out.of("enrollment.enrolled") == []


def test_a_second_trigger_while_enrolled_is_rejected_as_already_enrolled() -> None:
    seq = sequence(steps=A_DAY_LATER)
    out = decide(definitions(seq), [created(), tagged(time=T0), tagged(time=T1)])
    assert out.one("enrollment.rejected")["data"]["reason"] == "already_enrolled"


@pytest.mark.parametrize("steps", [None, A_DAY_LATER], ids=["completes-at-once", "stays"])
def test_one_fact_matching_two_of_a_sequences_triggers_enrolls_once_without_a_rejection(
    steps: list[dict[str, object]] | None,
) -> None:
    # given a sequence listening for new contacts and for a tag, and a contact created
    # with that tag (and another tag it listens for)
    triggers = [{"type": "contact_created"}, {"type": "contact_tagged", "tags": ["hot", "vip"]}]
    seq = sequence(triggers=triggers, **({"steps": steps} if steps else {}))
    # when the one fact arrives
    out = decide(definitions(seq), [created(tags=["hot", "vip"])])
    # then one enrollment, by the first trigger, and no already_enrolled against itself
    assert [e["data"]["via"] for e in out.of("enrollment.enrolled")] == ["contact_created"]
    assert out.of("enrollment.rejected") == []
    # while the next fact that matches is refused as ever
    if steps:
        later = decide(definitions(seq), [created(tags=["hot"]), tagged("vip", time=T1)])
        assert later.one("enrollment.rejected")["data"]["reason"] == "already_enrolled"


def test_a_contact_can_enroll_again_after_completing() -> None:
    out = decide(definitions(sequence()), [created(), tagged(time=T0), tagged(time=T1)])
    ids = [e["data"]["enrollment_id"] for e in out.of("enrollment.enrolled")]
    assert ids == ["seq:c-1:1", "seq:c-1:2"]
    effect_ids = [e["data"]["effect_id"] for e in out.of("sms.send")]
    assert len(set(effect_ids)) == 2


def test_an_invalid_sequence_rejects_with_sequence_invalid() -> None:
    seq = sequence(outbound_line=None)
    out = decide(definitions(seq), [created(), tagged()])
    defined = out.one("sequence.defined")
    assert defined["data"]["status"] == "invalid"
    assert any("outbound_line" in p for p in defined["data"]["problems"])
    assert out.one("enrollment.rejected")["data"]["reason"] == "sequence_invalid"


def test_unknown_shortcode_and_missing_ring_group_make_it_invalid() -> None:
    seq = sequence(
        steps=[
            {"id": "s1", "type": "send_sms", "text": "Hi [Nickname]"},
            {"id": "s2", "type": "progressive_dialer", "message": "press 1"},
        ]
    )
    problems = decide(definitions(seq), [created()]).one("sequence.defined")["data"]["problems"]
    assert any("[Nickname]" in p for p in problems)
    assert any("ring_group" in p for p in problems)


def test_opted_out_contact_is_rejected_when_the_sequence_removes_on_opt_out() -> None:
    out = decide(
        definitions(sequence()),
        [
            created(),
            event("contact.opted_out", T0, contact_id="c-1", channel="sms"),
            tagged(time=T1),
        ],
    )
    assert out.one("enrollment.rejected")["data"]["reason"] == "opted_out"


def test_an_opt_in_without_a_channel_lifts_every_opt_out() -> None:
    inputs = [
        created(),
        event("contact.opted_out", T0, contact_id="c-1", channel="all"),
        event("contact.opted_in", T1, contact_id="c-1"),
        tagged(time=T2),
    ]
    out = decide(definitions(sequence()), inputs)
    assert out.one("enrollment.enrolled")
    assert out.one("sms.send")


def test_a_null_channel_is_every_channel_like_a_missing_one() -> None:
    # A producer that serialises "no channel" as null means what leaving it out means.
    seq = sequence(remove_on_opt_out=True)
    opted = event("contact.opted_out", T0, contact_id="c-1", channel=None)
    out = decide(definitions(seq), [created(), opted, tagged(time=T1)])
    assert out.one("enrollment.rejected")["data"]["reason"] == "opted_out"

    back = event("contact.opted_in", T1, contact_id="c-1", channel=None)
    out = decide(definitions(seq), [created(), opted, back, tagged(time=T2)])
    assert out.one("enrollment.enrolled")
    assert out.one("sms.send")


def test_an_enrolled_contact_is_already_enrolled_whatever_else_would_reject_it() -> None:
    # given c-1 enrolled, then opted out of e-mail where the sequence did not remove on it
    seq = sequence(steps=A_DAY_LATER, remove_on_opt_out=False)
    opted = event("contact.opted_out", T1, contact_id="c-1", channel="email")
    # when the sequence starts removing on opt-outs (not retroactively) and c-1 is asked for
    applied = event(
        "sequence.applied",
        T1,
        subject="sequences",
        sequences=[sequence(steps=A_DAY_LATER, remove_on_opt_out=True)],
    )
    request = event(
        "enrollment.requested", T2, subject="seq", sequence_id="seq", contact_ids=["c-1"]
    )
    out = decide(definitions(seq), [created(), tagged(), opted, applied, request])
    # then the answer is that c-1 is in it already
    assert out.one("enrollment.rejected")["data"]["reason"] == "already_enrolled"


def test_a_contact_who_communicated_is_rejected_when_the_sequence_says_so() -> None:
    seq = sequence(prevent_enrollment_if_communicated=True)
    inbound = event(
        "message.received", T0, contact_id="c-1", message_id="m-1", channel="sms", body="hello?"
    )
    out = decide(definitions(seq), [created(), inbound, tagged(time=T1)])
    assert out.one("enrollment.rejected")["data"]["reason"] == "communicated"


@pytest.mark.parametrize(
    ("direction", "manual", "answered", "communicated"),
    [
        ("inbound", False, False, True),  # the contact called, even unanswered
        ("outbound", True, True, True),  # a user's call the contact took
        ("outbound", False, True, True),  # a dialer's call: taken, they spoke with an agent
        ("outbound", False, False, False),  # a dialer's call nobody took
        ("outbound", True, False, False),
    ],
)
def test_which_calls_count_as_having_communicated(
    direction: str, manual: bool, answered: bool, communicated: bool
) -> None:
    seq = sequence(prevent_enrollment_if_communicated=True)
    call = event(
        "call.completed",
        T0,
        call_id="k-1",
        contact_id="c-1",
        direction=direction,
        answered=answered,
        manual=manual,
    )
    out = decide(definitions(seq), [created(), call, tagged(time=T1)])
    assert bool(out.of("enrollment.rejected", reason="communicated")) == communicated
    assert bool(out.of("enrollment.enrolled")) != communicated


def test_a_contact_created_on_dnc_or_with_a_disposition_sets_off_those_triggers() -> None:
    on_dnc = sequence(id="dnc", steps=[], triggers=[{"type": "dnc_changed", "on": "added"}])
    keen = sequence(
        id="keen",
        steps=[],
        triggers=[{"type": "contact_disposition", "dispositions": ["interested"]}],
    )
    out = decide(definitions(on_dnc, keen), [created(dnc=True, disposition="interested")])
    assert sorted(e["data"]["sequence_id"] for e in out.of("enrollment.enrolled")) == [
        "dnc",
        "keen",
    ]


def test_enroll_only_within_hours_rejects_a_lead_at_night() -> None:
    seq = sequence(schedule={"open": "09:00", "close": "17:00", "enroll_only_within_hours": True})
    night = "2027-07-07T03:00:00Z"  # 23:00 in New York
    out = decide(definitions(seq), [created(time=night), tagged(time=night)])
    assert out.one("enrollment.rejected")["data"]["reason"] == "outside_hours"


def test_reply_disenrolls_as_responded_and_cancels_the_next_step() -> None:
    seq = sequence(
        steps=[
            {"id": "s1", "type": "send_sms", "text": "one"},
            {
                "id": "s2",
                "type": "send_sms",
                "text": "two",
                "delay": {"kind": "default", "amount": 1, "unit": "hours"},
            },
        ]
    )
    reply = event(
        "message.received", T1, contact_id="c-1", message_id="m-1", channel="sms", body="ok"
    )
    out = decide(definitions(seq), [created(), tagged(), reply], until="2027-07-06T18:00:00Z")
    assert out.one("enrollment.disenrolled")["data"]["reason"] == "responded"
    assert len(out.of("sms.send")) == 1


def test_stop_keyword_opts_out_and_disenrolls_as_opted_out() -> None:
    seq = sequence(
        steps=[
            {"id": "s1", "type": "send_sms", "text": "one"},
            {
                "id": "s2",
                "type": "send_sms",
                "text": "two",
                "delay": {"kind": "default", "amount": 1, "unit": "hours"},
            },
        ]
    )
    stop = event(
        "message.received", T1, contact_id="c-1", message_id="m-1", channel="sms", body="  Stop "
    )
    out = decide(definitions(seq), [created(), tagged(), stop])
    opted = out.one("contact.opted_out")
    assert opted["source"] == "dripstream"
    assert opted["data"]["channel"] == "sms"
    # written in the type's current data version, as every encoder must
    assert opted["dataversion"] == "2"
    assert out.one("enrollment.disenrolled")["data"]["reason"] == "opted_out"


def manual_call(*, answered: bool) -> dict[str, Any]:
    return event(
        "call.completed",
        T1,
        contact_id="c-1",
        call_id="k-1",
        direction="outbound",
        answered=answered,
        manual=True,
    )


def test_a_manual_call_disenrolls_as_manual_call() -> None:
    seq = sequence(steps=A_DAY_LATER)
    out = decide(definitions(seq), [created(), tagged(), manual_call(answered=False)])
    assert out.one("enrollment.disenrolled")["data"]["reason"] == "manual_call"


@pytest.mark.parametrize(("answered", "reasons"), [(True, ["responded"]), (False, [])])
def test_an_answered_manual_call_is_a_response_where_manual_calls_do_not_remove(
    answered: bool, reasons: list[str]
) -> None:
    # The seed: leads are removed "if they respond to a message or answer a call".
    seq = sequence(remove_on_response=True, remove_on_manual_call=False, steps=A_DAY_LATER)
    out = decide(definitions(seq), [created(), tagged(), manual_call(answered=answered)])
    assert [e["data"]["reason"] for e in out.of("enrollment.disenrolled")] == reasons


def test_remove_flags_off_keep_the_contact_enrolled() -> None:
    seq = sequence(
        remove_on_response=False,
        steps=A_DAY_LATER,
    )
    reply = event(
        "message.received", T1, contact_id="c-1", message_id="m-1", channel="sms", body="hi"
    )
    out = decide(definitions(seq), [created(), tagged(), reply])
    assert out.one("enrollment.enrolled")["data"]["contact_id"] == "c-1"
    assert out.of("enrollment.disenrolled") == []


def call_duration_sequence(metric: str) -> dict[str, Any]:
    return sequence(
        triggers=[
            {"type": "contact_tagged", "tags": ["hot"]},
            {"type": "call_duration", "metric": metric, "seconds": 60},
        ],
        steps=A_DAY_LATER,
        remove_on_response=False,
    )


def answered_call(time: str, call_id: str, direction: str, **measures: int) -> dict[str, Any]:
    return event(
        "call.completed",
        time,
        contact_id="c-1",
        call_id=call_id,
        direction=direction,
        answered=True,
        **measures,
    )


def test_call_duration_trigger_disenrolls_at_the_threshold() -> None:
    short = answered_call(T1, "k-1", "outbound", talk_time=59)
    long = answered_call(T2, "k-2", "outbound", talk_time=60)
    seq = call_duration_sequence("talk_time")
    out = decide(definitions(seq), [created(), tagged(), short, long])
    disenrolled = out.one("enrollment.disenrolled")
    assert disenrolled["data"]["reason"] == "call_duration"
    assert disenrolled["time"] == T2


def test_a_null_measure_is_unknown_and_sets_off_no_call_duration_trigger() -> None:
    # A phone system sends talk_time null for a call it could not time; manual null is
    # "not said", as when left out.
    unknown = event(
        "call.completed",
        T1,
        contact_id="c-1",
        call_id="k-1",
        direction="outbound",
        answered=True,
        talk_time=None,
        wait_time=None,
        duration=None,
        manual=None,
    )
    out = decide(definitions(call_duration_sequence("talk_time")), [created(), tagged(), unknown])
    assert out.rejected == []
    assert out.one("enrollment.enrolled")["data"]["contact_id"] == "c-1"
    assert out.of("enrollment.disenrolled") == []


def test_an_inbound_call_does_not_set_off_the_call_duration_trigger() -> None:
    # The seed: "If you make an outbound call and its duration ... the contact will be
    # removed": a long call the contact placed is not one.
    inbound = answered_call(T1, "k-1", "inbound", duration=600)
    out = decide(definitions(call_duration_sequence("duration")), [created(), tagged(), inbound])
    assert out.one("enrollment.enrolled")["data"]["contact_id"] == "c-1"
    assert out.of("enrollment.disenrolled") == []


def test_a_manual_call_removes_when_the_sequence_does_not_say() -> None:
    seq = sequence(steps=A_DAY_LATER, remove_on_response=False)
    seq.pop("remove_on_manual_call", None)
    out = decide(definitions(seq), [created(), tagged(), manual_call(answered=False)])
    assert out.one("enrollment.disenrolled")["data"]["reason"] == "manual_call"


def test_disposition_triggers_enroll_and_disenroll() -> None:
    enroll = sequence(
        id="nurture",
        triggers=[
            {"type": "contact_disposition", "dispositions": ["interested"], "action": "enroll"}
        ],
        steps=A_DAY_LATER,
    )
    stop = sequence(
        id="cold",
        triggers=[
            {"type": "contact_tagged", "tags": ["hot"]},
            {"type": "contact_disposition", "dispositions": ["interested"], "action": "disenroll"},
        ],
        steps=A_DAY_LATER,
    )
    change = event("contact.disposition_changed", T1, contact_id="c-1", disposition="interested")
    out = decide(definitions(enroll, stop), [created(), tagged(), change])
    assert out.one("enrollment.enrolled", sequence_id="nurture")["time"] == T1
    assert out.one("enrollment.disenrolled", sequence_id="cold")["data"]["reason"] == "trigger"


def test_every_enroll_trigger_type_enrolls() -> None:
    sequences = [
        sequence(id="created", triggers=[{"type": "contact_created"}]),
        sequence(id="dnc", triggers=[{"type": "dnc_changed", "on": "removed"}]),
        sequence(id="appt", triggers=[{"type": "appointment", "statuses": ["scheduled"]}]),
        sequence(id="untag", triggers=[{"type": "tag_removed", "tags": ["hot"]}]),
        sequence(
            id="calldispo", triggers=[{"type": "call_disposition", "dispositions": ["callback"]}]
        ),
    ]
    inputs = [
        created(),
        event("contact.dnc_changed", T0, contact_id="c-1", dnc=True),
        event("contact.dnc_changed", T1, contact_id="c-1", dnc=False),
        event(
            "appointment.changed", T1, contact_id="c-1", appointment_id="a-1", status="scheduled"
        ),
        tagged(time=T1),
        event("contact.tag_removed", T1, contact_id="c-1", tag="hot"),
        event(
            "call.completed",
            T2,
            contact_id="c-1",
            call_id="k",
            direction="outbound",
            answered=False,
            disposition="callback",
        ),
    ]
    out = decide(definitions(*sequences), inputs)
    enrolled = {(e["data"]["sequence_id"], e["data"]["via"]) for e in out.of("enrollment.enrolled")}
    assert enrolled == {
        ("created", "contact_created"),
        ("dnc", "dnc_changed"),
        ("appt", "appointment"),
        ("untag", "tag_removed"),
        ("calldispo", "call_disposition"),
    }


def test_appointment_and_dnc_triggers_that_name_no_values_listen_for_any() -> None:
    # given the seed's bare triggers: "whenever an appointment is scheduled, displayed, or
    # canceled"; "added to or removed from the DNC list"
    appt = sequence(id="appt", steps=[], triggers=[{"type": "appointment"}])
    dnc = sequence(id="dnc", steps=[], triggers=[{"type": "dnc_changed"}])

    def booked(contact: str, status: str) -> dict[str, object]:
        return event(
            "appointment.changed", T1, contact_id=contact, appointment_id="a-1", status=status
        )

    def listed(contact: str, on: bool) -> dict[str, object]:
        return event("contact.dnc_changed", T1, contact_id=contact, dnc=on)

    inputs = [
        *(created(c) for c in ("c-1", "c-2", "c-3", "c-4")),
        created("c-5", dnc=True),
        booked("c-1", "scheduled"),
        booked("c-2", "shown"),
        booked("c-3", "canceled"),
        listed("c-4", True),
        listed("c-5", False),
    ]
    out = decide(definitions(appt, dnc), inputs)
    # then each status, and each change of the list (c-5's creation on it, its removal), enrolls
    enrolled = [
        (e["data"]["sequence_id"], e["data"]["contact_id"], e["time"])
        for e in out.of("enrollment.enrolled")
    ]
    assert sorted(enrolled) == [
        ("appt", "c-1", T1),
        ("appt", "c-2", T1),
        ("appt", "c-3", T1),
        ("dnc", "c-4", T1),
        ("dnc", "c-5", T0),
        ("dnc", "c-5", T1),
    ]


def test_a_repeated_dnc_state_is_not_a_change_and_triggers_nothing() -> None:
    seq = sequence(id="dnc", triggers=[{"type": "dnc_changed", "on": "added"}])
    inputs = [
        created(),
        event("contact.dnc_changed", T0, contact_id="c-1", dnc=True),
        event("contact.dnc_changed", T1, contact_id="c-1", dnc=True),
    ]
    out = decide(definitions(seq), inputs)
    assert len(out.of("enrollment.enrolled")) == 1
    assert out.of("enrollment.rejected") == []


def test_manual_enrollment_by_ids_tag_and_line() -> None:
    inputs = [
        created("c-1", line_id="line-1"),
        created("c-2", tags=["vip"]),
        created("c-3"),
        event(
            "enrollment.requested",
            T1,
            subject="seq",
            sequence_id="seq",
            contact_ids=["c-3"],
            tag="vip",
            line_id="line-1",
        ),
    ]
    out = decide(definitions(sequence(triggers=[])), inputs)
    assert sorted(e["data"]["contact_id"] for e in out.of("enrollment.enrolled", via="manual")) == [
        "c-1",
        "c-2",
        "c-3",
    ]


def test_a_contact_group_string_is_a_contact_id_even_with_a_colon() -> None:
    inputs = [
        created("line:7"),
        created("c-8", line_id="7"),
        event(
            "enrollment.requested", T1, subject="seq", sequence_id="seq", contact_group=["line:7"]
        ),
    ]
    out = decide(definitions(sequence(triggers=[])), inputs)
    assert [e["data"]["contact_id"] for e in out.of("enrollment.enrolled")] == ["line:7"]


def test_a_tag_added_by_a_step_triggers_another_sequence() -> None:
    first = sequence(id="first", steps=[{"id": "t", "type": "add_tag", "tag": "warm"}])
    second = sequence(id="second", triggers=[{"type": "contact_tagged", "tags": ["warm"]}])
    out = decide(definitions(first, second), [created(), tagged()])
    change = out.one("contact.tag_added", tag="warm")
    assert change["source"] == "dripstream"
    assert change["data"]["sequence_id"] == "first"
    assert out.one("enrollment.enrolled", sequence_id="second")["data"]["via"] == "contact_tagged"


def test_a_step_that_changes_nothing_sets_off_no_trigger() -> None:
    # given a contact tagged `vip` with disposition `new`, and a sequence whose steps add
    # the tag it has, remove one it lacks and set the disposition it already is
    first = sequence(
        id="first",
        steps=[
            {"id": "add", "type": "add_tag", "tag": "vip"},
            {"id": "remove", "type": "remove_tag", "tag": "cold"},
            {"id": "same", "type": "change_disposition", "disposition": "new"},
            {"id": "other", "type": "change_disposition", "disposition": "won"},
        ],
    )
    listeners = [
        sequence(id="on-vip", triggers=[{"type": "contact_tagged", "tags": ["vip"]}]),
        sequence(id="on-cold-gone", triggers=[{"type": "tag_removed", "tags": ["cold"]}]),
        sequence(id="on-new", triggers=[{"type": "contact_disposition", "dispositions": ["new"]}]),
        sequence(id="on-won", triggers=[{"type": "contact_disposition", "dispositions": ["won"]}]),
    ]
    profile = event("contact.updated", T0, contact_id="c-1", tags=["vip"], disposition="new")
    # when the steps run (on-vip and on-new enrolled the contact already, and finished)
    out = decide(definitions(first, *listeners), [created(), profile, tagged()])
    # then each step is recorded, and only the real change (to `won`) sets off its trigger
    assert [e["data"]["step_id"] for e in out.of("step.executed", sequence_id="first")] == [
        "add",
        "remove",
        "same",
        "other",
    ]
    assert out.one("contact.tag_removed", tag="cold")["source"] == "dripstream"
    enrolled = [e["data"]["sequence_id"] for e in out.of("enrollment.enrolled")]
    assert enrolled == ["on-vip", "on-new", "first", "on-won"]


def test_mark_dnc_is_seen_by_the_very_next_step() -> None:
    seq = sequence(
        steps=[{"id": "dnc", "type": "mark_dnc"}, {"id": "s2", "type": "send_sms", "text": "x"}]
    )
    out = decide(definitions(seq), [created(), tagged()])
    assert out.one("step.skipped")["data"]["reason"] == "dnc"
    assert out.of("sms.send") == []
    assert out.one("enrollment.completed")


def test_deleting_a_sequence_disenrolls_its_contacts() -> None:
    seq = sequence(steps=A_DAY_LATER)
    delete = event("sequence.delete_requested", T1, subject="sequence:seq", sequence_id="seq")
    out = decide(definitions(seq), [created(), tagged(), delete], until="2027-07-09T00:00:00Z")
    assert out.one("enrollment.disenrolled")["data"]["reason"] == "sequence_deleted"
    assert out.one("sequence.deleted")["data"]["sequence_id"] == "seq"
    assert out.of("sms.send") == []


def test_steps_due_before_a_deletion_run_before_it() -> None:
    # CONTRACT.md §3: timers fire in time order, inputs included; the deletion's time is
    # the history's own, so a step due at 14:02 is carried out before a deletion at 14:05.
    two_minutes = {"kind": "default", "amount": 2, "unit": "minutes"}
    seq = sequence(
        steps=[
            {"id": "s1", "type": "send_sms", "text": "x", "delay": two_minutes},
            {**A_DAY_LATER[0], "id": "s2"},
        ]
    )
    delete = event("sequence.delete_requested", T1, subject="sequence:seq", sequence_id="seq")
    out = decide(definitions(seq), [created(), tagged(), delete], until="2027-07-09T00:00:00Z")
    assert out.one("sms.send")["time"] == "2027-07-06T14:02:00Z"
    assert out.types().index("step.executed") < out.types().index("enrollment.disenrolled")
    assert out.one("enrollment.disenrolled")["time"] == T1


def test_a_copy_comes_after_the_steps_due_before_it() -> None:
    two_minutes = {"kind": "default", "amount": 2, "unit": "minutes"}
    seq = sequence(steps=[{"id": "s1", "type": "send_sms", "text": "x", "delay": two_minutes}])
    copy = event(
        "sequence.copy_requested", T1, subject="sequence:seq", sequence_id="seq", new_id="seq-2"
    )
    out = decide(definitions(seq), [created(), tagged(), copy])
    assert out.types().index("sms.send") < out.types().index("sequence.defined", 1)


def test_a_definition_adopted_from_another_worker_keeps_its_created_time() -> None:
    # given a sequence defined on 1 March
    engine = Engine()
    engine.define(definitions(sequence()), parse_time("2028-03-01T12:00:00Z"), "d-1")
    # when another worker's edit of it (a document without `created`) is adopted on 5 March
    edited = definitions(sequence(name="Renamed"))
    engine.adopt(edited, [], parse_time("2028-03-05T12:00:00Z"), "a-1")
    # then it was still created on 1 March
    adopted = engine.raw_definition("seq")
    assert adopted is not None
    assert (adopted["name"], adopted["created"]) == ("Renamed", "2028-03-01T12:00:00Z")


def test_copy_makes_a_new_active_sequence() -> None:
    copy = event(
        "sequence.copy_requested", T1, subject="sequence:seq", sequence_id="seq", new_id="seq-2"
    )
    out = decide(definitions(sequence()), [created(), copy, tagged(time=T2)])
    defined = out.one("sequence.defined", sequence_id="seq-2")
    assert defined["data"]["name"] == "Test sequence (copy)"
    assert {e["data"]["sequence_id"] for e in out.of("enrollment.enrolled")} == {"seq", "seq-2"}
    # and each definition in force is published whole, the copy's under its own id and name
    original = out.one("sequence.defined", sequence_id="seq")["data"]["definition"]
    copied = defined["data"]["definition"]
    assert (copied["id"], copied["name"]) == ("seq-2", "Test sequence (copy)")
    assert copied["steps"] == original["steps"]
    # with every default filled in
    assert original["steps"] == [{**sequence()["steps"][0], "delay": {"kind": "none"}}]


def test_deleting_a_sequence_that_does_not_exist_is_rejected_with_a_reason() -> None:
    delete = event("sequence.delete_requested", T1, subject="sequence:nope", sequence_id="nope")
    out = decide(definitions(sequence()), [created(), delete])
    rejected = out.one("sequence.command_rejected")
    assert rejected["subject"] == "sequence:nope"
    assert rejected["data"] == {
        "command": "sequence.delete_requested",
        "sequence_id": "nope",
        "reason": "unknown_sequence",
    }
    assert out.of("sequence.deleted") == []


@pytest.mark.parametrize(
    ("source", "new_id", "reason"),
    [("nope", "seq-2", "unknown_sequence"), ("seq", "other", "id_taken")],
)
def test_a_copy_that_cannot_be_made_is_rejected_with_a_reason(
    source: str, new_id: str, reason: str
) -> None:
    copy = event(
        "sequence.copy_requested",
        T1,
        subject=f"sequence:{source}",
        sequence_id=source,
        new_id=new_id,
    )
    out = decide(definitions(sequence(), sequence(id="other", name="Other")), [created(), copy])
    assert out.one("sequence.command_rejected")["data"] == {
        "command": "sequence.copy_requested",
        "sequence_id": source,
        "reason": reason,
        "new_id": new_id,
    }
    # and nothing was (re)defined by the request: only the two definitions at the start
    assert sorted(e["data"]["sequence_id"] for e in out.of("sequence.defined")) == [
        "other",
        "seq",
    ]


def test_an_empty_history_still_defines_the_sequences() -> None:
    out = decide(definitions(sequence(), sequence(id="other", outbound_line=None)), [])
    defined = {e["data"]["sequence_id"]: e["data"]["status"] for e in out.of("sequence.defined")}
    assert defined == {"seq": "active", "other": "invalid"}


def test_the_same_id_from_two_sources_gives_outputs_with_different_ids() -> None:
    # given two upstream systems that both number their events from 1
    from_crm = {**created("c-1"), "id": "1", "source": "crm"}
    from_forms = {**created("c-2", phone="+12125550102"), "id": "1", "source": "web-forms"}
    # when each creation enrolls its contact
    enrolls_new = sequence(triggers=[{"type": "contact_created"}])
    out = decide(definitions(enrolls_new), [from_crm, from_forms])
    # then both are texted, and no two outputs share an id (CloudEvents: source + id)
    assert sorted(e["data"]["contact_id"] for e in out.of("sms.send")) == ["c-1", "c-2"]
    ids = [e["id"] for e in out.events]
    assert len(ids) == len(set(ids))


def test_each_output_id_names_the_input_that_caused_it() -> None:
    given = {**created(), "id": "lead-9", "source": "crm"}
    out = decide(definitions(sequence(triggers=[{"type": "contact_created"}])), [given])
    assert out.one("enrollment.enrolled")["id"].startswith(f"lead-9@crm@{T0}/")


def test_an_id_reused_after_the_repeat_window_still_gives_outputs_ids_of_their_own() -> None:
    # given a producer that reuses an input id two days later, for another contact
    seq = sequence(triggers=[{"type": "contact_tagged", "tags": ["hot"]}])
    first = {**tagged(), "id": "same"}
    later = {**tagged(contact="c-2", time="2027-07-08T14:00:00Z"), "id": "same"}
    out = decide(definitions(seq), [created(), first, created("c-2"), later])
    # then both are decided, and no two outputs share an id (a subscriber would drop one)
    assert len(out.of("enrollment.enrolled")) == 2
    ids = [e["id"] for e in out.events]
    assert len(ids) == len(set(ids))


def test_a_producers_event_under_the_id_of_a_workers_copy_is_another_event() -> None:
    # given a worker's copy of request r1 (by tag) for partition 0, named r1/p0
    seq = sequence(steps=[{"id": "s1", "type": "send_sms", "text": "hi"}])
    by_tag = {"subject": "fan-out:0:0", "sequence_id": "seq", "tag": "vip", "on_partition": 0}
    copy = {**event("enrollment.requested", T1, **by_tag), "id": "r1/p0", "source": "admin"}
    # when the producer's own event r1/p0 (a request for c-2 by id) comes a minute later
    own = {"subject": "c-2", "sequence_id": "seq", "contact_ids": ["c-2"]}
    mine = {**event("enrollment.requested", T2, **own), "id": "r1/p0", "source": "admin"}
    out = decide(definitions(seq), [created(tags=["vip"]), created("c-2"), copy, mine])
    # then both are decided, neither refused for reusing the other's id
    assert out.rejected == []
    enrolled = sorted(e["data"]["contact_id"] for e in out.of("enrollment.enrolled"))
    assert enrolled == ["c-1", "c-2"]
    ids = [e["id"] for e in out.events]
    assert len(ids) == len(set(ids))


def test_a_retry_stamped_anew_is_still_a_repeat() -> None:
    # an API client retrying with the same Idempotency-Key: same id and content, new time
    seq = sequence(triggers=[{"type": "contact_tagged", "tags": ["hot"]}])
    first = {**tagged(), "id": "key-7"}
    retry = {**first, "time": T1}
    out = decide(definitions(seq), [created(), first, retry])
    assert len(out.of("enrollment.enrolled")) == 1
    assert out.of("enrollment.rejected") == []
    assert out.rejected == []


def test_another_event_under_an_id_decided_within_the_day_is_refused_not_skipped() -> None:
    seq = sequence(triggers=[{"type": "contact_tagged", "tags": ["hot"]}])
    first = {**tagged(), "id": "same"}
    retry = {**first, "data": dict(reversed(list(first["data"].items())))}  # same content
    other = {**tagged(contact="c-2", time="2027-07-06T15:00:00Z"), "id": "same"}
    out = decide(definitions(seq), [created(), first, retry, created("c-2"), other])
    # the retry is the same event (skipped), the other one is a dead letter naming the id
    assert [e["data"]["contact_id"] for e in out.of("enrollment.enrolled")] == ["c-1"]
    assert [(r.line, r.field) for r in out.rejected] == [(5, "id")]
    assert "already names a different event" in out.rejected[0].reason


def test_a_new_account_governs_the_sequences_its_document_leaves_alone() -> None:
    # given a sequence on line-1 under the first account
    seq = sequence(steps=[{"id": "s1", "type": "send_sms", "text": "x"}])
    # when a document brings a new account (quiet hours 10-11, only line-2) and another sequence
    applied = event(
        "sequence.applied",
        T0,
        subject="sequences",
        account={
            **ACCOUNT,
            "quiet_hours": {"start": "10:30", "end": "11:00"},
            "lines": {"line-2": "+12125550002"},
        },
        sequences=[sequence(id="other", outbound_line="line-2")],
    )
    out = decide(definitions(seq), [applied, created(time=T1), tagged(time=T1)])
    # then the first is defined again under it: its line is gone, so it is invalid
    again = out.of("sequence.defined", sequence_id="seq")[-1]["data"]
    assert again["status"] == "invalid"
    assert again["problems"] == ["outbound_line: unknown line 'line-1'"]
    assert out.one("enrollment.rejected", sequence_id="seq")["data"]["reason"] == (
        "sequence_invalid"
    )


def test_of_two_sequences_given_one_address_the_first_created_gets_the_leads() -> None:
    # given a sequence with an intake address, and another given the same one later
    address = "leads@intake.example.com"
    first = sequence(
        id="zz-first", intake_address=address, triggers=[], created="2027-01-04T00:00:00Z"
    )
    later = event(
        "sequence.applied",
        T0,
        subject="sequences",
        sequences=[sequence(id="aa-second", intake_address=address.upper(), triggers=[])],
    )
    mail = event(
        "lead.email_received", T1, to=address, subject="lead", body="Name: Jo\nPhone: 2125550199"
    )
    # when a lead mails the address, after the first is defined again too
    again = event("sequence.applied", T0, subject="sequences", sequences=[first])
    out = decide(definitions(first), [later, again, mail])
    # then the lead enrolls in the one created first, whatever order they were read in
    assert [e["data"]["sequence_id"] for e in out.of("enrollment.enrolled")] == ["zz-first"]


def test_a_new_accounts_quiet_hours_hold_for_every_sequence() -> None:
    seq = sequence(steps=[{"id": "s1", "type": "send_sms", "text": "x"}])
    applied = event(
        "sequence.applied",
        T0,
        subject="sequences",
        account={**ACCOUNT, "quiet_hours": {"start": "10:30", "end": "11:00"}},
        sequences=[],
    )
    # tagged at 10:05 New York: before the new quiet hours open at 10:30
    inputs = [applied, created(time=T1), tagged(time=T1)]
    out = decide(definitions(seq), inputs, until="2027-07-07T00:00:00Z")
    assert out.one("step.deferred")["data"]["reason"] == "quiet_hours"
    assert out.one("sms.send")["time"] == "2027-07-06T14:30:00Z"


def _two_steps(second: dict[str, Any]) -> dict[str, Any]:
    return sequence(steps=[{"id": "s1", "type": "send_sms", "text": "one"}, second])


TWO_DAYS = {"kind": "default", "amount": 2, "unit": "days"}
HALF_HOUR = {"kind": "default", "amount": 30, "unit": "minutes"}


def test_a_redefined_step_at_an_enrollments_place_is_scheduled_anew() -> None:
    # given an enrollment waiting two days for `later`
    first = _two_steps({"id": "later", "type": "send_sms", "text": "two", "delay": TWO_DAYS})
    # when, an hour on, the sequence puts `new2` (half an hour after s1) in its place
    second = _two_steps({"id": "new2", "type": "send_sms", "text": "new", "delay": HALF_HOUR})
    applied = event(
        "sequence.applied", "2027-07-06T15:00:00Z", subject="sequences", sequences=[second]
    )
    out = decide(definitions(first), [created(), tagged(), applied])
    # then new2 is scheduled from s1's execution, and being past due, runs at once
    assert out.one("step.scheduled", step_id="new2")["data"]["due_at"] == "2027-07-06T14:30:00Z"
    assert out.one("step.executed", step_id="new2")["time"] == "2027-07-06T15:00:00Z"
    assert out.one("sms.send", step_id="new2")["data"]["body"].startswith("new")
    assert out.of("step.executed", step_id="later") == []


def test_a_step_whose_text_alone_changed_keeps_its_moment() -> None:
    first = _two_steps({"id": "s2", "type": "send_sms", "text": "two", "delay": HALF_HOUR})
    second = _two_steps({"id": "s2", "type": "send_sms", "text": "TWO", "delay": HALF_HOUR})
    applied = event(
        "sequence.applied", "2027-07-06T14:10:00Z", subject="sequences", sequences=[second]
    )
    out = decide(definitions(first), [created(), tagged(), applied], until="2027-07-06T15:00:00Z")
    assert len(out.of("step.scheduled", step_id="s2")) == 1
    assert out.one("sms.send", step_id="s2")["time"] == "2027-07-06T14:30:00Z"
    assert out.one("sms.send", step_id="s2")["data"]["body"].startswith("TWO")


def test_the_step_an_edit_takes_out_is_told_skipped_and_the_next_counts_from_the_last_run() -> None:
    # given an enrollment that ran s1 at 14:00 and waits two days for `later`
    first = sequence(
        steps=[
            {"id": "s1", "type": "send_sms", "text": "one"},
            {"id": "later", "type": "send_sms", "text": "two", "delay": TWO_DAYS},
            {"id": "s3", "type": "send_sms", "text": "three", "delay": HALF_HOUR},
        ]
    )
    # when an edit at 15:00 takes `later` out
    cut = {**first, "steps": [first["steps"][0], first["steps"][2]]}
    out = decide(definitions(first), [created(), tagged(), _apply("2027-07-06T15:00:00Z", cut)])
    # then `later` is skipped as removed (every step.scheduled ends in a word), and s3,
    # half an hour after s1 ran, is past due and runs at once
    skipped = out.one("step.skipped", step_id="later")
    assert (skipped["time"], skipped["data"]["reason"]) == ("2027-07-06T15:00:00Z", "removed")
    assert out.one("step.scheduled", step_id="s3")["data"]["due_at"] == "2027-07-06T14:30:00Z"
    assert out.one("step.executed", step_id="s3")["time"] == "2027-07-06T15:00:00Z"
    assert out.of("step.executed", step_id="later") == []


def test_a_step_taken_out_while_the_sequence_was_invalid_is_told_skipped_when_it_runs_again() -> (
    None
):
    # given an enrollment that ran s1 at 14:00 and waits two days for `later`
    first = sequence(
        steps=[
            {"id": "s1", "type": "send_sms", "text": "one"},
            {"id": "later", "type": "send_sms", "text": "two", "delay": TWO_DAYS},
        ]
    )
    # when an edit puts a step in front of `later` and breaks the sequence (an unknown
    # line): the enrollment is held; and another puts it right without `later`
    early = {"id": "early", "type": "send_sms", "text": "early", "delay": HALF_HOUR}
    broken = {
        **first,
        "outbound_line": "line-9",
        "steps": [first["steps"][0], early, *first["steps"][1:]],
    }
    mended = {**first, "steps": [first["steps"][0], early]}
    out = decide(
        definitions(first),
        [
            created(),
            tagged(),
            _apply("2027-07-06T15:00:00Z", broken),
            _apply("2027-07-06T16:00:00Z", mended),
        ],
    )
    # then `later`, which the subscriber was told of, is said skipped as removed when the
    # sequence runs again, before `early` is scheduled and runs
    told = [
        (e["type"], e["data"].get("step_id")) for e in out.events if e["type"].startswith("step.")
    ]
    assert told[told.index(("step.scheduled", "later")) :] == [
        ("step.scheduled", "later"),
        ("step.skipped", "later"),
        ("step.scheduled", "early"),
        ("step.executed", "early"),
    ]
    assert out.one("step.skipped", step_id="later")["data"]["reason"] == "removed"


def test_a_sequence_cut_short_completes_an_enrollment_past_its_end() -> None:
    first = _two_steps({"id": "s2", "type": "send_sms", "text": "two", "delay": TWO_DAYS})
    cut = sequence(steps=[{"id": "s1", "type": "send_sms", "text": "one"}])
    applied = event(
        "sequence.applied", "2027-07-06T15:00:00Z", subject="sequences", sequences=[cut]
    )
    out = decide(definitions(first), [created(), tagged(), applied])
    assert out.one("enrollment.completed")["time"] == "2027-07-06T15:00:00Z"


def _apply(time: str, *sequences: dict[str, Any]) -> dict[str, object]:
    return event("sequence.applied", time, subject="sequences", sequences=list(sequences))


def test_a_step_put_in_front_runs_next_and_a_step_passed_never_runs_again() -> None:
    # given an enrollment that has run s1 (an owner change) and waits two days for `later`
    owner = {"id": "s1", "type": "change_owner", "owner_id": "u-7"}
    later = {"id": "later", "type": "send_sms", "text": "two", "delay": TWO_DAYS}
    # when a step is put in front of s1
    intro = {"id": "intro", "type": "send_sms", "text": "intro"}
    applied = _apply("2027-07-06T15:00:00Z", sequence(steps=[intro, owner, later]))
    out = decide(
        definitions(sequence(steps=[owner, later])),
        [created(), tagged(), applied],
        until="2027-07-10T00:00:00Z",
    )
    # then the enrollment goes on by step id: the new step runs at once, s1 (now where the
    # enrollment stood) is not run again, and `later` counts its delay from the new step
    assert [e["data"]["step_id"] for e in out.of("step.executed")] == ["s1", "intro", "later"]
    assert out.one("step.executed", step_id="intro")["time"] == "2027-07-06T15:00:00Z"
    assert out.one("sms.send", step_id="later")["time"] == "2027-07-08T15:00:00Z"
    assert len(out.of("notify.sms", step_id="s1")) == 1
    assert out.one("enrollment.completed")["time"] == "2027-07-08T15:00:00Z"


def test_swapped_steps_each_run_once() -> None:
    a = {"id": "a", "type": "send_sms", "text": "first"}
    b = {"id": "b", "type": "send_sms", "text": "second", "delay": HALF_HOUR}
    applied = _apply(
        T1, sequence(steps=[{**b, "delay": {"kind": "none"}}, {**a, "delay": HALF_HOUR}])
    )
    out = decide(definitions(sequence(steps=[a, b])), [created(), tagged(), applied])
    # a ran before the edit; b, now first, runs at once; a is passed over
    assert [(e["data"]["step_id"], e["time"]) for e in out.of("step.executed")] == [
        ("a", T0),
        ("b", T1),
    ]
    assert out.one("enrollment.completed")["time"] == T1


def test_removing_a_step_already_passed_keeps_the_enrollments_place() -> None:
    # given an enrollment waiting for s3, half an hour after s2
    steps = [
        {"id": "s1", "type": "add_tag", "tag": "x"},
        {"id": "s2", "type": "add_tag", "tag": "y"},
        {"id": "s3", "type": "send_sms", "text": "three", "delay": HALF_HOUR},
        {"id": "s4", "type": "send_sms", "text": "four", "delay": TWO_DAYS},
    ]
    # when s1 is removed: s3 now stands where s2 stood, s4 where s3 did
    applied = _apply(T1, sequence(steps=steps[1:]))
    out = decide(definitions(sequence(steps=steps)), [created(), tagged(), applied], until=T2)
    # then it still waits for s3 at the same moment (by position it would now wait for s4)
    assert len(out.of("step.scheduled", step_id="s3")) == 1
    assert out.of("step.scheduled", step_id="s4") == []


def test_an_edit_that_makes_a_sequence_invalid_holds_its_enrollments_until_put_right() -> None:
    # given an enrollment waiting an hour for its second text
    hour = {"kind": "default", "amount": 1, "unit": "hours"}
    steps = [
        {"id": "s1", "type": "send_sms", "text": "one"},
        {"id": "s2", "type": "send_sms", "text": "two", "delay": hour},
    ]
    good = sequence(steps=steps)
    broken = {k: v for k, v in good.items() if k != "outbound_line"}  # an SMS with no line
    inputs = [
        created(),
        tagged(),
        _apply("2027-07-06T14:30:00Z", broken),
        _apply("2027-07-06T16:00:00Z", good),
    ]
    out = decide(definitions(good), inputs, until="2027-07-06T17:00:00Z")
    # then s2 does not run at 15:00 while the sequence is invalid (it "cannot run"), and
    # runs when the sequence is put right at 16:00, past due
    assert [e["time"] for e in out.of("sms.send")] == [T0, "2027-07-06T16:00:00Z"]
    assert all(e["data"]["from_line"] == "line-1" for e in out.of("sms.send"))
    assert out.one("enrollment.completed")["time"] == "2027-07-06T16:00:00Z"


# Without the once-per-cause rule this goes round for ever, its output growing by gigabytes:
# it fails in seconds rather than at the suite's ten-minute bound.
@pytest.mark.timeout(30)
def test_sequences_that_feed_each_other_at_once_enroll_a_contact_once_per_input() -> None:
    # given two sequences, each ending at once by tagging the contact into the other
    a = sequence(
        id="a",
        triggers=[{"type": "contact_tagged", "tags": ["a"]}],
        steps=[
            {"id": "a1", "type": "remove_tag", "tag": "a"},
            {"id": "a2", "type": "add_tag", "tag": "b"},
        ],
    )
    b = sequence(
        id="b",
        triggers=[{"type": "contact_tagged", "tags": ["b"]}],
        steps=[
            {"id": "b1", "type": "remove_tag", "tag": "b"},
            {"id": "b2", "type": "add_tag", "tag": "a"},
        ],
    )
    # when the contact is tagged `a`
    out = decide(definitions(a, b), [created(), tagged("a")])
    # then one round: a, then b, then a refused (it would go round for ever within the
    # one moment); the next input may enroll it again
    assert [e["data"]["sequence_id"] for e in out.of("enrollment.enrolled")] == ["a", "b"]
    assert out.one("enrollment.rejected")["data"]["reason"] == "already_enrolled"
    again = decide(definitions(a, b), [created(), tagged("a"), tagged("a", time=T1)])
    assert len(again.of("enrollment.enrolled", sequence_id="a")) == 2


def test_a_step_displaced_by_an_edit_is_named_at_its_new_place() -> None:
    # given a throttle of one a minute; b waits for s2 at 15:00:40, a for s3 (at index 2)
    def sms(step: str, minutes: int) -> dict[str, Any]:
        delay = {"kind": "default", "amount": minutes, "unit": "minutes"}
        return {"id": step, "type": "send_sms", "text": step, "delay": delay}

    first = sequence(
        throttle_per_minute=1,
        steps=[{"id": "s1", "type": "send_sms", "text": "s1"}, sms("s2", 60), sms("s3", 60)],
    )
    # when s1 is dropped and s3 waits 70 minutes: a's s3 now falls at 15:00:10, in b's minute
    second = {**first, "steps": [sms("s2", 60), sms("s3", 70)]}
    inputs = [
        created("a", time="2027-07-06T12:50:10Z", tags=["hot"]),
        created("b", time="2027-07-06T14:00:40Z", tags=["hot"]),
        _apply("2027-07-06T14:10:00Z", second),
    ]
    out = decide(definitions(first), inputs, until="2027-07-06T14:20:00Z")
    # then b's step, moved on by a's earlier one, is its s2, now first in the list
    deferred = out.one("step.deferred", contact_id="b")
    assert (deferred["data"]["step_id"], deferred["data"]["reason"]) == ("s2", "throttle")
    assert out.one("step.scheduled", contact_id="a", step_id="s3", due_at="2027-07-06T15:00:10Z")


def test_a_creation_that_leaves_out_what_was_known_removes_nothing() -> None:
    # given a contact the engine knew before its creation arrived: tagged and on DNC
    untagged = sequence(
        id="untagged", steps=[], triggers=[{"type": "tag_removed", "tags": ["warm"]}]
    )
    off_dnc = sequence(id="offdnc", steps=[], triggers=[{"type": "dnc_changed", "on": "removed"}])
    known = [tagged("warm"), event("contact.dnc_changed", T0, contact_id="c-1", dnc=True)]
    # when the CRM's contact.created comes without them
    out = decide(
        definitions(untagged, off_dnc), [*known, created(time=T1, tags=["lead"], dnc=False)]
    )
    # then no removal trigger fires: a creation adds, it takes nothing away
    assert out.of("enrollment.enrolled") == []


def test_a_creation_keeps_the_tags_and_the_dnc_known_before_it() -> None:
    # given a contact tagged "warm" and put on DNC before the CRM's creation, which lists
    # other tags and no DNC (its snapshot was taken before those facts)
    known = [tagged("warm"), event("contact.dnc_changed", T0, contact_id="c-1", dnc=True)]
    inputs = [*known, created(time=T1, tags=["lead"], dnc=False)]
    # when the contacts tagged "warm" are enrolled by hand
    request = event("enrollment.requested", T2, subject="seq", sequence_id="seq", tag="warm")
    out = decide(definitions(sequence(triggers=[])), [*inputs, request])
    # then the contact is among them, and its text is held back by the DNC
    assert out.one("enrollment.enrolled")["data"]["contact_id"] == "c-1"
    assert out.one("step.skipped")["data"]["reason"] == "dnc"


def test_a_tag_known_before_the_creation_enrolls_once() -> None:
    # given a contact tagged "hot" (enrolled, a text a day later) before its creation arrives
    early = [tagged("hot"), tagged("warm", time=T1)]
    # when the creation comes, once without tags and once more (an upsert) holding "hot"
    inputs = [*early, created(time=T2), created(time=T2, tags=["hot", "new"])]
    out = decide(definitions(sequence(steps=A_DAY_LATER)), inputs)
    # then "hot" was added once, at T0: one enrollment, one step planned, no repeat refused
    assert [e["time"] for e in out.of("enrollment.enrolled")] == [T0]
    assert len(out.of("step.scheduled")) == 1
    assert out.of("enrollment.rejected") == []


def test_a_creation_sets_off_the_tags_it_adds_to_what_was_known() -> None:
    # given a contact tagged "warm" before its creation
    hot = sequence(id="hot", steps=[], triggers=[{"type": "contact_tagged", "tags": ["hot"]}])
    # when the creation adds "hot" beside it
    out = decide(definitions(hot), [tagged("warm"), created(time=T1, tags=["warm", "hot"])])
    # then "hot" sets off its trigger at the creation
    assert out.one("enrollment.enrolled", sequence_id="hot")["time"] == T1


def test_a_blank_email_is_none_in_what_the_engine_says_of_the_contact() -> None:
    # given a form's empty e-mail field: the enrollment says null, never ""
    out = decide(definitions(sequence()), [created(email=""), tagged()])
    assert out.rejected == []  # the fact was taken (a blank " " is refused as input)
    assert out.one("enrollment.enrolled")["data"]["contact_email"] is None


# --- an edit of when steps may run, while steps wait (a sequence-edit audit) ----------------

TWO_HOURS_LATER = [
    {"id": "s1", "type": "send_sms", "text": "x"},
    {
        "id": "s2",
        "type": "send_sms",
        "text": "y",
        "delay": {"kind": "default", "amount": 2, "unit": "hours"},
    },
]


def _edited(time: str, **settings: Any) -> dict[str, Any]:
    return event("sequence.applied", time, subject="sequences", sequences=[sequence(**settings)])


def _minutes_of(out: Any, step: str) -> list[str]:
    return sorted(e["time"] for e in out.of("step.executed", step_id=step))


def test_a_lowered_throttle_moves_the_places_steps_already_held() -> None:
    # given five contacts whose second step holds a place at 16:00, five a minute
    seq = sequence(steps=TWO_HOURS_LATER, throttle_per_minute=5)
    tags = [tagged(contact=f"c-{n}") for n in range(5)]
    people = [created(f"c-{n}") for n in range(5)]
    # when the throttle is lowered to one a minute before they are due
    edit = _edited("2027-07-06T15:00:00Z", steps=TWO_HOURS_LATER, throttle_per_minute=1)
    out = decide(definitions(seq), [*people, *tags, edit], until="2027-07-06T17:00:00Z")
    # then they run one a minute from 16:00
    assert _minutes_of(out, "s2") == [f"2027-07-06T16:0{n}:00Z" for n in range(5)]


def test_a_raised_throttle_lets_steps_waiting_for_room_run_sooner() -> None:
    # given four contacts tagged at once, one step a minute: three wait for 14:01-14:03
    seq = sequence(throttle_per_minute=1)
    people = [created(f"c-{n}") for n in range(4)] + [tagged(contact=f"c-{n}") for n in range(4)]
    # when the throttle is lifted half a minute later
    edit = _edited("2027-07-06T14:00:30Z", throttle_per_minute=None)
    out = decide(definitions(seq), [*people, edit], until="2027-07-06T15:00:00Z")
    # then the three run at the edit
    assert _minutes_of(out, "s1") == [T0] + ["2027-07-06T14:00:30Z"] * 3


def test_hours_widened_let_a_step_held_for_the_opening_run_at_once() -> None:
    # given a step held at 18:00 (New York) for the next opening at 09:00
    hours = {"timezone": "America/New_York", "open": "09:00", "close": "17:00"}
    late = "2027-07-06T22:00:00Z"  # 18:00 in New York
    seq = sequence(schedule=hours)
    held = decide(definitions(seq), [created(time=late), tagged(time=late)])
    assert held.one("step.deferred")["data"]["to"] == "2027-07-07T13:00:00Z"
    # when the hours are widened at 19:00
    edit = _edited("2027-07-06T23:00:00Z", schedule={**hours, "close": "23:00"})
    out = decide(definitions(seq), [created(time=late), tagged(time=late), edit])
    # then it runs at the edit, not at the old opening
    assert out.one("step.executed")["time"] == "2027-07-06T23:00:00Z"


def test_hours_narrowed_move_a_waiting_step_at_the_edit() -> None:
    hours = {"timezone": "America/New_York", "open": "09:00", "close": "17:00"}
    late = "2027-07-06T22:00:00Z"
    seq = sequence(schedule=hours)
    edit = _edited("2027-07-06T23:00:00Z", schedule={**hours, "open": "10:00"})
    inputs = [created(time=late), tagged(time=late), edit]
    out = decide(definitions(seq), inputs, until="2027-07-07T15:00:00Z")
    moves = [(e["time"], e["data"]["to"]) for e in out.of("step.deferred")]
    assert moves == [
        (late, "2027-07-07T13:00:00Z"),
        ("2027-07-06T23:00:00Z", "2027-07-07T14:00:00Z"),
    ]
    assert out.one("step.executed")["time"] == "2027-07-07T14:00:00Z"


def test_an_edit_of_a_text_alone_keeps_every_moment() -> None:
    # no new step.scheduled for anyone: the moment does not depend on the text
    seq = sequence(steps=TWO_HOURS_LATER)
    edited = [TWO_HOURS_LATER[0], {**TWO_HOURS_LATER[1], "text": "z"}]
    edit = _edited("2027-07-06T15:00:00Z", steps=edited)
    out = decide(definitions(seq), [created(), tagged(), edit], until="2027-07-06T17:00:00Z")
    assert [e["time"] for e in out.of("step.scheduled", step_id="s2")] == [T0]
    assert out.one("sms.send", step_id="s2")["data"]["body"].startswith("z")


def test_a_delay_written_another_way_schedules_nobody_again() -> None:
    # 2 hours written as 120 minutes waits as long: no new step.scheduled
    seq = sequence(steps=TWO_HOURS_LATER)
    minutes = {"kind": "default", "amount": 120, "unit": "minutes"}
    same = [TWO_HOURS_LATER[0], {**TWO_HOURS_LATER[1], "delay": minutes}]
    edit = _edited("2027-07-06T15:00:00Z", steps=same)
    out = decide(definitions(seq), [created(), tagged(), edit], until="2027-07-06T17:00:00Z")
    assert len(out.of("sequence.defined")) == 2  # the edit was taken
    assert [e["time"] for e in out.of("step.scheduled", step_id="s2")] == [T0]


def test_a_new_account_zone_moves_the_steps_of_a_schedule_without_one() -> None:
    # given an e-mail step held until 09:00 in Los Angeles, the account's zone (the
    # schedule names none, the contact has neither zone nor phone)
    hours = {"open": "09:00", "close": "17:00"}
    steps = [{"id": "s1", "type": "email_contact", "subject": "s", "body": "b"}]
    seq = sequence(schedule=hours, steps=steps)
    west = {**ACCOUNT, "timezone": "America/Los_Angeles"}
    late = "2027-07-07T03:00:00Z"
    inputs = [created(time=late, phone=None), tagged(time=late)]
    # when the account moves to New York's zone before then
    edit = event(
        "sequence.applied",
        "2027-07-07T04:00:00Z",
        subject="sequences",
        account={**ACCOUNT, "timezone": "America/New_York"},
        sequences=[seq],
    )
    out = decide(definitions(seq, account=west), [*inputs, edit], until="2027-07-08T00:00:00Z")
    # then it runs at 09:00 in New York, not in Los Angeles
    assert out.one("step.executed")["time"] == "2027-07-07T13:00:00Z"


def test_a_throttle_set_within_a_minute_counts_what_ran_in_it_unthrottled() -> None:
    # given two texts at 14:00 while the sequence had no throttle
    seq = sequence()
    people = [created(f"c-{n}") for n in range(3)]
    first = [tagged(contact="c-0"), tagged(contact="c-1")]
    # when a throttle of one a minute comes at 14:00:10, and a third contact at 14:00:30
    edit = _edited("2027-07-06T14:00:10Z", throttle_per_minute=1)
    third = tagged(contact="c-2", time="2027-07-06T14:00:30Z")
    out = decide(definitions(seq), [*people, *first, edit, third], until="2027-07-06T14:05:00Z")
    # then the third goes to the next minute: 14:00 already had its one and more
    assert _minutes_of(out, "s1") == [T0, T0, "2027-07-06T14:01:00Z"]
