"""Given/when/then tests of what steps do and when they are due (CONTRACT.md §2-3)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.helpers import ACCOUNT, decide, definitions, event, sequence

TUESDAY_10AM_NY = "2027-07-06T14:00:00Z"


def created(contact: str = "c-1", time: str = TUESDAY_10AM_NY, **profile: Any) -> dict[str, Any]:
    fields = {
        "first_name": "Ana",
        "last_name": "Diaz",
        "phone": "+12125550101",
        "email": "ana@example.com",
        "owner_id": "u-7",
        **profile,
    }
    return event("contact.created", time, contact_id=contact, **fields)


def tagged(contact: str = "c-1", time: str = TUESDAY_10AM_NY) -> dict[str, Any]:
    return event("contact.tag_added", time, contact_id=contact, tag="hot")


def one_step(step: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return definitions(sequence(steps=[{"id": "s1", **step}], **settings))


def test_each_contact_facing_step_emits_its_command() -> None:
    cases = {
        "send_mms": (
            {"type": "send_mms", "text": "See [FirstName]", "media_url": "https://x/p.png"},
            "mms.send",
        ),
        "email_contact": (
            {"type": "email_contact", "subject": "Hi [FirstName]", "body": "Body"},
            "email.send",
        ),
        "progressive_dialer": (
            {"type": "progressive_dialer", "ring_group": "rg-sales", "message": "press 1"},
            "call.dial",
        ),
        "preview_dialer": (
            {
                "type": "preview_dialer",
                "ring_group": "rg-sales",
                "message": "[AgentName] calls [FirstName] [LastName]",
            },
            "call.dial",
        ),
        "ringless_voicemail": (
            {"type": "ringless_voicemail", "recording_url": "https://x/v.mp3"},
            "voicemail.drop",
        ),
        "power_dialer": ({"type": "power_dialer", "user_id": "u-7"}, "power_dialer.added"),
    }
    for name, (step, command) in cases.items():
        out = decide(one_step(step), [created(), tagged()])
        cmd = out.one(command)
        executed = out.one("step.executed")
        assert cmd["data"]["effect_id"] == executed["data"]["effect_id"] == "fx:seq:c-1:1:s1:1", (
            name
        )
        assert cmd["data"]["step_id"] == "s1"
    dial = decide(one_step(cases["preview_dialer"][0]), [created(), tagged()]).one("call.dial")[
        "data"
    ]
    assert dial["mode"] == "preview"
    assert dial["message"] == "Sam Lee calls Ana Diaz"
    assert dial["ring_group_numbers"] == ["+12125550007"]
    mms = decide(one_step(cases["send_mms"][0]), [created(), tagged()]).one("mms.send")["data"]
    assert mms["body"] == "See Ana Reply STOP to opt out."
    assert mms["media_url"] == "https://x/p.png"


def test_a_picture_mms_without_words_sends_the_picture_and_the_opt_out_phrase() -> None:
    # given an MMS step with a picture and no text (the seed's "picture MMS message")
    picture = {"type": "send_mms", "media_url": "https://x/p.png"}
    # when a contact is enrolled
    out = decide(one_step(picture), [created(), tagged()])
    # then the sequence runs it: the picture goes out with only the compliance words
    mms = out.one("mms.send")["data"]
    assert (mms["body"], mms["media_url"]) == ("Reply STOP to opt out.", "https://x/p.png")
    assert out.one("step.executed")["data"]["effect_id"] == mms["effect_id"]


def test_a_webhook_carries_the_contacts_information_to_an_address_with_shortcodes() -> None:
    # given a webhook whose address names the contact, and a contact with a full profile
    hook = {
        "type": "send_webhook",
        "url": "https://hooks.example.com/lead?name=[FirstName]&s=[State]&f[x]=[Phone]",
    }
    contact = created(
        state="NY", lead_source="expo", tracking_number="+12125550199", line_id="line-1"
    )
    # when the step runs
    data = decide(one_step(hook), [contact, tagged()]).one("webhook.post")["data"]
    # then the shortcodes are filled in, percent-encoded; an unknown bracket stays
    assert data["url"] == "https://hooks.example.com/lead?name=Ana&s=NY&f[x]=%2B12125550101"
    # and the payload has the contact's information
    profile = data["payload"]["contact"]
    assert {k: profile[k] for k in ("first_name", "last_name", "phone", "email")} == {
        "first_name": "Ana",
        "last_name": "Diaz",
        "phone": "+12125550101",
        "email": "ana@example.com",
    }
    assert (profile["state"], profile["lead_source"], profile["tracking_number"]) == (
        "NY",
        "expo",
        "+12125550199",
    )
    assert (profile["line_id"], profile["owner_id"], profile["tags"]) == ("line-1", "u-7", ["hot"])


def test_a_text_or_call_carries_the_close_of_the_contacts_quiet_hours() -> None:
    # given a contact in New York reached at 10:00 on a Tuesday, quiet hours 08:00-21:00
    steps = [
        {"id": "s1", "type": "send_sms", "text": "x"},
        {"id": "s2", "type": "email_contact", "subject": "s", "body": "b"},
        {"id": "s3", "type": "ringless_voicemail", "recording_url": "https://x/vm.mp3"},
    ]
    out = decide(
        definitions(sequence(steps=steps)), [created(timezone="America/New_York"), tagged()]
    )
    # then what reaches them by phone must go out before 21:00 there; the e-mail has no limit
    assert out.one("sms.send")["data"]["send_before"] == "2027-07-07T01:00:00Z"
    assert out.one("voicemail.drop")["data"]["send_before"] == "2027-07-07T01:00:00Z"
    assert "send_before" not in out.one("email.send")["data"]


def test_user_and_system_facing_steps_emit_changes_and_notices() -> None:
    cases = {
        "add_tag": ({"type": "add_tag", "tag": "t"}, "contact.tag_added", {"tag": "t"}),
        "remove_tag": ({"type": "remove_tag", "tag": "hot"}, "contact.tag_removed", {"tag": "hot"}),
        "change_disposition": (
            {"type": "change_disposition", "disposition": "won"},
            "contact.disposition_changed",
            {"disposition": "won"},
        ),
        "mark_dnc": ({"type": "mark_dnc"}, "contact.dnc_changed", {"dnc": True}),
        "change_owner": (
            {"type": "change_owner", "owner_id": "u-7"},
            "contact.updated",
            {"owner_id": "u-7"},
        ),
        "add_line": (
            {"type": "add_line", "line_id": "line-1"},
            "contact.updated",
            {"line_id": "line-1"},
        ),
        "change_lead_source": (
            {"type": "change_lead_source", "lead_source": "expo"},
            "contact.updated",
            {"lead_source": "expo"},
        ),
        "remove_from_power_dialer": (
            {"type": "remove_from_power_dialer", "all_users": True},
            "power_dialer.removed",
            {"all_users": True},
        ),
        "send_webhook": (
            {"type": "send_webhook", "url": "https://hooks.example.com/x"},
            "webhook.post",
            {"url": "https://hooks.example.com/x"},
        ),
        "sms_ring_group": (
            {"type": "sms_ring_group", "ring_group": "rg-sales", "text": "New lead [FirstName]"},
            "notify.sms",
            {"to": "rg-sales"},
        ),
        "email_ring_group": (
            {
                "type": "email_ring_group",
                "ring_group": "rg-sales",
                "subject": "Lead",
                "body": "See",
            },
            "notify.email",
            {"to": "rg-sales"},
        ),
    }
    for name, (step, kind, data) in cases.items():
        out = decide(one_step(step), [created(), tagged()])
        assert out.one(kind, **data)["data"]["sequence_id"] == "seq", name
        assert out.one("step.executed")


def test_dnc_and_opt_out_skip_contact_facing_steps_but_not_tags() -> None:
    seq = sequence(
        steps=[
            {"id": "sms", "type": "send_sms", "text": "x"},
            {"id": "mail", "type": "email_contact", "subject": "s", "body": "b"},
            {"id": "tag", "type": "add_tag", "tag": "seen"},
        ],
        remove_on_opt_out=False,
    )
    dnc = event("contact.dnc_changed", TUESDAY_10AM_NY, contact_id="c-1", dnc=True)
    out = decide(definitions(seq), [created(), dnc, tagged()])
    assert [e["data"]["reason"] for e in out.of("step.skipped")] == ["dnc", "dnc"]
    assert out.one("contact.tag_added", tag="seen")
    opted = event("contact.opted_out", TUESDAY_10AM_NY, contact_id="c-1", channel="sms")
    out = decide(definitions(seq), [created(), opted, tagged()])
    assert out.one("step.skipped", step_id="sms")["data"]["reason"] == "opted_out"
    assert out.one("email.send")


def test_a_dnc_one_sequences_step_makes_holds_for_another_started_by_the_same_input() -> None:
    # given two sequences the same tag starts: the first marks the contact DNC at once
    mark = sequence(id="a-mark", steps=[{"id": "m1", "type": "mark_dnc"}])
    text = sequence(id="b-text", steps=[{"id": "t1", "type": "send_sms", "text": "Hello"}])
    # when the tag comes
    out = decide(definitions(mark, text), [created(), tagged()])
    # then the other sequence's text, decided after the DNC, is skipped, not sent
    assert out.one("contact.dnc_changed")["data"]["dnc"] is True
    assert out.of("sms.send") == []
    assert out.one("step.skipped", sequence_id="b-text")["data"]["reason"] == "dnc"


def test_an_owner_one_sequences_step_sets_is_the_agent_of_another_started_with_it() -> None:
    account = {
        **ACCOUNT,
        "users": {**ACCOUNT["users"], "u-8": {"name": "Kim Park", "phone": "+12125550008"}},
    }
    give = sequence(id="a-give", steps=[{"id": "o1", "type": "change_owner", "owner_id": "u-8"}])
    text = sequence(
        id="b-text", steps=[{"id": "t1", "type": "send_sms", "text": "[AgentName] here"}]
    )
    out = decide(definitions(give, text, account=account), [created(), tagged()])
    assert out.one("sms.send", sequence_id="b-text")["data"]["body"].startswith("Kim Park here")


def test_an_sms_opt_out_skips_mms_too_but_not_email() -> None:
    seq = sequence(
        steps=[
            {"id": "sms", "type": "send_sms", "text": "x"},
            {"id": "mms", "type": "send_mms", "text": "x", "media_url": "https://x/p.png"},
            {"id": "mail", "type": "email_contact", "subject": "s", "body": "b"},
        ],
        remove_on_opt_out=False,
    )
    opted = event("contact.opted_out", TUESDAY_10AM_NY, contact_id="c-1", channel="sms")
    out = decide(definitions(seq), [created(), opted, tagged()])
    skipped = {e["data"]["step_id"]: e["data"]["reason"] for e in out.of("step.skipped")}
    assert skipped == {"sms": "opted_out", "mms": "opted_out"}
    assert out.one("email.send")


def test_missing_phone_and_email_skip_and_the_next_step_counts_from_the_skip() -> None:
    seq = sequence(
        steps=[
            {"id": "sms", "type": "send_sms", "text": "x"},
            {
                "id": "mail",
                "type": "email_contact",
                "subject": "s",
                "body": "b",
                "delay": {"kind": "default", "amount": 30, "unit": "minutes"},
            },
        ]
    )
    bare = event(
        "contact.created",
        TUESDAY_10AM_NY,
        contact_id="c-1",
        first_name="Bo",
        timezone="America/New_York",
    )
    out = decide(definitions(seq), [bare, tagged()], until="2027-07-06T16:00:00Z")
    assert out.one("step.skipped", step_id="sms")["data"]["reason"] == "missing_phone"
    skipped_mail = out.one("step.skipped", step_id="mail")
    assert skipped_mail["data"]["reason"] == "missing_email"
    assert skipped_mail["time"] == "2027-07-06T14:30:00Z"


@pytest.mark.parametrize(
    "night",
    [
        "2027-07-07T01:00:00Z",  # 21:00 in New York: the quiet hours run [08:00, 21:00)
        "2027-07-07T02:00:00Z",  # 22:00
    ],
)
def test_quiet_hours_hold_an_sms_but_not_an_email(night: str) -> None:
    sms = decide(
        one_step({"type": "send_sms", "text": "x"}),
        [created(time=night), tagged(time=night)],
        until="2027-07-08T00:00:00Z",
    )
    deferred = sms.one("step.deferred")
    assert deferred["data"]["reason"] == "quiet_hours"
    assert deferred["data"]["to"] == "2027-07-07T12:00:00Z"  # 08:00 EDT
    assert sms.one("sms.send")["time"] == "2027-07-07T12:00:00Z"
    mail = decide(
        one_step({"type": "email_contact", "subject": "s", "body": "b"}),
        [created(time=night), tagged(time=night)],
    )
    assert mail.of("step.deferred") == []
    assert mail.one("email.send")["time"] == night


def test_holiday_reason_on_a_weekday_holiday() -> None:
    july_5_2027 = "2027-07-05T14:00:00Z"  # Monday, Jul 4 observed
    defs = definitions(
        sequence(process_on="business_days", steps=[{"id": "s1", "type": "send_sms", "text": "x"}])
    )
    out = decide(
        defs, [created(time=july_5_2027), tagged(time=july_5_2027)], until="2027-07-07T00:00:00Z"
    )
    deferred = out.one("step.deferred")
    assert deferred["data"]["reason"] == "holiday"
    assert deferred["data"]["to"] == "2027-07-06T14:00:00Z"


def test_throttle_moves_the_rest_to_the_next_minutes_in_order() -> None:
    defs = definitions(sequence(throttle_per_minute=2))
    inputs = [created(f"c-{i}") for i in range(5)] + [tagged(f"c-{i}") for i in range(5)]
    out = decide(defs, inputs, until="2027-07-06T14:05:00Z")
    sent = [(e["data"]["contact_id"], e["time"]) for e in out.of("sms.send")]
    assert sent == [
        ("c-0", "2027-07-06T14:00:00Z"),
        ("c-1", "2027-07-06T14:00:00Z"),
        ("c-2", "2027-07-06T14:01:00Z"),
        ("c-3", "2027-07-06T14:01:00Z"),
        ("c-4", "2027-07-06T14:02:00Z"),
    ]
    assert {e["data"]["reason"] for e in out.of("step.deferred")} == {"throttle"}


def test_a_step_settled_for_an_unreachable_contact_holds_no_throttle_place() -> None:
    # given a throttle of 1 and two contacts tagged at night, c-x first while on DNC, both
    # steps held to the 08:00 quiet-hours start; c-x leaves DNC before then
    night = "2027-07-07T02:00:00Z"
    inputs = [
        created("c-x", time=night, dnc=True),
        created("c-y", time=night, phone="+12125550102"),
        tagged("c-x", time=night),
        tagged("c-y", time="2027-07-07T02:00:10Z"),
        event("contact.dnc_changed", "2027-07-07T03:00:00Z", contact_id="c-x", dnc=False),
    ]
    out = decide(definitions(sequence(throttle_per_minute=1)), inputs, until="2027-07-07T13:00:00Z")
    # then c-y holds 08:00 (README: places go to steps that would run as they are settled),
    # and c-x, reachable again, finds the minute full and moves on a second time
    deferred = [(e["data"]["contact_id"], e["data"]["reason"]) for e in out.of("step.deferred")]
    assert deferred == [("c-x", "quiet_hours"), ("c-y", "quiet_hours"), ("c-x", "throttle")]
    sent = [(e["data"]["contact_id"], e["time"]) for e in out.of("sms.send")]
    assert sent == [("c-y", "2027-07-07T12:00:00Z"), ("c-x", "2027-07-07T12:01:00Z")]


def test_time_of_day_delay_in_the_contacts_zone() -> None:
    seq = sequence(
        steps=[
            {"id": "s1", "type": "send_sms", "text": "x"},
            {
                "id": "s2",
                "type": "send_sms",
                "text": "y",
                "delay": {"kind": "time_of_day", "days": 0, "at": "09:00"},
            },
        ]
    )
    out = decide(
        definitions(seq),
        [created(timezone="America/Los_Angeles"), tagged()],
        until="2027-07-08T00:00:00Z",
    )
    # 07:00 in Los Angeles: 09:00 has not passed, so the same day.
    assert out.one("step.scheduled", step_id="s2")["data"]["due_at"] == "2027-07-06T16:00:00Z"


def test_round_robin_is_fair_and_owner_gets_notified() -> None:
    seq = sequence(steps=[{"id": "rr", "type": "round_robin_owner", "owners": ["u-7", "u-8"]}])
    account = {
        **ACCOUNT,
        "users": {**ACCOUNT["users"], "u-8": {"name": "Kim", "phone": "+12125550008"}},
    }
    inputs = [created(f"c-{i}", owner_id="u-0") for i in range(4)]
    inputs += [tagged(f"c-{i}") for i in range(4)]
    out = decide(definitions(seq, account=account), inputs, until="2027-07-06T14:02:00Z")
    owners = [e["data"]["owner_id"] for e in out.of("contact.updated")]
    assert owners == ["u-7", "u-8", "u-7", "u-8"]
    notices = out.of("notify.sms")
    assert len(notices) == 4
    assert {n["data"]["to"] for n in notices} == {"u-7", "u-8"}
    assert {n["data"]["ring_group_numbers"][0] for n in notices} == {"+12125550007", "+12125550008"}


def test_more_than_twenty_assignments_in_a_minute_become_one_summary() -> None:
    seq = sequence(steps=[{"id": "own", "type": "change_owner", "owner_id": "u-7"}])
    inputs = [created(f"c-{i}", owner_id="u-0") for i in range(21)]
    inputs += [tagged(f"c-{i}") for i in range(21)]
    out = decide(definitions(seq), inputs, until="2027-07-06T14:02:00Z")
    notices = out.of("notify.sms")
    assert len(notices) == 1
    assert "group of contacts" in notices[0]["data"]["body"]


def test_each_minutes_summary_has_an_effect_id_of_its_own() -> None:
    # Effects drop a command whose effect_id they have seen: the second minute's summary
    # must not look like a repeat of the first's.
    seq = sequence(steps=[{"id": "own", "type": "change_owner", "owner_id": "u-7"}])
    minutes = [TUESDAY_10AM_NY, "2027-07-06T14:01:00Z"]
    inputs = [created(f"c-{i}", owner_id="u-0") for i in range(42)]
    inputs += [tagged(f"c-{i}", minutes[i // 21]) for i in range(42)]
    out = decide(definitions(seq), inputs, until="2027-07-06T14:05:00Z")
    summaries = out.of("notify.sms")
    assert len(summaries) == 2
    assert len({n["data"]["effect_id"] for n in summaries}) == 2


def test_an_owner_given_a_contact_they_already_own_is_not_told() -> None:
    # The seed: "When a new contact is assigned, the new owner will receive an SMS".
    seq = sequence(steps=[{"id": "own", "type": "change_owner", "owner_id": "u-7"}])
    inputs = [created("c-1", owner_id="u-7"), created("c-2", owner_id="u-0", phone="+12125550102")]
    inputs += [tagged("c-1"), tagged("c-2")]
    out = decide(definitions(seq), inputs, until="2027-07-06T14:02:00Z")
    assert {e["subject"] for e in out.of("contact.updated", owner_id="u-7")} == {"c-1", "c-2"}
    notice = out.one("notify.sms")
    assert "+12125550102" in notice["data"]["body"]
    assert len(out.of("enrollment.completed")) == 2


def test_without_a_line_of_its_own_an_owner_is_told_from_the_accounts_lowest_line() -> None:
    # given a sequence of owner changes only, which needs no outbound line to be valid
    steps = [{"id": "own", "type": "change_owner", "owner_id": "u-7"}]
    # (lines in an order a worker's stored definitions would not keep)
    account = {**ACCOUNT, "lines": {"line-2": "+12125550002", "line-1": "+12125550000"}}
    seq = sequence(steps=steps, outbound_line=None)
    inputs = [created("c-1", owner_id="u-0"), tagged("c-1")]
    # when a contact is assigned
    out = decide(definitions(seq, account=account), inputs, until="2027-07-06T14:02:00Z")
    # then the owner is texted from a line the account has, the same in any runner
    notice = out.one("notify.sms")["data"]
    assert (notice["from_line"], notice["from_number"]) == ("line-1", "+12125550000")
    # and with a line of its own, the sequence's
    seq = sequence(steps=steps, outbound_line="line-2")
    out = decide(definitions(seq, account=account), inputs, until="2027-07-06T14:02:00Z")
    assert out.one("notify.sms")["data"]["from_line"] == "line-2"


def test_lead_email_creates_and_enrolls_a_contact() -> None:
    seq = sequence(intake_address="leads-1@intake.example.com", triggers=[])
    mail = event(
        "lead.email_received",
        TUESDAY_10AM_NY,
        subject="intake",
        to="leads-1@intake.example.com",
        body="First Name: Jo\nLast Name: Park\nPhone: (212) 555-0199\nEmail: jo@example.com",
    )
    out = decide(definitions(seq), [mail])
    contact = out.one("contact.created")
    assert contact["data"]["phone"] == "+12125550199"
    assert out.one("enrollment.enrolled")["data"]["via"] == "intake"
    assert out.one("sms.send")["data"]["to"] == "+12125550199"


def test_a_lead_without_phone_or_email_is_rejected_with_a_reason() -> None:
    seq = sequence(intake_address="leads-1@intake.example.com", triggers=[])
    mail = event(
        "lead.email_received",
        TUESDAY_10AM_NY,
        subject="lead",
        to="leads-1@intake.example.com",
        body="First Name: Jo",
    )
    out = decide(definitions(seq), [mail])
    rejected = out.one("lead.rejected")["data"]
    assert "phone" in rejected["reason"]
    # the sequence is named: read models file the row without looking the address up
    assert rejected["sequence_id"] == seq["id"]
    assert out.of("enrollment.enrolled") == []


def test_replay_is_byte_identical() -> None:
    defs = definitions(sequence(throttle_per_minute=1))
    inputs = [created(f"c-{i}") for i in range(3)] + [tagged(f"c-{i}") for i in range(3)]
    assert decide(defs, inputs).events == decide(defs, inputs).events


def test_removal_from_one_power_dialer_list_names_the_owner_when_no_user_is_given() -> None:
    out = decide(
        one_step({"type": "remove_from_power_dialer", "all_users": False}),
        [created(owner_id="u-7"), tagged()],
    )
    removed = out.one("power_dialer.removed")["data"]
    assert (removed["user_id"], removed["all_users"]) == ("u-7", False)
    everyone = decide(one_step({"type": "remove_from_power_dialer"}), [created(), tagged()])
    removed = everyone.one("power_dialer.removed")["data"]
    assert (removed["user_id"], removed["all_users"]) == (None, True)


def test_a_lead_resent_without_a_source_keeps_the_one_it_had() -> None:
    seq = sequence(intake_address="leads-1@intake.example.com", triggers=[])

    def mail(body: str) -> dict[str, Any]:
        return event(
            "lead.email_received", TUESDAY_10AM_NY, subject="intake",
            to="leads-1@intake.example.com", body=body,
        )  # fmt: skip

    first = mail("First Name: Jo\nEmail: jo@example.com\nLead Source: Zillow")
    again = mail("First Name: Jo\nEmail: jo@example.com")
    out = decide(definitions(seq), [first, again])
    assert out.one("contact.created")["data"]["lead_source"] == "Zillow"
    # nothing changed: no update (its history row would say each field "changed")
    assert out.of("contact.updated") == []
    assert len(out.of("enrollment.enrolled")) == 2  # still enrolled again, by intake

    # with a new phone, the update names the phone alone
    moved = mail("First Name: Jo\nEmail: jo@example.com\nPhone: (212) 555-0199")
    out = decide(definitions(seq), [first, moved])
    assert out.one("contact.updated")["data"] == {
        "contact_id": out.one("contact.created")["data"]["contact_id"],
        "phone": "+12125550199",
        "sequence_id": seq["id"],
    }


def test_an_intake_sequence_that_also_triggers_on_creation_enrolls_a_lead_once() -> None:
    # One step that runs at once: the intake enrollment is complete before the triggers
    # run, and the sequence's own contact_created trigger must not enroll the lead again.
    seq = sequence(
        intake_address="leads-1@intake.example.com", triggers=[{"type": "contact_created"}]
    )
    mail = event(
        "lead.email_received", TUESDAY_10AM_NY, subject="intake",
        to="leads-1@intake.example.com", body="First Name: Jo\nPhone: (212) 555-0199",
    )  # fmt: skip
    out = decide(definitions(seq), [mail])
    assert [e["data"]["via"] for e in out.of("enrollment.enrolled")] == ["intake"]
    assert len(out.of("sms.send")) == 1


def test_a_power_dialer_step_with_no_user_fills_the_owners_list() -> None:
    out = decide(one_step({"type": "power_dialer"}), [created(), tagged()])
    assert out.one("power_dialer.added")["data"]["user_id"] == "u-7"


@pytest.mark.parametrize(
    "step",
    [
        {"type": "power_dialer"},
        {"type": "remove_from_power_dialer", "all_users": False},
    ],
)
def test_a_power_dialer_step_with_no_user_for_a_contact_with_no_owner_is_skipped(
    step: dict[str, Any],
) -> None:
    # given a contact nobody owns, and a step that would use the owner's list
    unowned = created()
    del unowned["data"]["owner_id"]
    # when the step falls due
    out = decide(one_step({**step, "id": "s1"}), [unowned, tagged()])
    # then it is skipped with a reason, not reported done for an effect that could only fail
    assert out.of("power_dialer.added") == out.of("power_dialer.removed") == []
    assert out.of("step.executed") == []
    assert out.one("step.skipped")["data"]["reason"] == "missing_owner"
    assert len(out.of("enrollment.completed")) == 1
    # a step naming its user, or a removal from every list, needs no owner
    named = decide(one_step({**step, "user_id": "u-7"}), [unowned, tagged()])
    assert named.of("step.skipped") == []
    everyone = decide(one_step({"type": "remove_from_power_dialer"}), [unowned, tagged()])
    assert everyone.one("power_dialer.removed")["data"]["all_users"] is True


def test_a_ring_group_text_carries_the_contact_and_no_opt_out_phrase() -> None:
    # The opt-out phrase is for texts to contacts; the seed's ring-group text goes "with the
    # enrolled contact's information" to the team.
    step = {"type": "sms_ring_group", "ring_group": "rg-sales", "text": "New lead [FirstName]"}
    out = decide(one_step(step), [created(), tagged()])
    body = out.one("notify.sms")["data"]["body"]
    assert body == "New lead Ana\nContact: Ana Diaz, +12125550101, ana@example.com"


def test_ring_group_members_sharing_a_phone_or_address_are_notified_once() -> None:
    # given a ring group of three, two of whom share a desk phone and one an address
    users = {
        "u-7": {"name": "Sam Lee", "phone": "+12125550007", "email": "desk@example.com"},
        "u-8": {"name": "Kim Roe", "phone": "+12125550007", "email": "kim@example.com"},
        "u-9": {"name": "Lu Ma", "phone": "+12125550009", "email": "desk@example.com"},
    }
    account = {**ACCOUNT, "users": users, "ring_groups": {"rg-sales": ["u-7", "u-8", "u-9"]}}
    steps = [
        {"id": "s1", "type": "sms_ring_group", "ring_group": "rg-sales", "text": "New lead"},
        {
            "id": "s2",
            "type": "email_ring_group",
            "ring_group": "rg-sales",
            "subject": "Lead",
            "body": "New lead",
        },
    ]
    defs = definitions(sequence(steps=steps), account=account)
    # when a contact runs through both steps
    out = decide(defs, [created(), tagged()])
    # then each number and each address is written once, in the group's order
    text = out.one("notify.sms")["data"]
    mail = out.one("notify.email")["data"]
    assert text["ring_group_numbers"] == ["+12125550007", "+12125550009"]
    assert mail["ring_group_emails"] == ["desk@example.com", "kim@example.com"]


def test_a_ring_group_text_needs_the_sequences_outbound_line() -> None:
    step = {"type": "sms_ring_group", "ring_group": "rg-sales", "text": "New lead"}
    out = decide(one_step(step, outbound_line=None), [created(), tagged()])
    defined = out.one("sequence.defined")["data"]
    assert defined["status"] == "invalid"
    assert any("outbound_line" in problem for problem in defined["problems"])
    assert out.one("enrollment.rejected")["data"]["reason"] == "sequence_invalid"


def test_round_robin_turns_per_step() -> None:
    # given two round-robin steps over the same owners: each keeps its own turn
    account = {
        **ACCOUNT,
        "users": {**ACCOUNT["users"], "u-8": {"name": "Kim", "phone": "+12125550008"}},
    }
    owners = ["u-7", "u-8"]
    seq = sequence(
        steps=[
            {"id": "r1", "type": "round_robin_owner", "owners": owners},
            {"id": "r2", "type": "round_robin_owner", "owners": owners},
        ]
    )
    later = "2027-07-06T14:05:00Z"
    inputs = [created("c-1"), tagged("c-1"), created("c-2", time=later), tagged("c-2", later)]
    out = decide(definitions(seq, account=account), inputs)
    first = [e["data"] for e in out.of("contact.updated", step_id="r1")]
    assert [(d["contact_id"], d["owner_id"]) for d in first] == [("c-1", "u-7"), ("c-2", "u-8")]


@pytest.mark.parametrize(
    ("phone", "dropped"),
    [
        ("+12125550101", True),
        ("+14165550101", True),
        ("+17875550123", True),  # Puerto Rico, a US territory
        ("+442071838750", False),
        ("+18765550123", False),  # Jamaica: +1, the North American plan, but not the US
        ("+12425550123", False),  # the Bahamas
    ],
)
def test_a_ringless_voicemail_reaches_the_us_and_canada_only(phone: str, dropped: bool) -> None:
    # given a voicemail step and a contact in New York, Toronto, San Juan, London, Kingston
    # or Nassau
    steps = [
        {"id": "s1", "type": "ringless_voicemail", "recording_url": "https://x/vm.mp3"},
        {"id": "s2", "type": "add_tag", "tag": "after"},
    ]
    out = decide(
        definitions(sequence(steps=steps)),
        [created(phone=phone, timezone="America/New_York"), tagged()],
    )
    # then a number outside the US and Canada is skipped, with its reason, and the next
    # step runs on
    assert len(out.of("voicemail.drop")) == (1 if dropped else 0)
    skipped = out.of("step.skipped", step_id="s1")
    assert [e["data"]["reason"] for e in skipped] == ([] if dropped else ["outside_us_canada"])
    assert out.one("contact.tag_added", tag="after")
