"""Properties of whole replays in which the sequence is edited while contacts are enrolled.

The worlds are those of test_engine_properties, with one to three `sequence.applied` edits
put between the inputs: new open hours, processing days, holidays rule, throttle, quiet
hours, steps changed, dropped, added or reordered, and now and then an edit that makes the
sequence invalid. Every rule is checked against the definition in force when the command
was decided (README: an edit of when steps may run schedules every waiting step again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregates.calendar import is_holiday
from schemas.envelope import format_time, parse_time
from tests.engine.helpers import Outcome, decide, definitions
from tests.engine.test_engine_properties import (
    CONTACT_COMMANDS,
    STEP_KINDS,
    VOICE_OR_TEXT,
    _blocked,
    _inside,
    _local,
    _state_before,
    delays,
    windows,
    worlds,
)

# Mostly small limits, so that steps contend for places and edits move held ones.
THROTTLES = st.sampled_from([None, 1, 1, 2, 3])

World = tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]


@dataclass(frozen=True)
class InForce:
    """What one edit put in force: the sequence, the account's quiet hours, validity."""

    sequence: dict[str, Any]
    quiet: tuple[str, str] | None
    valid: bool


@st.composite
def edited_sequences(draw: st.DrawFn, before: dict[str, Any], serial: int) -> dict[str, Any]:
    seq = {**before, "steps": [dict(step) for step in before["steps"]]}
    seq.pop("schedule", None)
    window = draw(st.one_of(st.none(), windows))
    if window:
        seq["schedule"] = {"open": window[0], "close": window[1]}
    seq["process_on"] = draw(st.sampled_from(["every_day", "business_days"]))
    seq["run_on_holidays"] = draw(st.booleans())
    seq["throttle_per_minute"] = draw(THROTTLES)
    steps = seq["steps"]
    # Half the edits leave the steps alone: those change only when steps may run.
    change = draw(st.sampled_from(["keep"] * 5 + ["delay", "kind", "drop", "add", "reverse"]))
    at = draw(st.integers(0, len(steps) - 1))
    if change == "delay":
        steps[at]["delay"] = draw(delays)
    elif change == "kind":
        kind = draw(st.sampled_from(sorted(STEP_KINDS)))
        steps[at] = {"id": steps[at]["id"], "type": kind, **STEP_KINDS[kind], "delay": draw(delays)}
    elif change == "drop" and len(steps) > 1:
        del steps[at]
    elif change == "add":
        kind = draw(st.sampled_from(sorted(STEP_KINDS)))
        added = {"id": f"n{serial}", "type": kind, **STEP_KINDS[kind], "delay": draw(delays)}
        steps.insert(at, added)
    elif change == "reverse":
        steps.reverse()
    if draw(st.integers(0, 5)) == 0:
        seq["outbound_line"] = "line-9"  # no such line: the sequence is invalid
    else:
        seq["outbound_line"] = "line-1"
    return seq


@st.composite
def edited_worlds(draw: st.DrawFn) -> tuple[World, list[InForce]]:
    world, inputs, zones = draw(worlds(most_contacts=6))
    after_burst: set[int] = set()
    if draw(st.booleans()):
        # A burst: every contact tagged at once, so steps contend for the throttle's places.
        if draw(st.booleans()):
            # All in one zone: their steps are held to the same morning minute.
            zone = zones[min(zones)]
            zones = dict.fromkeys(zones, zone)
            inputs = [
                {**item, "data": {**item["data"], "timezone": zone}}
                if item["type"] == "contact.created"
                else item
                for item in inputs
            ]
        at = draw(st.integers(len(zones) - 1, len(inputs) - 1))
        moment = inputs[at]["time"]
        burst = [
            {**inputs[at], "id": f"burst-{contact}", "type": "contact.tag_added"}
            | {"subject": contact, "data": {"contact_id": contact, "tag": "hot"}}
            for contact in sorted(zones)
        ]
        assert all(item["time"] == moment for item in burst)
        inputs = inputs[: at + 1] + burst + inputs[at + 1 :]
        if draw(st.booleans()):
            # An edit while the burst's steps wait for their places.
            after_burst.add(at + 1 + len(burst))
    first = world["sequences"][0]
    first["throttle_per_minute"] = draw(THROTTLES)
    quiet = world["account"].get("quiet_hours")
    in_force = [InForce(first, (quiet["start"], quiet["end"]) if quiet else None, True)]
    # After the contacts are created; at most one edit between two inputs, so the merged
    # history stays in time order.
    drawn = draw(st.sets(st.integers(len(zones), len(inputs)), min_size=1, max_size=3))
    positions = sorted(drawn | after_burst)
    merged = list(inputs)
    edits: list[tuple[int, dict[str, Any]]] = []
    for serial, position in enumerate(positions):
        moment = parse_time(inputs[position - 1]["time"])
        if position < len(inputs):
            gap = int((parse_time(inputs[position]["time"]) - moment).total_seconds())
            soon = draw(st.booleans())  # within hours: before steps held to a morning run
            moment += timedelta(seconds=draw(st.integers(0, min(gap, 6 * 3600) if soon else gap)))
        seq = draw(edited_sequences(in_force[-1].sequence, serial))
        account = dict(world["account"])
        account.pop("quiet_hours", None)
        quiet_now = draw(
            st.sampled_from([in_force[-1].quiet, None, ("08:00", "21:00"), ("10:00", "18:00")])
        )
        if quiet_now:
            account["quiet_hours"] = {"start": quiet_now[0], "end": quiet_now[1]}
        edit = {
            "specversion": "1.0",
            "id": f"edit-{serial}",
            "source": "prop",
            "type": "sequence.applied",
            "time": format_time(moment),
            "subject": "sequences",
            "data": {"account": account, "sequences": [seq]},
        }
        edits.append((position, edit))
        in_force.append(InForce(seq, quiet_now, seq["outbound_line"] == "line-1"))
    for position, edit in reversed(edits):
        merged.insert(position, edit)
    return (world, merged, zones), in_force


def _replay(world: dict[str, Any], inputs: list[dict[str, Any]]) -> Outcome:
    defs = definitions(*world["sequences"], account=world["account"])
    return decide(defs, inputs, until=world["until"])


def _in_force(
    inputs: list[dict[str, Any]], in_force: list[InForce], event: dict[str, Any]
) -> InForce:
    """The definition in force when `event` was decided: that of the last edit read."""
    seen = _state_before(inputs, event)
    applied = sum(1 for item in seen if item["type"] == "sequence.applied")
    return in_force[applied]


EDIT_SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@EDIT_SETTINGS
@given(edited_worlds())
def test_after_any_edit_commands_keep_the_hours_days_quiet_hours_and_consent_in_force(
    edited: tuple[World, list[InForce]],
) -> None:
    (world, inputs, zones), in_force = edited
    out = _replay(world, inputs)
    for event in out.events:
        if event["type"] not in CONTACT_COMMANDS:
            continue
        force = _in_force(inputs, in_force, event)
        assert force.valid, ("a command from an invalid sequence", event)
        seq = force.sequence
        schedule = seq.get("schedule")
        contact = event["data"]["contact_id"]
        local = _local(event["time"], zones[contact])
        assert _inside(local, (schedule["open"], schedule["close"]) if schedule else None), (
            event,
            local,
        )
        if event["type"] in VOICE_OR_TEXT:
            assert _inside(local, force.quiet), (event, local, force.quiet)
        if seq["process_on"] == "business_days":
            assert local.weekday() < 5, (event, local)
            assert seq["run_on_holidays"] or not is_holiday(local.date()), (event, local)
        assert not _blocked(_state_before(inputs, event), contact, event["type"]), event


@EDIT_SETTINGS
@given(edited_worlds())
def test_after_any_edit_the_throttle_in_force_holds_and_each_step_runs_once(
    edited: tuple[World, list[InForce]],
) -> None:
    (world, inputs, _), in_force = edited
    out = _replay(world, inputs)
    per_minute: dict[str, int] = {}
    ran: set[tuple[str, str]] = set()
    for event in out.of("step.executed"):
        minute = event["time"][:16]
        per_minute[minute] = per_minute.get(minute, 0) + 1
        limit = _in_force(inputs, in_force, event).sequence["throttle_per_minute"]
        # README: a lowered throttle counts what already ran in the minute it came in.
        assert limit is None or per_minute[minute] <= limit, (event, per_minute[minute], limit)
        key = (event["data"]["enrollment_id"], event["data"]["step_id"])
        assert key not in ran, ("a step ran twice", key)
        ran.add(key)


@EDIT_SETTINGS
@given(edited_worlds())
def test_after_any_edit_deferrals_move_forward_and_no_step_runs_before_it_was_told(
    edited: tuple[World, list[InForce]],
) -> None:
    (world, inputs, _), _ = edited
    out = _replay(world, inputs)
    told: dict[tuple[str, str], str] = {}
    for event in out.events:
        data = event["data"]
        key = (data.get("enrollment_id", ""), data.get("step_id", ""))
        if event["type"] == "step.scheduled":
            told[key] = data["due_at"]
        elif event["type"] == "step.deferred":
            assert parse_time(data["to"]) > parse_time(data["from"]), event
            told[key] = data["to"]
        elif event["type"] == "step.executed":
            assert parse_time(event["time"]) >= parse_time(told[key]), (event, told[key])
    effects = [
        e["data"]["effect_id"]
        for e in out.events
        if "effect_id" in e["data"] and e["type"] != "step.executed"
    ]
    assert len(effects) == len(set(effects))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_worlds())
def test_a_history_with_edits_replays_the_same(edited: tuple[World, list[InForce]]) -> None:
    (world, inputs, _), _ = edited
    assert _replay(world, inputs).events == _replay(world, inputs).events


@EDIT_SETTINGS
@given(edited_worlds())
def test_after_any_edit_every_scheduled_step_ends_in_a_word_before_the_next_is_scheduled(
    edited: tuple[World, list[InForce]],
) -> None:
    # A subscriber following an enrollment sees each step it was told of executed or
    # skipped (an edit that takes it out: `removed`), or the enrollment end; or, when an
    # edit put another step before it, that one scheduled while it waits its turn again.
    (world, inputs, _), in_force = edited
    out = _replay(world, inputs)
    waiting: dict[str, str] = {}  # enrollment -> the step it was told is coming
    for event in out.events:
        data, kind = event["data"], event["type"]
        enrollment = data.get("enrollment_id")
        if kind == "step.scheduled":
            told = waiting.get(enrollment)
            steps = _in_force(inputs, in_force, event).sequence["steps"]
            still_there = told in {step["id"] for step in steps}
            assert told in (None, data["step_id"]) or still_there, (enrollment, told, data)
            waiting[enrollment] = data["step_id"]
        elif (
            kind in ("step.executed", "step.skipped") and waiting.get(enrollment) == data["step_id"]
        ):
            del waiting[enrollment]
        elif kind in ("enrollment.completed", "enrollment.disenrolled"):
            waiting.pop(enrollment, None)
