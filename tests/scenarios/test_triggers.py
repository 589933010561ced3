"""Every trigger type, enrolling and disenrolling (CONTRACT.md §2, triggers)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay, sequences_list


@pytest.fixture(scope="module")
def tags(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("trigger_created_and_tags")


@pytest.fixture(scope="module")
def dispositions(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("trigger_dispositions")


@pytest.fixture(scope="module")
def dnc(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("trigger_dnc")


@pytest.fixture(scope="module")
def appointments(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("trigger_appointment")


@pytest.fixture(scope="module")
def durations(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("trigger_call_duration")


def _enrollments(run: Replay) -> list[tuple[str, str, str, str]]:
    return sorted(
        (e["data"]["sequence_id"], e["data"]["contact_id"], e["data"]["via"], e["time"])
        for e in run.of("enrollment.enrolled")
    )


def test_creation_tags_and_removed_tags_enroll(tags: Replay) -> None:
    assert _enrollments(tags) == [
        ("on-create", "c-1", "contact_created", "2027-07-06T14:00:00Z"),
        ("on-create", "c-2", "contact_created", "2027-07-06T14:20:00Z"),
        ("on-tag", "c-1", "contact_tagged", "2027-07-06T14:15:00Z"),
        ("on-tag", "c-2", "contact_tagged", "2027-07-06T14:25:00Z"),
        ("on-untag", "c-1", "tag_removed", "2027-07-06T14:30:00Z"),
    ]
    tags.none("enrollment.rejected")
    assert len(tags.of("enrollment.completed")) == 5


def test_the_sms_uses_the_updated_name(tags: Replay) -> None:
    assert tags.one("sms.send", sequence_id="on-create", contact_id="c-1")["data"]["body"] == (
        "Welcome Ana Reply STOP to opt out."
    )
    assert tags.one("sms.send", sequence_id="on-tag", contact_id="c-1")["data"]["body"] == (
        "Heating up, Anna? Reply STOP to opt out."
    )


def test_dispositions_enroll_and_disenroll(dispositions: Replay) -> None:
    assert _enrollments(dispositions) == [
        ("callbacks", "c-2", "call_disposition", "2027-07-06T14:30:00Z"),
        ("dialing", "c-2", "contact_tagged", "2027-07-06T14:20:00Z"),
        ("nurture", "c-1", "contact_disposition", "2027-07-06T14:10:00Z"),
        ("prospecting", "c-1", "contact_tagged", "2027-07-06T14:00:00Z"),
    ]
    removed = sorted(
        (e["data"]["sequence_id"], e["data"]["contact_id"], e["data"]["reason"], e["time"])
        for e in dispositions.of("enrollment.disenrolled")
    )
    assert removed == [
        ("dialing", "c-2", "trigger", "2027-07-06T14:40:00Z"),
        ("prospecting", "c-1", "trigger", "2027-07-06T14:10:00Z"),
    ]


def test_an_unmatched_disposition_does_nothing(dispositions: Replay) -> None:
    dispositions.none("enrollment.rejected")
    dispositions.none("email.send")
    late = [e for e in dispositions.events if e["time"] == "2027-07-06T14:50:00Z"]
    assert [e["type"] for e in late if e["type"].startswith("enrollment.")] == []


def test_dnc_added_enrolls_and_skips_the_contact_facing_step(dnc: Replay) -> None:
    alert = dnc.one("enrollment.enrolled", sequence_id="dnc-alert")
    assert (alert["data"]["contact_id"], alert["data"]["via"], alert["time"]) == (
        "c-1",
        "dnc_changed",
        "2027-07-06T14:10:00Z",
    )
    notice = dnc.one("notify.sms", sequence_id="dnc-alert")
    assert notice["data"]["to"] == "rg-sales"
    assert notice["data"]["body"].startswith("Ana Diaz is now DNC")
    skipped = dnc.one("step.skipped", sequence_id="dnc-alert")
    assert (skipped["data"]["step_id"], skipped["data"]["reason"]) == ("s2", "dnc")
    dnc.none("sms.send", sequence_id="dnc-alert")


def test_dnc_removed_enrolls(dnc: Replay) -> None:
    back = dnc.one("enrollment.enrolled", sequence_id="welcome-back")
    assert (back["data"]["contact_id"], back["time"]) == ("c-1", "2027-07-06T14:30:00Z")
    sms = dnc.one("sms.send", sequence_id="welcome-back")
    assert sms["data"]["body"] == "Welcome back Ana Reply STOP to opt out."


def test_dnc_both_ways_and_repeats_are_not_changes(dnc: Replay) -> None:
    assert dnc.times("enrollment.enrolled", sequence_id="dnc-audit") == [
        "2027-07-06T14:10:00Z",
        "2027-07-06T14:30:00Z",
    ]
    assert [e["data"]["url"] for e in dnc.of("webhook.post")] == [
        "https://hooks.example.com/dnc"
    ] * 2
    assert dnc.contacts("enrollment.enrolled") == ["c-1"] * 4
    dnc.none("enrollment.rejected")


def test_appointment_statuses_enroll_their_sequences(appointments: Replay) -> None:
    assert _enrollments(appointments) == [
        ("appt-any", "c-1", "appointment", "2027-07-06T14:00:00Z"),
        ("appt-any", "c-1", "appointment", "2027-07-06T15:00:00Z"),
        ("appt-any", "c-2", "appointment", "2027-07-06T15:30:00Z"),
        ("appt-rebook", "c-2", "appointment", "2027-07-06T15:30:00Z"),
        ("appt-reminder", "c-1", "appointment", "2027-07-06T14:00:00Z"),
        ("appt-thanks", "c-1", "appointment", "2027-07-06T15:00:00Z"),
    ]
    reminder = appointments.one("sms.send", sequence_id="appt-reminder")
    assert reminder["data"]["body"] == "See you soon Ana Reply STOP to opt out."
    assert appointments.one("email.send", sequence_id="appt-thanks")["data"]["to"] == (
        "ana@example.com"
    )
    assert len(appointments.of("contact.tag_added", tag="had-appointment")) == 3


@pytest.mark.parametrize(
    ("sequence", "time"),
    [
        ("talk-60", "2027-07-06T14:20:00Z"),
        ("wait-30", "2027-07-06T14:30:00Z"),
        ("dur-120", "2027-07-06T14:40:00Z"),
    ],
)
def test_call_duration_disenrolls_at_the_threshold(
    durations: Replay, sequence: str, time: str
) -> None:
    out = durations.one("enrollment.disenrolled", sequence_id=sequence)
    assert (out["data"]["contact_id"], out["data"]["reason"], out["time"]) == (
        "c-1",
        "call_duration",
        time,
    )


def test_call_duration_leaves_the_others_enrolled(durations: Replay) -> None:
    durations.none("enrollment.disenrolled", contact_id="c-2")
    assert len(durations.of("enrollment.disenrolled")) == 3
    rows = sequences_list(durations.out)
    for sequence in ("talk-60", "wait-30", "dur-120"):
        row = rows[sequence]
        assert (row["steps"], row["process_on"], row["line"], row["status"]) == (
            1,
            "every_day",
            "line-1",
            "active",
        )
        assert (row["contacts"], row["remaining_tasks"]) == (1, 1), sequence
