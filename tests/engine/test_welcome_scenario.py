"""The worked scenario in ../shared/scenarios/welcome, decided as its prose says."""

from __future__ import annotations

import orjson
import pytest

from tests.engine.helpers import (
    LOCAL_SCENARIOS,
    SHARED_SCENARIOS,
    Outcome,
    decide,
    load_yaml,
    welcome_dir,
)


@pytest.fixture(scope="module")
def welcome() -> Outcome:
    folder = welcome_dir()
    defs = load_yaml(str(folder / "welcome.yaml"))
    inputs = [
        orjson.loads(line)
        for line in (folder / "welcome.events.jsonl").read_bytes().splitlines()
        if line.strip()
    ]
    return decide(defs, inputs, until="2028-03-04T00:00:00Z")


def test_maya_is_enrolled_by_her_tag(welcome: Outcome) -> None:
    enrolled = welcome.one("enrollment.enrolled", contact_id="c-100")
    assert enrolled["data"]["via"] == "contact_tagged"
    assert enrolled["time"] == "2028-03-02T22:41:00Z"


def test_hello_is_texted_at_once_with_the_opt_out_phrase(welcome: Outcome) -> None:
    sms = welcome.one("sms.send", contact_id="c-100")
    assert sms["time"] == "2028-03-02T22:41:00Z"
    assert sms["data"]["to"] == "+17205550142"
    assert sms["data"]["from_line"] == "line-main"
    assert sms["data"]["body"].startswith("Hi Maya, this is")
    assert sms["data"]["body"].endswith("Thanks for your interest! Reply STOP to opt out.")


def test_mail_after_close_is_deferred_to_friday_opening(welcome: Outcome) -> None:
    deferred = welcome.one("step.deferred", contact_id="c-100", step_id="mail")
    assert deferred["data"]["reason"] == "outside_hours"
    assert deferred["data"]["from"] == "2028-03-03T01:41:00Z"
    assert deferred["data"]["to"] == "2028-03-03T15:30:00Z"
    mail = welcome.one("email.send", contact_id="c-100")
    assert mail["time"] == "2028-03-03T15:30:00Z"
    assert mail["data"]["to"] == "maya@example.com"
    assert mail["data"]["subject"] == "Your quote, Maya"


def test_call_on_saturday_moves_to_monday_past_until(welcome: Outcome) -> None:
    scheduled = welcome.one("step.scheduled", contact_id="c-100", step_id="call")
    assert scheduled["data"]["due_at"] == "2028-03-04T16:15:00Z"
    deferred = welcome.one("step.deferred", contact_id="c-100", step_id="call")
    assert deferred["data"]["reason"] == "non_processing_day"
    assert deferred["data"]["to"] == "2028-03-06T16:15:00Z"
    assert welcome.of("call.dial") == []


def test_ravi_replies_and_is_disenrolled_before_his_mail(welcome: Outcome) -> None:
    assert welcome.one("enrollment.enrolled", contact_id="c-101")["time"] == "2028-03-02T22:46:00Z"
    assert welcome.one("sms.send", contact_id="c-101")["time"] == "2028-03-02T22:46:00Z"
    out = welcome.one("enrollment.disenrolled", contact_id="c-101")
    assert out["data"]["reason"] == "responded"
    assert out["time"] == "2028-03-02T23:10:00Z"
    assert welcome.of("email.send", contact_id="c-101") == []


def test_every_output_is_from_the_engine_with_a_unique_id(welcome: Outcome) -> None:
    ids = [e["id"] for e in welcome.events]
    assert len(ids) == len(set(ids))
    assert {e["source"] for e in welcome.events} == {"dripstream"}


@pytest.mark.parametrize("name", ["welcome.yaml", "welcome.events.jsonl", "welcome.expected.md"])
def test_the_local_copy_of_the_scenario_is_the_shared_one(name: str) -> None:
    if not (SHARED_SCENARIOS / name).exists():
        pytest.skip("the shared scenarios are not next to this clone")
    assert (LOCAL_SCENARIOS / name).read_bytes() == (SHARED_SCENARIOS / name).read_bytes()
