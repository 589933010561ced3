"""The order a rebuild replays stored records in: by the definitions each was decided
under, each partition group in its own order."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.store import Replayable, in_definitions_order

NOON = datetime(2027, 1, 4, 12, tzinfo=UTC)


def stored(n: int, kind: str, definitions: int, partition: int | None) -> Replayable:
    return Replayable(n, kind, NOON if kind != "input" else None, definitions, None, partition)


def test_a_group_that_adopted_a_change_late_replays_its_older_inputs_before_it() -> None:
    # given worker A (group 0) deciding change 2 at record 2, and worker B (group 1)
    # deciding inputs under version 1 until it adopts the change at record 6
    log = [
        stored(1, "input", 1, 0),
        stored(2, "input", 1, 0),  # A's sequence.applied: change 2
        stored(3, "input", 2, 0),
        stored(4, "input", 1, 1),  # B, not yet aware of change 2
        stored(5, "tick", 1, 1),
        stored(6, "adopt", 2, None),
        stored(7, "input", 2, 1),
        stored(8, "input", 2, 0),
    ]
    # when ordered for a rebuild that takes both groups
    order = [r.notification_id for r in in_definitions_order(log)]
    # then B's inputs under version 1 come before anything decided under version 2, and
    # each group keeps its own order
    assert order == [1, 2, 4, 5, 3, 6, 7, 8]


def test_a_tick_of_an_older_store_keeps_its_place() -> None:
    # ticks written before they carried the version say 0: not "before everything"
    log = [stored(1, "input", 3, 0), stored(2, "tick", 0, 0), stored(3, "input", 3, 0)]
    assert [r.notification_id for r in in_definitions_order(log)] == [1, 2, 3]
