"""The per-sequence throttle: at most N step executions a UTC minute (CONTRACT.md §3 (d))."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay


@pytest.fixture(scope="module")
def throttle(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("throttle")


@pytest.fixture(scope="module")
def opening(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("throttle_at_opening")


@pytest.fixture(scope="module")
def settles(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("throttle_settles")


@pytest.fixture(scope="module")
def due_order(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("throttle_due_order")


def _minutes(run: Replay, command: str, sequence: str) -> list[tuple[str, str]]:
    """(contact, UTC minute) of each command of one sequence, in output order."""
    return [
        (e["data"]["contact_id"], e["time"][:16]) for e in run.of(command, sequence_id=sequence)
    ]


def test_one_a_minute_in_due_time_order(throttle: Replay) -> None:
    assert _minutes(throttle, "sms.send", "trickle") == [
        ("c-t1", "2027-07-06T14:00"),
        ("c-t2", "2027-07-06T14:01"),
        ("c-t3", "2027-07-06T14:02"),
    ]
    assert throttle.times("sms.send", contact_id="c-t1") == ["2027-07-06T14:00:00Z"]


def test_each_held_step_says_throttle_and_lands_where_it_runs(throttle: Replay) -> None:
    for contact, due in [("c-t2", "2027-07-06T14:00:20Z"), ("c-t3", "2027-07-06T14:01:10Z")]:
        deferred = throttle.deferrals(contact, "s1")
        assert len(deferred) >= 1
        assert deferred[0][:2] == ("throttle", due)
        assert deferred[-1][2] == throttle.times("sms.send", contact_id=contact)[0]
    assert throttle.deferrals("c-t1", "s1") == []


def test_two_a_minute_spills_into_the_next_minutes(throttle: Replay) -> None:
    assert _minutes(throttle, "sms.send", "burst") == [
        ("c-b1", "2027-07-06T14:10"),
        ("c-b2", "2027-07-06T14:10"),
        ("c-b3", "2027-07-06T14:11"),
        ("c-b4", "2027-07-06T14:11"),
        ("c-b5", "2027-07-06T14:12"),
    ]
    held = throttle.of("step.deferred", sequence_id="burst")
    assert sorted(e["data"]["contact_id"] for e in held) == ["c-b3", "c-b4", "c-b5"]
    assert {(e["data"]["reason"], e["data"]["from"]) for e in held} == {
        ("throttle", "2027-07-06T14:10:00Z")
    }


def test_unlimited_sends_everyone_at_once(throttle: Replay) -> None:
    assert throttle.times("sms.send", sequence_id="open-tap") == ["2027-07-06T14:10:00Z"] * 5
    throttle.none("step.deferred", sequence_id="open-tap")


def test_opening_then_one_a_minute(opening: Replay) -> None:
    assert _minutes(opening, "email.send", "morning") == [
        ("c-m1", "2027-07-07T13:00"),
        ("c-m2", "2027-07-07T13:01"),
        ("c-m3", "2027-07-07T13:02"),
    ]


@pytest.mark.parametrize(
    ("contact", "tagged"),
    [
        ("c-m1", "2027-07-07T02:00:00Z"),
        ("c-m2", "2027-07-07T02:10:00Z"),
        ("c-m3", "2027-07-07T02:20:00Z"),
    ],
)
def test_opening_deferral_names_the_first_reason(
    opening: Replay, contact: str, tagged: str
) -> None:
    # one step.deferred, naming the first reason, to where the step runs
    assert opening.deferrals(contact, "s1") == [
        ("outside_hours", tagged, opening.times("email.send", contact_id=contact)[0])
    ]


@pytest.mark.parametrize(
    ("contact", "runs"),
    [("c-l2", "2027-07-07T13:00:00Z"), ("c-l3", "2027-07-07T13:01:00Z")],
)
def test_throttled_into_closed_hours_is_deferred_once(
    settles: Replay, contact: str, runs: str
) -> None:
    assert settles.deferrals(contact, "s1") == [("throttle", "2027-07-06T20:59:20Z", runs)]
    assert settles.times("email.send", contact_id=contact) == [runs]


def test_the_last_place_before_closing_runs_at_once(settles: Replay) -> None:
    assert settles.times("email.send", contact_id="c-l1") == ["2027-07-06T20:59:20Z"]
    assert settles.deferrals("c-l1", "s1") == []


def test_a_place_given_back_by_a_disenrollment_is_taken_by_the_next(settles: Replay) -> None:
    assert settles.one("enrollment.disenrolled", contact_id="c-f2")["data"]["reason"] == (
        "responded"
    )
    settles.none("email.send", contact_id="c-f2")
    assert settles.deferrals("c-f3", "s1") == [
        ("throttle", "2027-07-06T14:00:40Z", "2027-07-06T14:01:00Z")
    ]
    assert _minutes(settles, "email.send", "freed") == [
        ("c-f1", "2027-07-06T14:00"),
        ("c-f3", "2027-07-06T14:01"),
    ]


def test_a_step_due_earlier_takes_the_place_of_one_due_later(due_order: Replay) -> None:
    assert due_order.deferrals("c-b", "k1") == [
        ("throttle", "2027-07-06T14:00:30Z", "2027-07-06T14:01:00Z")
    ]
    # the step it displaced moves on, decided then, with its one deferral
    assert due_order.deferrals("c-a", "k2") == [
        ("throttle", "2027-07-06T14:01:00Z", "2027-07-06T14:02:00Z")
    ]
    assert due_order.one("step.deferred", contact_id="c-a", step_id="k2")["time"] == (
        "2027-07-06T14:00:30Z"
    )
    tags = [
        (e["data"]["contact_id"], e["data"]["tag"], e["time"][:16])
        for e in due_order.of("contact.tag_added", sequence_id="order")
    ]
    assert tags == [
        ("c-a", "first", "2027-07-06T14:00"),
        ("c-b", "first", "2027-07-06T14:01"),
        ("c-a", "second", "2027-07-06T14:02"),
        ("c-b", "second", "2027-07-06T14:03"),
    ]


def test_a_step_deferred_once_keeps_its_place(due_order: Replay) -> None:
    assert due_order.deferrals("c-e", "m1") == [
        ("non_processing_day", "2027-07-10T14:00:20Z", "2027-07-12T14:00:20Z")
    ]
    assert due_order.deferrals("c-n", "m1") == [
        ("throttle", "2027-07-12T14:00:00Z", "2027-07-12T14:01:00Z")
    ]
    assert due_order.times("step.executed", sequence_id="kept") == [
        "2027-07-12T14:00:20Z",
        "2027-07-12T14:01:00Z",
    ]


def test_a_place_given_back_ahead_of_a_step_due_earlier_is_not_taken(settles: Replay) -> None:
    # c-b3 (due 15:00:20) was moved to 15:02 before c-b2's place in 15:01 was given back;
    # c-b4, due after it, goes behind it rather than into that place
    assert settles.deferrals("c-b3", "s1") == [
        ("throttle", "2027-07-06T15:00:20Z", "2027-07-06T15:02:00Z")
    ]
    assert settles.deferrals("c-b4", "s1") == [
        ("throttle", "2027-07-06T15:00:40Z", "2027-07-06T15:03:00Z")
    ]
    assert _minutes(settles, "email.send", "behind") == [
        ("c-b1", "2027-07-06T15:00"),
        ("c-b3", "2027-07-06T15:02"),
        ("c-b4", "2027-07-06T15:03"),
    ]
