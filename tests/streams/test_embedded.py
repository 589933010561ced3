"""The embedded runner behind `replay`: which lines it decides (CONTRACT.md §4)."""

from __future__ import annotations

from typing import Any

import orjson

from schemas.envelope import ENGINE_SOURCE, CloudEvent, parse_time
from streams.embedded import RejectedLine, ReplayStats, replay
from tests.engine.helpers import definitions, event, sequence

T0 = "2027-07-06T14:00:00Z"  # a Tuesday, 10:00 in New York
T1 = "2027-07-06T14:05:00Z"


def run(inputs: list[dict[str, Any]], until: str) -> tuple[ReplayStats, list[CloudEvent]]:
    out: list[CloudEvent] = []
    rejected: list[RejectedLine] = []
    lines = [orjson.dumps(e) for e in inputs]
    stats = replay(
        definitions(sequence()), lines, out.extend, rejected.append, until=parse_time(until)
    )
    assert rejected == []
    return stats, out


def created(time: str = T0) -> dict[str, Any]:
    return event("contact.created", time, contact_id="c-1", phone="+12125550101")


def tagged(time: str, **envelope: Any) -> dict[str, Any]:
    return {**event("contact.tag_added", time, contact_id="c-1", tag="hot"), **envelope}


def test_an_input_at_until_is_decided_and_one_after_it_is_not() -> None:
    stats, out = run([created(), tagged(T1), tagged("2027-07-06T14:05:00.000001Z")], until=T1)

    assert [e.type for e in out if e.type == "enrollment.enrolled"] == ["enrollment.enrolled"]
    assert (stats.inputs, stats.beyond_until) == (2, 1)


def test_the_engines_own_changes_in_the_input_are_passed_over() -> None:
    # given a dump of the contacts topic, where the engine's own tag changes sit beside
    # the upstream facts: they were applied when decided, and deciding them again would
    # set off the triggers twice
    own = tagged(T1, source=ENGINE_SOURCE)

    stats, out = run([created(), own], until=T1)

    assert [e.type for e in out if e.type.startswith("enrollment.")] == []
    assert (stats.inputs, stats.own_changes) == (1, 1)
