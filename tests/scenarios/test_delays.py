"""Delays (CONTRACT.md §3): none, default in minutes/hours/days, and time_of_day."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay


@pytest.fixture(scope="module")
def units(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("delay_default_units")


@pytest.fixture(scope="module")
def tod(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("delay_time_of_day")


def test_units_enrolls_on_the_tag(units: Replay) -> None:
    enrolled = units.one("enrollment.enrolled", contact_id="c-1")
    assert enrolled["data"]["via"] == "contact_tagged"
    assert enrolled["data"]["sequence_id"] == "drip-default"
    assert enrolled["time"] == "2027-07-06T14:00:00Z"
    assert units.status == 0


def test_each_default_delay_counts_from_the_previous_execution(units: Replay) -> None:
    due = {e["data"]["step_id"]: e["data"]["due_at"] for e in units.of("step.scheduled")}
    assert due == {
        "e1": "2027-07-06T14:00:00Z",
        "e2": "2027-07-06T14:45:00Z",
        "e3": "2027-07-06T16:45:00Z",
        "e4": "2027-07-09T16:45:00Z",
        "done": "2027-07-09T16:45:00Z",
    }
    sent = [(e["data"]["subject"], e["time"]) for e in units.of("email.send")]
    assert sent == [
        ("Welcome Ana", "2027-07-06T14:00:00Z"),
        ("Minutes", "2027-07-06T14:45:00Z"),
        ("Hours", "2027-07-06T16:45:00Z"),
        ("Days", "2027-07-09T16:45:00Z"),
    ]
    assert {e["data"]["to"] for e in units.of("email.send")} == {"ana@example.com"}
    units.none("step.deferred")


def test_the_last_step_tags_and_completes(units: Replay) -> None:
    tag = units.one("contact.tag_added", tag="drip-done")
    assert tag["source"] == "dripstream"
    assert tag["time"] == "2027-07-09T16:45:00Z"
    assert units.one("enrollment.completed", contact_id="c-1")["time"] == "2027-07-09T16:45:00Z"


def test_effect_ids_match_their_step_and_are_distinct(units: Replay) -> None:
    executed = {e["data"]["step_id"]: e["data"].get("effect_id") for e in units.of("step.executed")}
    for mail in units.of("email.send"):
        assert executed[mail["data"]["step_id"]] == mail["data"]["effect_id"]
    ids = [e["data"]["effect_id"] for e in units.of("email.send")]
    assert len(set(ids)) == 4


def test_time_of_day_later_today_then_tomorrow(tod: Replay) -> None:
    sent = [e["time"] for e in tod.of("email.send", sequence_id="tod-same-day")]
    assert sent == ["2027-07-06T19:00:00Z", "2027-07-07T13:00:00Z"]
    scheduled = tod.one("step.scheduled", sequence_id="tod-same-day", step_id="b")
    assert scheduled["data"]["due_at"] == "2027-07-07T13:00:00Z"
    completed = tod.one("enrollment.completed", sequence_id="tod-same-day")
    assert completed["time"] == "2027-07-07T13:00:00Z"


def test_time_of_day_already_passed_with_days_zero_is_the_next_day(tod: Replay) -> None:
    scheduled = tod.one("step.scheduled", sequence_id="tod-next-day", step_id="a")
    assert scheduled["data"]["due_at"] == "2027-07-07T12:30:00Z"
    assert tod.times("email.send", sequence_id="tod-next-day") == ["2027-07-07T12:30:00Z"]


def test_time_of_day_two_days_later(tod: Replay) -> None:
    assert tod.times("email.send", sequence_id="tod-two-days") == ["2027-07-08T11:15:00Z"]


def test_time_of_day_counts_days_in_the_contacts_calendar(tod: Replay) -> None:
    assert tod.times("email.send", sequence_id="tod-late-night", contact_id="c-2") == [
        "2027-07-07T03:45:00Z",
        "2027-07-07T13:00:00Z",
    ]


def test_time_of_day_never_defers(tod: Replay) -> None:
    tod.none("step.deferred")
    assert len(tod.of("email.send")) == 6


@pytest.fixture(scope="module")
def default_until(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("default_until")


def test_without_until_timers_fire_up_to_the_last_events_time(default_until: Replay) -> None:
    sent = [(e["data"]["subject"], e["time"]) for e in default_until.of("email.send")]
    assert sent == [("First", "2027-07-06T14:00:00Z"), ("Second", "2027-07-06T14:30:00Z")]
    third = default_until.one("step.scheduled", step_id="s3")
    assert third["data"]["due_at"] == "2027-07-06T15:00:00Z"
    default_until.none("enrollment.completed")
