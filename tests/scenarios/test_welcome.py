"""The shared worked example (../shared/scenarios/welcome.*), through `dripstream replay`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.harness import Replay, sequences_list


@pytest.fixture(scope="module")
def welcome(replayed: Callable[[str], Replay]) -> Replay:
    return replayed("welcome")


def test_maya_is_enrolled_and_texted_at_once(welcome: Replay) -> None:
    enrolled = welcome.one("enrollment.enrolled", contact_id="c-100")
    assert (enrolled["data"]["via"], enrolled["time"]) == ("contact_tagged", "2028-03-02T22:41:00Z")
    sms = welcome.one("sms.send", contact_id="c-100")
    assert (sms["time"], sms["data"]["to"], sms["data"]["from_line"]) == (
        "2028-03-02T22:41:00Z",
        "+17205550142",
        "line-main",
    )
    assert sms["data"]["body"].startswith("Hi Maya, this is")
    assert sms["data"]["body"].endswith("Thanks for your interest! Reply STOP to opt out.")


def test_the_mail_after_close_waits_for_friday_opening(welcome: Replay) -> None:
    assert welcome.deferrals("c-100", "mail") == [
        ("outside_hours", "2028-03-03T01:41:00Z", "2028-03-03T15:30:00Z")
    ]
    mail = welcome.one("email.send", contact_id="c-100")
    assert (mail["time"], mail["data"]["to"], mail["data"]["subject"]) == (
        "2028-03-03T15:30:00Z",
        "maya@example.com",
        "Your quote, Maya",
    )


def test_the_saturday_call_moves_to_monday_past_until(welcome: Replay) -> None:
    scheduled = welcome.one("step.scheduled", contact_id="c-100", step_id="call")
    assert scheduled["data"]["due_at"] == "2028-03-04T16:15:00Z"
    assert welcome.deferrals("c-100", "call") == [
        ("non_processing_day", "2028-03-04T16:15:00Z", "2028-03-06T16:15:00Z")
    ]
    welcome.none("call.dial")


def test_ravi_replies_before_his_mail(welcome: Replay) -> None:
    out = welcome.one("enrollment.disenrolled", contact_id="c-101")
    assert (out["data"]["reason"], out["time"]) == ("responded", "2028-03-02T23:10:00Z")
    assert welcome.times("sms.send", contact_id="c-101") == ["2028-03-02T22:46:00Z"]
    welcome.none("email.send", contact_id="c-101")


def test_the_sequences_list_after_the_run(welcome: Replay) -> None:
    row = sequences_list(welcome.out)["welcome"]
    assert (row["name"], row["steps"], row["process_on"], row["line"], row["status"]) == (
        "Welcome web leads",
        4,
        "business_days",
        "line-main",
        "active",
    )
    # Maya is still enrolled with `call` and `tag` to go; Ravi left.
    assert (row["contacts"], row["remaining_tasks"]) == (1, 2)
