"""A sequence's definition and the contacts enrolled in it, from the in-memory read models:
given what the engine decided in a small scenario, then what `sequences show` and
`sequences contacts` are built from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from projections.contacts_view import ContactsView
from projections.sequence_contacts import SequenceContactsPage, SequenceContactsQuery, contacts_of
from projections.sequence_detail import SequenceDetail, detail_of, ordered_definition
from projections.sequences_list import SequencesList
from projections.state import UnknownSequenceError
from tests.engine.helpers import decide, definitions, sequence
from tests.engine.helpers import event as input_event
from tests.projections.drip_scenario import DRIP, drip_outputs, without_definitions


def listed(events: list[dict[str, Any]]) -> SequencesList:
    model = SequencesList()
    for event in events:
        model.apply(event)
    return model


def viewed(events: list[dict[str, Any]]) -> ContactsView:
    view = ContactsView()
    for event in events:
        view.apply(event)
    return view


def show(events: list[dict[str, Any]], sequence_id: str) -> SequenceDetail:
    model = listed(events)
    return detail_of(model.catalog, model.book, sequence_id)


def contacts(events: list[dict[str, Any]], query: SequenceContactsQuery) -> SequenceContactsPage:
    view = viewed(events)
    return contacts_of(view.catalog, view.book, view.directory, query)


def published_definition(events: list[dict[str, Any]], sequence_id: str) -> dict[str, Any]:
    (defined,) = [
        e["data"]["definition"]
        for e in events
        if e["type"] == "sequence.defined" and e["data"]["sequence_id"] == sequence_id
    ]
    assert isinstance(defined, dict)
    return defined


# --- the definition -------------------------------------------------------------------------


def test_a_sequence_shows_the_lists_columns_and_the_definition_the_engine_published() -> None:
    events = drip_outputs()

    detail = show(events, "drip")

    (row,) = [r for r in listed(events).rows() if r.id == "drip"]
    assert detail.row == row
    assert (row.contacts, row.remaining_tasks, row.status) == (2, 4, "active")
    assert detail.description == "Two touches and a tag"
    assert detail.definition == published_definition(events, "drip")
    assert detail.definition is not None
    # defaults filled in by the engine
    assert detail.definition["remove_on_response"] is True
    assert detail.definition["steps"][0]["delay"] == {"kind": "none"}
    assert detail.to_json() == {
        "id": "drip",
        "name": "Drip",
        "description": "Two touches and a tag",
        **{k: v for k, v in row.to_json().items() if k not in ("id", "name")},
        "definition": detail.definition,
    }


def test_the_definition_reads_in_the_sequence_files_order_whatever_order_it_came_in() -> None:
    shuffled = {
        "triggers": [{"action": "enroll", "tags": ["a"], "type": "contact_tagged"}],
        "steps": [
            {
                "tag": "x",
                "delay": {"unit": "hours", "amount": 2, "kind": "default"},
                "type": "add_tag",
                "id": "s1",
            }
        ],
        "a_newer_key": 1,
        "schedule": {"open": "09:00", "timezone": "UTC", "close": "17:00"},
        "name": "N",
        "id": "n",
    }

    ordered = ordered_definition(shuffled)

    assert ordered == shuffled
    assert list(ordered) == ["id", "name", "schedule", "steps", "triggers", "a_newer_key"]
    assert list(ordered["schedule"]) == ["timezone", "open", "close"]
    assert list(ordered["steps"][0]) == ["id", "type", "delay", "tag"]
    assert list(ordered["steps"][0]["delay"]) == ["kind", "amount", "unit"]
    assert list(ordered["triggers"][0]) == ["type", "tags", "action"]


def test_a_redefinition_shows_the_definition_now_in_force() -> None:
    events = drip_outputs()
    first = next(e for e in events if e["type"] == "sequence.defined")
    edited = {**published_definition(events, "drip"), "name": "Drip v2", "steps": []}
    events.append(
        {
            **first,
            "id": "later/0",
            "time": "2028-03-02T00:00:00Z",
            "data": {**first["data"], "name": "Drip v2", "definition": edited},
        }
    )

    detail = show(events, "drip")

    assert detail.row.name == "Drip v2"
    assert detail.definition == edited


def test_a_stream_from_before_the_definition_was_published_shows_the_list_columns_only() -> None:
    events = without_definitions(drip_outputs())

    detail = show(events, "drip")

    assert detail.definition is None
    assert detail.to_json()["definition"] is None
    assert (detail.row.steps, detail.row.process_on, detail.row.line) == (
        3,
        "business_days",
        "line-1",
    )


@pytest.mark.parametrize(
    ("sequence_id", "deleted", "message"),
    [
        ("gone", True, "unknown sequence 'gone': deleted"),
        ("nope", False, "unknown sequence 'nope'"),
    ],
)
def test_a_deleted_sequence_is_unknown_as_the_list_hides_it(
    sequence_id: str, deleted: bool, message: str
) -> None:
    events = drip_outputs()
    assert "gone" not in [r.id for r in listed(events).rows()]

    with pytest.raises(UnknownSequenceError) as refused:
        show(events, sequence_id)
    with pytest.raises(UnknownSequenceError):
        contacts(events, SequenceContactsQuery(sequence_id, ended=True))

    assert (refused.value.sequence_id, refused.value.deleted) == (sequence_id, deleted)
    assert str(refused.value) == message


# --- the contacts -----------------------------------------------------------------------------


def test_the_active_enrollments_one_row_per_contact_by_enrollment_time_then_contact_id() -> None:
    page = contacts(drip_outputs(), SequenceContactsQuery("drip"))

    assert page.total == 2
    assert [r.contact_id for r in page.rows] == ["c-2", "c-1"]
    bob = page.rows[0]
    assert (bob.name, bob.phone, bob.email) == ("Bob Ray", "+12125550102", None)
    assert bob.enrollment.enrolled_at == datetime(2028, 3, 1, 15, tzinfo=UTC)
    assert (bob.enrollment.steps_done, bob.enrollment.steps_total) == (1, 3)
    assert bob.enrollment.next_step_id == "s2"
    assert bob.enrollment.next_due_at == datetime(2028, 3, 1, 17, tzinfo=UTC)
    assert page.timezone == "America/New_York"
    assert bob.to_json() == {
        "contact_id": "c-2",
        "name": "Bob Ray",
        "phone": "+12125550102",
        "email": None,
        "enrollment_id": bob.enrollment.enrollment_id,
        "state": "active",
        "reason": None,
        "enrolled_at": "2028-03-01T15:00:00Z",
        "ended_at": None,
        "steps_done": 1,
        "steps_total": 3,
        "next_step_id": "s2",
        "next_due_at": "2028-03-01T17:00:00Z",
        "held": False,
    }


def test_while_an_edit_has_made_the_sequence_invalid_its_contacts_show_no_step_due() -> None:
    # given the drip sequence edited, after every s1 ran, into one that cannot run
    broken = {
        **DRIP,
        "steps": [*DRIP["steps"], {"id": "s4", "type": "send_sms", "text": "[Frist]"}],
    }
    edit = input_event(
        "sequence.applied", "2028-03-01T15:45:00Z", subject="sequences", sequences=[broken]
    )

    page = contacts(drip_outputs(edit), SequenceContactsQuery("drip"))

    # then the engine holds its enrollments, and the page says so rather than a due moment
    assert [r.contact_id for r in page.rows] == ["c-2", "c-1"]
    assert {
        (r.enrollment.held, r.enrollment.next_step_id, r.enrollment.next_due_at) for r in page.rows
    } == {(True, None, None)}
    # and an edit that puts it right shows the step due again
    fixed = input_event(
        "sequence.applied", "2028-03-01T15:50:00Z", subject="sequences", sequences=[DRIP]
    )
    page = contacts(drip_outputs(edit, fixed), SequenceContactsQuery("drip"))
    assert [(r.enrollment.held, r.enrollment.next_due_at) for r in page.rows] == [
        (False, datetime(2028, 3, 1, 17, tzinfo=UTC)),
        (False, datetime(2028, 3, 1, 17, 5, tzinfo=UTC)),
    ]


def test_all_adds_the_enrollments_that_ended_with_their_state_and_reason() -> None:
    page = contacts(drip_outputs(), SequenceContactsQuery("drip", ended=True))

    assert page.total == 3
    # c-1 and c-3 were enrolled at the same moment: the contact id orders them
    assert [(r.contact_id, r.enrollment.state) for r in page.rows] == [
        ("c-2", "active"),
        ("c-1", "active"),
        ("c-3", "disenrolled"),
    ]
    cy = page.rows[2].enrollment
    assert (cy.reason, cy.ended_at, cy.next_step_id) == (
        "trigger",
        datetime(2028, 3, 1, 15, 30, tzinfo=UTC),
        None,
    )


def test_limit_and_offset_page_the_rows_and_the_total_counts_them_all() -> None:
    events = drip_outputs()

    page = contacts(events, SequenceContactsQuery("drip", ended=True, limit=1, offset=1))
    past_the_end = contacts(events, SequenceContactsQuery("drip", offset=5))
    none = contacts(events, SequenceContactsQuery("drip", limit=0))

    assert (page.total, [r.contact_id for r in page.rows]) == (3, ["c-1"])
    assert (past_the_end.total, past_the_end.rows) == (2, ())
    assert (none.total, none.rows) == (2, ())


def test_a_sequence_nobody_is_in_has_no_rows() -> None:
    page = contacts(drip_outputs(), SequenceContactsQuery("idle", ended=True))
    assert (page.total, page.rows) == (0, ())
    assert page.to_json() == {"sequence_id": "idle", "total": 0, "rows": []}


def test_a_step_an_edit_took_out_and_put_back_is_the_next_step_again_not_done() -> None:
    # given an enrollment that ran s1 and waits for `later`; an edit takes `later` out
    # (step.skipped, removed), and another puts it back (step.scheduled `later` again)
    two_days = {"kind": "default", "amount": 2, "unit": "days"}
    steps = [
        {"id": "s1", "type": "send_sms", "text": "one"},
        {"id": "later", "type": "send_sms", "text": "two", "delay": two_days},
        {"id": "s3", "type": "send_sms", "text": "three", "delay": two_days},
    ]
    whole = sequence(steps=steps)
    cut = sequence(steps=[steps[0], steps[2]])
    t0 = "2027-07-06T14:00:00Z"
    inputs = [
        input_event(
            "contact.created", t0, contact_id="c-1", first_name="Ana", phone="+12125550101"
        ),
        input_event("contact.tag_added", t0, contact_id="c-1", tag="hot"),
        input_event(
            "sequence.applied", "2027-07-06T15:00:00Z", subject="sequences", sequences=[cut]
        ),
        input_event(
            "sequence.applied", "2027-07-06T15:10:00Z", subject="sequences", sequences=[whole]
        ),
    ]
    events = decide(definitions(whole), inputs).events
    assert [e["data"]["reason"] for e in events if e["type"] == "step.skipped"] == ["removed"]
    # then the contacts page shows it waiting for `later`, one step done of three
    (row,) = contacts(events, SequenceContactsQuery("seq")).to_json()["rows"]
    assert (row["steps_done"], row["steps_total"], row["next_step_id"]) == (1, 3, "later")
