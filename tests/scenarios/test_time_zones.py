"""Quiet hours, DST gaps and folds, and whose time zone counts (CONTRACT.md §3)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay

NIGHT = "2027-07-07T02:30:00Z"  # 22:30 in New York, 19:30 in Los Angeles
EIGHT_NY = "2027-07-07T12:00:00Z"


@pytest.fixture(scope="module")
def quiet(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("quiet_hours")


@pytest.fixture(scope="module")
def spring(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("dst_spring_forward")


@pytest.fixture(scope="module")
def fall(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("dst_fall_back")


@pytest.fixture(scope="module")
def zones(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("timezone_precedence")


@pytest.mark.parametrize(
    ("contact", "command"),
    [
        ("c-sms", "sms.send"),
        ("c-call", "call.dial"),
        ("c-vm", "voicemail.drop"),
        ("c-mms", "mms.send"),
    ],
)
def test_contact_facing_calls_and_texts_wait_for_quiet_hours(
    quiet: Replay, contact: str, command: str
) -> None:
    assert quiet.deferrals(contact, "s1") == [("quiet_hours", NIGHT, EIGHT_NY)]
    assert quiet.times(command, contact_id=contact) == [EIGHT_NY]


def test_email_is_not_held_by_quiet_hours(quiet: Replay) -> None:
    assert quiet.deferrals("c-mail", "s1") == []
    assert quiet.times("email.send", contact_id="c-mail") == [NIGHT]


def test_a_text_to_the_team_is_not_held(quiet: Replay) -> None:
    assert quiet.deferrals("c-team", "s1") == []
    notice = quiet.one("notify.sms", contact_id="c-team")
    assert notice["time"] == NIGHT
    assert notice["data"]["to"] == "rg-sales"
    assert notice["data"]["body"].startswith("New lead Team")


def test_quiet_hours_are_read_in_the_contacts_zone(quiet: Replay) -> None:
    assert quiet.deferrals("c-la", "s1") == []
    assert quiet.times("sms.send", contact_id="c-la") == [NIGHT]
    assert quiet.deferrals("c-la2", "s1") == [
        ("quiet_hours", "2027-07-07T13:00:00Z", "2027-07-07T15:00:00Z")
    ]
    assert quiet.times("sms.send", contact_id="c-la2") == ["2027-07-07T15:00:00Z"]


def test_quiet_hours_edges(quiet: Replay) -> None:
    assert quiet.times("sms.send", contact_id="c-late") == ["2027-07-07T00:59:00Z"]
    assert quiet.deferrals("c-late", "s1") == []
    assert quiet.deferrals("c-early", "s1") == [("quiet_hours", "2027-07-07T11:59:00Z", EIGHT_NY)]
    assert quiet.times("sms.send", contact_id="c-early") == [EIGHT_NY]


def test_quiet_hours_hold_even_inside_the_sequences_open_hours(quiet: Replay) -> None:
    assert quiet.deferrals("c-wide", "s1") == [("quiet_hours", "2027-07-07T11:00:00Z", EIGHT_NY)]
    assert quiet.times("sms.send", contact_id="c-wide") == [EIGHT_NY]


def test_a_time_of_day_in_the_gap_moves_forward_by_the_gap(spring: Replay) -> None:
    scheduled = spring.one("step.scheduled", contact_id="c-1", step_id="s1")
    assert scheduled["data"]["due_at"] == "2028-03-12T07:30:00Z"
    assert spring.deferrals("c-1", "s1") == []
    assert spring.times("email.send", contact_id="c-1") == [
        "2028-03-12T07:30:00Z",
        "2028-03-12T14:00:00Z",
    ]


def test_ten_oclock_after_spring_forward_uses_the_new_offset(spring: Replay) -> None:
    assert spring.times("email.send", contact_id="c-4") == ["2028-03-12T14:00:00Z"]


def test_an_opening_in_the_gap_moves_forward_by_the_gap(spring: Replay) -> None:
    assert spring.deferrals("c-2", "s1") == [
        ("outside_hours", "2028-03-11T18:00:00Z", "2028-03-12T07:30:00Z")
    ]
    assert spring.times("email.send", contact_id="c-2") == ["2028-03-12T07:30:00Z"]


def test_an_hour_across_the_gap_is_sixty_minutes(spring: Replay) -> None:
    assert spring.times("email.send", contact_id="c-3") == ["2028-03-12T07:30:00Z"]


@pytest.mark.parametrize("contact", ["c-1", "c-4"])
def test_an_ambiguous_time_of_day_is_the_first_of_the_two(fall: Replay, contact: str) -> None:
    scheduled = fall.one("step.scheduled", contact_id=contact, step_id="s1")
    assert scheduled["data"]["due_at"] == "2028-11-05T07:30:00Z"
    assert fall.deferrals(contact, "s1") == []
    assert fall.times("email.send", contact_id=contact) == ["2028-11-05T07:30:00Z"]


def test_ten_oclock_after_fall_back_uses_the_new_offset(fall: Replay) -> None:
    assert fall.times("email.send", contact_id="c-2") == ["2028-11-05T17:00:00Z"]


def test_an_opening_in_the_fold_is_the_first_of_the_two(fall: Replay) -> None:
    assert fall.deferrals("c-3", "s1") == [
        ("outside_hours", "2028-11-04T19:00:00Z", "2028-11-05T07:30:00Z")
    ]
    assert fall.times("email.send", contact_id="c-3") == ["2028-11-05T07:30:00Z"]


@pytest.mark.parametrize(
    ("contact", "sequence", "sent"),
    [
        ("c-explicit", "tz-sched", "2027-07-07T17:00:00Z"),
        ("c-phone303", "tz-sched", "2027-07-07T16:00:00Z"),
        ("c-phone208", "tz-sched", "2027-07-07T15:00:00Z"),
        ("c-tollfree", "tz-sched", "2027-07-07T15:00:00Z"),
        ("c-nophone", "tz-sched", "2027-07-07T15:00:00Z"),
        ("c-updated", "tz-sched", "2027-07-07T17:00:00Z"),
        ("c-bare", "tz-account", "2027-07-07T14:00:00Z"),
        ("c-london", "tz-account", "2027-07-07T09:00:00Z"),
        ("c-phone208b", "tz-account", "2027-07-07T14:00:00Z"),
    ],
)
def test_the_contacts_time_zone_by_precedence(
    zones: Replay, contact: str, sequence: str, sent: str
) -> None:
    scheduled = zones.one("step.scheduled", contact_id=contact, sequence_id=sequence)
    assert scheduled["data"]["due_at"] == sent
    assert zones.times("email.send", contact_id=contact) == [sent]


def test_open_hours_are_read_in_the_contacts_zone(zones: Replay) -> None:
    assert zones.deferrals("c-la-hours", "s1") == [
        ("outside_hours", "2027-07-06T14:00:00Z", "2027-07-06T16:00:00Z")
    ]
    assert zones.times("email.send", contact_id="c-la-hours") == ["2027-07-06T16:00:00Z"]


def test_quiet_hours_in_a_zone_inferred_from_the_phone(quiet: Replay) -> None:
    assert quiet.deferrals("c-hawaii", "s1") == [
        ("quiet_hours", "2027-07-07T13:00:00Z", "2027-07-07T18:00:00Z")
    ]
    assert quiet.times("sms.send", contact_id="c-hawaii") == ["2027-07-07T18:00:00Z"]


@pytest.fixture(scope="module")
def half_hours(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("more_dst_half_hour_zones")


@pytest.mark.parametrize(
    ("contact", "due"),
    [
        ("c-lh-fold", "2028-04-01T14:45:00Z"),  # Lord Howe's fold: the first 01:45 (+11:00)
        ("c-lh-gap", "2028-09-30T15:45:00Z"),  # its half-hour gap: 02:15 is 02:45 +11:00
        ("c-ch-gap", "2028-09-23T14:15:00Z"),  # the Chathams' gap at 02:45: 03:00 is 04:00
        ("c-ch-day", "2028-09-23T23:15:00Z"),  # a day across it: 24 hours
    ],
)
def test_clock_changes_of_half_an_hour_or_at_a_quarter_to_move_as_the_contract_says(
    half_hours: Replay, contact: str, due: str
) -> None:
    assert half_hours.one("step.scheduled", contact_id=contact)["data"]["due_at"] == due
    assert half_hours.deferrals(contact, "s1") == []
    assert half_hours.times("email.send", contact_id=contact) == [due]


def test_quiet_hours_end_at_eight_by_the_clock_after_a_half_hour_change(
    half_hours: Replay,
) -> None:
    assert half_hours.deferrals("c-lh-quiet", "s1") == [
        ("quiet_hours", "2028-09-30T12:00:00Z", "2028-09-30T21:00:00Z")
    ]
    assert half_hours.times("sms.send", contact_id="c-lh-quiet") == ["2028-09-30T21:00:00Z"]
