"""Per-contact view: given output events, then each contact's enrollments and next step."""

from __future__ import annotations

from datetime import UTC, datetime

from projections.contacts_view import ContactsView
from tests.projections.helpers import Stream

T0 = "2028-03-02T10:00:00Z"


def view_of(stream: Stream) -> ContactsView:
    view = ContactsView()
    for event in stream.events:
        view.apply(event)
    return view


def journey() -> Stream:
    given = Stream()
    given.defined("welcome", name="Welcome", steps_count=3)
    given.defined("nurture", name="Nurture", steps_count=2)
    given.enrolled("welcome", "c-1", T0, name="Maya Ortiz", phone="+17205550142")
    given.step("scheduled", "welcome", "c-1", "s1", T0, due_at=T0)
    given.step("executed", "welcome", "c-1", "s1", T0)
    given.step("scheduled", "welcome", "c-1", "s2", T0, due_at="2028-03-02T13:00:00Z")
    given.step(
        "deferred",
        "welcome",
        "c-1",
        "s2",
        T0,
        reason="outside_hours",
        to="2028-03-03T15:30:00Z",
        **{"from": "2028-03-02T13:00:00Z"},
    )
    given.enrolled("nurture", "c-1", "2028-03-02T11:00:00Z", steps_total=2)
    given.step("skipped", "nurture", "c-1", "n1", "2028-03-02T11:00:00Z", reason="dnc")
    given.disenrolled("nurture", "c-1", "2028-03-02T12:00:00Z", reason="opted_out")
    return given


def test_a_contact_shows_each_sequence_with_state_progress_and_next_step() -> None:
    summary = view_of(journey()).contact("c-1")

    assert summary is not None
    assert (summary.name, summary.phone) == ("Maya Ortiz", "+17205550142")
    welcome, nurture = summary.enrollments
    assert (welcome.sequence_name, welcome.state, welcome.reason) == ("Welcome", "active", None)
    assert (welcome.steps_done, welcome.steps_total) == (1, 3)
    assert welcome.next_step_id == "s2"
    assert welcome.next_due_at == datetime(2028, 3, 3, 15, 30, tzinfo=UTC)
    assert (nurture.state, nurture.reason, nurture.steps_done) == ("disenrolled", "opted_out", 1)
    assert nurture.ended_at == datetime(2028, 3, 2, 12, tzinfo=UTC)
    assert nurture.next_step_id is None


def test_the_next_step_clears_once_it_runs_and_a_completion_ends_the_enrollment() -> None:
    given = journey()
    given.step("executed", "welcome", "c-1", "s2", "2028-03-03T15:30:00Z")
    view = view_of(given)
    summary = view.contact("c-1")
    assert summary is not None
    assert summary.enrollments[0].next_step_id is None
    assert summary.enrollments[0].steps_done == 2

    given.completed("welcome", "c-1", "2028-03-04T00:00:00Z")
    summary = view_of(given).contact("c-1")
    assert summary is not None
    assert summary.enrollments[0].to_json()["state"] == "completed"
    assert summary.enrollments[0].to_json()["ended_at"] == "2028-03-04T00:00:00Z"


def test_an_unknown_contact_has_no_view() -> None:
    assert view_of(journey()).contact("c-404") is None


def test_feeding_the_same_events_twice_changes_nothing() -> None:
    given = journey()
    view = view_of(given)
    before = view.contact("c-1")

    for event in given.events:
        view.apply(event)

    assert view.contact("c-1") == before
