"""`immutable` classes behave as the frozen dataclasses they stand for, wherever a value
is compared, hashed, copied with a change or kept in a snapshot."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime

import pytest

from aggregates.decisions import StepScheduled
from schemas.envelope import CloudEvent
from schemas.immutable import immutable


@immutable
class _Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class _FrozenPoint:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default=())


def test_equality_and_hash_are_those_of_a_frozen_dataclass() -> None:
    # given the same values in an immutable class and in a frozen dataclass
    values = [(1, 2, ("a",)), (1, 2, ()), (3, 0, ("a", "b"))]
    # then equal values are equal and hash alike, as a frozen one's do
    for x, y, tags in values:
        assert _Point(x, y, tags) == _Point(x, y, tags)
        assert hash(_Point(x, y, tags)) == hash(_FrozenPoint(x, y, tags))
    assert _Point(1, 2) != _Point(2, 1)
    assert len({_Point(1), _Point(1), _Point(2)}) == 2


def test_it_has_slots_and_keeps_its_fields_and_defaults() -> None:
    point = _Point(5)
    assert not hasattr(point, "__dict__")
    assert [f.name for f in fields(_Point)] == ["x", "y", "tags"]
    assert (point.x, point.y, point.tags) == (5, 0, ())
    with pytest.raises(AttributeError):
        point.z = 1  # type: ignore[attr-defined]


def test_replace_makes_a_copy_and_leaves_the_original() -> None:
    point = _Point(1, 2)
    moved = replace(point, y=7)
    assert (point.y, moved.y) == (2, 7)


def test_engine_values_survive_a_snapshot_round_trip() -> None:
    # given a decision and an event as the engine keeps them
    at = datetime(2027, 3, 1, 13, 0, tzinfo=UTC)
    decision = StepScheduled(at, "seq-1", "c-1", "enr-1", step_id="s1", due_at=at)
    event = CloudEvent("e-1", "crm", "contact.created", at, "c-1", {"contact_id": "c-1"})
    # when pickled and read back, as a worker's snapshot is
    decision_back, event_back = pickle.loads(pickle.dumps((decision, event)))
    # then they are equal to what was kept
    assert decision_back == decision
    assert event_back == event
