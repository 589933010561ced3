"""The Sequences page: given output events, then these rows."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.sequences_list import SequenceRow, SequencesList
from tests.projections.helpers import Stream, a_passed_step_removed

T0 = "2028-03-02T10:00:00Z"


def rows_after(stream: Stream) -> list[SequenceRow]:
    model = SequencesList()
    for event in stream.events:
        model.apply(event)
    return model.rows()


def counters(rows: list[SequenceRow]) -> dict[str, tuple[int, int]]:
    return {row.id: (row.contacts, row.remaining_tasks) for row in rows}


def test_given_definitions_then_one_row_each_sorted_by_id_with_their_settings() -> None:
    given = Stream()
    given.defined("welcome", name="Welcome", steps_count=4, process_on="business_days")
    given.defined("alpha", name="Alpha", line=None, status="invalid", problems=["no line"])

    assert [r.to_json() for r in rows_after(given)] == [
        {
            "id": "alpha",
            "name": "Alpha",
            "created": "2028-03-01T00:00:00Z",
            "steps": 3,
            "process_on": "every_day",
            "line": None,
            "contacts": 0,
            "remaining_tasks": 0,
            "status": "invalid",
            "problems": ["no line"],
        },
        {
            "id": "welcome",
            "name": "Welcome",
            "created": "2028-03-01T00:00:00Z",
            "steps": 4,
            "process_on": "business_days",
            "line": "line-1",
            "contacts": 0,
            "remaining_tasks": 0,
            "status": "active",
            "problems": [],
        },
    ]


def test_contacts_count_active_enrollments_only() -> None:
    given = Stream()
    given.defined("w")
    for contact in ("c-1", "c-2", "c-3", "c-4"):
        given.enrolled("w", contact, T0)
    given.completed("w", "c-2", T0)
    given.disenrolled("w", "c-3", T0, reason="opted_out")
    given.add("enrollment.rejected", T0, sequence_id="w", contact_id="c-5", reason="opted_out")

    assert counters(rows_after(given)) == {"w": (2, 6)}


def test_remaining_tasks_count_distinct_steps_executed_or_skipped() -> None:
    given = Stream()
    given.defined("w", steps_count=4)
    given.enrolled("w", "c-1", T0, steps_total=4)
    given.enrolled("w", "c-2", T0, steps_total=4)
    given.step("scheduled", "w", "c-1", "s1", T0, due_at=T0)
    given.step("executed", "w", "c-1", "s1", T0, effect_id="fx:1")
    given.step("executed", "w", "c-1", "s1", T0, effect_id="fx:1b")  # a retry: still one step
    given.step("skipped", "w", "c-1", "s2", T0, reason="dnc")
    given.step("deferred", "w", "c-2", "s1", T0, reason="outside_hours")

    # c-1: 4 - {s1, s2} = 2; c-2: nothing done yet = 4.
    assert counters(rows_after(given)) == {"w": (2, 6)}


def test_a_finished_enrollment_leaves_no_remaining_tasks() -> None:
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-1", T0)
    given.step("executed", "w", "c-1", "s1", T0)
    given.disenrolled("w", "c-1", T0)

    assert counters(rows_after(given)) == {"w": (0, 0)}


def test_a_reenrollment_starts_a_fresh_count() -> None:
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-1", T0)
    given.step("executed", "w", "c-1", "s1", T0)
    given.completed("w", "c-1", T0)
    given.enrolled("w", "c-1", "2028-03-03T10:00:00Z", n=2)

    assert counters(rows_after(given)) == {"w": (1, 3)}


def test_without_enrollment_ids_events_apply_to_the_contacts_active_enrollment() -> None:
    given = Stream()
    given.defined("w", steps_count=5)
    given.add("enrollment.enrolled", T0, sequence_id="w", contact_id="c-1", via="manual")
    given.add("step.executed", T0, sequence_id="w", contact_id="c-1", step_id="s1")
    given.add("enrollment.enrolled", T0, sequence_id="w", contact_id="c-2", via="manual")
    given.add("enrollment.completed", T0, sequence_id="w", contact_id="c-2")

    # No steps_total: the sequence's steps_count stands in (5 - 1).
    assert counters(rows_after(given)) == {"w": (1, 4)}


def test_after_a_redefinition_remaining_tasks_follow_the_new_steps() -> None:
    # The engine runs an enrollment on through the steps in force, so a sequence cut from
    # three steps to two leaves one to do after the first, whatever the enrollment said.
    given = Stream()
    given.defined("w", steps_count=3)
    given.enrolled("w", "c-1", T0, steps_total=3)
    given.step("executed", "w", "c-1", "s1", T0)
    given.defined("w", T0, steps_count=2)
    assert counters(rows_after(given)) == {"w": (1, 1)}

    given.defined("w", T0, steps_count=5)
    assert counters(rows_after(given)) == {"w": (1, 4)}


def test_a_step_passed_then_removed_no_longer_counts_as_done() -> None:
    # The engine goes on by step id after an edit: a step passed that the edit removed
    # leaves every step of the new list still to do.
    assert counters(rows_after(a_passed_step_removed())) == {"w": (1, 2)}


def test_a_redefinition_replaces_settings_and_keeps_contacts() -> None:
    given = Stream()
    given.defined("w", name="Old", line="line-1")
    given.enrolled("w", "c-1", T0)
    given.defined("w", T0, name="New", line="line-2", status="invalid")

    [row] = rows_after(given)
    assert (row.name, row.line, row.status, row.contacts) == ("New", "line-2", "invalid", 1)


def test_a_deleted_sequence_is_hidden_and_a_redefined_one_comes_back() -> None:
    given = Stream()
    given.defined("gone")
    given.defined("kept")
    given.deleted("gone", T0)
    assert [r.id for r in rows_after(given)] == ["kept"]

    given.defined("gone", "2028-03-04T00:00:00Z")
    assert [r.id for r in rows_after(given)] == ["gone", "kept"]


def test_enrollments_of_an_undefined_sequence_are_not_listed() -> None:
    given = Stream()
    given.enrolled("ghost", "c-1", T0)
    assert rows_after(given) == []


def test_feeding_the_same_events_twice_changes_nothing() -> None:
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-1", T0)
    given.step("executed", "w", "c-1", "s1", T0)
    given.enrolled("w", "c-2", T0)
    model = SequencesList()
    first = [model.apply(e) for e in given.events]
    once = model.rows()

    second = [model.apply(e) for e in given.events]

    assert all(first)
    assert not any(second)
    assert model.rows() == once
    assert counters(once) == {"w": (2, 5)}


# --- property: the counters equal a brute-force count over a random stream ------------------

SEQUENCES = ("a", "b")
CONTACTS = ("c1", "c2", "c3")
ACTIONS = ("enroll", "execute", "skip", "schedule", "complete", "disenroll", "redeliver", "late")


@st.composite
def engine_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Enroll / step / complete / disenroll events as an engine would emit them, with
    redeliveries of earlier events and steps reported after an enrollment ended."""
    given = Stream()
    steps = {sequence_id: draw(st.integers(1, 5)) for sequence_id in SEQUENCES}
    for sequence_id, count in steps.items():
        given.defined(sequence_id, steps_count=count)
    counts: Counter[tuple[str, str]] = Counter()
    totals: dict[tuple[str, str], int] = {}
    active: set[tuple[str, str]] = set()
    moves = st.tuples(
        st.sampled_from(ACTIONS),
        st.sampled_from(SEQUENCES),
        st.sampled_from(CONTACTS),
        st.integers(0, 9),
    )
    for action, sequence_id, contact_id, number in draw(st.lists(moves, max_size=80)):
        pair = (sequence_id, contact_id)
        n = counts[pair]
        step_id = f"s{number % totals[pair] + 1}" if pair in totals else "s1"
        if action == "redeliver" and given.events:
            given.events.append(given.events[number * 7 % len(given.events)])
        elif action == "enroll" and pair in active:
            given.add(
                "enrollment.rejected",
                T0,
                sequence_id=sequence_id,
                contact_id=contact_id,
                reason="already_enrolled",
            )
        elif action == "enroll":
            counts[pair] += 1
            totals[pair] = steps[sequence_id]
            active.add(pair)
            given.enrolled(sequence_id, contact_id, T0, n=counts[pair], steps_total=totals[pair])
        elif pair not in active and not (action == "late" and n):
            continue
        elif action in ("execute", "skip", "late"):
            verb = "skipped" if action == "skip" else "executed"
            given.step(verb, sequence_id, contact_id, step_id, T0, n=n)
        elif action == "schedule":
            given.step("scheduled", sequence_id, contact_id, step_id, T0, n=n, due_at=T0)
        else:
            active.discard(pair)
            if action == "complete":
                given.completed(sequence_id, contact_id, T0, n=n)
            else:
                given.disenrolled(sequence_id, contact_id, T0, n=n)
    return given.events


def brute_force(events: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    unique = list({(e["source"], e["id"]): e for e in events}.values())
    enrolled = {
        e["data"]["enrollment_id"]: e["data"] for e in unique if e["type"] == "enrollment.enrolled"
    }
    ended = {
        e["data"]["enrollment_id"]
        for e in unique
        if e["type"] in ("enrollment.completed", "enrollment.disenrolled")
    }
    done: defaultdict[str, set[str]] = defaultdict(set)
    for e in unique:
        if e["type"] in ("step.executed", "step.skipped"):
            done[e["data"]["enrollment_id"]].add(e["data"]["step_id"])
    result = dict.fromkeys(SEQUENCES, (0, 0))
    for eid, data in enrolled.items():
        if eid not in ended:
            contacts, remaining = result[data["sequence_id"]]
            result[data["sequence_id"]] = (
                contacts + 1,
                remaining + data["steps_total"] - len(done[eid]),
            )
    return result


@settings(max_examples=300, deadline=None)
@given(engine_streams())
def test_counters_equal_a_brute_force_count(events: list[dict[str, Any]]) -> None:
    model = SequencesList()
    for event in events:
        model.apply(event)

    assert counters(model.rows()) == brute_force(events)


def test_two_open_enrollments_of_one_contact_both_count() -> None:
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-1", T0, n=1)
    given.enrolled("w", "c-1", T0, n=2)  # not what the engine does, but each is enrolled
    given.completed("w", "c-1", T0, n=2)

    assert counters(rows_after(given)) == {"w": (1, 3)}
