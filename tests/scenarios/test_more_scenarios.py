"""The `more_*` scenarios: each test checks the engine's output against its expected.md.

The prose was written first, from CONTRACT.md, the seed and the README; where those leave a
point open, the expected.md says so and the test pins only what every reading shares.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from tests.scenarios.harness import Replay


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sent(run: Replay, kind: str, contact: str, sequence: str) -> list[str]:
    return run.times(kind, contact_id=contact, sequence_id=sequence)


# --- more_holiday_switch: Labor Day 2027 with and without `run_on_holidays` -------------


@pytest.fixture(scope="module")
def labor(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_holiday_switch")


@pytest.mark.parametrize(
    ("sequence", "s1", "s2", "s2_deferral"),
    [
        (
            "biz-closed",
            "2027-09-03T20:00:00Z",
            "2027-09-07T13:30:00Z",
            [("non_processing_day", "2027-09-04T13:30:00Z", "2027-09-07T13:30:00Z")],
        ),
        (
            "biz-open",
            "2027-09-03T20:00:00Z",
            "2027-09-06T13:30:00Z",
            [("non_processing_day", "2027-09-04T13:30:00Z", "2027-09-06T13:30:00Z")],
        ),
        ("daily", "2027-09-03T20:00:00Z", "2027-09-04T13:30:00Z", []),
    ],
)
def test_a_friday_lead_meets_the_long_weekend(
    labor: Replay, sequence: str, s1: str, s2: str, s2_deferral: list[tuple[str, str, str]]
) -> None:
    assert _sent(labor, "sms.send", "c-fri", sequence) == [s1]
    assert _sent(labor, "email.send", "c-fri", sequence) == [s2]
    assert labor.deferrals("c-fri", "s2", sequence) == s2_deferral
    assert labor.deferrals("c-fri", "s1", sequence) == []


@pytest.mark.parametrize(
    ("sequence", "sms_at", "mail_at"),
    [
        ("biz-closed", "2027-09-07T13:00:00Z", "2027-09-08T13:30:00Z"),
        ("biz-open", "2027-09-06T13:00:00Z", "2027-09-07T13:30:00Z"),
        ("daily", "2027-09-06T13:00:00Z", "2027-09-07T13:30:00Z"),
    ],
)
def test_before_opening_on_labor_day(
    labor: Replay, sequence: str, sms_at: str, mail_at: str
) -> None:
    assert labor.deferrals("c-early", "s1", sequence) == [
        ("outside_hours", "2027-09-06T11:00:00Z", sms_at)
    ]
    assert _sent(labor, "sms.send", "c-early", sequence) == [sms_at]
    assert _sent(labor, "email.send", "c-early", sequence) == [mail_at]
    assert labor.deferrals("c-early", "s2", sequence) == []


def test_inside_the_hours_on_labor_day(labor: Replay) -> None:
    assert labor.deferrals("c-mon", "s1", "biz-closed") == [
        ("holiday", "2027-09-06T14:00:00Z", "2027-09-07T14:00:00Z")
    ]
    assert _sent(labor, "sms.send", "c-mon", "biz-closed") == ["2027-09-07T14:00:00Z"]
    assert _sent(labor, "email.send", "c-mon", "biz-closed") == ["2027-09-08T13:30:00Z"]
    for sequence in ("biz-open", "daily"):
        assert labor.deferrals("c-mon", "s1", sequence) == []
        assert _sent(labor, "sms.send", "c-mon", sequence) == ["2027-09-06T14:00:00Z"]
        assert _sent(labor, "email.send", "c-mon", sequence) == ["2027-09-07T13:30:00Z"]


def test_the_closed_sequence_sends_nothing_on_labor_day(labor: Replay) -> None:
    sends = labor.of("sms.send", sequence_id="biz-closed") + labor.of(
        "email.send", sequence_id="biz-closed"
    )
    assert sends
    assert not [e for e in sends if e["time"].startswith("2027-09-06")]
    assert len(labor.of("enrollment.completed")) == 9


# --- more_copy_sequence: copy, enroll in the copy, delete the original ------------------


@pytest.fixture(scope="module")
def copy(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_copy_sequence")


def test_the_copy_is_a_new_active_sequence(copy: Replay) -> None:
    defined = copy.one("sequence.defined", sequence_id="nurture-b")
    assert defined["time"] == "2027-07-06T14:10:00Z"
    assert defined["data"]["name"] == "Nurture (variant B)"
    assert defined["data"]["status"] == "active"
    assert defined["data"]["steps_count"] == 2
    # the copy itself enrolls nobody
    assert copy.times("enrollment.enrolled", sequence_id="nurture-b")[0] == ("2027-07-06T14:20:00Z")


def test_the_copy_keeps_the_trigger(copy: Replay) -> None:
    enrolled = copy.of("enrollment.enrolled", contact_id="c-2", via="contact_tagged")
    assert sorted(e["data"]["sequence_id"] for e in enrolled) == ["nurture", "nurture-b"]
    bodies = [e["data"]["body"] for e in copy.of("sms.send", contact_id="c-2")]
    assert bodies == ["Hi Ben Reply STOP to opt out."] * 2
    assert copy.times("sms.send", contact_id="c-2") == ["2027-07-06T14:20:00Z"] * 2


def test_enrolling_by_hand_in_the_copy(copy: Replay) -> None:
    manual = copy.one("enrollment.enrolled", sequence_id="nurture-b", contact_id="c-1")
    assert (manual["time"], manual["data"]["via"]) == ("2027-07-06T14:30:00Z", "manual")
    rejected = copy.one("enrollment.rejected", sequence_id="nurture-b")
    assert rejected["data"]["contact_id"] == "c-2"
    assert (rejected["time"], rejected["data"]["reason"]) == (
        "2027-07-06T14:40:00Z",
        "already_enrolled",
    )


def test_a_copy_onto_a_taken_id_is_refused(copy: Replay) -> None:
    refused = copy.one("sequence.command_rejected")
    assert refused["time"] == "2027-07-06T14:50:00Z"
    assert refused["data"]["reason"] == "id_taken"
    assert len(copy.of("sequence.defined", sequence_id="nurture-b")) == 1


def test_deleting_the_original_leaves_the_copy(copy: Replay) -> None:
    gone = copy.of("enrollment.disenrolled", sequence_id="nurture")
    assert sorted(e["data"]["contact_id"] for e in gone) == ["c-1", "c-2"]
    assert {(e["time"], e["data"]["reason"]) for e in gone} == {
        ("2027-07-06T15:00:00Z", "sequence_deleted")
    }
    copy.none("enrollment.disenrolled", sequence_id="nurture-b")
    c3 = copy.one("enrollment.enrolled", contact_id="c-3")
    assert c3["data"]["sequence_id"] == "nurture-b"
    copy.none("email.send", sequence_id="nurture")
    mails = copy.of("email.send", sequence_id="nurture-b")
    assert [(e["data"]["contact_id"], e["time"], e["data"]["subject"]) for e in mails] == [
        ("c-2", "2027-07-07T14:20:00Z", "Still interested, Ben?"),
        ("c-1", "2027-07-07T14:30:00Z", "Still interested, Ana?"),
        ("c-3", "2027-07-07T16:00:00Z", "Still interested, Cy?"),
    ]
    assert len(copy.of("enrollment.completed", sequence_id="nurture-b")) == 3


# --- more_redefinition: a second definition changes a waiting step's delay --------------


@pytest.fixture(scope="module")
def redefined(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_redefinition")


def test_the_sequence_is_defined_again(redefined: Replay) -> None:
    again = redefined.of("sequence.defined", sequence_id="followup")[-1]
    assert again["time"] == "2027-07-06T16:00:00Z"
    assert (again["data"]["name"], again["data"]["status"]) == ("Follow up (faster)", "active")


@pytest.mark.parametrize(
    ("contact", "due", "s2_at", "s3_at", "subject"),
    [
        ("c-1", "2027-07-06T17:00:00Z", "2027-07-06T17:00:00Z", "18:00", "Notes for Ana"),
        ("c-3", "2027-07-06T15:00:00Z", "2027-07-06T16:00:00Z", "17:00", "Notes for Cy"),
    ],
)
def test_a_waiting_step_whose_delay_changed_is_scheduled_anew(
    redefined: Replay, contact: str, due: str, s2_at: str, s3_at: str, subject: str
) -> None:
    dues = [
        e["data"]["due_at"]
        for e in redefined.of("step.scheduled", contact_id=contact, step_id="s2")
    ]
    assert dues[-1] == due
    assert len(dues) == 2  # the old 2-day moment, then the new one
    assert redefined.times("sms.send", contact_id=contact, step_id="s2") == [s2_at]
    mail = redefined.one("email.send", contact_id=contact)
    assert (mail["time"], mail["data"]["subject"]) == (f"2027-07-06T{s3_at}:00Z", subject)


def test_a_contact_enrolled_after_the_edit_follows_it(redefined: Replay) -> None:
    assert redefined.times("sms.send", contact_id="c-2") == [
        "2027-07-06T16:30:00Z",
        "2027-07-06T19:30:00Z",
    ]
    assert redefined.times("email.send", contact_id="c-2") == ["2027-07-06T20:30:00Z"]


def test_the_old_moments_fire_nothing(redefined: Replay) -> None:
    for contact in ("c-1", "c-2", "c-3"):
        assert len(redefined.of("sms.send", contact_id=contact)) == 2
        assert len(redefined.of("email.send", contact_id=contact)) == 1
    late = [e for e in redefined.events if e["time"] > "2027-07-06T20:30:00Z"]
    assert late == []


# --- more_dnc_across_sequences: mark_dnc in one sequence silences another --------------


@pytest.fixture(scope="module")
def dnc(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_dnc_across_sequences")


def test_the_mark_dnc_step_is_fed_back(dnc: Replay) -> None:
    marked = dnc.one("contact.dnc_changed", contact_id="c-1")
    assert (marked["time"], marked["source"], marked["data"]["dnc"]) == (
        "2027-07-06T14:40:00Z",
        "dripstream",
        True,
    )
    logged = dnc.one("enrollment.enrolled", sequence_id="dnc-log")
    assert (logged["time"], logged["data"]["contact_id"], logged["data"]["via"]) == (
        "2027-07-06T14:40:00Z",
        "c-1",
        "dnc_changed",
    )
    hook = dnc.one("webhook.post", contact_id="c-1")
    assert (hook["time"], hook["data"]["url"]) == (
        "2027-07-06T14:40:00Z",
        "https://hooks.example.com/dnc",
    )


def test_the_other_sequence_stops_facing_the_contact(dnc: Replay) -> None:
    skipped = dnc.of("step.skipped", contact_id="c-1", sequence_id="drip")
    assert [(e["data"]["step_id"], e["time"], e["data"]["reason"]) for e in skipped] == [
        ("t2", "2027-07-06T15:00:00Z", "dnc"),
        ("t3", "2027-07-06T16:00:00Z", "dnc"),
        ("t4", "2027-07-06T16:00:00Z", "dnc"),
    ]
    assert dnc.times("sms.send", contact_id="c-1") == ["2027-07-06T14:00:00Z"]
    dnc.none("email.send", contact_id="c-1")
    dnc.none("call.dial", contact_id="c-1")
    team = dnc.one("notify.sms", contact_id="c-1")
    assert team["time"] == "2027-07-06T15:00:00Z"
    assert team["data"]["to"] == "rg-sales"
    assert team["data"]["body"].startswith("Follow up with Ana")
    done = dnc.one("enrollment.completed", sequence_id="drip", contact_id="c-1")
    assert done["time"] == "2027-07-06T16:00:00Z"


def test_the_contact_not_on_dnc_gets_everything(dnc: Replay) -> None:
    assert [e["data"]["body"] for e in dnc.of("sms.send", contact_id="c-2")] == [
        "Hi Ben Reply STOP to opt out.",
        "Still there, Ben? Reply STOP to opt out.",
    ]
    mail = dnc.one("email.send", contact_id="c-2")
    assert (mail["time"], mail["data"]["subject"]) == ("2027-07-06T16:00:00Z", "Last note, Ben")
    call = dnc.one("call.dial", contact_id="c-2")
    assert (call["time"], call["data"]["mode"], call["data"]["ring_group"]) == (
        "2027-07-06T16:00:00Z",
        "progressive",
        "rg-sales",
    )
    dnc.none("enrollment.enrolled", sequence_id="dnc-log", contact_id="c-2")


# --- more_lead_intake_html: HTML lead e-mails -------------------------------------------


@pytest.fixture(scope="module")
def leads(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_lead_intake_html")


def test_a_table_lead_becomes_a_new_contact(leads: Replay) -> None:
    created = [e for e in leads.of("contact.created") if e["source"] == "dripstream"]
    assert len(created) == 1
    rosa = created[0]
    assert rosa["time"] == "2027-07-06T14:00:00Z"
    assert rosa["data"]["contact_id"].startswith("lead-")
    expected = {
        "first_name": "Rosa",
        "last_name": "Diaz",
        "phone": "+13125550177",
        "email": "rosa@example.com",
        "state": "IL",
        "lead_source": "email_intake",
    }
    assert {k: rosa["data"].get(k) for k in expected} == expected


def test_another_contacts_opt_out_binds_the_lead(leads: Replay) -> None:
    rosa = leads.one("contact.created")["data"]["contact_id"]
    kinds = [e["type"] for e in leads.events if e["data"].get("contact_id") == rosa]
    assert kinds.index("contact.opted_out") < kinds.index("enrollment.enrolled")
    opted = leads.one("contact.opted_out", contact_id=rosa)
    assert (opted["source"], opted["data"]["channel"]) == ("dripstream", "sms")
    assert leads.one("enrollment.enrolled", contact_id=rosa)["data"]["via"] == "intake"
    skipped = leads.one("step.skipped", contact_id=rosa)
    assert (skipped["data"]["step_id"], skipped["data"]["reason"]) == ("hello", "opted_out")
    mail = leads.one("email.send", contact_id=rosa)
    assert (mail["data"]["to"], mail["data"]["subject"]) == (
        "rosa@example.com",
        "Welcome Rosa Diaz",
    )


def test_a_br_lead_with_a_known_email_is_that_contact(leads: Replay) -> None:
    enrolled = leads.one("enrollment.enrolled", contact_id="c-tom")
    assert (enrolled["time"], enrolled["data"]["via"]) == ("2027-07-06T14:10:00Z", "intake")
    leads.none("contact.created", contact_id="c-tom")
    mail = leads.one("email.send", contact_id="c-tom")
    assert (mail["data"]["to"], mail["data"]["subject"]) == ("tom@example.com", "Welcome Tom Baker")
    skipped = leads.one("step.skipped", contact_id="c-tom")
    assert skipped["data"]["reason"] == "missing_phone"


def test_a_lead_to_an_unknown_address_is_rejected(leads: Replay) -> None:
    rejected = leads.one("lead.rejected")
    assert rejected["time"] == "2027-07-06T14:20:00Z"
    assert "leads-typo@intake.example.com" in rejected["data"]["reason"]
    assert len(leads.of("enrollment.enrolled")) == 2
    leads.none("sms.send")
    assert len(leads.of("email.send")) == 2


# --- more_zone_change_midway: a new zone after the moment was settled -------------------


@pytest.fixture(scope="module")
def zones(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_zone_change_midway")


@pytest.mark.parametrize(
    ("contact", "sent", "to"),
    [
        ("c-la", "2027-07-07T15:00:00Z", "+12125550101"),
        ("c-hi", "2027-07-07T18:00:00Z", "+18085550102"),
    ],
)
def test_a_new_zone_holds_the_step_to_its_quiet_hours(
    zones: Replay, contact: str, sent: str, to: str
) -> None:
    scheduled = zones.one("step.scheduled", contact_id=contact)
    assert scheduled["data"]["due_at"] == "2027-07-07T12:30:00Z"
    assert zones.deferrals(contact, "s1") == [("quiet_hours", "2027-07-07T12:30:00Z", sent)]
    sms = zones.one("sms.send", contact_id=contact)
    assert (sms["time"], sms["data"]["to"]) == (sent, to)


def test_a_new_zone_that_still_holds_moves_nothing(zones: Replay) -> None:
    assert zones.deferrals("c-ldn", "s1") == []
    sms = zones.one("sms.send", contact_id="c-ldn")
    assert (sms["time"], sms["data"]["body"]) == (
        "2027-07-07T12:30:00Z",
        "Good morning Liam Reply STOP to opt out.",
    )


def test_a_deferred_step_is_deferred_again_in_the_new_zone(zones: Replay) -> None:
    assert zones.deferrals("c-two", "s1") == [
        ("quiet_hours", "2027-07-07T02:00:00Z", "2027-07-07T12:00:00Z"),
        ("quiet_hours", "2027-07-07T12:00:00Z", "2027-07-07T15:00:00Z"),
    ]
    assert zones.times("sms.send", contact_id="c-two") == ["2027-07-07T15:00:00Z"]


# --- more_dst_fold_newyork: the first Sunday of November 2027 ---------------------------


@pytest.fixture(scope="module")
def fold(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_dst_fold_newyork")


def test_an_sms_at_the_ambiguous_hour_waits_for_the_quiet_hours(fold: Replay) -> None:
    assert fold.one("step.scheduled", contact_id="c-c")["data"]["due_at"] == (
        "2027-11-07T05:30:00Z"
    )
    assert fold.deferrals("c-c", "s1") == [
        ("quiet_hours", "2027-11-07T05:30:00Z", "2027-11-07T13:00:00Z")
    ]
    assert fold.times("sms.send", contact_id="c-c") == ["2027-11-07T13:00:00Z"]


def test_a_default_delay_across_the_fold_is_elapsed_time(fold: Replay) -> None:
    assert fold.times("email.send", contact_id="c-d") == ["2027-11-07T06:30:00Z"]


@pytest.mark.parametrize(
    ("contact", "sent"),
    [("c-a", "2027-11-07T05:30:00Z"), ("c-b", "2027-11-08T06:30:00Z")],
)
def test_days_zero_at_the_ambiguous_time(fold: Replay, contact: str, sent: str) -> None:
    assert fold.times("email.send", contact_id=contact) == [sent]
    assert fold.deferrals(contact, "s1") == []


def test_only_the_sms_is_deferred(fold: Replay) -> None:
    assert [e["data"]["contact_id"] for e in fold.of("step.deferred")] == ["c-c"]


# --- more_throttle_quiet_night: five forms in one minute at night -----------------------


@pytest.fixture(scope="module")
def night(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_throttle_quiet_night")


TAGGED = {f"c-n{n}": f"2027-07-07T02:00:{(n - 1) * 10:02d}Z" for n in range(1, 6)}


@pytest.mark.parametrize(
    ("contact", "sent"),
    [
        ("c-n1", "2027-07-07T12:00:00Z"),
        ("c-n2", "2027-07-07T12:00:00Z"),
        ("c-n3", "2027-07-07T12:01:00Z"),
        ("c-n4", "2027-07-07T12:01:00Z"),
        ("c-n5", "2027-07-07T12:02:00Z"),
    ],
)
def test_texts_leave_at_the_quiet_hours_two_a_minute(
    night: Replay, contact: str, sent: str
) -> None:
    assert night.deferrals(contact, "s1", "night-sms") == [("quiet_hours", TAGGED[contact], sent)]
    assert _sent(night, "sms.send", contact, "night-sms") == [sent]


@pytest.mark.parametrize(
    ("contact", "deferral", "sent"),
    [
        ("c-n1", [], "2027-07-07T02:00:00Z"),
        ("c-n2", [], "2027-07-07T02:00:10Z"),
        (
            "c-n3",
            [("throttle", "2027-07-07T02:00:20Z", "2027-07-07T02:01:00Z")],
            "2027-07-07T02:01:00Z",
        ),
        (
            "c-n4",
            [("throttle", "2027-07-07T02:00:30Z", "2027-07-07T02:01:00Z")],
            "2027-07-07T02:01:00Z",
        ),
        (
            "c-n5",
            [("throttle", "2027-07-07T02:00:40Z", "2027-07-07T02:02:00Z")],
            "2027-07-07T02:02:00Z",
        ),
    ],
)
def test_mails_only_meet_the_throttle(
    night: Replay, contact: str, deferral: list[tuple[str, str, str]], sent: str
) -> None:
    assert night.deferrals(contact, "s1", "night-mail") == deferral
    assert _sent(night, "email.send", contact, "night-mail") == [sent]


def test_never_more_than_two_a_minute(night: Replay) -> None:
    for kind in ("sms.send", "email.send"):
        minutes = [t[:16] for t in night.times(kind)]
        assert len(minutes) == 5
        assert max(minutes.count(m) for m in minutes) == 2
    assert len(night.of("enrollment.completed")) == 10


# --- more_noop_changes: changes that change nothing, blank shortcodes, webhook URLs -----


@pytest.fixture(scope="module")
def noop(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_noop_changes")


def test_changes_that_change_nothing_are_recorded(noop: Replay) -> None:
    t = "2027-07-06T14:00:00Z"
    executed = noop.of("step.executed", contact_id="c-1", sequence_id="tagger")
    assert [(e["data"]["step_id"], e["time"]) for e in executed] == [
        (s, t) for s in ("a1", "a2", "a3", "a4")
    ]
    assert noop.one("contact.tag_added", contact_id="c-1", tag="vip")["time"] == t
    assert noop.one("contact.disposition_changed", contact_id="c-1")["time"] == t
    assert noop.one("contact.tag_removed", contact_id="c-1", tag="ghost")["time"] == t


def test_but_set_off_no_trigger(noop: Replay) -> None:
    assert noop.times("enrollment.enrolled", sequence_id="vip-welcome", contact_id="c-1") == [
        "2027-07-06T13:10:00Z",
        "2027-07-06T15:00:00Z",
    ]
    assert noop.times("enrollment.enrolled", sequence_id="qualified-watch", contact_id="c-1") == [
        "2027-07-06T13:20:00Z"
    ]
    noop.none("enrollment.enrolled", sequence_id="ghost-gone")


def test_real_changes_do_set_off_triggers(noop: Replay) -> None:
    for sequence, via in (
        ("vip-welcome", "contact_tagged"),
        ("qualified-watch", "contact_disposition"),
    ):
        enrolled = noop.one("enrollment.enrolled", sequence_id=sequence, contact_id="c-2")
        assert (enrolled["time"], enrolled["data"]["via"]) == ("2027-07-06T14:10:00Z", via)


def test_a_missing_first_name_is_tidied_away(noop: Replay) -> None:
    assert noop.one("sms.send", contact_id="c-2")["data"]["body"] == (
        "Hi, welcome to VIP Reply STOP to opt out."
    )
    assert [e["data"]["body"] for e in noop.of("sms.send", contact_id="c-1")] == [
        "Hi Ana María, welcome to VIP Reply STOP to opt out."
    ] * 2


def test_webhook_urls_are_filled_in_percent_encoded(noop: Replay) -> None:
    urls = {e["data"]["contact_id"]: e["data"]["url"] for e in noop.of("webhook.post")}
    assert urls == {
        "c-1": "https://hooks.example.com/vip?name=Ana%20Mar%C3%ADa&ref=[ref]",
        "c-2": "https://hooks.example.com/vip?name=&ref=[ref]",
    }


# --- more_owner_email_notice: an owner without a phone is told by e-mail -----------------


@pytest.fixture(scope="module")
def owners(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_owner_email_notice")


def _within_the_minute(notice: str, assigned: str) -> bool:
    return _at(assigned) <= _at(notice) <= _at(assigned) + timedelta(seconds=60)


@pytest.mark.parametrize(
    ("contact", "owner", "assigned", "notice", "agent"),
    [
        ("c-1", "u-1", "2027-07-06T14:00:00Z", "notify.sms", "Sam Lee"),
        ("c-2", "u-2", "2027-07-06T14:02:00Z", "notify.sms", "Kim Park"),
        ("c-3", "u-3", "2027-07-06T14:04:00Z", "notify.email", "Pat Cruz"),
        ("c-4", "u-1", "2027-07-06T14:06:00Z", "notify.sms", "Sam Lee"),
    ],
)
def test_round_robin_owners_and_their_notices(
    owners: Replay, contact: str, owner: str, assigned: str, notice: str, agent: str
) -> None:
    updated = owners.one("contact.updated", contact_id=contact, sequence_id="assign")
    assert (updated["time"], updated["source"], updated["data"]["owner_id"]) == (
        assigned,
        "dripstream",
        owner,
    )
    told = owners.one(notice, contact_id=contact, sequence_id="assign")
    assert told["data"]["to"] == owner
    assert _within_the_minute(told["time"], assigned)
    sms = owners.one("sms.send", contact_id=contact)
    assert sms["data"]["body"] == f"This is {agent}, your agent Reply STOP to opt out."


def test_change_owner_to_a_user_without_a_phone(owners: Replay) -> None:
    updated = owners.one("contact.updated", contact_id="c-2", sequence_id="escalate")
    assert (updated["time"], updated["data"]["owner_id"]) == ("2027-07-06T14:10:00Z", "u-3")
    told = owners.one("notify.email", contact_id="c-2")
    assert told["data"]["to"] == "u-3"
    assert _within_the_minute(told["time"], "2027-07-06T14:10:00Z")


def test_notice_totals(owners: Replay) -> None:
    assert sorted(e["data"]["to"] for e in owners.of("notify.sms")) == ["u-1", "u-1", "u-2"]
    assert sorted(e["data"]["contact_id"] for e in owners.of("notify.email")) == ["c-2", "c-3"]
    owners.none("notify.sms", to="u-3")


# --- more_enroll_hours_zone: enroll_only_within_hours in the contact's own zone ----------


@pytest.fixture(scope="module")
def office(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_enroll_hours_zone")


def test_the_hours_are_the_contacts_own(office: Replay) -> None:
    assert office.times("email.send", contact_id="c-ny") == ["2027-07-06T13:00:00Z"]
    rejected = office.one("enrollment.rejected", contact_id="c-la")
    assert (rejected["time"], rejected["data"]["reason"]) == (
        "2027-07-06T13:00:00Z",
        "outside_hours",
    )
    assert office.times("enrollment.enrolled", contact_id="c-la") == ["2027-07-06T17:00:00Z"]
    assert office.times("email.send", contact_id="c-la") == ["2027-07-06T17:00:00Z"]


def test_a_non_processing_day_is_outside_the_time_range(office: Replay) -> None:
    # README, "Where the contract leaves room": the range is open hours on a processing day.
    rejected = office.one("enrollment.rejected", contact_id="c-sat")
    assert (rejected["time"], rejected["data"]["reason"]) == (
        "2027-07-10T14:00:00Z",
        "outside_hours",
    )
    assert office.times("email.send", contact_id="c-sat") == []


# --- more_zone_fallback_quiet: phone zone, then schedule zone, then account zone ----------


@pytest.fixture(scope="module")
def fallback(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_zone_fallback_quiet")


TAG_TIME = "2027-07-06T13:30:00Z"


def test_a_hawaii_number_beats_the_schedules_zone(fallback: Replay) -> None:
    assert fallback.deferrals("c-808", "s1", "west-sched") == [
        ("outside_hours", TAG_TIME, "2027-07-06T18:00:00Z")
    ]
    sms = fallback.one("sms.send", contact_id="c-808")
    assert (sms["time"], sms["data"]["body"]) == (
        "2027-07-06T18:00:00Z",
        "Morning Kai Reply STOP to opt out.",
    )


def test_a_toll_free_number_falls_back_to_the_schedule_then_the_account(
    fallback: Replay,
) -> None:
    assert fallback.deferrals("c-800", "s1", "west-sched") == [
        ("quiet_hours", TAG_TIME, "2027-07-06T15:00:00Z")
    ]
    assert _sent(fallback, "sms.send", "c-800", "west-sched") == ["2027-07-06T15:00:00Z"]
    assert fallback.deferrals("c-800", "s1", "no-sched") == []
    assert _sent(fallback, "sms.send", "c-800", "no-sched") == [TAG_TIME]


def test_a_number_spanning_two_zones_falls_back_to_the_account(fallback: Replay) -> None:
    assert fallback.deferrals("c-208", "s1") == []
    assert fallback.times("sms.send", contact_id="c-208") == [TAG_TIME]
