"""The timer queue: time order across heaps, stale entries, partitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aggregates.timer_queue import Partitions, TimerQueue, alone

T0 = datetime(2027, 7, 2, 14, 0, tzinfo=UTC)


def _drain(
    queue: TimerQueue,
    limit: datetime,
    partition: Partitions = None,
    notices_limit: datetime | None = None,
) -> list[str]:
    fired = []
    while (
        timer := queue.pop_due(
            limit, inclusive=True, partition=partition, notices_limit=notices_limit
        )
    ) is not None:
        fired.append(timer.key[0])
    return fired


def test_timers_come_in_time_order_across_steps_and_notices() -> None:
    queue = TimerQueue()
    queue.schedule_step(T0 + timedelta(minutes=3), "c-3", "seq", "e-3")
    queue.schedule_notices(T0 + timedelta(minutes=2), ("notice",))
    queue.schedule_step(T0 + timedelta(minutes=1), "c-1", "seq", "e-1")
    assert queue.next_due() == T0 + timedelta(minutes=1)
    assert _drain(queue, T0 + timedelta(minutes=2)) == ["c-1", "notice"]
    assert _drain(queue, T0 + timedelta(hours=1)) == ["c-3"]


def test_a_timer_due_at_the_limit_waits_unless_the_limit_is_inclusive() -> None:
    queue = TimerQueue()
    queue.schedule_step(T0, "c-1", "seq", "e-1")
    assert queue.pop_due(T0, inclusive=False, partition=None) is None
    assert queue.pop_due(T0, inclusive=True, partition=None) is not None


def test_a_moved_or_cancelled_timer_is_stale() -> None:
    queue = TimerQueue()
    queue.schedule_step(T0, "c-1", "seq", "e-1")
    queue.schedule_step(T0 + timedelta(minutes=5), "c-1", "seq", "e-1")  # moved
    queue.schedule_step(T0, "c-2", "seq", "e-2")
    queue.cancel("e-2")
    fired = []
    while timer := queue.pop_due(T0 + timedelta(hours=1), inclusive=True, partition=None):
        enrollment = "e-1" if timer.key[0] == "c-1" else "e-2"
        fired.append((timer.key[0], timer.due, queue.is_current(timer, enrollment)))
    assert fired == [
        ("c-1", T0, False),
        ("c-2", T0, False),
        ("c-1", T0 + timedelta(minutes=5), True),
    ]
    assert queue.live_steps() == 1


def test_one_partition_fires_only_its_own_steps_and_the_notices() -> None:
    queue = TimerQueue(partition_of=lambda contact: 0 if contact == "c-even" else 1)
    queue.schedule_step(T0, "c-even", "seq", "e-0")
    queue.schedule_step(T0, "c-odd", "seq", "e-1")
    queue.schedule_notices(T0, ("notice",))
    # the notices wait while another partition may still add to their minute
    assert _drain(queue, T0, partition=1) == ["c-odd"]
    assert _drain(queue, T0, partition=1, notices_limit=T0) == ["notice"]
    assert queue.next_due(partition=1) is None
    assert queue.next_due() == T0
    assert len(queue) == 1


def test_a_set_of_partitions_fires_only_their_steps_and_every_notice() -> None:
    # the wall clock: a worker fires the timers of the partitions it decides for, and a
    # rebuild holding more replays its ticks for those alone
    queue = TimerQueue(partition_of=lambda contact: int(contact[-1]))
    for partition in range(3):
        queue.schedule_step(T0, f"c-{partition}", "seq", f"e-{partition}")
    queue.schedule_notices(T0, ("notice",))
    assert sorted(_drain(queue, T0, partition=frozenset({0, 2}))) == ["c-0", "c-2", "notice"]
    assert queue.next_due(partition=alone(0)) is None
    assert queue.due_by(T0, partition=alone(1)) == 1
    assert _drain(queue, T0, partition=alone(1)) == ["c-1"]


def test_the_notices_can_be_taken_off_the_queue_in_time_order() -> None:
    queue = TimerQueue()
    queue.schedule_notices(T0 + timedelta(minutes=2), ("late",))
    queue.schedule_notices(T0 + timedelta(minutes=1), ("early",))
    queue.schedule_step(T0, "c-1", "seq", "e-1")
    assert [t.key[0] for t in queue.take_notices()] == ["early", "late"]
    assert _drain(queue, T0 + timedelta(hours=1)) == ["c-1"]


def test_the_steps_due_by_a_moment_are_counted_live_ones_only() -> None:
    queue = TimerQueue()
    for n in range(10):
        queue.schedule_step(T0 + timedelta(minutes=n), f"c-{n}", "seq", f"e-{n}")
    queue.schedule_step(T0 + timedelta(hours=5), "c-1", "seq", "e-1")  # moved: its old one stale
    queue.cancel("e-2")
    queue.schedule_notices(T0, ("notice",))
    # due by 00:04 were c-0 .. c-4; c-1 moved on and c-2 ended
    assert queue.due_by(T0 + timedelta(minutes=4)) == 3
    assert queue.due_by(T0 - timedelta(minutes=1)) == 0
    assert queue.due_by(T0 + timedelta(hours=6)) == 9
